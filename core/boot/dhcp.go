package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

// Option 175 is iPXE's encapsulated options: a client that sends it is
// iPXE, which wants the boot script's URL rather than a binary.
const optIPXE = dhcpv4.GenericOptionCode(175)

// pxePort is where PXE clients send the request that follows a
// proxy-DHCP offer.
const pxePort = 4011

// DHCPConfig configures a DHCP server.
type DHCPConfig struct {
	// Interface is the admin network's interface; the server answers
	// there only.
	Interface string
	// Proxy answers PXE clients only, with boot information and no
	// address, beside the network's own DHCP server.
	Proxy bool
	// Plan fetches addresses, reservations and boot choices.
	Plan PlanFunc
	// PlanTTL is how long a fetched plan is used (default 2s).
	PlanTTL time.Duration
	// LeaseFile keeps dynamic leases across restarts ("" keeps them in
	// memory only).
	LeaseFile string
	Logger    hclog.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

// DHCP is a DHCPv4 server for the admin network.
type DHCP struct {
	cfg   DHCPConfig
	log   hclog.Logger
	plans *planCache

	mu     sync.Mutex
	leases map[string]lease // by MAC
	srv    *server4.Server
	pxe    net.PacketConn
	closed bool
}

type lease struct {
	Address netip.Addr `json:"address"`
	Expires time.Time  `json:"expires"`
	// Offered leases are held briefly for the client's REQUEST.
	Offered bool `json:"offered,omitempty"`
}

// NewDHCP makes a server; Serve starts it.
func NewDHCP(cfg DHCPConfig) (*DHCP, error) {
	if cfg.Plan == nil {
		return nil, errors.New("boot: DHCP needs a plan source")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PlanTTL <= 0 {
		cfg.PlanTTL = 2 * time.Second
	}
	d := &DHCP{cfg: cfg, log: cfg.Logger, plans: &planCache{fetch: cfg.Plan, ttl: cfg.PlanTTL}, leases: map[string]lease{}}
	if err := d.loadLeases(); err != nil {
		return nil, err
	}
	return d, nil
}

// Listen opens the server's sockets on the interface (root, or
// CAP_NET_BIND_SERVICE and CAP_NET_RAW, is needed for port 67).
func (d *DHCP) Listen() error {
	srv, err := server4.NewServer(d.cfg.Interface, &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, d.serve)
	if err != nil {
		return fmt.Errorf("DHCP on %s: %w", d.cfg.Interface, err)
	}
	var pxe net.PacketConn
	if d.cfg.Proxy {
		// PXE ROMs ask the proxy again, on port 4011, for what it offered.
		if pxe, err = server4.NewIPv4UDPConn(d.cfg.Interface, &net.UDPAddr{IP: net.IPv4zero, Port: pxePort}); err != nil {
			srv.Close() //nolint:errcheck
			return fmt.Errorf("proxy-DHCP on %s port %d: %w", d.cfg.Interface, pxePort, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.srv, d.pxe = srv, pxe
	return nil
}

// Serve answers until Close; Listen must have succeeded.
func (d *DHCP) Serve() error {
	d.mu.Lock()
	srv, pxe := d.srv, d.pxe
	d.mu.Unlock()
	if srv == nil {
		return errors.New("boot: DHCP Serve before Listen")
	}
	if pxe != nil {
		go d.servePXE(pxe)
	}
	mode := "full"
	if d.cfg.Proxy {
		mode = "proxy"
	}
	d.log.Info("DHCP serving", "interface", d.cfg.Interface, "mode", mode)
	err := srv.Serve()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	return err
}

// Close stops the server.
func (d *DHCP) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.pxe != nil {
		d.pxe.Close() //nolint:errcheck
	}
	if d.srv != nil {
		return d.srv.Close()
	}
	return nil
}

func (d *DHCP) serve(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return
	}
	self, err := interfaceAddr(d.cfg.Interface)
	if err != nil {
		d.log.Warn("DHCP: no IPv4 address on the interface; not answering", "interface", d.cfg.Interface, "error", err)
		return
	}
	resp := d.Handle(context.Background(), req, self)
	if resp == nil {
		return
	}
	if _, err := conn.WriteTo(resp.ToBytes(), replyTo(req, resp, peer)); err != nil {
		d.log.Warn("DHCP: reply not sent", "mac", req.ClientHWAddr.String(), "error", err)
	}
}

// servePXE answers the port-4011 requests PXE ROMs send after a
// proxy-DHCP offer, with the same boot information.
func (d *DHCP) servePXE(conn net.PacketConn) {
	buf := make([]byte, 4096)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || req.OpCode != dhcpv4.OpcodeBootRequest || req.MessageType() != dhcpv4.MessageTypeRequest {
			continue
		}
		self, err := interfaceAddr(d.cfg.Interface)
		if err != nil {
			continue
		}
		if resp := d.proxyReply(context.Background(), req, self, dhcpv4.MessageTypeAck); resp != nil {
			conn.WriteTo(resp.ToBytes(), peer) //nolint:errcheck
		}
	}
}

// replyTo is where a reply goes (RFC 2131 4.1): to the relay, to the
// client's own address when it has one, else broadcast.
func replyTo(req, resp *dhcpv4.DHCPv4, peer net.Addr) net.Addr {
	switch {
	case !req.GatewayIPAddr.IsUnspecified() && req.GatewayIPAddr != nil:
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: dhcpv4.ServerPort}
	case resp.MessageType() == dhcpv4.MessageTypeNak:
		return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	case !req.ClientIPAddr.IsUnspecified() && req.ClientIPAddr != nil:
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: dhcpv4.ClientPort}
	}
	if u, ok := peer.(*net.UDPAddr); ok && !u.IP.Equal(net.IPv4bcast) && !u.IP.IsUnspecified() {
		return u
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// interfaceAddr is the interface's first IPv4 address: the server
// identifier, and the TFTP server unless the plan names another.
func interfaceAddr(name string) (netip.Addr, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}, err
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP.To4()); ok && n.IP.To4() != nil {
				return ip, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("%s has no IPv4 address", name)
}

// Handle answers one request as the server whose address is self; nil
// means no answer (not for us, nothing to offer, a message that needs
// none).
func (d *DHCP) Handle(ctx context.Context, req *dhcpv4.DHCPv4, self netip.Addr) *dhcpv4.DHCPv4 {
	if d.cfg.Proxy {
		if req.MessageType() != dhcpv4.MessageTypeDiscover {
			return nil
		}
		return d.proxyReply(ctx, req, self, dhcpv4.MessageTypeOffer)
	}
	p, err := d.plans.get(ctx)
	if err != nil {
		d.log.Warn("DHCP: the boot plan is unavailable", "error", err)
		if p == nil {
			return nil
		}
	}
	mac := req.ClientHWAddr.String()
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		addr, ok := d.choose(p, mac, req.RequestedIPAddress(), self, true)
		if !ok {
			d.log.Warn("DHCP: no address left to offer: the pool is exhausted", "mac", mac, "pool", p.Pool)
			return nil
		}
		d.log.Debug("DHCP offer", "mac", mac, "address", addr)
		return d.reply(p, req, self, dhcpv4.MessageTypeOffer, addr)
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(self.AsSlice()) {
			// The client took another server's offer.
			d.forget(mac, true)
			return nil
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		wantAddr, _ := netip.AddrFromSlice(want.To4())
		addr, ok := d.choose(p, mac, want, self, false)
		if !ok || addr != wantAddr {
			d.log.Info("DHCP: refused a request for an address this client does not hold", "mac", mac, "requested", want.String())
			return d.nak(req, self, "address not available")
		}
		d.log.Info("DHCP lease", "mac", mac, "address", addr, "reserved", p.reserved[mac].Address != "")
		return d.reply(p, req, self, dhcpv4.MessageTypeAck, addr)
	case dhcpv4.MessageTypeRelease:
		d.forget(mac, false)
		return nil
	case dhcpv4.MessageTypeInform:
		resp := d.reply(p, req, self, dhcpv4.MessageTypeAck, netip.Addr{})
		resp.DeleteOption(dhcpv4.OptionIPAddressLeaseTime)
		return resp
	}
	return nil
}

// choose picks mac's address: its reservation, else the address it holds
// or asked for when free, else the first free one in the pool. An offer
// holds the address for a minute; a request turns it into a lease.
func (d *DHCP) choose(p *plan, mac string, want net.IP, self netip.Addr, offer bool) (netip.Addr, bool) {
	now := d.cfg.Now()
	if r, ok := p.reserved[mac]; ok {
		a, _ := netip.ParseAddr(r.Address)
		return a, true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	taken := map[netip.Addr]bool{self: true}
	for m, l := range d.leases {
		if m != mac && l.Expires.After(now) {
			taken[l.Address] = true
		}
	}
	free := func(a netip.Addr) bool {
		if !a.IsValid() || taken[a] || !inPool(p, a) {
			return false
		}
		_, reserved := p.reservedIP[a]
		return !reserved
	}
	hold := func(a netip.Addr) (netip.Addr, bool) {
		l, had := d.leases[mac]
		switch {
		case offer && had && l.Address == a && !l.Offered && l.Expires.After(now):
			// Offered again what it holds: the lease stands.
		case offer:
			d.leases[mac] = lease{Address: a, Expires: now.Add(time.Minute), Offered: true}
		default:
			d.leases[mac] = lease{Address: a, Expires: now.Add(p.lease)}
			d.saveLeases()
		}
		return a, true
	}
	if l, ok := d.leases[mac]; ok && free(l.Address) {
		return hold(l.Address)
	}
	if w, ok := netip.AddrFromSlice(want.To4()); ok && want.To4() != nil && free(w) {
		return hold(w)
	}
	if !offer {
		return netip.Addr{}, false // a request for an address never offered
	}
	for _, r := range p.pool {
		for a := r[0]; a.IsValid() && !r[1].Less(a); a = a.Next() {
			if free(a) {
				return hold(a)
			}
		}
	}
	return netip.Addr{}, false
}

func inPool(p *plan, a netip.Addr) bool {
	for _, r := range p.pool {
		if !a.Less(r[0]) && !r[1].Less(a) {
			return true
		}
	}
	return false
}

// forget drops mac's lease (only a mere offer, when offerOnly).
func (d *DHCP) forget(mac string, offerOnly bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l, ok := d.leases[mac]; ok && (!offerOnly || l.Offered) {
		delete(d.leases, mac)
		d.saveLeases()
	}
}

// reply builds an offer or an ack of addr with the network's options and,
// for PXE and iPXE clients, what to boot.
func (d *DHCP) reply(p *plan, req *dhcpv4.DHCPv4, self netip.Addr, kind dhcpv4.MessageType, addr netip.Addr) *dhcpv4.DHCPv4 {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(kind),
		dhcpv4.WithServerIP(self.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(self.AsSlice())),
		dhcpv4.WithNetmask(net.CIDRMask(p.prefix.Bits(), 32)),
		dhcpv4.WithLeaseTime(uint32(p.lease/time.Second)),
	)
	if err != nil {
		return nil
	}
	if addr.IsValid() {
		resp.YourIPAddr = addr.AsSlice()
	}
	if p.router.IsValid() {
		resp.UpdateOption(dhcpv4.OptRouter(p.router.AsSlice()))
	}
	if len(p.dns) > 0 {
		ips := make([]net.IP, len(p.dns))
		for i, a := range p.dns {
			ips[i] = a.AsSlice()
		}
		resp.UpdateOption(dhcpv4.OptDNS(ips...))
	}
	if p.Domain != "" {
		resp.UpdateOption(dhcpv4.OptDomainName(p.Domain))
	}
	if r, ok := p.reserved[req.ClientHWAddr.String()]; ok && r.Hostname != "" {
		resp.UpdateOption(dhcpv4.OptHostName(r.Hostname))
	}
	d.bootOptions(p, req, resp, self)
	return resp
}

func (d *DHCP) nak(req *dhcpv4.DHCPv4, self netip.Addr, msg string) *dhcpv4.DHCPv4 {
	resp, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(self.AsSlice())), dhcpv4.WithOption(dhcpv4.OptMessage(msg)))
	if err != nil {
		return nil
	}
	return resp
}

// proxyReply is a proxy-DHCP answer: no address, only what to boot, and
// only for PXE and iPXE clients.
func (d *DHCP) proxyReply(ctx context.Context, req *dhcpv4.DHCPv4, self netip.Addr, kind dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	if clientKind(req) == "" {
		return nil
	}
	p, err := d.plans.get(ctx)
	if err != nil {
		d.log.Warn("proxy-DHCP: the boot plan is unavailable", "error", err)
		if p == nil {
			return nil
		}
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(kind),
		dhcpv4.WithServerIP(self.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(self.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")),
		// PXE discovery control: boot the file named here, skip the
		// boot-server discovery.
		dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
	if err != nil {
		return nil
	}
	resp.YourIPAddr = net.IPv4zero
	d.bootOptions(p, req, resp, self)
	return resp
}

// clientKind tells PXE ROMs ("pxe") and iPXE ("ipxe") from other clients
// (""), which get no boot options.
func clientKind(req *dhcpv4.DHCPv4) string {
	if len(req.GetOneOption(optIPXE)) > 0 {
		return "ipxe"
	}
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			return "ipxe"
		}
	}
	if strings.HasPrefix(req.ClassIdentifier(), "PXEClient") {
		return "pxe"
	}
	return ""
}

// bootOptions names what to boot: the boot script's URL for iPXE, the
// iPXE binary for the client's architecture on TFTP for PXE ROMs.
func (d *DHCP) bootOptions(p *plan, req, resp *dhcpv4.DHCPv4, self netip.Addr) {
	var file string
	switch clientKind(req) {
	case "ipxe":
		file = p.BootURL
	case "pxe":
		file = p.BootFile
		for _, a := range req.ClientArch() {
			if a == iana.EFI_X86_64 || a == iana.EFI_BC || a == iana.EFI_X86_64_HTTP {
				file = p.BootFileEFI
			}
		}
		next := self
		if p.nextServer.IsValid() {
			next = p.nextServer
		}
		resp.ServerIPAddr = next.AsSlice()
		resp.UpdateOption(dhcpv4.OptTFTPServerName(next.String()))
	default:
		return
	}
	if file == "" {
		return
	}
	resp.BootFileName = file
	resp.UpdateOption(dhcpv4.OptBootFileName(file))
}

// Leases lists the dynamic leases (not reservations) held now.
func (d *DHCP) Leases() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]string{}
	now := d.cfg.Now()
	for mac, l := range d.leases {
		if l.Expires.After(now) && !l.Offered {
			out[mac] = l.Address.String()
		}
	}
	return out
}

func (d *DHCP) loadLeases() error {
	if d.cfg.LeaseFile == "" {
		return nil
	}
	b, err := os.ReadFile(d.cfg.LeaseFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read DHCP leases: %w", err)
	}
	if err := json.Unmarshal(b, &d.leases); err != nil {
		d.log.Warn("DHCP: the lease file is not valid JSON; starting without leases", "path", d.cfg.LeaseFile, "error", err)
		d.leases = map[string]lease{}
	}
	return nil
}

// saveLeases writes the lease file (mu held): to a temporary file first,
// so a crash leaves the old or the new one.
func (d *DHCP) saveLeases() {
	if d.cfg.LeaseFile == "" {
		return
	}
	now := d.cfg.Now()
	keep := map[string]lease{}
	for mac, l := range d.leases {
		if l.Expires.After(now) && !l.Offered {
			keep[mac] = l
		}
	}
	b, _ := json.MarshalIndent(keep, "", "  ")
	tmp := d.cfg.LeaseFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		d.log.Warn("DHCP: cannot save leases", "error", err)
		return
	}
	if err := os.Rename(tmp, d.cfg.LeaseFile); err != nil {
		d.log.Warn("DHCP: cannot save leases", "error", err)
	}
}
