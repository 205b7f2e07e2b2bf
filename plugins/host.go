// Package plugins runs barclamps: WebAssembly modules executed in-process
// by wazero. One runtime serves every barclamp, with an on-disk compilation
// cache; each barclamp gets a pool of instances so concurrent calls do not
// queue behind one. Every call has a deadline and every instance a memory
// cap; a trap, panic, endless loop, over-allocation or bad output fails that
// one call and the instance is replaced.
package plugins

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Config tunes the host; the zero value is sane but for CacheDir.
type Config struct {
	CacheDir    string        // wazero compilation cache; "" keeps it in memory
	PoolSize    int           // instances per barclamp; default GOMAXPROCS
	MemoryMiB   uint32        // memory cap per instance; default 128
	HTTPTimeout time.Duration // deadline of an HTTP call; default 30 s
	HookTimeout time.Duration // deadline of a hook call; default 5 min
	MaxOutput   int           // largest reply a call may return; default 16 MiB
	Logger      hclog.Logger
	KV          *barclamp.KV
	// Trusted lists modules (by barclamp.Digest) that run without wazero's
	// guard on loop back-edges: a call's deadline cannot stop a loop in
	// them. The server trusts the first-party barclamps it embeds, byte
	// for byte; every other module keeps the guard.
	Trusted map[string]bool
}

// APICaller makes an in-process API request under a barclamp's identity.
// The api package implements it; the host only forwards.
type APICaller interface {
	Call(ctx context.Context, barclamp, method, path string, body []byte) (status int, resp []byte, err error)
}

// Host compiles and runs barclamp modules.
type Host struct {
	cfg     Config
	rt      wazero.Runtime // guarded
	trusted wazero.Runtime // unguarded, for Config.Trusted; nil without
	log     hclog.Logger

	mu    sync.RWMutex
	api   APICaller
	nodes NodeCommander
}

// New starts the wazero runtime and instantiates WASI and the crowbar host
// module into it.
func New(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = runtime.GOMAXPROCS(0)
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 128
	}
	if cfg.HTTPTimeout == 0 {
		cfg.HTTPTimeout = 30 * time.Second
	}
	if cfg.HookTimeout == 0 {
		cfg.HookTimeout = 5 * time.Minute
	}
	if cfg.MaxOutput == 0 {
		cfg.MaxOutput = 16 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	rc := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(cfg.MemoryMiB * 16) // 64 KiB pages
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o750); err != nil {
			return nil, fmt.Errorf("create wasm cache dir: %w", err)
		}
		// Shared by both runtimes: wazero's cache key covers the guard.
		cache, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm compilation cache: %w", err)
		}
		rc = rc.WithCompilationCache(cache)
	}
	h := &Host{cfg: cfg, log: cfg.Logger.Named("wasm")}
	var err error
	// Guarded: an endless loop ends with its call's deadline.
	if h.rt, err = h.newRuntime(ctx, rc.WithCloseOnContextDone(true)); err != nil {
		return nil, err
	}
	if len(cfg.Trusted) > 0 {
		if h.trusted, err = h.newRuntime(ctx, rc); err != nil {
			h.rt.Close(ctx) //nolint:errcheck
			return nil, err
		}
	}
	return h, nil
}

// newRuntime starts a runtime with WASI and the crowbar host module.
func (h *Host) newRuntime(ctx context.Context, rc wazero.RuntimeConfig) (wazero.Runtime, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx) //nolint:errcheck
		return nil, fmt.Errorf("instantiate WASI: %w", err)
	}
	if err := h.instantiateHostModule(ctx, rt); err != nil {
		rt.Close(ctx) //nolint:errcheck
		return nil, fmt.Errorf("instantiate crowbar host module: %w", err)
	}
	return rt, nil
}

// runtimeFor picks the runtime a module runs in: the unguarded one only
// for the exact bytes of a trusted module.
func (h *Host) runtimeFor(wasm []byte) (wazero.Runtime, bool) {
	if h.trusted != nil && h.cfg.Trusted[barclamp.Digest(wasm)] {
		return h.trusted, true
	}
	return h.rt, false
}

// SetAPI gives the host the in-process API that barclamps call.
func (h *Host) SetAPI(a APICaller) {
	h.mu.Lock()
	h.api = a
	h.mu.Unlock()
}

func (h *Host) apiCaller() APICaller {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.api
}

// Close stops the runtime and every instance.
func (h *Host) Close(ctx context.Context) error {
	if h.trusted != nil {
		h.trusted.Close(ctx) //nolint:errcheck
	}
	return h.rt.Close(ctx)
}

// Compile compiles wasm (from the cache when it was compiled before),
// starts one instance, checks the ABI version and reads the manifest. name,
// when set, must match the manifest's.
func (h *Host) Compile(ctx context.Context, name string, wasm []byte) (barclamp.Module, error) {
	return h.Load(ctx, name, wasm, nil)
}

// Load is Compile for a module whose manifest is already known (read and
// validated when it was installed): with a non-nil manifest nothing is
// instantiated until the first call, which is what makes a restart with a
// warm compilation cache fast. The ABI version is still checked by every
// instantiation.
func (h *Host) Load(ctx context.Context, name string, wasm []byte, manifest *barclamp.Manifest) (barclamp.Module, error) {
	rt, trusted := h.runtimeFor(wasm)
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("not a valid WebAssembly module: %w", err)
	}
	for _, exp := range []string{"crowbar_abi", "crowbar_alloc", "crowbar_free", "crowbar_manifest", "crowbar_http", "crowbar_hook"} {
		if _, ok := compiled.ExportedFunctions()[exp]; !ok {
			compiled.Close(ctx) //nolint:errcheck
			return nil, fmt.Errorf("module does not export %s: not a crowbar barclamp (see docs/abi.md)", exp)
		}
	}
	if trusted {
		h.log.Debug("a trusted first-party module: its calls run without the loop guard", "barclamp", name)
	}
	_, frames := compiled.ExportedFunctions()["crowbar_http_frame"]
	m := &module{host: h, rt: rt, trusted: trusted, compiled: compiled, name: name, manifest: manifest, frames: frames,
		idle: make(chan *instance, h.cfg.PoolSize), slots: make(chan struct{}, h.cfg.PoolSize)}
	if manifest == nil {
		if err := m.readManifest(ctx); err != nil {
			m.Close(ctx) //nolint:errcheck
			return nil, err
		}
	}
	if name != "" && m.manifest.Name != name {
		m.Close(ctx) //nolint:errcheck
		return nil, fmt.Errorf("module declares barclamp '%s', expected '%s'", m.manifest.Name, name)
	}
	m.name = m.manifest.Name
	return m, nil
}
