package nodetest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/nodes"
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

// BenchmarkZeroOSMem: GET /zero-os/v2/nodes/{id}/mem end to end — client →
// server → the zero-os barclamp (wasm) → the node's agent and back — from
// 16 concurrent callers.
func BenchmarkZeroOSMem(b *testing.B) {
	agenttest.Require(b)
	st := storetest.Open(b, filepath.Join(b.TempDir(), "crowbar.db"))
	s := barclampServer(b, st, "barclamps/zero-os", barclamp.SourceEmbedded, 4, nodes.Config{Heartbeat: 5 * time.Second, DeadAfter: time.Minute})
	s.StartAgent(func(c *agent.Config) { c.MAC = "52:54:00:12:34:56"; c.Heartbeat = 5 * time.Second })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	url := s.URL + "/zero-os/v2/nodes/525400123456/mem"
	latencies(b, 16, func() error {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+s.Token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// BenchmarkZeroOSContainerConverge100: zero-os-container bound to 100
// nodes (agents on one host), committed, until all 200 node-roles are
// ACTIVE: 100 containers created through the annealer.
func BenchmarkZeroOSContainerConverge100(b *testing.B) {
	agenttest.Require(b)
	root := busyboxRoot(b)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st := storetest.Open(b, filepath.Join(b.TempDir(), "crowbar.db"))
		s := barclampServer(b, st, "barclamps/zero-os", barclamp.SourceEmbedded, 4, nodes.Config{Heartbeat: 5 * time.Second, DeadAfter: time.Minute})
		s.Must(200, "PUT", "/api/v2/deployments/system/barclamps/zero-os", "")
		var agents []*apitest.Agent
		for j := 0; j < 100; j++ {
			agents = append(agents, s.StartAgent(func(c *agent.Config) {
				c.Heartbeat = 5 * time.Second
				c.Name = fmt.Sprintf("bz%03d.example.com", j)
			}))
		}
		for _, ag := range agents {
			s.Must(201, "POST", "/api/v2/node_roles", fmt.Sprintf(`{"node": %q, "role": "zero-os-container"}`, ag.Node.Name))
			s.Must(200, "PUT", "/api/v2/nodes/"+ag.Node.Name+"/attribs/zero-os-container-root", fmt.Sprintf(`{"value": %q}`, root))
		}
		b.StartTimer()
		start := time.Now()
		for _, ag := range agents {
			s.Must(200, "PUT", "/api/v2/nodes/"+ag.Node.Name+"/commit", "")
		}
		waitActiveB(b, s, 200)
		b.ReportMetric(time.Since(start).Seconds(), "s/100-containers")
		b.StopTimer()
		for _, ag := range agents {
			terminateContainers(s.AgentClient(ag))
		}
	}
}

func waitActiveB(b *testing.B, s *apitest.Server, n int) {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		st := s.Must(200, "GET", "/api/v2/anneal", "").Object(b)
		counts, _ := st["counts"].(map[string]any)
		if a, _ := counts["active"].(float64); int(a) >= n {
			return
		}
		if e, _ := counts["error"].(float64); e > 0 {
			b.Fatalf("node-roles in ERROR: %v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatal("not converged within 5 minutes")
}
