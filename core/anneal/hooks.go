package anneal

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"slices"
	"sync"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/hashicorp/go-hclog"
	"gorm.io/gorm"
)

// The notification hooks: everything but on_todo, which the wasm jig
// calls. They tell a barclamp what happened; their answer changes nothing
// but the log:
//
//   - on_proposed, on_active, on_error: a node-role of one of the
//     barclamp's roles entered PROPOSED, ACTIVE or ERROR (after the change
//     committed). The event carries the node-role, node, deployment and
//     merged attribs as they are when the hook runs.
//   - on_node_create, on_node_delete, on_deployment_create,
//     on_deployment_delete: sent to every loaded barclamp that declares
//     them, enabled in the deployment or not (a barclamp holding a node's
//     addresses must hear of its deletion wherever it lives).
//
// Calls are asynchronous, in order per node (per deployment for deployment
// hooks), and never block the annealer or a request. A failed call is
// logged with the barclamp and the reason. Calls still queued at shutdown
// are made before Run returns, unless its context for draining ends.

// Lister lists the loaded barclamps; the registry implements it.
type Lister interface {
	Modules
	Names() []string
}

// hookCall is one queued notification.
type hookCall struct {
	hook       string
	role       string              // role hooks
	nodeRoleID int64               // role hooks: loaded when the call runs
	node       any                 // node hooks: the node as it was
	deployment any                 // deployment hooks
	event      *barclamp.HookEvent // a call made with an event built already (on_delete)
	key        int64               // calls with one key run in order
}

// Hooks queues and makes notification hook calls.
type Hooks struct {
	db   *gorm.DB
	mods Lister
	log  hclog.Logger

	mu      sync.Mutex
	cond    *sync.Cond
	queues  [][]hookCall
	closed  bool
	pending int // queued or running calls
}

// hookWorkers is how many notification calls run at once.
const hookWorkers = 4

// NewHooks returns a dispatcher over the loaded barclamps in mods; a nil
// mods makes every call a no-op.
func NewHooks(db *gorm.DB, mods Lister, log hclog.Logger) *Hooks {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	h := &Hooks{db: db, mods: mods, log: log.Named("hooks"), queues: make([][]hookCall, hookWorkers)}
	h.cond = sync.NewCond(&h.mu)
	return h
}

// declares finds the loaded barclamp declaring hook, for role (role hooks)
// or for itself (role "").
func (h *Hooks) declares(hook, role string) []*barclamp.Active {
	if h == nil || h.mods == nil {
		return nil
	}
	var out []*barclamp.Active
	for _, name := range h.mods.Names() {
		a, ok := h.mods.Get(name)
		if !ok {
			continue
		}
		m := a.Module.Manifest()
		if role == "" {
			if slices.Contains(m.Hooks, hook) {
				out = append(out, a)
			}
			continue
		}
		for _, r := range m.Roles {
			if r.Name == role && slices.Contains(r.Hooks, hook) {
				return []*barclamp.Active{a}
			}
		}
	}
	return out
}

var stateHooks = map[int]string{model.StateProposed: "on_proposed", model.StateActive: "on_active", model.StateError: "on_error"}

// NodeRoleEvents queues the role hooks the events call for.
func (h *Hooks) NodeRoleEvents(events []Event) {
	for _, e := range events {
		hook, ok := stateHooks[e.State]
		if e.Type != "node_role" || !ok {
			continue
		}
		if len(h.declares(hook, e.Role)) > 0 {
			h.enqueue(hookCall{hook: hook, role: e.Role, nodeRoleID: e.ID, key: e.NodeID})
		}
	}
}

// Unbound queues on_delete for node-roles deleted.
func (h *Hooks) Unbound(us []Unbound) {
	for _, u := range us {
		if len(h.declares("on_delete", u.Event.Role)) > 0 {
			h.enqueue(hookCall{hook: "on_delete", role: u.Event.Role, event: u.Event, key: u.NodeID})
		}
	}
}

// Node queues on_node_create or on_node_delete for n.
func (h *Hooks) Node(hook string, n *model.Node) {
	if len(h.declares(hook, "")) > 0 {
		c := *n
		h.enqueue(hookCall{hook: hook, node: &c, key: n.ID})
	}
}

// Deployment queues on_deployment_create or on_deployment_delete for d.
func (h *Hooks) Deployment(hook string, d *model.Deployment) {
	if len(h.declares(hook, "")) > 0 {
		c := *d
		// Negative keys keep deployments apart from nodes of the same id.
		h.enqueue(hookCall{hook: hook, deployment: &c, key: -d.ID})
	}
}

func (h *Hooks) enqueue(c hookCall) {
	k := fnv.New32a()
	var b [8]byte
	for i := range b {
		b[i] = byte(c.key >> (8 * i))
	}
	k.Write(b[:]) //nolint:errcheck
	q := int(k.Sum32() % hookWorkers)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		h.log.Warn("server stopping; notification dropped", "hook", c.hook)
		return
	}
	h.pending++
	h.queues[q] = append(h.queues[q], c)
	h.cond.Broadcast()
}

// Wait returns when every queued call has been made; tests use it. Calls
// queued while it waits are waited for too.
func (h *Hooks) Wait() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.pending > 0 {
		h.cond.Wait()
	}
}

// Run makes queued calls until ctx ends, then makes the ones still queued
// (each bounded by the barclamp's hook deadline) and returns.
func (h *Hooks) Run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		h.mu.Lock()
		h.closed = true
		h.cond.Broadcast()
		h.mu.Unlock()
	})
	defer stop()
	var wg sync.WaitGroup
	for q := range hookWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				h.mu.Lock()
				for len(h.queues[q]) == 0 && !h.closed {
					h.cond.Wait()
				}
				if len(h.queues[q]) == 0 {
					h.mu.Unlock()
					return
				}
				c := h.queues[q][0]
				h.queues[q] = h.queues[q][1:]
				h.mu.Unlock()
				h.call(context.WithoutCancel(ctx), c)
				h.mu.Lock()
				h.pending--
				h.cond.Broadcast()
				h.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func (h *Hooks) call(ctx context.Context, c hookCall) {
	targets := h.declares(c.hook, c.role)
	if len(targets) == 0 {
		return // unloaded meanwhile
	}
	ev := &barclamp.HookEvent{Hook: c.hook, Role: c.role}
	switch {
	case c.event != nil:
		ev = c.event
	case c.nodeRoleID != 0:
		ok, err := h.loadNodeRole(ctx, c.nodeRoleID, ev)
		if err != nil {
			h.log.Error("cannot load the node-role for a hook", "hook", c.hook, "node_role", c.nodeRoleID, "error", err)
			return
		}
		if !ok {
			return // unbound before the hook ran
		}
	case c.node != nil:
		ev.Node, _ = json.Marshal(c.node)
	default:
		ev.Deployment, _ = json.Marshal(c.deployment)
	}
	for _, a := range targets {
		name := a.Module.Manifest().Name
		res, err := a.Module.Hook(ctx, ev)
		switch {
		case err != nil:
			h.log.Warn("hook failed", "barclamp", name, "hook", c.hook, "role", c.role, "error", err)
		case res != nil && res.State == "error":
			h.log.Warn("hook reported an error", "barclamp", name, "hook", c.hook, "role", c.role, "error", res.Error)
		default:
			h.log.Debug("hook ran", "barclamp", name, "hook", c.hook, "role", c.role)
		}
	}
}

// loadNodeRole fills ev with the node-role, its node, deployment and
// merged attribs; false when the node-role is gone.
func (h *Hooks) loadNodeRole(ctx context.Context, id int64, ev *barclamp.HookEvent) (bool, error) {
	db := h.db.WithContext(ctx)
	var nr model.NodeRole
	if err := db.Where("id = ?", id).Limit(1).Find(&nr).Error; err != nil || nr.ID == 0 {
		return false, err
	}
	full, err := hookEvent(db, ev.Hook, &nr)
	if err != nil {
		return false, err
	}
	*ev = *full
	return true, nil
}

// hookEvent is a role hook's event for nr: the node-role with its node,
// deployment and merged attribs.
func hookEvent(db *gorm.DB, hook string, src *model.NodeRole) (*barclamp.HookEvent, error) {
	nr := *src
	var node model.Node
	var role model.Role
	var dep model.Deployment
	if err := db.First(&node, nr.NodeID).Error; err != nil {
		return nil, err
	}
	if err := db.First(&role, nr.RoleID).Error; err != nil {
		return nil, err
	}
	if err := db.First(&dep, nr.DeploymentID).Error; err != nil {
		return nil, err
	}
	attribs, err := Merged(db, &nr, &node, &role)
	if err != nil {
		return nil, err
	}
	nr.StateName = model.StateNames[nr.State]
	ev := &barclamp.HookEvent{Hook: hook, Role: role.Name, Attribs: attribs}
	ev.NodeRole, _ = json.Marshal(nr)
	ev.Node, _ = json.Marshal(node)
	ev.Deployment, _ = json.Marshal(dep)
	return ev, nil
}
