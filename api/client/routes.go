package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

func esc(s string) string { return url.PathEscape(s) }

func (c *Client) object(ctx context.Context, method, path string, body any) (Object, error) {
	var out Object
	return out, c.Do(ctx, Request{Method: method, Path: path, Body: body}, &out)
}

func (c *Client) list(ctx context.Context, path string) ([]Object, error) {
	var out []Object
	return out, c.Do(ctx, Request{Method: "GET", Path: path}, &out)
}

// Health answers GET /health (no credentials needed).
func (c *Client) Health(ctx context.Context) (Object, error) {
	return c.object(ctx, "GET", "/health", nil)
}

// CreateToken answers POST /api/v2/tokens: a bearer token valid for
// validity seconds (at most 3600), minted with digest credentials.
func (c *Client) CreateToken(ctx context.Context, validity int) (Object, error) {
	return c.object(ctx, "POST", "/api/v2/tokens", Object{"validity": validity})
}

// Bind answers POST /api/v2/node_roles: role bound to node (names or ids)
// in the node's deployment, or in deployment when it is not "".
func (c *Client) Bind(ctx context.Context, role, node, deployment string) (Object, error) {
	body := Object{"role": role, "node": node}
	if deployment != "" {
		body["deployment"] = deployment
	}
	return c.object(ctx, "POST", "/api/v2/node_roles", body)
}

// UpdateNodeRole answers PUT /api/v2/node_roles/:id (proposed_data, or
// state with wall and runlog to complete a node-role in transition).
func (c *Client) UpdateNodeRole(ctx context.Context, id string, body Object) (Object, error) {
	return c.object(ctx, "PUT", "/api/v2/node_roles/"+esc(id), body)
}

// Unbind answers DELETE /api/v2/node_roles/:id.
func (c *Client) Unbind(ctx context.Context, id string) error {
	return c.Do(ctx, Request{Method: "DELETE", Path: "/api/v2/node_roles/" + esc(id)}, nil)
}

// RetryNodeRole answers PUT /api/v2/node_roles/:id/retry.
func (c *Client) RetryNodeRole(ctx context.Context, id string) (Object, error) {
	return c.object(ctx, "PUT", "/api/v2/node_roles/"+esc(id)+"/retry", nil)
}

// CommitNode answers PUT /api/v2/nodes/:id/commit.
func (c *Client) CommitNode(ctx context.Context, node string) (Object, error) {
	return c.object(ctx, "PUT", "/api/v2/nodes/"+esc(node)+"/commit", nil)
}

// NodeNodeRoles answers GET /api/v2/nodes/:id/node_roles.
func (c *Client) NodeNodeRoles(ctx context.Context, node string) ([]Object, error) {
	return c.list(ctx, "/api/v2/nodes/"+esc(node)+"/node_roles")
}

// NodeAttribs answers GET /api/v2/nodes/:id/attribs.
func (c *Client) NodeAttribs(ctx context.Context, node string) ([]Object, error) {
	return c.list(ctx, "/api/v2/nodes/"+esc(node)+"/attribs")
}

// NodeAttrib answers GET /api/v2/nodes/:id/attribs/:attrib.
func (c *Client) NodeAttrib(ctx context.Context, node, attrib string) (Object, error) {
	return c.object(ctx, "GET", "/api/v2/nodes/"+esc(node)+"/attribs/"+esc(attrib), nil)
}

// SetNodeAttrib answers PUT /api/v2/nodes/:id/attribs/:attrib with body
// {"value": …}.
func (c *Client) SetNodeAttrib(ctx context.Context, node, attrib string, body Object) (Object, error) {
	return c.object(ctx, "PUT", "/api/v2/nodes/"+esc(node)+"/attribs/"+esc(attrib), body)
}

// ProposeDeployment, CommitDeployment and RecallDeployment answer PUT
// /api/v2/deployments/:id/{propose,commit,recall}.
func (c *Client) ProposeDeployment(ctx context.Context, d string) (Object, error) {
	return c.object(ctx, "PUT", "/api/v2/deployments/"+esc(d)+"/propose", nil)
}

// CommitDeployment: see ProposeDeployment.
func (c *Client) CommitDeployment(ctx context.Context, d string) (Object, error) {
	return c.object(ctx, "PUT", "/api/v2/deployments/"+esc(d)+"/commit", nil)
}

// RecallDeployment: see ProposeDeployment.
func (c *Client) RecallDeployment(ctx context.Context, d string) (Object, error) {
	return c.object(ctx, "PUT", "/api/v2/deployments/"+esc(d)+"/recall", nil)
}

// DeploymentGraph answers GET /api/v2/deployments/:id/graph: JSON, or
// Graphviz DOT when dot is set.
func (c *Client) DeploymentGraph(ctx context.Context, d string, dot bool) ([]byte, error) {
	req := Request{Method: "GET", Path: "/api/v2/deployments/" + esc(d) + "/graph"}
	if dot {
		req.Query = url.Values{"format": {"dot"}}
	}
	var out []byte
	return out, c.Do(ctx, req, &out)
}

// DeploymentNodeRoles answers GET /api/v2/deployments/:id/node_roles.
func (c *Client) DeploymentNodeRoles(ctx context.Context, d string) ([]Object, error) {
	return c.list(ctx, "/api/v2/deployments/"+esc(d)+"/node_roles")
}

// DeploymentRoleList answers GET /api/v2/deployments/:id/roles.
func (c *Client) DeploymentRoleList(ctx context.Context, d string) ([]Object, error) {
	return c.list(ctx, "/api/v2/deployments/"+esc(d)+"/roles")
}

// DeploymentBarclamps answers GET /api/v2/deployments/:id/barclamps.
func (c *Client) DeploymentBarclamps(ctx context.Context, d string) ([]Object, error) {
	return c.list(ctx, "/api/v2/deployments/"+esc(d)+"/barclamps")
}

// EnableBarclamp answers PUT /api/v2/deployments/:id/barclamps/:name.
func (c *Client) EnableBarclamp(ctx context.Context, d, name string) error {
	return c.Do(ctx, Request{Method: "PUT", Path: "/api/v2/deployments/" + esc(d) + "/barclamps/" + esc(name)}, nil)
}

// DisableBarclamp answers DELETE /api/v2/deployments/:id/barclamps/:name.
func (c *Client) DisableBarclamp(ctx context.Context, d, name string) error {
	return c.Do(ctx, Request{Method: "DELETE", Path: "/api/v2/deployments/" + esc(d) + "/barclamps/" + esc(name)}, nil)
}

// InstallBarclamp answers POST /api/v2/barclamps with a module.
func (c *Client) InstallBarclamp(ctx context.Context, wasm []byte) (Object, error) {
	var out Object
	return out, c.Do(ctx, Request{Method: "POST", Path: "/api/v2/barclamps", Body: wasm,
		Header: http.Header{"Content-Type": {"application/wasm"}}}, &out)
}

// RemoveBarclamp answers DELETE /api/v2/barclamps/:id.
func (c *Client) RemoveBarclamp(ctx context.Context, name string) error {
	return c.Do(ctx, Request{Method: "DELETE", Path: "/api/v2/barclamps/" + esc(name)}, nil)
}

// GroupNodes answers GET /api/v2/groups/:id/nodes.
func (c *Client) GroupNodes(ctx context.Context, group string) ([]Object, error) {
	return c.list(ctx, "/api/v2/groups/"+esc(group)+"/nodes")
}

// AddGroupNode answers PUT /api/v2/groups/:id/nodes/:node.
func (c *Client) AddGroupNode(ctx context.Context, group, node string) error {
	return c.Do(ctx, Request{Method: "PUT", Path: "/api/v2/groups/" + esc(group) + "/nodes/" + esc(node)}, nil)
}

// RemoveGroupNode answers DELETE /api/v2/groups/:id/nodes/:node.
func (c *Client) RemoveGroupNode(ctx context.Context, group, node string) error {
	return c.Do(ctx, Request{Method: "DELETE", Path: "/api/v2/groups/" + esc(group) + "/nodes/" + esc(node)}, nil)
}

// AnnealStatus answers GET /api/v2/anneal.
func (c *Client) AnnealStatus(ctx context.Context) (*AnnealStatus, error) {
	var out AnnealStatus
	return &out, c.Do(ctx, Request{Method: "GET", Path: "/api/v2/anneal"}, &out)
}

// AnnealStatus is the annealer's status.
type AnnealStatus struct {
	Counts   map[string]int64 `json:"counts"`
	Runnable int64            `json:"runnable"`
	InFlight int              `json:"in_flight"`
	Waiting  int64            `json:"waiting"`
	Idle     bool             `json:"idle"`
}

// Event is one state change from GET /api/v2/events.
type Event struct {
	Seq          int64  `json:"seq"` // its place in the event log: resume after it with EventFilter.LastEventID
	Type         string `json:"type"`
	ID           int64  `json:"id"`
	NodeID       int64  `json:"node_id"`
	Node         string `json:"node"`
	RoleID       int64  `json:"role_id"`
	Role         string `json:"role"`
	DeploymentID int64  `json:"deployment_id"`
	Deployment   string `json:"deployment"`
	State        int    `json:"state"`
	StateName    string `json:"state_name"`
	Runlog       string `json:"runlog"`
	At           string `json:"at"`
}

// EventFilter selects events; empty fields match all. LastEventID (an
// earlier event's Seq) starts the stream with the events logged after it.
type EventFilter struct {
	Node, Deployment, Role string
	LastEventID            string
}

// Events streams GET /api/v2/events to fn until ctx ends, fn returns an
// error, or the server closes the stream (nil).
func (c *Client) Events(ctx context.Context, f EventFilter, fn func(Event) error) error {
	q := url.Values{}
	for k, v := range map[string]string{"node": f.Node, "deployment": f.Deployment, "role": f.Role} {
		if v != "" {
			q.Set(k, v)
		}
	}
	req := Request{Method: "GET", Path: "/api/v2/events", Query: q, Header: http.Header{"Accept": {"text/event-stream"}}}
	if f.LastEventID != "" {
		req.Header.Set("Last-Event-ID", f.LastEventID)
	}
	resp, err := c.send(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		var b [4096]byte
		n, _ := resp.Body.Read(b[:])
		return answerError(req, resp.StatusCode, b[:n])
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue
		}
		var ev Event
		if err := json.Unmarshal([]byte(strings.TrimSpace(data)), &ev); err != nil || ev.Type == "" {
			continue // comments and notices ("dropped") are not events
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	return nil
}

// CreateJoinToken answers POST /api/v2/join_tokens: a token agents join
// with, valid for ttl ("1h", "30m" or seconds); its "token" field is the
// secret, shown only here.
func (c *Client) CreateJoinToken(ctx context.Context, description, ttl string) (Object, error) {
	body := Object{"ttl": ttl}
	if description != "" {
		body["description"] = description
	}
	return c.object(ctx, "POST", "/api/v2/join_tokens", body)
}

// NodeAgent answers GET /api/v2/nodes/:id/agent: how the server reaches
// the node's agent; with ping, whether it answers.
func (c *Client) NodeAgent(ctx context.Context, node string, ping bool) (Object, error) {
	path := "/api/v2/nodes/" + esc(node) + "/agent"
	if ping {
		path += "?ping=true"
	}
	return c.object(ctx, "GET", path, nil)
}

// ZeroOS calls a route of the zero-os barclamp (path relative to
// /zero-os/v2) and decodes its JSON answer into out (which may be nil).
func (c *Client) ZeroOS(ctx context.Context, method, path string, body, out any) error {
	return c.Do(ctx, Request{Method: method, Path: "/zero-os/v2" + path, Body: body}, out)
}
