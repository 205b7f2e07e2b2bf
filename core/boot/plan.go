// Package boot serves what a machine needs to PXE-boot into crowbar: DHCP
// on the admin network (a full server, or proxy-DHCP beside an existing
// one), TFTP for the iPXE binaries and HTTP for kernels and initrds. The
// addresses, reservations and boot choices are not configured here: they
// are the provisioner's and the network barclamp's data, fetched as a
// Plan and refreshed every few seconds, so a change is served without a
// restart.
package boot

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Plan is what the DHCP server hands out, as the provisioner describes it
// (GET /provisioner/v2/dhcp/config).
type Plan struct {
	Subnet       string        `json:"subnet"` // e.g. 192.168.124.0/24
	Router       string        `json:"router"`
	DNSServers   []string      `json:"dns_servers"`
	Domain       string        `json:"domain"`
	LeaseSeconds int           `json:"lease_seconds"`
	Pool         []Range       `json:"pool"` // addresses for machines without a reservation
	Reservations []Reservation `json:"reservations"`
	// NextServer is the TFTP server PXE clients load BootFile (BIOS) or
	// BootFileEFI (UEFI x86-64) from; empty means this server.
	NextServer  string `json:"next_server"`
	BootFile    string `json:"boot_file"`
	BootFileEFI string `json:"boot_file_efi"`
	// BootURL is the script iPXE clients are sent to.
	BootURL string `json:"boot_url"`
}

// Range is an inclusive span of IPv4 addresses.
type Range struct {
	First string `json:"first"`
	Last  string `json:"last"`
}

// Reservation ties a MAC to an address (and a host name).
type Reservation struct {
	MAC      string `json:"mac"`
	Address  string `json:"address"`
	Hostname string `json:"hostname"`
}

// plan is a Plan checked and parsed once.
type plan struct {
	*Plan
	prefix     netip.Prefix
	router     netip.Addr
	dns        []netip.Addr
	pool       [][2]netip.Addr
	reserved   map[string]Reservation // by MAC, lower case with colons
	reservedIP map[netip.Addr]string  // address → MAC
	nextServer netip.Addr
	lease      time.Duration
}

func parsePlan(p *Plan) (*plan, error) {
	out := &plan{Plan: p, reserved: map[string]Reservation{}, reservedIP: map[netip.Addr]string{}}
	var err error
	if out.prefix, err = netip.ParsePrefix(p.Subnet); err != nil || !out.prefix.Addr().Is4() {
		return nil, fmt.Errorf("subnet %q is not an IPv4 prefix", p.Subnet)
	}
	out.prefix = out.prefix.Masked()
	if p.Router != "" {
		if out.router, err = netip.ParseAddr(p.Router); err != nil {
			return nil, fmt.Errorf("router %q is not an address", p.Router)
		}
	}
	for _, d := range p.DNSServers {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return nil, fmt.Errorf("dns server %q is not an address", d)
		}
		out.dns = append(out.dns, a)
	}
	for _, r := range p.Pool {
		first, err1 := netip.ParseAddr(r.First)
		last, err2 := netip.ParseAddr(r.Last)
		if err1 != nil || err2 != nil || !out.prefix.Contains(first) || !out.prefix.Contains(last) || last.Less(first) {
			return nil, fmt.Errorf("pool range %s-%s is not a span of %s", r.First, r.Last, out.prefix)
		}
		out.pool = append(out.pool, [2]netip.Addr{first, last})
	}
	for _, r := range p.Reservations {
		a, err := netip.ParseAddr(r.Address)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("reservation of %s: %q is not an IPv4 address", r.MAC, r.Address)
		}
		mac := strings.ToLower(r.MAC)
		out.reserved[mac] = r
		out.reservedIP[a] = mac
	}
	if p.NextServer != "" {
		if out.nextServer, err = netip.ParseAddr(p.NextServer); err != nil {
			return nil, fmt.Errorf("next server %q is not an address", p.NextServer)
		}
	}
	out.lease = time.Duration(p.LeaseSeconds) * time.Second
	if out.lease <= 0 {
		out.lease = time.Hour
	}
	return out, nil
}

// PlanFunc fetches the current Plan.
type PlanFunc func(ctx context.Context) (*Plan, error)

// planCache fetches the plan at most once per ttl; a failed fetch keeps
// the last good plan (the machines keep booting while crowbar's database
// blinks) and is retried on the next request.
type planCache struct {
	fetch PlanFunc
	ttl   time.Duration

	mu      sync.Mutex
	cur     *plan
	fetched time.Time
}

func (c *planCache) get(ctx context.Context) (*plan, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && time.Since(c.fetched) < c.ttl {
		return c.cur, nil
	}
	raw, err := c.fetch(ctx)
	if err == nil {
		var p *plan
		if p, err = parsePlan(raw); err == nil {
			c.cur, c.fetched = p, time.Now()
			return p, nil
		}
	}
	if c.cur != nil {
		return c.cur, fmt.Errorf("keeping the last boot plan: %w", err)
	}
	return nil, err
}
