package nodetest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/nodes"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// scriptServer is a server with the scriptjig test barclamp enabled in
// the system deployment; agents heartbeat slowly (there are many).
func scriptServer(t *testing.T, st *store.Store) *apitest.Server {
	t.Helper()
	s := barclampServer(t, st, "plugins/testdata/scriptjig", barclamp.SourceInstalled, 2,
		nodes.Config{Heartbeat: 5 * time.Second, DeadAfter: time.Minute})
	s.Must(200, "PUT", "/api/v2/deployments/system/barclamps/scriptjig", "")
	return s
}

func slowBeat(c *agent.Config) { c.Heartbeat = 5 * time.Second }

// nodeRoles returns role → node-role of a node.
func nodeRoles(t *testing.T, s *apitest.Server, node string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, nr := range s.Must(200, "GET", "/api/v2/nodes/"+node+"/node_roles", "").List(t) {
		role := s.Must(200, "GET", fmt.Sprintf("/api/v2/roles/%v", nr["role_id"]), "").Object(t)
		out[role["name"].(string)] = nr
	}
	return out
}

// TestScriptJig: a script role converges 100 nodes (agents on one host;
// 30 on PostgreSQL), its wall data reaching a child role's script; a
// failing script's stderr and exit code are in its run log; a long one's
// output shows while it runs.
func TestScriptJig(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := scriptServer(t, st)
		// 100 nodes on SQLite, where the annealer and the API share one
		// writer; PostgreSQL repeats the flows with 30 (200 scripts of ~10
		// processes each fill both cores for most of a minute under -race).
		n := 100
		if st.Dialect != store.SQLite {
			n = 30
		}
		agents := make([]*apitest.Agent, n)
		for i := range agents {
			agents[i] = s.StartAgent(slowBeat, func(c *agent.Config) { c.Name = fmt.Sprintf("sj%03d.example.com", i) })
		}
		for _, ag := range agents {
			s.Must(201, "POST", "/api/v2/node_roles", fmt.Sprintf(`{"node": %q, "role": "sj-child"}`, ag.Node.Name))
			s.Must(200, "PUT", "/api/v2/nodes/"+ag.Node.Name+"/commit", "")
		}
		waitActive(t, s, 2*n)
		for _, ag := range agents[:5] {
			nrs := nodeRoles(t, s, ag.Node.Name)
			probe, child := nrs["sj-probe"], nrs["sj-child"]
			if probe["state_name"] != "active" || child["state_name"] != "active" {
				t.Fatalf("%s: probe %v, child %v", ag.Node.Name, probe["state_name"], child["state_name"])
			}
			wall := probe["wall"].(map[string]any)["sj"].(map[string]any)["probe"].(map[string]any)
			if wall["node"] != ag.Node.Name || wall["greeting"] != "hello" {
				t.Fatalf("probe wall: %v", probe["wall"])
			}
			if !strings.Contains(probe["runlog"].(string), "probing "+ag.Node.Name+" as sj-probe") ||
				!strings.Contains(probe["runlog"].(string), "the greeting is hello") || strings.Contains(probe["runlog"].(string), "crowbar-wall") {
				t.Fatalf("probe run log: %q", probe["runlog"])
			}
			if saw := child["wall"].(map[string]any)["sj"].(map[string]any)["child_saw"]; saw != ag.Node.Name {
				t.Fatalf("the child saw %v, want %s (wall %v, log %q)", saw, ag.Node.Name, child["wall"], child["runlog"])
			}
		}

		// A failing script: ERROR with its output, stderr and exit code; retry runs it again.
		node := agents[0].Node.Name
		nr := s.Must(201, "POST", "/api/v2/node_roles", fmt.Sprintf(`{"node": %q, "role": "sj-fail"}`, node)).Object(t)
		s.Must(200, "PUT", "/api/v2/nodes/"+node+"/commit", "")
		var failed map[string]any
		waitFor(t, func() bool {
			failed = s.Must(200, "GET", fmt.Sprintf("/api/v2/node_roles/%v", nr["id"]), "").Object(t)
			return failed["state_name"] == "error"
		})
		log := failed["runlog"].(string)
		for _, want := range []string{"about to fail", "the disk is on fire", "exited with code 3"} {
			if !strings.Contains(log, want) {
				t.Errorf("failed script's run log %q lacks %q", log, want)
			}
		}
		if st.Dialect != store.SQLite {
			return
		}
		// A long script: its output shows in the run log and on the event
		// stream while it runs.
		events := subscribe(t, s, node)
		slow := s.Must(201, "POST", "/api/v2/node_roles", fmt.Sprintf(`{"node": %q, "role": "sj-slow"}`, agents[1].Node.Name)).Object(t)
		s.Must(200, "PUT", "/api/v2/nodes/"+agents[1].Node.Name+"/commit", "")
		var midway string
		waitFor(t, func() bool {
			got := s.Must(200, "GET", fmt.Sprintf("/api/v2/node_roles/%v", slow["id"]), "").Object(t)
			if got["state_name"] == "transition" && strings.Contains(got["runlog"].(string), "step ") {
				midway = got["runlog"].(string)
				return true
			}
			return got["state_name"] == "active"
		})
		if midway == "" || strings.Contains(midway, "step 6") {
			t.Errorf("no output seen while the script ran (midway %q)", midway)
		}
		waitFor(t, func() bool {
			return s.Must(200, "GET", fmt.Sprintf("/api/v2/node_roles/%v", slow["id"]), "").Object(t)["state_name"] == "active"
		})
		if got := events(); !strings.Contains(got, `"state_name":"transition"`) || !strings.Contains(got, "step ") {
			t.Errorf("the event stream did not carry the running script's output: %s", got)
		}
	})
}

// waitActive waits until n node-roles are ACTIVE and none runs.
func waitActive(t *testing.T, s *apitest.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st := s.Must(200, "GET", "/api/v2/anneal", "").Object(t)
		counts, _ := st["counts"].(map[string]any)
		if a, _ := counts["active"].(float64); int(a) >= n {
			return
		}
		if e, _ := counts["error"].(float64); e > 0 {
			t.Fatalf("node-roles in ERROR: %v", st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged within 3 minutes: %v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// subscribe follows the event stream; the function returns what arrived.
func subscribe(t *testing.T, s *apitest.Server, _ string) func() string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/api/v2/events", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var b strings.Builder
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			mu.Lock()
			b.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return b.String()
	}
}
