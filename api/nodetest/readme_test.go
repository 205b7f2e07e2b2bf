package nodetest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/agent/agenttest"
)

// repoRoot is the repository's top directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// readmeBlock returns the first sh block after heading in README.md.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q section", heading)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("README.md's %q section has no sh block", heading)
	}
	block, _, _ := strings.Cut(rest, "```")
	return block
}

// readmeServer runs the real binary as `make run` does, in a new directory
// whose data/ it uses (127.0.0.1:3000 is free in the test's network
// namespace); the directory also sees the repository's module, so the
// README's go build commands work there.
func readmeServer(t *testing.T) (dir string, log *strings.Builder) {
	t.Helper()
	dir = t.TempDir()
	for _, name := range []string{"go.mod", "go.sum", "sdk", "examples"} {
		if err := os.Symlink(filepath.Join(repoRoot(), name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "bin", "crowbar")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(crowbarBinary(t), bin); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(bin, "server", "--data-dir", "./data")
	srv.Dir = dir
	srv.Env = append(os.Environ(), "CROWBAR_WASM_CACHE="+filepath.Join(os.TempDir(), "crowbar-test-wasm-cache"))
	log = &strings.Builder{}
	srv.Stdout, srv.Stderr = log, log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Signal(os.Interrupt); srv.Wait() }) //nolint:errcheck
	// A cold compilation cache (barclamps just rebuilt) on a busy
	// machine takes a while; what is tested here is the walk-through.
	waitWithin(t, 2*time.Minute, func() bool {
		r, err := http.Get("http://127.0.0.1:3000/ready")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == 200
	})
	return dir, log
}

// runBlock runs a README block with bash (errexit, pipefail) in dir.
func runBlock(t *testing.T, dir, script string, log *strings.Builder) string {
	t.Helper()
	sh := exec.Command("bash", "-euo", "pipefail", "-c", script)
	sh.Dir = dir
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = sh.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		sh.Process.Kill() //nolint:errcheck
		<-done
		t.Fatalf("the walkthrough hung:\n%s", out)
	}
	if err != nil {
		t.Fatalf("the README walkthrough failed: %v\n%s\nserver log:\n%s", err, out, log.String())
	}
	return string(out)
}

// TestReadmeAgentWalkthrough runs the README's agent section verbatim
// against the real binary serving as `make run` does.
func TestReadmeAgentWalkthrough(t *testing.T) {
	agenttest.Require(t)
	dir, log := readmeServer(t)
	out := runBlock(t, dir, readmeBlock(t, "## An agent on a machine"), log)
	if !strings.Contains(out, `"reachable": true`) {
		t.Fatalf("the walkthrough did not reach the agent:\n%s", out)
	}
}

// TestReadmeCurlWalkthrough runs the README's walk through the API with
// curl verbatim, and checks what its comments promise.
func TestReadmeCurlWalkthrough(t *testing.T) {
	agenttest.Require(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the README's walkthrough runs real curl; install curl")
	}
	dir, log := readmeServer(t)
	out := runBlock(t, dir, readmeBlock(t, "## A walk through the API with curl"), log)
	for _, want := range []string{`"name":"newtest.cr0wbar.com"`, `X-Total-Count: 1`, `"name":"test1"`, `"hello":"bob"`,
		`{"status":422,"message":"name 'localhost' must be a fully qualified domain name such as host.example.com","field":"name"}`} {
		if !strings.Contains(out, want) {
			t.Errorf("the walkthrough's output lacks %s:\n%s", want, out)
		}
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// crowbarBinary builds the crowbar binary once per test run.
func crowbarBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "crowbar-nodetest-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "crowbar")
		build := exec.Command("go", "build", "-o", binPath, "./cmd/crowbar")
		build.Dir = repoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}
