package nodetest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/agent"
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

// BenchmarkContainerCreate: corex.create with a local directory root and
// a default nic, until a first command dispatched inside has answered.
func BenchmarkContainerCreate(b *testing.B) {
	agenttest.Require(b)
	st := storetest.Open(b, filepath.Join(b.TempDir(), "crowbar.db"))
	s := apitest.New(b, st)
	c, err := s.API.Transport().Client(ctx(b), s.StartAgent().Node)
	if err != nil {
		b.Fatal(err)
	}
	root := busyboxRoot(b)
	cx := ctx(b)
	var all []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		var id int
		if err := c.JSON(cx, "corex.create", agent.CreateArgs{Root: root, Nics: []agent.Nic{{Type: "default"}}}, &id); err != nil {
			b.Fatal(err)
		}
		args, _ := json.Marshal(core0.SystemArgs{Name: "true"})
		var job string
		if err := c.JSON(cx, "corex.dispatch", map[string]any{"container": id, "command": core0.Command{Command: "core.system", Arguments: args}}, &job); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Result(cx, job); err != nil {
			b.Fatal(err)
		}
		all = append(all, time.Since(t0))
		b.StopTimer()
		c.JSON(cx, "corex.terminate", map[string]any{"container": id}, nil) //nolint:errcheck
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkAgentMemoryPerContainer runs the agent as its own process,
// creates 40 containers and reports how much the agent's resident memory
// grew per container, and so how many fit before it passes 100 MiB.
func BenchmarkAgentMemoryPerContainer(b *testing.B) {
	agenttest.Require(b)
	st := storetest.Open(b, filepath.Join(b.TempDir(), "crowbar.db"))
	s := apitest.New(b, st)
	root := busyboxRoot(b)
	for i := 0; i < b.N; i++ {
		hc := helperConfig{Listen: freePort(b), StateDir: b.TempDir(), Server: s.URL, JoinToken: s.JoinToken(time.Hour), MAC: apitest.RandomMAC()}
		cmd, node := startHelper(b, s, hc)
		c, err := s.API.Transport().Client(ctx(b), node)
		if err != nil {
			b.Fatal(err)
		}
		before := rss(cmd.Process.Pid)
		const n = 40
		var ids []int
		for j := 0; j < n; j++ {
			var id int
			if err := c.JSON(ctx(b), "corex.create", agent.CreateArgs{Root: root, Nics: []agent.Nic{{Type: "default"}}, Port: map[string]int{fmt.Sprint(19000 + j): 80}}, &id); err != nil {
				b.Fatal(err)
			}
			ids = append(ids, id)
		}
		runtime.GC()
		after := rss(cmd.Process.Pid)
		per := float64(after-before) / n
		b.ReportMetric(float64(before)/(1<<20), "agent-MiB-idle")
		b.ReportMetric(float64(after)/(1<<20), "agent-MiB-40")
		b.ReportMetric(per/1024, "KiB/container")
		if per > 0 {
			b.ReportMetric((100*(1<<20)-float64(before))/per, "containers-to-100MiB")
		}
		for _, id := range ids {
			c.JSON(ctx(b), "corex.terminate", map[string]any{"container": id}, nil) //nolint:errcheck
		}
	}
}

// rss reads a process's resident memory in bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
