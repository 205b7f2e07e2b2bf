//go:build wasip1

// Command echo is the benchmark guest: one route that decodes a JSON body
// and answers it back, the same work benchEcho does in Go.
package main

import (
	"encoding/json"

	"github.com/crowbar-go/crowbar/sdk"
)

func init() {
	sdk.Register(&sdk.Barclamp{Name: "echo", Version: "1.0.0",
		Roles: []sdk.Role{{Name: "echo-node", OnTodo: func(e *sdk.Event) *sdk.Result { return sdk.Active(nil, "") }}},
		Routes: []sdk.Route{{Method: "POST", Path: "/echo/{name}", Handler: func(r *sdk.Request) *sdk.Response {
			var v map[string]any
			if err := json.Unmarshal(r.Body, &v); err != nil {
				return sdk.Error(400, "body: %v", err)
			}
			v["name"] = r.Param("name")
			return sdk.JSON(200, v)
		}}, {Method: "POST", Path: "/mirror/{id}", Handler: func(r *sdk.Request) *sdk.Response {
			// Everything the handler was given, to compare envelopes.
			resp := sdk.JSON(200, map[string]any{"method": r.Method, "path": r.Path, "host": r.Host,
				"advertise": r.Advertise, "route": r.Route, "params": r.Params, "query": r.Query,
				"headers": r.Headers, "caller": r.Caller, "body": string(r.Body)})
			resp.Headers["X-Mirror"] = []string{"1", "2"}
			return resp
		}}, {Method: "GET", Path: "/ping", Handler: func(r *sdk.Request) *sdk.Response {
			return &sdk.Response{Status: 204}
		}}}})
}

func main() {}
