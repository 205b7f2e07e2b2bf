package nodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/model"
	"gorm.io/gorm"
)

// Origin is on whose behalf a barclamp commands a node: a user calling one
// of its HTTP routes, or the annealer or a notification calling its hooks.
type Origin struct {
	Barclamp string
	// Caller is the user of an HTTP route; nil for hooks.
	Caller *auth.Caller
}

// readOnly lists the commands that change nothing on a node: any role may
// send them from an HTTP route. Everything else needs operator or admin.
var readOnly = map[string]bool{
	"core.ping": true, "core.state": true, "job.list": true, "process.list": true,
	"info.cpu": true, "info.mem": true, "info.disk": true, "info.nic": true, "info.os": true,
	"info.port": true, "info.version": true, "corex.list": true, "corex.get": true, "corex.find": true,
	"filesystem.exists": true, "filesystem.list": true,
}

// ReadOnly reports whether command changes nothing on a node. A dispatch
// into a container is read-only when the dispatched command is.
func ReadOnly(cmd core0.Command) bool {
	if cmd.Command == "corex.dispatch" {
		inner, err := dispatched(cmd)
		return err == nil && readOnly[inner]
	}
	return readOnly[cmd.Command]
}

func dispatched(cmd core0.Command) (string, error) {
	var a struct {
		Command struct {
			Command string `json:"command"`
		} `json:"command"`
	}
	if err := json.Unmarshal(cmd.Arguments, &a); err != nil {
		return "", err
	}
	return a.Command.Command, nil
}

// FindNode finds a node by id, name or Zero-OS id (its MAC without colons).
func (s *Service) FindNode(ctx context.Context, key string) (*model.Node, error) {
	db := s.st.WithContext(ctx)
	if len(key) == 12 && strings.Trim(strings.ToLower(key), "0123456789abcdef") == "" {
		var na model.NodeAgent
		err := db.Where("zero_os_id = ?", strings.ToLower(key)).Take(&na).Error
		if err == nil {
			var n model.Node
			return &n, db.Where("id = ?", na.NodeID).Take(&n).Error
		}
		if !errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, err
		}
	}
	var n model.Node
	q := db.Where("name = ?", strings.ToLower(key))
	if id, err := parseID(key); err == nil {
		q = db.Where("id = ?", id)
	}
	err := q.Take(&n).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, &model.NotFoundError{Kind: "node", Key: key}
	}
	return &n, err
}

func parseID(s string) (int64, error) {
	var id int64
	_, err := fmt.Sscan(s, &id)
	if err != nil || fmt.Sprint(id) != s || id <= 0 {
		return 0, errors.New("not an id")
	}
	return id, nil
}

// Permit checks that origin may send cmd to node: from a route, reading
// needs any role and anything else operator or admin; from a hook, the
// node must be in a deployment where the barclamp is enabled.
func (s *Service) Permit(ctx context.Context, origin Origin, node *model.Node, cmd core0.Command) error {
	if origin.Caller != nil {
		if ReadOnly(cmd) || origin.Caller.Role == auth.RoleAdmin || origin.Caller.Role == auth.RoleOperator {
			return nil
		}
		return &auth.Error{Kind: auth.Forbidden, User: origin.Caller.Username,
			Message: fmt.Sprintf("user %q has the %s role, which may not send %s to node %s: that needs operator or admin",
				origin.Caller.Username, origin.Caller.Role, commandName(cmd), node.Name)}
	}
	var n int64
	err := s.st.WithContext(ctx).Table("deployment_barclamps").
		Joins("JOIN barclamps ON barclamps.id = deployment_barclamps.barclamp_id").
		Where("barclamps.name = ? AND deployment_barclamps.deployment_id = ?", origin.Barclamp, node.DeploymentID).
		Count(&n).Error
	if err != nil {
		return err
	}
	if n == 0 {
		return &auth.Error{Kind: auth.Forbidden, Message: fmt.Sprintf(
			"barclamp %s is not enabled in the deployment of node %s, so its hooks may not command that node", origin.Barclamp, node.Name)}
	}
	return nil
}

func commandName(cmd core0.Command) string {
	if cmd.Command == "corex.dispatch" {
		if inner, err := dispatched(cmd); err == nil && inner != "" {
			return inner + " (in a container)"
		}
	}
	return cmd.Command
}

// Call is one command for a node, as a barclamp asks for it.
type Call struct {
	Node    string        // id, name or Zero-OS id
	Command core0.Command // Command.ID may be empty
	// Container, when not 0, runs the command inside that container of the
	// node (corex.dispatch), its result read from the node.
	Container int
	// Wait bounds the whole call (default 30 s, at most 10 minutes).
	Wait time.Duration
	// NoWait answers once the node accepted the job: the result carries
	// only its id.
	NoWait bool
	// ResultOf, when set, sends nothing: it reads the result of that job
	// (state RUNNING while it runs, an UnknownJob error when the node does
	// not know it). Reading needs any role.
	ResultOf string
}

// Command sends call's command on origin's behalf and waits for its result
// until ctx ends or call.Wait passes. Failures are typed:
// *model.NotFoundError (no such node), *model.ConflictError (no agent),
// *auth.Error (Forbidden), *core0.Error (the node's answer or silence).
// A result that is not SUCCESS is returned with a JobFailed error.
func (s *Service) Command(ctx context.Context, t *Transport, origin Origin, call Call) (*core0.Result, error) {
	node, err := s.FindNode(ctx, call.Node)
	if err != nil {
		return nil, err
	}
	if call.ResultOf != "" {
		return s.resultOf(ctx, t, origin, node, call)
	}
	cmd := call.Command
	if len(cmd.Arguments) == 0 {
		cmd.Arguments = json.RawMessage("{}")
	}
	if call.Container != 0 {
		wrapped, err := json.Marshal(map[string]any{"container": call.Container, "command": cmd})
		if err != nil {
			return nil, err
		}
		cmd = core0.Command{Command: "corex.dispatch", Arguments: wrapped}
	}
	if err := s.Permit(ctx, origin, node, cmd); err != nil {
		return nil, err
	}
	c, err := t.Client(ctx, node)
	if err != nil {
		var nf *model.NotFoundError
		if errors.As(err, &nf) {
			return nil, model.Conflict("node %s has no agent: it never joined", node.Name)
		}
		return nil, err
	}
	wait := call.Wait
	if wait <= 0 || wait > 10*time.Minute {
		wait = 30 * time.Second
	}
	// Within the caller's own deadline (a barclamp call's), leaving it time
	// to answer the timeout.
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d) - time.Second; left < wait {
			wait = max(left, 100*time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if call.Container != 0 {
		// The dispatch answers the inner job's id; its result is the call's.
		var id string
		if err := c.JSON(ctx, cmd.Command, json.RawMessage(cmd.Arguments), &id); err != nil {
			return nil, err
		}
		if call.NoWait {
			return &core0.Result{ID: id, Command: call.Command.Command, Container: call.Container}, nil
		}
		return finished(c, ctx, id)
	}
	id, err := c.Push(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if call.NoWait {
		return &core0.Result{ID: id, Command: cmd.Command}, nil
	}
	return finished(c, ctx, id)
}

// finished waits for job id's result; one that is not SUCCESS comes with a
// JobFailed error carrying it.
func finished(c *core0.Client, ctx context.Context, id string) (*core0.Result, error) {
	r, err := c.Result(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.State != core0.StateSuccess {
		msg := r.Data
		if msg == "" {
			msg = r.Stderr()
		}
		return r, &core0.Error{Node: c.Node(), Kind: core0.JobFailed, Op: r.Command, Result: r,
			Err: fmt.Errorf("%s (code %d): %s", r.State, r.Code, strings.TrimSpace(msg))}
	}
	return r, nil
}

// StateRunning is the state resultOf reports for a job still running.
const StateRunning core0.State = "RUNNING"

func (s *Service) resultOf(ctx context.Context, t *Transport, origin Origin, node *model.Node, call Call) (*core0.Result, error) {
	if err := s.Permit(ctx, origin, node, core0.Command{Command: "job.list"}); err != nil {
		return nil, err
	}
	c, err := t.Client(ctx, node)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	running, err := c.Running(ctx, call.ResultOf)
	if err != nil {
		return nil, err
	}
	if running {
		return &core0.Result{ID: call.ResultOf, State: StateRunning}, nil
	}
	return c.Result(ctx, call.ResultOf)
}
