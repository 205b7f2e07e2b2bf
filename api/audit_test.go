package api_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api"
	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

func auditList(t *testing.T, s *apitest.Server, query string, header ...string) ([]api.AuditEntry, string) {
	t.Helper()
	r := s.Must(200, "GET", "/api/v2/audit"+query, "", header...)
	var out []api.AuditEntry
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	return out, r.Header.Get("X-Total-Count")
}

// TestAuditLog: every write through the API is recorded — who, when,
// method, path, status and the body with its secrets hidden — refused ones
// too, and barclamps' in-process calls under their name; reads are not;
// admins read it with filters and paging; old entries are pruned.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		s.AddUser("reader", "reader-password", auth.RoleReader, true)
		rt, _, _ := s.Auth.MintToken(&auth.Caller{Username: "reader", Role: auth.RoleReader}, time.Hour)
		reader := []string{"Authorization", "Bearer " + rt}

		before := time.Now().UTC().Add(-time.Second)
		s.Must(201, "POST", "/api/v2/nodes", "name=audit1.example.com&bootenv=local", "Content-Type", "application/json")
		s.Must(200, "PUT", "/api/v2/nodes/audit1.example.com", `{"description": "rack 4"}`)
		s.Must(422, "POST", "/api/v2/nodes", `{"name": "localhost"}`)
		s.Must(201, "POST", "/api/v2/users", `{"username": "carol", "password": "carol-secret-pw", "role": "operator"}`)
		s.Must(403, "DELETE", "/api/v2/nodes/audit1.example.com", "", reader...)
		s.Must(200, "GET", "/api/v2/nodes", "")
		if code, _, err := s.API.Call(context.Background(), "testbc", "POST", "/api/v2/nodes", []byte(`{"name": "bc.example.com"}`)); err != nil || code != 201 {
			t.Fatalf("in-process call: %d %v", code, err)
		}
		s.Must(200, "DELETE", "/api/v2/nodes/bc.example.com", "")

		all, total := auditList(t, s, "")
		if total != "7" || len(all) != 7 {
			t.Fatalf("%s entries (%d listed), want 7 writes: %+v", total, len(all), all)
		}
		want := []struct{ user, method, path string }{
			{"admin", "DELETE", "/api/v2/nodes/bc.example.com"},
			{"barclamp:testbc", "POST", "/api/v2/nodes"},
			{"reader", "DELETE", "/api/v2/nodes/audit1.example.com"},
			{"admin", "POST", "/api/v2/users"},
			{"admin", "POST", "/api/v2/nodes"},
			{"admin", "PUT", "/api/v2/nodes/audit1.example.com"},
			{"admin", "POST", "/api/v2/nodes"},
		}
		for i, w := range want {
			e := all[i]
			if e.Username != w.user || e.Method != w.method || e.Path != w.path || e.At.Before(before) || e.RequestID == "" {
				t.Errorf("entry %d: %+v, want %+v (newest first)", i, e, w)
			}
		}
		checks := map[string][2]string{
			"the form create":      {all[6].Summary, `{"bootenv":"local","name":"audit1.example.com"}`},
			"the refused create":   {all[4].Summary, `{"name":"localhost"}`},
			"the reader's refusal": {all[2].Role + " " + all[2].Scheme, "reader bearer"},
			"the barclamp's call":  {all[1].Scheme, "internal"},
		}
		for what, c := range checks {
			if c[0] != c[1] {
				t.Errorf("%s: %q, want %q", what, c[0], c[1])
			}
		}
		if all[4].Status != 422 || all[2].Status != 403 || all[6].Status != 201 {
			t.Errorf("statuses: %d %d %d", all[4].Status, all[2].Status, all[6].Status)
		}
		if strings.Contains(all[3].Summary, "carol-secret-pw") || !strings.Contains(all[3].Summary, `"password":"***"`) {
			t.Errorf("a password reached the audit log: %s", all[3].Summary)
		}

		// Filters and paging.
		for query, n := range map[string]int{
			"?user=reader": 1, "?method=delete": 2, "?path=/api/v2/nodes/audit1": 2, "?status=422": 1,
			"?since=1h": 7, "?until=" + url.QueryEscape(before.Format(time.RFC3339)): 0, "?path=%25": 0,
			"?limit=2&offset=1": 2,
		} {
			got, total := auditList(t, s, query)
			if len(got) != n {
				t.Errorf("%s: %d entries (total %s), want %d", query, len(got), total, n)
			}
		}
		if page, total := auditList(t, s, "?limit=2&offset=1"); total != "7" || page[0].ID != all[1].ID {
			t.Errorf("page 2 of 2: total %s, first %d, want %d", total, page[0].ID, all[1].ID)
		}
		for _, bad := range []string{"?limit=0", "?limit=5000", "?offset=-1", "?status=99", "?since=yesterday", "?colour=red"} {
			s.Must(400, "GET", "/api/v2/audit"+bad, "")
		}
		s.Must(403, "GET", "/api/v2/audit", "", reader...)
		s.Must(401, "GET", "/api/v2/audit", "", "Authorization", "")
		if _, total := auditList(t, s, ""); total != "7" {
			t.Errorf("reading the audit log wrote to it: %s entries", total)
		}

		// Pruning: entries older than the retention go.
		if err := st.DB.Create(&api.AuditEntry{At: time.Now().UTC().Add(-100 * 24 * time.Hour), Method: "POST", Path: "/old", Status: 201}).Error; err != nil {
			t.Fatal(err)
		}
		n, err := s.API.PruneAudit(context.Background(), 90*24*time.Hour)
		if err != nil || n != 1 {
			t.Fatalf("prune: %d, %v; want 1", n, err)
		}
		if _, total := auditList(t, s, ""); total != "7" {
			t.Errorf("after pruning: %s entries, want 7", total)
		}
	})
}
