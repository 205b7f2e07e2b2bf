package nodetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// TestZeroOSCLI: crowbar zero-os nodes|containers|jobs|processes against a
// server with the zero-os barclamp and an agent.
func TestZeroOSCLI(t *testing.T) {
	st := storetest.Open(t, filepath.Join(t.TempDir(), "crowbar.db"))
	s := zeroOSServer(t, st)
	s.StartAgent(func(c *agent.Config) { c.MAC = "52:54:00:12:34:56" })
	bin := crowbarBinary(t)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "CROWBAR_ENDPOINT="+s.URL, "CROWBAR_TOKEN="+s.Token, "CROWBAR_KEY=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("crowbar %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("zero-os", "nodes", "list", "--format", "table"); !strings.Contains(out, "525400123456") || !strings.Contains(out, "running") {
		t.Fatalf("nodes list: %s", out)
	}
	if out := run("zero-os", "nodes", "mem", "525400123456"); !strings.Contains(out, `"usedPercent"`) {
		t.Fatalf("nodes mem: %s", out)
	}
	root := busyboxRoot(t)
	run("zero-os", "containers", "create", "525400123456", `{"name": "cli1", "flist": "`+root+`", "nics": [{"type": "default"}]}`)
	defer run("zero-os", "containers", "destroy", "525400123456", "cli1")
	if out := run("zero-os", "containers", "list", "525400123456", "--format", "table"); !strings.Contains(out, "cli1") || !strings.Contains(out, "running") {
		t.Fatalf("containers list: %s", out)
	}
	run("zero-os", "processes", "start", "525400123456", `{"name": "/bin/sleep", "args": ["123"]}`, "--container", "cli1")
	if out := run("zero-os", "processes", "list", "525400123456", "--container", "cli1"); !strings.Contains(out, "sleep 123") {
		t.Fatalf("processes list: %s", out)
	}
	if out := run("zero-os", "jobs", "list", "525400123456", "--container", "cli1"); !strings.Contains(out, `"startTime"`) {
		t.Fatalf("jobs list: %s", out)
	}
	run("zero-os", "containers", "stop", "525400123456", "cli1")
	if out := run("zero-os", "containers", "show", "525400123456", "cli1"); !strings.Contains(out, `"halted"`) {
		t.Fatalf("after stop: %s", out)
	}
	cmd := exec.Command(bin, "zero-os", "nodes", "show", "000000000000")
	cmd.Env = append(os.Environ(), "CROWBAR_ENDPOINT="+s.URL, "CROWBAR_TOKEN="+s.Token, "CROWBAR_KEY=")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.Contains(string(out), "not found") {
		t.Fatalf("an unknown node: %v %s", err, out)
	}
}
