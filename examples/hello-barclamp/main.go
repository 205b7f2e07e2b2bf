//go:build wasip1

package main

import "github.com/crowbar-go/crowbar/sdk"

func init() {
	sdk.Register(&sdk.Barclamp{Name: "hello", Version: "1.0.0",
		Roles: []sdk.Role{{Name: "hello-node", OnTodo: func(e *sdk.Event) *sdk.Result { return sdk.Active(map[string]any{"hi": 1}, "greeted") }}},
		Routes: []sdk.Route{{Method: "GET", Path: "/greetings/{name}", Handler: func(r *sdk.Request) *sdk.Response {
			rev, ok, err := sdk.KVCompareAndSwap("greet/"+r.Param("name"), []byte("x"), 0)
			return sdk.JSON(200, map[string]any{"hello": r.Param("name"), "rev": rev, "ok": ok, "err": err})
		}}}})
}
func main() {}
