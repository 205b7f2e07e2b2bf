package nodetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// TestJoinTokensAPI: only admins manage join tokens; bad input is refused
// with nothing stored; secrets are shown once.
func TestJoinTokensAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := server(t, st)
		tok := s.Must(201, "POST", "/api/v2/join_tokens", `{"ttl": "30m", "description": "rack 4"}`).Object(t)
		if !strings.HasPrefix(tok["token"].(string), "cbj_") || tok["state"] != "active" || tok["created_by"] != "admin" {
			t.Fatalf("created %v", tok)
		}
		exp, _ := time.Parse(time.RFC3339, tok["expires_at"].(string))
		if d := time.Until(exp); d < 29*time.Minute || d > 31*time.Minute {
			t.Fatalf("ttl 30m expires in %s", d)
		}
		s.Must(201, "POST", "/api/v2/join_tokens", `{"ttl": 120}`)
		s.Must(201, "POST", "/api/v2/join_tokens", ``) // default: an hour
		list := s.Must(200, "GET", "/api/v2/join_tokens", "").List(t)
		if len(list) != 3 {
			t.Fatalf("listed %d tokens", len(list))
		}
		for _, jt := range list {
			if _, ok := jt["token"]; ok {
				t.Fatalf("a listed token shows its secret: %v", jt)
			}
		}
		one := s.Must(200, "GET", fmt.Sprintf("/api/v2/join_tokens/%v", tok["id"]), "").Object(t)
		if one["description"] != "rack 4" || one["token"] != nil {
			t.Fatalf("shown %v", one)
		}

		s.AddUser("operator", "operator-password", auth.RoleOperator, true)
		before := storetest.Snapshot(t, st)
		for _, tc := range []struct {
			body   string
			status int
		}{
			{`{"ttl": "1h"`, 400},
			{`{"ttl": "1h", "uses": 3}`, 400},
			{`{"ttl": true}`, 400},
			{`{"ttl": "soon"}`, 422},
			{`{"ttl": -5}`, 422},
			{`{"ttl": 1.5}`, 422},
			{`{"ttl": "9000h"}`, 422},
			{`{"description": 7}`, 400},
		} {
			r := s.Do("POST", "/api/v2/join_tokens", tc.body)
			if r.Status != tc.status || !strings.Contains(string(r.Body), `"message"`) {
				t.Errorf("POST %s: %d %s, want %d", tc.body, r.Status, r.Body, tc.status)
			}
		}
		op, _, _ := s.Auth.MintToken(&auth.Caller{Username: "operator", Role: auth.RoleOperator}, time.Hour)
		for _, m := range []string{"GET", "POST"} {
			if r := s.Do(m, "/api/v2/join_tokens", `{}`, "Authorization", "Bearer "+op); r.Status != 403 {
				t.Errorf("operator %s join_tokens: %d %s", m, r.Status, r.Body)
			}
		}
		if r := s.Do("GET", "/api/v2/join_tokens", "", "Authorization", ""); r.Status != 401 {
			t.Errorf("no credentials: %d", r.Status)
		}
		s.Must(404, "DELETE", "/api/v2/join_tokens/999", "")
		if after := storetest.Snapshot(t, st); !reflect.DeepEqual(before, after) {
			t.Fatal("refused requests changed stored data")
		}
		s.Must(200, "DELETE", fmt.Sprintf("/api/v2/join_tokens/%v", tok["id"]), "")
		s.Must(200, "DELETE", fmt.Sprintf("/api/v2/join_tokens/%v", tok["id"]), "") // revoking twice is fine
		if got := s.Must(200, "GET", fmt.Sprintf("/api/v2/join_tokens/%v", tok["id"]), "").Object(t); got["state"] != "revoked" {
			t.Fatalf("after revoke: %v", got)
		}
	})
}

// joinBody is a well-formed join request for mac.
func joinBody(mac, hostname string) string {
	b, _ := json.Marshal(agent.JoinRequest{Hostname: hostname, MAC: mac, MACs: []string{mac}, Addresses: []string{"192.0.2.7/24"},
		Agent: agent.AgentInfo{Address: "127.0.0.1:1", TLS: true, Fingerprint: strings.Repeat("0f", 32)}})
	return string(b)
}

// TestAgentJoinAPI: the join and heartbeat routes' credentials and input.
func TestAgentJoinAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := server(t, st)
		tok := s.JoinToken(time.Hour)
		bearer := func(v string) []string { return []string{"Authorization", "Bearer " + v} }
		before := storetest.Snapshot(t, st)
		for _, tc := range []struct {
			name   string
			body   string
			header []string
			status int
		}{
			{"no credentials", joinBody("52:54:00:00:00:01", "a"), []string{"Authorization", ""}, 401},
			{"an API token", joinBody("52:54:00:00:00:01", "a"), bearer(s.Token), 401},
			{"a wrong join token", joinBody("52:54:00:00:00:01", "a"), bearer("cbj_nope"), 401},
			{"malformed", `{"mac": `, bearer(tok), 400},
			{"unknown field", `{"mac": "52:54:00:00:00:01", "root": true}`, bearer(tok), 400},
			{"bad mac", joinBody("not-a-mac", "a"), bearer(tok), 422},
			{"bad name", strings.Replace(joinBody("52:54:00:00:00:01", "a"), `"hostname"`, `"name":"9 bad","hostname"`, 1), bearer(tok), 422},
			{"bad address", strings.Replace(joinBody("52:54:00:00:00:01", "a"), "127.0.0.1:1", "nowhere", 1), bearer(tok), 422},
			{"no fingerprint with TLS", strings.Replace(joinBody("52:54:00:00:00:01", "a"), strings.Repeat("0f", 32), "", 1), bearer(tok), 422},
		} {
			r := s.Do("POST", "/api/v2/agents/join", tc.body, tc.header...)
			if r.Status != tc.status || !strings.Contains(string(r.Body), `"message"`) {
				t.Errorf("%s: %d %s, want %d", tc.name, r.Status, r.Body, tc.status)
			}
		}
		if r := s.Do("PUT", "/api/v2/agents/heartbeat", `{}`, bearer("cba_nope")...); r.Status != 401 {
			t.Errorf("heartbeat with a bad key: %d %s", r.Status, r.Body)
		}
		if r := s.Do("PUT", "/api/v2/agents/heartbeat", `{}`, "Authorization", ""); r.Status != 401 {
			t.Errorf("heartbeat without a key: %d %s", r.Status, r.Body)
		}
		if after := storetest.Snapshot(t, st); !reflect.DeepEqual(before, after) {
			t.Fatal("refused joins changed stored data")
		}

		// A bare host name gets the default domain; a host name that is not
		// a valid node name gets the seed's MAC name.
		r := s.Must(201, "POST", "/api/v2/agents/join", joinBody("52:54:00:00:00:01", "vm"), bearer(tok)...).Object(t)
		if r["name"] != "vm.crowbar.internal" || r["zero_os_id"] != "525400000001" || !strings.HasPrefix(r["agent_key"].(string), "cba_") ||
			!strings.Contains(r["token_key"].(string), "PUBLIC KEY") {
			t.Fatalf("join: %v", r)
		}
		r2 := s.Must(201, "POST", "/api/v2/agents/join", joinBody("52:54:00:00:00:02", "bad_host!"), bearer(tok)...).Object(t)
		if r2["name"] != "d52-54-00-00-00-02.crowbar.internal" {
			t.Fatalf("MAC name: %v", r2)
		}
		// Another machine claiming the same host name gets its MAC name.
		r3 := s.Must(201, "POST", "/api/v2/agents/join", joinBody("52:54:00:00:00:03", "vm"), bearer(tok)...).Object(t)
		if r3["name"] != "d52-54-00-00-00-03.crowbar.internal" {
			t.Fatalf("name clash: %v", r3)
		}
		// The same machine joining again keeps its node, and its old key dies.
		again := s.Must(200, "POST", "/api/v2/agents/join", joinBody("52:54:00:00:00:01", "vm"), bearer(tok)...).Object(t)
		if again["node_id"] != r["node_id"] {
			t.Fatalf("re-join made a new node: %v vs %v", again, r)
		}
		if rr := s.Do("PUT", "/api/v2/agents/heartbeat", `{}`, bearer(r["agent_key"].(string))...); rr.Status != 401 {
			t.Fatalf("the replaced key still heartbeats: %d", rr.Status)
		}
		// An agent that does not answer (nothing listens there): 502 naming the node.
		pr := s.Do("GET", "/api/v2/nodes/vm.crowbar.internal/agent?ping=true", "")
		if pr.Status != http.StatusBadGateway || !strings.Contains(string(pr.Body), "vm.crowbar.internal") {
			t.Fatalf("ping an unreachable agent: %d %s", pr.Status, pr.Body)
		}
		s.Must(200, "PUT", "/api/v2/agents/heartbeat", `{"agent": {"address": "192.0.2.8:6379"}}`, bearer(again["agent_key"].(string))...)
		na := s.Must(200, "GET", fmt.Sprintf("/api/v2/nodes/%v/agent", r["node_id"]), "").Object(t)
		if na["address"] != "192.0.2.8:6379" || na["zero_os_id"] != "525400000001" {
			t.Fatalf("agent after heartbeat: %v", na)
		}
		node := s.Must(200, "GET", "/api/v2/nodes/vm.crowbar.internal", "").Object(t)
		disc := node["discovery"].(map[string]any)
		if node["alive"] != true || disc["zero_os"].(map[string]any)["id"] != "525400000001" || disc["macs"] == nil {
			t.Fatalf("joined node: %v", node)
		}
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "plain.example.com"}`)
		s.Must(404, "GET", "/api/v2/nodes/plain.example.com/agent", "")
	})
}

// TestAgentJoinLifecycle: real agents join, heartbeat, die and come back;
// a revoked or expired token ends the agent with the server's message.
func TestAgentJoinLifecycle(t *testing.T) {
	agenttest.Require(t)
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := server(t, st)
		ag := s.StartAgent(func(c *agent.Config) { c.MAC = "" }) // the MAC of the namespace's interface
		if ag.Node.Name == "" || !strings.Contains(string(ag.Node.Discovery), agenttest.DummyMAC) {
			t.Fatalf("joined node %+v", ag.Node)
		}
		zid := strings.ReplaceAll(agenttest.DummyMAC, ":", "")
		na, err := s.API.Nodes().Agent(context.Background(), ag.Node.ID)
		if err != nil || na.ZeroOSID != zid || na.Fingerprint != ag.Fingerprint() {
			t.Fatalf("agent record %+v %v", na, err)
		}
		alive := func() bool {
			var n model.Node
			s.Store.DB.Where("id = ?", ag.Node.ID).Take(&n)
			return n.Alive
		}
		// Stopped: marked not alive after the window; the transport says so.
		if err := ag.Stop(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return !alive() })
		cx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = s.AgentClient(ag).Ping(cx)
		if !errors.Is(err, core0.ErrUnreachable) || !strings.Contains(err.Error(), ag.Node.Name) {
			t.Fatalf("ping a stopped agent: %v", err)
		}
		// Restarted long after its join token could have expired: it resumes
		// with its key, without a token.
		cfg := ag.Config
		cfg.JoinToken = ""
		cfg.Listen = ag.Addr
		cfg.Logger = nil // RunAgent's own, shown if the test fails
		back, err := s.RunAgent(cfg)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, alive)
		if back.Node.ID != ag.Node.ID {
			t.Fatalf("the restarted agent is node %d, was %d", back.Node.ID, ag.Node.ID)
		}
		if err := s.AgentClient(back).Ping(ctx(t)); err != nil {
			t.Fatal(err)
		}
		back.Stop()

		// Reinstalled (a new state dir: new certificate and key) with a new
		// token: the same node, the new certificate pinned.
		cfg.StateDir = t.TempDir()
		cfg.JoinToken = s.JoinToken(time.Hour)
		re, err := s.RunAgent(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if re.Node.ID != ag.Node.ID || re.Fingerprint() == ag.Fingerprint() {
			t.Fatalf("reinstall: node %d (was %d), fingerprint changed %v", re.Node.ID, ag.Node.ID, re.Fingerprint() != ag.Fingerprint())
		}
		if err := s.AgentClient(re).Ping(ctx(t)); err != nil {
			t.Fatalf("ping after re-join (new pin): %v", err)
		}
		re.Stop()

		// A revoked token: the agent ends with the server's message.
		tok := s.JoinToken(time.Hour)
		jts, _ := s.API.Nodes().JoinTokens(context.Background())
		if _, err := s.API.Nodes().RevokeJoinToken(context.Background(), fmt.Sprint(jts[0].ID)); err != nil {
			t.Fatal(err)
		}
		_, err = s.RunAgent(agent.Config{Listen: "127.0.0.1:0", StateDir: t.TempDir(), TLS: true, Server: s.URL,
			JoinToken: tok, MAC: apitest.RandomMAC()})
		var refused *agent.RefusedError
		if !errors.As(err, &refused) || refused.Status != 401 || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("join with a revoked token: %v", err)
		}
		// An expired one likewise.
		expired := s.JoinToken(time.Second)
		time.Sleep(1100 * time.Millisecond)
		_, err = s.RunAgent(agent.Config{Listen: "127.0.0.1:0", StateDir: t.TempDir(), TLS: true, Server: s.URL,
			JoinToken: expired, MAC: apitest.RandomMAC()})
		if !errors.As(err, &refused) || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("join with an expired token: %v", err)
		}
	})
}
