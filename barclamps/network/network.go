//go:build wasip1

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/crowbar-go/crowbar/sdk"
)

// Range is a named span of a network's addresses (admin, dhcp, host, …).
type Range struct {
	Name  string `json:"name"`
	First string `json:"first"`
	Last  string `json:"last"`
}

// Network is an L2/L3 network crowbar allocates addresses on.
type Network struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	V4Prefix    string    `json:"v4prefix"` // CIDR, e.g. 192.168.124.0/24
	V6Prefix    string    `json:"v6prefix"` // CIDR or ""
	VLAN        int       `json:"vlan"`
	UseVLAN     bool      `json:"use_vlan"`
	UseTeam     bool      `json:"use_team"`
	TeamMode    int       `json:"team_mode"` // Linux bonding mode 0–6
	Conduit     string    `json:"conduit"`
	Router      string    `json:"router"`
	RouterPref  int       `json:"router_pref"`
	DNSServers  []string  `json:"dns_servers"`
	Ranges      []Range   `json:"ranges"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// networkInput is what a client may write: every field but id and times.
type networkInput struct {
	Name        *string   `json:"name"`
	Description *string   `json:"description"`
	V4Prefix    *string   `json:"v4prefix"`
	V6Prefix    *string   `json:"v6prefix"`
	VLAN        *int      `json:"vlan"`
	UseVLAN     *bool     `json:"use_vlan"`
	UseTeam     *bool     `json:"use_team"`
	TeamMode    *int      `json:"team_mode"`
	Conduit     *string   `json:"conduit"`
	Router      *string   `json:"router"`
	RouterPref  *int      `json:"router_pref"`
	DNSServers  *[]string `json:"dns_servers"`
	Ranges      *[]Range  `json:"ranges"`
}

func (in *networkInput) applyTo(n *Network) {
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&n.Name, in.Name)
	set(&n.Description, in.Description)
	set(&n.V4Prefix, in.V4Prefix)
	set(&n.V6Prefix, in.V6Prefix)
	set(&n.Conduit, in.Conduit)
	set(&n.Router, in.Router)
	if in.VLAN != nil {
		n.VLAN = *in.VLAN
	}
	if in.UseVLAN != nil {
		n.UseVLAN = *in.UseVLAN
	}
	if in.UseTeam != nil {
		n.UseTeam = *in.UseTeam
	}
	if in.TeamMode != nil {
		n.TeamMode = *in.TeamMode
	}
	if in.RouterPref != nil {
		n.RouterPref = *in.RouterPref
	}
	if in.DNSServers != nil {
		n.DNSServers = *in.DNSServers
	}
	if in.Ranges != nil {
		n.Ranges = *in.Ranges
	}
}

// invalid is a 422 naming the field.
type invalid struct{ field, msg string }

func (e *invalid) Error() string { return e.field + ": " + e.msg }

func bad(field, format string, args ...any) error {
	return &invalid{field, fmt.Sprintf(format, args...)}
}

var nameRule = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// prefix parses the network's IPv4 CIDR.
func (n *Network) prefix() (netip.Prefix, error) {
	p, err := netip.ParsePrefix(n.V4Prefix)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, bad("v4prefix", "'%s' is not an IPv4 CIDR such as 192.168.124.0/24", n.V4Prefix)
	}
	if p.Masked() != p {
		return netip.Prefix{}, bad("v4prefix", "'%s' has host bits set; the network is %s", n.V4Prefix, p.Masked())
	}
	return p, nil
}

// validate checks a network's own rules.
func (n *Network) validate() error {
	if !nameRule.MatchString(n.Name) {
		return bad("name", "'%s' must start with a lowercase letter and hold only lowercase letters, digits and '-' (at most 63)", n.Name)
	}
	p, err := n.prefix()
	if err != nil {
		return err
	}
	if n.V6Prefix != "" {
		p6, err := netip.ParsePrefix(n.V6Prefix)
		if err != nil || !p6.Addr().Is6() || p6.Addr().Is4In6() {
			return bad("v6prefix", "'%s' is not an IPv6 CIDR such as fd00:124::/64", n.V6Prefix)
		}
		if p6.Masked() != p6 {
			return bad("v6prefix", "'%s' has host bits set; the network is %s", n.V6Prefix, p6.Masked())
		}
	}
	if n.VLAN < 0 || n.VLAN > 4094 {
		return bad("vlan", "%d is not a VLAN id (0–4094)", n.VLAN)
	}
	if n.TeamMode < 0 || n.TeamMode > 6 {
		return bad("team_mode", "%d is not a bonding mode (0–6)", n.TeamMode)
	}
	if n.Router != "" {
		r, err := netip.ParseAddr(n.Router)
		if err != nil || !p.Contains(r) {
			return bad("router", "'%s' is not an address inside %s", n.Router, p)
		}
	}
	for i, d := range n.DNSServers {
		if _, err := netip.ParseAddr(d); err != nil {
			return bad("dns_servers", "entry %d ('%s') is not an IP address", i, d)
		}
	}
	if n.DNSServers == nil {
		n.DNSServers = []string{}
	}
	if n.Ranges == nil {
		n.Ranges = []Range{}
	}
	type span struct {
		name        string
		first, last netip.Addr
	}
	var spans []span
	seen := map[string]bool{}
	for _, r := range n.Ranges {
		if !nameRule.MatchString(r.Name) {
			return bad("ranges", "range name '%s' must start with a lowercase letter and hold only lowercase letters, digits and '-'", r.Name)
		}
		if seen[r.Name] {
			return bad("ranges", "range '%s' appears twice", r.Name)
		}
		seen[r.Name] = true
		first, err1 := netip.ParseAddr(r.First)
		last, err2 := netip.ParseAddr(r.Last)
		if err1 != nil || err2 != nil {
			return bad("ranges", "range '%s': first and last must be IPv4 addresses, not '%s' and '%s'", r.Name, r.First, r.Last)
		}
		if !p.Contains(first) || !p.Contains(last) {
			return bad("ranges", "range '%s' (%s–%s) is not inside %s", r.Name, first, last, p)
		}
		if last.Less(first) {
			return bad("ranges", "range '%s' ends (%s) before it starts (%s)", r.Name, last, first)
		}
		if first == p.Addr() || last == lastAddr(p) {
			return bad("ranges", "range '%s' includes the network or broadcast address of %s", r.Name, p)
		}
		spans = append(spans, span{r.Name, first, last})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].first.Less(spans[j].first) })
	for i := 1; i < len(spans); i++ {
		if !spans[i-1].last.Less(spans[i].first) {
			return bad("ranges", "ranges '%s' and '%s' overlap", spans[i-1].name, spans[i].name)
		}
	}
	return nil
}

// lastAddr is the broadcast address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (n *Network) rangeNamed(name string) *Range {
	for i := range n.Ranges {
		if n.Ranges[i].Name == name {
			return &n.Ranges[i]
		}
	}
	return nil
}

// rangeOf names the range holding a, or "".
func (n *Network) rangeOf(a netip.Addr) string {
	for _, r := range n.Ranges {
		first, _ := netip.ParseAddr(r.First)
		last, _ := netip.ParseAddr(r.Last)
		if !a.Less(first) && !last.Less(a) {
			return r.Name
		}
	}
	return ""
}

// The store: networks under "net/<name>", a counter under "seq".
const (
	netKey  = "net/"
	seqKey  = "seq"
	seedKey = "seeded"
)

// errNotFound is a 404.
var errNotFound = errors.New("not found")

// defaultAdmin is the admin network OpenCrowbar shipped.
func defaultAdmin() *Network {
	return &Network{Name: "admin", Description: "The admin network: crowbar provisions and manages nodes over it",
		V4Prefix: "192.168.124.0/24", Conduit: "1g0", Router: "192.168.124.1", RouterPref: 10, TeamMode: 5,
		DNSServers: []string{}, Ranges: []Range{
			{Name: "admin", First: "192.168.124.10", Last: "192.168.124.11"},
			{Name: "dhcp", First: "192.168.124.21", Last: "192.168.124.80"},
			{Name: "host", First: "192.168.124.81", Last: "192.168.124.254"},
		}}
}

// ensureSeeded creates the admin network the first time the barclamp runs
// anywhere; an operator who deletes it later does not get it back.
func ensureSeeded() error {
	if _, _, found, err := sdk.KVGet(seedKey); err != nil || found {
		return err
	}
	if _, _, found, err := sdk.KVGet(netKey + "admin"); err != nil {
		return err
	} else if !found {
		if err := createNetwork(defaultAdmin()); err != nil && !isConflict(err) {
			return err
		}
	}
	_, _, err := sdk.KVCompareAndSwap(seedKey, []byte("1"), 0)
	return err
}

// nextID hands out network ids.
func nextID() (int64, error) {
	for {
		v, rev, _, err := sdk.KVGet(seqKey)
		if err != nil {
			return 0, err
		}
		n, _ := strconv.ParseInt(string(v), 10, 64)
		n++
		if _, ok, err := sdk.KVCompareAndSwap(seqKey, []byte(strconv.FormatInt(n, 10)), rev); err != nil {
			return 0, err
		} else if ok {
			return n, nil
		}
	}
}

type conflict struct{ msg string }

func (c *conflict) Error() string { return c.msg }

func isConflict(err error) bool {
	var c *conflict
	return errors.As(err, &c)
}

func createNetwork(n *Network) error {
	if err := n.validate(); err != nil {
		return err
	}
	id, err := nextID()
	if err != nil {
		return err
	}
	n.ID = id
	n.CreatedAt, n.UpdatedAt = sdk.Now().UTC(), sdk.Now().UTC()
	b, _ := json.Marshal(n)
	_, ok, err := sdk.KVCompareAndSwap(netKey+n.Name, b, 0)
	if err != nil {
		return err
	}
	if !ok {
		return &conflict{fmt.Sprintf("network '%s' already exists", n.Name)}
	}
	return nil
}

// listNetworks returns every network, by id.
func listNetworks() ([]*Network, error) {
	entries, err := sdk.KVList(netKey)
	if err != nil {
		return nil, err
	}
	out := []*Network{}
	for _, e := range entries {
		var n Network
		if err := json.Unmarshal(e.Value, &n); err != nil {
			return nil, fmt.Errorf("stored network %s is corrupt: %v", e.Key, err)
		}
		out = append(out, &n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// findNetwork looks a network up by name or id; it returns its revision
// for compare-and-swap updates.
func findNetwork(key string) (*Network, int64, error) {
	if v, rev, found, err := sdk.KVGet(netKey + key); err != nil {
		return nil, 0, err
	} else if found {
		var n Network
		if err := json.Unmarshal(v, &n); err != nil {
			return nil, 0, err
		}
		return &n, rev, nil
	}
	id, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return nil, 0, errNotFound
	}
	all, err := listNetworks()
	if err != nil {
		return nil, 0, err
	}
	for _, n := range all {
		if n.ID == id {
			return findNetwork(n.Name)
		}
	}
	return nil, 0, errNotFound
}
