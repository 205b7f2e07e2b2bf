package nodetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// busybox is Debian's busybox-static (make test-tools installs it).
const busybox = "/bin/busybox"

// busyboxRoot builds a root filesystem from busybox-static: the binary and
// a relative symlink per applet the tests use.
func busyboxRoot(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(busybox); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (make test-tools installs busybox-static)", busybox)
		}
		t.Skipf("skipped: %s is missing; run make test-tools", busybox)
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "etc", "www", "root", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "ls", "cat", "echo", "ping", "hostname", "sleep", "ps", "httpd", "wget", "ip", "true", "id", "kill"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "www", "index.html"), []byte("hello from a container\n"), 0o644) //nolint:errcheck
	return root
}

// containerServer is a server with a joined agent for container tests.
func containerServer(t *testing.T) (*apitest.Server, *apitest.Agent, *core0.Client) {
	t.Helper()
	agenttest.Require(t)
	st := storetest.Open(t, filepath.Join(t.TempDir(), "crowbar.db"))
	s := server(t, st)
	ag := s.StartAgent()
	c := s.AgentClient(ag)
	t.Cleanup(func() { terminateContainers(c) })
	return s, ag, c
}

// terminateContainers ends every container of c's agent: containers
// outlive their agent by design, so tests end theirs.
func terminateContainers(c *core0.Client) {
	var list map[string]any
	if c.JSON(context.Background(), "corex.list", struct{}{}, &list) == nil {
		for id := range list {
			c.JSON(context.Background(), "corex.terminate", map[string]any{"container": json.Number(id)}, nil) //nolint:errcheck
		}
	}
}

// inContainer runs a command in container id through corex.dispatch and
// returns its result, as Zero-OS's ContainerClient does.
func inContainer(t *testing.T, c *core0.Client, id int, command string, args any) *core0.Result {
	t.Helper()
	b, _ := json.Marshal(args)
	var jobID string
	err := c.JSON(ctx(t), "corex.dispatch", map[string]any{"container": id,
		"command": core0.Command{Command: command, Arguments: b}}, &jobID)
	if err != nil {
		t.Fatalf("dispatch %s: %v", command, err)
	}
	r, err := c.Result(ctx(t), jobID)
	if err != nil {
		t.Fatalf("result of %s in container %d: %v", command, id, err)
	}
	if r.Container != id {
		t.Errorf("result of %s carries container %d, want %d", command, r.Container, id)
	}
	return r
}

func sh(t *testing.T, c *core0.Client, id int, script string) string {
	t.Helper()
	r := inContainer(t, c, id, "bash", core0.BashArgs{Script: script})
	if r.State != core0.StateSuccess {
		t.Fatalf("%q in container %d: %+v", script, id, r)
	}
	return r.Stdout()
}

// hostLinks returns the names of the network interfaces on the host side.
func hostLinks(t *testing.T) []string {
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	return out
}

// TestContainers creates containers with each supported nic type, runs
// commands inside, reaches a forwarded port, and terminates them leaving
// nothing behind.
func TestContainers(t *testing.T) {
	_, ag, c := containerServer(t)
	root := busyboxRoot(t)
	linksBefore := strings.Join(hostLinks(t), ",")

	var id int
	err := c.JSON(ctx(t), "corex.create", agent.CreateArgs{Root: root, Name: "web", Hostname: "web1",
		Nics: []agent.Nic{{Type: "default"}}, Port: map[string]int{"18080": 8080}, Env: map[string]string{"ROLE": "web"}}, &id)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(sh(t, c, id, "hostname; echo $ROLE")); got != "web1\nweb" {
		t.Fatalf("hostname and env: %q", got)
	}
	// Its own PID namespace: the shell's parent is the container's init.
	if ps := inContainer(t, c, id, "core.system", core0.SystemArgs{Name: "sh", Args: []string{"-c", "echo $PPID"}}); strings.TrimSpace(ps.Stdout()) != "1" {
		t.Fatalf("the container's init is not pid 1: %q", ps.Stdout())
	}
	// process.list inside shows the container's processes only.
	var procs []core0.Process
	inner := inContainer(t, c, id, "process.list", map[string]any{"pid": nil})
	json.Unmarshal([]byte(inner.Data), &procs) //nolint:errcheck
	if len(procs) == 0 || len(procs) > 5 || procs[0].PID != 1 {
		t.Fatalf("process.list in a container: %+v", procs)
	}
	// job.list inside: the dispatched job itself.
	if jl := inContainer(t, c, id, "job.list", map[string]any{"id": nil}); jl.State != core0.StateSuccess || !strings.Contains(jl.Data, "job.list") {
		t.Fatalf("job.list in a container: %+v", jl)
	}
	// Its own root: the host's files are not there.
	if out := sh(t, c, id, "ls /; ls /www"); !strings.Contains(out, "index.html") || strings.Contains(out, "usr") {
		t.Fatalf("the container's root: %q", out)
	}
	// A forwarded port, reached from the host.
	inContainer(t, c, id, "core.system", core0.SystemArgs{Name: "httpd", Args: []string{"-p", "8080", "-h", "/www"}})
	var body string
	waitFor(t, func() bool {
		resp, err := http.Get("http://127.0.0.1:18080/index.html")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == 200
	})
	if body != "hello from a container\n" {
		t.Fatalf("forwarded port answered %q", body)
	}
	// Masquerading for the range, where the kernel has nf_tables.
	if nft, err := nftables.New(); err == nil {
		tables, err := nft.ListTablesOfFamily(nftables.TableFamilyIPv4)
		switch {
		case err != nil:
			t.Logf("nf_tables is not available here, NAT not checked: %v", err)
		case !strings.Contains(fmt.Sprint(tableNames(tables)), "crowbar_agent"):
			t.Errorf("no crowbar_agent nftables table: %v", tableNames(tables))
		}
	}
	// The gateway (the agent's bridge) answers pings.
	if out := sh(t, c, id, "ping -c 1 -W 5 172.31.0.1"); !strings.Contains(out, "1 packets received") {
		t.Fatalf("ping the gateway: %q", out)
	}

	// A second container on a host bridge with a static address, and a macvlan.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "testbr0"}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(br) }) //nolint:errcheck
	netlink.LinkSetUp(br)                     //nolint:errcheck
	addr, _ := netlink.ParseAddr("198.51.100.1/24")
	netlink.AddrAdd(br, addr) //nolint:errcheck
	var id2 int
	err = c.JSON(ctx(t), "corex.create", agent.CreateArgs{Root: root, Name: "static", Nics: []agent.Nic{
		{Type: "bridge", ID: "testbr0", HWAddr: "02:00:00:aa:bb:cc", Config: &agent.NicConfig{CIDR: "198.51.100.7/24", Gateway: "198.51.100.1", DNS: []string{"198.51.100.53"}}},
		{Type: "macvlan", ID: "cbtest0", Name: "mv0", Config: &agent.NicConfig{CIDR: "192.0.2.77/24"}},
	}}, &id2)
	if err != nil {
		t.Fatal(err)
	}
	out := sh(t, c, id2, "ip addr; cat /etc/resolv.conf; ping -c 1 -W 5 198.51.100.1")
	for _, want := range []string{"198.51.100.7/24", "02:00:00:aa:bb:cc", "192.0.2.77/24", "nameserver 198.51.100.53", "1 packets received"} {
		if !strings.Contains(out, want) {
			t.Errorf("container on a bridge: %q lacks %q", out, want)
		}
	}

	// host_network: the host's interfaces.
	var id3 int
	if err := c.JSON(ctx(t), "corex.create", agent.CreateArgs{Root: root, HostNetwork: true}, &id3); err != nil {
		t.Fatal(err)
	}
	if out := sh(t, c, id3, "ip link"); !strings.Contains(out, "cbtest0") {
		t.Fatalf("host_network container does not see the host's interfaces: %q", out)
	}

	// list, get, find.
	var list map[string]map[string]map[string]any
	if err := c.JSON(ctx(t), "corex.list", struct{}{}, &list); err != nil || len(list) != 3 {
		t.Fatalf("corex.list: %v %v", list, err)
	}
	if list[fmt.Sprint(id)]["container"]["status"] != "running" || list[fmt.Sprint(id)]["container"]["name"] != "web" {
		t.Fatalf("corex.list entry: %v", list[fmt.Sprint(id)])
	}
	var got map[string]map[string]any
	if err := c.JSON(ctx(t), "corex.get", map[string]any{"query": "static"}, &got); err != nil || got["container"]["id"].(float64) != float64(id2) {
		t.Fatalf("corex.get by name: %v %v", got, err)
	}
	if _, err := c.Call(ctx(t), "corex.get", map[string]any{"query": "nope"}); !errors.Is(err, core0.ErrJobFailed) {
		t.Fatalf("corex.get of a missing container: %v", err)
	}

	// Terminate: no process, link or directory left.
	var pids []int
	for _, entry := range list {
		pids = append(pids, int(entry["container"]["pid"].(float64)))
	}
	for _, cid := range []int{id, id2, id3} {
		if err := c.JSON(ctx(t), "corex.terminate", map[string]any{"container": cid}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var after map[string]any
	if err := c.JSON(ctx(t), "corex.list", struct{}{}, &after); err != nil || len(after) != 0 {
		t.Fatalf("after terminate: %v %v", after, err)
	}
	links := strings.Join(hostLinks(t), ",")
	if strings.Contains(links, "cx") || strings.Contains(links, "cy") {
		t.Fatalf("links left behind: %s (before: %s)", links, linksBefore)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Fatalf("container init %d is still running", pid)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(ag.Config.StateDir, "containers"))
	if len(entries) != 0 {
		t.Fatalf("container directories left: %v", entries)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), ag.Config.StateDir) {
		t.Fatalf("mounts left under the agent's state dir:\n%s", mounts)
	}
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:18080", time.Second); err == nil {
		conn.Close()
		t.Fatal("the port forward outlived its container")
	}
}

func tableNames(ts []*nftables.Table) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out
}
