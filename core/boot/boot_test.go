package boot_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/crowbar-go/crowbar/core/boot"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"
	"github.com/vishvananda/netlink"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

const (
	reservedMAC = "52:54:00:aa:00:01"
	bootURL     = "http://10.77.0.1:3000/provisioner/v2/boot.ipxe"
)

// plans is a plan source a test can change while the server runs.
type plans struct {
	mu   sync.Mutex
	plan boot.Plan
	err  error
}

func (p *plans) get(context.Context) (*boot.Plan, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	cp := p.plan
	cp.Reservations = append([]boot.Reservation(nil), p.plan.Reservations...)
	return &cp, nil
}

func (p *plans) update(fn func(*boot.Plan)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(&p.plan)
}

func newPlans() *plans {
	return &plans{plan: boot.Plan{Subnet: "10.77.0.0/24", Router: "10.77.0.1", DNSServers: []string{"10.77.0.53"},
		Domain: "smoke.test", LeaseSeconds: 600, Pool: []boot.Range{{First: "10.77.0.100", Last: "10.77.0.101"}},
		Reservations: []boot.Reservation{{MAC: reservedMAC, Address: "10.77.0.20", Hostname: "d52-54-00-aa-00-01"}},
		BootFile:     "undionly.kpxe", BootFileEFI: "ipxe.efi", BootURL: bootURL}}
}

// link makes a veth pair in the test's namespace: the server's end with
// 10.77.0.1/24, the clients' end without an address.
func link(t *testing.T) (server, client string) {
	t.Helper()
	agenttest.Require(t)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "bootsrv0"}, PeerName: "bootcli0"}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(v) }) //nolint:errcheck
	for _, n := range []string{"bootsrv0", "bootcli0"} {
		l, _ := netlink.LinkByName(n)
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := netlink.LinkByName("bootsrv0")
	a, _ := netlink.ParseAddr("10.77.0.1/24")
	if err := netlink.AddrAdd(l, a); err != nil {
		t.Fatal(err)
	}
	return "bootsrv0", "bootcli0"
}

func client(t *testing.T, iface, mac string) *nclient4.Client {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	c, err := nclient4.New(iface, nclient4.WithHWAddr(hw), nclient4.WithTimeout(time.Second), nclient4.WithRetry(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() }) //nolint:errcheck
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestDHCPServer runs the server on a real interface and talks to it with
// a real client: reservations, PXE and iPXE boot options, the pool, its
// exhaustion, a lease kept across a restart, a reservation added while
// serving.
func TestDHCPServer(t *testing.T) {
	srvIf, cliIf := link(t)
	src := newPlans()
	dir := t.TempDir()
	start := func() *boot.Services {
		s, err := boot.Start(boot.Config{Interface: srvIf, Plan: src.get, DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start()
	defer func() { s.Close() }()

	t.Run("reserved address and PXE options", func(t *testing.T) {
		c := client(t, cliIf, reservedMAC)
		lease, err := c.Request(ctx(t), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
		if err != nil {
			t.Fatal(err)
		}
		ack := lease.ACK
		checks := map[string][2]string{
			"address":        {ack.YourIPAddr.String(), "10.77.0.20"},
			"mask":           {net.IP(ack.SubnetMask()).String(), "255.255.255.0"},
			"router":         {ack.Router()[0].String(), "10.77.0.1"},
			"dns":            {ack.DNS()[0].String(), "10.77.0.53"},
			"domain":         {ack.DomainName(), "smoke.test"},
			"hostname":       {ack.HostName(), "d52-54-00-aa-00-01"},
			"server id":      {ack.ServerIdentifier().String(), "10.77.0.1"},
			"siaddr":         {ack.ServerIPAddr.String(), "10.77.0.1"},
			"option 66":      {ack.TFTPServerName(), "10.77.0.1"},
			"option 67":      {ack.BootFileNameOption(), "undionly.kpxe"},
			"file":           {ack.BootFileName, "undionly.kpxe"},
			"lease (offer)":  {lease.Offer.IPAddressLeaseTime(0).String(), "10m0s"},
			"message (type)": {ack.MessageType().String(), "ACK"},
		}
		for what, c := range checks {
			if c[0] != c[1] {
				t.Errorf("%s: got %q, want %q", what, c[0], c[1])
			}
		}
	})
	t.Run("UEFI PXE gets the EFI binary", func(t *testing.T) {
		c := client(t, cliIf, reservedMAC)
		offer, err := c.DiscoverOffer(ctx(t), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
		if err != nil {
			t.Fatal(err)
		}
		if got := offer.BootFileNameOption(); got != "ipxe.efi" {
			t.Errorf("option 67 for arch 7: %q, want ipxe.efi", got)
		}
	})
	t.Run("iPXE (option 175) gets the boot script URL", func(t *testing.T) {
		c := client(t, cliIf, reservedMAC)
		offer, err := c.DiscoverOffer(ctx(t), dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{0xb1, 1, 1}),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")))
		if err != nil {
			t.Fatal(err)
		}
		if got := offer.BootFileNameOption(); got != bootURL {
			t.Errorf("option 67 for iPXE: %q, want %q", got, bootURL)
		}
	})
	t.Run("a plain client gets no boot options", func(t *testing.T) {
		c := client(t, cliIf, reservedMAC)
		offer, err := c.DiscoverOffer(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if got := offer.BootFileNameOption(); got != "" || offer.BootFileName != "" {
			t.Errorf("a non-PXE client was offered boot file %q/%q", got, offer.BootFileName)
		}
	})

	var first string
	t.Run("unknown MACs get pool addresses, then the pool is exhausted", func(t *testing.T) {
		got := map[string]bool{}
		for _, mac := range []string{"52:54:00:bb:00:01", "52:54:00:bb:00:02"} {
			lease, err := client(t, cliIf, mac).Request(ctx(t))
			if err != nil {
				t.Fatalf("%s: %v", mac, err)
			}
			got[lease.ACK.YourIPAddr.String()] = true
			if first == "" {
				first = lease.ACK.YourIPAddr.String()
			}
		}
		if !got["10.77.0.100"] || !got["10.77.0.101"] {
			t.Errorf("pool leases: %v, want 10.77.0.100 and .101", got)
		}
		if _, err := client(t, cliIf, "52:54:00:bb:00:03").DiscoverOffer(ctx(t)); err == nil {
			t.Error("a third unknown MAC was offered an address from a pool of two")
		}
		if l := s.DHCP.Leases(); len(l) != 2 || l["52:54:00:bb:00:01"] != first {
			t.Errorf("leases held: %v", l)
		}
	})
	t.Run("a lease is kept across a restart", func(t *testing.T) {
		s.Close()
		s = start()
		lease, err := client(t, cliIf, "52:54:00:bb:00:01").Request(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if got := lease.ACK.YourIPAddr.String(); got != first {
			t.Errorf("after a restart the client got %s, want its lease %s", got, first)
		}
	})
	t.Run("a reservation added while serving", func(t *testing.T) {
		src.update(func(p *boot.Plan) {
			p.Reservations = append(p.Reservations, boot.Reservation{MAC: "52:54:00:bb:00:03", Address: "10.77.0.30"})
		})
		deadline := time.Now().Add(10 * time.Second)
		for {
			offer, err := client(t, cliIf, "52:54:00:bb:00:03").DiscoverOffer(ctx(t))
			if err == nil && offer.YourIPAddr.String() == "10.77.0.30" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the new reservation was not served: %v %v", offer, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

func request(mac string, msg dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	hw, _ := net.ParseMAC(mac)
	m, _ := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(msg)}, mods...)...)
	return m
}

var self = netip.MustParseAddr("10.77.0.1")

// TestDHCPHandle covers the decisions without sockets: requests for
// addresses a client does not hold, another server's offer taken, a
// release, a plan that cannot be read, proxy-DHCP.
func TestDHCPHandle(t *testing.T) {
	src := newPlans()
	d, err := boot.NewDHCP(boot.DHCPConfig{Interface: "unused", Plan: src.get})
	if err != nil {
		t.Fatal(err)
	}
	c := context.Background()
	mac := "52:54:00:cc:00:01"

	resp := d.Handle(c, request(mac, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.50")))), self)
	if resp == nil || resp.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("a request for an address outside the pool: %v, want NAK", resp)
	}
	resp = d.Handle(c, request(mac, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.20")))), self)
	if resp == nil || resp.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("a request for another MAC's reservation: %v, want NAK", resp)
	}
	offer := d.Handle(c, request(mac, dhcpv4.MessageTypeDiscover), self)
	if offer == nil || offer.YourIPAddr.String() != "10.77.0.100" {
		t.Fatalf("offer: %v", offer)
	}
	other := d.Handle(c, request(mac, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.77.0.2"))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.200")))), self)
	if other != nil {
		t.Errorf("a request naming another server was answered: %v", other)
	}
	// The offer was dropped: the next client gets .100.
	if o := d.Handle(c, request("52:54:00:cc:00:02", dhcpv4.MessageTypeDiscover), self); o == nil || o.YourIPAddr.String() != "10.77.0.100" {
		t.Errorf("after the client took another offer, .100 is still held: %v", o)
	}
	ack := d.Handle(c, request("52:54:00:cc:00:02", dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(self.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.100")))), self)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("request of the offered address: %v", ack)
	}
	d.Handle(c, request("52:54:00:cc:00:02", dhcpv4.MessageTypeRelease), self)
	if l := d.Leases(); len(l) != 0 {
		t.Errorf("after a release: leases %v", l)
	}

	// A plan that cannot be read after a good one: the last good plan
	// still serves.
	src.mu.Lock()
	src.err = errors.New("database down")
	src.mu.Unlock()
	if o := d.Handle(c, request(reservedMAC, dhcpv4.MessageTypeDiscover), self); o == nil || o.YourIPAddr.String() != "10.77.0.20" {
		t.Errorf("with the plan source down: %v", o)
	}
	fresh, _ := boot.NewDHCP(boot.DHCPConfig{Interface: "unused", Plan: src.get})
	if o := fresh.Handle(c, request(reservedMAC, dhcpv4.MessageTypeDiscover), self); o != nil {
		t.Errorf("no plan ever read, yet an offer: %v", o)
	}
	src.mu.Lock()
	src.err = nil
	src.mu.Unlock()

	t.Run("proxy", func(t *testing.T) {
		p, _ := boot.NewDHCP(boot.DHCPConfig{Interface: "unused", Proxy: true, Plan: src.get})
		if o := p.Handle(c, request(mac, dhcpv4.MessageTypeDiscover), self); o != nil {
			t.Errorf("proxy-DHCP answered a non-PXE client: %v", o)
		}
		o := p.Handle(c, request(mac, dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"))), self)
		if o == nil {
			t.Fatal("proxy-DHCP did not answer a PXE client")
		}
		if !o.YourIPAddr.IsUnspecified() || o.ClassIdentifier() != "PXEClient" || o.BootFileNameOption() != "undionly.kpxe" || o.ServerIPAddr.String() != "10.77.0.1" {
			t.Errorf("proxy offer: yiaddr %s, class %q, file %q, siaddr %s", o.YourIPAddr, o.ClassIdentifier(), o.BootFileNameOption(), o.ServerIPAddr)
		}
		if o := p.Handle(c, request(mac, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient"))), self); o != nil {
			t.Errorf("proxy-DHCP answered a request on port 67: %v", o)
		}
	})
}

func TestTFTP(t *testing.T) {
	root := t.TempDir()
	want := bytes.Repeat([]byte("ipxe"), 10000) // 40 kB: many blocks
	if err := os.WriteFile(filepath.Join(root, "undionly.kpxe"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(filepath.Dir(root), "secret"), []byte("no"), 0o644) //nolint:errcheck
	srv, err := boot.NewTFTP(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(conn) //nolint:errcheck
	defer srv.Close()
	c, err := tftp.NewClient(conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(1)
	get := func(name string) ([]byte, error) {
		wt, err := c.Receive(name, "octet")
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		_, err = wt.WriteTo(&b)
		return b.Bytes(), err
	}
	got, err := get("undionly.kpxe")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("undionly.kpxe: %d bytes, %v", len(got), err)
	}
	if got, err := get("/undionly.kpxe"); err != nil || !bytes.Equal(got, want) {
		t.Errorf("/undionly.kpxe (absolute, as some ROMs ask): %d bytes, %v", len(got), err)
	}
	for _, name := range []string{"../secret", "a/../../secret", "..\\secret", "missing.efi", "."} {
		if b, err := get(name); err == nil {
			t.Errorf("%s: served %q, want an error", name, b)
		}
	}
	if _, err := c.Send("upload", "octet"); err == nil {
		t.Error("a write request was accepted")
	} else if rf, err := c.Send("upload", "octet"); err == nil {
		if _, err := rf.ReadFrom(strings.NewReader("x")); err == nil {
			t.Error("a write was accepted")
		}
	}
	if _, err := os.Stat(filepath.Join(root, "upload")); err == nil {
		t.Error("a TFTP write created a file")
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sledgehammer"), 0o755) //nolint:errcheck
	body := []byte("0123456789abcdef")
	os.WriteFile(filepath.Join(dir, "sledgehammer", "vmlinuz"), body, 0o644) //nolint:errcheck
	srv := httptest.NewServer(boot.Files(dir, nil))
	defer srv.Close()
	get := func(method, path, rng string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cases := []struct {
		method, path, rng string
		status            int
		body              string
	}{
		{"GET", "/sledgehammer/vmlinuz", "", 200, string(body)},
		{"GET", "/sledgehammer/vmlinuz", "bytes=4-7", 206, "4567"},
		{"GET", "/sledgehammer/vmlinuz", "bytes=10-", 206, "abcdef"},
		{"GET", "/sledgehammer/vmlinuz", "bytes=100-", 416, ""},
		{"GET", "/sledgehammer/missing", "", 404, ""},
		{"GET", "/sledgehammer/", "", 404, ""},
		{"GET", "/", "", 404, ""},
		{"GET", "/../../etc/passwd", "", 404, ""},
		{"PUT", "/sledgehammer/vmlinuz", "", 405, ""},
	}
	for _, c := range cases {
		status, got := get(c.method, c.path, c.rng)
		if status != c.status || (c.body != "" && got != c.body) {
			t.Errorf("%s %s %s: %d %q, want %d %q", c.method, c.path, c.rng, status, got, c.status, c.body)
		}
	}
}
