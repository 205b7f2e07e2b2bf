package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/api/ui"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/gorilla/mux"
)

// testRouter builds the full router over a fresh SQLite store.
func testRouter(t *testing.T) (http.Handler, *mux.Router) {
	t.Helper()
	st := storetest.Open(t, filepath.Join(t.TempDir(), "c.db"))
	svc, err := auth.New(context.Background(), st.DB, auth.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return newRouter(Config{Store: st, Auth: svc, Barclamps: barclamp.NewRegistry(st.DB, nil, nil)})
}

// TestEveryRouteNeedsCredentials walks every registered route and requires
// 401 with challenges for both schemes when no credentials are sent, so a
// route added later cannot be left open by mistake. Only /health, /ready,
// the web UI's files (no data in them) and signing in are open.
func TestEveryRouteNeedsCredentials(t *testing.T) {
	h, r := testRouter(t)
	checked := 0
	for path, methods := range routes(t, r) {
		for _, m := range methods {
			url := strings.NewReplacer("{id}", "1", "{node}", "a.example.com", "{name}", "x").Replace(path)
			req := httptest.NewRequest(m, url, strings.NewReader(`{}`))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if openPaths[path] || ui.Has(path) {
				if rec.Code != http.StatusOK {
					t.Errorf("%s %s (open) answered %d", m, path, rec.Code)
				}
				continue
			}
			if path == sessionPath && m == http.MethodPost {
				// Signing in is open; an empty body is refused as such.
				if rec.Code != http.StatusUnprocessableEntity {
					t.Errorf("POST %s with {} answered %d, want 422", path, rec.Code)
				}
				continue
			}
			checked++
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("%s %s without credentials answered %d, want 401", m, path, rec.Code)
				continue
			}
			ch := strings.Join(rec.Header().Values("WWW-Authenticate"), "\n")
			if !strings.Contains(ch, "Digest ") || !strings.Contains(ch, "Bearer ") {
				t.Errorf("%s %s: challenges %q lack Digest or Bearer", m, path, ch)
			}
		}
	}
	// Unknown routes and barclamp routes are no way around it either.
	for _, p := range []string{"/api/v2/secret-things", "/network/v2/networks", "/anything"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %s without credentials answered %d", p, rec.Code)
		}
	}
	if checked < 40 {
		t.Errorf("only %d routes checked: the walk is broken", checked)
	}
}
