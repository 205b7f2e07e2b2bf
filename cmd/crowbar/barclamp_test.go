package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

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
	// The real binary, not this test's: compiling a module under -race
	// takes ten times as long.
	bin := testBinary(t)
	b, err := exec.Command(bin, "barclamp", "build", example, "-o", wasm).CombinedOutput()
	if out := string(b); err != nil || !strings.Contains(out, "barclamp hello 1.0.0, 1 role(s), 1 route(s)") {
		t.Fatalf("build: %v %s", err, out)
	}
	b, err = exec.Command(bin, "barclamp", "inspect", wasm).Output()
	out := string(b)
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

// TestBarclampNewOutsideTheRepository does what a third-party author does,
// in a directory outside this repository with only the crowbar binary and
// the Go toolchain: scaffold, build, run the scaffold's checks in a real
// host, install into a running server, enable, call the route.
func TestBarclampNewOutsideTheRepository(t *testing.T) {
	bin := testBinary(t)
	work := t.TempDir()
	start := time.Now()
	sh := func(dir string, wantCode int, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantCode {
			t.Fatalf("crowbar %s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantCode, out)
		}
		return string(out)
	}
	sh(work, 0, "barclamp", "new", "greeter")
	mod := filepath.Join(work, "greeter")
	if out := sh(mod, 0, "barclamp", "build", "."); !strings.Contains(out, "built greeter.wasm: barclamp greeter 0.1.0, 1 role(s), 1 route(s)") {
		t.Fatalf("build: %s", out)
	}
	if out := sh(mod, 0, "barclamp", "test", "."); !strings.Contains(out, "3 of 3 checks passed") {
		t.Fatalf("test: %s", out)
	}

	base, key := binaryServer(t, bin)
	c := newCLI(t, base, key)
	c.ok("barclamps", "install", filepath.Join(mod, "greeter.wasm"))
	c.ok("barclamps", "enable", "greeter", "in", "system")
	code, body := seedCurl(t, base, key, "--url", base+"/greeter/v2/greetings/bob")
	if code != 200 || !jsonSame(body, map[string]any{"hello": "bob"}) {
		t.Fatalf("the installed barclamp's route: %d %v", code, body)
	}
	t.Logf("empty directory → barclamp installed and answering: %s", time.Since(start).Round(time.Millisecond))

	// A check that fails says which and why, with the server's log, exit 1.
	checks := filepath.Join(mod, "barclamp_test.yaml")
	b, _ := os.ReadFile(checks)
	os.WriteFile(checks, bytes.Replace(b, []byte("greeted: test-node.example.com"), []byte("greeted: someone-else"), 1), 0o644) //nolint:errcheck
	out := sh(mod, 1, "barclamp", "test", ".")
	if !strings.Contains(out, `FAIL role greeter-node on test-node.example.com: wall.greeted is "test-node.example.com", want "someone-else"`) ||
		!strings.Contains(out, "2 of 3 checks passed") || !strings.Contains(out, "--- server log") {
		t.Fatalf("a failing check: %s", out)
	}
	os.WriteFile(checks, append(b, []byte("colour: red\n")...), 0o644) //nolint:errcheck
	if out := sh(mod, 2, "barclamp", "test", "."); !strings.Contains(out, "field colour not found") {
		t.Fatalf("an unknown field in the checks: %s", out)
	}
	// Mistakes in `new` are usage errors; nothing is overwritten.
	if out := sh(work, 2, "barclamp", "new", "greeter"); !strings.Contains(out, "is not empty") {
		t.Fatalf("new into a non-empty directory: %s", out)
	}
	if out := sh(work, 2, "barclamp", "new", "Bad_Name"); !strings.Contains(out, "lower-case letters") {
		t.Fatalf("new with a bad name: %s", out)
	}
}

// binaryServer runs the real binary's server on SQLite in a temporary data
// dir until the test ends (installs compile modules at full speed, not
// under this test's -race); it returns the base URL and the install key.
func binaryServer(t *testing.T, bin string) (base, key string) {
	t.Helper()
	dir := t.TempDir()
	s := &faultServer{t: t, bin: bin, dir: dir, dsn: filepath.Join(dir, "crowbar.db")}
	s.start()
	t.Cleanup(s.stop)
	return s.base, s.key()
}
