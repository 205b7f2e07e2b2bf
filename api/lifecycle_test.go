package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

// graphServer is an API server with the graph test barclamp installed and
// enabled in the system deployment, and nodes n1..n<nodes> alive.
func graphServer(t *testing.T, st *store.Store, nodes int) *apitest.Server {
	t.Helper()
	wasm := pluginstest.Build(t, "plugins/testdata/graph")
	s := apitest.New(t, st, func(su *apitest.Setup) { su.Host = pluginstest.Host(t, st, plugins.Config{PoolSize: 2}) })
	if _, err := s.Barclamps.Install(context.Background(), wasm, barclamp.SourceInstalled); err != nil {
		t.Fatal(err)
	}
	s.Must(200, "PUT", "/api/v2/deployments/system/barclamps/graph", "")
	for i := 1; i <= nodes; i++ {
		s.Must(201, "POST", "/api/v2/nodes", fmt.Sprintf(`{"name": "n%d.example.com", "alive": true}`, i))
	}
	return s
}

// bind binds role to node and returns the node-role.
func bind(t *testing.T, s *apitest.Server, node, role string) map[string]any {
	t.Helper()
	return s.Must(201, "POST", "/api/v2/node_roles", fmt.Sprintf(`{"node": %q, "role": %q}`, node, role)).Object(t)
}

// states returns role → state name for a node's node-roles.
func states(t *testing.T, s *apitest.Server, node string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, nr := range s.Must(200, "GET", "/api/v2/nodes/"+node+"/node_roles", "").List(t) {
		role := s.Must(200, "GET", fmt.Sprintf("/api/v2/roles/%v", nr["role_id"]), "").Object(t)
		out[role["name"].(string)] = nr["state_name"].(string)
	}
	return out
}

// settle waits until the annealer is idle.
func settle(t *testing.T, s *apitest.Server) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := s.Must(200, "GET", "/api/v2/anneal", "").Object(t)
		if st["idle"] == true && st["in_flight"].(float64) == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("annealer not idle: %v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBindingGraphAndConvergence(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := graphServer(t, st, 3)

		// Auto-binding: g-top pulls in g-mid and g-base on the same node.
		top := bind(t, s, "n1.example.com", "g-top")
		if top["state"].(float64) != 4 || top["state_name"] != "proposed" {
			t.Fatalf("bound: %v", top)
		}
		if got := states(t, s, "n1.example.com"); len(got) != 3 || got["g-base"] != "proposed" || got["g-mid"] != "proposed" {
			t.Fatalf("auto-bound: %v", got)
		}
		graph := s.Must(200, "GET", "/api/v2/deployments/system/graph", "").Object(t)
		if len(graph["nodes"].([]any)) != 3 || len(graph["edges"].([]any)) != 2 {
			t.Fatalf("graph: %v", graph)
		}
		dot := s.Must(200, "GET", "/api/v2/deployments/system/graph?format=dot", "")
		if !strings.HasPrefix(string(dot.Body), `digraph "system" {`) || strings.Count(string(dot.Body), "->") != 2 {
			t.Fatalf("dot: %s", dot.Body)
		}
		s.Must(400, "GET", "/api/v2/deployments/system/graph?format=svg", "")

		// Refusals, each leaving nothing behind.
		before := storetest.Snapshot(t, st)
		s.Must(409, "POST", "/api/v2/node_roles", `{"node": "n1.example.com", "role": "g-top"}`)
		if r := s.Must(422, "POST", "/api/v2/node_roles", `{"node": "n1.example.com", "role": "g-cycle-a"}`); !strings.Contains(string(r.Body), "cycle: g-cycle-a → g-cycle-b → g-cycle-a") {
			t.Fatalf("cycle: %s", r.Body)
		}
		if r := s.Must(422, "POST", "/api/v2/node_roles", `{"node": "n1.example.com", "role": "g-missing"}`); !strings.Contains(string(r.Body), "no-such-role") {
			t.Fatalf("missing: %s", r.Body)
		}
		s.Must(422, "POST", "/api/v2/node_roles", `{"node": "nope.example.com", "role": "g-top"}`)
		s.Must(422, "POST", "/api/v2/node_roles", `{"node": "n1.example.com"}`)
		s.Must(400, "POST", "/api/v2/node_roles", `{"node": "n1.example.com", "role": "g-top", "color": "red"}`)
		s.Must(400, "POST", "/api/v2/node_roles", `{"node": ["n1"], "role": "g-top"}`)
		s.Must(400, "POST", "/api/v2/node_roles", `{"node": `)
		s.Must(201, "POST", "/api/v2/deployments", `{"name": "other"}`)
		s.Must(200, "DELETE", "/api/v2/deployments/other/barclamps/graph", "")
		if r := s.Must(409, "POST", "/api/v2/node_roles", `{"node": "n2.example.com", "role": "g-base", "deployment": "other"}`); !strings.Contains(string(r.Body), "PUT /api/v2/deployments/other/barclamps/graph") {
			t.Fatalf("not enabled: %s", r.Body)
		}
		s.Must(200, "DELETE", "/api/v2/deployments/other", "")
		if after := storetest.Snapshot(t, st); len(after["node_roles"]) != len(before["node_roles"]) {
			t.Fatal("a refused bind stored node-roles")
		}

		// Attribs: schema-checked, resolved, merged into what the hook sees.
		s.Must(422, "PUT", "/api/v2/nodes/n1.example.com/attribs/g-size", `{"value": 0}`)
		s.Must(422, "PUT", "/api/v2/nodes/n1.example.com/attribs/g-size", `{"value": "big"}`)
		s.Must(400, "PUT", "/api/v2/nodes/n1.example.com/attribs/g-size", `{"value": 2, "x": 1}`)
		s.Must(422, "PUT", "/api/v2/nodes/n1.example.com/attribs/g-size", `{}`)
		s.Must(404, "PUT", "/api/v2/nodes/n1.example.com/attribs/nope", `{"value": 2}`)
		if v := s.Must(200, "GET", "/api/v2/nodes/n1.example.com/attribs/g-size", "").Object(t); v["value"].(float64) != 1 {
			t.Fatalf("default: %v", v)
		}
		s.Must(200, "PUT", "/api/v2/nodes/n1.example.com/attribs/g-size", `{"value": 5}`)

		// Commit and anneal: everything ACTIVE, children after parents.
		s.Must(200, "PUT", "/api/v2/nodes/n1.example.com/commit", "")
		settle(t, s)
		if got := states(t, s, "n1.example.com"); got["g-top"] != "active" || got["g-mid"] != "active" || got["g-base"] != "active" {
			t.Fatalf("after anneal: %v", got)
		}
		topNow := s.Must(200, "GET", fmt.Sprintf("/api/v2/node_roles/%v", top["id"]), "").Object(t)
		seen := topNow["wall"].(map[string]any)["seen"].(map[string]any)["g"].(map[string]any)
		if seen["size"].(float64) != 5 || seen["from"] != "template" || seen["base"] != true || topNow["runlog"] != "top ran on n1.example.com" {
			t.Fatalf("merged data the hook saw: %v", topNow)
		}

		// Cluster: every g-cluster node-role in the deployment is a parent.
		bind(t, s, "n2.example.com", "g-cluster")
		bind(t, s, "n3.example.com", "g-cluster")
		member := bind(t, s, "n1.example.com", "g-member")
		var parents int
		for _, e := range s.Must(200, "GET", "/api/v2/deployments/system/graph", "").Object(t)["edges"].([]any) {
			if e.(map[string]any)["child"] == member["id"] {
				parents++
			}
		}
		if parents != 2 {
			t.Fatalf("cluster parents: %d", parents)
		}

		// Blocking, error and retry: the child waits while its parent fails.
		bind(t, s, "n2.example.com", "g-after-flaky")
		for _, n := range []string{"n1", "n2", "n3"} {
			s.Must(200, "PUT", "/api/v2/nodes/"+n+".example.com/commit", "")
		}
		settle(t, s)
		got := states(t, s, "n2.example.com")
		if got["g-flaky"] != "error" || got["g-after-flaky"] != "blocked" {
			t.Fatalf("flaky: %v", got)
		}
		if states(t, s, "n1.example.com")["g-member"] != "active" {
			t.Fatal("the cluster member did not run once both cluster node-roles were active")
		}
		flaky := s.Must(200, "GET", "/api/v2/node_roles?role=g-flaky", "").List(t)[0]
		if flaky["runlog"] != "first run fails on purpose" {
			t.Fatalf("runlog: %v", flaky)
		}
		s.Must(409, "PUT", fmt.Sprintf("/api/v2/node_roles/%v/retry", member["id"]), "")
		s.Must(409, "DELETE", fmt.Sprintf("/api/v2/node_roles/%v", flaky["id"]), "") // g-after-flaky depends on it
		s.Must(200, "PUT", fmt.Sprintf("/api/v2/node_roles/%v/retry", flaky["id"]), "")
		settle(t, s)
		if got := states(t, s, "n2.example.com"); got["g-flaky"] != "active" || got["g-after-flaky"] != "active" {
			t.Fatalf("after retry: %v", got)
		}

		// A hook that exits the module: ERROR with the reason, server fine.
		bind(t, s, "n3.example.com", "g-exit")
		s.Must(200, "PUT", "/api/v2/nodes/n3.example.com/commit", "")
		settle(t, s)
		exit := s.Must(200, "GET", "/api/v2/node_roles?role=g-exit", "").List(t)[0]
		if exit["state"].(float64) != -1 || !strings.Contains(exit["runlog"].(string), "graph") || !strings.Contains(exit["runlog"].(string), "exited") {
			t.Fatalf("exit hook: %v", exit)
		}
		s.Must(200, "GET", "/api/v2/nodes", "")

		// Destructive: runs once; a data change does not make it run again.
		d := bind(t, s, "n1.example.com", "g-destructive")
		s.Must(200, "PUT", "/api/v2/nodes/n1.example.com/commit", "")
		settle(t, s)
		s.Must(200, "PUT", fmt.Sprintf("/api/v2/node_roles/%v", d["id"]), `{"proposed_data": {"again": true}}`)
		s.Must(200, "PUT", fmt.Sprintf("/api/v2/node_roles/%v", top["id"]), `{"proposed_data": {"g": {"size": 7}}}`)
		s.Must(200, "PUT", "/api/v2/nodes/n1.example.com/commit", "")
		settle(t, s)
		if d := s.Must(200, "GET", fmt.Sprintf("/api/v2/node_roles/%v", d["id"]), "").Object(t); d["run_count"].(float64) != 1 || d["state_name"] != "active" {
			t.Fatalf("destructive ran again: %v", d)
		}
		if tp := s.Must(200, "GET", fmt.Sprintf("/api/v2/node_roles/%v", top["id"]), "").Object(t); tp["run_count"].(float64) != 2 {
			t.Fatalf("changed data did not run g-top again: %v", tp)
		}

		// TRANSITION completed through the API.
		w := bind(t, s, "n2.example.com", "g-wait")
		s.Must(200, "PUT", "/api/v2/nodes/n2.example.com/commit", "")
		settle(t, s)
		path := fmt.Sprintf("/api/v2/node_roles/%v", w["id"])
		if got := s.Must(200, "GET", path, "").Object(t); got["state_name"] != "transition" {
			t.Fatalf("wait hook: %v", got)
		}
		s.Must(422, "PUT", path, `{"state": 1}`)
		s.Must(422, "PUT", path, `{"runlog": "x"}`)
		s.Must(200, "PUT", path, `{"state": 0, "wall": {"installed": true}, "runlog": "called back"}`)
		s.Must(409, "PUT", path, `{"state": 0}`)
		if got := s.Must(200, "GET", path, "").Object(t); got["state_name"] != "active" || got["runlog"] != "called back" {
			t.Fatalf("completed: %v", got)
		}
	})
}

func TestDeploymentProposeCommitRecall(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := graphServer(t, st, 2)
		s.Must(409, "PUT", "/api/v2/deployments/system/propose", "")
		d := s.Must(201, "POST", "/api/v2/deployments", `{"name": "test1"}`).Object(t)
		if d["state"].(float64) != 0 || d["state_name"] != "proposed" {
			t.Fatalf("new deployment: %v", d)
		}
		s.Must(409, "PUT", "/api/v2/deployments/test1/propose", "")
		s.Must(200, "PUT", "/api/v2/nodes/n1.example.com", `{"deployment": "test1"}`)
		s.Must(200, "PUT", "/api/v2/nodes/n1.example.com/commit", "") // available
		bind(t, s, "n1.example.com", "g-mid")
		s.Must(200, "PUT", "/api/v2/deployments/test1/recall", "")
		if n := len(s.Must(200, "GET", "/api/v2/deployments/test1/node_roles", "").List(t)); n != 0 {
			t.Fatalf("recall left %d node-roles", n)
		}
		bind(t, s, "n1.example.com", "g-mid")
		if got := s.Must(200, "PUT", "/api/v2/deployments/test1/commit", "").Object(t); got["state"].(float64) < 1 {
			t.Fatalf("committed: %v", got)
		}
		settle(t, s)
		if got := s.Must(200, "GET", "/api/v2/deployments/test1", "").Object(t); got["state_name"] != "active" || got["state"].(float64) != 2 {
			t.Fatalf("derived state: %v", got)
		}
		s.Must(409, "PUT", "/api/v2/deployments/test1/recall", "")
		s.Must(200, "PUT", "/api/v2/deployments/test1/propose", "")
		bind(t, s, "n1.example.com", "g-flaky")
		s.Must(200, "PUT", "/api/v2/deployments/test1/recall", "")
		got := states(t, s, "n1.example.com")
		if _, ok := got["g-flaky"]; ok || got["g-mid"] != "active" {
			t.Fatalf("recall removed the wrong node-roles: %v", got)
		}
		if d := s.Must(200, "GET", "/api/v2/deployments/test1", "").Object(t); d["state_name"] != "active" {
			t.Fatalf("after recall: %v", d)
		}
		s.Must(404, "PUT", "/api/v2/deployments/nope/commit", "")
	})
}

// The event stream carries every state change of the filtered node, in
// order, as server-sent events; unbinding removes a node-role.
func TestEventStreamAndUnbind(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := graphServer(t, st, 2)
		s.Must(400, "GET", "/api/v2/events?colour=red", "")
		s.Must(401, "GET", "/api/v2/events", "", "Authorization", "")

		lines := openEvents(t, s, "?node=n1.example.com", "")

		bind(t, s, "n2.example.com", "g-base") // filtered out
		mid := bind(t, s, "n1.example.com", "g-mid")
		s.Must(200, "PUT", "/api/v2/nodes/n1.example.com/commit", "")
		settle(t, s)

		// g-base and g-mid: proposed, then todo/blocked, transition, active.
		var seen []string
		for len(seen) < 8 {
			ev := nextEvent(t, lines)
			if ev["node"] != "n1.example.com" {
				t.Fatalf("filter let through %v", ev)
			}
			seen = append(seen, ev["role"].(string)+":"+ev["state_name"].(string))
		}
		want := map[string]bool{"g-base:proposed": true, "g-mid:proposed": true, "g-base:todo": true, "g-mid:blocked": true,
			"g-base:transition": true, "g-base:active": true, "g-mid:todo": true, "g-mid:transition": true}
		for _, e := range seen {
			delete(want, e)
		}
		if len(want) != 0 {
			t.Fatalf("missing events %v in %v", want, seen)
		}

		// Unbind: the child first; its parent then has no dependants.
		base := s.Must(200, "GET", "/api/v2/node_roles?role=g-base&node=n1.example.com", "").List(t)[0]
		s.Must(409, "DELETE", fmt.Sprintf("/api/v2/node_roles/%v", base["id"]), "")
		s.Must(200, "DELETE", fmt.Sprintf("/api/v2/node_roles/%v", mid["id"]), "")
		s.Must(200, "DELETE", fmt.Sprintf("/api/v2/node_roles/%v", base["id"]), "")
		s.Must(404, "DELETE", fmt.Sprintf("/api/v2/node_roles/%v", base["id"]), "")
		if n := len(s.Must(200, "GET", "/api/v2/nodes/n1.example.com/node_roles", "").List(t)); n != 0 {
			t.Fatalf("%d node-roles left after unbinding", n)
		}
	})
}

func TestNotificationHooks(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := graphServer(t, st, 2)
		seen := func() map[string]bool {
			t.Helper()
			s.API.Hooks().Wait()
			var keys []string
			if err := json.Unmarshal(s.Must(200, "GET", "/graph/v2/seen", "").Body, &keys); err != nil {
				t.Fatal(err)
			}
			out := map[string]bool{}
			for _, k := range keys {
				out[k] = true
			}
			return out
		}
		if got := seen(); !got["seen/on_node_create/n1.example.com"] || !got["seen/on_node_create/n2.example.com"] {
			t.Fatalf("node creation not notified: %v", got)
		}

		bind(t, s, "n1.example.com", "g-notify")
		if got := seen(); !got["seen/on_proposed/n1.example.com"] || got["seen/on_active/n1.example.com"] {
			t.Fatalf("after bind: %v", got)
		}
		s.Must(200, "PUT", "/api/v2/nodes/n1.example.com/commit", "")
		settle(t, s)
		if got := seen(); !got["seen/on_active/n1.example.com"] {
			t.Fatalf("after converging: %v", got)
		}

		bind(t, s, "n2.example.com", "g-flaky")
		s.Must(200, "PUT", "/api/v2/nodes/n2.example.com/commit", "")
		settle(t, s)
		if got := seen(); !got["seen/on_error/n2.example.com"] {
			t.Fatalf("the failed node-role's on_error was not called: %v", got)
		}

		s.Must(201, "POST", "/api/v2/deployments", `{"name": "hooked"}`)
		s.Must(200, "DELETE", "/api/v2/deployments/hooked", "")
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "gone.example.com"}`)
		s.Must(200, "DELETE", "/api/v2/nodes/gone.example.com", "")
		got := seen()
		for _, k := range []string{"seen/on_deployment_create/hooked", "seen/on_deployment_delete/hooked",
			"seen/on_node_create/gone.example.com", "seen/on_node_delete/gone.example.com"} {
			if !got[k] {
				t.Errorf("%s missing from %v", k, got)
			}
		}
	})
}

// openEvents opens GET /api/v2/events with query (and a Last-Event-ID when
// lastID is set) for the test's lifetime; it yields the stream's lines.
func openEvents(t *testing.T, s *apitest.Server, query, lastID string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/api/v2/events"+query, nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return lines
}

// nextEvent reads the stream up to the next event's data and decodes it;
// its SSE id is put under "sse_id". Other notices fail the test.
func nextEvent(t *testing.T, lines <-chan string) map[string]any {
	t.Helper()
	timeout := time.After(10 * time.Second)
	id := ""
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("the event stream ended")
			}
			if v, found := strings.CutPrefix(line, "id: "); found {
				id = v
			}
			if v, found := strings.CutPrefix(line, "event: "); found && v != "node_role" && v != "deployment" {
				t.Fatalf("a %s notice in the stream", v)
			}
			data, found := strings.CutPrefix(line, "data: ")
			if !found {
				continue
			}
			var ev map[string]any
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				t.Fatalf("event data: %v: %s", err, data)
			}
			ev["sse_id"] = id
			return ev
		case <-timeout:
			t.Fatal("no event within 10s")
		}
	}
}

// A client that reconnects with the last id it saw (Last-Event-ID, as
// browsers' EventSource does, or ?last_event_id=) first gets the events it
// missed, then the live ones; an id that is not one is a 400.
func TestEventStreamResumes(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := graphServer(t, st, 1)
		s.Must(400, "GET", "/api/v2/events", "", "Last-Event-ID", "yesterday")
		s.Must(400, "GET", "/api/v2/events?last_event_id=-3", "")

		lines := openEvents(t, s, "?node=n1.example.com", "")
		bind(t, s, "n1.example.com", "g-base")
		first := nextEvent(t, lines)
		if first["role"] != "g-base" || first["state_name"] != "proposed" || first["sse_id"] != fmt.Sprint(first["seq"]) {
			t.Fatalf("first event: %v", first)
		}
		// Gone; meanwhile the node is committed and converges.
		s.Must(200, "PUT", "/api/v2/nodes/n1.example.com/commit", "")
		settle(t, s)

		for _, resume := range []func() <-chan string{
			func() <-chan string { return openEvents(t, s, "?node=n1.example.com", first["sse_id"].(string)) },
			func() <-chan string {
				return openEvents(t, s, "?node=n1.example.com&last_event_id="+first["sse_id"].(string), "")
			},
		} {
			lines := resume()
			var seen []string
			last := first["seq"].(float64)
			for len(seen) < 3 {
				ev := nextEvent(t, lines)
				if ev["seq"].(float64) <= last {
					t.Fatalf("seq %v after %v", ev["seq"], last)
				}
				last = ev["seq"].(float64)
				seen = append(seen, ev["state_name"].(string))
			}
			if strings.Join(seen, " ") != "todo transition active" {
				t.Fatalf("resumed with %v", seen)
			}
		}
		// Live events follow the replayed ones on the same stream.
		lines = openEvents(t, s, "?node=n1.example.com", fmt.Sprint(first["seq"]))
		for range 3 {
			nextEvent(t, lines)
		}
		bind(t, s, "n1.example.com", "g-mid")
		if ev := nextEvent(t, lines); ev["role"] != "g-mid" {
			t.Fatalf("live event after the replay: %v", ev)
		}
	})
}
