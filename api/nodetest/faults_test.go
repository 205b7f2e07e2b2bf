package nodetest

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// startHelper runs an agent as a separate process (this test binary) and
// waits until its node has joined.
func startHelper(t testing.TB, s *apitest.Server, hc helperConfig) (*exec.Cmd, *model.Node) {
	t.Helper()
	b, _ := json.Marshal(hc)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+string(b))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck
	hw, _ := net.ParseMAC(hc.MAC)
	zid := strings.ReplaceAll(hw.String(), ":", "")
	var node model.Node
	waitFor(t, func() bool {
		var na model.NodeAgent
		if s.Store.DB.Where("zero_os_id = ? AND address = ?", zid, hc.Listen).Take(&na).Error != nil {
			return false
		}
		return s.Store.DB.Where("id = ?", na.NodeID).Take(&node).Error == nil
	})
	// The join is committed before the agent has its answer (and the
	// server's token key): it is ready once it answers.
	waitFor(t, func() bool {
		c, err := s.API.Transport().Client(context.Background(), &node)
		return err == nil && c.Ping(context.Background()) == nil
	})
	return cmd, &node
}

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestAgentKilledMidJob: SIGKILL the agent while a job runs; the client's
// error names the node, and after a restart the job is unknown, not hung.
func TestAgentKilledMidJob(t *testing.T) {
	agenttest.Require(t)
	st := storetest.Open(t, filepath.Join(t.TempDir(), "crowbar.db"))
	s := server(t, st)
	hc := helperConfig{Listen: freePort(t), StateDir: t.TempDir(), Server: s.URL, JoinToken: s.JoinToken(time.Hour), MAC: apitest.RandomMAC()}
	cmd, node := startHelper(t, s, hc)
	c, err := s.API.Transport().Client(context.Background(), node)
	if err != nil {
		t.Fatal(err)
	}
	cx := ctx(t)
	id, err := c.Push(cx, core0.Command{Command: "core.system", Arguments: mustJSON(core0.SystemArgs{Name: "sleep", Args: []string{"45"}})})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(processes(t, c, "sleep 45")) == 1 })
	result := make(chan error, 1)
	go func() { _, err := c.Result(cx, id); result <- err }()
	time.Sleep(100 * time.Millisecond) // let the read block on the agent
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	cmd.Wait() //nolint:errcheck
	select {
	case err := <-result:
		if !errors.Is(err, core0.ErrUnreachable) || !strings.Contains(err.Error(), node.Name) {
			t.Fatalf("reading the result from a killed agent: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("reading the result from a killed agent hung")
	}
	hc.JoinToken = ""
	startHelper(t, s, hc)
	waitFor(t, func() bool { return c.Ping(cx) == nil })
	if _, err := c.Result(cx, id); !errors.Is(err, core0.ErrUnknownJob) {
		t.Fatalf("after the restart the job should be unknown: %v", err)
	}
	if pids := processes(t, c, "sleep 45"); len(pids) != 0 {
		t.Fatalf("the killed agent's job outlived it: %v", pids)
	}
}

// TestAgentSurvivesMalformedCommands: a malformed push gets an ERROR
// result (when it names an id) and the agent keeps serving.
func TestAgentSurvivesMalformedCommands(t *testing.T) {
	agenttest.Require(t)
	st := storetest.Open(t, filepath.Join(t.TempDir(), "crowbar.db"))
	s := server(t, st)
	ag := s.StartAgent()
	tok, _, _ := s.Auth.MintToken(&auth.Caller{Username: "admin", Role: auth.RoleAdmin}, time.Hour)
	rc := raw(ag.Addr, tok)
	defer rc.Close()
	bg := context.Background()
	for _, push := range []string{
		`{"id": "bad1", "command": "core.system", "arguments": `,
		`{"id": "bad2", "command": "core.system", "arguments": "not an object"}`,
		`{"id": "bad3", "command": "core.system", "arguments": {"name": "true"}, "max_time": "soon"}`,
		`{"id": "bad4", "command": 12}`,
	} {
		if err := rc.RPush(bg, core0.Queue, push).Err(); err != nil {
			t.Fatalf("push %s: %v", push, err)
		}
	}
	c := s.AgentClient(ag)
	for _, id := range []string{"bad1", "bad2", "bad3", "bad4"} {
		r, err := c.Result(ctx(t), id)
		if err != nil || r.State != core0.StateError || r.Code != 400 {
			t.Errorf("%s: %+v %v", id, r, err)
		}
	}
	for _, push := range []string{`not json at all`, `{"command": "core.ping"}`, `[]`} {
		if err := rc.RPush(bg, core0.Queue, push).Err(); err == nil {
			t.Errorf("push %s was accepted without an id to answer under", push)
		}
	}
	if err := rc.RPush(bg, "core:other", `{}`).Err(); err == nil {
		t.Error("a push to another list was accepted")
	}
	if err := rc.Do(bg, "FLUSHALL").Err(); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("an unknown Redis command: %v", err)
	}
	if err := c.Ping(ctx(t)); err != nil {
		t.Fatalf("the agent stopped serving: %v", err)
	}
}
