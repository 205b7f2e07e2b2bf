package api_test

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// benchServers gives one loopback server per database, seeded with n nodes.
func benchServers(b *testing.B, n int) map[string]*apitest.Server {
	out := map[string]*apitest.Server{}
	for _, d := range storetest.Databases(b) {
		st := storetest.Open(b, d.DSN)
		nodes := make([]model.Node, n)
		for i := range nodes {
			nodes[i] = model.Node{Name: fmt.Sprintf("n%d.bench.example.com", i), Alias: fmt.Sprintf("n%d", i),
				DeploymentID: 1, Order: 10000, Bootenv: "sledgehammer"}
		}
		if n > 0 {
			if err := st.DB.CreateInBatches(nodes, 500).Error; err != nil {
				b.Fatal(err)
			}
		}
		out[string(d.Dialect)] = apitest.New(b, st)
	}
	return out
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
}

// hit sends one request with authz as its Authorization header and fails
// the benchmark on an unexpected status.
func hit(b *testing.B, c *http.Client, authz, method, url, body string, want int) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", authz)
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	if resp.StatusCode != want {
		b.Fatalf("%s %s: %d", method, url, resp.StatusCode)
	}
}

// latencies records per-request durations and reports req/s and p50/p99.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B, elapsed time.Duration) {
	sort.Slice(l.d, func(i, j int) bool { return l.d[i] < l.d[j] })
	if len(l.d) == 0 {
		return
	}
	b.ReportMetric(float64(len(l.d))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(l.d[len(l.d)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(l.d[len(l.d)*99/100].Microseconds())/1000, "p99-ms")
}

// parallel runs fn from 8 × GOMAXPROCS goroutines; each goroutine gets a
// per-goroutine state from setup (a digest nonce, say).
func parallel(b *testing.B, fn func(c *http.Client, i int64)) {
	parallelWith(b, func() func(c *http.Client, i int64) { return fn })
}

func parallelWith(b *testing.B, setup func() func(c *http.Client, i int64)) {
	c := benchClient()
	var lat latencies
	var seq atomic.Int64
	b.SetParallelism(8) // 8 × GOMAXPROCS concurrent clients over loopback
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		fn := setup()
		for pb.Next() {
			t0 := time.Now()
			fn(c, seq.Add(1))
			lat.add(time.Since(t0))
		}
	})
	b.StopTimer()
	lat.report(b, time.Since(start))
}

// BenchmarkGetNodeByName: GET /api/v2/nodes/:name over loopback, with a
// bearer token, and with HTTP Digest the way a client that keeps its nonce
// does it (one challenge per client, then nc=1,2,3…).
func BenchmarkGetNodeByName(b *testing.B) {
	for db, s := range benchServers(b, 1000) {
		b.Run(db+"/bearer", func(b *testing.B) {
			parallel(b, func(c *http.Client, i int64) {
				hit(b, c, "Bearer "+s.Token, "GET", fmt.Sprintf("%s/api/v2/nodes/n%d.bench.example.com", s.URL, i%1000), "", 200)
			})
		})
		for _, alg := range []string{auth.MD5, auth.SHA256} {
			b.Run(db+"/digest-"+alg, func(b *testing.B) {
				parallelWith(b, func() func(c *http.Client, i int64) {
					var challenge string
					for _, ch := range s.Auth.Challenges(false) {
						if p, _ := auth.ParseDigest(ch); p["algorithm"] == alg {
							challenge = ch
						}
					}
					p, _ := auth.ParseDigest(challenge)
					ha1 := auth.HA1(alg, "admin", p["realm"], apitest.AdminPassword)
					nc := 0
					return func(c *http.Client, i int64) {
						nc++
						uri := fmt.Sprintf("/api/v2/nodes/n%d.bench.example.com", i%1000)
						ncs := fmt.Sprintf("%08x", nc)
						h := fmt.Sprintf(`Digest username="admin", realm=%q, nonce=%q, uri=%q, qop=auth, nc=%s, cnonce="c", response=%q, algorithm=%s`,
							p["realm"], p["nonce"], uri, ncs, auth.Response(alg, ha1, p["nonce"], ncs, "c", "GET", uri), alg)
						hit(b, c, h, "GET", s.URL+uri, "", 200)
					}
				})
			})
		}
	}
}

// BenchmarkListNodes1000: GET /api/v2/nodes with 1,000 nodes, one client.
func BenchmarkListNodes1000(b *testing.B) {
	for db, s := range benchServers(b, 1000) {
		b.Run(db, func(b *testing.B) {
			c := benchClient()
			var lat latencies
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				hit(b, c, "Bearer "+s.Token, "GET", s.URL+"/api/v2/nodes", "", 200)
				lat.add(time.Since(t0))
			}
			b.StopTimer()
			lat.report(b, time.Since(start))
		})
	}
}

// BenchmarkCreateNode: POST /api/v2/nodes from concurrent clients.
func BenchmarkCreateNode(b *testing.B) {
	for db, s := range benchServers(b, 0) {
		b.Run(db, func(b *testing.B) {
			run := time.Now().UnixNano()
			parallel(b, func(c *http.Client, i int64) {
				hit(b, c, "Bearer "+s.Token, "POST", s.URL+"/api/v2/nodes", fmt.Sprintf(`{"name": "c%d-%d.bench.example.com"}`, i, run), 201)
			})
		})
	}
}
