package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/barclamps"
	"github.com/spf13/cobra"
)

func TestFlagsWinOverEnvironment(t *testing.T) {
	t.Setenv("CROWBAR_LISTEN", "127.0.0.1:4000")
	t.Setenv("CROWBAR_LOG_LEVEL", "debug")
	t.Setenv("CROWBAR_MAX_BODY", "not-a-number")
	cmd := newServerCmd()
	cmd.RunE = func(*cobra.Command, []string) error { return nil }
	if err := cmd.ParseFlags([]string{"--listen", "127.0.0.1:5000", "--max-body", "10"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(cmd.Flags()); err != nil {
		t.Fatalf("applyEnv: %v", err) // the bad CROWBAR_MAX_BODY is shadowed by the flag
	}
	if got, _ := cmd.Flags().GetString("listen"); got != "127.0.0.1:5000" {
		t.Errorf("listen = %q, want the flag's value", got)
	}
	if got, _ := cmd.Flags().GetString("log-level"); got != "debug" {
		t.Errorf("log-level = %q, want the environment's value", got)
	}
	cmd = newServerCmd()
	cmd.ParseFlags(nil) //nolint:errcheck
	if err := applyEnv(cmd.Flags()); err == nil || !strings.Contains(err.Error(), "CROWBAR_MAX_BODY") {
		t.Errorf("a bad environment value: err = %v, want one naming CROWBAR_MAX_BODY", err)
	}
}

func TestServerServesAndShutsDownGracefully(t *testing.T) {
	dir := t.TempDir()
	addrc := make(chan net.Addr, 1)
	o := &serverOptions{listen: "127.0.0.1:0", dataDir: dir, agentHeartbeat: 10 * time.Second, agentDeadAfter: 30 * time.Second, logLevel: "error", logFormat: "json",
		maxBody: 1 << 20, advertiseURL: "http://192.0.2.7:3000/", shutdownTimeout: 10 * time.Second, annealWorkers: 4, annealLease: time.Minute,
		onListen: func(a net.Addr) { addrc <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServer(ctx, o) }()
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("server stopped early: %v", err)
	}
	resp, err := http.Post(base+"/api/v2/nodes", "application/json", strings.NewReader(`{"name": "a.example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("create node without credentials: %d, want 401", resp.StatusCode)
	}
	// Machines are sent to the advertised URL, not to the loopback this
	// request came through.
	resp, err = http.Get(base + "/provisioner/v2/boot.ipxe")
	if err != nil {
		t.Fatal(err)
	}
	script, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(script), "chain http://192.0.2.7:3000/provisioner/v2/nodes/") {
		t.Fatalf("boot.ipxe does not name --advertise-url: %d %s", resp.StatusCode, script)
	}
	// The first start wrote the install key; the seed's curl call uses it.
	key, err := os.ReadFile(filepath.Join(dir, "crowbar.install.key"))
	if err != nil {
		t.Fatalf("install key: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "crowbar.install.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("install key mode %v", fi.Mode().Perm())
	}
	if _, err := exec.LookPath("curl"); err == nil || os.Getenv("CI") != "" {
		out, err := exec.Command("curl", "-sS", "-w", "%{http_code}", "--digest", "-u", strings.TrimSpace(string(key)),
			"-X", "POST", "-d", "name=newtest.cr0wbar.com", "-d", "bootenv=local", "-H", "Content-Type:application/json",
			"--url", base+"/api/v2/nodes").CombinedOutput()
		if err != nil || !strings.HasSuffix(string(out), "201") {
			t.Fatalf("curl --digest with the install key: %v %s", err, out)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "crowbar.db")); err != nil {
		t.Fatalf("default SQLite file: %v", err)
	}
	// A clean close leaves nothing to recover: the WAL is checkpointed away.
	if _, err := os.Stat(filepath.Join(dir, "crowbar.db-wal")); err == nil {
		t.Errorf("WAL file left behind: the database was not closed cleanly")
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Errorf("server still answers after shutdown")
	}
}

func TestBadLogSettingsAreUsageErrors(t *testing.T) {
	for _, c := range [][2]string{{"loud", "text"}, {"info", "xml"}} {
		if _, err := newLogger(c[0], c[1]); err == nil {
			t.Errorf("newLogger(%q, %q) accepted", c[0], c[1])
		} else if _, ok := err.(usageError); !ok {
			t.Errorf("newLogger(%q, %q) = %T, want usageError", c[0], c[1], err)
		}
	}
}

func TestBadTuningFlagsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--anneal-workers", "0"}, {"--anneal-lease", "10ms"}, {"--barclamp-sync", "-1s"},
		{"--wasm-pool-size", "-2"}, {"--agent-heartbeat", "100ms"}, {"--agent-dead-after", "15s"},
		{"--advertise-url", "10.0.0.2:3000"}, {"--dhcp", "relay"}, {"--tftp-root", "/usr/lib/ipxe"},
		{"--signin-free-failures", "-1"}, {"--signin-max-wait", "-1s"}, {"--audit-retention", "-1h"}, {"--event-retention", "-1h"}, {"--session-ttl", "-1h"}} {
		cmd := newServerCmd()
		if err := cmd.ParseFlags(append(args, "--data-dir", t.TempDir())); err != nil {
			t.Fatal(err)
		}
		cmd.SetContext(context.Background())
		err := cmd.RunE(cmd, nil)
		if _, ok := err.(usageError); !ok || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: err = %v (%T), want a usageError naming the flag", args, err, err)
		}
	}
}

// TestBootServicesFailFast: a boot service (or the metrics listener) that
// cannot start stops the server at once, saying which and why.
func TestBootServicesFailFast(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--boot-interface", "nosuch0"}, "--boot-interface nosuch0"},
		{[]string{"--files-dir", t.TempDir(), "--files-listen", "256.0.0.1:1"}, "boot files on 256.0.0.1:1"},
		{[]string{"--tftp-root", filepath.Join(t.TempDir(), "missing"), "--tftp-listen", "127.0.0.1:0"}, "TFTP root"},
		{[]string{"--metrics-listen", "256.0.0.1:1"}, "--metrics-listen 256.0.0.1:1"},
		{[]string{"--metrics-listen", "127.0.0.1:0", "--metrics-token-file", filepath.Join(t.TempDir(), "missing")}, "--metrics-token-file"},
	} {
		cmd := newServerCmd()
		if err := cmd.ParseFlags(append(c.args, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0")); err != nil {
			t.Fatal(err)
		}
		cmd.SetContext(context.Background())
		if err := cmd.RunE(cmd, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want one naming %q", c.args, err, c.want)
		}
	}
}

// TestServerAnswersWhileBarclampsLoad: on a start where a barclamp is
// not compiled yet the core API answers at once; a barclamp still loading
// answers 503 with Retry-After and /ready says which; once loaded, /ready
// is 200.
func TestServerAnswersWhileBarclampsLoad(t *testing.T) {
	if e, _ := barclamps.Embedded(); len(e) == 0 {
		t.Fatal("no embedded barclamps: run make barclamps (make test does)")
	}
	// The shared cache less one compiled module: one barclamp compiles
	// (with the race detector, tens of seconds) while the others load.
	cache := partialCache(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	o := &serverOptions{listen: addr, dataDir: dir, wasmCache: cache, agentHeartbeat: 10 * time.Second,
		agentDeadAfter: 30 * time.Second, logLevel: "error", logFormat: "json", maxBody: 1 << 20, shutdownTimeout: 10 * time.Second,
		annealWorkers: 4, annealLease: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServer(ctx, o) }()
	t.Cleanup(func() { cancel(); <-done })
	get := func(path string) (*http.Response, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return nil, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if resp, _ := get("/health"); resp != nil && resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not answer /health")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if resp, body := get("/ready"); resp.StatusCode == 503 {
		if resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"loading"`) {
			t.Fatalf("/ready while loading: %d %s", resp.StatusCode, body)
		}
		var r struct {
			Barclamps struct{ Loading []string } `json:"barclamps"`
		}
		json.Unmarshal([]byte(body), &r) //nolint:errcheck
		if len(r.Barclamps.Loading) > 0 {
			resp, body := get("/" + r.Barclamps.Loading[0] + "/v2/anything")
			if resp.StatusCode != 503 && resp.StatusCode != 401 && resp.StatusCode != 404 {
				t.Fatalf("a barclamp route while loading: %d %s", resp.StatusCode, body)
			}
			if resp.StatusCode == 503 && (resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "still loading")) {
				t.Fatalf("a barclamp route while loading: %d %s", resp.StatusCode, body)
			}
		}
		// The core API answers meanwhile (401: it wants credentials).
		if resp, _ := get("/api/v2/nodes"); resp.StatusCode != 401 {
			t.Fatalf("the core API while barclamps load: %d", resp.StatusCode)
		}
	}
	for {
		if resp, body := get("/ready"); resp.StatusCode == 200 && strings.Contains(body, `"ready"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp, _ := get("/network/v2/networks"); resp.StatusCode != 401 {
		t.Fatalf("a loaded barclamp's route without credentials: %d, want 401", resp.StatusCode)
	}
}

// partialCache copies the shared compilation cache (filled first by make
// test) without its newest entry: a current module's (an entry left by an
// older build of a module is older than the entry that replaced it).
func partialCache(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "cache")
	var newest string
	var newestAt time.Time
	err := filepath.WalkDir(sharedWasmCache, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(sharedWasmCache, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && info.ModTime().After(newestAt) {
			newest, newestAt = filepath.Join(dst, rel), info.ModTime()
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if newest != "" {
		os.Remove(newest) //nolint:errcheck
	}
	return dst
}
