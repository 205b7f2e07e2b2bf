//go:build wasip1

package main

import (
	"net/netip"
	"net/url"
	"sort"
	"strings"

	"github.com/crowbar-go/crowbar/sdk"
)

const ipxeType = "text/plain; charset=utf-8"

// serverURL is how machines reach crowbar, in everything handed to them:
// the settings' server_url, else the URL the server advertises
// (--advertise-url), else the Host of this request (a server too old to
// advertise one).
func serverURL(r *sdk.Request, s *Settings) string {
	switch {
	case s.ServerURL != "":
		return s.ServerURL
	case r.Advertise != "":
		return strings.TrimSuffix(r.Advertise, "/")
	case r.Host != "":
		return "http://" + r.Host
	}
	return "http://localhost:3000"
}

// filesURL is where kernels and initrds are: the settings' files_url, else
// port 8091 of the host machines reach crowbar at (where OpenCrowbar
// served them).
func filesURL(r *sdk.Request, s *Settings) string {
	if s.FilesURL != "" {
		return s.FilesURL
	}
	u, err := url.Parse(serverURL(r, s))
	if err != nil || u.Hostname() == "" {
		return "http://localhost:8091"
	}
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return "http://" + host + ":8091"
}

// normalMAC turns 52-54-05-3F-00-00 or 525405... into 52:54:05:3f:00:00;
// "" when s is not a MAC address.
func normalMAC(s string) string {
	s = strings.ToLower(strings.NewReplacer("-", "", ":", "", ".", "").Replace(s))
	if len(s) != 12 {
		return ""
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return ""
		}
	}
	var b strings.Builder
	for i := 0; i < 12; i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(s[i : i+2])
	}
	return b.String()
}

// macs returns a node's admin MACs (its hint-admin-macs), normalised.
func macs(n *sdk.NodeInfo) []string {
	var out []string
	list, _ := n.Hint["admin_macs"].([]any)
	for _, m := range list {
		if s, ok := m.(string); ok {
			if mac := normalMAC(s); mac != "" {
				out = append(out, mac)
			}
		}
	}
	return out
}

func allNodes() ([]sdk.NodeInfo, error) {
	var nodes []sdk.NodeInfo
	return nodes, sdk.APIJSON("GET", "/api/v2/nodes", nil, &nodes)
}

// nodeByMAC finds the node whose admin MACs include mac.
func nodeByMAC(mac string) (*sdk.NodeInfo, error) {
	nodes, err := allNodes()
	if err != nil {
		return nil, err
	}
	for i := range nodes {
		for _, m := range macs(&nodes[i]) {
			if m == mac {
				return &nodes[i], nil
			}
		}
	}
	return nil, nil
}

// adminNet is the admin network as the network barclamp describes it.
type adminNet struct {
	V4Prefix   string   `json:"v4prefix"`
	Router     string   `json:"router"`
	DNSServers []string `json:"dns_servers"`
	Ranges     []struct {
		Name, First, Last string
	} `json:"ranges"`
}

func loadAdminNet() (*adminNet, error) {
	var n adminNet
	return &n, sdk.APIJSON("GET", "/network/v2/networks/admin", nil, &n)
}

// adminAddresses maps node ids to their admin addresses: of every node, or
// of node id alone when id is not 0.
func adminAddresses(id int64) (map[int64]string, error) {
	var allocs []struct {
		NodeID  int64  `json:"node_id"`
		Address string `json:"address"`
	}
	path := "/network/v2/allocations?network=admin"
	if id != 0 {
		path += "&node=" + itoa(id)
	}
	if err := sdk.APIJSON("GET", path, nil, &allocs); err != nil {
		return nil, err
	}
	out := make(map[int64]string, len(allocs))
	for _, a := range allocs {
		out[a.NodeID] = a.Address
	}
	return out, nil
}

// targetFor gathers what the templates need for node n.
func targetFor(r *sdk.Request, n *sdk.NodeInfo, s *Settings) (*target, error) {
	short, domain := splitName(n.Name)
	t := &target{ID: n.ID, Name: n.Name, Short: short, Domain: domain, Server: serverURL(r, s),
		Files: filesURL(r, s), Keys: s.AccessKeys, DNS: []string{}}
	t.Callback = t.Server + "/provisioner/v2/nodes/" + itoa(n.ID) + "/installed"
	addrs, err := adminAddresses(n.ID)
	if err != nil {
		return nil, err
	}
	if a, ok := addrs[n.ID]; ok {
		net, err := loadAdminNet()
		if err != nil {
			return nil, err
		}
		p, _ := netip.ParsePrefix(net.V4Prefix)
		t.Address, t.Netmask, t.Gateway, t.DNS = a, netmask(p.Bits()), net.Router, net.DNSServers
		if len(t.DNS) == 0 && net.Router != "" {
			t.DNS = []string{net.Router}
		}
	}
	return t, nil
}

// bootChain is the first script iPXE runs (named in DHCP).
func bootChain(r *sdk.Request) *sdk.Response {
	s, _, err := loadSettings()
	if err != nil {
		return sdk.Error(500, "provisioner: %v", err)
	}
	return sdk.Text(200, ipxeType, chainScript(serverURL(r, s)))
}

// ipxe answers a booting machine by its MAC: discovery for machines crowbar
// does not know, then whatever its node's bootenv says.
func ipxe(r *sdk.Request) *sdk.Response {
	mac := normalMAC(r.Param("id"))
	if mac == "" {
		return sdk.Error(400, "'%s' is not a MAC address", r.Param("id"))
	}
	s, _, err := loadSettings()
	if err != nil {
		return sdk.Error(500, "provisioner: %v", err)
	}
	n, err := nodeByMAC(mac)
	if err != nil {
		return sdk.Error(502, "looking up %s: %v", mac, err)
	}
	if n == nil || n.Bootenv == "" || n.Bootenv == "sledgehammer" {
		return sdk.Text(200, ipxeType, discoveryScript(serverURL(r, s), filesURL(r, s), s.JoinToken))
	}
	env, ok := bootenvs[n.Bootenv]
	if !ok || env.Kind == "local" {
		return sdk.Text(200, ipxeType, localScript(n.Name))
	}
	in, _, err := loadInstall(n.ID)
	if err != nil {
		return sdk.Error(500, "provisioner store: %v", err)
	}
	if in == nil || in.Bootenv != env.Name {
		// The bootenv says install, but no install was started by the
		// annealer: boot the disk rather than wipe it.
		return sdk.Text(200, ipxeType, localScript(n.Name))
	}
	t, err := targetFor(r, n, s)
	if err != nil {
		return sdk.Error(502, "%v", err)
	}
	t.Env, t.Token = env, in.Token
	return sdk.Text(200, ipxeType, installScript(t))
}

// answerFile serves a node's preseed or kickstart to the holder of its
// install token.
func answerFile(kind string) sdk.HandlerFunc {
	return func(r *sdk.Request) *sdk.Response {
		id, fail := nodeID(r)
		if fail != nil {
			return fail
		}
		in, _, fail := authorize(r, id)
		if fail != nil {
			return fail
		}
		env := bootenvs[in.Bootenv]
		if want := map[string]string{"debian": "preseed", "redhat": "kickstart"}[env.Family]; want != kind {
			return sdk.Error(404, "%s installs with a %s, not a %s", env.OS, want, kind)
		}
		var n sdk.NodeInfo
		if err := sdk.APIJSON("GET", "/api/v2/nodes/"+itoa(id), nil, &n); err != nil {
			return sdk.Error(502, "%v", err)
		}
		s, _, err := loadSettings()
		if err != nil {
			return sdk.Error(500, "provisioner: %v", err)
		}
		t, err := targetFor(r, &n, s)
		if err != nil {
			return sdk.Error(502, "%v", err)
		}
		t.Env, t.Token = env, in.Token
		if kind == "preseed" {
			return sdk.Text(200, "text/plain; charset=utf-8", preseed(t))
		}
		return sdk.Text(200, "text/plain; charset=utf-8", kickstart(t))
	}
}

// reservations are the admin addresses of nodes with admin MACs, by MAC.
func reservations() ([]Reservation, *sdk.Response) {
	nodes, err := allNodes()
	if err != nil {
		return nil, sdk.Error(502, "%v", err)
	}
	addrs, err := adminAddresses(0)
	if err != nil {
		return nil, sdk.Error(502, "%v", err)
	}
	out := []Reservation{}
	seen := map[string]bool{}
	for i := range nodes {
		a, ok := addrs[nodes[i].ID]
		if !ok {
			continue
		}
		short, _ := splitName(nodes[i].Name)
		for _, mac := range macs(&nodes[i]) {
			if seen[mac] {
				sdk.Log(sdk.LevelWarn, "two nodes claim one MAC; the first keeps the reservation", "mac", mac, "node", nodes[i].Name)
				continue
			}
			seen[mac] = true
			out = append(out, Reservation{MAC: mac, Address: a, Hostname: short, Node: nodes[i].Name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out, nil
}

// dhcp lists the reservations of nodes with an admin MAC and address, as
// JSON, ?format=hostsfile (dnsmasq dhcp-hostsfile) or ?format=dnsmasq (a
// configuration fragment).
func dhcp(r *sdk.Request) *sdk.Response {
	format := r.QueryValue("format")
	if format != "" && format != "json" && format != "hostsfile" && format != "dnsmasq" {
		return sdk.Error(400, "format must be json, hostsfile or dnsmasq, not '%s'", format)
	}
	s, _, err := loadSettings()
	if err != nil {
		return sdk.Error(500, "provisioner: %v", err)
	}
	if s.NextServer == "" {
		net, err := loadAdminNet()
		if err != nil {
			return sdk.Error(502, "reading the admin network: %v", err)
		}
		for _, rg := range net.Ranges {
			if rg.Name == "admin" {
				s.NextServer = rg.First
			}
		}
	}
	out, fail := reservations()
	if fail != nil {
		return fail
	}
	for i := range out {
		out[i].NextServer, out[i].BootFile = s.NextServer, s.BootFile
	}
	switch format {
	case "hostsfile":
		return sdk.Text(200, "text/plain; charset=utf-8", hostsfile(out))
	case "dnsmasq":
		return sdk.Text(200, "text/plain; charset=utf-8", dnsmasqConf(out, s, serverURL(r, s)))
	}
	return sdk.JSON(200, out)
}

// dhcpConfig is everything a DHCP server needs for the admin network:
// subnet, router, name servers, the pool for unknown machines (the admin
// network's dhcp range), reservations, and what PXE and iPXE clients
// boot. crowbar server's built-in DHCP (--boot-interface) serves it.
func dhcpConfig(r *sdk.Request) *sdk.Response {
	s, _, err := loadSettings()
	if err != nil {
		return sdk.Error(500, "provisioner: %v", err)
	}
	net, err := loadAdminNet()
	if err != nil {
		return sdk.Error(502, "reading the admin network: %v", err)
	}
	res, fail := reservations()
	if fail != nil {
		return fail
	}
	dns := net.DNSServers
	if len(dns) == 0 {
		dns = []string{}
	}
	pool := []map[string]string{}
	for _, rg := range net.Ranges {
		if rg.Name == "dhcp" {
			pool = append(pool, map[string]string{"first": rg.First, "last": rg.Last})
		}
	}
	out := make([]map[string]string, 0, len(res))
	for _, x := range res {
		out = append(out, map[string]string{"mac": x.MAC, "address": x.Address, "hostname": x.Hostname})
	}
	return sdk.JSON(200, map[string]any{"subnet": net.V4Prefix, "router": net.Router, "dns_servers": dns,
		"lease_seconds": s.LeaseSeconds, "pool": pool, "reservations": out, "next_server": s.NextServer,
		"boot_file": s.BootFile, "boot_file_efi": s.BootFileEFI,
		"boot_url": serverURL(r, s) + "/provisioner/v2/boot.ipxe"})
}

// showNode is the operator's view of a node's provisioning, token
// included (for debugging an install by hand).
func showNode(r *sdk.Request) *sdk.Response {
	var n sdk.NodeInfo
	if err := sdk.APIJSON("GET", "/api/v2/nodes/"+r.Param("id"), nil, &n); err != nil {
		if api, ok := err.(*sdk.APIError); ok {
			return sdk.Error(api.Status, "%s", api.Message)
		}
		return sdk.Error(502, "%v", err)
	}
	in, _, err := loadInstall(n.ID)
	if err != nil {
		return sdk.Error(500, "provisioner store: %v", err)
	}
	out := map[string]any{"node_id": n.ID, "name": n.Name, "bootenv": n.Bootenv, "macs": macs(&n), "install": in}
	if r.Caller == nil || r.Caller.Role == "reader" {
		if in != nil {
			out["install"] = map[string]any{"node_role_id": in.NodeRoleID, "bootenv": in.Bootenv}
		}
	}
	return sdk.JSON(200, out)
}

// loopback says whether URL u names this host's loopback, which machines
// booting elsewhere cannot reach.
func loopback(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	if p.Hostname() == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(p.Hostname())
	return err == nil && a.IsLoopback()
}
