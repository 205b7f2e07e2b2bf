package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/crowbar-go/crowbar/core/core0"
)

// handler runs one command. It returns the result's data, or an error
// that becomes an ERROR result (a *cmdError carries its code).
type handler func(ctx context.Context, j *job) (output, error)

// output is what a handler produced.
type output struct {
	data           string
	level          int
	code           int
	state          core0.State
	stdout, stderr string
}

// cmdError is a refused or failed command with its result code.
type cmdError struct {
	code int
	msg  string
}

func (e *cmdError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &cmdError{code: core0.CodeBadRequest, msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &cmdError{code: core0.CodeNotFound, msg: fmt.Sprintf(format, args...)}
}

// jsonOut answers v as JSON data (level 20).
func jsonOut(v any) (output, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return output{}, err
	}
	return output{data: string(b), level: core0.LevelJSON}, nil
}

// args decodes a command's arguments strictly: unknown fields are allowed
// (clients send more than a command reads) but types must match.
func args(j *job, into any) error {
	if err := json.Unmarshal(j.cmd.Arguments, into); err != nil {
		return badRequest("%s: bad arguments: %v", j.cmd.Command, err)
	}
	return nil
}

// commands maps every command name the agent answers to its handler.
// Filled in init to break the initialisation cycle with core.subscribe.
var commands map[string]handler

func init() {
	commands = map[string]handler{
		"core.ping":       func(context.Context, *job) (output, error) { return jsonOut("pong") },
		"core.system":     cmdSystem,
		"bash":            cmdBash,
		"core.kill":       cmdKill,
		"core.killall":    cmdKillAll,
		"core.state":      cmdState,
		"core.reboot":     cmdReboot,
		"core.subscribe":  cmdSubscribe,
		"job.list":        cmdJobList,
		"job.kill":        cmdJobKill,
		"job.unschedule":  cmdUnschedule,
		"process.list":    cmdProcessList,
		"process.kill":    cmdProcessKill,
		"info.cpu":        cmdInfoCPU,
		"info.mem":        cmdInfoMem,
		"info.disk":       cmdInfoDisk,
		"info.nic":        cmdInfoNIC,
		"info.os":         cmdInfoOS,
		"info.port":       cmdInfoPort,
		"info.version":    cmdInfoVersion,
		"corex.create":    cmdCorexCreate,
		"corex.list":      cmdCorexList,
		"corex.get":       cmdCorexGet,
		"corex.find":      cmdCorexFind,
		"corex.terminate": cmdCorexTerminate,
		"corex.dispatch":  cmdCorexDispatch,
	}
	for name, h := range fsCommands {
		commands[name] = h
	}
}

// Commands lists the command names the agent answers, sorted.
func Commands() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func cmdSystem(ctx context.Context, j *job) (output, error) {
	var a core0.SystemArgs
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	if a.Name == "" {
		return output{}, badRequest("core.system: name is required")
	}
	cmd := exec.Command(a.Name, a.Args...)
	cmd.Dir = a.Dir
	if len(a.Env) > 0 {
		cmd.Env = os.Environ()
		for k, v := range a.Env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	return j.a().exec(ctx, j, cmd, a.Stdin)
}

func cmdBash(ctx context.Context, j *job) (output, error) {
	var a core0.BashArgs
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	if strings.TrimSpace(a.Script) == "" {
		return output{}, badRequest("bash: script is required")
	}
	shell := "/bin/bash"
	if _, err := os.Stat(shell); err != nil {
		shell = "/bin/sh"
	}
	return j.a().exec(ctx, j, exec.Command(shell, "-c", a.Script), a.Stdin)
}

// a returns the agent a job belongs to (jobs hold it through their
// manager; handlers reach it here).
func (j *job) a() *Agent { return j.owner }

// exec runs cmd as job j: in its own process group (killed whole on
// max_time or kill), stdin fed from stdin, output captured (the last
// MaxOutput bytes of each stream) and streamed line by line.
func (a *Agent) exec(ctx context.Context, j *job, cmd *exec.Cmd, stdin string) (output, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return output{}, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return output{}, err
	}
	if err := cmd.Start(); err != nil {
		return output{code: core0.CodeNotFound}, &cmdError{code: core0.CodeNotFound, msg: fmt.Sprintf("start %s: %v", cmd.Path, err)}
	}
	j.mu.Lock()
	j.pid = cmd.Process.Pid
	killed := j.ending != ""
	j.mu.Unlock()
	if killed {
		killGroup(cmd.Process.Pid)
	}
	var wg sync.WaitGroup
	outBuf, errBuf := &tail{max: a.cfg.MaxOutput}, &tail{max: a.cfg.MaxOutput}
	wg.Add(2)
	go func() { defer wg.Done(); a.capture(j, stdout, outBuf, core0.LevelStdout) }()
	go func() { defer wg.Done(); a.capture(j, stderr, errBuf, core0.LevelStderr) }()
	stop := context.AfterFunc(ctx, func() { killGroup(cmd.Process.Pid) })
	wg.Wait()
	err = cmd.Wait()
	stop()
	// The group may outlive its leader (a backgrounded child): end it too.
	killGroup(cmd.Process.Pid)
	j.mu.Lock()
	j.pid = 0
	j.mu.Unlock()
	out := output{stdout: outBuf.String(), stderr: errBuf.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
		out.code = core0.ExitCodeBase
		return out, nil
	case errors.As(err, &ee):
		ws, _ := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			out.code = core0.ExitCodeBase + 128 + int(ws.Signal())
			out.state = core0.StateKilled
			out.data = fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
			return out, nil
		}
		out.code = core0.ExitCodeBase + ee.ExitCode()
		out.state = core0.StateError
		return out, nil
	}
	return out, err
}

// capture copies one output stream into buf and, line by line, to the
// job's stream and subscribers. Lines longer than 64 KiB are split.
func (a *Agent) capture(j *job, r io.Reader, buf *tail, level int) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			buf.Write(line)
			a.jobs.line(j, level, strings.TrimSuffix(string(line), "\n"))
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return
		}
	}
}

// tail keeps the last max bytes written to it and counts what it dropped.
type tail struct {
	max     int
	buf     []byte
	dropped int64
}

func (t *tail) Write(p []byte) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 && len(t.buf) > 2*t.max {
		t.dropped += int64(over)
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
}

func (t *tail) String() string {
	b := t.buf
	dropped := t.dropped
	if over := len(b) - t.max; over > 0 {
		dropped += int64(over)
		b = b[over:]
	}
	if dropped > 0 {
		return fmt.Sprintf("[crowbar agent: %d earlier bytes dropped; the last %d are kept]\n", dropped, len(b)) + string(b)
	}
	return string(b)
}

// killGroup sends SIGKILL to the process group led by pid.
func killGroup(pid int) {
	if pid > 0 {
		syscall.Kill(-pid, syscall.SIGKILL) //nolint:errcheck
	}
}

type jobRef struct {
	ID     string `json:"id"`
	Signal *int   `json:"signal"`
}

func cmdKill(_ context.Context, j *job) (output, error) {
	var a jobRef
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	target := j.a().jobs.get(a.ID)
	if target == nil {
		return output{}, notFound("core.kill: no running job %q", a.ID)
	}
	target.kill(core0.StateKilled)
	awaitEnd(target)
	return jsonOut(true)
}

// awaitEnd waits a little for a killed job to end, so whoever killed it
// reads its final result next, not RUNNING.
func awaitEnd(j *job) {
	select {
	case <-j.done:
	case <-time.After(5 * time.Second):
	}
}

func cmdKillAll(_ context.Context, j *job) (output, error) {
	return jsonOut(j.a().jobs.killAll(j.cmd.ID))
}

// cmdJobKill signals a job's process group (default SIGTERM); a job that
// runs no process is ended.
func cmdJobKill(_ context.Context, j *job) (output, error) {
	var a jobRef
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	target := j.a().jobs.get(a.ID)
	if target == nil {
		return output{}, notFound("job.kill: no running job %q", a.ID)
	}
	sig := syscall.SIGTERM
	if a.Signal != nil {
		if *a.Signal < 1 || *a.Signal > 64 {
			return output{}, badRequest("job.kill: signal %d is not a signal", *a.Signal)
		}
		sig = syscall.Signal(*a.Signal)
	}
	target.mu.Lock()
	pid := target.pid
	if target.ending == "" && (sig == syscall.SIGKILL || sig == syscall.SIGTERM || sig == syscall.SIGINT) {
		target.ending = core0.StateKilled
	}
	target.unscheduled = true
	target.mu.Unlock()
	if pid > 0 {
		if err := syscall.Kill(-pid, sig); err != nil {
			return output{}, fmt.Errorf("job.kill: signal job %s: %v", a.ID, err)
		}
	} else {
		target.cancel()
	}
	if sig == syscall.SIGKILL {
		awaitEnd(target)
	}
	return jsonOut(true)
}

func cmdUnschedule(_ context.Context, j *job) (output, error) {
	var a jobRef
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	target := j.a().jobs.get(a.ID)
	if target == nil {
		return output{}, notFound("job.unschedule: no running job %q", a.ID)
	}
	target.mu.Lock()
	target.unscheduled = true
	target.mu.Unlock()
	return jsonOut(true)
}

// cmdJobList answers the running jobs (one, with an id).
func cmdJobList(_ context.Context, j *job) (output, error) {
	var a struct {
		ID *string `json:"id"`
	}
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	var out []core0.Job
	for _, r := range j.a().jobs.list() {
		if a.ID != nil && *a.ID != "" && r.cmd.ID != *a.ID {
			continue
		}
		r.mu.Lock()
		pid := r.pid
		r.mu.Unlock()
		item := core0.Job{Command: r.cmd, PID: int32(pid), StartTime: r.start.UnixMilli()}
		if pid > 0 {
			if p, ok := processInfo(int32(pid)); ok {
				item.CPU, item.RSS, item.VMS, item.Swap = p.CPU.User+p.CPU.System, p.RSS, p.VMS, p.Swap
			}
		}
		out = append(out, item)
	}
	if a.ID != nil && *a.ID != "" && len(out) == 0 {
		return output{}, notFound("job.list: no running job %q", *a.ID)
	}
	sort.Slice(out, func(x, y int) bool { return out[x].StartTime < out[y].StartTime })
	if out == nil {
		out = []core0.Job{}
	}
	return jsonOut(out)
}

// cmdSubscribe copies another job's stream to this job's stream until that
// job ends.
func cmdSubscribe(ctx context.Context, j *job) (output, error) {
	var a jobRef
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	target := j.a().jobs.get(a.ID)
	if target == nil {
		return output{}, notFound("core.subscribe: no running job %q", a.ID)
	}
	j.noEOF = true
	target.mu.Lock()
	target.subscribers = append(target.subscribers, core0.StreamKey(j.cmd.ID))
	target.mu.Unlock()
	select {
	case <-target.done:
	case <-ctx.Done():
		return output{}, ctx.Err()
	}
	return jsonOut(true)
}

// cmdReboot answers, then runs the reboot command a moment later so the
// result can be read first.
func cmdReboot(_ context.Context, j *job) (output, error) {
	a := j.a()
	argv := a.cfg.RebootCommand
	a.log.Warn("core.reboot: rebooting", "command", strings.Join(argv, " "))
	go func() {
		time.Sleep(500 * time.Millisecond)
		cmd := exec.Command(argv[0], argv[1:]...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			a.log.Error("core.reboot: the reboot command failed", "command", strings.Join(argv, " "), "error", err, "output", out.String())
		}
	}()
	return jsonOut(true)
}
