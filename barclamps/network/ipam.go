//go:build wasip1

package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/sdk"
)

// Allocation is one address held by one node.
type Allocation struct {
	Network   string    `json:"network"`
	Range     string    `json:"range"` // "" for an address outside every range (a hint)
	Address   string    `json:"address"`
	CIDR      string    `json:"v4addr"` // address with the network's prefix length
	NodeID    int64     `json:"node_id"`
	Node      string    `json:"node"`
	CreatedAt time.Time `json:"created_at"`
}

// The store. Uniqueness comes from compare-and-swap on create:
//
//	alloc/<network>/<address> → Allocation   (one holder per address)
//	node/<node id>/<network>  → address      (one address per node and network)
//
// A node's key is written before its allocation's, and points at the
// address it is trying; an allocation whose node key does not point back
// at it is left over from a crash and is reclaimed.
func allocKey(network string, a netip.Addr) string { return "alloc/" + network + "/" + a.String() }
func allocPrefix(network string) string            { return "alloc/" + network + "/" }
func nodeKey(nodeID int64, network string) string {
	return "node/" + strconv.FormatInt(nodeID, 10) + "/" + network
}
func nodePrefix(nodeID int64) string { return "node/" + strconv.FormatInt(nodeID, 10) + "/" }

// nodeRef names a node.
type nodeRef struct {
	ID   int64
	Name string
}

// exhausted is a full range.
type exhausted struct{ network, rng, first, last string }

func (e *exhausted) Error() string {
	return fmt.Sprintf("range exhausted: range '%s' (%s–%s) of network '%s' has no free address", e.rng, e.first, e.last, e.network)
}

func getAlloc(key string) (*Allocation, int64, error) {
	v, rev, found, err := sdk.KVGet(key)
	if err != nil || !found {
		return nil, 0, err
	}
	var a Allocation
	if err := json.Unmarshal(v, &a); err != nil {
		return nil, 0, fmt.Errorf("stored allocation %s is corrupt: %v", key, err)
	}
	return &a, rev, nil
}

// held returns the node's allocation on network (nil when none) and the
// revision of its node key (0 when there is none) for the next write.
func held(network string, node int64) (*Allocation, int64, error) {
	v, rev, found, err := sdk.KVGet(nodeKey(node, network))
	if err != nil || !found {
		return nil, 0, err
	}
	a, err := netip.ParseAddr(string(v))
	if err != nil {
		return nil, rev, nil // unreadable: overwritten by the next allocation
	}
	al, _, err := getAlloc(allocKey(network, a))
	if err != nil {
		return nil, 0, err
	}
	if al != nil && al.NodeID == node {
		return al, rev, nil
	}
	return nil, rev, nil
}

// allocations returns the allocations on network by address.
func allocations(network string) (map[netip.Addr]*Allocation, error) {
	entries, err := sdk.KVList(allocPrefix(network))
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Addr]*Allocation, len(entries))
	for _, e := range entries {
		var a Allocation
		if err := json.Unmarshal(e.Value, &a); err != nil {
			continue
		}
		if addr, err := netip.ParseAddr(a.Address); err == nil {
			out[addr] = &a
		}
	}
	return out, nil
}

// allocate gives node an address on network: want when it is valid (a
// hint), else the first free address of range rng. A node that already
// holds an address there keeps it (created is false).
func allocate(netName string, node nodeRef, rng string, want netip.Addr) (al *Allocation, created bool, err error) {
	n, _, err := findNetwork(netName)
	if err != nil {
		if err == errNotFound {
			return nil, false, bad("network", "there is no network '%s'", netName)
		}
		return nil, false, err
	}
	p, err := n.prefix()
	if err != nil {
		return nil, false, err
	}
	cur, nodeRev, err := held(n.Name, node.ID)
	if err != nil || cur != nil {
		return cur, false, err
	}
	var candidates func(taken map[netip.Addr]*Allocation) []netip.Addr
	if want.IsValid() {
		if !p.Contains(want) {
			return nil, false, bad("address", "%s is outside network '%s' (%s)", want, n.Name, p)
		}
		if want == p.Addr() || want == lastAddr(p) || want.String() == n.Router {
			return nil, false, bad("address", "%s is the network, broadcast or router address of '%s'", want, n.Name)
		}
		candidates = func(taken map[netip.Addr]*Allocation) []netip.Addr {
			if h := taken[want]; h != nil {
				return nil
			}
			return []netip.Addr{want}
		}
	} else {
		r := n.rangeNamed(rng)
		if r == nil {
			names := []string{}
			for _, r := range n.Ranges {
				names = append(names, r.Name)
			}
			return nil, false, bad("range", "network '%s' has no range '%s'; it has: %s", n.Name, rng, strings.Join(names, ", "))
		}
		first, _ := netip.ParseAddr(r.First)
		last, _ := netip.ParseAddr(r.Last)
		candidates = func(taken map[netip.Addr]*Allocation) []netip.Addr {
			var out []netip.Addr
			for a := first; a.IsValid() && !last.Less(a); a = a.Next() {
				if taken[a] == nil && a.String() != n.Router {
					out = append(out, a)
				}
			}
			return out
		}
	}
	for round := 0; ; round++ {
		taken, err := allocations(n.Name)
		if err != nil {
			return nil, false, err
		}
		for _, a := range candidates(taken) {
			// Point the node's key at a first: a crash between the two writes
			// leaves a reservation the node's next attempt overwrites.
			rev, ok, err := sdk.KVCompareAndSwap(nodeKey(node.ID, n.Name), []byte(a.String()), nodeRev)
			if err != nil {
				return nil, false, err
			}
			if !ok { // another allocation for this node is under way
				cur, _, err := held(n.Name, node.ID)
				if err == nil && cur == nil {
					err = &conflict{fmt.Sprintf("another allocation for node '%s' on '%s' is under way", node.Name, n.Name)}
				}
				return cur, false, err
			}
			nodeRev = rev
			al := &Allocation{Network: n.Name, Range: n.rangeOf(a), Address: a.String(),
				CIDR: netip.PrefixFrom(a, p.Bits()).String(), NodeID: node.ID, Node: node.Name, CreatedAt: sdk.Now().UTC()}
			b, _ := json.Marshal(al)
			if _, ok, err := sdk.KVCompareAndSwap(allocKey(n.Name, a), b, 0); err != nil {
				return nil, false, err
			} else if ok {
				return al, true, nil
			}
			// Somebody took a since we listed: try the next one.
		}
		if want.IsValid() {
			release(nodeKey(node.ID, n.Name), nodeRev)
			holder := taken[want]
			if holder == nil {
				holder, _, _ = getAlloc(allocKey(n.Name, want))
			}
			if holder != nil {
				return nil, false, &conflict{fmt.Sprintf("address %s on network '%s' is taken by node '%s'", want, n.Name, holder.Node)}
			}
			return nil, false, &conflict{fmt.Sprintf("address %s on network '%s' was taken meanwhile", want, n.Name)}
		}
		if round == 0 {
			if freed, err := reclaim(n.Name, taken); err != nil {
				return nil, false, err
			} else if freed > 0 {
				continue
			}
		}
		release(nodeKey(node.ID, n.Name), nodeRev)
		r := n.rangeNamed(rng)
		return nil, false, &exhausted{n.Name, rng, r.First, r.Last}
	}
}

func release(key string, rev int64) {
	if rev != 0 {
		sdk.KVDelete(key, rev) //nolint:errcheck // best effort: a stale reservation is harmless
	}
}

// reclaim frees allocations left by crashes or by nodes deleted while no
// server heard of it; it reports how many it freed.
func reclaim(network string, taken map[netip.Addr]*Allocation) (int, error) {
	freed := 0
	for a, al := range taken {
		v, _, found, err := sdk.KVGet(nodeKey(al.NodeID, network))
		if err != nil {
			return freed, err
		}
		stale := !found || string(v) != a.String()
		if !stale {
			status, _, err := sdk.API("GET", "/api/v2/nodes/"+strconv.FormatInt(al.NodeID, 10), nil)
			if err != nil {
				return freed, err
			}
			stale = status == 404
		}
		if !stale {
			continue
		}
		if found && string(v) == a.String() {
			if err := deallocate(network, al.NodeID); err != nil { // the node is gone
				return freed, err
			}
		} else if _, rev, err := getAlloc(allocKey(network, a)); err != nil {
			return freed, err
		} else {
			release(allocKey(network, a), rev) // its node holds another address, or none
		}
		sdk.Log(sdk.LevelInfo, "reclaimed an address of a node that no longer holds it", "network", network, "address", a.String(), "node_id", al.NodeID)
		freed++
	}
	return freed, nil
}

// deallocate frees node's address on network; freeing nothing is fine.
func deallocate(network string, node int64) error {
	v, rev, found, err := sdk.KVGet(nodeKey(node, network))
	if err != nil || !found {
		return err
	}
	if a, err := netip.ParseAddr(string(v)); err == nil {
		al, arev, err := getAlloc(allocKey(network, a))
		if err != nil {
			return err
		}
		if al != nil && al.NodeID == node {
			if _, err := sdk.KVDelete(allocKey(network, a), arev); err != nil {
				return err
			}
		}
	}
	_, err = sdk.KVDelete(nodeKey(node, network), rev)
	return err
}

// deallocateNode frees every address of node.
func deallocateNode(node int64) error {
	entries, err := sdk.KVList(nodePrefix(node))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := deallocate(strings.TrimPrefix(e.Key, nodePrefix(node)), node); err != nil {
			return err
		}
	}
	return nil
}

// nodeAllocations reads one node's allocations through its node keys
// rather than every allocation.
func nodeAllocations(network string, node int64) ([]*Allocation, error) {
	entries, err := sdk.KVList(nodePrefix(node))
	if err != nil {
		return nil, err
	}
	out := []*Allocation{}
	for _, e := range entries {
		net := strings.TrimPrefix(e.Key, nodePrefix(node))
		if network != "" && net != network {
			continue
		}
		if al, _, err := held(net, node); err != nil {
			return nil, err
		} else if al != nil {
			out = append(out, al)
		}
	}
	return out, nil
}

// listAllocations returns allocations, optionally of one network and one
// node, by network then address.
func listAllocations(network string, node int64) ([]*Allocation, error) {
	if node != 0 {
		return nodeAllocations(network, node)
	}
	prefix := "alloc/"
	if network != "" {
		prefix = allocPrefix(network)
	}
	entries, err := sdk.KVList(prefix)
	if err != nil {
		return nil, err
	}
	out := []*Allocation{}
	for _, e := range entries {
		var a Allocation
		if err := json.Unmarshal(e.Value, &a); err != nil {
			continue
		}
		if node == 0 || a.NodeID == node {
			out = append(out, &a)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Network != out[j].Network {
			return out[i].Network < out[j].Network
		}
		ai, _ := netip.ParseAddr(out[i].Address)
		aj, _ := netip.ParseAddr(out[j].Address)
		return ai.Less(aj)
	})
	return out, nil
}
