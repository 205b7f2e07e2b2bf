package api_test

import (
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

func TestInstallCallEnableRemoveBarclamp(t *testing.T) {
	t.Parallel()
	wasm := pluginstest.Build(t, "examples/hello-barclamp")
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st, func(su *apitest.Setup) { su.Host = pluginstest.Host(t, st, plugins.Config{PoolSize: 2}) })
		s.Must(404, "GET", "/hello/v2/greetings/bob", "")

		before := storetest.Snapshot(t, st)
		s.Must(415, "POST", "/api/v2/barclamps", "xx")
		s.Must(422, "POST", "/api/v2/barclamps", "not wasm", "Content-Type", "application/wasm")
		if after := storetest.Snapshot(t, st); len(after["barclamps"]) != len(before["barclamps"]) {
			t.Fatal("a refused install stored something")
		}

		bc := s.Must(201, "POST", "/api/v2/barclamps", string(wasm), "Content-Type", "application/wasm").Object(t)
		if bc["name"] != "hello" || bc["status"] != "loaded" || len(bc["digest"].(string)) != 64 || bc["source"] != "installed" {
			t.Fatalf("installed: %v", bc)
		}
		if got := s.Must(200, "GET", "/api/v2/barclamps/hello", "").Object(t); got["status"] != "loaded" {
			t.Fatalf("GET barclamp: %v", got)
		}
		if role := s.Must(200, "GET", "/api/v2/roles/hello-node", "").Object(t); role["jig_name"] != "wasm" {
			t.Fatalf("registered role: %v", role)
		}
		// The route, twice: the second compare-and-swap on the same key loses.
		r := s.Must(200, "GET", "/hello/v2/greetings/bob", "")
		if !strings.Contains(string(r.Body), `"hello":"bob"`) || !strings.Contains(string(r.Body), `"ok":true`) {
			t.Fatalf("barclamp route: %s", r.Body)
		}
		if r := s.Must(200, "GET", "/hello/v2/greetings/bob", ""); !strings.Contains(string(r.Body), `"ok":false`) {
			t.Fatalf("second call: %s", r.Body)
		}
		s.Must(405, "POST", "/hello/v2/greetings/bob", "{}")
		s.Must(404, "GET", "/hello/v2/nothing", "")
		s.Must(401, "GET", "/hello/v2/greetings/bob", "", "Authorization", "")

		// Enablement: a new deployment inherits its parent's barclamps.
		s.Must(200, "PUT", "/api/v2/deployments/system/barclamps/hello", "")
		s.Must(201, "POST", "/api/v2/deployments", `{"name": "test1"}`)
		if l := s.Must(200, "GET", "/api/v2/deployments/test1/barclamps", "").List(t); len(l) != 1 || l[0]["name"] != "hello" {
			t.Fatalf("inherited barclamps: %v", l)
		}
		s.Must(200, "DELETE", "/api/v2/deployments/test1/barclamps/hello", "")
		s.Must(404, "DELETE", "/api/v2/deployments/test1/barclamps/hello", "")
		s.Must(404, "PUT", "/api/v2/deployments/test1/barclamps/nope", "")

		s.Must(200, "DELETE", "/api/v2/barclamps/hello", "")
		s.Must(404, "GET", "/hello/v2/greetings/bob", "")
		s.Must(404, "GET", "/api/v2/roles/hello-node", "")
	})
}
