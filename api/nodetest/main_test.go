// Package nodetest tests crowbar's node agents end to end: real agents
// (TLS on) joined to real servers on SQLite and PostgreSQL, driven through
// the server's core0 client and Zero-OS's Python client calls, all inside
// a network namespace the tests make (see agenttest).
package nodetest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/crowbar-go/crowbar/core/nodes"
	"github.com/crowbar-go/crowbar/core/store"
)

func TestMain(m *testing.M) {
	agent.MaybeCoreX() // a container's init, when the agent re-ran this binary as one
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperAgent())
	}
	agenttest.Main(m)
}

// server starts an API server whose agents heartbeat fast and count as
// dead after a second without one.
func server(t *testing.T, st *store.Store) *apitest.Server {
	t.Helper()
	return apitest.New(t, st, func(su *apitest.Setup) {
		su.API.Nodes = nodes.Config{Heartbeat: 250 * time.Millisecond, DeadAfter: time.Second}
	})
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}
