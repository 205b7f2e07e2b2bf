//go:build wasip1

package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// NodeRef names a node (by id, name or Zero-OS id: its MAC without colons)
// to send core0 commands to, or a container of it. The host decides who
// may: from an HTTP route, reading needs any role and changing anything
// operator or admin (403 otherwise); from a hook, only nodes of deployments
// where the barclamp is enabled.
type NodeRef struct {
	key       string
	container int
	timeout   time.Duration
}

// Node returns a reference to the node named by key.
func Node(key string) NodeRef { return NodeRef{key: key} }

// Container narrows the reference to one of the node's containers: its
// commands run inside it.
func (n NodeRef) Container(id int) NodeRef { n.container = id; return n }

// Timeout bounds each call (default 30 s, at most 10 minutes).
func (n NodeRef) Timeout(d time.Duration) NodeRef { n.timeout = d; return n }

// NodeResult is a job's result, as core0 reports it.
type NodeResult struct {
	ID        string   `json:"id"`
	Command   string   `json:"command"`
	Data      string   `json:"data"`
	Streams   []string `json:"streams"`
	Level     int      `json:"level"`
	State     string   `json:"state"` // SUCCESS, ERROR, KILLED, TIMEOUT, UNKNOWN_CMD, DUPLICATE_ID
	Code      int      `json:"code"`  // 1000 + exit code for processes
	StartTime int64    `json:"starttime"`
	Time      int64    `json:"time"`
	Container int      `json:"container"`
}

// Stdout is the job's standard output.
func (r *NodeResult) Stdout() string {
	if len(r.Streams) > 0 {
		return r.Streams[0]
	}
	return ""
}

// Stderr is the job's standard error.
func (r *NodeResult) Stderr() string {
	if len(r.Streams) > 1 {
		return r.Streams[1]
	}
	return ""
}

// NodeError is a node command that did not succeed. Status says why, as
// an HTTP status a route may answer with: 403 not allowed, 404 no such
// node, 409 the node has no agent, 502 unreachable or the job failed
// (Result is then set), 504 no answer before the deadline.
type NodeError struct {
	Status  int
	Message string
	Result  *NodeResult
}

func (e *NodeError) Error() string { return e.Message }

// AsNodeError returns err as a *NodeError when it is one.
func AsNodeError(err error) (*NodeError, bool) {
	var ne *NodeError
	ok := errors.As(err, &ne)
	return ne, ok
}

type nodeRequest struct {
	Node      string          `json:"node"`
	Command   string          `json:"command"`
	Arguments json.RawMessage `json:"arguments"`
	Container int             `json:"container,omitempty"`
	TimeoutMS int64           `json:"timeout_ms,omitempty"`
	NoWait    bool            `json:"no_wait,omitempty"`
	Queue     string          `json:"queue,omitempty"`
	MaxTime   int             `json:"max_time,omitempty"`
	ResultOf  string          `json:"result_of,omitempty"`
}

type nodeAnswer struct {
	Result *NodeResult `json:"result"`
	Status int         `json:"status"`
	Error  string      `json:"error"`
}

func (n NodeRef) send(command string, args any, noWait bool) (*NodeResult, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	if args == nil {
		b = []byte("{}")
	}
	req := nodeRequest{Node: n.key, Command: command, Arguments: b, Container: n.container,
		TimeoutMS: n.timeout.Milliseconds(), NoWait: noWait}
	var ans nodeAnswer
	if err := callHost(hostNode, req, &ans); err != nil {
		return nil, err
	}
	if ans.Error != "" {
		return ans.Result, &NodeError{Status: ans.Status, Message: ans.Error, Result: ans.Result}
	}
	return ans.Result, nil
}

// Call sends command with args (marshalled to JSON) and waits for its
// result. A result that is not SUCCESS is returned with a *NodeError.
func (n NodeRef) Call(command string, args any) (*NodeResult, error) {
	return n.send(command, args, false)
}

// Start sends command and answers the job's id once the node accepted it,
// without waiting for the job (a process started to keep running; core0
// clients read its result from the node by that id).
func (n NodeRef) Start(command string, args any) (string, error) {
	r, err := n.send(command, args, true)
	if err != nil {
		return "", err
	}
	return r.ID, nil
}

// Result reads the result of job id on the node (or, with Container, a
// job dispatched into that container): State "RUNNING" while it runs; a
// *NodeError with Status 404 when the node does not know the job.
func (n NodeRef) Result(id string) (*NodeResult, error) {
	var ans nodeAnswer
	req := nodeRequest{Node: n.key, ResultOf: id, Arguments: json.RawMessage("{}"), TimeoutMS: n.timeout.Milliseconds()}
	if err := callHost(hostNode, req, &ans); err != nil {
		return nil, err
	}
	if ans.Error != "" {
		return ans.Result, &NodeError{Status: ans.Status, Message: ans.Error, Result: ans.Result}
	}
	return ans.Result, nil
}

// System runs a program with arguments (core.system) and waits for it.
func (n NodeRef) System(name string, args ...string) (*NodeResult, error) {
	if args == nil {
		args = []string{}
	}
	return n.Call("core.system", map[string]any{"name": name, "args": args})
}

// Bash runs a shell script and waits for it.
func (n NodeRef) Bash(script string) (*NodeResult, error) {
	return n.Call("bash", map[string]any{"script": script})
}

// JSON runs command and decodes its JSON data into out (which may be nil).
func (n NodeRef) JSON(command string, args, out any) error {
	r, err := n.Call(command, args)
	if err != nil {
		return err
	}
	if r.Level != 20 {
		return fmt.Errorf("%s answered data that is not JSON (level %d)", command, r.Level)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal([]byte(r.Data), out)
}
