package nodetest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// TestAgentCommands joins a real agent to a server on each database and
// runs every command through the server's core0 client.
func TestAgentCommands(t *testing.T) {
	agenttest.Require(t)
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := server(t, st)
		rebooted := filepath.Join(t.TempDir(), "rebooted")
		ag := s.StartAgent(func(c *agent.Config) { c.RebootCommand = []string{"touch", rebooted} })
		c := s.AgentClient(ag)
		cx := ctx(t)

		t.Run("core.ping", func(t *testing.T) {
			if err := c.Ping(cx); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("core.system", func(t *testing.T) {
			r, err := c.Call(cx, "core.system", core0.SystemArgs{Name: "sh", Args: []string{"-c", "echo $GREETING; pwd; cat; echo oops >&2"},
				Dir: "/tmp", Stdin: "from stdin\n", Env: map[string]string{"GREETING": "hello"}})
			if err != nil {
				t.Fatal(err)
			}
			if r.Stdout() != "hello\n/tmp\nfrom stdin\n" || r.Stderr() != "oops\n" || r.Code != 1000 || r.State != core0.StateSuccess {
				t.Fatalf("result %+v", r)
			}
			r, err = c.System(cx, "sh", "-c", "exit 3")
			if !errors.Is(err, core0.ErrJobFailed) || r.Code != 1003 || r.State != core0.StateError || r.ExitCode() != 3 {
				t.Fatalf("exit 3: %+v, %v", r, err)
			}
			var ce *core0.Error
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), ag.Node.Name) {
				t.Fatalf("the error does not name the node: %v", err)
			}
			r, err = c.System(cx, "/no/such/program")
			if err == nil || r.State != core0.StateError || !strings.Contains(r.Data, "/no/such/program") {
				t.Fatalf("missing program: %+v %v", r, err)
			}
		})
		t.Run("bash", func(t *testing.T) {
			r, err := c.Bash(cx, "read x; echo got $x; [ -n \"$BASH_VERSION\" ] && echo bash", "42\n")
			if err != nil || r.Stdout() != "got 42\nbash\n" {
				t.Fatalf("%+v %v", r, err)
			}
		})
		t.Run("stream", func(t *testing.T) {
			id, err := c.Push(cx, core0.Command{Command: "bash", Stream: true,
				Arguments: mustJSON(core0.BashArgs{Script: "for i in 1 2 3; do echo out$i; echo err$i >&2; done; exit 1"})})
			if err != nil {
				t.Fatal(err)
			}
			var got []core0.StreamMessage
			if err := c.Stream(cx, id, func(m core0.StreamMessage) error { got = append(got, m); return nil }); err != nil {
				t.Fatal(err)
			}
			var out, errs []string
			for _, m := range got[:len(got)-1] {
				if m.Level() == core0.LevelStdout {
					out = append(out, m.Message)
				} else {
					errs = append(errs, m.Message)
				}
			}
			last := got[len(got)-1]
			if strings.Join(out, ",") != "out1,out2,out3" || strings.Join(errs, ",") != "err1,err2,err3" || !last.EOF() || !last.Failed() {
				t.Fatalf("stream %+v", got)
			}
		})
		t.Run("core.subscribe", func(t *testing.T) {
			id, err := c.Push(cx, core0.Command{Command: "bash", Arguments: mustJSON(core0.BashArgs{Script: "sleep 0.5; echo one; echo two"})})
			if err != nil {
				t.Fatal(err)
			}
			sub, err := c.Push(cx, core0.Command{Command: "core.subscribe", Stream: true, Arguments: mustJSON(map[string]string{"id": id})})
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			err = c.Stream(cx, sub, func(m core0.StreamMessage) error {
				if !m.EOF() {
					lines = append(lines, m.Message)
				}
				return nil
			})
			if err != nil || strings.Join(lines, ",") != "one,two" {
				t.Fatalf("subscription got %q, %v", lines, err)
			}
		})
		t.Run("max_time", func(t *testing.T) {
			id, err := c.Push(cx, core0.Command{Command: "bash", MaxTime: 1,
				Arguments: mustJSON(core0.BashArgs{Script: "sleep 60 & sleep 60; wait"})})
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.Result(cx, id)
			if err != nil {
				t.Fatal(err)
			}
			// The agent's own clock: killed within max_time + 1 s, both sleeps.
			if r.State != core0.StateTimeout || r.Time > 2000 {
				t.Fatalf("max_time 1: %+v", r)
			}
			pids := processes(t, c, "sleep 60")
			if len(pids) != 0 {
				t.Fatalf("the job's process group survived max_time: %v", pids)
			}
		})
		t.Run("queue", func(t *testing.T) {
			dir := t.TempDir()
			var ids []string
			for i := 0; i < 5; i++ {
				id, err := c.Push(cx, core0.Command{Command: "bash", Queue: "q1",
					Arguments: mustJSON(core0.BashArgs{Script: fmt.Sprintf("sleep 0.0%d; echo %d >> %s/order", 5-i, i, dir)})})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			for _, id := range ids {
				if _, err := c.Result(cx, id); err != nil {
					t.Fatal(err)
				}
			}
			b, _ := os.ReadFile(filepath.Join(dir, "order"))
			if string(b) != "0\n1\n2\n3\n4\n" {
				t.Fatalf("queued jobs ran out of order: %q", b)
			}
		})
		t.Run("job.list, job.kill", func(t *testing.T) {
			id, err := c.Push(cx, core0.Command{Command: "core.system", Tags: []string{"sleeper"},
				Arguments: mustJSON(core0.SystemArgs{Name: "sleep", Args: []string{"30"}})})
			if err != nil {
				t.Fatal(err)
			}
			var jobs []core0.Job
			waitFor(t, func() bool {
				err := c.JSON(cx, "job.list", map[string]any{"id": id}, &jobs)
				return err == nil && len(jobs) == 1 && jobs[0].PID != 0
			})
			if jobs[0].Command.ID != id || jobs[0].Command.Tags[0] != "sleeper" || jobs[0].RSS == 0 {
				t.Fatalf("job.list: %+v", jobs)
			}
			var all []core0.Job
			if err := c.JSON(cx, "job.list", map[string]any{"id": nil}, &all); err != nil || len(all) < 2 {
				t.Fatalf("job.list of all (this one and the sleeper): %+v %v", all, err)
			}
			running, err := c.Running(cx, id)
			if err != nil || !running {
				t.Fatalf("running %v %v", running, err)
			}
			if err := c.JSON(cx, "job.kill", map[string]any{"id": id, "signal": 15}, nil); err != nil {
				t.Fatal(err)
			}
			r, err := c.Result(cx, id)
			if err != nil || r.State != core0.StateKilled {
				t.Fatalf("killed job: %+v %v", r, err)
			}
			if running, _ := c.Running(cx, id); running {
				t.Fatal("a finished job still counts as running")
			}
			_, err = c.Call(cx, "job.kill", map[string]any{"id": "no-such-job", "signal": 9})
			if !errors.Is(err, core0.ErrJobFailed) || !strings.Contains(err.Error(), "no running job") {
				t.Fatalf("kill unknown job: %v", err)
			}
		})
		t.Run("core.kill, core.killall", func(t *testing.T) {
			a, _ := c.Push(cx, core0.Command{Command: "core.system", Arguments: mustJSON(core0.SystemArgs{Name: "sleep", Args: []string{"30"}})})
			b, _ := c.Push(cx, core0.Command{Command: "core.system", Arguments: mustJSON(core0.SystemArgs{Name: "sleep", Args: []string{"31"}})})
			if err := c.JSON(cx, "core.kill", map[string]any{"id": a}, nil); err != nil {
				t.Fatal(err)
			}
			if r, _ := c.Result(cx, a); r.State != core0.StateKilled {
				t.Fatalf("core.kill: %+v", r)
			}
			var n int
			if err := c.JSON(cx, "core.killall", struct{}{}, &n); err != nil || n < 1 {
				t.Fatalf("core.killall: %d %v", n, err)
			}
			if r, _ := c.Result(cx, b); r.State != core0.StateKilled {
				t.Fatalf("core.killall: %+v", r)
			}
		})
		t.Run("recurring, job.unschedule", func(t *testing.T) {
			dir := t.TempDir()
			id, err := c.Push(cx, core0.Command{Command: "bash", RecurringPeriod: 1,
				Arguments: mustJSON(core0.BashArgs{Script: "echo run >> " + dir + "/runs"})})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { b, _ := os.ReadFile(dir + "/runs"); return strings.Count(string(b), "run") >= 2 })
			if running, _ := c.Running(cx, id); !running {
				t.Fatal("a recurring job does not count as running between runs")
			}
			if err := c.JSON(cx, "job.unschedule", map[string]any{"id": id}, nil); err != nil {
				t.Fatal(err)
			}
			r, err := c.Result(cx, id)
			if err != nil || r.State != core0.StateSuccess {
				t.Fatalf("unscheduled: %+v %v", r, err)
			}
			b, _ := os.ReadFile(dir + "/runs")
			runs := strings.Count(string(b), "run")
			time.Sleep(1500 * time.Millisecond)
			if b, _ := os.ReadFile(dir + "/runs"); strings.Count(string(b), "run") != runs {
				t.Fatal("the job ran again after job.unschedule")
			}
		})
		t.Run("core.state, info.*", func(t *testing.T) {
			var state map[string]float64
			if err := c.JSON(cx, "core.state", struct{}{}, &state); err != nil || state["rss"] <= 0 {
				t.Fatalf("core.state %v %v", state, err)
			}
			var mem map[string]any
			if err := c.JSON(cx, "info.mem", struct{}{}, &mem); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"total", "available", "used", "usedPercent", "free", "active", "inactive", "wired", "buffers", "cached"} {
				if _, ok := mem[k]; !ok {
					t.Errorf("info.mem lacks %s: %v", k, mem)
				}
			}
			var cpus []map[string]any
			if err := c.JSON(cx, "info.cpu", struct{}{}, &cpus); err != nil || len(cpus) == 0 || cpus[0]["cores"] == nil || cpus[0]["mhz"] == nil {
				t.Fatalf("info.cpu %v %v", cpus, err)
			}
			var nics []map[string]any
			if err := c.JSON(cx, "info.nic", struct{}{}, &nics); err != nil || !strings.Contains(fmt.Sprint(nics), agenttest.DummyMAC) {
				t.Fatalf("info.nic %v %v", nics, err)
			}
			var osInfo map[string]any
			if err := c.JSON(cx, "info.os", struct{}{}, &osInfo); err != nil || osInfo["os"] != "linux" {
				t.Fatalf("info.os %v %v", osInfo, err)
			}
			var disks, ports []map[string]any
			if err := c.JSON(cx, "info.disk", struct{}{}, &disks); err != nil {
				t.Fatal(err)
			}
			if err := c.JSON(cx, "info.port", struct{}{}, &ports); err != nil || !strings.Contains(fmt.Sprint(ports), strings.Split(ag.Addr, ":")[1]) {
				t.Fatalf("info.port does not show the agent's port %s: %v %v", ag.Addr, ports, err)
			}
			var v map[string]string
			if err := c.JSON(cx, "info.version", struct{}{}, &v); err != nil || v["revision"] == "" {
				t.Fatalf("info.version %v %v", v, err)
			}
		})
		t.Run("process.list, process.kill", func(t *testing.T) {
			id, _ := c.Push(cx, core0.Command{Command: "bash", Arguments: mustJSON(core0.BashArgs{Script: "exec sleep 33"})})
			var pids []int32
			waitFor(t, func() bool { pids = processes(t, c, "sleep 33"); return len(pids) == 1 })
			var one []core0.Process
			if err := c.JSON(cx, "process.list", map[string]any{"pid": pids[0]}, &one); err != nil || len(one) != 1 || one[0].RSS == 0 {
				t.Fatalf("process.list one: %+v %v", one, err)
			}
			if err := c.JSON(cx, "process.kill", map[string]any{"pid": pids[0], "signal": 9}, nil); err != nil {
				t.Fatal(err)
			}
			if r, _ := c.Result(cx, id); r.State != core0.StateKilled || r.Code != 1000+128+9 {
				t.Fatalf("process.kill: %+v", r)
			}
			_, err := c.Call(cx, "process.kill", map[string]any{"pid": 1})
			if !errors.Is(err, core0.ErrJobFailed) {
				t.Fatalf("killing pid 1 was not refused: %v", err)
			}
		})
		t.Run("filesystem", func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "sub", "f.bin")
			must := func(cmd string, args any, out any) {
				t.Helper()
				if err := c.JSON(cx, cmd, args, out); err != nil {
					t.Fatalf("%s: %v", cmd, err)
				}
			}
			must("filesystem.mkdir", map[string]any{"path": filepath.Dir(path)}, nil)
			var fd string
			must("filesystem.open", map[string]any{"file": path, "mode": "w", "perm": 0o600}, &fd)
			data := make([]byte, 700<<10)
			for i := range data {
				data[i] = byte(i * 7)
			}
			must("filesystem.write", map[string]any{"fd": fd, "block": base64.StdEncoding.EncodeToString(data)}, nil)
			must("filesystem.close", map[string]any{"fd": fd}, nil)
			must("filesystem.open", map[string]any{"file": path, "mode": "r"}, &fd)
			var got []byte
			for {
				var block string
				must("filesystem.read", map[string]any{"fd": fd}, &block)
				b, _ := base64.StdEncoding.DecodeString(block)
				if len(b) == 0 {
					break
				}
				got = append(got, b...)
			}
			must("filesystem.close", map[string]any{"fd": fd}, nil)
			if string(got) != string(data) {
				t.Fatalf("read back %d bytes, wrote %d", len(got), len(data))
			}
			var exists bool
			must("filesystem.exists", map[string]any{"path": path}, &exists)
			var entries []map[string]any
			must("filesystem.list", map[string]any{"path": filepath.Dir(path)}, &entries)
			if !exists || len(entries) != 1 || entries[0]["name"] != "f.bin" || entries[0]["size"].(float64) != float64(len(data)) {
				t.Fatalf("exists %v, list %v", exists, entries)
			}
			must("filesystem.chmod", map[string]any{"path": path, "mode": 0o640}, nil)
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
				t.Fatalf("chmod: %v", fi.Mode())
			}
			must("filesystem.chown", map[string]any{"path": path, "user": fmt.Sprint(os.Getuid()), "group": fmt.Sprint(os.Getgid())}, nil)
			moved := filepath.Join(dir, "g.bin")
			must("filesystem.move", map[string]any{"path": path, "destination": moved}, nil)
			must("filesystem.remove", map[string]any{"path": filepath.Join(dir, "sub")}, nil)
			must("filesystem.exists", map[string]any{"path": path}, &exists)
			if exists {
				t.Fatal("moved file still at its old path")
			}
			_, err := c.Call(cx, "filesystem.open", map[string]any{"file": filepath.Join(dir, "missing"), "mode": "r"})
			var ce *core0.Error
			if !errors.As(err, &ce) || ce.Result == nil || ce.Result.Code != 404 {
				t.Fatalf("open a missing file: %v", err)
			}
			_, err = c.Call(cx, "filesystem.read", map[string]any{"fd": "nope"})
			if !errors.Is(err, core0.ErrJobFailed) {
				t.Fatalf("read a bad fd: %v", err)
			}
		})
		t.Run("core.reboot", func(t *testing.T) {
			if err := c.JSON(cx, "core.reboot", struct{}{}, nil); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { _, err := os.Stat(rebooted); return err == nil })
		})
		t.Run("unknown command, duplicate id, bad arguments", func(t *testing.T) {
			r, err := c.Call(cx, "no.such", struct{}{})
			if !errors.Is(err, core0.ErrJobFailed) || r.State != core0.StateUnknownCmd {
				t.Fatalf("unknown: %+v %v", r, err)
			}
			id, _ := c.Push(cx, core0.Command{ID: "dup-" + ag.Node.Name, Command: "core.ping"})
			if _, err := c.Result(cx, id); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Push(cx, core0.Command{ID: id, Command: "core.system",
				Arguments: mustJSON(core0.SystemArgs{Name: "touch", Args: []string{"/tmp/" + id}})}); err != nil {
				t.Fatal(err)
			}
			r, err = c.Result(cx, id)
			if err != nil || r.State != core0.StateDuplicateID {
				t.Fatalf("duplicate: %+v %v", r, err)
			}
			if _, err := os.Stat("/tmp/" + id); err == nil {
				t.Fatal("a duplicate command ran")
			}
			r, err = c.Call(cx, "core.system", map[string]any{"name": 42})
			if !errors.Is(err, core0.ErrJobFailed) || r.Code != 400 || !strings.Contains(r.Data, "bad arguments") {
				t.Fatalf("bad arguments: %+v %v", r, err)
			}
		})
		t.Run("unknown job", func(t *testing.T) {
			_, err := c.Result(cx, "never-pushed")
			if !errors.Is(err, core0.ErrUnknownJob) {
				t.Fatalf("unknown job: %v", err)
			}
		})
	})
}

// processes returns the pids of processes whose command line is cmdline.
func processes(t *testing.T, c *core0.Client, cmdline string) []int32 {
	t.Helper()
	var ps []core0.Process
	if err := c.JSON(ctx(t), "process.list", map[string]any{"pid": nil}, &ps); err != nil {
		t.Fatal(err)
	}
	var out []int32
	for _, p := range ps {
		if p.Cmdline == cmdline {
			out = append(out, p.PID)
		}
	}
	return out
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	waitWithin(t, 20*time.Second, cond)
}

func waitWithin(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestAgentConcurrentCommands runs 200 commands on one node at once.
func TestAgentConcurrentCommands(t *testing.T) {
	agenttest.Require(t)
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := server(t, st)
		c := s.AgentClient(s.StartAgent())
		cx := ctx(t)
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for i := 0; i < 200; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				r, err := c.System(cx, "echo", fmt.Sprint(i))
				if err == nil && r.Stdout() != fmt.Sprintf("%d\n", i) {
					err = fmt.Errorf("command %d answered %q", i, r.Stdout())
				}
				errs <- err
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})
}
