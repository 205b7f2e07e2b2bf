package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"gopkg.in/yaml.v3"
)

// routes lists every method and path template the router serves.
func routes(t *testing.T, r *mux.Router) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := route.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, _ := route.GetMethods()
		out[path] = append(out[path], methods...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOpenAPIDescribesEveryRoute keeps api/openapi.yaml true: every route
// the router serves must be in it, and nothing it describes may be missing.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	_, r := testRouter(t)
	served := map[string]bool{}
	for path, methods := range routes(t, r) {
		for _, m := range methods {
			m = strings.ToLower(m)
			if m == "head" {
				continue
			}
			served[m+" "+path] = true
			if _, ok := doc.Paths[path][m]; !ok {
				t.Errorf("openapi.yaml lacks %s %s", strings.ToUpper(m), path)
			}
		}
	}
	for path, ops := range doc.Paths {
		if !strings.HasPrefix(path, "/api/") && path != "/health" {
			continue // a barclamp's route: barclamps/openapi_test.go checks those
		}
		for m := range ops {
			if m != "parameters" && !served[m+" "+path] {
				t.Errorf("openapi.yaml describes %s %s, which the server does not serve", strings.ToUpper(m), path)
			}
		}
	}
}
