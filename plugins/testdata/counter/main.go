//go:build wasip1

// Command counter is the fault campaign's barclamp: roles counter-0 …
// counter-9, each requiring the one before, whose on_todo hook counts its
// runs per node-role in the barclamp's key/value store (runs/<node-role
// id>) before it answers ACTIVE. A node-role run again after a crash shows
// a count above one.
package main

import (
	"fmt"
	"strconv"

	"github.com/crowbar-go/crowbar/sdk"
)

func count(e *sdk.Event) *sdk.Result {
	nr, err := e.NodeRoleInfo()
	if err != nil {
		return sdk.Failed("%v", err)
	}
	key := fmt.Sprintf("runs/%d", nr.ID)
	for {
		v, rev, _, err := sdk.KVGet(key)
		if err != nil {
			return sdk.Failed("read %s: %v", key, err)
		}
		n, _ := strconv.Atoi(string(v))
		_, ok, err := sdk.KVCompareAndSwap(key, []byte(strconv.Itoa(n+1)), rev)
		if err != nil {
			return sdk.Failed("count %s: %v", key, err)
		}
		if ok {
			return sdk.Active(map[string]any{"runs": n + 1}, "")
		}
	}
}

func init() {
	b := &sdk.Barclamp{Name: "counter", Version: "1.0.0"}
	for i := range 10 {
		r := sdk.Role{Name: fmt.Sprintf("counter-%d", i), OnTodo: count}
		if i > 0 {
			r.Requires = []string{fmt.Sprintf("counter-%d", i-1)}
		}
		b.Roles = append(b.Roles, r)
	}
	sdk.Register(b)
}

func main() {}
