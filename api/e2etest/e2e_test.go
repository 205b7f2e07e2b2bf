// Package e2etest boots a machine end to end: inside a network namespace
// the test makes, a bridge, crowbar server with its boot services on it
// and a qemu VM that PXE-boots — DHCP, iPXE, crowbar's boot script, the
// discovery kernel and initramfs over HTTP — into the agent, which joins;
// the annealer then converges crowbar-managed-node on it and runs a
// script on it through its agent. make e2e runs it (CROWBAR_E2E=1) after
// building the server and the discovery image.
package e2etest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/client"
	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/vishvananda/netlink"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

const (
	vmMAC    = "52:54:05:3f:00:00" // the seed's d52-54-05-3f-00-00.smoke.test
	nodeName = "d52-54-05-3f-00-00.smoke.test"
	bridge   = "e2ebr0"
	tap      = "e2etap0"
	serverIP = "10.99.0.1"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// need returns path, failing when it is missing.
func need(t *testing.T, path, how string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing: %s", path, how)
	}
	return path
}

// network makes the admin network: a bridge with the server's address and
// a tap device for the VM on it.
func network(t *testing.T) {
	t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(br) }) //nolint:errcheck
	addr, _ := netlink.ParseAddr(serverIP + "/24")
	if err := netlink.AddrAdd(br, addr); err != nil {
		t.Fatal(err)
	}
	tp := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: tap, MasterIndex: br.Index}, Mode: netlink.TUNTAP_MODE_TAP,
		Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_ONE_QUEUE}
	if err := netlink.LinkAdd(tp); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(tp) }) //nolint:errcheck
	for _, l := range []netlink.Link{br, tp} {
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := netlink.LinkSetMaster(tp, br); err != nil {
		t.Fatal(err)
	}
}

// logFile is a file whose contents a failing test prints.
func logFile(t *testing.T, dir, name string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(f.Name())
			t.Logf("---- %s ----\n%s", name, b)
		}
	})
	return f
}

func TestPXEBootEndToEnd(t *testing.T) {
	if os.Getenv("CROWBAR_E2E") == "" {
		t.Skip("skipped: a VM boot takes a minute; make e2e runs it (CROWBAR_E2E=1)")
	}
	agenttest.Require(t)
	root := repoRoot()
	bin := need(t, filepath.Join(root, "bin", "crowbar"), "make build")
	files := need(t, filepath.Join(root, "bin", "files"), "make discovery-image")
	need(t, filepath.Join(files, "sledgehammer", "initrd0.img"), "make discovery-image")
	qemu := need(t, "/usr/bin/qemu-system-x86_64", "Debian's qemu-system-x86; make e2e-tools")
	need(t, "/usr/lib/ipxe/qemu/efi-virtio.rom", "Debian's ipxe-qemu; make e2e-tools")
	network(t)
	dir := t.TempDir()
	start := time.Now()

	srvLog := logFile(t, dir, "server.log")
	srv := exec.Command(bin, "server", "--data-dir", filepath.Join(dir, "data"), "--listen", serverIP+":3000",
		"--boot-interface", bridge, "--files-dir", files, "--default-domain", "smoke.test",
		"--agent-heartbeat", "2s", "--agent-dead-after", "10s", "--log-level", "debug")
	srv.Stdout, srv.Stderr = srvLog, srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Signal(os.Interrupt); srv.Wait() }) //nolint:errcheck
	base := "http://" + serverIP + ":3000"
	wait(t, 3*time.Minute, "the server is ready", func() (bool, string) {
		r, err := http.Get(base + "/ready")
		if err != nil {
			return false, err.Error()
		}
		r.Body.Close()
		return r.StatusCode == 200, r.Status
	})
	key, err := os.ReadFile(filepath.Join(dir, "data", "crowbar.install.key"))
	if err != nil {
		t.Fatal(err)
	}
	user, pass, _ := strings.Cut(strings.TrimSpace(string(key)), ":")
	c, err := client.New(base, client.Digest(user, pass))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	call := func(method, path string, body, out any) {
		t.Helper()
		if err := c.Do(ctx, client.Request{Method: method, Path: path, Body: body}, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	// The admin network is the bridge's; the discovery image joins with
	// the provisioner's join token.
	call("PUT", "/network/v2/networks/admin", map[string]any{"v4prefix": "10.99.0.0/24", "router": serverIP,
		"ranges": []map[string]string{{"name": "admin", "first": "10.99.0.10", "last": "10.99.0.11"},
			{"name": "dhcp", "first": "10.99.0.100", "last": "10.99.0.150"},
			{"name": "host", "first": "10.99.0.200", "last": "10.99.0.250"}}}, nil)
	var jt struct {
		Token string `json:"token"`
	}
	call("POST", "/api/v2/join_tokens", map[string]any{"ttl": "1h", "description": "e2e discovery"}, &jt)
	call("PUT", "/provisioner/v2/settings", map[string]any{"join_token": jt.Token}, nil)

	console := filepath.Join(dir, "console.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(console)
			t.Logf("---- VM serial console ----\n%s", b)
		}
	})
	qemuLog := logFile(t, dir, "qemu.log")
	accel := "tcg" // KVM fails inside iPXE on these machines; TCG works everywhere
	if v := os.Getenv("CROWBAR_E2E_ACCEL"); v != "" {
		accel = v
	}
	vm := exec.Command(qemu, "-accel", accel, "-m", "512", "-smp", "1", "-display", "none", "-monitor", "none",
		"-serial", "file:"+console, "-no-reboot", "-boot", "n",
		"-netdev", "tap,id=n0,ifname="+tap+",script=no,downscript=no", "-device", "virtio-net-pci,netdev=n0,mac="+vmMAC)
	vm.Stdout, vm.Stderr = qemuLog, qemuLog
	powerOn := time.Now()
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Process.Kill(); vm.Wait() }) //nolint:errcheck

	// Power-on → a node named from the VM's MAC, alive, with its hardware.
	var node map[string]any
	wait(t, 6*time.Minute, "the VM's node is alive", func() (bool, string) {
		node = nil
		err := c.Do(ctx, client.Request{Method: "GET", Path: "/api/v2/nodes/" + nodeName}, &node)
		if err != nil {
			return false, err.Error()
		}
		return node["alive"] == true, fmt.Sprintf("alive=%v", node["alive"])
	})
	alive := time.Since(powerOn)
	disc, _ := json.Marshal(node["discovery"])
	for _, want := range []string{`"mac":"` + vmMAC + `"`, `"hardware"`, `"agent"`} {
		if !strings.Contains(string(disc), want) {
			t.Errorf("discovery data lacks %s: %s", want, disc)
		}
	}

	// The annealer converges the discovery roles on it: an admin address
	// allocated, and reserved for its MAC in DHCP.
	wait(t, 3*time.Minute, "crowbar-managed-node is ACTIVE on the VM", func() (bool, string) {
		nrs, err := c.NodeNodeRoles(ctx, nodeName)
		if err != nil {
			return false, err.Error()
		}
		var states []string
		active := false
		for _, nr := range nrs {
			var r map[string]any
			c.Do(ctx, client.Request{Method: "GET", Path: fmt.Sprintf("/api/v2/roles/%v", nr["role_id"])}, &r) //nolint:errcheck
			states = append(states, fmt.Sprintf("%v=%v", r["name"], nr["state"]))
			if r["name"] == "crowbar-managed-node" && nr["state"] == 0.0 {
				active = true
			}
		}
		return active, strings.Join(states, " ")
	})
	converged := time.Since(powerOn)
	var plan struct {
		Reservations []struct{ MAC, Address string }
	}
	call("GET", "/provisioner/v2/dhcp/config", nil, &plan)
	reserved := ""
	for _, r := range plan.Reservations {
		if r.MAC == vmMAC {
			reserved = r.Address
		}
	}
	if !strings.HasPrefix(reserved, "10.99.0.2") {
		t.Errorf("the VM's admin address is not reserved in DHCP: %+v", plan.Reservations)
	}

	// crowbar acts on the machine: a command through its agent.
	var mem []map[string]any
	call("GET", "/zero-os/v2/nodes/"+strings.ReplaceAll(vmMAC, ":", "")+"/mem", nil, &mem)
	if len(mem) != 1 || mem[0]["total"] == nil {
		t.Errorf("the VM's memory through its agent: %v", mem)
	}
	// A role that runs a script on the machine (the script jig, through
	// its agent): a test barclamp built from source, installed by upload.
	wasm := filepath.Join(dir, "scriptjig.wasm")
	if out, err := exec.Command(bin, "barclamp", "build", filepath.Join(root, "plugins", "testdata", "scriptjig"), "-o", wasm).CombinedOutput(); err != nil {
		t.Fatalf("build the scriptjig barclamp: %v\n%s", err, out)
	}
	module, _ := os.ReadFile(wasm)
	err = c.Do(ctx, client.Request{Method: "POST", Path: "/api/v2/barclamps", Body: module,
		Header: http.Header{"Content-Type": {"application/wasm"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	call("PUT", "/api/v2/deployments/system/barclamps/scriptjig", nil, nil)
	nr, err := c.Bind(ctx, "sj-uname", nodeName, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CommitNode(ctx, nodeName); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	wait(t, 2*time.Minute, "sj-uname is ACTIVE on the VM", func() (bool, string) {
		got = nil
		if err := c.Do(ctx, client.Request{Method: "GET", Path: fmt.Sprintf("/api/v2/node_roles/%v", nr["id"])}, &got); err != nil {
			return false, err.Error()
		}
		return got["state"] == 0.0, fmt.Sprintf("state %v: %v", got["state"], got["runlog"])
	})
	wall, _ := json.Marshal(got["wall"])
	if !strings.Contains(string(wall), `"kernel":"6.`) || !strings.Contains(fmt.Sprint(got["runlog"]), "running on") {
		t.Errorf("the script's wall data and run log: %s, %v", wall, got["runlog"])
	}
	scripted := time.Since(powerOn)

	// The path it took: DHCP for iPXE, the boot script, the image over
	// HTTP, a lease for the booted kernel.
	srvLog.Sync() //nolint:errcheck
	logged, _ := os.ReadFile(srvLog.Name())
	for _, want := range []string{"DHCP lease: mac=" + vmMAC, "path=/sledgehammer/vmlinuz0", "path=/sledgehammer/initrd0.img",
		"/provisioner/v2/nodes/" + vmMAC + "/ipxe", "discovered node: discovery roles bound and committed"} {
		if !strings.Contains(string(logged), want) {
			t.Errorf("the server log lacks %q", want)
		}
	}
	t.Logf("figures (TCG, %d cores): power-on → node alive %.1f s, → crowbar-managed-node converged %.1f s, → a script role ACTIVE on it %.1f s; whole test %.1f s",
		runtime.NumCPU(), alive.Seconds(), converged.Seconds(), scripted.Seconds(), time.Since(start).Seconds())
}

// wait polls cond every second until it holds, failing after d with its
// last report.
func wait(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, report := cond()
		if ok {
			return
		}
		if report != last {
			t.Logf("waiting until %s: %s", what, report)
			last = report
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, d, report)
		}
		time.Sleep(time.Second)
	}
}
