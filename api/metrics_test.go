package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// TestMetrics: /metrics wants credentials (the scrape secret or a user's),
// and carries the request counters by route template, the annealer's
// queue, the database pool and the runtime.
func TestMetrics(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "m1.example.com"}`)
		s.Must(200, "GET", "/api/v2/nodes/m1.example.com", "")
		s.Must(404, "GET", "/api/v2/nodes/missing.example.com", "")
		h, err := s.API.Metrics("scrape-secret-0123456789")
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		scrape := func(auth string) (int, string) {
			req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		for _, bad := range []string{"", "Bearer wrong-secret", "Basic YWRtaW46YWRtaW4="} {
			if code, _ := scrape(bad); code != 401 {
				t.Errorf("scrape with %q: %d, want 401", bad, code)
			}
		}
		if code, _ := scrape("Bearer " + s.Token); code != 200 {
			t.Errorf("scrape with a user's token: %d", code)
		}
		code, body := scrape("Bearer scrape-secret-0123456789")
		if code != 200 {
			t.Fatalf("scrape with the secret: %d %s", code, body)
		}
		for _, want := range []string{
			`crowbar_http_requests_total{method="GET",route="/api/v2/nodes/{id}",status="200"}`,
			`crowbar_http_requests_total{method="GET",route="/api/v2/nodes/{id}",status="404"}`,
			`crowbar_http_requests_total{method="POST",route="/api/v2/nodes",status="201"}`,
			`crowbar_http_request_duration_seconds_bucket{method="POST",route="/api/v2/nodes",le=`,
			"crowbar_anneal_runnable ", "crowbar_anneal_running ", `crowbar_node_roles{state="active"}`,
			`go_sql_open_connections{db_name="crowbar"}`, "go_goroutines ", "process_resident_memory_bytes ",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("the scrape lacks %s", want)
			}
		}
		if strings.Contains(body, "missing.example.com") {
			t.Error("a request path (not its template) became a label")
		}
	})
}
