//go:build wasip1

// Command faulty is a barclamp that misbehaves on purpose, written against
// the raw ABI (no SDK) so that it can break every rule: it panics, loops,
// allocates without end, and answers malformed or oversized output.
package main

import (
	"encoding/json"
	"strings"
	"unsafe"
)

var pinned = map[uint32][]byte{}

func ptr(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

func out(b []byte) uint64 {
	if len(b) == 0 {
		b = make([]byte, 1)[:0:1]
	}
	p := ptr(b[:cap(b)])
	pinned[p] = b
	return uint64(p)<<32 | uint64(len(b))
}

//go:wasmexport crowbar_abi
func abi() int32 { return 1 }

//go:wasmexport crowbar_alloc
func alloc(n uint32) uint32 {
	b := make([]byte, n, max(n, 1))
	p := ptr(b[:cap(b)])
	pinned[p] = b
	return p
}

//go:wasmexport crowbar_free
func free(p uint32) { delete(pinned, p) }

//go:wasmexport crowbar_manifest
func manifest() uint64 {
	routes := []map[string]string{}
	for _, p := range []string{"/ok", "/panic", "/loop", "/oom", "/badjson", "/big"} {
		routes = append(routes, map[string]string{"method": "GET", "path": p})
	}
	b, _ := json.Marshal(map[string]any{"abi": 1, "name": "faulty", "version": "0.0.1", "description": "misbehaves",
		"roles": []any{}, "attribs": []any{}, "routes": routes, "hooks": []any{}})
	return out(b)
}

var hoard [][]byte

//go:wasmexport crowbar_http
func serve(p, n uint32) uint64 {
	req := string(pinned[p][:n])
	delete(pinned, p)
	switch {
	case strings.Contains(req, `"route":"GET /panic"`):
		panic("deliberate panic")
	case strings.Contains(req, `"route":"GET /loop"`):
		for {
		}
	case strings.Contains(req, `"route":"GET /oom"`):
		for {
			hoard = append(hoard, make([]byte, 1<<20))
		}
	case strings.Contains(req, `"route":"GET /badjson"`):
		return out([]byte("this is not json"))
	case strings.Contains(req, `"route":"GET /big"`):
		return out(make([]byte, 32<<20))
	}
	return out([]byte(`{"status":200,"body":"b2s="}`))
}

//go:wasmexport crowbar_hook
func hook(p, n uint32) uint64 {
	delete(pinned, p)
	panic("hooks always panic here")
}

func main() {}
