//go:build wasip1

// Command chain is the benchmark barclamp of the annealer: roles chain-0 …
// chain-9, each requiring the one before, whose on_todo hook answers at
// once with a little wall data — the fixed cost of a wasm jig.
package main

import (
	"fmt"

	"github.com/crowbar-go/crowbar/sdk"
)

func init() {
	b := &sdk.Barclamp{Name: "chain", Version: "1.0.0"}
	for i := range 10 {
		r := sdk.Role{Name: fmt.Sprintf("chain-%d", i), OnTodo: func(e *sdk.Event) *sdk.Result {
			return sdk.Active(map[string]any{"ran": e.Role}, "")
		}}
		if i > 0 {
			r.Requires = []string{fmt.Sprintf("chain-%d", i-1)}
		}
		b.Roles = append(b.Roles, r)
	}
	sdk.Register(b)
}

func main() {}
