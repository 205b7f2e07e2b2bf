//go:build !wasip1

package barclamps_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/anneal"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

// firstParty serves the first-party barclamps, compiled from source and
// installed as the server installs its embedded ones (enabled in system).
func firstParty(t *testing.T, st *store.Store, opts ...func(*apitest.Setup)) *apitest.Server {
	t.Helper()
	s := apitest.New(t, st, append([]func(*apitest.Setup){func(su *apitest.Setup) {
		su.Host = pluginstest.Host(t, st, plugins.Config{PoolSize: 4})
		su.API.Anneal = anneal.Config{Workers: 16, Poll: 50 * time.Millisecond}
	}}, opts...)...)
	for _, name := range []string{"network", "provisioner", "crowbar"} {
		if _, err := s.Barclamps.Install(context.Background(), pluginstest.Build(t, "barclamps/"+name), barclamp.SourceEmbedded); err != nil {
			t.Fatalf("install %s: %v", name, err)
		}
	}
	return s
}

// settle waits until the annealer is idle and the notification hooks ran.
func settle(t *testing.T, s *apitest.Server) {
	t.Helper()
	// A liveness bound, not a speed check: 250 hooks under the race
	// detector on a busy 2-core machine take a minute.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st := s.Must(200, "GET", "/api/v2/anneal", "").Object(t)
		if st["idle"] == true && st["in_flight"].(float64) == 0 {
			s.API.Hooks().Wait()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("annealer not idle: %v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nodeRole returns the node's node-role of role.
func nodeRole(t *testing.T, s *apitest.Server, node, role string) map[string]any {
	t.Helper()
	for _, nr := range s.Must(200, "GET", "/api/v2/node_roles?role="+role, "").List(t) {
		n := s.Must(200, "GET", fmt.Sprintf("/api/v2/nodes/%v", nr["node_id"]), "").Object(t)
		if n["name"] == node {
			return nr
		}
	}
	t.Fatalf("%s has no %s node-role", node, role)
	return nil
}

func TestNetworkRoutes(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := firstParty(t, st)
		nets := s.Must(200, "GET", "/network/v2/networks", "").List(t)
		if len(nets) != 1 || nets[0]["name"] != "admin" || nets[0]["v4prefix"] != "192.168.124.0/24" {
			t.Fatalf("the admin network is not there on first load: %v", nets)
		}
		ranges := s.Must(200, "GET", "/network/v2/networks/admin/ranges", "").List(t)
		if len(ranges) != 3 || ranges[0]["name"] != "admin" || ranges[1]["name"] != "dhcp" || ranges[2]["name"] != "host" {
			t.Fatalf("admin ranges: %v", ranges)
		}
		s.Must(200, "GET", fmt.Sprintf("/network/v2/networks/%v", nets[0]["id"]), "")
		s.Must(404, "GET", "/network/v2/networks/nope", "")
		s.Must(401, "GET", "/network/v2/networks", "", "Authorization", "")

		storage := `{"name": "storage", "v4prefix": "10.20.0.0/24", "vlan": 20, "use_vlan": true, "router": "10.20.0.1",
			"dns_servers": ["10.20.0.2"], "ranges": [{"name": "host", "first": "10.20.0.10", "last": "10.20.0.12"}]}`
		created := s.Must(201, "POST", "/network/v2/networks", storage).Object(t)
		if created["id"].(float64) < 2 || created["vlan"].(float64) != 20 {
			t.Fatalf("created: %v", created)
		}
		s.Must(409, "POST", "/network/v2/networks", storage)

		// Bad input: a clear 4xx and nothing stored.
		for _, c := range []struct {
			code int
			body string
			says string
		}{
			{400, `{"name": "x", `, "malformed"},
			{400, `{"name": "x", "v4prefix": "10.0.0.0/24", "colour": "red"}`, "unknown field"},
			{400, `{"name": "x", "v4prefix": "10.0.0.0/24", "vlan": "ten"}`, "vlan"},
			{422, `{"name": "x"}`, "v4prefix"},
			{422, `{"name": "Bad_Name", "v4prefix": "10.0.0.0/24"}`, "name"},
			{422, `{"name": "x", "v4prefix": "10.0.0.5/24"}`, "host bits"},
			{422, `{"name": "x", "v4prefix": "10.0.0.0/33"}`, "v4prefix"},
			{422, `{"name": "x", "v4prefix": "10.0.0.0/24", "v6prefix": "10.0.1.0/24"}`, "v6prefix"},
			{422, `{"name": "x", "v4prefix": "10.0.0.0/24", "vlan": 5000}`, "vlan"},
			{422, `{"name": "x", "v4prefix": "10.0.0.0/24", "team_mode": 9}`, "team_mode"},
			{422, `{"name": "x", "v4prefix": "10.0.0.0/24", "router": "10.0.1.1"}`, "router"},
			{422, `{"name": "x", "v4prefix": "10.0.0.0/24", "dns_servers": ["dns.example.com"]}`, "dns_servers"},
			{422, `{"name": "x", "v4prefix": "10.0.0.0/24", "ranges": [{"name": "a", "first": "10.0.1.1", "last": "10.0.1.5"}]}`, "not inside"},
			{422, `{"name": "x", "v4prefix": "10.0.0.0/24", "ranges": [{"name": "a", "first": "10.0.0.9", "last": "10.0.0.5"}]}`, "before it starts"},
			{422, `{"name": "x", "v4prefix": "10.0.0.0/24", "ranges": [{"name": "a", "first": "10.0.0.1", "last": "10.0.0.9"}, {"name": "b", "first": "10.0.0.9", "last": "10.0.0.20"}]}`, "overlap"},
			{422, `{"name": "x", "v4prefix": "10.0.0.0/24", "ranges": [{"name": "a", "first": "10.0.0.1", "last": "10.0.0.2"}, {"name": "a", "first": "10.0.0.3", "last": "10.0.0.4"}]}`, "twice"},
			{422, `{"name": "x", "v4prefix": "10.0.0.0/24", "ranges": [{"name": "a", "first": "nope", "last": "10.0.0.2"}]}`, "addresses"},
		} {
			r := s.Must(c.code, "POST", "/network/v2/networks", c.body)
			if !strings.Contains(string(r.Body), c.says) || r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("POST %s: %s does not say %q", c.body, r.Body, c.says)
			}
		}
		if n := len(s.Must(200, "GET", "/network/v2/networks", "").List(t)); n != 2 {
			t.Fatalf("bad input stored something: %d networks", n)
		}

		// Allocations through the routes.
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "a.example.com"}`)
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "b.example.com"}`)
		first := s.Must(201, "POST", "/network/v2/networks/storage/allocate", `{"node": "a.example.com"}`).Object(t)
		if first["address"] != "10.20.0.10" || first["v4addr"] != "10.20.0.10/24" || first["range"] != "host" {
			t.Fatalf("allocation: %v", first)
		}
		if again := s.Must(200, "PUT", "/network/v2/networks/storage/allocate", `{"node": "a.example.com"}`).Object(t); again["address"] != "10.20.0.10" {
			t.Fatalf("a second allocation for the same node gave %v", again)
		}
		s.Must(409, "POST", "/network/v2/networks/storage/allocate", `{"node": "b.example.com", "address": "10.20.0.10"}`)
		s.Must(201, "POST", "/network/v2/networks/storage/allocate", `{"node": "b.example.com", "address": "10.20.0.200"}`)
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "c.example.com"}`)
		s.Must(422, "POST", "/network/v2/networks/storage/allocate", `{"node": "c.example.com", "range": "nope"}`)
		s.Must(422, "POST", "/network/v2/networks/storage/allocate", `{"node": "c.example.com", "address": "10.99.0.1"}`)
		s.Must(422, "POST", "/network/v2/networks/storage/allocate", `{"node": "c.example.com", "address": "10.20.0.255"}`)
		s.Must(422, "POST", "/network/v2/networks/storage/allocate", `{"node": "c.example.com", "address": "ten"}`)
		s.Must(409, "POST", "/network/v2/networks/storage/allocate", `{"node": "a.example.com", "address": "10.20.0.11"}`)
		s.Must(422, "POST", "/network/v2/networks/storage/allocate", `{}`)
		s.Must(404, "POST", "/network/v2/networks/storage/allocate", `{"node": "ghost.example.com"}`)
		s.Must(404, "POST", "/network/v2/networks/nope/allocate", `{"node": "a.example.com"}`)
		s.Must(400, "POST", "/network/v2/networks/storage/allocate", `{"node": ["a"]}`)
		s.Must(400, "POST", "/network/v2/networks/storage/allocate", `{"node": "a.example.com", "size": 1}`)
		if l := s.Must(200, "GET", "/network/v2/allocations?node=b.example.com", "").List(t); len(l) != 1 || l[0]["address"] != "10.20.0.200" || l[0]["range"] != "" {
			t.Fatalf("allocations of b: %v", l)
		}
		s.Must(404, "GET", "/network/v2/allocations?network=nope", "")
		if l := s.Must(200, "GET", "/network/v2/networks/storage/allocations", "").List(t); len(l) != 2 {
			t.Fatalf("storage allocations: %v", l)
		}

		// Changing a network keeps its allocations inside it.
		s.Must(409, "PUT", "/network/v2/networks/storage", `{"v4prefix": "10.30.0.0/24", "router": "10.30.0.1", "dns_servers": [], "ranges": []}`)
		s.Must(422, "PUT", "/network/v2/networks/storage", `{"name": "renamed"}`)
		s.Must(400, "PUT", "/network/v2/networks/storage", `{"vlan": true}`)
		s.Must(201, "POST", "/network/v2/networks/storage/ranges", `{"name": "dhcp", "first": "10.20.0.100", "last": "10.20.0.150"}`)
		s.Must(409, "POST", "/network/v2/networks/storage/ranges", `{"name": "dhcp", "first": "10.20.0.160", "last": "10.20.0.170"}`)
		s.Must(422, "POST", "/network/v2/networks/storage/ranges", `{"name": "more", "first": "10.20.0.140", "last": "10.20.0.160"}`)
		if got := s.Must(200, "PUT", "/network/v2/networks/storage", `{"description": "disks", "vlan": 21}`).Object(t); got["vlan"].(float64) != 21 || len(got["ranges"].([]any)) != 2 {
			t.Fatalf("update: %v", got)
		}
		s.Must(409, "DELETE", "/network/v2/networks/storage", "")
		s.Must(200, "POST", "/network/v2/networks/storage/deallocate", `{"node": "a.example.com"}`)
		s.Must(200, "PUT", "/network/v2/networks/storage/deallocate", `{"node": "b.example.com"}`)
		s.Must(200, "DELETE", "/network/v2/networks/storage", "")
		s.Must(404, "GET", "/network/v2/networks/storage", "")
	})
}

// commitMany creates a deployment of n alive nodes, binds network-admin to
// each and commits the deployment, so every node-role becomes runnable at
// once.
func commitMany(t *testing.T, s *apitest.Server, n int) {
	t.Helper()
	s.Must(201, "POST", "/api/v2/deployments", `{"name": "many"}`)
	for i := range n {
		name := fmt.Sprintf("m%03d.example.com", i)
		s.Must(201, "POST", "/api/v2/nodes", fmt.Sprintf(`{"name": %q, "alive": true, "available": true, "deployment": "many"}`, name))
		s.Must(201, "POST", "/api/v2/node_roles", fmt.Sprintf(`{"node": %q, "role": "network-admin"}`, name))
	}
	s.Must(200, "PUT", "/api/v2/deployments/many/commit", "")
	settle(t, s)
}

func TestAdminAddressesUnderConcurrency(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := firstParty(t, st)
		s.Must(200, "PUT", "/network/v2/networks/admin", `{"v4prefix": "10.10.0.0/16", "router": "10.10.0.1",
			"ranges": [{"name": "admin", "first": "10.10.0.10", "last": "10.10.0.11"}, {"name": "host", "first": "10.10.1.0", "last": "10.10.3.255"}]}`)
		// 120 nodes: seven and a half rounds of the annealer's 16 workers
		// allocating at once (250 took 95 s of make test under -race).
		const n = 120
		commitMany(t, s, n)
		allocs := s.Must(200, "GET", "/network/v2/allocations?network=admin", "").List(t)
		seen := map[string]bool{}
		for _, a := range allocs {
			if seen[a["address"].(string)] {
				t.Fatalf("address %v given twice", a["address"])
			}
			seen[a["address"].(string)] = true
		}
		if len(allocs) != n {
			t.Fatalf("%d allocations for %d nodes", len(allocs), n)
		}
		status := s.Must(200, "GET", "/api/v2/anneal", "").Object(t)
		if counts := status["counts"].(map[string]any); counts["active"].(float64) != n {
			t.Fatalf("anneal: %v", status)
		}
		// The converge shows in the metrics: hook calls into the network
		// barclamp, runs recorded active, live instances.
		h, err := s.API.Metrics("scrape-secret-0123456789")
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Authorization", "Bearer scrape-secret-0123456789")
		h.ServeHTTP(rec, req)
		for _, want := range []string{`crowbar_wasm_calls_total{barclamp="network",export="hook",result="ok"}`,
			`crowbar_wasm_call_seconds_bucket{barclamp="network",export="hook",le=`, `crowbar_wasm_instances{barclamp="network"}`,
			`crowbar_anneal_transitions_total{result="active"}`, "crowbar_anneal_claim_seconds_count ", `crowbar_node_roles{state="active"}`} {
			if !strings.Contains(rec.Body.String(), want) {
				t.Errorf("metrics after the converge lack %s", want)
			}
		}
		v := s.Must(200, "GET", "/api/v2/nodes/m007.example.com/attribs/network-admin-v4addr", "").Object(t)["value"].(string)
		if !strings.HasPrefix(v, "10.10.") || !strings.HasSuffix(v, "/16") || !seen[strings.TrimSuffix(v, "/16")] {
			t.Fatalf("network-admin-v4addr of m007: %v", v)
		}
	})
}

func TestAdminRangeExhaustedAndFreed(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := firstParty(t, st)
		s.Must(200, "PUT", "/network/v2/networks/admin", `{"ranges": [{"name": "host", "first": "192.168.124.81", "last": "192.168.124.82"}]}`)
		commitMany(t, s, 3)
		var failed map[string]any
		active := 0
		for _, nr := range s.Must(200, "GET", "/api/v2/node_roles?role=network-admin", "").List(t) {
			switch nr["state_name"] {
			case "active":
				active++
			case "error":
				failed = nr
			}
		}
		if active != 2 || failed == nil || !strings.Contains(failed["runlog"].(string), "range exhausted") {
			t.Fatalf("want 2 active and 1 'range exhausted'; active %d, failed %v", active, failed)
		}
		if n := len(s.Must(200, "GET", "/network/v2/allocations", "").List(t)); n != 2 {
			t.Fatalf("%d allocations in a range of 2", n)
		}

		// Deleting a node frees its address; the failed node-role then works.
		var holder string
		for _, a := range s.Must(200, "GET", "/network/v2/allocations", "").List(t) {
			holder = a["node"].(string)
		}
		s.Must(200, "DELETE", "/api/v2/nodes/"+holder, "")
		settle(t, s)
		if n := len(s.Must(200, "GET", "/network/v2/allocations", "").List(t)); n != 1 {
			t.Fatalf("deleting %s left %d allocations", holder, n)
		}
		s.Must(200, "PUT", fmt.Sprintf("/api/v2/node_roles/%v/retry", failed["id"]), "")
		settle(t, s)
		if nr := s.Must(200, "GET", fmt.Sprintf("/api/v2/node_roles/%v", failed["id"]), "").Object(t); nr["state_name"] != "active" {
			t.Fatalf("after freeing an address: %v", nr)
		}

		// A hint naming a taken address fails with who holds it.
		taken := s.Must(200, "GET", "/network/v2/allocations", "").List(t)[0]
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "late.example.com", "alive": true}`)
		s.Must(200, "PUT", "/api/v2/nodes/late.example.com/attribs/hint-admin-v4addr", fmt.Sprintf(`{"value": "%v/24"}`, taken["address"]))
		s.Must(201, "POST", "/api/v2/node_roles", `{"node": "late.example.com", "role": "network-admin"}`)
		s.Must(200, "PUT", "/api/v2/nodes/late.example.com/commit", "")
		settle(t, s)
		nr := nodeRole(t, s, "late.example.com", "network-admin")
		if nr["state_name"] != "error" || !strings.Contains(nr["runlog"].(string), fmt.Sprintf("taken by node '%v'", taken["node"])) {
			t.Fatalf("hint on a taken address: %v", nr)
		}
	})
}

// TestReclaimMissedDelete: an address whose node was deleted while no
// server could tell the barclamp is reclaimed when the range runs out.
func TestReclaimMissedDelete(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := firstParty(t, st)
		s.Must(200, "PUT", "/network/v2/networks/admin", `{"ranges": [{"name": "host", "first": "192.168.124.81", "last": "192.168.124.81"}]}`)
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "old.example.com"}`)
		s.Must(201, "POST", "/network/v2/networks/admin/allocate", `{"node": "old.example.com"}`)
		// Delete the row behind the API's back: no hook hears of it.
		if err := st.DB.Exec("DELETE FROM nodes WHERE name = ?", "old.example.com").Error; err != nil {
			t.Fatal(err)
		}
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "new.example.com"}`)
		got := s.Must(201, "POST", "/network/v2/networks/admin/allocate", `{"node": "new.example.com"}`).Object(t)
		if got["address"] != "192.168.124.81" {
			t.Fatalf("reclaimed: %v", got)
		}
		var l []any
		json.Unmarshal(s.Must(200, "GET", "/network/v2/allocations", "").Body, &l) //nolint:errcheck
		if len(l) != 1 {
			t.Fatalf("allocations after reclaiming: %v", l)
		}
	})
}
