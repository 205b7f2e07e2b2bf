package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/nodes"
)

// NodeCommander sends core0 commands to nodes after checking who may; the
// api package implements it over core/nodes.
type NodeCommander interface {
	NodeCommand(ctx context.Context, origin nodes.Origin, call nodes.Call) (*core0.Result, error)
}

// SetNodes gives the host the node commander (the server is built after
// the host).
func (h *Host) SetNodes(n NodeCommander) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nodes = n
}

func (h *Host) nodeCommander() NodeCommander {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.nodes
}

type nodeRequest struct {
	Node      string          `json:"node"`
	Command   string          `json:"command"`
	Arguments json.RawMessage `json:"arguments"`
	Container int             `json:"container"`
	TimeoutMS int64           `json:"timeout_ms"`
	NoWait    bool            `json:"no_wait"`
	Queue     string          `json:"queue"`
	MaxTime   int             `json:"max_time"`
	ResultOf  string          `json:"result_of"`
}

type nodeAnswer struct {
	Result *core0.Result `json:"result,omitempty"`
	Status int           `json:"status,omitempty"`
	Error  string        `json:"error,omitempty"`
}

// hostNode sends a core0 command to a node on behalf of the call's origin:
// the user of an HTTP route (an open route may command no node), or the
// hook's barclamp. The host, never the guest, decides who may.
func (h *Host) hostNode(ctx context.Context, req []byte) any {
	var r nodeRequest
	if err := json.Unmarshal(req, &r); err != nil {
		return nodeAnswer{Status: http.StatusBadRequest, Error: "malformed node request: " + err.Error()}
	}
	if r.Node == "" || (r.Command == "" && r.ResultOf == "") {
		return nodeAnswer{Status: http.StatusBadRequest, Error: "a node request names a node and a command (or result_of)"}
	}
	nc := h.nodeCommander()
	if nc == nil {
		return nodeAnswer{Status: http.StatusServiceUnavailable, Error: "node commands are not available in this server"}
	}
	ci := info(ctx)
	origin := nodes.Origin{Barclamp: ci.barclamp}
	if ci.kind == "http" {
		origin.Caller = auth.CallerFrom(ctx)
		if origin.Caller == nil {
			return nodeAnswer{Status: http.StatusForbidden, Error: "an open route may not command nodes: its callers are not authenticated"}
		}
	}
	call := nodes.Call{Node: r.Node, Container: r.Container, Wait: time.Duration(r.TimeoutMS) * time.Millisecond, NoWait: r.NoWait, ResultOf: r.ResultOf,
		Command: core0.Command{Command: r.Command, Arguments: r.Arguments, Queue: r.Queue, MaxTime: r.MaxTime}}
	res, err := nc.NodeCommand(ctx, origin, call)
	if err != nil {
		return nodeAnswer{Result: res, Status: nodeStatus(err), Error: err.Error()}
	}
	return nodeAnswer{Result: res}
}

// nodeStatus is the HTTP status a route should answer a failed node
// command with.
func nodeStatus(err error) int {
	var (
		ce *core0.Error
		cf *model.ConflictError
		ve *model.ValidationError
	)
	if ae, ok := auth.AsError(err); ok && ae.Kind == auth.Forbidden {
		return http.StatusForbidden
	}
	switch {
	case errors.Is(err, model.ErrNotFound):
		return http.StatusNotFound
	case errors.As(err, &cf):
		return http.StatusConflict
	case errors.As(err, &ve):
		return http.StatusUnprocessableEntity
	case errors.As(err, &ce) && ce.Kind == core0.Timeout:
		return http.StatusGatewayTimeout
	case errors.As(err, &ce) && ce.Kind == core0.UnknownJob:
		return http.StatusNotFound
	case errors.As(err, &ce):
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}
