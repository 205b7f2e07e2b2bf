package nodetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// settleDeployment waits until no node-role of the deployment is TODO,
// TRANSITION or BLOCKED; it answers role → state name per node.
func settleDeployment(t *testing.T, s *apitest.Server, dep string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out := map[string]string{}
		busy := false
		for _, nr := range s.Must(200, "GET", "/api/v2/deployments/"+dep+"/node_roles", "").List(t) {
			st := nr["state_name"].(string)
			out[fmt.Sprintf("%v/%v", nr["node_id"], nr["role_id"])] = st
			busy = busy || st == "todo" || st == "transition" || st == "blocked"
		}
		if !busy {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment %s did not settle: %v", dep, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestZeroOSContainerRole: zero-os-container bound to three nodes
// converges to three running containers; a changed attrib re-converges;
// unbinding terminates; an agent stopped mid-converge leaves ERROR with a
// clear run log, and a retry after it returns converges.
func TestZeroOSContainerRole(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := zeroOSServer(t, st)
		root := busyboxRoot(t)
		var agents []*apitest.Agent
		for i := 0; i < 3; i++ {
			agents = append(agents, s.StartAgent(func(c *agent.Config) { c.Name = fmt.Sprintf("zos%d.example.com", i) }))
		}
		t.Cleanup(func() {
			for _, ag := range agents {
				terminateContainers(s.AgentClient(ag))
			}
		})
		s.Must(201, "POST", "/api/v2/deployments", `{"name": "zos"}`)
		s.Must(200, "PUT", "/api/v2/deployments/zos/barclamps/zero-os", "")
		nrs := map[string]map[string]any{}
		for _, ag := range agents {
			s.Must(200, "PUT", "/api/v2/nodes/"+ag.Node.Name, `{"deployment": "zos"}`)
			nrs[ag.Node.Name] = s.Must(201, "POST", "/api/v2/node_roles", fmt.Sprintf(`{"node": %q, "role": "zero-os-container", "deployment": "zos"}`, ag.Node.Name)).Object(t)
			s.Must(200, "PUT", "/api/v2/nodes/"+ag.Node.Name+"/attribs/zero-os-container-root", fmt.Sprintf(`{"value": %q}`, root))
			s.Must(200, "PUT", "/api/v2/nodes/"+ag.Node.Name+"/attribs/zero-os-container-hostname", `{"value": "web"}`)
		}
		s.Must(200, "PUT", "/api/v2/deployments/zos/commit", "")
		states := settleDeployment(t, s, "zos")
		for k, v := range states {
			if v != "active" {
				for _, nr := range s.Must(200, "GET", "/api/v2/deployments/zos/node_roles", "").List(t) {
					t.Logf("node-role %v (node %v role %v): %v: %v", nr["id"], nr["node_id"], nr["role_id"], nr["state_name"], nr["runlog"])
				}
				t.Fatalf("node-role %s is %s: %v", k, v, states)
			}
		}
		hostname := func(ag *apitest.Agent, name string) string {
			t.Helper()
			zid := strings.ReplaceAll(ag.Config.MAC, ":", "")
			list := s.Must(200, "GET", "/zero-os/v2/nodes/"+zid+"/containers", "").List(t)
			for _, c := range list {
				if c["name"] == name && c["status"] == "running" {
					return c["hostname"].(string)
				}
			}
			return ""
		}
		for _, ag := range agents {
			name := fmt.Sprintf("crowbar-%v", nrs[ag.Node.Name]["id"])
			if got := hostname(ag, name); got != "web" {
				t.Fatalf("%s: container %s not running with hostname web (%q)", ag.Node.Name, name, got)
			}
			nr := s.Must(200, "GET", fmt.Sprintf("/api/v2/node_roles/%v", nrs[ag.Node.Name]["id"]), "").Object(t)
			wall := nr["wall"].(map[string]any)["zero_os"].(map[string]any)["container"].(map[string]any)
			if wall["name"] != name || wall["id"].(float64) < 1 || len(wall["addresses"].([]any)) != 1 {
				t.Fatalf("wall data: %v", nr["wall"])
			}
		}
		// Changing an attrib re-converges: the container is replaced.
		first := agents[0]
		name0 := fmt.Sprintf("crowbar-%v", nrs[first.Node.Name]["id"])
		s.Must(200, "PUT", "/api/v2/nodes/"+first.Node.Name+"/attribs/zero-os-container-hostname", `{"value": "web2"}`)
		s.Must(200, "PUT", "/api/v2/deployments/zos/commit", "")
		settleDeployment(t, s, "zos")
		if got := hostname(first, name0); got != "web2" {
			t.Fatalf("after the change the container's hostname is %q", got)
		}
		r := s.AgentClient(first)
		var byName map[string]map[string]any
		if err := r.JSON(ctx(t), "corex.get", map[string]any{"query": name0}, &byName); err != nil {
			t.Fatal(err)
		}
		out, err := r.Call(ctx(t), "corex.dispatch", map[string]any{"container": byName["container"]["id"],
			"command": core0.Command{Command: "core.system", Arguments: mustJSON(core0.SystemArgs{Name: "hostname"})}})
		if err != nil {
			t.Fatal(err)
		}
		var job string
		json.Unmarshal([]byte(out.Data), &job) //nolint:errcheck
		if res, _ := r.Result(ctx(t), job); res.Stdout() != "web2\n" {
			t.Fatalf("hostname inside: %q", res.Stdout())
		}

		// Unbinding terminates the container.
		second := agents[1]
		s.Must(200, "DELETE", fmt.Sprintf("/api/v2/node_roles/%v", nrs[second.Node.Name]["id"]), "")
		s.API.Hooks().Wait()
		var left map[string]any
		s.AgentClient(second).JSON(ctx(t), "corex.list", struct{}{}, &left) //nolint:errcheck
		if len(left) != 0 {
			t.Fatalf("unbinding left containers: %v", left)
		}

		// An agent stopped mid-converge: ERROR naming the node; retry after it returns.
		third := agents[2]
		third.Stop() //nolint:errcheck
		s.Must(200, "PUT", "/api/v2/nodes/"+third.Node.Name+"/attribs/zero-os-container-hostname", `{"value": "web3"}`)
		s.Must(200, "PUT", "/api/v2/deployments/zos/commit", "")
		var failed map[string]any
		waitFor(t, func() bool {
			failed = s.Must(200, "GET", fmt.Sprintf("/api/v2/node_roles/%v", nrs[third.Node.Name]["id"]), "").Object(t)
			return failed["state_name"] == "error"
		})
		if log := failed["runlog"].(string); !strings.Contains(log, third.Node.Name) || !strings.Contains(log, "unreachable") {
			t.Fatalf("run log of a stopped agent: %q", log)
		}
		cfg := third.Config
		cfg.JoinToken, cfg.Listen, cfg.Logger = "", third.Addr, nil
		if _, err := s.RunAgent(cfg); err != nil {
			t.Fatal(err)
		}
		s.Must(200, "PUT", fmt.Sprintf("/api/v2/node_roles/%v/retry", nrs[third.Node.Name]["id"]), "")
		settleDeployment(t, s, "zos")
		if got := hostname(third, fmt.Sprintf("crowbar-%v", nrs[third.Node.Name]["id"])); got != "web3" {
			t.Fatalf("after retry the container's hostname is %q", got)
		}
	})
}
