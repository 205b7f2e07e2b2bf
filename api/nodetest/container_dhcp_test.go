package nodetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/vishvananda/netlink"
)

// dnsmasq is Debian's (make test-tools installs dnsmasq-base).
const dnsmasq = "/usr/sbin/dnsmasq"

// TestContainerDHCP: a bridge nic with config.dhcp gets its address,
// router and name server from a real DHCP server (dnsmasq) on that bridge.
func TestContainerDHCP(t *testing.T) {
	_, _, c := containerServer(t)
	if _, err := os.Stat(dnsmasq); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (make test-tools installs dnsmasq-base)", dnsmasq)
		}
		t.Skipf("skipped: %s is missing; run make test-tools", dnsmasq)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "dhcpbr0"}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(br) }) //nolint:errcheck
	addr, _ := netlink.ParseAddr("203.0.113.1/24")
	if err := netlink.AddrAdd(br, addr); err != nil {
		t.Fatal(err)
	}
	netlink.LinkSetUp(br) //nolint:errcheck
	dir := t.TempDir()
	d := exec.Command(dnsmasq, "--no-daemon", "--conf-file=/dev/null", "--interface=dhcpbr0", "--bind-interfaces",
		"--except-interface=lo", "--port=0", "--no-ping", "--dhcp-range=203.0.113.100,203.0.113.150,255.255.255.0,1h",
		"--dhcp-option=option:router,203.0.113.1", "--dhcp-option=option:dns-server,203.0.113.53",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "pid"), "--user=root")
	var log strings.Builder
	d.Stdout, d.Stderr = &log, &log
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Process.Kill(); d.Wait() }) //nolint:errcheck

	var id int
	err := c.JSON(ctx(t), "corex.create", agent.CreateArgs{Root: busyboxRoot(t), Nics: []agent.Nic{
		{Type: "bridge", ID: "dhcpbr0", Config: &agent.NicConfig{DHCP: true}}}}, &id)
	if err != nil {
		t.Fatalf("%v\ndnsmasq: %s", err, log.String())
	}
	out := sh(t, c, id, "ip -4 addr show eth0; ip route; cat /etc/resolv.conf; ping -c 1 -W 5 203.0.113.1")
	for _, want := range []string{"inet 203.0.113.1", "default via 203.0.113.1", "nameserver 203.0.113.53", "1 packets received"} {
		if !strings.Contains(out, want) {
			t.Errorf("container with a DHCP nic: %q lacks %q", out, want)
		}
	}
	leases, _ := os.ReadFile(filepath.Join(dir, "leases"))
	if !strings.Contains(string(leases), "203.0.113.1") {
		t.Errorf("dnsmasq recorded no lease: %q", leases)
	}
}
