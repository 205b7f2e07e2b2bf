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
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzzworker") {
			// A fuzzing worker: its coordinator is in the namespace already
			// and talks to it over pipes a re-run would lose.
			os.Exit(m.Run())
		}
	}
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

// reexec runs this test binary again in a new network namespace.
func reexec() int {
	env := append(os.Environ(), envNetns+"=inside")
	if pg := os.Getenv("CROWBAR_TEST_POSTGRES"); pg != "" {
		env = append(env, "CROWBAR_TEST_POSTGRES="+viaSocket(pg))
	}
	attempts := []*syscall.SysProcAttr{{Cloneflags: syscall.CLONE_NEWNET}}
	if os.Getuid() != 0 {
		// Without root, a user namespace (where allowed) grants the right
		// to make a network namespace.
		attempts = []*syscall.SysProcAttr{{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		}}
	}
	var startErr error
	for _, attr := range attempts {
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = env
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = attr
		err := cmd.Start()
		if err != nil {
			startErr = err
			continue
		}
		if err := cmd.Wait(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode()
			}
			fmt.Fprintln(os.Stderr, "agenttest:", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "agenttest: cannot make a network namespace (%v): tests that need one will skip\n", startErr)
	os.Setenv(envNetns, "unavailable: "+startErr.Error()) //nolint:errcheck
	return -1                                             // never used: the caller runs the tests here
}

// viaSocket points a PostgreSQL URL on this host at the server's Unix
// socket, which stays reachable from another network namespace.
func viaSocket(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return dsn
	}
	for _, dir := range []string{"/var/run/postgresql", "/run/postgresql", "/tmp"} {
		if _, err := os.Stat(filepath.Join(dir, ".s.PGSQL."+port)); err == nil {
			q := u.Query()
			q.Set("host", dir)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn
}

func setupNetns() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	// A veth pair whose one end carries DummyMAC: a host with an interface
	// for agents to find their MAC on.
	mac, _ := net.ParseMAC(DummyMAC)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "cbtest0", HardwareAddr: mac}, PeerName: "cbtest1"}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("add a veth pair: %w", err)
	}
	for _, name := range []string{"cbtest0", "cbtest1"} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
	}
	l, _ := netlink.LinkByName("cbtest0")
	addr, _ := netlink.ParseAddr("192.0.2.10/24")
	if err := netlink.AddrAdd(l, addr); err != nil {
		return err
	}
	// The default route goes through it, so agents take its MAC as theirs.
	return netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP("192.0.2.1")})
}

// Require skips t unless the tests run in their own network namespace.
func Require(t testing.TB) {
	t.Helper()
	if v := os.Getenv(envNetns); v != "inside" {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs as root, so agent tests must run in a network namespace; got %q", v)
		}
		t.Skipf("skipped: needs a private network namespace (run as root, or allow user namespaces): %s", v)
	}
}
