package plugins

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The host module "crowbar": logging, the in-process API, the private
// key/value store, time and node commands. Nothing else is imported into a
// barclamp.
//
// Functions taking a request read JSON at (ptr, len) in the guest's memory;
// functions answering bytes allocate them in the guest with crowbar_alloc
// and return ptr<<32 | len (docs/abi.md).
func (h *Host) instantiateHostModule(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder("crowbar")
	b.NewFunctionBuilder().WithFunc(h.hostLog).Export("log")
	b.NewFunctionBuilder().WithFunc(h.jsonCall(h.hostAPI)).Export("api")
	b.NewFunctionBuilder().WithFunc(h.jsonCall(h.kvGet)).Export("kv_get")
	b.NewFunctionBuilder().WithFunc(h.jsonCall(h.kvCAS)).Export("kv_cas")
	b.NewFunctionBuilder().WithFunc(h.jsonCall(h.kvList)).Export("kv_list")
	b.NewFunctionBuilder().WithFunc(h.jsonCall(h.kvDelete)).Export("kv_delete")
	b.NewFunctionBuilder().WithFunc(func(context.Context) int64 { return time.Now().UnixNano() }).Export("now")
	b.NewFunctionBuilder().WithFunc(h.jsonCall(h.hostNode)).Export("node")
	_, err := b.Instantiate(ctx)
	return err
}

func info(ctx context.Context) *callInfo {
	ci, _ := ctx.Value(ctxKey{}).(*callInfo)
	if ci == nil {
		return &callInfo{barclamp: "(unknown)"}
	}
	return ci
}

// maxHostRequest bounds what a guest may pass to a host function.
const maxHostRequest = 4 << 20

type logRecord struct {
	Msg    string         `json:"msg"`
	Fields map[string]any `json:"fields"`
}

// hostLog writes a structured log line tagged with the barclamp. level:
// 0 trace, 1 debug, 2 info, 3 warn, 4 error.
func (h *Host) hostLog(ctx context.Context, m api.Module, level, ptr, n uint32) {
	if n > maxHostRequest {
		return
	}
	b, ok := m.Memory().Read(ptr, n)
	if !ok {
		return
	}
	var rec logRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		rec.Msg = string(b)
	}
	args := []any{"barclamp", info(ctx).barclamp}
	for k, v := range rec.Fields {
		args = append(args, k, v)
	}
	log := h.log
	switch level {
	case 0:
		log.Trace(rec.Msg, args...)
	case 1:
		log.Debug(rec.Msg, args...)
	case 3:
		log.Warn(rec.Msg, args...)
	case 4:
		log.Error(rec.Msg, args...)
	default:
		log.Info(rec.Msg, args...)
	}
}

// hostError is the answer of a host function that failed.
type hostError struct {
	Error string `json:"error"`
}

// jsonCall adapts fn (JSON request → JSON answer) to the ABI: it reads the
// request from guest memory and writes the answer back through crowbar_alloc.
func (h *Host) jsonCall(fn func(ctx context.Context, req []byte) any) func(context.Context, api.Module, uint32, uint32) uint64 {
	return func(ctx context.Context, m api.Module, ptr, n uint32) uint64 {
		var answer any
		if n > maxHostRequest {
			answer = hostError{Error: fmt.Sprintf("request of %d bytes is over the %d-byte limit", n, maxHostRequest)}
		} else if b, ok := m.Memory().Read(ptr, n); !ok {
			answer = hostError{Error: "request is outside the module's memory"}
		} else {
			answer = fn(ctx, append([]byte(nil), b...))
		}
		out, err := json.Marshal(answer)
		if err != nil {
			out, _ = json.Marshal(hostError{Error: err.Error()})
		}
		res, err := m.ExportedFunction("crowbar_alloc").Call(ctx, uint64(len(out)))
		if err != nil {
			panic(fmt.Errorf("crowbar_alloc during a host call: %w", err)) // traps the guest
		}
		p := uint32(res[0])
		if !m.Memory().Write(p, out) {
			panic(fmt.Errorf("crowbar_alloc returned a buffer outside memory"))
		}
		return uint64(p)<<32 | uint64(len(out))
	}
}

type apiRequest struct {
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body,omitempty"`
}

type apiResponse struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// hostAPI makes an in-process request to the core API under the
// barclamp's own identity.
func (h *Host) hostAPI(ctx context.Context, req []byte) any {
	var r apiRequest
	if err := json.Unmarshal(req, &r); err != nil {
		return apiResponse{Error: "malformed api request: " + err.Error()}
	}
	caller := h.apiCaller()
	if caller == nil {
		return apiResponse{Error: "the core API is not available"}
	}
	status, body, err := caller.Call(ctx, info(ctx).barclamp, r.Method, r.Path, r.Body)
	// A read answered 503 (the database restarting, a barclamp loading) is
	// tried again within the call's deadline; a write is not (it might
	// have been applied): the barclamp sees the 503.
	for wait := 100 * time.Millisecond; err == nil && status == 503 && (r.Method == "GET" || r.Method == "HEAD"); wait = min(2*wait, 2*time.Second) {
		select {
		case <-ctx.Done():
			return apiResponse{Status: status, Body: body}
		case <-time.After(wait):
		}
		status, body, err = caller.Call(ctx, info(ctx).barclamp, r.Method, r.Path, r.Body)
	}
	if err != nil {
		return apiResponse{Error: err.Error()}
	}
	if len(body) > 0 && !json.Valid(body) {
		body, _ = json.Marshal(string(body))
	}
	return apiResponse{Status: status, Body: body}
}

type kvRequest struct {
	Key      string `json:"key"`
	Prefix   string `json:"prefix"`
	Value    []byte `json:"value"`
	Expected int64  `json:"expected"`
}

type kvAnswer struct {
	Found    bool               `json:"found,omitempty"`
	OK       bool               `json:"ok,omitempty"`
	Value    []byte             `json:"value,omitempty"`
	Revision int64              `json:"revision,omitempty"`
	Entries  []barclamp.KVEntry `json:"entries,omitempty"`
	Error    string             `json:"error,omitempty"`
}

func (h *Host) kv(req []byte) (*kvRequest, *kvAnswer) {
	var r kvRequest
	if h.cfg.KV == nil {
		return nil, &kvAnswer{Error: "the key/value store is not available"}
	}
	if err := json.Unmarshal(req, &r); err != nil {
		return nil, &kvAnswer{Error: "malformed kv request: " + err.Error()}
	}
	return &r, nil
}

func (h *Host) kvGet(ctx context.Context, req []byte) any {
	r, fail := h.kv(req)
	if fail != nil {
		return fail
	}
	var e barclamp.KVEntry
	var found bool
	err := outlastOutage(ctx, func() (err error) { e, found, err = h.cfg.KV.Get(ctx, info(ctx).barclamp, r.Key); return })
	if err != nil {
		return kvAnswer{Error: err.Error()}
	}
	return kvAnswer{Found: found, Value: e.Value, Revision: e.Revision}
}

func (h *Host) kvCAS(ctx context.Context, req []byte) any {
	r, fail := h.kv(req)
	if fail != nil {
		return fail
	}
	var rev int64
	var ok bool
	err := outlastOutage(ctx, func() (err error) {
		rev, ok, err = h.cfg.KV.CAS(ctx, info(ctx).barclamp, r.Key, r.Value, r.Expected)
		return
	})
	if err != nil {
		return kvAnswer{Error: err.Error()}
	}
	return kvAnswer{OK: ok, Revision: rev}
}

func (h *Host) kvList(ctx context.Context, req []byte) any {
	r, fail := h.kv(req)
	if fail != nil {
		return fail
	}
	var entries []barclamp.KVEntry
	err := outlastOutage(ctx, func() (err error) { entries, err = h.cfg.KV.List(ctx, info(ctx).barclamp, r.Prefix); return })
	if err != nil {
		return kvAnswer{Error: err.Error()}
	}
	return kvAnswer{Entries: entries}
}

func (h *Host) kvDelete(ctx context.Context, req []byte) any {
	r, fail := h.kv(req)
	if fail != nil {
		return fail
	}
	var ok bool
	err := outlastOutage(ctx, func() (err error) { ok, err = h.cfg.KV.Delete(ctx, info(ctx).barclamp, r.Key, r.Expected); return })
	if err != nil {
		return kvAnswer{Error: err.Error()}
	}
	return kvAnswer{OK: ok}
}

// outlastOutage runs fn again while it fails because the database is
// unreachable (a restart, a fail-over), backing off up to 2 s, within the
// call's deadline: a barclamp's KV calls ride out a short outage.
func outlastOutage(ctx context.Context, fn func() error) error {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		err := fn()
		if err == nil || !store.IsUnavailable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}
