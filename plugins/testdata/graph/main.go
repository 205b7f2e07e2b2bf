//go:build wasip1

// Command graph is the test barclamp of the annealer's graph tests: a
// requirement chain, a cluster role, a destructive role, hooks that fail
// once, exit the module, and echo their merged data, a requirement cycle
// and a requirement on a role nobody provides.
package main

import (
	"encoding/json"
	"os"

	"github.com/crowbar-go/crowbar/sdk"
)

func node(e *sdk.Event) string {
	var n struct {
		Name string `json:"name"`
	}
	json.Unmarshal(e.Node, &n) //nolint:errcheck
	return n.Name
}

// seen records that hook ran for name; GET /graph/v2/seen lists them.
func seen(name func(*sdk.Event) string) sdk.HookFunc {
	return func(e *sdk.Event) *sdk.Result {
		key := "seen/" + e.Hook + "/" + name(e)
		if _, _, err := sdk.KVCompareAndSwap(key, []byte(e.Role), 0); err != nil {
			return sdk.Failed("kv: %v", err)
		}
		return nil
	}
}

func deployment(e *sdk.Event) string {
	var d struct {
		Name string `json:"name"`
	}
	json.Unmarshal(e.Deployment, &d) //nolint:errcheck
	return d.Name
}

func listSeen(*sdk.Request) *sdk.Response {
	entries, err := sdk.KVList("seen/")
	if err != nil {
		return sdk.Error(500, "kv: %v", err)
	}
	keys := []string{}
	for _, e := range entries {
		keys = append(keys, e.Key)
	}
	return sdk.JSON(200, keys)
}

func init() {
	sdk.Register(&sdk.Barclamp{Name: "graph", Version: "1.0.0",
		OnNodeCreate: seen(node), OnNodeDelete: seen(node),
		OnDeploymentCreate: seen(deployment), OnDeploymentDelete: seen(deployment),
		Routes: []sdk.Route{{Method: "GET", Path: "/seen", Handler: listSeen}},
		Roles: []sdk.Role{
			{Name: "g-notify", OnProposed: seen(node), OnActive: seen(node)},
			{Name: "g-base", Template: map[string]any{"g": map[string]any{"from": "template", "base": true}}},
			{Name: "g-mid", Requires: []string{"g-base"}},
			{Name: "g-top", Requires: []string{"g-mid"}, OnTodo: func(e *sdk.Event) *sdk.Result {
				var merged map[string]any
				json.Unmarshal(e.Attribs, &merged) //nolint:errcheck
				return sdk.Active(map[string]any{"seen": merged}, "top ran on "+node(e))
			}, Attribs: []sdk.Attrib{{Name: "g-size", Map: "g/size", Writable: true, Default: 1,
				Schema: map[string]any{"type": "integer", "minimum": 1}}}},
			{Name: "g-cluster", Flags: []string{"cluster"}},
			{Name: "g-member", Requires: []string{"g-cluster"}},
			{Name: "g-destructive", Flags: []string{"destructive"}, OnTodo: func(e *sdk.Event) *sdk.Result {
				rev, _, err := sdk.KVCompareAndSwap("wiped/"+node(e), []byte("x"), 0)
				if err != nil {
					return sdk.Failed("kv: %v", err)
				}
				return sdk.Active(map[string]any{"wipes": rev}, "wiped")
			}},
			{Name: "g-flaky", OnTodo: func(e *sdk.Event) *sdk.Result {
				if _, ok, _ := sdk.KVCompareAndSwap("failed/"+node(e), []byte("x"), 0); ok {
					return sdk.Failed("first run fails on purpose")
				}
				return sdk.Active(nil, "second run works")
			}, OnError: seen(node)},
			{Name: "g-after-flaky", Requires: []string{"g-flaky"}},
			{Name: "g-exit", OnTodo: func(e *sdk.Event) *sdk.Result { os.Exit(3); return nil }},
			{Name: "g-wait", OnTodo: func(e *sdk.Event) *sdk.Result { return sdk.Transition("waiting for the node to call back") }},
			{Name: "g-cycle-a", Requires: []string{"g-cycle-b"}},
			{Name: "g-cycle-b", Requires: []string{"g-cycle-a"}},
			{Name: "g-missing", Requires: []string{"no-such-role"}},
		}})
}

func main() {}
