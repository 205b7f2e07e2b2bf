// Package agenttest runs tests that start real agents inside a network
// namespace of their own, so nothing they listen on, link or route ever
// touches the machine's network: TestMain re-runs the test binary in a new
// network namespace (as root, or in a user namespace where the kernel
// allows one) with loopback up and a dummy interface that gives joining
// agents a MAC. PostgreSQL is reached through its Unix socket there.
package agenttest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vishvananda/netlink"
)

const envNetns = "CROWBAR_TEST_NETNS"

// DummyMAC is the MAC of the dummy interface in the test namespace.
const DummyMAC = "52:54:00:c0:ff:ee"

// Main runs m inside a private network namespace and exits with its code.
// Where no namespace can be made, the tests run here and Require skips the
// ones that need it, saying why.
func Main(m *testing.M) {
	switch os.Getenv(envNetns) {
	case "":
		if code := reexec(); code >= 0 {
			os.Exit(code)
		}
	case "inside":
		if err := setupNetns(); err != nil {
			fmt.Fprintln(os.Stderr, "agenttest: set up the test network namespace:", err)
			os.Exit(1)
		}
		// Containers outlive their agent by design; as the subreaper, this
		// process inherits those a killed test agent left and ends them.
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) //nolint:errcheck
		code := m.Run()
		killContainers()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// killContainers ends the containers' inits among this process's children.
func killContainers() {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	me := strconv.Itoa(os.Getpid())
	for _, p := range procs {
		cmdline, err := os.ReadFile(p + "/cmdline")
		if err != nil || !strings.HasPrefix(string(cmdline), "corex-") {
			continue
		}
		stat, _ := os.ReadFile(p + "/stat")
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if f := strings.Fields(s[i+1:]); i >= 0 && len(f) > 1 && f[1] == me {
			pid, _ := strconv.Atoi(filepath.Base(p))
			unix.Kill(pid, unix.SIGKILL) //nolint:errcheck
		}
	}
}
