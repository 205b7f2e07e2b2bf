//go:build wasip1

package sdk

import (
	"encoding/json"
	"unsafe"
)

// The ABI plumbing (docs/abi.md). Authors never see a pointer: everything
// here is unexported.

// abiVersion is the barclamp ABI this SDK speaks.
const abiVersion = 1

// pinned keeps buffers handed to the host alive until it frees them.
var pinned = map[uint32][]byte{}

func ptrOf(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

// pin keeps b alive and returns ptr<<32 | len for the host.
func pin(b []byte) uint64 {
	if len(b) == 0 {
		b = make([]byte, 1)[:0:1]
	}
	p := ptrOf(b[:cap(b)])
	pinned[p] = b
	return uint64(p)<<32 | uint64(len(b))
}

// take returns the n bytes at p that the host wrote into a buffer we
// allocated, and forgets the buffer.
func take(p, n uint32) []byte {
	b := pinned[p]
	delete(pinned, p)
	if uint32(len(b)) < n {
		return nil
	}
	return b[:n]
}

//go:wasmexport crowbar_abi
func exportABI() int32 { return abiVersion }

//go:wasmexport crowbar_alloc
func exportAlloc(n uint32) uint32 {
	b := make([]byte, n, max(n, 1))
	p := ptrOf(b[:cap(b)])
	pinned[p] = b
	return p
}

//go:wasmexport crowbar_free
func exportFree(p uint32) { delete(pinned, p) }

//go:wasmexport crowbar_manifest
func exportManifest() uint64 {
	b, _ := json.Marshal(current.manifest())
	return pin(b)
}

//go:wasmexport crowbar_http
func exportHTTP(p, n uint32) uint64 {
	var req Request
	if err := json.Unmarshal(take(p, n), &req); err != nil {
		return pin(mustJSON(Error(400, "malformed request from the host: %v", err)))
	}
	return pin(mustJSON(current.serve(&req)))
}

//go:wasmexport crowbar_hook
func exportHook(p, n uint32) uint64 {
	var ev Event
	if err := json.Unmarshal(take(p, n), &ev); err != nil {
		return pin(mustJSON(Failed("malformed hook event from the host: %v", err)))
	}
	return pin(mustJSON(current.hook(&ev)))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"status": 500, "body": []byte(`{"status":500,"message":"cannot encode reply"}`)})
	}
	return b
}

//go:wasmimport crowbar log
func hostLog(level, p, n uint32)

//go:wasmimport crowbar api
func hostAPI(p, n uint32) uint64

//go:wasmimport crowbar kv_get
func hostKVGet(p, n uint32) uint64

//go:wasmimport crowbar kv_cas
func hostKVCAS(p, n uint32) uint64

//go:wasmimport crowbar kv_list
func hostKVList(p, n uint32) uint64

//go:wasmimport crowbar kv_delete
func hostKVDelete(p, n uint32) uint64

//go:wasmimport crowbar now
func hostNow() int64

// callHost sends req as JSON to a host function and decodes its answer.
func callHost(fn func(p, n uint32) uint64, req, answer any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		b = []byte("{}")
	}
	packed := fn(ptrOf(b), uint32(len(b)))
	keepAlive(b)
	return json.Unmarshal(take(uint32(packed>>32), uint32(packed)), answer)
}

//go:noinline
func keepAlive(b []byte) { _ = b }

//go:wasmimport crowbar node
func hostNode(p, n uint32) uint64
