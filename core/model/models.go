// Package model holds crowbar's domain objects, the rules their fields obey
// and the errors the domain reports. Column names equal JSON names, so a
// field is addressed the same way in a query filter, a body and the database.
package model

import "time"

// Base carries the fields every stored object has.
type Base struct {
	ID        int64     `json:"id" gorm:"primaryKey"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// GetID returns the object's database id.
func (b *Base) GetID() int64 { return b.ID }

// Node is a machine under crowbar's management.
type Node struct {
	Base
	Name         string `json:"name"`
	Alias        string `json:"alias"`
	Description  string `json:"description"`
	Order        int    `json:"order"`
	Admin        bool   `json:"admin"`
	Alive        bool   `json:"alive"`
	Available    bool   `json:"available"`
	Allocated    bool   `json:"allocated"`
	Bootenv      string `json:"bootenv"`
	DeploymentID int64  `json:"deployment_id"`
	TargetRoleID *int64 `json:"target_role_id"`
	Discovery    JSON   `json:"discovery"`
	Hint         JSON   `json:"hint"`
}

// Deployment groups nodes and the roles bound to them.
type Deployment struct {
	Base
	Name        string `json:"name"`
	Description string `json:"description"`
	System      bool   `json:"system"`
	ParentID    *int64 `json:"parent_id"`
	State       int    `json:"state"`
	// StateName is State's name; not stored.
	StateName string `json:"state_name" gorm:"-"`
}

// SystemDeploymentID is the id of the deployment created by the first
// migration; every node starts in it.
const SystemDeploymentID = 1

// Barclamp is a loaded module that provides roles, attribs and routes.
type Barclamp struct {
	Base
	Name        string `json:"name"`
	Description string `json:"description"`
	Version     string `json:"version"`
	SourcePath  string `json:"source_path"`
	Digest      string `json:"digest"` // sha256 of the module
	ABI         int    `json:"abi" gorm:"column:abi"`
	Source      string `json:"source"` // "embedded" (first-party) or "installed"
	Manifest    JSON   `json:"manifest"`
	// Status is the load state in this server ("loaded", or the error);
	// it is not stored.
	Status string `json:"status" gorm:"-"`
}

// DeploymentBarclamp enables a barclamp in a deployment.
type DeploymentBarclamp struct {
	DeploymentID int64     `json:"deployment_id" gorm:"primaryKey"`
	BarclampID   int64     `json:"barclamp_id" gorm:"primaryKey"`
	CreatedAt    time.Time `json:"created_at"`
}

// Jig is a way of running a role on a node (noop, wasm, script).
type Jig struct {
	Base
	Name           string `json:"name"`
	Description    string `json:"description"`
	Active         bool   `json:"active"`
	ClientRoleName string `json:"client_role_name"`
	Order          int    `json:"order"`
}

// Role is something a node can be made to be.
type Role struct {
	Base
	Name        string     `json:"name"`
	Description string     `json:"description"`
	BarclampID  int64      `json:"barclamp_id"`
	JigName     string     `json:"jig_name"`
	Requires    StringList `json:"requires"`
	Library     bool       `json:"library"`
	Implicit    bool       `json:"implicit"`
	Bootstrap   bool       `json:"bootstrap"`
	Discovery   bool       `json:"discovery"`
	Server      bool       `json:"server"`
	Cluster     bool       `json:"cluster"`
	Destructive bool       `json:"destructive"`
	Abstract    bool       `json:"abstract"`
	Milestone   bool       `json:"milestone"`
	Powersave   bool       `json:"powersave"`
	Service     bool       `json:"service"`
	Cohort      int        `json:"cohort"`
	Template    JSON       `json:"template"`
	// Script is what the script jig runs on the node (through its agent).
	Script string `json:"script"`
}

// DeploymentRole holds a role's configuration within one deployment.
type DeploymentRole struct {
	Base
	DeploymentID  int64 `json:"deployment_id"`
	RoleID        int64 `json:"role_id"`
	ProposedData  JSON  `json:"proposed_data"`
	CommittedData JSON  `json:"committed_data"`
	Wall          JSON  `json:"wall"`
}

// NodeRole binds a role to a node within a deployment; the annealer drives
// its state.
type NodeRole struct {
	Base
	NodeID        int64   `json:"node_id"`
	RoleID        int64   `json:"role_id"`
	DeploymentID  int64   `json:"deployment_id"`
	State         int     `json:"state"`
	Status        *string `json:"status"`
	RunCount      int     `json:"run_count"`
	Runlog        string  `json:"runlog"`
	Order         int     `json:"order"`
	Cohort        int     `json:"cohort"`
	Available     bool    `json:"available"`
	ProposedData  JSON    `json:"proposed_data"`
	CommittedData JSON    `json:"committed_data"`
	SysData       JSON    `json:"sysdata" gorm:"column:sysdata"`
	Wall          JSON    `json:"wall"`
	// StateName is State's name (proposed, todo…); not stored.
	StateName string `json:"state_name" gorm:"-"`
	// The annealer's claim on a node-role it runs: which server, until when.
	LeaseOwner string     `json:"-"`
	LeaseUntil *time.Time `json:"-"`
}

// NodeRoleEdge says the node-role Child needs Parent ACTIVE first.
type NodeRoleEdge struct {
	ParentID int64 `json:"parent_id" gorm:"primaryKey;autoIncrement:false"`
	ChildID  int64 `json:"child_id" gorm:"primaryKey;autoIncrement:false"`
}

// Node-role states, numbered as OpenCrowbar numbered them.
const (
	StateError      = -1
	StateActive     = 0
	StateTodo       = 1
	StateTransition = 2
	StateBlocked    = 3
	StateProposed   = 4
)

// StateNames names the node-role states.
var StateNames = map[int]string{StateError: "error", StateActive: "active", StateTodo: "todo",
	StateTransition: "transition", StateBlocked: "blocked", StateProposed: "proposed"}

// Deployment states: PROPOSED and COMMITTED are stored; ACTIVE and ERROR are
// derived from a committed deployment's node-roles.
const (
	DeploymentError     = -1
	DeploymentProposed  = 0
	DeploymentCommitted = 1
	DeploymentActive    = 2
)

// DeploymentStateNames names the deployment states.
var DeploymentStateNames = map[int]string{DeploymentError: "error", DeploymentProposed: "proposed",
	DeploymentCommitted: "committed", DeploymentActive: "active"}

// Attrib names a piece of configuration data and where it lives.
type Attrib struct {
	Base
	Name        string `json:"name"`
	Description string `json:"description"`
	BarclampID  int64  `json:"barclamp_id"`
	RoleID      *int64 `json:"role_id"`
	Map         string `json:"map"`
	Schema      JSON   `json:"schema"`
	Default     Value  `json:"default"`
	Writable    bool   `json:"writable"`
	Order       int    `json:"order"`
}

// Group is a named set of nodes (a rack, a tag, a UI grouping).
type Group struct {
	Base
	Name        string `json:"name"`
	Description string `json:"description"`
	Category    string `json:"category"`
	Order       int    `json:"order"`
}

// GroupNode is one membership of a node in a group.
type GroupNode struct {
	GroupID   int64     `json:"group_id" gorm:"primaryKey"`
	NodeID    int64     `json:"node_id" gorm:"primaryKey"`
	CreatedAt time.Time `json:"created_at"`
}

// User is an account that may call the API. Only what HTTP Digest needs
// is stored (HA1 per algorithm, for the realm it was computed in), never the
// password itself.
type User struct {
	Base
	Username  string `json:"username"`
	Email     string `json:"email"`
	Admin     bool   `json:"admin"`
	APIAccess bool   `json:"api_access" gorm:"column:api_access"`
	Role      string `json:"role"`
	// Password is write-only: set it in a request body; it is turned into
	// HA1s and never stored or shown.
	Password    string `json:"password,omitempty" gorm:"-"`
	HA1MD5      string `json:"-" gorm:"column:ha1_md5"`
	HA1SHA256   string `json:"-" gorm:"column:ha1_sha256"`
	DigestRealm string `json:"-" gorm:"column:digest_realm"`
}

// JoinToken lets agents join the server (create or update their node)
// until it expires or is revoked. Only its hash is stored.
type JoinToken struct {
	Base
	Description string     `json:"description"`
	TokenHash   string     `json:"-"`
	CreatedBy   string     `json:"created_by"`
	ExpiresAt   time.Time  `json:"expires_at"`
	RevokedAt   *time.Time `json:"revoked_at"`
	Uses        int        `json:"uses"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	// Token is the secret, shown once when the token is created; not stored.
	Token string `json:"token,omitempty" gorm:"-"`
	// State is active, expired or revoked; not stored.
	State string `json:"state" gorm:"-"`
}

// NodeAgent is how the server reaches a node's agent, learned when it
// joined and kept fresh by its heartbeats.
type NodeAgent struct {
	NodeID        int64     `json:"node_id" gorm:"primaryKey;autoIncrement:false"`
	ZeroOSID      string    `json:"zero_os_id" gorm:"column:zero_os_id"`
	Address       string    `json:"address"`
	TLS           bool      `json:"tls" gorm:"column:tls"`
	Fingerprint   string    `json:"fingerprint"`
	KeyHash       string    `json:"-"`
	Version       string    `json:"version"`
	JoinTokenID   *int64    `json:"join_token_id"`
	JoinedAt      time.Time `json:"joined_at"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
}

// TableName keeps the column-equals-JSON rule for GroupNode's table.
func (GroupNode) TableName() string { return "group_nodes" }
