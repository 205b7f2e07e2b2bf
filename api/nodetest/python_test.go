package nodetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// python is Debian's interpreter, where python3-redis installs (make
// test-tools installs it).
const python = "/usr/bin/python3"

// TestZeroOSPythonClient drives an agent with the calls Zero-OS's Python
// client makes (testdata/zeroos_client.py): ping, system().get(),
// bash(stream=True).stream(cb), info.mem(), job.list/kill, process.list/kill,
// filesystem upload/download, with an admin's JWT from the server.
func TestZeroOSPythonClient(t *testing.T) {
	agenttest.Require(t)
	requirePython(t)
	st := storetest.Open(t, filepath.Join(t.TempDir(), "crowbar.db"))
	s := server(t, st)
	ag := s.StartAgent()
	tok, _, err := s.Auth.MintToken(&auth.Caller{Username: "admin", Role: auth.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(ag.Addr, ":")
	out, err := exec.Command(python, pythonScript(), host, port, tok, t.TempDir()).CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("the Python client failed: %v", err)
	}
	for _, check := range []string{"ping", "system", "bash stream", "info.mem", "job.list", "job.kill", "process.list",
		"process.kill", "filesystem upload/download", "unknown command"} {
		if !strings.Contains(string(out), "ok "+check+"\n") {
			t.Errorf("check %q did not pass", check)
		}
	}
}

func pythonScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "zeroos_client.py")
}

// requirePython skips (fails in CI) without Debian's python3-redis.
func requirePython(t *testing.T) {
	t.Helper()
	if err := exec.Command(python, "-c", "import redis").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s cannot import redis (make test-tools installs python3-redis): %v", python, err)
		}
		t.Skipf("skipped: %s cannot import redis; run make test-tools", python)
	}
}

// TestZeroOSPythonClientContainers: container.create(root, nics=…,
// port=…).get(), container.list(), container.client(id).system('ls
// /').get(), container.terminate(id), as Zero-OS's Python client calls them.
func TestZeroOSPythonClientContainers(t *testing.T) {
	requirePython(t)
	s, ag, _ := containerServer(t)
	tok, _, err := s.Auth.MintToken(&auth.Caller{Username: "admin", Role: auth.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(ag.Addr, ":")
	out, err := exec.Command(python, pythonScript(), host, port, tok, t.TempDir(), busyboxRoot(t)).CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("the Python client failed: %v", err)
	}
	for _, check := range []string{"container.create", "container.list", "container.client.system", "container.terminate"} {
		if !strings.Contains(string(out), "ok "+check+"\n") {
			t.Errorf("check %q did not pass", check)
		}
	}
}
