package api_test

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// fixture fills a store with one of everything the routes need.
func fixture(t *testing.T, s *apitest.Server) {
	t.Helper()
	bc := &model.Barclamp{Name: "crowbar", Version: "1.0"}
	if err := s.Store.DB.Create(bc).Error; err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"crowbar-managed-node", "crowbar-installed-node"} {
		if err := s.Store.DB.Create(&model.Role{Name: name, BarclampID: bc.ID, JigName: "noop"}).Error; err != nil {
			t.Fatal(err)
		}
	}
	s.Must(201, "POST", "/api/v2/nodes", `{"name": "a.example.com"}`)
	s.Must(201, "POST", "/api/v2/deployments", `{"name": "test1"}`)
	s.Must(201, "POST", "/api/v2/groups", `{"name": "rack1", "category": "rack"}`)
	s.Must(201, "POST", "/api/v2/jigs", `{"name": "ansible"}`)
	s.Must(201, "POST", "/api/v2/deployment_roles", `{"deployment": "test1", "role": "crowbar-managed-node"}`)
}

func mustCreate(t *testing.T, st *store.Store, obj any) {
	t.Helper()
	if err := st.DB.Create(obj).Error; err != nil {
		t.Fatalf("create %T: %v", obj, err)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func requireFields(t *testing.T, what string, obj map[string]any, fields ...string) {
	t.Helper()
	for _, f := range fields {
		if _, ok := obj[f]; !ok {
			t.Errorf("%s lacks field %q (has %v)", what, f, keys(obj))
		}
	}
}

func TestSeedShapes(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		// The seed's first workflow posts a form encoding labelled as JSON.
		r := s.Do("POST", "/api/v2/nodes", "name=newtest.cr0wbar.com&bootenv=local", "Content-Type", "application/json")
		if r.Status != 201 {
			t.Fatalf("create node: %d %s", r.Status, r.Body)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/vnd.crowbar.node.obj+json; version=2.0" {
			t.Errorf("content type %q", ct)
		}
		node := r.Object(t)
		requireFields(t, "node", node, "admin", "alias", "alive", "allocated", "available", "bootenv", "created_at",
			"deployment_id", "description", "discovery", "hint", "id", "name", "order", "target_role_id", "updated_at")
		want := map[string]any{"alias": "newtest", "bootenv": "local", "alive": false, "deployment_id": 1.0,
			"order": 10000.0, "target_role_id": nil, "discovery": map[string]any{}, "hint": map[string]any{}}
		for k, v := range want {
			if !reflect.DeepEqual(node[k], v) {
				t.Errorf("node %s = %#v, want %#v", k, node[k], v)
			}
		}
		// alive=true as a form under a JSON label, typed as a boolean.
		node = s.Must(200, "PUT", "/api/v2/nodes/newtest.cr0wbar.com", "alive=true").Object(t)
		if node["alive"] != true {
			t.Fatalf("alive after PUT alive=true: %v", node["alive"])
		}
		// A real form post too.
		s.Must(201, "POST", "/api/v2/nodes", "name=formed.example.com&admin=true", "Content-Type", "application/x-www-form-urlencoded")

		dep := s.Must(201, "POST", "/api/v2/deployments", `{"name": "test1"}`).Object(t)
		requireFields(t, "deployment", dep, "system", "created_at", "state", "parent_id", "description", "updated_at", "id", "name")
		if dep["state"] != 0.0 || dep["parent_id"] != 1.0 || dep["system"] != false {
			t.Errorf("new deployment = %v", dep)
		}
		moved := s.Must(200, "PUT", "/api/v2/nodes/newtest.cr0wbar.com", `{"deployment": "test1"}`).Object(t)
		if moved["deployment_id"] != dep["id"] {
			t.Errorf("moved node deployment_id = %v, want %v", moved["deployment_id"], dep["id"])
		}

		// Node-roles are created by binding (its own issue); the shape is the store's.
		bc := &model.Barclamp{Name: "crowbar"}
		mustCreate(t, st, bc)
		role := &model.Role{Name: "crowbar-installed-node", BarclampID: bc.ID}
		mustCreate(t, st, role)
		mustCreate(t, st, &model.NodeRole{NodeID: int64(node["id"].(float64)), RoleID: role.ID, DeploymentID: 2, State: 4, Order: 10000, Cohort: 10, Available: true})
		nrs := s.Must(200, "GET", "/api/v2/nodes/newtest.cr0wbar.com/node_roles", "").List(t)
		if len(nrs) != 1 {
			t.Fatalf("node_roles of node: %v", nrs)
		}
		requireFields(t, "node_role", nrs[0], "id", "role_id", "state", "run_count", "node_id", "deployment_id",
			"available", "runlog", "order", "created_at", "updated_at", "cohort", "status")
		if nrs[0]["status"] != nil || nrs[0]["state"] != 4.0 {
			t.Errorf("node_role = %v", nrs[0])
		}
		if got := s.Must(200, "GET", "/api/v2/deployments/test1/node_roles", "").List(t); len(got) != 1 {
			t.Errorf("node_roles of deployment: %v", got)
		}
		if got := s.Must(200, "GET", "/api/v2/node_roles?node=newtest.cr0wbar.com", "").List(t); len(got) != 1 {
			t.Errorf("node_roles filtered by node: %v", got)
		}
	})
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	t.Parallel()
	big := `{"name": "big.example.com", "description": "` + strings.Repeat("x", 2<<20) + `"}`
	cases := []struct {
		name, method, path, body string
		status                   int
		message                  string
	}{
		{"malformed JSON", "POST", "/api/v2/nodes", `{"name": `, 400, "malformed JSON"},
		{"JSON array body", "POST", "/api/v2/nodes", `[1,2]`, 400, "must be a JSON object"},
		{"trailing data", "POST", "/api/v2/nodes", `{"name": "b.example.com"} {}`, 400, "data after"},
		{"wrong type bool", "POST", "/api/v2/nodes", `{"name": "b.example.com", "alive": "yes"}`, 400, "field 'alive' must be a boolean"},
		{"wrong type int", "PUT", "/api/v2/nodes/a.example.com", `{"order": "first"}`, 400, "field 'order' must be an integer"},
		{"wrong type json", "PUT", "/api/v2/nodes/a.example.com", `{"hint": 5}`, 400, "field 'hint'"},
		{"wrong form type", "PUT", "/api/v2/nodes/a.example.com", `alive=maybe`, 400, "field 'alive' must be a boolean"},
		{"unknown field", "POST", "/api/v2/nodes", `{"name": "b.example.com", "colour": "red"}`, 400, "unknown field 'colour'"},
		{"unknown form field", "POST", "/api/v2/nodes", `name=b.example.com&colour=red`, 400, "unknown field 'colour'"},
		{"read-only field", "PUT", "/api/v2/nodes/a.example.com", `{"alias": "other"}`, 422, "alias is read-only"},
		{"node label with underscore", "POST", "/api/v2/nodes", `{"name": "9_b.example.com"}`, 422, "not a valid domain name"},
		{"node name not FQDN", "POST", "/api/v2/nodes", `{"name": "localhost"}`, 422, "fully qualified"},
		{"node name missing", "POST", "/api/v2/nodes", `{}`, 422, "name is required"},
		{"duplicate node", "POST", "/api/v2/nodes", `{"name": "a.example.com"}`, 422, "already taken"},
		{"duplicate by rename", "PUT", "/api/v2/deployments/test1", `{"name": "system"}`, 422, "already taken"},
		{"missing deployment ref", "POST", "/api/v2/nodes", `{"name": "b.example.com", "deployment": "nope"}`, 422, "deployment 'nope' not found"},
		{"missing deployment id", "PUT", "/api/v2/nodes/a.example.com", `{"deployment_id": 99}`, 422, "deployment_id '99' not found"},
		{"missing target role", "PUT", "/api/v2/nodes/a.example.com", `{"target_role": "nope"}`, 422, "target_role 'nope' not found"},
		{"missing node", "PUT", "/api/v2/nodes/nope.example.com", `{"alive": true}`, 404, "node 'nope.example.com' not found"},
		{"oversized body", "POST", "/api/v2/nodes", big, 413, "larger than the limit"},
		{"unsupported content type", "POST", "/api/v2/nodes", `<node/>`, 415, "not supported"},
		{"deployment digit name", "POST", "/api/v2/deployments", `{"name": "1st"}`, 422, "may not start with a digit"},
		{"deployment bad parent", "POST", "/api/v2/deployments", `{"name": "d2", "parent": "nope"}`, 422, "parent 'nope' not found"},
		{"deployment own parent", "PUT", "/api/v2/deployments/test1", `{"parent": "test1"}`, 422, "itself"},
		{"deployment state read-only", "PUT", "/api/v2/deployments/test1", `{"state": 1}`, 422, "state is read-only"},
		{"delete system deployment", "DELETE", "/api/v2/deployments/system", ``, 409, "cannot be deleted"},
		{"delete missing deployment", "DELETE", "/api/v2/deployments/nope", ``, 404, "not found"},
		{"deployment_role missing role", "POST", "/api/v2/deployment_roles", `{"deployment": "test1", "role": "nope"}`, 422, "role 'nope' not found"},
		{"deployment_role duplicate", "POST", "/api/v2/deployment_roles", `{"deployment": "test1", "role": "crowbar-managed-node"}`, 409, ""},
		{"deployment_role move", "PUT", "/api/v2/deployment_roles/1", `{"deployment": "system"}`, 422, "can only be set when"},
		{"group bad category", "POST", "/api/v2/groups", `{"name": "g2", "category": "shelf"}`, 422, "category"},
		{"group duplicate", "POST", "/api/v2/groups", `{"name": "rack1"}`, 422, "already taken"},
		{"group add missing node", "POST", "/api/v2/groups/rack1/nodes", `{"node": "nope.example.com"}`, 422, "node 'nope.example.com' not found"},
		{"group add no node", "POST", "/api/v2/groups/rack1/nodes", `{}`, 422, "node is required"},
		{"group add unknown field", "POST", "/api/v2/groups/rack1/nodes", `{"node": "a.example.com", "x": 1}`, 400, "unknown field 'x'"},
		{"group remove non-member", "DELETE", "/api/v2/groups/rack1/nodes/a.example.com", ``, 404, "not found"},
		{"jig digit name", "POST", "/api/v2/jigs", `{"name": "2jig"}`, 422, "may not start with a digit"},
		{"delete jig in use", "DELETE", "/api/v2/jigs/noop", ``, 409, "used by"},
		{"bad limit", "GET", "/api/v2/nodes?limit=-1", ``, 400, "limit must be"},
		{"unknown filter", "GET", "/api/v2/nodes?colour=red", ``, 400, "cannot filter nodes by 'colour'"},
		{"bad return attributes", "GET", "/api/v2/nodes", ``, 400, "x-return-attributes"},
		{"read-only resource", "POST", "/api/v2/roles", `{"name": "r"}`, 405, "not allowed"},
		{"no such route", "GET", "/api/v2/nothing", ``, 404, "no route"},
	}
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		fixture(t, s)
		// The jig in use: a role refers to noop.
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				before := storetest.Snapshot(t, st)
				hdr := []string{}
				if c.name == "unsupported content type" {
					hdr = []string{"Content-Type", "application/xml"}
				}
				if c.name == "bad return attributes" {
					hdr = []string{"X-Return-Attributes", `["name"`}
				}
				r := s.Do(c.method, c.path, c.body, hdr...)
				if r.Status != c.status {
					t.Fatalf("status %d, want %d; body %s", r.Status, c.status, r.Body)
				}
				body := r.Object(t)
				if body["status"] != float64(c.status) || !strings.Contains(fmt.Sprint(body["message"]), c.message) {
					t.Errorf("error body %s, want status %d and a message containing %q", r.Body, c.status, c.message)
				}
				if ct := r.Header.Get("Content-Type"); !strings.HasSuffix(ct, ".error+json; version=2.0") {
					t.Errorf("error content type %q", ct)
				}
				if after := storetest.Snapshot(t, st); !reflect.DeepEqual(before, after) {
					t.Errorf("the refused request changed the database")
				}
			})
		}
	})
}

func TestListsFilterPageAndTrim(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		s.Must(201, "POST", "/api/v2/deployments", `{"name": "test1"}`)
		for i := 0; i < 7; i++ {
			dep := "system"
			if i%2 == 1 {
				dep = "test1"
			}
			s.Must(201, "POST", "/api/v2/nodes", fmt.Sprintf(`{"name": "n%d.example.com", "deployment": %q, "alive": %v}`, i, dep, i < 3))
		}
		all := s.Must(200, "GET", "/api/v2/nodes", "")
		if got := len(all.List(t)); got != 7 || all.Header.Get("X-Total-Count") != "7" {
			t.Fatalf("list: %d nodes, total header %q", got, all.Header.Get("X-Total-Count"))
		}
		page := s.Must(200, "GET", "/api/v2/nodes?limit=2&offset=2", "")
		l := page.List(t)
		if len(l) != 2 || l[0]["name"] != "n2.example.com" || l[1]["name"] != "n3.example.com" || page.Header.Get("X-Total-Count") != "7" {
			t.Fatalf("page: %v total %q", l, page.Header.Get("X-Total-Count"))
		}
		if got := s.Must(200, "GET", "/api/v2/nodes?deployment=test1", "").List(t); len(got) != 3 {
			t.Errorf("filter by deployment name: %d nodes", len(got))
		}
		if got := s.Must(200, "GET", "/api/v2/nodes?deployment=2&alive=true", "").List(t); len(got) != 1 {
			t.Errorf("filter by deployment id and alive: %d nodes", len(got))
		}
		if got := s.Must(200, "GET", "/api/v2/nodes?name=n4.example.com", "").List(t); len(got) != 1 {
			t.Errorf("filter by name: %d nodes", len(got))
		}
		if got := s.Must(200, "GET", "/api/v2/deployments?parent_id=null", "").List(t); len(got) != 1 || got[0]["name"] != "system" {
			t.Errorf("filter parent_id=null: %v", got)
		}
		trimmed := s.Must(200, "GET", "/api/v2/nodes?limit=2", "", "x-return-attributes", `["name"]`).List(t)
		if len(trimmed) != 2 || len(trimmed[0]) != 1 || trimmed[0]["name"] != "n0.example.com" {
			t.Errorf("x-return-attributes on a list: %v", trimmed)
		}
		one := s.Must(200, "GET", "/api/v2/nodes/1", "", "x-return-attributes", "name, alive").Object(t)
		if len(one) != 2 || one["alive"] != true {
			t.Errorf("x-return-attributes on one: %v", one)
		}
		if got := s.Must(200, "GET", "/api/v2/deployments/test1/roles", "").List(t); len(got) != 0 {
			t.Errorf("roles of a deployment without deployment-roles: %v", got)
		}
	})
}

func TestGroupMembership(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		fixture(t, s)
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "b.example.com"}`)
		s.Must(200, "POST", "/api/v2/groups/rack1/nodes", `{"node": "a.example.com"}`)
		s.Must(200, "POST", "/api/v2/groups/rack1/nodes", `{"node": "a.example.com"}`) // twice is fine
		s.Must(200, "PUT", "/api/v2/groups/1/nodes/b.example.com", "")
		members := s.Must(200, "GET", "/api/v2/groups/rack1/nodes", "").List(t)
		if len(members) != 2 {
			t.Fatalf("members: %v", members)
		}
		s.Must(200, "DELETE", "/api/v2/groups/rack1/nodes/a.example.com", "")
		s.Must(200, "DELETE", "/api/v2/nodes/b.example.com", "") // membership goes with the node
		if members := s.Must(200, "GET", "/api/v2/groups/rack1/nodes", "").List(t); len(members) != 0 {
			t.Fatalf("members after removal: %v", members)
		}
		s.Must(404, "GET", "/api/v2/groups/nope/nodes", "")
	})
}

func TestDeleteDeploymentMovesNodesToSystem(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		fixture(t, s)
		s.Must(200, "PUT", "/api/v2/nodes/a.example.com", `{"deployment": "test1"}`)
		s.Must(201, "POST", "/api/v2/deployments", `{"name": "child", "parent": "test1"}`)
		s.Must(409, "DELETE", "/api/v2/deployments/test1", "")
		r := s.Must(200, "DELETE", "/api/v2/deployments/child", "")
		if ct := r.Header.Get("Content-Type"); ct != "application/vnd.crowbar.deployment.empty+json; version=2.0" || len(r.Body) != 0 {
			t.Errorf("delete answered %q %q", ct, r.Body)
		}
		s.Must(200, "DELETE", "/api/v2/deployments/test1", "")
		if n := s.Must(200, "GET", "/api/v2/nodes/a.example.com", "").Object(t); n["deployment_id"] != 1.0 {
			t.Errorf("node after its deployment was deleted: deployment_id %v", n["deployment_id"])
		}
		s.Must(404, "GET", "/api/v2/deployment_roles/1", "")
	})
}

func TestRequestIDAndHealth(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		r := s.Must(200, "GET", "/health", "", "X-Request-Id", "abc-123")
		if r.Header.Get("X-Request-Id") != "abc-123" {
			t.Errorf("request id not echoed: %q", r.Header.Get("X-Request-Id"))
		}
		if r := s.Must(404, "GET", "/nowhere", "", "X-Request-Id", "bad id"); len(r.Header.Get("X-Request-Id")) != 16 {
			t.Errorf("unsafe request id was not replaced: %q", r.Header.Get("X-Request-Id"))
		}
		st.Close()
		r = s.Do("GET", "/health", "")
		if r.Status != http.StatusServiceUnavailable || r.Object(t)["status"] != "unavailable" {
			t.Errorf("health with the database closed: %d %s", r.Status, r.Body)
		}
	})
}
