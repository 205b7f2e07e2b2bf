//go:build wasip1

// Command network is the first-party IPAM barclamp: networks with named
// address ranges, and allocations of addresses to nodes, exact under
// concurrency because every allocation is a compare-and-swap in the
// barclamp's store. Its role network-admin gives a node its address on the
// admin network when the annealer runs it.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/crowbar-go/crowbar/sdk"
)

func init() {
	sdk.Register(&sdk.Barclamp{
		Name:        "network",
		Version:     "1.0.0",
		Description: "Networks, address ranges and address allocation (IPAM)",
		Roles: []sdk.Role{{
			Name:        "network-admin",
			Description: "Gives the node an address on the admin network (from its hint-admin-v4addr, else the host range)",
			Flags:       []string{"implicit"},
			OnTodo:      adminTodo,
			Attribs: []sdk.Attrib{{Name: "network-admin-v4addr", Map: "crowbar/network/admin/v4addr",
				Description: "The node's IPv4 address on the admin network, with its prefix length",
				Schema:      map[string]any{"type": "string"}}},
		}},
		OnNodeDelete: nodeDeleted,
		Routes: []sdk.Route{
			{Method: "GET", Path: "/networks", Handler: listNetworksRoute},
			{Method: "POST", Path: "/networks", Handler: createNetworkRoute},
			{Method: "GET", Path: "/networks/{id}", Handler: showNetwork},
			{Method: "PUT", Path: "/networks/{id}", Handler: updateNetwork},
			{Method: "DELETE", Path: "/networks/{id}", Handler: deleteNetwork},
			{Method: "GET", Path: "/networks/{id}/ranges", Handler: listRanges},
			{Method: "POST", Path: "/networks/{id}/ranges", Handler: addRange},
			{Method: "GET", Path: "/networks/{id}/allocations", Handler: networkAllocations},
			{Method: "POST", Path: "/networks/{id}/allocate", Handler: allocateRoute},
			{Method: "PUT", Path: "/networks/{id}/allocate", Handler: allocateRoute},
			{Method: "POST", Path: "/networks/{id}/deallocate", Handler: deallocateRoute},
			{Method: "PUT", Path: "/networks/{id}/deallocate", Handler: deallocateRoute},
			{Method: "GET", Path: "/allocations", Handler: allocationsRoute},
		},
	})
}

func main() {}

// reply turns an error into crowbar's JSON error.
func reply(err error) *sdk.Response {
	var inv *invalid
	var ex *exhausted
	var api *sdk.APIError
	switch {
	case errors.As(err, &inv):
		return sdk.Error(422, "%s", inv.Error())
	case errors.As(err, &ex):
		return sdk.Error(409, "%s", ex.Error())
	case isConflict(err):
		return sdk.Error(409, "%s", err.Error())
	case errors.As(err, &api):
		return sdk.Error(api.Status, "%s", api.Message)
	}
	return sdk.Error(500, "network: %v", err)
}

// network finds the network named by the route's {id}, after making sure
// the admin network was created once.
func network(r *sdk.Request) (*Network, int64, *sdk.Response) {
	if err := ensureSeeded(); err != nil {
		return nil, 0, reply(err)
	}
	n, rev, err := findNetwork(r.Param("id"))
	if err == errNotFound {
		return nil, 0, sdk.Error(404, "network '%s' not found", r.Param("id"))
	}
	if err != nil {
		return nil, 0, reply(err)
	}
	return n, rev, nil
}

func listNetworksRoute(*sdk.Request) *sdk.Response {
	if err := ensureSeeded(); err != nil {
		return reply(err)
	}
	all, err := listNetworks()
	if err != nil {
		return reply(err)
	}
	return sdk.JSON(200, all)
}

func createNetworkRoute(r *sdk.Request) *sdk.Response {
	if err := ensureSeeded(); err != nil {
		return reply(err)
	}
	var in networkInput
	if err := r.Decode(&in); err != nil {
		return sdk.Error(400, "%v", err)
	}
	if in.Name == nil || in.V4Prefix == nil {
		return sdk.Error(422, "a network needs at least a name and a v4prefix")
	}
	n := &Network{}
	in.applyTo(n)
	if err := createNetwork(n); err != nil {
		return reply(err)
	}
	return sdk.JSON(201, n)
}

func showNetwork(r *sdk.Request) *sdk.Response {
	n, _, fail := network(r)
	if fail != nil {
		return fail
	}
	return sdk.JSON(200, n)
}

// save writes n over revision rev after checking that every allocation on
// it still fits.
func save(n *Network, rev int64) *sdk.Response {
	if err := n.validate(); err != nil {
		return reply(err)
	}
	p, _ := n.prefix()
	held, err := listAllocations(n.Name, 0)
	if err != nil {
		return reply(err)
	}
	for _, a := range held {
		if addr, _ := netip.ParseAddr(a.Address); !p.Contains(addr) {
			return sdk.Error(409, "node '%s' holds %s, which would fall outside %s; deallocate it first", a.Node, a.Address, p)
		}
	}
	n.UpdatedAt = sdk.Now().UTC()
	b, _ := json.Marshal(n)
	if _, ok, err := sdk.KVCompareAndSwap(netKey+n.Name, b, rev); err != nil {
		return reply(err)
	} else if !ok {
		return sdk.Error(409, "network '%s' changed while this request was handled; read it again and retry", n.Name)
	}
	return nil
}

func updateNetwork(r *sdk.Request) *sdk.Response {
	n, rev, fail := network(r)
	if fail != nil {
		return fail
	}
	var in networkInput
	if err := r.Decode(&in); err != nil {
		return sdk.Error(400, "%v", err)
	}
	if in.Name != nil && *in.Name != n.Name {
		return sdk.Error(422, "name: a network cannot be renamed; create a new one")
	}
	in.applyTo(n)
	if fail := save(n, rev); fail != nil {
		return fail
	}
	return sdk.JSON(200, n)
}

func deleteNetwork(r *sdk.Request) *sdk.Response {
	n, rev, fail := network(r)
	if fail != nil {
		return fail
	}
	held, err := listAllocations(n.Name, 0)
	if err != nil {
		return reply(err)
	}
	if len(held) > 0 {
		return sdk.Error(409, "network '%s' has %d allocated address(es); deallocate them first", n.Name, len(held))
	}
	if ok, err := sdk.KVDelete(netKey+n.Name, rev); err != nil {
		return reply(err)
	} else if !ok {
		return sdk.Error(409, "network '%s' changed while this request was handled; retry", n.Name)
	}
	return sdk.JSON(200, map[string]any{})
}

func listRanges(r *sdk.Request) *sdk.Response {
	n, _, fail := network(r)
	if fail != nil {
		return fail
	}
	return sdk.JSON(200, n.Ranges)
}

func addRange(r *sdk.Request) *sdk.Response {
	n, rev, fail := network(r)
	if fail != nil {
		return fail
	}
	var rg Range
	if err := r.Decode(&rg); err != nil {
		return sdk.Error(400, "%v", err)
	}
	if n.rangeNamed(rg.Name) != nil {
		return sdk.Error(409, "network '%s' already has a range '%s'", n.Name, rg.Name)
	}
	n.Ranges = append(n.Ranges, rg)
	if fail := save(n, rev); fail != nil {
		return fail
	}
	return sdk.JSON(201, rg)
}

// findNode resolves a node name or id through the core API.
func findNode(key string) (nodeRef, *sdk.Response) {
	if key == "" {
		return nodeRef{}, sdk.Error(422, "node: a node name or id is required")
	}
	var n sdk.NodeInfo
	if err := sdk.APIJSON("GET", "/api/v2/nodes/"+key, nil, &n); err != nil {
		var api *sdk.APIError
		if errors.As(err, &api) && api.Status == 404 {
			return nodeRef{}, sdk.Error(404, "node '%s' not found", key)
		}
		return nodeRef{}, reply(err)
	}
	return nodeRef{ID: n.ID, Name: n.Name}, nil
}

// nodeField reads {"node": "name"} or {"node": 12}.
type nodeField string

func (f *nodeField) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*f = nodeField(s)
		return nil
	}
	var id int64
	if err := json.Unmarshal(b, &id); err != nil {
		return fmt.Errorf("node must be a name or an id, not %s", b)
	}
	*f = nodeField(strconv.FormatInt(id, 10))
	return nil
}

func allocateRoute(r *sdk.Request) *sdk.Response {
	n, _, fail := network(r)
	if fail != nil {
		return fail
	}
	var in struct {
		Node    nodeField `json:"node"`
		Range   string    `json:"range"`
		Address string    `json:"address"`
	}
	if err := r.Decode(&in); err != nil {
		return sdk.Error(400, "%v", err)
	}
	var want netip.Addr
	if in.Address != "" {
		a, err := parseHint(in.Address)
		if err != nil {
			return sdk.Error(422, "address: %v", err)
		}
		want = a
	}
	if in.Range == "" {
		in.Range = "host"
	}
	node, fail := findNode(string(in.Node))
	if fail != nil {
		return fail
	}
	al, created, err := allocate(n.Name, node, in.Range, want)
	if err != nil {
		return reply(err)
	}
	if want.IsValid() && al.Address != want.String() {
		return sdk.Error(409, "node '%s' already holds %s on network '%s'; deallocate it first", node.Name, al.Address, n.Name)
	}
	if created {
		return sdk.JSON(201, al)
	}
	return sdk.JSON(200, al)
}

func deallocateRoute(r *sdk.Request) *sdk.Response {
	n, _, fail := network(r)
	if fail != nil {
		return fail
	}
	var in struct {
		Node nodeField `json:"node"`
	}
	if err := r.Decode(&in); err != nil {
		return sdk.Error(400, "%v", err)
	}
	node, fail := findNode(string(in.Node))
	if fail != nil {
		return fail
	}
	if err := deallocate(n.Name, node.ID); err != nil {
		return reply(err)
	}
	return sdk.JSON(200, map[string]any{})
}

func networkAllocations(r *sdk.Request) *sdk.Response {
	n, _, fail := network(r)
	if fail != nil {
		return fail
	}
	all, err := listAllocations(n.Name, 0)
	if err != nil {
		return reply(err)
	}
	return sdk.JSON(200, all)
}

// allocationsRoute lists allocations, filtered by ?network= and ?node=
// (a name or an id).
func allocationsRoute(r *sdk.Request) *sdk.Response {
	var node int64
	if key := r.QueryValue("node"); key != "" {
		ref, fail := findNode(key)
		if fail != nil {
			return fail
		}
		node = ref.ID
	}
	network := r.QueryValue("network")
	if network != "" {
		n, _, err := findNetwork(network)
		if err == errNotFound {
			return sdk.Error(404, "network '%s' not found", network)
		} else if err != nil {
			return reply(err)
		}
		network = n.Name
	}
	all, err := listAllocations(network, node)
	if err != nil {
		return reply(err)
	}
	return sdk.JSON(200, all)
}

// parseHint reads "192.168.124.99" or "192.168.124.99/24".
func parseHint(s string) (netip.Addr, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return netip.Addr{}, fmt.Errorf("'%s' is not an IPv4 address", s)
		}
		return p.Addr(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("'%s' is not an IPv4 address", s)
	}
	return a, nil
}

// adminTodo gives the node its admin address: the one its
// hint-admin-v4addr names, else the first free one of the host range.
func adminTodo(e *sdk.Event) *sdk.Result {
	if err := ensureSeeded(); err != nil {
		return sdk.Failed("network: %v", err)
	}
	node, err := e.NodeInfo()
	if err != nil {
		return sdk.Failed("%v", err)
	}
	var want netip.Addr
	note := ""
	if h, ok := node.Hint["admin_v4addr"].(string); ok && h != "" {
		if want, err = parseHint(h); err != nil {
			return sdk.Failed("hint-admin-v4addr: %v", err)
		}
		note = " (from hint-admin-v4addr)"
	}
	al, _, err := allocate("admin", nodeRef{ID: node.ID, Name: node.Name}, "host", want)
	if err != nil {
		return sdk.Failed("cannot give %s an admin address: %v", node.Name, err)
	}
	if want.IsValid() && al.Address != want.String() {
		return sdk.Failed("%s already holds %s on the admin network, not %s from its hint-admin-v4addr; deallocate it first",
			node.Name, al.Address, want)
	}
	n, _, err := findNetwork("admin")
	if err != nil {
		return sdk.Failed("network: %v", err)
	}
	wall := map[string]any{"crowbar": map[string]any{"network": map[string]any{"admin": map[string]any{
		"v4addr": al.CIDR, "address": al.Address, "range": al.Range, "router": n.Router, "vlan": n.VLAN,
		"use_vlan": n.UseVLAN, "conduit": n.Conduit, "dns_servers": n.DNSServers,
	}}}}
	return sdk.Active(wall, fmt.Sprintf("%s has %s on the admin network%s", node.Name, al.CIDR, note))
}

// nodeDeleted frees the deleted node's addresses.
func nodeDeleted(e *sdk.Event) *sdk.Result {
	node, err := e.NodeInfo()
	if err != nil {
		return sdk.Failed("%v", err)
	}
	if err := deallocateNode(node.ID); err != nil {
		return sdk.Failed("freeing the addresses of %s: %v", node.Name, err)
	}
	return nil
}
