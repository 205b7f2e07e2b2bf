package agent

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strconv"

	"github.com/crowbar-go/crowbar/core/core0"
)

// The corex.* commands: containers on this node.

func (j *job) containers() (*containers, error) {
	if cs := j.a().containers; cs != nil {
		select {
		case <-cs.adopted:
			return cs, nil
		case <-j.a().ctx.Done():
			return nil, errors.New("the agent is stopping")
		}
	}
	return nil, badRequest("%s: containers cannot be made inside a container", j.cmd.Command)
}

func cmdCorexCreate(ctx context.Context, j *job) (output, error) {
	cs, err := j.containers()
	if err != nil {
		return output{}, err
	}
	var a CreateArgs
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	id, err := cs.create(ctx, a, j.cmd.Tags)
	if err != nil {
		return output{}, err
	}
	return jsonOut(id)
}

func cmdCorexList(_ context.Context, j *job) (output, error) {
	cs, err := j.containers()
	if err != nil {
		return output{}, err
	}
	out := map[string]any{}
	for _, c := range cs.all() {
		out[strconv.Itoa(c.ID)] = cs.info(c)
	}
	return jsonOut(out)
}

func cmdCorexGet(_ context.Context, j *job) (output, error) {
	cs, err := j.containers()
	if err != nil {
		return output{}, err
	}
	var a struct {
		Query json.RawMessage `json:"query"`
	}
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	var q string
	if json.Unmarshal(a.Query, &q) != nil {
		var n int
		if json.Unmarshal(a.Query, &n) != nil {
			return output{}, badRequest("corex.get: query must be a container id or name")
		}
		q = strconv.Itoa(n)
	}
	c, err := cs.find(q)
	if err != nil {
		return output{}, err
	}
	return jsonOut(cs.info(c))
}

// cmdCorexFind answers the containers that carry every tag given.
func cmdCorexFind(_ context.Context, j *job) (output, error) {
	cs, err := j.containers()
	if err != nil {
		return output{}, err
	}
	var a struct {
		Tags []string `json:"tags"`
	}
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	out := map[string]any{}
	for _, c := range cs.all() {
		have := map[string]bool{}
		for _, t := range c.Args.Tags {
			have[t] = true
		}
		all := true
		for _, t := range a.Tags {
			all = all && have[t]
		}
		if all {
			out[strconv.Itoa(c.ID)] = cs.info(c)
		}
	}
	return jsonOut(out)
}

func containerArg(j *job) (*containers, *container, error) {
	cs, err := j.containers()
	if err != nil {
		return nil, nil, err
	}
	var a struct {
		Container json.RawMessage `json:"container"`
	}
	if err := args(j, &a); err != nil {
		return nil, nil, err
	}
	var id int
	if err := json.Unmarshal(a.Container, &id); err != nil || id <= 0 {
		return nil, nil, badRequest("%s: container must be a container id", j.cmd.Command)
	}
	c, err := cs.find(strconv.Itoa(id))
	return cs, c, err
}

func cmdCorexTerminate(_ context.Context, j *job) (output, error) {
	cs, c, err := containerArg(j)
	if err != nil {
		return output{}, err
	}
	cs.destroy(c)
	return jsonOut(true)
}

// cmdCorexDispatch sends a command into a container and answers its job
// id; the caller reads its result from this node, as for any job.
func cmdCorexDispatch(_ context.Context, j *job) (output, error) {
	cs, c, err := containerArg(j)
	if err != nil {
		return output{}, err
	}
	var a struct {
		Command core0.Command `json:"command"`
	}
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	if a.Command.Command == "" {
		return output{}, badRequest("corex.dispatch: command.command is required")
	}
	if _, ok := commands[a.Command.Command]; !ok {
		return output{}, &cmdError{code: core0.CodeUnknown, msg: "corex.dispatch: unknown command '" + a.Command.Command + "'"}
	}
	id, err := cs.dispatch(c, a.Command)
	if err != nil {
		return output{}, err
	}
	return jsonOut(id)
}

// containerIDs lists the ids, for messages.
func (cs *containers) ids() []int {
	var out []int
	for _, c := range cs.all() {
		out = append(out, c.ID)
	}
	sort.Ints(out)
	return out
}
