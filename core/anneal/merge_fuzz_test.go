package anneal

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/model"
)

// FuzzAttribMerge: for any two JSON objects, merging src into dst leaves
// every leaf of src at its path (later wins), keeps dst's keys src does not
// name, and never shares src's objects with the result; put and dig agree
// on any path.
func FuzzAttribMerge(f *testing.F) {
	f.Add(`{"a":1,"b":{"c":2}}`, `{"b":{"d":3},"e":[1]}`, "b/c")
	f.Add(`{"crowbar":{"network":{"admin":{"v4":"10.0.0.1"}}}}`, `{"crowbar":{"network":"none"}}`, "crowbar/network/admin")
	f.Add(`{}`, `{"x":{"y":{"z":null}}}`, "x/y/z")
	f.Fuzz(func(t *testing.T, a, b, path string) {
		dst, err1 := decodeObject([]byte(a))
		src, err2 := decodeObject([]byte(b))
		if err1 != nil || err2 != nil {
			return
		}
		before, _ := decodeObject([]byte(a))
		merge(dst, src)
		checkLeaves(t, dst, src, nil)
		for k, v := range before {
			if _, named := src[k]; !named && !reflect.DeepEqual(dst[k], v) {
				t.Fatalf("key %q not in src changed: %v → %v", k, v, dst[k])
			}
		}
		// The result owns its objects: changing it leaves src as it was.
		want, _ := json.Marshal(src)
		for k, v := range dst {
			if m, ok := v.(map[string]any); ok {
				m["__mutated"] = true
			}
			_ = k
		}
		if got, _ := json.Marshal(src); string(got) != string(want) {
			t.Fatalf("src changed through the merge result: %s → %s", want, got)
		}
		p := strings.Split(path, "/")
		put(dst, p, "v")
		if got, ok := dig(dst, p); !ok || got != "v" {
			t.Fatalf("put then dig at %v: %v %v", p, got, ok)
		}
	})
}

// checkLeaves checks that every non-object value of src is in dst at the
// same path.
func checkLeaves(t *testing.T, dst, src map[string]any, at []string) {
	for k, v := range src {
		path := append(append([]string(nil), at...), k)
		if sm, ok := v.(map[string]any); ok {
			dm, ok := dst[k].(map[string]any)
			if !ok {
				t.Fatalf("%v: object in src, %T in the result", path, dst[k])
			}
			checkLeaves(t, dm, sm, path)
			continue
		}
		if !reflect.DeepEqual(dst[k], v) {
			t.Fatalf("%v: src has %v, the result %v", path, v, dst[k])
		}
	}
}

// FuzzHookResult: whatever a module's hook answers (the ABI's hook
// payload, decoded as the host decodes it), the annealer records a known
// state, a run log, and wall data only when it is a JSON object.
func FuzzHookResult(f *testing.F) {
	f.Add(`{"state":"active","wall":{"a":1},"runlog":"ok"}`)
	f.Add(`{"state":"error","error":"boom","runlog":"tried"}`)
	f.Add(`{"state":"transition"}`)
	f.Add(`{"state":"bogus","wall":[1,2]}`)
	f.Add(`{"wall":"not an object"}`)
	f.Fuzz(func(t *testing.T, raw string) {
		var res barclamp.HookResult
		if json.Unmarshal([]byte(raw), &res) != nil {
			return // the host answers "malformed output" (a CallError) then
		}
		state, _, wall := outcome(result{res: &res})
		if state != model.StateActive && state != model.StateTransition && state != model.StateError {
			t.Fatalf("%s → state %d", raw, state)
		}
		if wall != nil {
			if _, err := decodeObject(wall); err != nil {
				t.Fatalf("%s → wall %s is not an object", raw, wall)
			}
		}
	})
}
