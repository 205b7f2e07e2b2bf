package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/barclamps"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestBarclampBuildAndInspect(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	example := filepath.Join(filepath.Dir(file), "..", "..", "examples", "hello-barclamp")
	wasm := filepath.Join(t.TempDir(), "hello.wasm")
	out, err := run(t, "barclamp", "build", example, "-o", wasm)
	if err != nil || !strings.Contains(out, "barclamp hello 1.0.0, 1 role(s), 1 route(s)") {
		t.Fatalf("build: %v %s", err, out)
	}
	out, err = run(t, "barclamp", "inspect", wasm)
	if err != nil {
		t.Fatalf("inspect: %v %s", err, out)
	}
	var got struct {
		Digest   string `json:"digest"`
		Manifest struct {
			Name   string `json:"name"`
			Routes []struct{ Path string }
		} `json:"manifest"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Manifest.Name != "hello" || len(got.Digest) != 64 ||
		got.Manifest.Routes[0].Path != "/greetings/{name}" {
		t.Fatalf("inspect printed %s (%v)", out, err)
	}
	// Bad usage fails before doing anything, as a usage error.
	if _, err := run(t, "barclamp", "inspect"); err == nil {
		t.Error("inspect without FILE succeeded")
	} else if _, ok := err.(usageError); !ok {
		t.Errorf("inspect without FILE: %T, want usageError", err)
	}
	if _, err := run(t, "barclamp", "build", filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("build of a missing directory succeeded")
	}
	notWasm := filepath.Join(t.TempDir(), "x.wasm")
	os.WriteFile(notWasm, []byte("nope"), 0o600)
	if _, err := run(t, "barclamp", "inspect", notWasm); err == nil || !strings.Contains(err.Error(), "not a valid WebAssembly module") {
		t.Errorf("inspect of garbage: %v", err)
	}
}

// TestBarclampPrecompile: the embedded barclamps are compiled into the
// cache the server reads (make build runs this).
func TestBarclampPrecompile(t *testing.T) {
	embedded, _ := barclamps.Embedded()
	if len(embedded) == 0 {
		t.Fatal("no embedded barclamps: run make barclamps (make test does)")
	}
	cmd := newRootCmd()
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"barclamp", "precompile", "--wasm-cache", sharedWasmCache})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("compiled %d barclamps into %s", len(embedded), sharedWasmCache)
	if !strings.Contains(out.String(), want) {
		t.Fatalf("precompile said %q, want %q", out.String(), want)
	}
	entries, err := os.ReadDir(sharedWasmCache)
	if err != nil || len(entries) == 0 {
		t.Fatalf("nothing in the cache: %v %v", entries, err)
	}
}
