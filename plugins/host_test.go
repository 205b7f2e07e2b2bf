package plugins_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
)

// buildGuest compiles a barclamp from source with the stock toolchain; the
// Go build cache makes repeated runs fast.
func buildGuest(t *testing.T, dir string) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	out := filepath.Join(t.TempDir(), "guest.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./"+dir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", dir, err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

func TestGuestManifestHTTPKVAndHook(t *testing.T) {
	ctx := context.Background()
	wasm := buildGuest(t, "examples/hello-barclamp")
	for _, d := range storetest.Databases(t) {
		t.Run(string(d.Dialect), func(t *testing.T) {
			st := storetest.Open(t, d.DSN)
			h, err := plugins.New(ctx, plugins.Config{CacheDir: filepath.Join(t.TempDir(), "cache"), PoolSize: 2, KV: barclamp.NewKV(st.DB)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close(ctx) })
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
