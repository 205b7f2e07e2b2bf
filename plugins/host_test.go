package plugins_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

func TestGuestManifestHTTPKVAndHook(t *testing.T) {
	ctx := context.Background()
	wasm := pluginstest.Build(t, "examples/hello-barclamp")
	for _, d := range storetest.Databases(t) {
		t.Run(string(d.Dialect), func(t *testing.T) {
			st := storetest.Open(t, d.DSN)
			h := pluginstest.Host(t, st, plugins.Config{PoolSize: 2})
			mod, err := h.Compile(ctx, "", wasm)
			if err != nil {
				t.Fatal(err)
			}
			m := mod.Manifest()
			if err := m.Validate(); err != nil || m.Name != "hello" || len(m.Roles) != 1 || m.Roles[0].Hooks[0] != "on_todo" {
				t.Fatalf("manifest %+v: %v", m, err)
			}
			for i, wantOK := range []bool{true, false} {
				resp, err := mod.HTTP(ctx, &barclamp.HTTPRequest{Method: "GET", Path: "/hello/v2/greetings/bob",
					Route: "GET /greetings/{name}", Params: map[string]string{"name": "bob"}})
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				var body map[string]any
				json.Unmarshal(resp.Body, &body)
				if resp.Status != 200 || body["hello"] != "bob" || body["ok"] != wantOK {
					t.Fatalf("call %d: %d %s", i, resp.Status, resp.Body)
				}
			}
			res, err := mod.Hook(ctx, &barclamp.HookEvent{Hook: "on_todo", Role: "hello-node"})
			if err != nil || res.State != "active" || res.Runlog != "greeted" || !strings.Contains(string(res.Wall), "hi") {
				t.Fatalf("hook: %+v %v", res, err)
			}
			if _, err := h.Compile(ctx, "", []byte("not wasm")); err == nil {
				t.Fatal("garbage compiled")
			}
			mod.Close(ctx)
		})
	}
}
