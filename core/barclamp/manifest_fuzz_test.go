package barclamp_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/model"
)

// FuzzManifest: any manifest a module answers (crowbar_manifest, the ABI's
// first payload) is validated without a panic, and one that passes names a
// barclamp, roles and attribs by crowbar's rules, speaks this ABI, and
// declares routes that are paths.
func FuzzManifest(f *testing.F) {
	f.Add(`{"abi":1,"name":"hello","version":"1.0.0","roles":[{"name":"hello-node","jig":"wasm"}],"routes":[{"method":"GET","path":"/greetings/{name}"}]}`)
	f.Add(`{"abi":1,"name":"x","version":"1","roles":[{"name":"a","requires":["b"],"flags":["implicit"],"attribs":[{"name":"c","map":"x/y","schema":{"type":"string"}}]}],"hooks":["on_node_create"]}`)
	f.Add(`{"abi":1,"name":"api","version":"1"}`)
	f.Add(`{"abi":2,"name":"9x","version":""}`)
	f.Fuzz(func(t *testing.T, raw string) {
		var m barclamp.Manifest
		if json.Unmarshal([]byte(raw), &m) != nil {
			return
		}
		if err := m.Validate(); err != nil {
			return
		}
		if m.ABI != barclamp.ABIVersion || model.ValidName("name", m.Name) != nil || m.Name == "api" || m.Version == "" {
			t.Fatalf("accepted manifest %+v", m)
		}
		for _, r := range m.Roles {
			if model.ValidName("role", r.Name) != nil {
				t.Fatalf("accepted role name %q", r.Name)
			}
		}
		for _, rt := range m.Routes {
			if !strings.HasPrefix(rt.Path, "/") {
				t.Fatalf("accepted route path %q", rt.Path)
			}
		}
	})
}
