package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// defaultContainerRange is where default nics get their addresses.
const defaultContainerRange = "172.31.0.0/16"

// bridgeName is the agent's bridge for default nics.
const bridgeName = "corex0"

// cnet wires containers' nics with netlink: veths into the agent's bridge
// (default) or a named host bridge (bridge), or macvlans.
type cnet struct {
	log    hclog.Logger
	tag    string // this agent's mark in host link names (several agents may share a host)
	prefix *net.IPNet
	gw     net.IP
	mu     sync.Mutex
	used   map[string]bool
}

func newCnet(cidr string) (*cnet, error) {
	if cidr == "" {
		cidr = defaultContainerRange
	}
	ip, prefix, err := net.ParseCIDR(cidr)
	if err != nil || ip.To4() == nil {
		return nil, fmt.Errorf("container range %q: want an IPv4 CIDR such as %s", cidr, defaultContainerRange)
	}
	if ones, _ := prefix.Mask.Size(); ones > 29 {
		return nil, fmt.Errorf("container range %q is too small: want /29 or larger", cidr)
	}
	gw := nextIP(prefix.IP)
	return &cnet{prefix: prefix, gw: gw, used: map[string]bool{gw.String(): true}}, nil
}

func nextIP(ip net.IP) net.IP {
	out := append(net.IP(nil), ip.To4()...)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			break
		}
	}
	return out
}

var supportedNics = "default, bridge, macvlan"

// check refuses nics this agent cannot make, before anything is made.
func (n *cnet) check(args CreateArgs) error {
	names := map[string]bool{}
	for i, nic := range args.Nics {
		name := nicName(nic, i)
		if names[name] || len(name) > 15 {
			return badRequest("corex.create: nic %d: name %q is taken or longer than 15 characters", i, name)
		}
		names[name] = true
		if nic.HWAddr != "" {
			if _, err := net.ParseMAC(nic.HWAddr); err != nil {
				return badRequest("corex.create: nic %d: hwaddr %q is not a MAC address", i, nic.HWAddr)
			}
		}
		cfg := nic.Config
		if cfg != nil && cfg.CIDR != "" {
			if _, _, err := net.ParseCIDR(cfg.CIDR); err != nil {
				return badRequest("corex.create: nic %d: config.cidr %q is not an address/prefix", i, cfg.CIDR)
			}
		}
		if cfg != nil && cfg.Gateway != "" && net.ParseIP(cfg.Gateway) == nil {
			return badRequest("corex.create: nic %d: config.gateway %q is not an address", i, cfg.Gateway)
		}
		if cfg != nil {
			for _, d := range cfg.DNS {
				if net.ParseIP(d) == nil {
					return badRequest("corex.create: nic %d: config.dns %q is not an address", i, d)
				}
			}
		}
		switch nic.Type {
		case "default", "":
		case "bridge", "macvlan":
			if cfg != nil && cfg.DHCP && cfg.CIDR != "" {
				return badRequest("corex.create: nic %d (%s): give config.dhcp or config.cidr, not both", i, nic.Type)
			}
			if nic.ID == "" {
				return badRequest("corex.create: nic %d (%s): id must name the host's %s", i, nic.Type, map[string]string{"bridge": "bridge", "macvlan": "parent interface"}[nic.Type])
			}
			l, err := netlink.LinkByName(nic.ID)
			if err != nil {
				return notFound("corex.create: nic %d (%s): the host has no interface %q", i, nic.Type, nic.ID)
			}
			if nic.Type == "bridge" && l.Type() != "bridge" {
				return badRequest("corex.create: nic %d: %q is a %s, not a bridge", i, nic.ID, l.Type())
			}
		default:
			return badRequest("corex.create: nic %d: type %q is not supported by this agent (supported: %s)", i, nic.Type, supportedNics)
		}
	}
	return nil
}

func nicName(nic Nic, i int) string {
	if nic.Name != "" {
		return nic.Name
	}
	return "eth" + strconv.Itoa(i)
}

func nicDNS(nics []Nic) []string {
	var out []string
	for _, n := range nics {
		if n.Config != nil {
			out = append(out, n.Config.DNS...)
		}
	}
	return out
}

// allocate takes the next free address of the range.
func (n *cnet) allocate() (net.IP, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ip := nextIP(n.gw); n.prefix.Contains(ip); ip = nextIP(ip) {
		if next := nextIP(ip); !n.prefix.Contains(next) {
			break // the broadcast address
		}
		if !n.used[ip.String()] {
			n.used[ip.String()] = true
			return ip, nil
		}
	}
	return nil, &cmdError{code: core0CodeConflict, msg: fmt.Sprintf("corex.create: the container range %s is full", n.prefix)}
}

const core0CodeConflict = 409

func (n *cnet) release(ips []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ip := range ips {
		delete(n.used, ip)
	}
}

func (n *cnet) reserve(c *container) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ip := range c.IPs {
		n.used[ip] = true
	}
}

// bridge makes the agent's bridge (with the range's first address) and
// turns forwarding on, once.
func (n *cnet) bridge() (netlink.Link, error) {
	if l, err := netlink.LinkByName(bridgeName); err == nil {
		return l, nil
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName}}
	if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("make the container bridge %s: %w", bridgeName, err)
	}
	l, err := netlink.LinkByName(bridgeName)
	if err != nil {
		return nil, err
	}
	ones, _ := n.prefix.Mask.Size()
	addr, _ := netlink.ParseAddr(fmt.Sprintf("%s/%d", n.gw, ones))
	if err := netlink.AddrAdd(l, addr); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("address the container bridge: %w", err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return nil, err
	}
	os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) //nolint:errcheck // NAT needs it; containers still reach the host without
	if err := masquerade(n.prefix); err != nil {
		n.log.Warn("containers on the default network get no NAT: they reach the host and each other only", "error", err)
	}
	return l, nil
}

// wire makes c's nics, moves them into its network namespace and
// addresses them.
func (n *cnet) wire(c *container) error {
	ns, err := netns.GetFromPid(c.PID)
	if err != nil {
		return fmt.Errorf("corex.create: the container's network namespace: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if lo, err := h.LinkByName("lo"); err == nil {
		h.LinkSetUp(lo) //nolint:errcheck
	}
	ones, _ := n.prefix.Mask.Size()
	for i, nic := range c.Args.Nics {
		name := nicName(nic, i)
		hostSide, tmpPeer := n.linkNames(c.ID, i)
		var cidr, gw string
		if nic.Config != nil {
			cidr, gw = nic.Config.CIDR, nic.Config.Gateway
		}
		var peer netlink.Link
		switch nic.Type {
		case "", "default":
			br, err := n.bridge()
			if err != nil {
				return err
			}
			if cidr == "" {
				ip, err := n.allocate()
				if err != nil {
					return err
				}
				c.mu.Lock()
				c.IPs = append(c.IPs, ip.String())
				c.mu.Unlock()
				cidr, gw = fmt.Sprintf("%s/%d", ip, ones), n.gw.String()
			}
			if peer, err = n.veth(c, hostSide, tmpPeer, br); err != nil {
				return err
			}
		case "bridge":
			br, err := netlink.LinkByName(nic.ID)
			if err != nil {
				return notFound("corex.create: bridge %q: %v", nic.ID, err)
			}
			if peer, err = n.veth(c, hostSide, tmpPeer, br); err != nil {
				return err
			}
		case "macvlan":
			parent, err := netlink.LinkByName(nic.ID)
			if err != nil {
				return notFound("corex.create: macvlan parent %q: %v", nic.ID, err)
			}
			mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: tmpPeer, ParentIndex: parent.Attrs().Index}, Mode: netlink.MACVLAN_MODE_BRIDGE}
			if err := netlink.LinkAdd(mv); err != nil {
				return fmt.Errorf("corex.create: nic %d: make a macvlan on %s: %w", i, nic.ID, err)
			}
			peer = mv
		}
		if err := netlink.LinkSetNsPid(peer, c.PID); err != nil {
			return fmt.Errorf("corex.create: move nic %d into the container: %w", i, err)
		}
		l, err := h.LinkByName(tmpPeer)
		if err != nil {
			return err
		}
		if err := h.LinkSetName(l, name); err != nil {
			return fmt.Errorf("corex.create: name nic %d %s: %w", i, name, err)
		}
		if nic.HWAddr != "" {
			mac, _ := net.ParseMAC(nic.HWAddr)
			if err := h.LinkSetHardwareAddr(l, mac); err != nil {
				return fmt.Errorf("corex.create: nic %d hwaddr: %w", i, err)
			}
		}
		if cidr != "" {
			addr, err := netlink.ParseAddr(cidr)
			if err != nil {
				return badRequest("corex.create: nic %d: config.cidr %q: %v", i, cidr, err)
			}
			if err := h.AddrAdd(l, addr); err != nil {
				return fmt.Errorf("corex.create: nic %d: address %s: %w", i, cidr, err)
			}
			c.mu.Lock()
			c.Addrs = append(c.Addrs, cidr)
			c.mu.Unlock()
		}
		if err := h.LinkSetUp(l); err != nil {
			return err
		}
		if nic.Config != nil && nic.Config.DHCP {
			dl, err := dhcpRequest(c.PID, name, nil)
			if err != nil {
				return &cmdError{code: 504, msg: fmt.Sprintf("corex.create: nic %d (%s): no DHCP lease on %s: %v", i, name, nic.ID, err)}
			}
			le := leaseOf(dl)
			if err := applyLease(h, l, le); err != nil {
				return fmt.Errorf("corex.create: nic %d: %w", i, err)
			}
			c.mu.Lock()
			c.Addrs = append(c.Addrs, le.cidr)
			c.DNS = append(c.DNS, le.dns...)
			c.leases = append(c.leases, nicLease{name, dl})
			c.mu.Unlock()
			continue
		}
		if gw != "" {
			if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("corex.create: nic %d: default route via %s: %w", i, gw, err)
			}
		}
	}
	return nil
}

// veth makes a pair with hostSide on the host, enslaved to br.
func (n *cnet) veth(c *container, hostSide, peerName string, br netlink.Link) (netlink.Link, error) {
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostSide, MasterIndex: br.Attrs().Index}, PeerName: peerName}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("corex.create: make a veth pair: %w", err)
	}
	c.mu.Lock()
	c.Links = append(c.Links, hostSide)
	c.mu.Unlock()
	if err := netlink.LinkSetUp(v); err != nil {
		return nil, err
	}
	return netlink.LinkByName(peerName)
}

// unwire removes c's host-side links and frees its addresses.
func (n *cnet) unwire(c *container) {
	c.mu.Lock()
	links, ips := append([]string(nil), c.Links...), append([]string(nil), c.IPs...)
	c.mu.Unlock()
	for _, name := range links {
		if l, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(l) //nolint:errcheck
		}
	}
	// A peer never moved into the container would be left on the host.
	for i := range c.Args.Nics {
		_, peer := n.linkNames(c.ID, i)
		if l, err := netlink.LinkByName(peer); err == nil {
			netlink.LinkDel(l) //nolint:errcheck
		}
	}
	n.release(ips)
}

// portSpec is one forward: host listen address → container port.
type portSpec struct {
	key       string
	listen    []string // host addresses to listen on
	allow     *net.IPNet
	container int
}

// parsePorts reads corex.create's port map. Keys: "8080" (every
// address), "192.0.2.1:8080" (one address), "10.0.0.0/8:8080" (every
// address, only from that network), "eth0:8080" (that interface's
// addresses). With host_network, ports are ignored, as core0 does.
func parsePorts(m map[string]int, hostNetwork bool) ([]portSpec, error) {
	if hostNetwork {
		return nil, nil
	}
	var out []portSpec
	for key, cport := range m {
		if cport < 1 || cport > 65535 {
			return nil, badRequest("corex.create: port %q: container port %d is out of range", key, cport)
		}
		p := portSpec{key: key, container: cport}
		prefix, port := "", key
		if i := strings.LastIndex(key, ":"); i >= 0 {
			prefix, port = key[:i], key[i+1:]
		}
		hp, err := strconv.Atoi(port)
		if err != nil || hp < 1 || hp > 65535 {
			return nil, badRequest("corex.create: port %q: want [address|cidr|interface:]port", key)
		}
		switch {
		case prefix == "":
			p.listen = []string{fmt.Sprintf(":%d", hp)}
		case net.ParseIP(strings.Trim(prefix, "[]")) != nil:
			p.listen = []string{net.JoinHostPort(strings.Trim(prefix, "[]"), port)}
		case strings.Contains(prefix, "/"):
			_, ipn, err := net.ParseCIDR(prefix)
			if err != nil {
				return nil, badRequest("corex.create: port %q: %q is not a CIDR", key, prefix)
			}
			p.allow, p.listen = ipn, []string{fmt.Sprintf(":%d", hp)}
		default:
			ifc, err := net.InterfaceByName(prefix)
			if err != nil {
				return nil, notFound("corex.create: port %q: the host has no interface %q", key, prefix)
			}
			addrs, _ := ifc.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok {
					p.listen = append(p.listen, net.JoinHostPort(ipn.IP.String(), port))
				}
			}
			if len(p.listen) == 0 {
				return nil, badRequest("corex.create: port %q: interface %q has no address", key, prefix)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// proxy forwards TCP connections from the host to a container.
type proxy struct {
	lns  []net.Listener
	once sync.Once
}

func startProxy(p portSpec, c *container) (*proxy, error) {
	c.mu.Lock()
	addrs := append([]string(nil), c.Addrs...)
	c.mu.Unlock()
	if len(addrs) == 0 {
		return nil, badRequest("corex.create: port %q: the container has no nic with an address to forward to", p.key)
	}
	ip, _, _ := net.ParseCIDR(addrs[0])
	target := net.JoinHostPort(ip.String(), strconv.Itoa(p.container))
	px := &proxy{}
	for _, addr := range p.listen {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			px.close()
			return nil, &cmdError{code: core0CodeConflict, msg: fmt.Sprintf("corex.create: port %q: %v", p.key, err)}
		}
		px.lns = append(px.lns, ln)
		go px.serve(ln, p.allow, target)
	}
	return px, nil
}

func (px *proxy) serve(ln net.Listener, allow *net.IPNet, target string) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		if allow != nil {
			if ta, ok := conn.RemoteAddr().(*net.TCPAddr); !ok || !allow.Contains(ta.IP) {
				conn.Close()
				continue
			}
		}
		go func() {
			defer conn.Close()
			up, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(up, conn); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()   //nolint:errcheck
			go func() { io.Copy(conn, up); conn.(*net.TCPConn).CloseWrite(); done <- struct{}{} }() //nolint:errcheck
			<-done
			<-done
		}()
	}
}

func (px *proxy) close() {
	px.once.Do(func() {
		for _, ln := range px.lns {
			ln.Close()
		}
	})
}

// inNetns runs fn with a netlink handle in the network namespace of pid.
func (n *cnet) inNetns(pid int, fn func(*netlink.Handle) error) error {
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

// linkNames are the host-side and the temporary names of container id's
// nic i: cx<tag><id>n<i> and cy…, at most 15 characters.
func (n *cnet) linkNames(id, i int) (string, string) {
	return fmt.Sprintf("cx%s%dn%d", n.tag, id, i), fmt.Sprintf("cy%s%dn%d", n.tag, id, i)
}
