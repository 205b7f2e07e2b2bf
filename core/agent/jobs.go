package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/crowbar-go/crowbar/core/core0"
)

// jobs runs the commands pushed to the agent: each in its own goroutine,
// or one after another when they name the same queue.
type jobs struct {
	a       *Agent
	mu      sync.Mutex
	running map[string]*job
	queues  map[string][]*job // waiting, per named queue; present while its runner runs
	wg      sync.WaitGroup
}

// job is one accepted command while it runs.
type job struct {
	cmd     core0.Command
	start   time.Time
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	handler handler
	owner   *Agent

	mu          sync.Mutex
	pid         int
	ending      core0.State // KILLED or TIMEOUT when the agent ended it
	unscheduled bool
	subscribers []string // stream keys that get a copy of every line
	noEOF       bool     // core.subscribe: the copied stream carries the end
}

func newJobs(a *Agent) *jobs {
	return &jobs{a: a, running: map[string]*job{}, queues: map[string][]*job{}}
}

var idInJSON = regexp.MustCompile(`"id"\s*:\s*"([^"\\]{1,200})"`)

// readCommand decodes a pushed command. One that cannot be read yields
// the id it names, if any, so that it can be answered under that id.
func readCommand(raw []byte) (cmd core0.Command, id string, err error) {
	if err := json.Unmarshal(raw, &cmd); err != nil {
		m := idInJSON.FindSubmatch(raw)
		if m == nil {
			return cmd, "", fmt.Errorf("the command is not valid JSON and names no id: %v", err)
		}
		return cmd, string(m[1]), fmt.Errorf("the command is not valid JSON: %v", err)
	}
	if cmd.ID == "" {
		return cmd, "", errors.New("the command has no id")
	}
	return cmd, cmd.ID, nil
}

// submit accepts one pushed command. A command that cannot be read but
// names an id gets an ERROR result under that id; one that names none is
// refused to the pusher.
func (js *jobs) submit(raw []byte) error {
	cmd, id, err := readCommand(raw)
	if err != nil {
		if id == "" {
			return err
		}
		js.a.log.Warn("malformed command", "id", id, "error", err)
		js.refuse(core0.Command{ID: id}, core0.StateError, core0.CodeBadRequest, err.Error())
		return nil
	}
	js.mu.Lock()
	if _, ok := js.running[cmd.ID]; ok {
		js.mu.Unlock()
		js.a.log.Warn("duplicate job id while the job runs: dropped", "id", cmd.ID, "command", cmd.Command)
		return nil
	}
	if js.a.lists.exists(core0.FlagKey(cmd.ID)) {
		js.mu.Unlock()
		js.a.log.Warn("duplicate job id: dropped", "id", cmd.ID, "command", cmd.Command)
		js.refuse(cmd, core0.StateDuplicateID, core0.CodeConflict, fmt.Sprintf("job id %s is already known: the command was not run", cmd.ID))
		return nil
	}
	h, ok := commands[cmd.Command]
	if !ok {
		js.mu.Unlock()
		js.refuse(cmd, core0.StateUnknownCmd, core0.CodeUnknown, fmt.Sprintf("unknown command '%s'", cmd.Command))
		return nil
	}
	j := &job{cmd: cmd, start: time.Now(), done: make(chan struct{}), handler: h, owner: js.a}
	j.ctx, j.cancel = context.WithCancel(js.a.ctx)
	js.running[cmd.ID] = j
	js.wg.Add(1)
	// The flag tells the pusher the job was accepted; it lives as long as
	// the result once the job ends.
	js.a.lists.push(core0.FlagKey(cmd.ID), 0, []byte(cmd.ID))
	if cmd.Queue == "" {
		js.mu.Unlock()
		go js.run(j)
		return nil
	}
	waiting, active := js.queues[cmd.Queue]
	js.queues[cmd.Queue] = append(waiting, j)
	js.mu.Unlock()
	if !active {
		go js.drain(cmd.Queue)
	}
	return nil
}

// drain runs queue's jobs one after another until it is empty.
func (js *jobs) drain(queue string) {
	for {
		js.mu.Lock()
		q := js.queues[queue]
		if len(q) == 0 {
			delete(js.queues, queue)
			js.mu.Unlock()
			return
		}
		j := q[0]
		js.queues[queue] = q[1:]
		js.mu.Unlock()
		js.run(j)
	}
}

// refuse answers a command that will not run, with the flag and the result
// the client's handshake and read expect.
func (js *jobs) refuse(cmd core0.Command, state core0.State, code int, msg string) {
	now := time.Now()
	r := core0.Result{ID: cmd.ID, Command: cmd.Command, Data: msg, Streams: []string{"", ""}, State: state,
		Code: code, StartTime: now.UnixMilli(), Tags: cmd.Tags}
	b, _ := json.Marshal(r)
	flag := core0.FlagKey(cmd.ID)
	if !js.a.lists.exists(flag) {
		js.a.lists.push(flag, 0, []byte(cmd.ID))
	}
	js.a.lists.set(core0.ResultKey(cmd.ID), b)
	js.a.lists.expire(flag, js.a.cfg.ResultTTL)
	js.a.lists.expire(core0.ResultKey(cmd.ID), js.a.cfg.ResultTTL)
}

// run runs j (again and again for a recurring job) and publishes its result.
func (js *jobs) run(j *job) {
	defer js.wg.Done()
	defer close(j.done)
	defer func() {
		js.mu.Lock()
		delete(js.running, j.cmd.ID)
		js.mu.Unlock()
	}()
	var r *core0.Result
	for {
		r = js.once(j)
		period := time.Duration(j.cmd.RecurringPeriod) * time.Second
		j.mu.Lock()
		stop := period <= 0 || j.unscheduled || j.ending != "" || j.ctx.Err() != nil
		j.mu.Unlock()
		if stop {
			break
		}
		// Each run's result is readable while the next waits.
		js.publish(j, r, false)
		select {
		case <-time.After(period):
		case <-j.ctx.Done():
		}
		j.mu.Lock()
		stop = j.unscheduled || j.ending != "" || j.ctx.Err() != nil
		j.mu.Unlock()
		if stop {
			break
		}
	}
	// The id stops counting as running as its result appears, atomically
	// for submit: a duplicate pushed once the result can be read is
	// answered DUPLICATE_ID, never dropped as if the job still ran.
	js.mu.Lock()
	delete(js.running, j.cmd.ID)
	js.publish(j, r, true)
	js.mu.Unlock()
	j.cancel()
}

// once runs j's handler one time, within max_time.
func (js *jobs) once(j *job) *core0.Result {
	start := time.Now()
	ctx := j.ctx
	var cancel context.CancelFunc = func() {}
	if j.cmd.MaxTime > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(j.cmd.MaxTime)*time.Second)
	}
	out, err := func() (res output, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("the agent failed running %s: %v", j.cmd.Command, p)
				js.a.log.Error("job panicked", "id", j.cmd.ID, "command", j.cmd.Command, "panic", p)
			}
		}()
		return j.handler(ctx, j)
	}()
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded) && j.ctx.Err() == nil
	cancel()
	r := &core0.Result{ID: j.cmd.ID, Command: j.cmd.Command, StartTime: start.UnixMilli(),
		Time: time.Since(start).Milliseconds(), Tags: j.cmd.Tags, Data: out.data, Level: out.level,
		Streams: []string{out.stdout, out.stderr}, Code: out.code, State: out.state, Container: js.a.cfg.container}
	j.mu.Lock()
	ending := j.ending
	j.mu.Unlock()
	switch {
	case timedOut:
		r.State, r.Code = core0.StateTimeout, core0.CodeTimeout
		if r.Data == "" {
			r.Data = fmt.Sprintf("the job ran past its max_time of %d s and was killed", j.cmd.MaxTime)
		}
	case ending != "":
		r.State = ending
		if r.Data == "" {
			r.Data = "the job was killed"
		}
	case err != nil:
		r.State = core0.StateError
		var ce *cmdError
		if errors.As(err, &ce) {
			r.Code = ce.code
		} else if r.Code == 0 {
			r.Code = core0.CodeServerError
		}
		if r.Data == "" {
			r.Data = err.Error()
		}
	case r.State == "":
		r.State = core0.StateSuccess
		if r.Code == 0 {
			r.Code = core0.CodeOK
		}
	}
	return r
}

// publish stores r as j's result; final results start the expiry clock
// and end the stream.
func (js *jobs) publish(j *job, r *core0.Result, final bool) {
	b, err := json.Marshal(r)
	if err != nil {
		b, _ = json.Marshal(core0.Result{ID: r.ID, Command: r.Command, State: core0.StateError,
			Code: core0.CodeServerError, Data: "the result could not be encoded: " + err.Error()})
	}
	js.a.lists.set(core0.ResultKey(j.cmd.ID), b)
	if !final {
		return
	}
	if j.cmd.Stream && !j.noEOF {
		js.pushLine(core0.StreamKey(j.cmd.ID), j, core0.LevelStdout, "", eofFlag(r))
	}
	j.mu.Lock()
	subs := j.subscribers
	j.subscribers = nil
	j.mu.Unlock()
	for _, key := range subs {
		js.pushLine(key, j, core0.LevelStdout, "", eofFlag(r))
	}
	ttl := js.a.cfg.ResultTTL
	for _, k := range []string{core0.FlagKey(j.cmd.ID), core0.ResultKey(j.cmd.ID), core0.StreamKey(j.cmd.ID)} {
		js.a.lists.expire(k, ttl)
	}
}

func eofFlag(r *core0.Result) uint32 {
	if r.State == core0.StateSuccess {
		return core0.FlagEOFOK
	}
	return core0.FlagEOFFailed
}

// line sends one output line of j to its stream (when it streams) and to
// its subscribers.
func (js *jobs) line(j *job, level int, text string) {
	if j.cmd.Stream {
		js.pushLine(core0.StreamKey(j.cmd.ID), j, level, text, 0)
	}
	j.mu.Lock()
	subs := append([]string(nil), j.subscribers...)
	j.mu.Unlock()
	for _, key := range subs {
		js.pushLine(key, j, level, text, 0)
	}
}

func (js *jobs) pushLine(key string, j *job, level int, text string, flags uint32) {
	b, _ := json.Marshal(core0.StreamLine{Command: j.cmd.ID, Message: core0.StreamMessage{
		Message: text, Epoch: time.Now().UnixNano(), Meta: uint32(level)<<16 | flags}})
	js.a.lists.push(key, js.a.cfg.MaxStreamLines, b)
}

// get returns the running job id.
func (js *jobs) get(id string) *job {
	js.mu.Lock()
	defer js.mu.Unlock()
	return js.running[id]
}

// list returns the running jobs.
func (js *jobs) list() []*job {
	js.mu.Lock()
	defer js.mu.Unlock()
	out := make([]*job, 0, len(js.running))
	for _, j := range js.running {
		out = append(out, j)
	}
	return out
}

// kill ends job j: its process group gets SIGKILL and its result says KILLED.
func (j *job) kill(state core0.State) {
	j.mu.Lock()
	if j.ending == "" {
		j.ending = state
	}
	pid := j.pid
	j.mu.Unlock()
	if pid > 0 {
		killGroup(pid)
	}
	j.cancel()
}

// killAll kills every running job but except; wait for them with wait.
func (js *jobs) killAll(except string) int {
	n := 0
	for _, j := range js.list() {
		if j.cmd.ID == except {
			continue
		}
		j.kill(core0.StateKilled)
		n++
	}
	return n
}

// wait waits up to d for running jobs to finish.
func (js *jobs) wait(d time.Duration) {
	done := make(chan struct{})
	go func() { js.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}
