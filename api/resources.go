package api

import (
	"net/http"

	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/gorilla/mux"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// The references bodies and filters may use.
var (
	refDeployment = Ref{Key: "deployment", Field: "deployment_id", Kind: "deployment", Table: "deployments", NameCol: "name"}
	refParent     = Ref{Key: "parent", Field: "parent_id", Kind: "deployment", Table: "deployments", NameCol: "name"}
	refNode       = Ref{Key: "node", Field: "node_id", Kind: "node", Table: "nodes", NameCol: "name"}
	refRole       = Ref{Key: "role", Field: "role_id", Kind: "role", Table: "roles", NameCol: "name"}
	refTargetRole = Ref{Key: "target_role", Field: "target_role_id", Kind: "role", Table: "roles", NameCol: "name"}
	refBarclamp   = Ref{Key: "barclamp", Field: "barclamp_id", Kind: "barclamp", Table: "barclamps", NameCol: "name"}
)

type resources struct {
	nodes           *Resource[model.Node]
	deployments     *Resource[model.Deployment]
	deploymentRoles *Resource[model.DeploymentRole]
	groups          *Resource[model.Group]
	jigs            *Resource[model.Jig]
	roles           *Resource[model.Role]
	attribs         *Resource[model.Attrib]
	barclamps       *Resource[model.Barclamp]
	nodeRoles       *Resource[model.NodeRole]
	users           *Resource[model.User]
}

func (srv *Server) newResources(s *store.Store) resources {
	return resources{
		users: (&Resource[model.User]{
			Type: "user", Path: "users", NameCol: "username", Ops: CRUD,
			Writable: []string{"username", "email", "role", "api_access", "password"},
			Hook:     srv.usersHook,
			Changed:  func(u *model.User) { srv.auth.UserChanged(u.Username) },
		}).init(s),
		nodes: (&Resource[model.Node]{
			Type: "node", Path: "nodes", NameCol: "name", Ops: CRUD,
			Writable: []string{"name", "description", "order", "admin", "alive", "available", "allocated",
				"bootenv", "deployment_id", "target_role_id", "discovery", "hint"},
			Refs:    []Ref{refDeployment, refTargetRole},
			Changed: func(*model.Node) { srv.annealer.Kick() }, // alive, available or deployment may have changed
			Created: func(n *model.Node) { srv.hooks.Node("on_node_create", n) },
			Deleted: func(n *model.Node) { srv.hooks.Node("on_node_delete", n); srv.transport.Forget(n.ID) },
		}).init(s),
		deployments: (&Resource[model.Deployment]{
			Type: "deployment", Path: "deployments", NameCol: "name", Ops: CRUD,
			Writable: []string{"name", "description", "parent_id"},
			Refs:     []Ref{refParent},
			Saved:    inheritBarclamps,
			Present:  srv.presentDeployment,
			Created:  func(d *model.Deployment) { srv.hooks.Deployment("on_deployment_create", d) },
			Deleted:  func(d *model.Deployment) { srv.hooks.Deployment("on_deployment_delete", d) },
		}).init(s),
		deploymentRoles: (&Resource[model.DeploymentRole]{
			Type: "deployment_role", Path: "deployment_roles", Ops: CRUD,
			Writable:   []string{"proposed_data"},
			CreateOnly: []string{"deployment_id", "role_id"},
			Refs:       []Ref{refDeployment, refRole},
		}).init(s),
		groups: (&Resource[model.Group]{
			Type: "group", Path: "groups", NameCol: "name", Ops: CRUD,
			Writable: []string{"name", "description", "category", "order"},
		}).init(s),
		jigs: (&Resource[model.Jig]{
			Type: "jig", Path: "jigs", NameCol: "name", Ops: CRUD,
			Writable: []string{"name", "description", "active", "client_role_name", "order"},
		}).init(s),
		roles: (&Resource[model.Role]{
			Type: "role", Path: "roles", NameCol: "name", Ops: ReadOnly,
			Refs: []Ref{refBarclamp},
		}).init(s),
		attribs: (&Resource[model.Attrib]{
			Type: "attrib", Path: "attribs", NameCol: "name", Ops: ReadOnly,
			Refs: []Ref{refBarclamp, refRole},
		}).init(s),
		barclamps: (&Resource[model.Barclamp]{
			Type: "barclamp", Path: "barclamps", NameCol: "name", Ops: ReadOnly,
			Present: func(b *model.Barclamp) { b.Status = srv.barclamps.Status(b.Name) },
		}).init(s),
		nodeRoles: (&Resource[model.NodeRole]{
			Type: "node_role", Path: "node_roles", Ops: ReadOnly,
			Refs:    []Ref{refNode, refRole, refDeployment},
			Present: presentNodeRole,
		}).init(s),
	}
}

func (s *Server) mountV2(r prefixed) {
	res := s.res
	res.nodes.Mount(r)
	res.deployments.Mount(r)
	res.deploymentRoles.Mount(r)
	res.groups.Mount(r)
	res.jigs.Mount(r)
	res.roles.Mount(r)
	res.attribs.Mount(r)
	res.barclamps.Mount(r)
	res.nodeRoles.Mount(r)
	res.users.Mount(r)
	s.mountLifecycle(r)
	s.mountAgents(r)
	s.mountSession(r)
	r.HandleFunc("/tokens", s.createToken).Methods(http.MethodPost)
	r.HandleFunc("/audit", s.listAudit).Methods(http.MethodGet)
	r.HandleFunc("/barclamps", s.installBarclamp).Methods(http.MethodPost)
	r.HandleFunc("/barclamps/{id}", s.removeBarclamp).Methods(http.MethodDelete)
	r.HandleFunc("/deployments/{id}/barclamps", s.deploymentBarclamps).Methods(http.MethodGet)
	r.HandleFunc("/deployments/{id}/barclamps/{name}", s.enableBarclamp).Methods(http.MethodPut)
	r.HandleFunc("/deployments/{id}/barclamps/{name}", s.disableBarclamp).Methods(http.MethodDelete)

	r.HandleFunc("/nodes/{id}/node_roles", s.nestedList(res.nodes.Type, "nodes", func(id int64) func(*gorm.DB) *gorm.DB {
		return func(q *gorm.DB) *gorm.DB { return q.Where("node_id = ?", id) }
	}, res.nodeRoles.ListScoped)).Methods(http.MethodGet)
	r.HandleFunc("/deployments/{id}/node_roles", s.nestedList(res.deployments.Type, "deployments", func(id int64) func(*gorm.DB) *gorm.DB {
		return func(q *gorm.DB) *gorm.DB { return q.Where("deployment_id = ?", id) }
	}, res.nodeRoles.ListScoped)).Methods(http.MethodGet)
	r.HandleFunc("/deployments/{id}/roles", s.nestedList(res.deployments.Type, "deployments", func(id int64) func(*gorm.DB) *gorm.DB {
		return func(q *gorm.DB) *gorm.DB {
			return q.Where("id IN (?)", s.store.DB.Model(&model.DeploymentRole{}).Select("role_id").Where("deployment_id = ?", id))
		}
	}, res.roles.ListScoped)).Methods(http.MethodGet)
	r.HandleFunc("/groups/{id}/nodes", s.nestedList(res.groups.Type, "groups", func(id int64) func(*gorm.DB) *gorm.DB {
		return func(q *gorm.DB) *gorm.DB {
			return q.Where("id IN (?)", s.store.DB.Model(&model.GroupNode{}).Select("node_id").Where("group_id = ?", id))
		}
	}, res.nodes.ListScoped)).Methods(http.MethodGet)
	r.HandleFunc("/groups/{id}/nodes", s.addGroupNode).Methods(http.MethodPost)
	r.HandleFunc("/groups/{id}/nodes/{node}", s.addGroupNode).Methods(http.MethodPut)
	r.HandleFunc("/groups/{id}/nodes/{node}", s.removeGroupNode).Methods(http.MethodDelete)
}

// nestedList serves GET /:parent/:id/:children: it resolves the parent (404
// when missing) and lists the children scoped to it.
func (s *Server) nestedList(kind, table string, scope func(id int64) func(*gorm.DB) *gorm.DB,
	list func(http.ResponseWriter, *http.Request, func(*gorm.DB) *gorm.DB)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := store.ResolveID(r.Context(), s.store.DB, kind, table, "name", mux.Vars(r)["id"])
		if err != nil {
			writeError(w, r, kind, err)
			return
		}
		list(w, r, scope(id))
	}
}

// addGroupNode adds a node to a group: POST /groups/:id/nodes with
// {"node": name-or-id}, or PUT /groups/:id/nodes/:node. Adding a member
// twice is not an error. It answers with the node.
func (s *Server) addGroupNode(w http.ResponseWriter, r *http.Request) {
	nodeKey := mux.Vars(r)["node"]
	if nodeKey == "" {
		raw, err := readOne(r, "node", fieldSet{}, []Ref{refNode})
		if err != nil {
			writeError(w, r, "node", err)
			return
		}
		if err := jsonString(raw, &nodeKey); err != nil {
			writeError(w, r, "node", model.BadRequest("field 'node' must be a node name or id"))
			return
		}
	}
	var node *model.Node
	err := s.store.Tx(r.Context(), func(tx *gorm.DB) error {
		group, err := s.res.groups.Find(r.Context(), tx, mux.Vars(r)["id"])
		if err != nil {
			return err
		}
		if node, err = s.res.nodes.Find(r.Context(), tx, nodeKey); err != nil {
			if mux.Vars(r)["node"] == "" {
				return filterError("node", err)
			}
			return err
		}
		gn := model.GroupNode{GroupID: group.ID, NodeID: node.ID}
		return store.Translate(tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&gn).Error)
	})
	if err != nil {
		writeError(w, r, "node", err)
		return
	}
	writeObject(w, r, http.StatusOK, "node", node)
}

// removeGroupNode removes a node from a group; removing a non-member is 404.
func (s *Server) removeGroupNode(w http.ResponseWriter, r *http.Request) {
	err := s.store.Tx(r.Context(), func(tx *gorm.DB) error {
		group, err := s.res.groups.Find(r.Context(), tx, mux.Vars(r)["id"])
		if err != nil {
			return err
		}
		node, err := s.res.nodes.Find(r.Context(), tx, mux.Vars(r)["node"])
		if err != nil {
			return err
		}
		res := tx.Where("group_id = ? AND node_id = ?", group.ID, node.ID).Delete(&model.GroupNode{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return &model.NotFoundError{Kind: "group member", Key: node.Name}
		}
		return nil
	})
	if err != nil {
		writeError(w, r, "node", err)
		return
	}
	writeEmpty(w, "node")
}
