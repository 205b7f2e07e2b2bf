//go:build wasip1

package sdk_test

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/crowbar-go/crowbar/sdk"
)

// A whole barclamp: one role with a hook, one attrib and one route. This is
// the file an author writes (with an empty func main) and builds with
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
func ExampleRegister() {
	sdk.Register(&sdk.Barclamp{
		Name:        "ntp",
		Version:     "1.0.0",
		Description: "Time service for managed nodes",
		Roles: []sdk.Role{{
			Name:     "ntp-client",
			Requires: []string{"crowbar-managed-node"},
			Attribs: []sdk.Attrib{{
				Name: "ntp-servers", Map: "ntp/servers", Writable: true,
				Schema:  map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
				Default: []string{"pool.ntp.org"},
			}},
			OnTodo: func(e *sdk.Event) *sdk.Result {
				return sdk.Active(map[string]any{"ntp": map[string]any{"configured": true}}, "ntp configured")
			},
		}},
		Routes: []sdk.Route{{Method: "GET", Path: "/status", Handler: func(r *sdk.Request) *sdk.Response {
			return sdk.JSON(200, map[string]string{"status": "ok"})
		}}},
	})
}

// A route with a path parameter that answers JSON, or crowbar's error body.
func ExampleJSON() {
	_ = sdk.Route{Method: "GET", Path: "/servers/{id}", Handler: func(r *sdk.Request) *sdk.Response {
		id, err := strconv.Atoi(r.Param("id"))
		if err != nil {
			return sdk.Error(400, "server id %q is not a number", r.Param("id"))
		}
		return sdk.JSON(200, map[string]any{"id": id, "verbose": r.QueryValue("verbose") == "true"})
	}}
}

// A POST route that decodes its body strictly: unknown fields are refused.
func ExampleRequest_Decode() {
	_ = sdk.Route{Method: "POST", Path: "/pools", Handler: func(r *sdk.Request) *sdk.Response {
		var in struct {
			Name string `json:"name"`
			Size int    `json:"size"`
		}
		if err := r.Decode(&in); err != nil {
			return sdk.Error(400, "%v", err)
		}
		return sdk.JSON(201, in)
	}}
}

// A hook that reads the node it runs for and its merged attribs, and
// finishes the node-role: active with wall data, or in error.
func ExampleActive() {
	_ = func(e *sdk.Event) *sdk.Result {
		var node struct {
			Name string `json:"name"`
		}
		var attribs map[string]any
		if err := json.Unmarshal(e.Node, &node); err != nil {
			return sdk.Failed("cannot read node: %v", err)
		}
		json.Unmarshal(e.Attribs, &attribs) //nolint:errcheck
		return sdk.Active(map[string]any{"greeted": node.Name}, "said hello to "+node.Name)
	}
}

// A hook that starts long work and leaves the node-role in TRANSITION; a
// later call (a route the node calls back, say) completes it through the
// core API with PUT /api/v2/node_roles/:id.
func ExampleTransition() {
	_ = func(e *sdk.Event) *sdk.Result {
		return sdk.Transition("installer started; waiting for the node to call back")
	}
}

// Calling the core API in-process, under the barclamp's own identity.
func ExampleAPIJSON() {
	var node struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}
	if err := sdk.APIJSON("GET", "/api/v2/nodes/admin.example.com", nil, &node); err != nil {
		sdk.Log(sdk.LevelWarn, "no admin node", "error", err)
		return
	}
	sdk.Log(sdk.LevelInfo, "found the admin node", "id", node.ID)
}

// Allocating something unique (an address, a port) with compare-and-swap:
// of concurrent callers claiming the same key exactly one wins, on every
// replica and database.
func ExampleKVCompareAndSwap() {
	claim := func(address, node string) (bool, error) {
		_, ok, err := sdk.KVCompareAndSwap("addr/"+address, []byte(node), 0) // 0: only if absent
		return ok, err
	}
	for i := 10; i < 20; i++ {
		addr := fmt.Sprintf("192.168.124.%d", i)
		if ok, err := claim(addr, "n1.example.com"); err != nil || ok {
			sdk.Log(sdk.LevelInfo, "claimed", "address", addr, "error", err)
			return
		}
	}
}

// Reading every key under a prefix, and deleting one if unchanged.
func ExampleKVList() {
	entries, err := sdk.KVList("addr/")
	if err != nil {
		return
	}
	for _, e := range entries {
		if string(e.Value) == "gone.example.com" {
			sdk.KVDelete(e.Key, e.Revision) //nolint:errcheck
		}
	}
}

// Structured logging: key/value pairs after the message.
func ExampleLog() {
	sdk.Log(sdk.LevelInfo, "allocated", "node", "n1.example.com", "address", "192.168.124.81", "at", sdk.Now())
}
