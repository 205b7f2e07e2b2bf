package nodes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crowbar-go/crowbar/core/anneal"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/model"
)

// maxRunlog bounds what a script leaves in its node-role's run log (the
// last bytes are kept).
const maxRunlog = 64 << 10

// progressEvery is how often a running script's output reaches the run log.
const progressEvery = 500 * time.Millisecond

// ScriptJig runs a role's script on its node through the node's agent:
// OpenCrowbar's script jig over core0 instead of ssh. The script gets the
// merged attribs as JSON on stdin and in the file $CROWBAR_ATTRIBS; JSON it
// writes to $CROWBAR_WALL becomes the node-role's wall data; exit 0 is
// ACTIVE, anything else ERROR with the exit code. Its output reaches the
// run log while it runs.
func ScriptJig(t *Transport) anneal.Jig {
	return func(ctx context.Context, w *anneal.Work) (*barclamp.HookResult, error) {
		if strings.TrimSpace(w.Role.Script) == "" {
			return failedRun("role %s uses the script jig but has no script", w.Role.Name), nil
		}
		c, err := t.Client(ctx, &w.Node)
		var nf *model.NotFoundError
		if errors.As(err, &nf) {
			return failedRun("node %s has no agent (it never joined), so the script of role %s cannot run there", w.Node.Name, w.Role.Name), nil
		}
		if err != nil {
			return nil, err
		}
		marker, err := nonce()
		if err != nil {
			return nil, err
		}
		args, _ := json.Marshal(core0.BashArgs{Script: wrapper(w, marker), Stdin: string(w.Attribs)})
		id, err := c.Push(ctx, core0.Command{Command: "bash", Stream: true, Arguments: args, Tags: []string{"crowbar-script", w.Role.Name}})
		if err != nil {
			return failedRun("run the script of role %s on node %s: %v", w.Role.Name, w.Node.Name, err), nil
		}
		out := &runlog{marker: "crowbar-wall-" + marker + ":"}
		streamed := make(chan struct{})
		var whole atomic.Bool // the stream reached its end: out holds all the output
		sctx, stopStream := context.WithCancel(ctx)
		go func() {
			defer close(streamed)
			last := time.Now()
			c.Stream(sctx, id, func(m core0.StreamMessage) error { //nolint:errcheck // the result says how it ended
				if m.EOF() {
					whole.Store(true)
					return nil
				}
				out.add(m.Message)
				if w.Progress != nil && time.Since(last) >= progressEvery {
					last = time.Now()
					w.Progress(out.String())
				}
				return nil
			})
		}()
		r, err := c.Result(ctx, id)
		select {
		case <-streamed:
		case <-time.After(2 * time.Second):
		}
		stopStream()
		<-streamed
		if err != nil {
			return failedRun("%s\nthe script of role %s on node %s: %v", out.String(), w.Role.Name, w.Node.Name, err), nil
		}
		if !whole.Load() {
			// The stream was cut short or fell behind the result (seen on a
			// loaded machine: the last lines missing): the output the agent
			// captured is complete, stdout then stderr.
			out.replace(r.Stdout(), r.Stderr())
		}
		wall, werr := out.wall(r.Stdout())
		log := out.String()
		if r.State != core0.StateSuccess {
			why := fmt.Sprintf("the script exited with code %d", r.ExitCode())
			if r.ExitCode() < 0 {
				why = fmt.Sprintf("the script ended %s: %s", r.State, r.Data)
			}
			return failedRun("%s%s", withNewline(log), why), nil
		}
		if werr != nil {
			return failedRun("%s%v", withNewline(log), werr), nil
		}
		return &barclamp.HookResult{State: "active", Wall: wall, Runlog: log}, nil
	}
}

func failedRun(format string, args ...any) *barclamp.HookResult {
	msg := fmt.Sprintf(format, args...)
	return &barclamp.HookResult{State: "error", Runlog: msg}
}

func withNewline(s string) string {
	if s == "" || strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

func nonce() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// wrapper is the bash that sets up and runs a role's script: a private
// directory with the attribs and the script, the environment, then the
// wall file printed (newlines dropped: they are only whitespace in JSON)
// after a marker the jig looks for.
func wrapper(w *anneal.Work, marker string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `d=$(mktemp -d "${TMPDIR:-/tmp}/crowbar-script.XXXXXX") || exit 97
trap 'rm -rf "$d"' EXIT
cat > "$d/attribs.json"
cat > "$d/script" <<'CROWBAR_SCRIPT_%[1]s'
%[2]s
CROWBAR_SCRIPT_%[1]s
chmod 700 "$d/script"
export CROWBAR_ATTRIBS="$d/attribs.json" CROWBAR_WALL="$d/wall.json"
export CROWBAR_NODE='%[3]s' CROWBAR_ROLE='%[4]s' CROWBAR_NODE_ROLE='%[5]d' CROWBAR_DEPLOYMENT='%[6]s'
if [ "$(head -c 2 "$d/script")" = '#!' ]; then "$d/script" < "$d/attribs.json"; else bash "$d/script" < "$d/attribs.json"; fi
rc=$?
if [ -s "$d/wall.json" ]; then printf '\ncrowbar-wall-%[1]s:%%s\n' "$(tr -d '\n' < "$d/wall.json")"; fi
exit $rc
`, marker, strings.TrimSuffix(w.Role.Script, "\n"), shellSafe(w.Node.Name), shellSafe(w.Role.Name), w.NodeRole.ID, shellSafe(w.Deployment.Name))
	return b.String()
}

// shellSafe drops quotes from a name put between single quotes (names
// follow crowbar's rules and have none; this keeps it so).
func shellSafe(s string) string { return strings.ReplaceAll(s, "'", "") }

// runlog collects a script's output lines, keeping the last maxRunlog
// bytes, without the wall line.
type runlog struct {
	mu      sync.Mutex
	marker  string
	lines   []string
	size    int
	dropped int
}

func (l *runlog) add(line string) {
	if strings.HasPrefix(line, l.marker) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	l.size += len(line) + 1
	for l.size > maxRunlog && len(l.lines) > 1 {
		l.size -= len(l.lines[0]) + 1
		l.dropped += len(l.lines[0]) + 1
		l.lines = l.lines[1:]
	}
}

// replace sets the log to a script's captured output, stdout then stderr,
// dropping what was streamed.
func (l *runlog) replace(stdout, stderr string) {
	l.mu.Lock()
	l.lines, l.size, l.dropped = nil, 0, 0
	l.mu.Unlock()
	for _, captured := range []string{stdout, stderr} {
		if captured == "" {
			continue
		}
		for _, line := range strings.Split(strings.TrimSuffix(captured, "\n"), "\n") {
			l.add(line)
		}
	}
}

func (l *runlog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.lines, "\n")
	if l.dropped > 0 {
		s = fmt.Sprintf("[%d earlier bytes of output dropped]\n", l.dropped) + s
	}
	return s
}

// wall finds the wall line in the script's captured stdout.
func (l *runlog) wall(stdout string) (json.RawMessage, error) {
	i := strings.LastIndex(stdout, l.marker)
	if i < 0 {
		return nil, nil
	}
	line, _, _ := strings.Cut(stdout[i+len(l.marker):], "\n")
	var obj map[string]any
	if err := json.Unmarshal([]byte(line), &obj); err != nil {
		return nil, fmt.Errorf("the script wrote $CROWBAR_WALL, but not a JSON object: %v", err)
	}
	return json.RawMessage(line), nil
}
