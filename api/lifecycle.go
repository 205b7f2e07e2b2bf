package api

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/core/anneal"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/gorilla/mux"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The node-role lifecycle: binding, commit/propose/recall, retry, attribs,
// the graph, the annealer's status and the event stream.

func (s *Server) mountLifecycle(r prefixed) {
	r.HandleFunc("/node_roles", s.bindNodeRole).Methods(http.MethodPost)
	r.HandleFunc("/node_roles/{id}", s.updateNodeRole).Methods(http.MethodPut, http.MethodPatch)
	r.HandleFunc("/node_roles/{id}", s.unbindNodeRole).Methods(http.MethodDelete)
	r.HandleFunc("/node_roles/{id}/retry", s.retryNodeRole).Methods(http.MethodPut)
	r.HandleFunc("/nodes/{id}/commit", s.commitNode).Methods(http.MethodPut)
	r.HandleFunc("/nodes/{id}/attribs", s.nodeAttribs).Methods(http.MethodGet)
	r.HandleFunc("/nodes/{id}/attribs/{attrib}", s.nodeAttrib).Methods(http.MethodGet)
	r.HandleFunc("/nodes/{id}/attribs/{attrib}", s.setNodeAttrib).Methods(http.MethodPut)
	for _, verb := range []string{"propose", "commit", "recall"} {
		r.HandleFunc("/deployments/{id}/"+verb, s.deploymentVerb(verb)).Methods(http.MethodPut)
	}
	r.HandleFunc("/deployments/{id}/graph", s.deploymentGraph).Methods(http.MethodGet)
	r.HandleFunc("/anneal", s.annealStatus).Methods(http.MethodGet)
	r.HandleFunc("/events", s.events).Methods(http.MethodGet)
}

// change runs fn in a transaction and publishes its events once committed.
func (s *Server) change(ctx context.Context, fn func(tx *gorm.DB, ch *anneal.Changes) error) error {
	var ch anneal.Changes
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		if err := fn(tx, &ch); err != nil {
			return err
		}
		return s.bus.Record(tx, ch.Events)
	})
	if err != nil {
		return err
	}
	s.annealer.Publish(&ch)
	return nil
}

func presentNodeRole(nr *model.NodeRole) { nr.StateName = model.StateNames[nr.State] }

// refKey reads a name-or-id reference from a body field.
func refKey(body map[string]json.RawMessage, key string) (string, bool, error) {
	raw, ok := body[key]
	if !ok {
		raw, ok = body[key+"_id"]
	}
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	var k string
	if err := jsonString(raw, &k); err != nil || k == "" {
		return "", false, model.BadRequest("field '%s' must be a %s name or id", key, key)
	}
	return k, true, nil
}

// bindNodeRole answers POST /node_roles {"node", "role", "deployment"?}.
func (s *Server) bindNodeRole(w http.ResponseWriter, r *http.Request) {
	fs := fieldSet{}
	for _, f := range []string{"node_id", "role_id", "deployment_id"} {
		fs[f] = s.res.nodeRoles.fields[f]
	}
	body, err := readBody(r, fs, []Ref{refNode, refRole, refDeployment})
	if err != nil {
		writeError(w, r, "node_role", err)
		return
	}
	for k := range body {
		switch k {
		case "node", "role", "deployment", "node_id", "role_id", "deployment_id":
		default:
			writeError(w, r, "node_role", model.BadRequest("unknown field '%s'; bind with {\"node\": name-or-id, \"role\": name-or-id, \"deployment\": name-or-id (optional)}", k))
			return
		}
	}
	keys := map[string]string{}
	for _, k := range []string{"node", "role", "deployment"} {
		v, ok, err := refKey(body, k)
		if err != nil {
			writeError(w, r, "node_role", err)
			return
		}
		if !ok && k != "deployment" {
			writeError(w, r, "node_role", model.Invalid(k, "is required"))
			return
		}
		keys[k] = v
	}
	var nr *model.NodeRole
	err = s.change(r.Context(), func(tx *gorm.DB, ch *anneal.Changes) error {
		ids := map[string]int64{}
		for _, ref := range []Ref{refNode, refRole, refDeployment} {
			if keys[ref.Key] == "" {
				continue
			}
			id, err := store.ResolveID(r.Context(), tx, ref.Kind, ref.Table, ref.NameCol, keys[ref.Key])
			if err != nil {
				return filterError(ref.Key, err)
			}
			ids[ref.Key] = id
		}
		var err error
		nr, err = anneal.Bind(r.Context(), tx, ids["node"], ids["role"], ids["deployment"], ch)
		return err
	})
	if err != nil {
		writeError(w, r, "node_role", err)
		return
	}
	presentNodeRole(nr)
	writeObject(w, r, http.StatusCreated, "node_role", nr)
}

// findNodeRole loads a node-role by id for update.
func (s *Server) findNodeRole(ctx context.Context, tx *gorm.DB, key string) (*model.NodeRole, error) {
	return store.Find[model.NodeRole](ctx, tx.Clauses(clause.Locking{Strength: "UPDATE"}), "node_role", "", key)
}

// updateNodeRole answers PUT /node_roles/:id: user data ("proposed_data",
// committed with the node or deployment), or the completion of a node-role
// a hook left in TRANSITION ("state" 0 or -1 with "wall" and "runlog").
func (s *Server) updateNodeRole(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ProposedData *model.JSON `json:"proposed_data"`
		State        *int        `json:"state"`
		Wall         *model.JSON `json:"wall"`
		Runlog       *string     `json:"runlog"`
	}
	if err := decodeStrict(r, &in); err != nil {
		writeError(w, r, "node_role", err)
		return
	}
	if in.State == nil && (in.Wall != nil || in.Runlog != nil) {
		writeError(w, r, "node_role", model.Invalid("state", "is required with wall or runlog: they complete a node-role in transition"))
		return
	}
	s.nodeRoleOp(w, r, func(tx *gorm.DB, nr *model.NodeRole, ch *anneal.Changes) error {
		if in.ProposedData != nil {
			if err := tx.Model(nr).Updates(map[string]any{"proposed_data": *in.ProposedData, "updated_at": tx.NowFunc()}).Error; err != nil {
				return err
			}
		}
		if in.State == nil {
			return nil
		}
		var wall model.JSON
		if in.Wall != nil {
			wall = *in.Wall
		}
		runlog := ""
		if in.Runlog != nil {
			runlog = *in.Runlog
		}
		return anneal.Complete(tx, nr, *in.State, wall, runlog, ch)
	})
}

// unbindNodeRole answers DELETE /node_roles/:id.
func (s *Server) unbindNodeRole(w http.ResponseWriter, r *http.Request) {
	err := s.change(r.Context(), func(tx *gorm.DB, ch *anneal.Changes) error {
		nr, err := s.findNodeRole(r.Context(), tx, mux.Vars(r)["id"])
		if err != nil {
			return err
		}
		return anneal.Unbind(tx, nr, ch)
	})
	if err != nil {
		writeError(w, r, "node_role", err)
		return
	}
	writeEmpty(w, "node_role")
}

// retryNodeRole answers PUT /node_roles/:id/retry.
func (s *Server) retryNodeRole(w http.ResponseWriter, r *http.Request) {
	s.nodeRoleOp(w, r, anneal.Retry)
}

// nodeRoleOp locks the node-role named in the path, applies op, and
// answers with the node-role as it is afterwards.
func (s *Server) nodeRoleOp(w http.ResponseWriter, r *http.Request, op func(*gorm.DB, *model.NodeRole, *anneal.Changes) error) {
	var nr *model.NodeRole
	err := s.change(r.Context(), func(tx *gorm.DB, ch *anneal.Changes) error {
		var err error
		if nr, err = s.findNodeRole(r.Context(), tx, mux.Vars(r)["id"]); err != nil {
			return err
		}
		if err := op(tx, nr, ch); err != nil {
			return err
		}
		return tx.Take(nr, nr.ID).Error
	})
	if err != nil {
		writeError(w, r, "node_role", err)
		return
	}
	presentNodeRole(nr)
	writeObject(w, r, http.StatusOK, "node_role", nr)
}

// commitNode answers PUT /nodes/:id/commit.
func (s *Server) commitNode(w http.ResponseWriter, r *http.Request) {
	var node *model.Node
	err := s.change(r.Context(), func(tx *gorm.DB, ch *anneal.Changes) error {
		var err error
		if node, err = s.res.nodes.Find(r.Context(), tx.Clauses(clause.Locking{Strength: "UPDATE"}), mux.Vars(r)["id"]); err != nil {
			return err
		}
		if err := anneal.CommitNode(tx, node, ch); err != nil {
			return err
		}
		return tx.Take(node, node.ID).Error
	})
	if err != nil {
		writeError(w, r, "node", err)
		return
	}
	writeObject(w, r, http.StatusOK, "node", node)
}

// deploymentVerb answers PUT /deployments/:id/{propose,commit,recall}.
func (s *Server) deploymentVerb(verb string) http.HandlerFunc {
	op := map[string]func(*gorm.DB, *model.Deployment, *anneal.Changes) error{
		"propose": anneal.ProposeDeployment, "commit": anneal.CommitDeployment, "recall": anneal.RecallDeployment}[verb]
	return func(w http.ResponseWriter, r *http.Request) {
		var d *model.Deployment
		err := s.change(r.Context(), func(tx *gorm.DB, ch *anneal.Changes) error {
			var err error
			if d, err = s.res.deployments.Find(r.Context(), tx.Clauses(clause.Locking{Strength: "UPDATE"}), mux.Vars(r)["id"]); err != nil {
				return err
			}
			if err := op(tx, d, ch); err != nil {
				return err
			}
			return tx.Take(d, d.ID).Error
		})
		if err != nil {
			writeError(w, r, "deployment", err)
			return
		}
		s.presentDeployment(d)
		writeObject(w, r, http.StatusOK, "deployment", d)
	}
}

func (s *Server) presentDeployment(d *model.Deployment) {
	if st, err := anneal.DeploymentState(s.store.DB, d); err == nil {
		d.State = st
	}
	d.StateName = model.DeploymentStateNames[d.State]
}

// nodeAttribValue is an attrib as seen on one node: the attrib's fields
// and its resolved value, the seed's response shape.
type nodeAttribValue struct {
	model.Attrib
	NodeID int64           `json:"node_id"`
	Value  json.RawMessage `json:"value"`
}

func (s *Server) resolveNodeAttrib(ctx context.Context, tx *gorm.DB, nodeKey, attribKey string) (*model.Node, *model.Attrib, error) {
	node, err := s.res.nodes.Find(ctx, tx, nodeKey)
	if err != nil {
		return nil, nil, err
	}
	a, err := s.res.attribs.Find(ctx, tx, attribKey)
	if err != nil {
		return nil, nil, err
	}
	return node, a, nil
}

// nodeAttrib answers GET /nodes/:id/attribs/:attrib.
func (s *Server) nodeAttrib(w http.ResponseWriter, r *http.Request) {
	node, a, err := s.resolveNodeAttrib(r.Context(), s.store.WithContext(r.Context()), mux.Vars(r)["id"], mux.Vars(r)["attrib"])
	if err != nil {
		writeError(w, r, "attrib", err)
		return
	}
	v, err := anneal.NodeAttrib(s.store.WithContext(r.Context()), a, node)
	if err != nil {
		writeError(w, r, "attrib", err)
		return
	}
	writeObject(w, r, http.StatusOK, "attrib", &nodeAttribValue{Attrib: *a, NodeID: node.ID, Value: v})
}

// setNodeAttrib answers PUT /nodes/:id/attribs/:attrib {"value": …}.
func (s *Server) setNodeAttrib(w http.ResponseWriter, r *http.Request) {
	raw, err := readOne(r, "value", fieldSet{"value": {name: "value", typ: reflect.TypeOf("")}}, nil)
	if err != nil {
		writeError(w, r, "attrib", err)
		return
	}
	var out *nodeAttribValue
	err = s.change(r.Context(), func(tx *gorm.DB, ch *anneal.Changes) error {
		node, a, err := s.resolveNodeAttrib(r.Context(), tx.Clauses(clause.Locking{Strength: "UPDATE"}), mux.Vars(r)["id"], mux.Vars(r)["attrib"])
		if err != nil {
			return err
		}
		if err := anneal.SetNodeAttrib(tx, a, node, raw); err != nil {
			return err
		}
		v, err := anneal.NodeAttrib(tx, a, node)
		if err != nil {
			return err
		}
		out = &nodeAttribValue{Attrib: *a, NodeID: node.ID, Value: v}
		return nil
	})
	if err != nil {
		writeError(w, r, "attrib", err)
		return
	}
	writeObject(w, r, http.StatusOK, "attrib", out)
}

// nodeAttribs answers GET /nodes/:id/attribs: the attribs of the roles bound
// to the node and those tied to no role, with their values.
func (s *Server) nodeAttribs(w http.ResponseWriter, r *http.Request) {
	db := s.store.WithContext(r.Context())
	node, err := s.res.nodes.Find(r.Context(), db, mux.Vars(r)["id"])
	if err != nil {
		writeError(w, r, "attrib", err)
		return
	}
	var attribs []model.Attrib
	err = db.Where("role_id IS NULL OR role_id IN (?)", db.Model(&model.NodeRole{}).Select("role_id").Where("node_id = ?", node.ID)).
		Order("\"order\", name").Find(&attribs).Error
	if err != nil {
		writeError(w, r, "attrib", err)
		return
	}
	out := make([]nodeAttribValue, 0, len(attribs))
	for i := range attribs {
		v, err := anneal.NodeAttrib(db, &attribs[i], node)
		if err != nil {
			writeError(w, r, "attrib", err)
			return
		}
		out = append(out, nodeAttribValue{Attrib: attribs[i], NodeID: node.ID, Value: v})
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(len(out)))
	writeList(w, r, "attrib", out)
}

// graphNode and graphEdge are the JSON form of a deployment's graph.
type graphNode struct {
	ID        int64  `json:"id"`
	Node      string `json:"node"`
	Role      string `json:"role"`
	State     int    `json:"state"`
	StateName string `json:"state_name"`
}

type graphEdge struct {
	Parent int64 `json:"parent"`
	Child  int64 `json:"child"`
}

// deploymentGraph answers GET /deployments/:id/graph as JSON, or as
// Graphviz DOT with ?format=dot.
func (s *Server) deploymentGraph(w http.ResponseWriter, r *http.Request) {
	db := s.store.WithContext(r.Context())
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "dot" {
		writeError(w, r, "graph", model.BadRequest("format must be json or dot, not '%s'", format))
		return
	}
	d, err := s.res.deployments.Find(r.Context(), db, mux.Vars(r)["id"])
	if err != nil {
		writeError(w, r, "graph", err)
		return
	}
	var nodes []graphNode
	err = db.Table("node_roles nr").Select("nr.id, n.name AS node, r.name AS role, nr.state").
		Joins("JOIN nodes n ON n.id = nr.node_id JOIN roles r ON r.id = nr.role_id").
		Where("nr.deployment_id = ?", d.ID).Order("nr.id").Scan(&nodes).Error
	if err != nil {
		writeError(w, r, "graph", err)
		return
	}
	edges := []graphEdge{}
	err = db.Table("node_role_edges").Select("parent_id AS parent, child_id AS child").
		Where("child_id IN (?) OR parent_id IN (?)", db.Model(&model.NodeRole{}).Select("id").Where("deployment_id = ?", d.ID),
			db.Model(&model.NodeRole{}).Select("id").Where("deployment_id = ?", d.ID)).
		Order("parent_id, child_id").Scan(&edges).Error
	if err != nil {
		writeError(w, r, "graph", err)
		return
	}
	for i := range nodes {
		nodes[i].StateName = model.StateNames[nodes[i].State]
	}
	if nodes == nil {
		nodes = []graphNode{}
	}
	if format == "dot" {
		w.Header().Set("Content-Type", "text/vnd.graphviz; charset=utf-8")
		fmt.Fprint(w, dot(d.Name, nodes, edges))
		return
	}
	writeObject(w, r, http.StatusOK, "graph", map[string]any{"deployment": d.Name, "nodes": nodes, "edges": edges})
}

var dotColours = map[int]string{model.StateError: "red", model.StateActive: "green", model.StateTodo: "yellow",
	model.StateTransition: "orange", model.StateBlocked: "grey", model.StateProposed: "lightblue"}

func dot(name string, nodes []graphNode, edges []graphEdge) string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n\trankdir=LR;\n\tnode [shape=box, style=filled];\n", strconv.Quote(name))
	for _, n := range nodes {
		fmt.Fprintf(&b, "\tnr%d [label=%s, fillcolor=%s];\n", n.ID, strconv.Quote(n.Role+"\n"+n.Node+"\n"+n.StateName), dotColours[n.State])
	}
	for _, e := range edges {
		fmt.Fprintf(&b, "\tnr%d -> nr%d;\n", e.Parent, e.Child)
	}
	b.WriteString("}\n")
	return b.String()
}

// annealStatus answers GET /anneal.
func (s *Server) annealStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.annealer.Status(r.Context())
	if err != nil {
		writeError(w, r, "anneal", err)
		return
	}
	writeObject(w, r, http.StatusOK, "anneal", st)
}

// events answers GET /events: server-sent events, one per state change,
// filtered by ?node=, ?deployment= and ?role= (names). Each carries its
// place in the event log as its SSE id; a client that sends it back as
// Last-Event-ID (or ?last_event_id=) first gets what it missed.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "node" && k != "deployment" && k != "role" && k != "last_event_id" {
			writeError(w, r, "event", model.BadRequest("cannot filter events by '%s'; filters: deployment, node, role (and last_event_id to resume)", k))
			return
		}
	}
	resume := int64(-1)
	if v := cmp.Or(r.Header.Get("Last-Event-ID"), q.Get("last_event_id")); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, r, "event", model.BadRequest("Last-Event-ID '%s' is not an event id (a number from an earlier event's id line)", v))
			return
		}
		resume = n
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, r, "event", statusError(http.StatusInternalServerError, "streaming is not supported here"))
		return
	}
	sub, err := s.bus.Subscribe(r.Context(), anneal.Filter{Node: q.Get("node"), Deployment: q.Get("deployment"), Role: q.Get("role")})
	if err != nil {
		writeError(w, r, "event", err)
		return
	}
	defer s.bus.Unsubscribe(sub)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": crowbar events\n\n")
	send := func(ev anneal.Event) error {
		b, _ := json.Marshal(ev)
		_, err := fmt.Fprintf(w, "event: %s\nid: %d\ndata: %s\n\n", ev.Type, ev.Seq, b)
		return err
	}
	if resume >= 0 {
		lost, err := s.bus.Replay(r.Context(), sub, resume, send)
		if lost {
			fmt.Fprintf(w, "event: reset\ndata: {\"after\":%d,\"reason\":\"events after %d are no longer in the event log (pruned): read the current state again\"}\n\n", resume, resume)
		}
		if err != nil {
			s.log.Warn("replaying the event log failed", "after", resume, "error", err)
			return
		}
	}
	fl.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case ev := <-sub.C:
			if n := sub.Dropped(); n > 0 {
				fmt.Fprintf(w, "event: dropped\ndata: {\"dropped\":%d}\n\n", n)
			}
			send(ev) //nolint:errcheck // a gone client ends the request context
		}
		fl.Flush()
	}
}
