package plugins

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/metrics"
	"github.com/crowbar-go/crowbar/sdk"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// module is one compiled barclamp with its pool of instances.
type module struct {
	host     *Host
	rt       wazero.Runtime // the host's guarded runtime, or its trusted one
	trusted  bool           // no guard: a deadline cannot stop a loop
	compiled wazero.CompiledModule
	frames   bool // it exports crowbar_http_frame
	name     string
	manifest *barclamp.Manifest

	idle   chan *instance // instances ready for a call
	slots  chan struct{}  // one token per live instance, capacity = pool size
	closed atomic.Bool
}

// Trusted reports whether the module runs without the loop guard (its
// bytes are a trusted first-party module's): a deadline cannot stop a loop
// in it.
func (m *module) Trusted() bool { return m.trusted }

// instance is one instantiated copy of a module. It serves one call at a
// time; after a failed call it is discarded, never reused.
type instance struct {
	mod                     api.Module
	alloc, free, http, hook api.Function
	httpFrame               api.Function // nil for modules built before the HTTP frame
	manifest                api.Function
}

type ctxKey struct{}

// callInfo travels in the context of a call so host functions know which
// barclamp is calling.
type callInfo struct {
	barclamp string
	inst     *instance
	kind     string // "http" or "hook": whom node commands are sent for
}

func (m *module) Manifest() *barclamp.Manifest { return m.manifest }

// logWriter sends a guest's stdout/stderr to the log, line by line.
type logWriter struct {
	log  func(msg string, args ...any)
	name string
}

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.log("barclamp output", "barclamp", w.name, "line", line)
	}
	return len(p), nil
}

func (m *module) instantiate(ctx context.Context) (*instance, error) {
	// Instantiation runs the guest's package initialisation: bound it too.
	ctx, cancel := context.WithTimeout(ctx, m.host.cfg.HTTPTimeout)
	defer cancel()
	name := m.name
	if name == "" {
		name = "(new module)"
	}
	cfg := wazero.NewModuleConfig().
		WithName(""). // anonymous: many instances of one module
		WithStartFunctions("_initialize").
		WithSysWalltime().WithSysNanotime().
		WithRandSource(rand.Reader).
		WithStdout(logWriter{m.host.log.Info, name}).
		WithStderr(logWriter{m.host.log.Warn, name}).
		WithStdin(strings.NewReader(""))
	mod, err := m.rt.InstantiateModule(ctx, m.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	metrics.WasmInstances.WithLabelValues(name).Inc()
	in := &instance{mod: mod,
		alloc: mod.ExportedFunction("crowbar_alloc"), free: mod.ExportedFunction("crowbar_free"),
		http: mod.ExportedFunction("crowbar_http"), hook: mod.ExportedFunction("crowbar_hook"),
		httpFrame: mod.ExportedFunction("crowbar_http_frame"),
		manifest:  mod.ExportedFunction("crowbar_manifest")}
	res, err := mod.ExportedFunction("crowbar_abi").Call(ctx)
	if err != nil {
		mod.Close(context.Background()) //nolint:errcheck
		return nil, fmt.Errorf("crowbar_abi: %w", err)
	}
	if v := int32(res[0]); v != barclamp.ABIVersion {
		mod.Close(context.Background()) //nolint:errcheck
		return nil, fmt.Errorf("module speaks barclamp ABI %d; this crowbar speaks ABI %d", v, barclamp.ABIVersion)
	}
	return in, nil
}

// acquire takes an idle instance, or starts one while the pool has room,
// or waits for one to come back.
func (m *module) acquire(ctx context.Context) (*instance, error) {
	if m.closed.Load() {
		return nil, errors.New("barclamp was unloaded")
	}
	select {
	case in := <-m.idle:
		return in, nil
	default:
	}
	select {
	case in := <-m.idle:
		return in, nil
	case m.slots <- struct{}{}:
		in, err := m.instantiate(ctx)
		if err != nil {
			<-m.slots
			return nil, err
		}
		return in, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("no instance became free: %w", ctx.Err())
	}
}

// release returns a healthy instance to the pool, or discards it.
func (m *module) release(in *instance, healthy bool) {
	if healthy && !m.closed.Load() {
		select {
		case m.idle <- in:
			return
		default:
		}
	}
	in.mod.Close(context.Background()) //nolint:errcheck
	metrics.WasmInstances.WithLabelValues(m.name).Dec()
	<-m.slots
}

// call runs export with payload in one instance under a deadline and
// returns the bytes it answered.
func (m *module) call(ctx context.Context, what string, timeout time.Duration, payload []byte, pick func(*instance) api.Function) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(format string, args ...any) error {
		return &barclamp.CallError{Barclamp: m.name, Call: what, Reason: fmt.Sprintf(format, args...)}
	}
	in, err := m.acquire(ctx)
	if err != nil {
		return nil, fail("%v", err)
	}
	kind := "hook"
	if strings.HasPrefix(what, "http ") {
		kind = "http"
	}
	ctx = context.WithValue(ctx, ctxKey{}, &callInfo{barclamp: m.name, inst: in, kind: kind})
	start := time.Now()
	out, err := m.invoke(ctx, in, payload, pick(in))
	metrics.Since(metrics.WasmCallSeconds.WithLabelValues(m.name, kind), start)
	count := func(result string) { metrics.WasmCalls.WithLabelValues(m.name, kind, result).Inc() }
	var big *oversized
	if errors.As(err, &big) {
		m.release(in, true) // the instance is fine; its answer was not
		count("error")
		return nil, fail("answered %d bytes; at most %d are accepted", big.n, big.max)
	}
	if err != nil {
		m.release(in, false)
		metrics.WasmTraps.WithLabelValues(m.name).Inc()
		switch {
		case ctx.Err() != nil:
			count("timeout")
			return nil, fail("no answer within %s (deadline exceeded)", timeout)
		case isExit(err):
			count("exit")
			return nil, fail("the module exited: %v", err)
		}
		count("error")
		return nil, fail("%v", err)
	}
	count("ok")
	m.release(in, true)
	m.host.log.Trace("barclamp call", "barclamp", m.name, "call", what, "took", time.Since(start))
	return out, nil
}

type oversized struct{ n, max int }

func (o *oversized) Error() string { return fmt.Sprintf("answer of %d bytes is over %d", o.n, o.max) }

func isExit(err error) bool {
	var ee *sys.ExitError
	return errors.As(err, &ee)
}

// invoke copies payload into the instance, calls fn(ptr, len) and copies the
// answer (a packed ptr<<32|len) out, freeing both buffers in the guest.
func (m *module) invoke(ctx context.Context, in *instance, payload []byte, fn api.Function) ([]byte, error) {
	var args []uint64
	if fn != in.manifest {
		ptr, err := writeGuest(ctx, in, payload)
		if err != nil {
			return nil, err
		}
		args = []uint64{uint64(ptr), uint64(len(payload))}
	}
	res, err := fn.Call(ctx, args...)
	if err != nil {
		return nil, trapReason(err)
	}
	ptr, n := uint32(res[0]>>32), uint32(res[0])
	if int(n) > m.host.cfg.MaxOutput {
		in.free.Call(ctx, uint64(ptr)) //nolint:errcheck
		return nil, &oversized{n: int(n), max: m.host.cfg.MaxOutput}
	}
	b, ok := in.mod.Memory().Read(ptr, n)
	if !ok {
		return nil, fmt.Errorf("answered a buffer outside its memory (ptr %d, len %d)", ptr, n)
	}
	out := append([]byte(nil), b...)
	if _, err := in.free.Call(ctx, uint64(ptr)); err != nil {
		return nil, trapReason(err)
	}
	return out, nil
}

// trapReason shortens wazero's trap errors to what an operator needs.
func trapReason(err error) error {
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("the module exited with code %d (os.Exit or a fatal runtime error in the barclamp)", ee.ExitCode())
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unreachable"):
		return fmt.Errorf("trapped (a panic in the barclamp): %s", firstLine(msg))
	case strings.Contains(msg, "out of bounds memory"):
		return fmt.Errorf("trapped: out of bounds memory access")
	}
	return errors.New(firstLine(msg))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// writeGuest allocates len(b) bytes in the guest and copies b there.
func writeGuest(ctx context.Context, in *instance, b []byte) (uint32, error) {
	res, err := in.alloc.Call(ctx, uint64(len(b)))
	if err != nil {
		return 0, trapReason(err)
	}
	ptr := uint32(res[0])
	if len(b) > 0 && !in.mod.Memory().Write(ptr, b) {
		return 0, fmt.Errorf("crowbar_alloc returned a buffer outside memory")
	}
	return ptr, nil
}

func (m *module) readManifest(ctx context.Context) error {
	out, err := m.call(ctx, "manifest", m.host.cfg.HTTPTimeout, nil, func(in *instance) api.Function { return in.manifest })
	if err != nil {
		return err
	}
	var mf barclamp.Manifest
	dec := json.NewDecoder(strings.NewReader(string(out)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&mf); err != nil {
		return fmt.Errorf("manifest is not valid JSON for ABI %d: %v", barclamp.ABIVersion, err)
	}
	m.manifest = &mf
	return nil
}

// httpFrame is HTTP in the binary envelope: fields length-prefixed, the
// body as is, no JSON on either side (docs/abi.md, "The HTTP frame").
func (m *module) httpFrame(ctx context.Context, req *barclamp.HTTPRequest) (*barclamp.HTTPResponse, error) {
	f := sdk.HTTPFrame{Method: req.Method, Path: req.Path, Host: req.Host, Advertise: req.Advertise, Route: req.Route,
		Params: req.Params, Query: req.Query, Headers: req.Headers, Body: req.Body}
	if c := req.Caller; c != nil {
		f.HasCaller, f.CallerUser, f.CallerRole, f.CallerScheme = true, c.Username, c.Role, c.Scheme
	}
	out, err := m.call(ctx, "http "+req.Route, m.host.cfg.HTTPTimeout, f.AppendRequest(make([]byte, 0, 256+len(req.Body))),
		func(in *instance) api.Function { return in.httpFrame })
	if err != nil {
		return nil, err
	}
	var rf sdk.HTTPFrame
	if err := rf.ReadResponse(out); err != nil || rf.Status < 100 || rf.Status > 599 {
		return nil, &barclamp.CallError{Barclamp: m.name, Call: "http " + req.Route, Reason: fmt.Sprintf("answered malformed output (%s)", describe(out, err))}
	}
	// out is the module's answer copied out of its memory: the body may
	// stay in it.
	return &barclamp.HTTPResponse{Status: rf.Status, Headers: rf.Headers, Body: rf.Body}, nil
}

// HTTP calls the barclamp's HTTP handler: in the binary frame when the
// module exports crowbar_http_frame (every module built with this SDK),
// else as JSON.
func (m *module) HTTP(ctx context.Context, req *barclamp.HTTPRequest) (*barclamp.HTTPResponse, error) {
	if m.frames {
		return m.httpFrame(ctx, req)
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	out, err := m.call(ctx, "http "+req.Route, m.host.cfg.HTTPTimeout, payload, func(in *instance) api.Function { return in.http })
	if err != nil {
		return nil, err
	}
	var resp barclamp.HTTPResponse
	if err := json.Unmarshal(out, &resp); err != nil || resp.Status < 100 || resp.Status > 599 {
		return nil, &barclamp.CallError{Barclamp: m.name, Call: "http " + req.Route, Reason: fmt.Sprintf("answered malformed output (%s)", describe(out, err))}
	}
	return &resp, nil
}

// Hook calls one of the barclamp's hooks.
func (m *module) Hook(ctx context.Context, ev *barclamp.HookEvent) (*barclamp.HookResult, error) {
	payload, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	out, err := m.call(ctx, ev.Hook, m.host.cfg.HookTimeout, payload, func(in *instance) api.Function { return in.hook })
	if err != nil {
		return nil, err
	}
	var res barclamp.HookResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, &barclamp.CallError{Barclamp: m.name, Call: ev.Hook, Reason: fmt.Sprintf("answered malformed output (%s)", describe(out, err))}
	}
	return &res, nil
}

func describe(out []byte, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d bytes without a valid status", len(out))
}

// Close unloads the module: idle instances close now, busy ones when their
// call ends.
func (m *module) Close(ctx context.Context) error {
	if m.closed.Swap(true) {
		return nil
	}
	for {
		select {
		case in := <-m.idle:
			in.mod.Close(ctx) //nolint:errcheck
			<-m.slots
		default:
			return m.compiled.Close(ctx)
		}
	}
}
