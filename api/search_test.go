package api_test

import (
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// TestListSearch: ?search= narrows a named resource's list to names
// containing the text, ignoring case, with % and _ taken literally, and
// pages like any filter; unnamed resources refuse it.
func TestListSearch(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		for _, n := range []string{"rack1-a.example.com", "rack1-b.example.com", "rack2-a.example.com", "web.example.com"} {
			s.Must(201, "POST", "/api/v2/nodes", `{"name": "`+n+`"}`)
		}
		names := func(q string) string {
			var out []string
			for _, n := range s.Must(200, "GET", "/api/v2/nodes?"+q, "").List(t) {
				out = append(out, n["name"].(string))
			}
			return strings.Join(out, " ")
		}
		for q, want := range map[string]string{
			"search=RACK1":                 "rack1-a.example.com rack1-b.example.com",
			"search=-a.":                   "rack1-a.example.com rack2-a.example.com",
			"search=%25":                   "",
			"search=rack_":                 "",
			"search=rack&alive=false":      "rack1-a.example.com rack1-b.example.com rack2-a.example.com",
			"search=rack&limit=1&offset=1": "rack1-b.example.com",
		} {
			if got := names(q); got != want {
				t.Errorf("?%s = %q, want %q", q, got, want)
			}
		}
		if r := s.Do("GET", "/api/v2/nodes?search=rack&limit=1", ""); r.Header.Get("X-Total-Count") != "3" {
			t.Errorf("X-Total-Count with search = %q, want 3", r.Header.Get("X-Total-Count"))
		}
		s.Must(400, "GET", "/api/v2/node_roles?search=x", "")
	})
}
