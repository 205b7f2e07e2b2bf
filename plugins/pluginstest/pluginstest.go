// Package pluginstest builds barclamps from source for tests and starts a
// wasm host over a store.
package pluginstest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/crowbar-go/crowbar/barclamps"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/plugins"
)

var (
	mu    sync.Mutex
	built = map[string][]byte{} // once per test binary; the Go build cache spans runs
)

// Build compiles the barclamp in dir (relative to the repository root) with
// GOOS=wasip1 GOARCH=wasm -buildmode=c-shared.
func Build(t testing.TB, dir string) []byte { t.Helper(); return BuildTags(t, dir, "") }

// BuildTags is Build with build tags (comma-separated), e.g.
// crowbar_json_http for a module that takes route calls as JSON only.
func BuildTags(t testing.TB, dir, tags string) []byte {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	key := dir + " " + tags
	if b, ok := built[key]; ok {
		return b
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
	out := filepath.Join(t.TempDir(), "guest.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-tags="+tags, "-o", out, "./"+dir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", dir, err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	built[key] = wasm
	return wasm
}

// Host starts a wasm host whose KV store is st's; it stops with the test.
func Host(t testing.TB, st *store.Store, cfg plugins.Config) *plugins.Host {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(os.TempDir(), "crowbar-test-wasm-cache")
	}
	cfg.KV = barclamp.NewKV(st.DB)
	if cfg.Trusted == nil {
		cfg.Trusted = barclamps.Trusted() // as the server runs them
	}
	h, err := plugins.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}
