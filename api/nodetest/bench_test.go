package nodetest

import (
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// benchAgent is a joined agent (TLS on) and the server's client for it.
func benchAgent(b *testing.B) *core0.Client {
	agenttest.Require(b)
	st := storetest.Open(b, filepath.Join(b.TempDir(), "crowbar.db"))
	s := apitest.New(b, st)
	c, err := s.API.Transport().Client(ctx(b), s.StartAgent().Node)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// latencies runs op from callers goroutines b.N times in all and reports
// ops/s and the p50 and p99 round trip.
func latencies(b *testing.B, callers int, op func() error) {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	next := make(chan struct{}, b.N)
	for i := 0; i < b.N; i++ {
		next <- struct{}{}
	}
	close(next)
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for range next {
				t0 := time.Now()
				if err := op(); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "ops/s")
}

// BenchmarkPing: core.ping round trips over TLS (push, accept flag,
// result) from 16 concurrent callers.
func BenchmarkPing(b *testing.B) {
	c := benchAgent(b)
	cx := ctx(b)
	latencies(b, 16, func() error { return c.Ping(cx) })
}

// BenchmarkPingSerial: one caller, one round trip at a time.
func BenchmarkPingSerial(b *testing.B) {
	c := benchAgent(b)
	cx := ctx(b)
	latencies(b, 1, func() error { return c.Ping(cx) })
}

// BenchmarkSystemTrue: core.system true end to end (a process started,
// waited for and its result read), 16 callers.
func BenchmarkSystemTrue(b *testing.B) {
	c := benchAgent(b)
	cx := ctx(b)
	latencies(b, 16, func() error { _, err := c.System(cx, "true"); return err })
}
