package plugins_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

// Every fault fails its own call with a clear CallError, the instance is
// replaced, and calls keep being served, also while a fault is running.
func TestFaultsFailOneCallAndTheHostKeepsServing(t *testing.T) {
	ctx := context.Background()
	wasm := pluginstest.Build(t, "plugins/testdata/faulty")
	st := storetest.Open(t, storetest.Databases(t)[0].DSN)
	h := pluginstest.Host(t, st, plugins.Config{PoolSize: 2, MemoryMiB: 64, HTTPTimeout: 2 * time.Second, MaxOutput: 1 << 20})
	mod, err := h.Compile(ctx, "", wasm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mod.Close(ctx) })
	call := func(route string) (*barclamp.HTTPResponse, error) {
		return mod.HTTP(ctx, &barclamp.HTTPRequest{Method: "GET", Path: "/faulty/v2" + route, Route: "GET " + route})
	}
	cases := []struct{ route, reason string }{
		{"/panic", "trapped"},
		{"/loop", "deadline exceeded"},
		{"/oom", "faulty"},
		{"/badjson", "malformed output"},
		{"/big", "at most 1048576 are accepted"},
	}
	for _, c := range cases {
		t.Run(strings.TrimPrefix(c.route, "/"), func(t *testing.T) {
			// A healthy call runs while the faulty one does.
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r, err := call("/ok"); err != nil || r.Status != 200 {
					t.Errorf("healthy call during a fault: %v %v", r, err)
				}
			}()
			_, err := call(c.route)
			wg.Wait()
			if err == nil {
				t.Fatalf("%s succeeded", c.route)
			}
			var ce *barclamp.CallError
			if !asCallError(err, &ce) || ce.Barclamp != "faulty" || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("%s: %v, want a CallError mentioning %q", c.route, err, c.reason)
			}
			for i := 0; i < 3; i++ { // the pool recovers
				if r, err := call("/ok"); err != nil || r.Status != 200 {
					t.Fatalf("after %s: %v %v", c.route, r, err)
				}
			}
		})
	}
	if _, err := mod.Hook(ctx, &barclamp.HookEvent{Hook: "on_todo"}); err == nil || !strings.Contains(err.Error(), "trapped") {
		t.Fatalf("panicking hook: %v", err)
	}
}

func asCallError(err error, target **barclamp.CallError) bool {
	ce, ok := err.(*barclamp.CallError)
	*target = ce
	return ok
}
