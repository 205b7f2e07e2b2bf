package nodetest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// Round trips to a node's agent are counted by node and result, with
// their latency, on the metrics endpoint.
func TestNodeRoundTripMetrics(t *testing.T) {
	agenttest.Require(t)
	st := storetest.Open(t, filepath.Join(t.TempDir(), "crowbar.db"))
	s := server(t, st)
	ag := s.StartAgent()
	for range 3 {
		s.Must(200, "GET", "/api/v2/nodes/"+ag.Node.Name+"/agent?ping=true", "")
	}
	h, err := s.API.Metrics("scrape-secret-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer scrape-secret-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`crowbar_node_round_trips_total\{node="` + regexp.QuoteMeta(ag.Node.Name) + `",result="ok"\} (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no ok round trips for %s in:\n%s", ag.Node.Name, b)
	}
	if n, _ := strconv.Atoi(string(m[1])); n < 3 {
		t.Fatalf("%d ok round trips counted for 3 pings", n)
	}
	if !regexp.MustCompile(`crowbar_node_round_trip_seconds_count [1-9]`).Match(b) {
		t.Fatal("no round-trip latency observed")
	}
}
