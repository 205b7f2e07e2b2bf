// Package anneal is the node-role lifecycle: binding roles to nodes with
// their requirements, committing, proposing and recalling, attribs, and
// the annealer that runs committed node-roles through their jigs in
// dependency order.
package anneal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Changes collects the events of a transaction; they are published once it
// commits.
type Changes struct {
	Events []Event
	// Unbound are the on_delete calls for node-roles deleted, made with
	// the node-role as it was (it is gone when the hook runs).
	Unbound []Unbound
	// Runnable is set when the transaction may have made work for the
	// annealer.
	Runnable bool
}

func (c *Changes) nodeRoles(tx *gorm.DB, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	for _, part := range chunks(ids, 5000) {
		var rows []struct {
			ID, NodeID, RoleID, DeploymentID int64
			State                            int
			Runlog, Node, Role, Deployment   string
		}
		err := tx.Table("node_roles nr").
			Select("nr.id, nr.node_id, nr.role_id, nr.deployment_id, nr.state, nr.runlog, n.name AS node, r.name AS role, d.name AS deployment").
			Joins("JOIN nodes n ON n.id = nr.node_id JOIN roles r ON r.id = nr.role_id JOIN deployments d ON d.id = nr.deployment_id").
			Where("nr.id IN ?", part).Order("nr.id").Scan(&rows).Error
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		for _, r := range rows {
			c.Events = append(c.Events, Event{Type: "node_role", ID: r.ID, NodeID: r.NodeID, Node: r.Node, RoleID: r.RoleID, Role: r.Role,
				DeploymentID: r.DeploymentID, Deployment: r.Deployment, State: r.State, StateName: model.StateNames[r.State],
				Runlog: r.Runlog, At: now})
			if r.State == model.StateTodo {
				c.Runnable = true
			}
		}
	}
	return nil
}

func (c *Changes) deployment(d *model.Deployment) {
	c.Events = append(c.Events, Event{Type: "deployment", ID: d.ID, DeploymentID: d.ID, Deployment: d.Name,
		State: d.State, StateName: model.DeploymentStateNames[d.State], At: time.Now().UTC()})
}

func chunks(ids []int64, n int) [][]int64 {
	var out [][]int64
	for len(ids) > n {
		out = append(out, ids[:n])
		ids = ids[n:]
	}
	return append(out, ids)
}

// Bind binds role to node in deploymentID (0: the node's deployment) as a
// PROPOSED node-role, binding first, on the same node, every required role
// the node lacks. Roles with the cluster flag make every node-role of that
// role in the deployment a parent.
func Bind(ctx context.Context, tx *gorm.DB, nodeID, roleID, deploymentID int64, ch *Changes) (*model.NodeRole, error) {
	var node model.Node
	if err := tx.WithContext(ctx).Take(&node, nodeID).Error; err != nil {
		return nil, store.Translate(err)
	}
	if deploymentID == 0 {
		deploymentID = node.DeploymentID
	}
	var dep model.Deployment
	if err := tx.Take(&dep, deploymentID).Error; err != nil {
		return nil, model.Invalid("deployment", "%d not found", deploymentID)
	}
	var role model.Role
	if err := tx.Take(&role, roleID).Error; err != nil {
		return nil, model.Invalid("role", "%d not found", roleID)
	}
	var dup model.NodeRole
	err := tx.Where("node_id = ? AND role_id = ?", node.ID, role.ID).Take(&dup).Error
	if err == nil {
		return nil, model.Conflict("role '%s' is already bound to node '%s' (node-role %d)", role.Name, node.Name, dup.ID)
	}
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, err
	}
	b := &binder{ctx: ctx, tx: tx, node: &node, dep: &dep, roles: map[string]*model.Role{}}
	if err := b.checkRequires(&role, nil); err != nil {
		return nil, err
	}
	nr, err := b.bind(&role)
	if err != nil {
		return nil, err
	}
	if err := ch.nodeRoles(tx, b.created); err != nil {
		return nil, err
	}
	return nr, nil
}

type binder struct {
	ctx     context.Context
	tx      *gorm.DB
	node    *model.Node
	dep     *model.Deployment
	roles   map[string]*model.Role
	created []int64
}

func (b *binder) role(name string) (*model.Role, error) {
	if r, ok := b.roles[name]; ok {
		return r, nil
	}
	var r model.Role
	if err := b.tx.Where("name = ?", name).Take(&r).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, nil
		}
		return nil, err
	}
	b.roles[name] = &r
	return &r, nil
}

// checkRequires walks the requirement graph from role and refuses cycles
// and requirements no loaded barclamp provides.
func (b *binder) checkRequires(role *model.Role, path []string) error {
	for i, p := range path {
		if p == role.Name {
			return model.Invalid("role", "role requirements form a cycle: %s", strings.Join(append(path[i:], role.Name), " → "))
		}
	}
	path = append(path, role.Name)
	for _, req := range role.Requires {
		r, err := b.role(req)
		if err != nil {
			return err
		}
		if r == nil {
			return model.Invalid("role", "role '%s' requires role '%s', which no loaded barclamp provides", role.Name, req)
		}
		if err := b.checkRequires(r, path); err != nil {
			return err
		}
	}
	return nil
}

func (b *binder) bind(role *model.Role) (*model.NodeRole, error) {
	ok, err := barclamp.IsEnabled(b.ctx, b.tx, b.dep.ID, role.BarclampID)
	if err != nil {
		return nil, err
	}
	if !ok {
		var bc model.Barclamp
		b.tx.Select("name").Take(&bc, role.BarclampID)
		return nil, model.Conflict("role '%s' belongs to barclamp '%s', which is not enabled in deployment '%s'; enable it with PUT /api/v2/deployments/%s/barclamps/%s",
			role.Name, bc.Name, b.dep.Name, b.dep.Name, bc.Name)
	}
	var parents []model.NodeRole
	for _, req := range role.Requires {
		r, err := b.role(req)
		if err != nil {
			return nil, err
		}
		if r.Cluster {
			var all []model.NodeRole
			if err := b.tx.Where("role_id = ? AND deployment_id = ?", r.ID, b.dep.ID).Order("id").Find(&all).Error; err != nil {
				return nil, err
			}
			if len(all) > 0 {
				parents = append(parents, all...)
				continue
			}
		}
		var have model.NodeRole
		err = b.tx.Where("node_id = ? AND role_id = ?", b.node.ID, r.ID).Take(&have).Error
		switch {
		case err == nil:
			parents = append(parents, have)
			continue
		case !errors.Is(err, gorm.ErrRecordNotFound):
			return nil, err
		}
		p, err := b.bind(r)
		if err != nil {
			return nil, err
		}
		parents = append(parents, *p)
	}
	dr := model.DeploymentRole{DeploymentID: b.dep.ID, RoleID: role.ID, ProposedData: model.EmptyObject,
		CommittedData: model.EmptyObject, Wall: model.EmptyObject}
	if err := b.tx.Where("deployment_id = ? AND role_id = ?", b.dep.ID, role.ID).FirstOrCreate(&dr).Error; err != nil {
		return nil, err
	}
	cohort := 0
	for _, p := range parents {
		cohort = max(cohort, p.Cohort+1)
	}
	nr := model.NodeRole{NodeID: b.node.ID, RoleID: role.ID, DeploymentID: b.dep.ID, State: model.StateProposed,
		Order: 10000, Cohort: cohort, Available: true, ProposedData: model.EmptyObject, CommittedData: model.EmptyObject,
		SysData: model.EmptyObject, Wall: model.EmptyObject}
	if err := b.tx.Create(&nr).Error; err != nil {
		return nil, store.Translate(err)
	}
	for _, p := range parents {
		if err := b.tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&model.NodeRoleEdge{ParentID: p.ID, ChildID: nr.ID}).Error; err != nil {
			return nil, err
		}
	}
	b.created = append(b.created, nr.ID)
	return &nr, nil
}

// Unbind deletes a node-role nothing depends on and that is not running
// (its edges to parents go with it).
func Unbind(tx *gorm.DB, nr *model.NodeRole, ch *Changes) error {
	var children []int64
	if err := tx.Model(&model.NodeRoleEdge{}).Where("parent_id = ?", nr.ID).Pluck("child_id", &children).Error; err != nil {
		return err
	}
	if len(children) > 0 {
		return model.Conflict("node-role %d is required by node-role(s) %v; unbind them first", nr.ID, children)
	}
	if nr.State == model.StateTransition {
		return model.Conflict("node-role %d is running (transition); wait for it or let it finish", nr.ID)
	}
	ev, err := hookEvent(tx, "on_delete", nr)
	if err != nil {
		return err
	}
	if err := tx.Where("child_id = ?", nr.ID).Delete(&model.NodeRoleEdge{}).Error; err != nil {
		return err
	}
	ch.Runnable = true // a node-role in error may have held its node
	ch.Unbound = append(ch.Unbound, Unbound{Event: ev, NodeID: nr.NodeID})
	return tx.Delete(nr).Error
}

// Unbound is a deleted node-role's on_delete call.
type Unbound struct {
	Event  *barclamp.HookEvent
	NodeID int64
}

// hasInactiveParent matches a node-role some of whose parents are not
// ACTIVE.
const (
	hasInactiveParent = `EXISTS (SELECT 1 FROM node_role_edges e JOIN node_roles p ON p.id = e.parent_id
		WHERE e.child_id = node_roles.id AND p.state <> 0)`
)

// commit moves the scope's PROPOSED node-roles, and its ACTIVE ones whose
// data changed (unless their role is destructive), to TODO or BLOCKED,
// committing their data.
func commit(tx *gorm.DB, scope string, arg any, rerunRoles []int64, ch *Changes) error {
	now := tx.NowFunc()
	var ids []int64
	q := tx.Model(&model.NodeRole{}).Where(scope, arg).Where("state = ?", model.StateProposed)
	if err := q.Pluck("id", &ids).Error; err != nil {
		return err
	}
	var rerun []int64
	notDestructive := tx.Model(&model.Role{}).Select("id").Where("destructive = ?", false)
	q = tx.Model(&model.NodeRole{}).Where(scope, arg).Where("state = ?", model.StateActive).Where("role_id IN (?)", notDestructive)
	if len(rerunRoles) > 0 {
		q = q.Where("(proposed_data <> committed_data OR role_id IN ?)", rerunRoles)
	} else {
		q = q.Where("proposed_data <> committed_data")
	}
	if err := q.Pluck("id", &rerun).Error; err != nil {
		return err
	}
	ids = append(ids, rerun...)
	for _, part := range chunks(ids, 5000) {
		if len(part) == 0 {
			continue
		}
		err := tx.Model(&model.NodeRole{}).Where("id IN ?", part).
			Updates(map[string]any{"state": model.StateBlocked, "committed_data": gorm.Expr("proposed_data"), "updated_at": now}).Error
		if err != nil {
			return err
		}
		err = tx.Model(&model.NodeRole{}).Where("id IN ?", part).Where("NOT " + hasInactiveParent).
			Updates(map[string]any{"state": model.StateTodo, "updated_at": now}).Error
		if err != nil {
			return err
		}
	}
	return ch.nodeRoles(tx, ids)
}

// unblock moves the BLOCKED children of the given node-roles whose parents
// are now all ACTIVE to TODO.
func unblock(tx *gorm.DB, parents []int64, ch *Changes) error {
	for _, part := range chunks(parents, 5000) {
		if len(part) == 0 {
			continue
		}
		var ids []int64
		err := tx.Model(&model.NodeRole{}).Where("state = ?", model.StateBlocked).
			Where("id IN (?)", tx.Model(&model.NodeRoleEdge{}).Select("child_id").Where("parent_id IN ?", part)).
			Where("NOT "+hasInactiveParent).Pluck("id", &ids).Error
		if err != nil || len(ids) == 0 {
			return err
		}
		if err := tx.Model(&model.NodeRole{}).Where("id IN ? AND state = ?", ids, model.StateBlocked).
			Updates(map[string]any{"state": model.StateTodo, "updated_at": tx.NowFunc()}).Error; err != nil {
			return err
		}
		if err := ch.nodeRoles(tx, ids); err != nil {
			return err
		}
	}
	return nil
}

// CommitNode commits a node's proposed node-roles and marks it available.
func CommitNode(tx *gorm.DB, node *model.Node, ch *Changes) error {
	if err := commit(tx, "node_id = ?", node.ID, nil, ch); err != nil {
		return err
	}
	node.Available = true
	ch.Runnable = true
	return tx.Model(node).Updates(map[string]any{"available": true, "updated_at": tx.NowFunc()}).Error
}

// CommitDeployment commits a deployment: its deployment-role data and its
// proposed node-roles; node-roles whose data changed run again unless
// their role is destructive.
func CommitDeployment(tx *gorm.DB, d *model.Deployment, ch *Changes) error {
	var changed []int64
	if err := tx.Model(&model.DeploymentRole{}).Where("deployment_id = ? AND proposed_data <> committed_data", d.ID).
		Pluck("role_id", &changed).Error; err != nil {
		return err
	}
	if err := tx.Model(&model.DeploymentRole{}).Where("deployment_id = ?", d.ID).
		Updates(map[string]any{"committed_data": gorm.Expr("proposed_data"), "updated_at": tx.NowFunc()}).Error; err != nil {
		return err
	}
	if err := commit(tx, "deployment_id = ?", d.ID, changed, ch); err != nil {
		return err
	}
	if d.State != model.DeploymentCommitted {
		d.State = model.DeploymentCommitted
		if err := tx.Model(d).Updates(map[string]any{"state": d.State, "updated_at": tx.NowFunc()}).Error; err != nil {
			return err
		}
		ch.deployment(d)
	}
	ch.Runnable = true
	return nil
}

// ProposeDeployment returns a committed deployment to PROPOSED so it can
// be changed; the annealer leaves it alone until it is committed again.
func ProposeDeployment(tx *gorm.DB, d *model.Deployment, ch *Changes) error {
	if d.System {
		return model.Conflict("deployment '%s' is the system deployment and is always committed", d.Name)
	}
	if d.State == model.DeploymentProposed {
		return model.Conflict("deployment '%s' is already proposed", d.Name)
	}
	d.State = model.DeploymentProposed
	ch.deployment(d)
	return tx.Model(d).Updates(map[string]any{"state": d.State, "updated_at": tx.NowFunc()}).Error
}

// RecallDeployment withdraws a proposal: node-roles still PROPOSED are
// removed and deployment-role data returns to what was committed. A
// deployment with node-roles left is committed again.
func RecallDeployment(tx *gorm.DB, d *model.Deployment, ch *Changes) error {
	if d.State != model.DeploymentProposed {
		return model.Conflict("deployment '%s' is not proposed; only a proposal can be recalled", d.Name)
	}
	proposed := tx.Model(&model.NodeRole{}).Select("id").Where("deployment_id = ? AND state = ?", d.ID, model.StateProposed)
	var outside int64
	if err := tx.Model(&model.NodeRoleEdge{}).Where("parent_id IN (?)", proposed).
		Where("child_id NOT IN (?)", proposed).Count(&outside).Error; err != nil {
		return err
	}
	if outside > 0 {
		return model.Conflict("deployment '%s': %d node-role(s) outside the proposal depend on proposed ones; unbind them first", d.Name, outside)
	}
	var ids []int64
	if err := proposed.Pluck("id", &ids).Error; err != nil {
		return err
	}
	for _, part := range chunks(ids, 5000) {
		if len(part) == 0 {
			continue
		}
		if err := tx.Where("parent_id IN ? OR child_id IN ?", part, part).Delete(&model.NodeRoleEdge{}).Error; err != nil {
			return err
		}
		if err := tx.Where("id IN ?", part).Delete(&model.NodeRole{}).Error; err != nil {
			return err
		}
	}
	if err := tx.Model(&model.DeploymentRole{}).Where("deployment_id = ?", d.ID).
		Updates(map[string]any{"proposed_data": gorm.Expr("committed_data"), "updated_at": tx.NowFunc()}).Error; err != nil {
		return err
	}
	var left int64
	if err := tx.Model(&model.NodeRole{}).Where("deployment_id = ?", d.ID).Count(&left).Error; err != nil {
		return err
	}
	if left > 0 {
		d.State = model.DeploymentCommitted
		ch.Runnable = true
	}
	ch.deployment(d)
	return tx.Model(d).Updates(map[string]any{"state": d.State, "updated_at": tx.NowFunc()}).Error
}

// Retry sends an ERROR node-role back to TODO (BLOCKED if a parent is no
// longer ACTIVE).
func Retry(tx *gorm.DB, nr *model.NodeRole, ch *Changes) error {
	if nr.State != model.StateError {
		return model.Conflict("node-role %d is %s; only a node-role in error can be retried", nr.ID, model.StateNames[nr.State])
	}
	if err := tx.Model(nr).Updates(map[string]any{"state": model.StateBlocked, "updated_at": tx.NowFunc()}).Error; err != nil {
		return err
	}
	if err := tx.Model(&model.NodeRole{}).Where("id = ?", nr.ID).Where("NOT " + hasInactiveParent).
		Updates(map[string]any{"state": model.StateTodo}).Error; err != nil {
		return err
	}
	return ch.nodeRoles(tx, []int64{nr.ID})
}

// Complete finishes a node-role a hook left in TRANSITION (waiting for
// something outside crowbar): ACTIVE or ERROR, with wall data and run log.
func Complete(tx *gorm.DB, nr *model.NodeRole, state int, wall model.JSON, runlog string, ch *Changes) error {
	if nr.State != model.StateTransition || nr.LeaseOwner != "" {
		return model.Conflict("node-role %d is %s; only a node-role waiting in transition can be completed", nr.ID, model.StateNames[nr.State])
	}
	if state != model.StateActive && state != model.StateError {
		return model.Invalid("state", "a transition ends in active (0) or error (-1), not %d", state)
	}
	upd := map[string]any{"state": state, "runlog": runlog, "updated_at": tx.NowFunc()}
	if wall != nil {
		upd["wall"] = wall
	}
	if err := tx.Model(nr).Updates(upd).Error; err != nil {
		return err
	}
	if err := ch.nodeRoles(tx, []int64{nr.ID}); err != nil {
		return err
	}
	if state == model.StateActive {
		return unblock(tx, []int64{nr.ID}, ch)
	}
	return nil
}

// DeploymentState derives a deployment's state: a committed deployment is
// ACTIVE when all its node-roles are, ERROR when any is in error.
func DeploymentState(db *gorm.DB, d *model.Deployment) (int, error) {
	if d.State != model.DeploymentCommitted {
		return d.State, nil
	}
	var rows []struct {
		State int
		N     int64
	}
	if err := db.Model(&model.NodeRole{}).Select("state, COUNT(*) AS n").Where("deployment_id = ?", d.ID).
		Group("state").Scan(&rows).Error; err != nil {
		return 0, err
	}
	var total, active int64
	for _, r := range rows {
		if r.State == model.StateError {
			return model.DeploymentError, nil
		}
		total += r.N
		if r.State == model.StateActive {
			active += r.N
		}
	}
	if total > 0 && total == active {
		return model.DeploymentActive, nil
	}
	return model.DeploymentCommitted, nil
}

// decodeObject parses raw as a JSON object ({} when empty).
func decodeObject(raw []byte) (map[string]any, error) {
	m := map[string]any{}
	if len(raw) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}
