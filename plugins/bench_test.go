package plugins_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

var echoReq = &barclamp.HTTPRequest{Method: "POST", Path: "/echo/v2/echo/n1", Route: "POST /echo/{name}",
	Params: map[string]string{"name": "n1"}, Body: []byte(`{"a":1,"b":"two","c":[1,2,3]}`)}

// goEcho is the echo guest's handler written in Go, called the way the
// bridge calls a module: request and answer cross as JSON.
func goEcho(req *barclamp.HTTPRequest) (*barclamp.HTTPResponse, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var in barclamp.HTTPRequest
	if err := json.Unmarshal(payload, &in); err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(in.Body, &v); err != nil {
		return nil, err
	}
	v["name"] = in.Params["name"]
	body, _ := json.Marshal(v)
	out, _ := json.Marshal(&barclamp.HTTPResponse{Status: 200, Body: body})
	var resp barclamp.HTTPResponse
	return &resp, json.Unmarshal(out, &resp)
}

// reportLatency runs call b.N times over par goroutines and reports p50 and
// p99 per call.
func reportLatency(b *testing.B, par int, call func() error) {
	b.Helper()
	lat := make([][]time.Duration, par)
	per := b.N/par + 1
	errs := make(chan error, par)
	b.ResetTimer()
	for g := 0; g < par; g++ {
		go func(g int) {
			l := make([]time.Duration, 0, per)
			for i := 0; i < per; i++ {
				t0 := time.Now()
				if err := call(); err != nil {
					errs <- err
					return
				}
				l = append(l, time.Since(t0))
			}
			lat[g] = l
			errs <- nil
		}(g)
	}
	for g := 0; g < par; g++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkRouteCall compares one HTTP route call into a barclamp with the
// same handler in Go, and the barclamp's throughput per pool size with four
// concurrent callers.
func BenchmarkRouteCall(b *testing.B) {
	ctx := context.Background()
	wasm := pluginstest.Build(b, "plugins/testdata/echo")
	st := storetest.Open(b, filepath.Join(b.TempDir(), "bench.db"))
	b.Run("go", func(b *testing.B) {
		reportLatency(b, 1, func() error { _, err := goEcho(echoReq); return err })
	})
	// guarded: as every installed module runs; trusted: as the embedded
	// first-party ones do (no check on loop back-edges). frame: the binary
	// HTTP envelope; json: a module built without it (as before the frame).
	for _, env := range []string{"frame", "json"} {
		wasm := wasm
		if env == "json" {
			wasm = pluginstest.BuildTags(b, "plugins/testdata/echo", "crowbar_json_http")
		}
		for _, trust := range []string{"guarded", "trusted"} {
			cfg := plugins.Config{PoolSize: 1}
			if trust == "trusted" {
				cfg.Trusted = map[string]bool{barclamp.Digest(wasm): true}
			}
			b.Run("wasm/ping/"+trust+"/"+env, func(b *testing.B) { // the fixed cost: a route that does nothing
				h := pluginstest.Host(b, st, cfg)
				mod, err := h.Compile(ctx, "", wasm)
				if err != nil {
					b.Fatal(err)
				}
				defer mod.Close(ctx)
				ping := &barclamp.HTTPRequest{Method: "GET", Path: "/echo/v2/ping", Route: "GET /ping"}
				reportLatency(b, 1, func() error { _, err := mod.HTTP(ctx, ping); return err })
			})
			b.Run("wasm/echo/pool=1/"+trust+"/"+env, func(b *testing.B) {
				h := pluginstest.Host(b, st, cfg)
				mod, err := h.Compile(ctx, "", wasm)
				if err != nil {
					b.Fatal(err)
				}
				defer mod.Close(ctx)
				reportLatency(b, 1, func() error { _, err := mod.HTTP(ctx, echoReq); return err })
			})
		}
	}
	for _, pool := range []int{2, 4} {
		b.Run(fmt.Sprintf("wasm/echo/pool=%d", pool), func(b *testing.B) {
			h := pluginstest.Host(b, st, plugins.Config{PoolSize: pool})
			mod, err := h.Compile(ctx, "", wasm)
			if err != nil {
				b.Fatal(err)
			}
			defer mod.Close(ctx)
			call := func() error {
				resp, err := mod.HTTP(ctx, echoReq)
				if err == nil && resp.Status != 200 {
					err = fmt.Errorf("status %d: %s", resp.Status, resp.Body)
				}
				return err
			}
			for i := 0; i < pool; i++ { // warm every instance
				call()
			}
			par := 4
			if pool == 1 {
				par = 1
			}
			reportLatency(b, par, call)
		})
	}
}

// BenchmarkModuleLoad compiles a first-party-sized module with an empty
// compilation cache (cold) and with a warm one (cached), each time in a new
// runtime as a restarted server would.
func BenchmarkModuleLoad(b *testing.B) {
	ctx := context.Background()
	wasm := pluginstest.Build(b, "barclamps/crowbar")
	st := storetest.Open(b, filepath.Join(b.TempDir(), "bench.db"))
	warm := b.TempDir()
	h := pluginstest.Host(b, st, plugins.Config{CacheDir: warm})
	first, err := h.Compile(ctx, "", wasm) // fills the warm cache
	if err != nil {
		b.Fatal(err)
	}
	manifest := first.Manifest()
	first.Close(ctx)
	// cold and cached+instance read the manifest from a new instance, as an
	// install does; cached is a restart: manifest from the database.
	for _, mode := range []string{"cold", "cached+instance", "cached"} {
		b.Run(mode, func(b *testing.B) {
			known := manifest
			if mode != "cached" {
				known = nil
			}
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := warm
				if mode == "cold" {
					dir = filepath.Join(b.TempDir(), "c")
				}
				h, err := plugins.New(ctx, plugins.Config{CacheDir: dir})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				mod, err := h.Load(ctx, "crowbar", wasm, known)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				mod.Close(ctx)
				h.Close(ctx)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkInstance measures starting one instance and the memory it holds:
// its linear memory and the Go heap wazero uses for it.
func BenchmarkInstance(b *testing.B) {
	ctx := context.Background()
	wasm := pluginstest.Build(b, "barclamps/crowbar")
	st := storetest.Open(b, filepath.Join(b.TempDir(), "bench.db"))
	h := pluginstest.Host(b, st, plugins.Config{})
	mod, err := h.Compile(ctx, "", wasm)
	if err != nil {
		b.Fatal(err)
	}
	defer mod.Close(ctx)
	const n = 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var linear uint32
	var closers []func()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mem, closeFn, err := plugins.Instantiate(ctx, mod)
		if err != nil {
			b.Fatal(err)
		}
		linear = mem
		if len(closers) < n {
			closers = append(closers, closeFn)
		} else {
			closeFn()
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(linear)/(1<<20), "linear-MiB/instance")
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(len(closers))/(1<<20), "heap-MiB/instance")
	for _, c := range closers {
		c()
	}
}
