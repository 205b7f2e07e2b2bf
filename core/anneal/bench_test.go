package anneal_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/anneal"
	"github.com/crowbar-go/crowbar/core/anneal/annealtest"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

// BenchmarkConverge10k: 1,000 nodes × a 10-role chain (10,000 node-roles),
// committed, from the annealer's start to all ACTIVE with the noop jig.
func BenchmarkConverge10k(b *testing.B) { benchConverge(b, "noop", nil) }

// BenchmarkConverge10kWasm is the same with every node-role run by a wasm
// hook (plugins/testdata/chain, a pool of 4 instances): 10,000 calls into
// the barclamp. guarded runs it as an installed module runs; trusted as
// the embedded first-party ones do (no loop guard).
func BenchmarkConverge10kWasm(b *testing.B) {
	for _, trust := range []string{"guarded", "trusted"} {
		b.Run(trust, func(b *testing.B) {
			benchConverge(b, "wasm", func(st *store.Store) anneal.Jig {
				wasm := pluginstest.Build(b, "plugins/testdata/chain")
				cfg := plugins.Config{PoolSize: 4, Trusted: map[string]bool{}}
				if trust == "trusted" {
					cfg.Trusted[barclamp.Digest(wasm)] = true
				}
				m, err := pluginstest.Host(b, st, cfg).Compile(context.Background(), "chain", wasm)
				if err != nil {
					b.Fatal(err)
				}
				return anneal.WasmJig(oneModule{m})
			})
		})
	}
}

// oneModule serves a single compiled module as the loaded barclamps.
type oneModule struct{ m barclamp.Module }

func (o oneModule) Get(name string) (*barclamp.Active, bool) {
	return &barclamp.Active{Module: o.m}, name == o.m.Manifest().Name
}

func benchConverge(b *testing.B, jig string, wasm func(*store.Store) anneal.Jig) {
	dbs := map[string]string{"sqlite": ""}
	if pg := storetest.PostgresDSN(b); pg != "" {
		dbs["postgres"] = pg
	}
	used := map[string]bool{}
	for name, dsn := range dbs {
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				d := dsn
				if name == "sqlite" {
					d = filepath.Join(b.TempDir(), "bench.db")
				} else if i > 0 || used[name] {
					d = storetest.PostgresDSN(b) // -count runs this function again
				}
				used[name] = true
				st := storetest.Open(b, d)
				total := annealtest.SeedChain(b, st.DB, 1000, 10, jig)
				// As the server runs it: every state change in the event log.
				cfg := anneal.Config{Workers: 64, Postgres: st.Dialect == store.Postgres,
					Bus: anneal.NewBus(st.DB, st.Dialect == store.Postgres, nil)}
				if wasm != nil {
					cfg.Jigs = map[string]anneal.Jig{"wasm": wasm(st)}
				}
				ann := anneal.New(st.DB, cfg)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				b.StartTimer()
				start := time.Now()
				go func() { ann.Run(ctx); close(done) }()
				waitAllB(b, st, int64(total))
				took := time.Since(start)
				b.StopTimer()
				cancel()
				<-done
				b.ReportMetric(took.Seconds(), "s-to-converge")
				b.ReportMetric(float64(total)/took.Seconds(), "node-roles/s")
				b.StartTimer()
			}
		})
	}
}

func waitAllB(b *testing.B, st *store.Store, total int64) {
	for {
		var n int64
		st.DB.Model(new(struct{})).Table("node_roles").Where("state = 0").Count(&n)
		if n == total {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
