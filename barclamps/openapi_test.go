//go:build !wasip1

package barclamps_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
	"gopkg.in/yaml.v3"
)

// TestOpenAPIDescribesBarclampRoutes keeps api/openapi.yaml true for the
// first-party barclamps: every route their manifests declare is described,
// with its security (open routes need no credentials), and nothing else
// under their prefixes.
func TestOpenAPIDescribesBarclampRoutes(t *testing.T) {
	b, err := os.ReadFile("../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	st := storetest.Open(t, storetest.Databases(t)[0].DSN)
	host := pluginstest.Host(t, st, plugins.Config{PoolSize: 1})
	for _, name := range []string{"crowbar", "network", "provisioner", "zero-os"} {
		m, err := host.Compile(context.Background(), name, pluginstest.Build(t, "barclamps/"+name))
		if err != nil {
			t.Fatal(err)
		}
		prefix := "/" + name + "/v2"
		declared := map[string]bool{}
		for _, r := range m.Manifest().Routes {
			method, path := strings.ToLower(r.Method), prefix+r.Path
			declared[method+" "+path] = true
			op, ok := doc.Paths[path][method].(map[string]any)
			if !ok {
				t.Errorf("openapi.yaml lacks %s %s", r.Method, path)
				continue
			}
			sec, has := op["security"].([]any)
			if open := has && len(sec) == 0; open != r.Open {
				t.Errorf("%s %s: openapi.yaml says open=%v, the barclamp %v", r.Method, path, open, r.Open)
			}
		}
		for path, ops := range doc.Paths {
			if !strings.HasPrefix(path, prefix+"/") {
				continue
			}
			for m := range ops {
				if m != "parameters" && !declared[m+" "+path] {
					t.Errorf("openapi.yaml describes %s %s, which barclamp %s does not serve", strings.ToUpper(m), path, name)
				}
			}
		}
	}
}
