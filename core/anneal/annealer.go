package anneal

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/metrics"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/hashicorp/go-hclog"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Work is one claimed node-role with what its jig needs.
type Work struct {
	NodeRole   model.NodeRole
	Node       model.Node
	Role       model.Role
	Deployment model.Deployment
	Barclamp   string
	// Attribs is the merged data the jig receives (OpenCrowbar's order).
	Attribs json.RawMessage
	// Progress, when set, replaces the node-role's run log while it runs
	// (visible through the API and as an event); jigs call it now and
	// then, not per line.
	Progress func(runlog string)
}

// Jig runs a node-role. Its result's State is "active", "error" or
// "transition" (the node-role waits to be completed through the API).
type Jig func(ctx context.Context, w *Work) (*barclamp.HookResult, error)

// Noop is the jig that does nothing: the node-role becomes ACTIVE.
func Noop(context.Context, *Work) (*barclamp.HookResult, error) {
	return &barclamp.HookResult{State: "active"}, nil
}

// Modules finds a loaded barclamp's module; the barclamp registry
// implements it.
type Modules interface {
	Get(name string) (*barclamp.Active, bool)
}

// WasmJig runs a role's on_todo hook in the barclamp that owns it. A failed
// call (trap, deadline, bad output) is an ERROR with the reason.
func WasmJig(mods Modules) Jig {
	return func(ctx context.Context, w *Work) (*barclamp.HookResult, error) {
		a, ok := mods.Get(w.Barclamp)
		if !ok {
			return nil, fmt.Errorf("barclamp '%s' is not loaded in this server", w.Barclamp)
		}
		nr, _ := json.Marshal(w.NodeRole)
		node, _ := json.Marshal(w.Node)
		dep, _ := json.Marshal(w.Deployment)
		return a.Module.Hook(ctx, &barclamp.HookEvent{Hook: "on_todo", Role: w.Role.Name, NodeRole: nr, Node: node,
			Deployment: dep, Attribs: w.Attribs})
	}
}

// Config tunes the annealer.
type Config struct {
	Workers  int           // node-roles run at once (on distinct nodes); default 16
	Lease    time.Duration // how long a claim lasts without renewal; default 1 min
	Poll     time.Duration // look for work at least this often; default 1 s
	Jigs     map[string]Jig
	Logger   hclog.Logger
	Bus      *Bus
	Postgres bool // use FOR UPDATE SKIP LOCKED when claiming
	// Hooks, when set, receives every committed change to call the
	// barclamps' notification hooks; Run runs it.
	Hooks *Hooks
}

// Annealer claims runnable node-roles and runs them through their jigs.
type Annealer struct {
	db    *gorm.DB
	cfg   Config
	log   hclog.Logger
	owner string
	kick  chan struct{}

	inFlight atomic.Int64
	running  sync.Map // node-role id → struct{}
}

// New returns an annealer over db; Run starts it.
func New(db *gorm.DB, cfg Config) *Annealer {
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.Lease <= 0 {
		cfg.Lease = time.Minute
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Jigs == nil {
		cfg.Jigs = map[string]Jig{}
	}
	if _, ok := cfg.Jigs["noop"]; !ok {
		cfg.Jigs["noop"] = Noop
	}
	host, _ := os.Hostname()
	var rnd [4]byte
	rand.Read(rnd[:]) //nolint:errcheck
	return &Annealer{db: db, cfg: cfg, log: cfg.Logger.Named("annealer"), kick: make(chan struct{}, 1),
		owner: fmt.Sprintf("%.40s-%d-%s", host, os.Getpid(), hex.EncodeToString(rnd[:]))}
}

// Kick tells the annealer there may be new work.
func (a *Annealer) Kick() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Publish sends the events of a committed change and kicks the annealer
// when it made work.
func (a *Annealer) Publish(ch *Changes) {
	if len(ch.Events) > 0 {
		a.cfg.Bus.Kick()
	}
	a.cfg.Hooks.NodeRoleEvents(ch.Events)
	a.cfg.Hooks.Unbound(ch.Unbound)
	if ch.Runnable {
		a.Kick()
	}
}

// InFlight is how many node-roles this server is running now.
func (a *Annealer) InFlight() int { return int(a.inFlight.Load()) }

type result struct {
	id  int64
	res *barclamp.HookResult
	err error
	// requeue: the run was cut short by shutdown, not by the jig; the
	// node-role goes back to TODO for the next server.
	requeue bool
}

// Run anneals until ctx ends, then waits for the runs in flight and
// records them. One goroutine claims work and records results, so the
// annealer never contends with itself for the database (SQLite has one
// writer); jigs run on their own goroutines.
func (a *Annealer) Run(ctx context.Context) {
	results := make(chan result, a.cfg.Workers) // never blocks: at most Workers in flight
	busy := 0
	var wg sync.WaitGroup
	renewing := make(chan struct{})
	go func() { defer close(renewing); a.renewLeases(ctx) }()
	defer func() { <-renewing }() // nothing of the annealer outlives Run
	if a.cfg.Hooks != nil {
		// The hooks outlive the loop below so that the last results recorded
		// still notify; they stop once everything is recorded.
		hctx, stopHooks := context.WithCancel(context.WithoutCancel(ctx))
		hooksDone := make(chan struct{})
		go func() { defer close(hooksDone); a.cfg.Hooks.Run(hctx) }()
		defer func() { stopHooks(); <-hooksDone }()
	}
	t := time.NewTicker(a.cfg.Poll)
	defer t.Stop()
	// On PostgreSQL results are recorded by a second goroutine, concurrently
	// with claims (measured: 10k node-roles 9.0 s → 6.5 s); SQLite has one
	// writer, so there both happen here (15 s → 3 s).
	// Runs whose results wait to be recorded still hold their node-roles in
	// TRANSITION and count against the workers: at most Workers node-roles
	// are ever in flight here, so a crash repeats at most that many.
	record := a.finish
	var recorder sync.WaitGroup
	var unrecorded atomic.Int64
	if a.cfg.Postgres {
		batches := make(chan []result, 64)
		recorder.Add(1)
		go func() {
			defer recorder.Done()
			for b := range batches {
				// Whatever queued meanwhile goes into the same transaction.
				for more := true; more; {
					select {
					case b2, ok := <-batches:
						if !ok {
							more = false
							break
						}
						b = append(b, b2...)
					default:
						more = false
					}
				}
				a.finish(b)
				unrecorded.Add(-int64(len(b)))
				a.Kick() // workers are free again
			}
		}()
		record = func(b []result) {
			unrecorded.Add(int64(len(b)))
			batches <- append([]result(nil), b...)
		}
		defer func() { close(batches); recorder.Wait() }()
	}
	var pending []result
	for ctx.Err() == nil {
		pending = drain(results, pending)
		if len(pending) > 0 {
			busy -= len(pending)
			record(pending)
			pending = pending[:0]
		}
		free := a.cfg.Workers - busy - int(unrecorded.Load())
		var work []*Work
		if free > 0 {
			var err error
			// Not cancelled mid-transaction by shutdown: database/sql would roll
			// back asynchronously and the connection outlive the store's Close.
			work, err = a.claim(context.WithoutCancel(ctx), free)
			if err != nil && ctx.Err() == nil {
				a.log.Warn("claiming work failed; will retry", "error", err)
			}
		}
		for _, w := range work {
			busy++
			wg.Add(1)
			a.inFlight.Add(1)
			go func(w *Work) {
				defer wg.Done()
				res, err := a.run(ctx, w)
				results <- result{id: w.NodeRole.ID, res: res, err: err, requeue: err != nil && ctx.Err() != nil}
			}(w)
		}
		if len(work) > 0 && len(work) == free {
			continue // there may be more
		}
		select {
		case <-ctx.Done():
		case <-a.kick:
		case <-t.C:
		case r := <-results:
			pending = append(pending, r)
			// Runs claimed together tend to end together: gather what ends
			// within 2 ms into one transaction (and one claim after it).
			linger := time.NewTimer(2 * time.Millisecond)
			for gathering := true; gathering; {
				select {
				case r := <-results:
					pending = append(pending, r)
				case <-linger.C:
					gathering = false
				}
			}
		}
	}
	wg.Wait()
	close(results)
	pending = drain(results, pending)
	if len(pending) > 0 {
		record(pending)
	}
}

// drain appends the results waiting in c without blocking.
func drain(c <-chan result, into []result) []result {
	for {
		select {
		case r, ok := <-c:
			if !ok {
				return into
			}
			into = append(into, r)
		default:
			return into
		}
	}
}

func (a *Annealer) run(ctx context.Context, w *Work) (res *barclamp.HookResult, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("jig panicked: %v", v)
		}
	}()
	jig, ok := a.cfg.Jigs[w.Role.JigName]
	if !ok {
		return nil, fmt.Errorf("role '%s' uses jig '%s', which this server does not have", w.Role.Name, w.Role.JigName)
	}
	w.Progress = func(runlog string) { a.progress(w, runlog) }
	return jig(ctx, w)
}

// progress records a running node-role's run log so far and tells the
// event stream.
func (a *Annealer) progress(w *Work, runlog string) {
	err := a.db.Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&model.NodeRole{}).Where("id = ? AND state = ? AND lease_owner = ?", w.NodeRole.ID, model.StateTransition, a.owner).
			Updates(map[string]any{"runlog": runlog})
		if res.Error != nil || res.RowsAffected == 0 {
			return res.Error
		}
		return a.cfg.Bus.Record(tx, []Event{{Type: "node_role", ID: w.NodeRole.ID, NodeID: w.Node.ID, Node: w.Node.Name, RoleID: w.Role.ID,
			Role: w.Role.Name, DeploymentID: w.Deployment.ID, Deployment: w.Deployment.Name, State: model.StateTransition,
			StateName: model.StateNames[model.StateTransition], Runlog: runlog, At: time.Now().UTC()}})
	})
	if err != nil {
		a.log.Warn("recording a running node-role's output failed", "node_role", w.NodeRole.ID, "error", err)
		return
	}
	a.cfg.Bus.Kick()
}

func (a *Annealer) finish(batch []result) {
	var ch Changes
	for attempt := 0; ; attempt++ {
		ch = Changes{}
		err := a.db.Transaction(func(tx *gorm.DB) error {
			var done, active []int64
			same := map[outcomeKey][]int64{}
			var order []outcomeKey
			for _, r := range batch {
				if r.requeue {
					if err := tx.Model(&model.NodeRole{}).Where("id = ? AND state = ? AND lease_owner = ?", r.id, model.StateTransition, a.owner).
						Updates(map[string]any{"state": model.StateTodo, "lease_owner": "", "lease_until": nil, "updated_at": tx.NowFunc()}).Error; err != nil {
						return err
					}
					done = append(done, r.id)
					continue
				}
				state, runlog, wall := outcome(r)
				k := outcomeKey{state: state, runlog: runlog, wall: string(wall), hasWall: wall != nil}
				if _, ok := same[k]; !ok {
					order = append(order, k)
				}
				same[k] = append(same[k], r.id)
			}
			// Results alike (state, run log, wall data) are recorded by one
			// statement: a batch of noop or simple hook runs is a few
			// UPDATEs, not one per node-role.
			for _, k := range order {
				ids := same[k]
				set, args := "state = ?, runlog = ?, lease_owner = '', lease_until = NULL, updated_at = ?", []any{k.state, k.runlog, tx.NowFunc()}
				if k.hasWall {
					set, args = set+", wall = ?", append(args, k.wall)
				}
				args = append(args, ids, model.StateTransition, a.owner)
				var got []int64
				if err := tx.Raw("UPDATE node_roles SET "+set+" WHERE id IN ? AND state = ? AND lease_owner = ? RETURNING id", args...).
					Scan(&got).Error; err != nil {
					return err
				}
				if len(got) < len(ids) {
					a.log.Warn("lost the lease on node-roles before they finished; their results are dropped", "count", len(ids)-len(got))
				}
				done = append(done, got...)
				if k.state == model.StateActive {
					active = append(active, got...)
				}
			}
			if err := ch.nodeRoles(tx, done); err != nil {
				return err
			}
			if err := unblock(tx, active, &ch); err != nil {
				return err
			}
			return a.cfg.Bus.Record(tx, ch.Events)
		})
		if err == nil {
			countResults(batch)
			break
		}
		if attempt >= 5 {
			a.log.Error("recording finished runs failed; their leases will expire and they will run again", "error", err, "count", len(batch))
			break
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	// Published before the runs stop counting as in flight, so whoever sees
	// the annealer idle also sees the hooks those results called for queued.
	a.Publish(&ch)
	for _, r := range batch {
		a.running.Delete(r.id)
		a.inFlight.Add(-1)
	}
}

// outcomeKey groups results recorded alike.
type outcomeKey struct {
	state        int
	runlog, wall string
	hasWall      bool
}

// countResults counts recorded runs by how they ended.
func countResults(batch []result) {
	for _, r := range batch {
		if r.requeue {
			metrics.AnnealTransitions.WithLabelValues("requeued").Inc()
			continue
		}
		state, _, _ := outcome(r)
		metrics.AnnealTransitions.WithLabelValues(model.StateNames[state]).Inc()
	}
}

// outcome turns a jig's answer into a state, run log and wall data.
func outcome(r result) (int, string, model.JSON) {
	if r.err != nil {
		return model.StateError, r.err.Error(), nil
	}
	res := r.res
	if res == nil {
		res = &barclamp.HookResult{State: "active"}
	}
	var wall model.JSON
	if len(res.Wall) > 0 && string(res.Wall) != "null" {
		if _, err := decodeObject(res.Wall); err != nil {
			return model.StateError, "the jig answered wall data that is not a JSON object", nil
		}
		wall = model.JSON(res.Wall)
	}
	switch res.State {
	case "", "active":
		return model.StateActive, res.Runlog, wall
	case "transition":
		return model.StateTransition, res.Runlog, wall
	case "error":
		log := res.Runlog
		if res.Error != "" && !strings.Contains(log, res.Error) {
			if log != "" {
				log += "\n"
			}
			log += res.Error
		}
		return model.StateError, log, wall
	}
	return model.StateError, fmt.Sprintf("the jig answered unknown state '%s'", res.State), wall
}

// renewLeases extends this server's claims while their runs go on.
func (a *Annealer) renewLeases(ctx context.Context) {
	t := time.NewTicker(a.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.inFlight.Load() == 0 {
			continue
		}
		err := a.db.WithContext(context.WithoutCancel(ctx)).Model(&model.NodeRole{}).Where("lease_owner = ? AND state = ?", a.owner, model.StateTransition).
			Update("lease_until", time.Now().UTC().Add(a.cfg.Lease)).Error
		if err != nil && ctx.Err() == nil {
			a.log.Warn("renewing leases failed", "error", err)
		}
	}
}

// runnable is the claim condition: TODO, node alive and available,
// deployment committed, every parent ACTIVE, and nothing running or in
// error on the node.
const runnable = `nr.state = 1 AND n.alive = ? AND n.available = ? AND d.state = 1
	AND NOT EXISTS (SELECT 1 FROM node_role_edges e JOIN node_roles p ON p.id = e.parent_id
		WHERE e.child_id = nr.id AND p.state <> 0)
	AND NOT EXISTS (SELECT 1 FROM node_roles o WHERE o.node_id = nr.node_id AND o.state IN (2, -1))`

// claim takes up to n runnable node-roles on distinct nodes, leasing them
// to this server, after returning expired leases to TODO.
func (a *Annealer) claim(ctx context.Context, n int) ([]*Work, error) {
	defer metrics.Since(metrics.AnnealClaimSeconds, time.Now())
	var work []*Work
	var ch Changes
	err := a.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		now := time.Now().UTC()
		var expired []int64
		if err := tx.Model(&model.NodeRole{}).Where("state = ? AND lease_until IS NOT NULL AND lease_until < ?", model.StateTransition, now).
			Pluck("id", &expired).Error; err != nil {
			return err
		}
		if len(expired) > 0 {
			if err := tx.Model(&model.NodeRole{}).Where("id IN ? AND state = ? AND lease_until < ?", expired, model.StateTransition, now).
				Updates(map[string]any{"state": model.StateTodo, "lease_owner": "", "lease_until": nil, "updated_at": now}).Error; err != nil {
				return err
			}
			a.log.Warn("returned node-roles whose lease expired to todo", "count", len(expired))
			metrics.AnnealLeaseExpiries.Add(float64(len(expired)))
			if err := ch.nodeRoles(tx, expired); err != nil {
				return err
			}
		}
		var cands []struct{ ID, NodeID int64 }
		from := "node_roles nr"
		if !a.cfg.Postgres {
			// Walk the TODO node-roles in claim order and stop at the limit;
			// SQLite's planner otherwise checks every TODO node-role and
			// sorts them (1,000 TODO of 10,000: 2.9 → 1.1 ms a claim).
			from = "node_roles nr INDEXED BY node_roles_todo"
		}
		q := tx.Table(from).Select("nr.id, nr.node_id").
			Joins("JOIN nodes n ON n.id = nr.node_id JOIN deployments d ON d.id = nr.deployment_id").
			Where(runnable, true, true).Order("nr.cohort, nr.id").Limit(n * 4)
		if a.cfg.Postgres {
			q = q.Clauses(clause.Locking{Strength: "UPDATE", Table: clause.Table{Name: "nr"}, Options: "SKIP LOCKED"})
		}
		if err := q.Scan(&cands).Error; err != nil {
			return err
		}
		seen := map[int64]bool{}
		var ids []int64
		for _, c := range cands {
			if !seen[c.NodeID] && len(ids) < n {
				seen[c.NodeID] = true
				ids = append(ids, c.ID)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		if err := tx.Model(&model.NodeRole{}).Where("id IN ? AND state = ?", ids, model.StateTodo).
			Updates(map[string]any{"state": model.StateTransition, "lease_owner": a.owner, "lease_until": now.Add(a.cfg.Lease),
				"run_count": gorm.Expr("run_count + 1"), "updated_at": now}).Error; err != nil {
			return err
		}
		var err error
		if work, err = a.load(tx, ids); err != nil {
			return err
		}
		if err := ch.nodeRoles(tx, ids); err != nil {
			return err
		}
		return a.cfg.Bus.Record(tx, ch.Events)
	})
	if err != nil {
		if isUnique(err) {
			// Another replica claimed on the same node first: try again.
			return nil, nil
		}
		return nil, err
	}
	a.cfg.Bus.Kick()
	return work, nil
}

func isUnique(err error) bool {
	var ce *model.ConflictError
	var ve *model.ValidationError
	tr := store.Translate(err)
	return errors.As(tr, &ce) || errors.As(tr, &ve)
}

// load reads the claimed node-roles with their nodes, roles, deployments
// and merged data: one query per table, not per node-role.
func (a *Annealer) load(tx *gorm.DB, ids []int64) ([]*Work, error) {
	var nrs []model.NodeRole
	if err := tx.Where("id IN ?", ids).Order("id").Find(&nrs).Error; err != nil {
		return nil, err
	}
	var nodeIDs, roleIDs, depIDs []int64
	for _, nr := range nrs {
		nodeIDs, roleIDs, depIDs = append(nodeIDs, nr.NodeID), append(roleIDs, nr.RoleID), append(depIDs, nr.DeploymentID)
	}
	nodes, err := byID[model.Node](tx, nodeIDs)
	if err != nil {
		return nil, err
	}
	roles, err := byID[model.Role](tx, roleIDs)
	if err != nil {
		return nil, err
	}
	deps, err := byID[model.Deployment](tx, depIDs)
	if err != nil {
		return nil, err
	}
	var bcIDs []int64
	for _, r := range roles {
		bcIDs = append(bcIDs, r.BarclampID)
	}
	bcs, err := byID[model.Barclamp](tx.Select("id", "name"), bcIDs)
	if err != nil {
		return nil, err
	}
	out := make([]*Work, 0, len(nrs))
	var merging []mergeItem
	var mergeInto []*Work
	for _, nr := range nrs {
		w := &Work{NodeRole: nr, Node: *nodes[nr.NodeID], Role: *roles[nr.RoleID], Deployment: *deps[nr.DeploymentID]}
		w.NodeRole.StateName = model.StateNames[nr.State]
		if bc := bcs[w.Role.BarclampID]; bc != nil {
			w.Barclamp = bc.Name
		}
		if w.Role.JigName != "noop" {
			merging = append(merging, mergeItem{&w.NodeRole, &w.Node, &w.Role})
			mergeInto = append(mergeInto, w)
		}
		out = append(out, w)
	}
	if len(merging) > 0 {
		merged, err := mergeAll(tx, merging)
		if err != nil {
			return nil, err
		}
		for i, w := range mergeInto {
			w.Attribs = merged[i]
		}
	}
	return out, nil
}

// byID loads the rows of T with the given ids, keyed by id; a missing one
// is an error (the claim's transaction saw it a moment ago).
func byID[T any, PT interface {
	*T
	model.Object
}](tx *gorm.DB, ids []int64) (map[int64]*T, error) {
	var rows []T
	if err := tx.Where("id IN ?", ids).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make(map[int64]*T, len(rows))
	for i := range rows {
		out[PT(&rows[i]).GetID()] = &rows[i]
	}
	for _, id := range ids {
		if out[id] == nil {
			return nil, fmt.Errorf("%T %d vanished while being claimed", *new(T), id)
		}
	}
	return out, nil
}

// Merged is the data a jig receives for nr, merged as OpenCrowbar did:
// attrib defaults and the role's template, the committed deployment-role
// data of the role and of the roles it requires (transitively), the node's
// hint for attribs of those roles, the data of parent node-roles on the same
// node or whose role has the server flag, then the node-role's own wall,
// system and user data. Later wins.
func Merged(tx *gorm.DB, nr *model.NodeRole, node *model.Node, role *model.Role) (json.RawMessage, error) {
	out, err := mergeAll(tx, []mergeItem{{nr, node, role}})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// mergeItem is one node-role to compute Merged for.
type mergeItem struct {
	nr   *model.NodeRole
	node *model.Node
	role *model.Role
}

// parentRow is a parent node-role of a node-role being merged.
type parentRow struct {
	model.NodeRole
	ChildID      int64
	ParentServer bool
}

// mergeAll is Merged for many node-roles (a claimed batch) with five
// queries in all: what they share — roles, attribs, deployment-role data —
// is read once, and their parents together.
func mergeAll(tx *gorm.DB, items []mergeItem) ([]json.RawMessage, error) {
	var allRoles []model.Role
	if err := tx.Order("id").Find(&allRoles).Error; err != nil {
		return nil, err
	}
	byName := make(map[string]*model.Role, len(allRoles))
	for i := range allRoles {
		byName[allRoles[i].Name] = &allRoles[i]
	}
	ancestors := map[int64][]*model.Role{}
	union := map[int64]bool{}
	var depIDs, childIDs []int64
	seenDep := map[int64]bool{}
	for _, it := range items {
		if _, ok := ancestors[it.role.ID]; !ok {
			ancestors[it.role.ID] = roleAncestors(it.role, byName)
			for _, r := range ancestors[it.role.ID] {
				union[r.ID] = true
			}
		}
		if !seenDep[it.nr.DeploymentID] {
			seenDep[it.nr.DeploymentID] = true
			depIDs = append(depIDs, it.nr.DeploymentID)
		}
		childIDs = append(childIDs, it.nr.ID)
	}
	roleIDs := make([]int64, 0, len(union))
	for id := range union {
		roleIDs = append(roleIDs, id)
	}
	var attribs []model.Attrib
	if err := tx.Where("role_id IN ?", roleIDs).Order("\"order\", id").Find(&attribs).Error; err != nil {
		return nil, err
	}
	var drs []model.DeploymentRole
	if err := tx.Where("deployment_id IN ? AND role_id IN ?", depIDs, roleIDs).Find(&drs).Error; err != nil {
		return nil, err
	}
	type depRole struct{ dep, role int64 }
	committed := map[depRole]model.JSON{}
	for _, dr := range drs {
		committed[depRole{dr.DeploymentID, dr.RoleID}] = dr.CommittedData
	}
	parents := map[int64][]model.NodeRole{}
	for _, part := range chunks(childIDs, 5000) {
		var rows []parentRow
		err := tx.Table("node_roles").Joins("JOIN node_role_edges e ON e.parent_id = node_roles.id").
			Joins("JOIN roles r ON r.id = node_roles.role_id").
			Where("e.child_id IN ?", part).Order("node_roles.cohort, node_roles.id").
			Select("node_roles.*, e.child_id AS child_id, r.server AS parent_server").Scan(&rows).Error
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			parents[r.ChildID] = append(parents[r.ChildID], r.NodeRole)
		}
	}

	out := make([]json.RawMessage, len(items))
	for k, it := range items {
		anc := ancestors[it.role.ID]
		mine := map[int64]bool{}
		for _, r := range anc {
			mine[r.ID] = true
		}
		var ats []*model.Attrib
		for i := range attribs {
			if r := attribs[i].RoleID; r != nil && mine[*r] {
				ats = append(ats, &attribs[i])
			}
		}
		data := map[string]any{}
		for _, at := range ats {
			if len(at.Default) > 0 && string(at.Default) != "null" {
				var v any
				if json.Unmarshal(at.Default, &v) == nil {
					put(data, mapPath(at), v)
				}
			}
		}
		for i := len(anc) - 1; i >= 0; i-- { // the role itself last
			if t, err := decodeObject(anc[i].Template); err == nil {
				merge(data, t)
			}
		}
		for i := len(anc) - 1; i >= 0; i-- {
			if d, err := decodeObject(committed[depRole{it.nr.DeploymentID, anc[i].ID}]); err == nil {
				merge(data, d)
			}
		}
		if hint, err := decodeObject(it.node.Hint); err == nil {
			for _, at := range ats {
				if v, ok := dig(hint, mapPath(at)); ok {
					put(data, mapPath(at), v)
				}
			}
		}
		for _, p := range parents[it.nr.ID] {
			for _, src := range []model.JSON{p.Wall, p.SysData, p.CommittedData} {
				if d, err := decodeObject(src); err == nil {
					merge(data, d)
				}
			}
		}
		for _, src := range []model.JSON{it.nr.Wall, it.nr.SysData, it.nr.CommittedData} {
			if d, err := decodeObject(src); err == nil {
				merge(data, d)
			}
		}
		b, err := json.Marshal(data)
		if err != nil {
			return nil, err
		}
		out[k] = b
	}
	return out, nil
}

func mapPath(a *model.Attrib) []string {
	if p := splitMap(a.Map); len(p) > 0 {
		return p
	}
	return []string{a.Name}
}

// roleAncestors returns role and every role it requires, transitively,
// nearest first (roles of one level in id order); a required role that
// does not exist is skipped.
func roleAncestors(role *model.Role, byName map[string]*model.Role) []*model.Role {
	out := []*model.Role{role}
	seen := map[string]bool{role.Name: true}
	for i := 0; i < len(out); i++ {
		var level []*model.Role
		for _, name := range out[i].Requires {
			if r := byName[name]; r != nil && !seen[name] {
				seen[name] = true
				level = append(level, r)
			}
		}
		sort.Slice(level, func(a, b int) bool { return level[a].ID < level[b].ID })
		out = append(out, level...)
	}
	return out
}

// Status is what GET /api/v2/anneal reports.
type Status struct {
	Counts   map[string]int64 `json:"counts"`
	Runnable int64            `json:"runnable"`
	InFlight int              `json:"in_flight"`
	Waiting  int64            `json:"waiting"` // in transition, waiting for a callback
	Idle     bool             `json:"idle"`
}

// Status counts node-roles by state and says whether there is work left.
func (a *Annealer) Status(ctx context.Context) (*Status, error) {
	st := &Status{Counts: map[string]int64{}, InFlight: a.InFlight()}
	for _, name := range model.StateNames {
		st.Counts[name] = 0
	}
	// One snapshot: counted statement by statement, a claim or a finish
	// between two queries could make a busy annealer look idle.
	// Read-only: on SQLite that is a deferred transaction, a WAL snapshot
	// that never queues for the write lock (an IMMEDIATE one did, and once
	// waited out the busy timeout behind heartbeats and claims: a 500).
	opts := &sql.TxOptions{ReadOnly: true}
	if a.cfg.Postgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	err := a.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		var rows []struct {
			State int
			N     int64
		}
		if err := db.Model(&model.NodeRole{}).Select("state, COUNT(*) AS n").Group("state").Scan(&rows).Error; err != nil {
			return err
		}
		for _, r := range rows {
			st.Counts[model.StateNames[r.State]] = r.N
		}
		if err := db.Table("node_roles nr").Joins("JOIN nodes n ON n.id = nr.node_id JOIN deployments d ON d.id = nr.deployment_id").
			Where(runnable, true, true).Count(&st.Runnable).Error; err != nil {
			return err
		}
		return db.Model(&model.NodeRole{}).Where("state = ? AND lease_until IS NULL", model.StateTransition).Count(&st.Waiting).Error
	}, opts)
	if err != nil {
		return nil, err
	}
	st.Idle = st.Runnable == 0 && st.Counts["transition"]-st.Waiting == 0
	return st, nil
}
