package nodetest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/crowbar-go/crowbar/core/agent"
)

// helperEnv makes the test binary run as a bare agent process, for the
// tests that kill one with SIGKILL; its value is a helperConfig in JSON.
const helperEnv = "CROWBAR_TEST_AGENT_PROCESS"

type helperConfig struct {
	Listen, StateDir, Server, JoinToken, MAC string
}

// helperAgent runs the agent configured in the environment until SIGTERM.
func helperAgent() int {
	var hc helperConfig
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &hc); err != nil {
		fmt.Fprintln(os.Stderr, "helper agent:", err)
		return 2
	}
	a, err := agent.New(agent.Config{Listen: hc.Listen, StateDir: hc.StateDir, TLS: true, Server: hc.Server,
		JoinToken: hc.JoinToken, MAC: hc.MAC, Heartbeat: 250 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper agent:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "helper agent:", err)
		return 1
	}
	return 0
}
