package plugins_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/barclamps"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

// Every fault fails its own call with a clear CallError, the instance is
// replaced, and calls keep being served, also while a fault is running.
// The host trusts the embedded first-party modules as the server does
// (pluginstest.Host): the loop guard, and so the deadline, still holds for
// every other module.
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

// Only the exact bytes of an embedded first-party module run without the
// loop guard; any other module keeps it, whatever it is called.
func TestOnlyEmbeddedModulesAreTrusted(t *testing.T) {
	ctx := context.Background()
	embedded, _ := barclamps.Embedded()
	if len(embedded) == 0 {
		t.Fatal("no embedded barclamps: run make barclamps (make test does)")
	}
	st := storetest.Open(t, storetest.Databases(t)[0].DSN)
	h := pluginstest.Host(t, st, plugins.Config{PoolSize: 1})
	trusted := func(wasm []byte) bool {
		mod, err := h.Compile(ctx, "", wasm)
		if err != nil {
			t.Fatal(err)
		}
		defer mod.Close(ctx)
		return mod.(interface{ Trusted() bool }).Trusted()
	}
	if !trusted(embedded["network"]) {
		t.Error("the embedded network barclamp runs with the loop guard")
	}
	if trusted(pluginstest.Build(t, "plugins/testdata/faulty")) {
		t.Error("a third-party module runs without the loop guard")
	}
	// A host trusting nothing runs even first-party bytes guarded.
	echo := pluginstest.Build(t, "plugins/testdata/echo")
	for _, trust := range []map[string]bool{{}, {barclamp.Digest(echo): true}} {
		h := pluginstest.Host(t, st, plugins.Config{PoolSize: 1, Trusted: trust})
		mod, err := h.Compile(ctx, "", echo)
		if err != nil {
			t.Fatal(err)
		}
		if got := mod.(interface{ Trusted() bool }).Trusted(); got != (len(trust) == 1) {
			t.Errorf("trusting %v: echo trusted=%v", trust, got)
		}
		mod.Close(ctx)
	}
}
