//go:build wasip1

// Package sdk is what a barclamp author imports. A barclamp is a Go main
// package built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o x.wasm .
//
// that declares itself once, from init, with Register:
//
//	func init() {
//		sdk.Register(&sdk.Barclamp{
//			Name: "hello", Version: "1.0.0",
//			Roles: []sdk.Role{{Name: "hello-node", OnTodo: greet}},
//			Routes: []sdk.Route{{Method: "GET", Path: "/greetings/{name}", Handler: hello}},
//		})
//	}
//	func main() {} // required by the Go toolchain; never called
//
// The SDK exports the ABI functions (docs/abi.md), routes HTTP requests to
// the declared handlers and hooks to the declared functions, and wraps the
// host's functions: Log, API, the KV store and Now.
package sdk

import (
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
)

// Barclamp declares a barclamp: what it is, the roles and attribs it
// registers, its HTTP routes under /<name>/v2 and its barclamp-wide hooks.
type Barclamp struct {
	Name        string
	Version     string
	Description string
	Roles       []Role
	Attribs     []Attrib // attribs not tied to one role
	Routes      []Route

	// Barclamp-wide notifications, sent whether or not the barclamp is
	// enabled in the deployment concerned. The Event carries the node (or
	// deployment) as it was.
	OnNodeCreate       HookFunc
	OnNodeDelete       HookFunc
	OnDeploymentCreate HookFunc
	OnDeploymentDelete HookFunc
}

// Role declares a role. A role with OnTodo runs through the wasm jig (the
// annealer calls OnTodo to converge it); one without runs through noop
// unless Jig says otherwise. OnProposed, OnActive and OnError are
// notifications: the server calls them after a node-role of the role
// entered that state, asynchronously, and their answer changes nothing but
// the server's log.
type Role struct {
	Name        string
	Description string
	Jig         string   // "noop", "wasm" or "script"; default from the hooks and Script
	Requires    []string // roles a node needs first
	// Flags: implicit, bootstrap, discovery, server, cluster, destructive,
	// milestone, library, abstract, powersave, service.
	Flags    []string
	Cohort   int
	Template map[string]any // the role's default data
	Attribs  []Attrib
	// Script, when set, is run on the node by the script jig: through the
	// node's agent with bash (or its own #! line), the merged attribs as
	// JSON on stdin and in the file $CROWBAR_ATTRIBS; JSON it writes to
	// $CROWBAR_WALL becomes the node-role's wall data; exit 0 is ACTIVE,
	// anything else ERROR. A role has a script or an OnTodo, not both.
	Script string

	OnProposed HookFunc
	OnTodo     HookFunc
	OnActive   HookFunc
	OnError    HookFunc
	// OnDelete is told after a node-role of the role was unbound (deleted);
	// its event carries the node-role as it was.
	OnDelete HookFunc
}

// Attrib declares an attrib: a named, schema-checked value stored at Map
// (a slash path such as "crowbar/target_os") in role data.
type Attrib struct {
	Name        string
	Description string
	Map         string
	Schema      map[string]any // a JSON schema
	Default     any
	Writable    bool
	Order       int
}

// Route declares an HTTP route under /<barclamp>/v2. Path parameters are
// written {name} and read with Request.Param.
type Route struct {
	Method  string
	Path    string
	Handler HandlerFunc
	// Open skips the server's authentication: the handler must check the
	// caller itself (for machines fetching boot files, say).
	Open bool
}

// HandlerFunc answers an HTTP request.
type HandlerFunc func(*Request) *Response

// HookFunc handles a hook event.
type HookFunc func(*Event) *Result

var current *Barclamp

// Register declares the barclamp; call it once, from init.
func Register(b *Barclamp) {
	if current != nil {
		panic("sdk.Register called twice")
	}
	current = b
}

type attribJSON struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Map         string          `json:"map"`
	Schema      any             `json:"schema,omitempty"`
	Default     json.RawMessage `json:"default,omitempty"`
	Writable    bool            `json:"writable"`
	Order       int             `json:"order"`
}

type roleJSON struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Jig         string         `json:"jig,omitempty"`
	Requires    []string       `json:"requires"`
	Flags       []string       `json:"flags"`
	Cohort      int            `json:"cohort"`
	Template    map[string]any `json:"template,omitempty"`
	Attribs     []attribJSON   `json:"attribs"`
	Hooks       []string       `json:"hooks"`
	Script      string         `json:"script,omitempty"`
}

type routeJSON struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Open   bool   `json:"open,omitempty"`
}

type manifestJSON struct {
	ABI         int          `json:"abi"`
	Name        string       `json:"name"`
	Version     string       `json:"version"`
	Description string       `json:"description"`
	Roles       []roleJSON   `json:"roles"`
	Attribs     []attribJSON `json:"attribs"`
	Routes      []routeJSON  `json:"routes"`
	Hooks       []string     `json:"hooks"`
}

func attribsJSON(as []Attrib) []attribJSON {
	out := []attribJSON{}
	for _, a := range as {
		var def json.RawMessage
		if a.Default != nil {
			def, _ = json.Marshal(a.Default)
		}
		out = append(out, attribJSON{Name: a.Name, Description: a.Description, Map: a.Map, Schema: a.Schema,
			Default: def, Writable: a.Writable, Order: a.Order})
	}
	return out
}

func hookNames(pairs ...any) []string {
	out := []string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		if f, _ := pairs[i+1].(HookFunc); f != nil {
			out = append(out, pairs[i].(string))
		}
	}
	return out
}

func (b *Barclamp) manifest() manifestJSON {
	if b == nil {
		return manifestJSON{ABI: abiVersion}
	}
	m := manifestJSON{ABI: abiVersion, Name: b.Name, Version: b.Version, Description: b.Description,
		Roles: []roleJSON{}, Attribs: attribsJSON(b.Attribs), Routes: []routeJSON{},
		Hooks: hookNames("on_node_create", b.OnNodeCreate, "on_node_delete", b.OnNodeDelete,
			"on_deployment_create", b.OnDeploymentCreate, "on_deployment_delete", b.OnDeploymentDelete)}
	for _, r := range b.Roles {
		m.Roles = append(m.Roles, roleJSON{Name: r.Name, Description: r.Description, Jig: r.Jig,
			Requires: append([]string{}, r.Requires...), Flags: append([]string{}, r.Flags...), Cohort: r.Cohort,
			Template: r.Template, Attribs: attribsJSON(r.Attribs), Script: r.Script,
			Hooks: hookNames("on_proposed", r.OnProposed, "on_todo", r.OnTodo, "on_active", r.OnActive, "on_error", r.OnError,
				"on_delete", r.OnDelete)})
	}
	for _, rt := range b.Routes {
		m.Routes = append(m.Routes, routeJSON{Method: rt.Method, Path: rt.Path, Open: rt.Open})
	}
	return m
}

// serve routes a request to its handler; a handler's panic becomes a 500
// reply rather than a trap, so the instance stays usable.
func (b *Barclamp) serve(req *Request) (resp *Response) {
	defer func() {
		if v := recover(); v != nil {
			resp = Error(500, "barclamp %s panicked: %v", b.Name, v)
			Log(LevelError, "handler panicked", "route", req.Route, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	for _, rt := range b.Routes {
		if rt.Method+" "+rt.Path == req.Route {
			if r := rt.Handler(req); r != nil {
				return r
			}
			return &Response{Status: 204}
		}
	}
	return Error(404, "barclamp %s has no route %s", b.Name, req.Route)
}

func (b *Barclamp) hook(ev *Event) (res *Result) {
	defer func() {
		if v := recover(); v != nil {
			res = Failed("hook %s panicked: %v", ev.Hook, v)
		}
	}()
	var f HookFunc
	switch ev.Hook {
	case "on_node_create":
		f = b.OnNodeCreate
	case "on_node_delete":
		f = b.OnNodeDelete
	case "on_deployment_create":
		f = b.OnDeploymentCreate
	case "on_deployment_delete":
		f = b.OnDeploymentDelete
	default:
		for _, r := range b.Roles {
			if r.Name != ev.Role {
				continue
			}
			switch ev.Hook {
			case "on_proposed":
				f = r.OnProposed
			case "on_todo":
				f = r.OnTodo
			case "on_active":
				f = r.OnActive
			case "on_error":
				f = r.OnError
			case "on_delete":
				f = r.OnDelete
			}
		}
	}
	if f == nil {
		return Failed("barclamp %s has no %s hook for role '%s'", b.Name, ev.Hook, ev.Role)
	}
	if res = f(ev); res == nil {
		res = &Result{}
	}
	return res
}

// Caller is who made a request.
type Caller struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	Scheme   string `json:"scheme"` // digest, bearer, internal, or "" on open routes
}

// Request is an HTTP request to one of the barclamp's routes.
type Request struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Host   string `json:"host"` // host[:port] the client asked for: how it reaches the server
	// Advertise is the URL machines reach the server at (its
	// --advertise-url), for anything handed to a machine; "" from a server
	// that does not advertise one.
	Advertise string              `json:"advertise,omitempty"`
	Route     string              `json:"route"` // "GET /greetings/{name}"
	Params    map[string]string   `json:"params"`
	Query     map[string][]string `json:"query"`
	Headers   map[string][]string `json:"headers"`
	Body      []byte              `json:"body"`
	Caller    *Caller             `json:"caller"`
}

// Param returns the path parameter name.
func (r *Request) Param(name string) string { return r.Params[name] }

// QueryValue returns the first value of query parameter name.
func (r *Request) QueryValue(name string) string {
	if v := r.Query[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Header returns the first value of header name (canonical form, e.g. "Content-Type").
func (r *Request) Header(name string) string {
	if v := r.Headers[canonicalHeader(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Decode reads the JSON body into v, refusing unknown fields.
func (r *Request) Decode(v any) error {
	dec := json.NewDecoder(strings.NewReader(string(r.Body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON body: %v", err)
	}
	return nil
}

// Response is the reply to a request.
type Response struct {
	Status  int                 `json:"status"`
	Headers map[string][]string `json:"headers,omitempty"`
	Body    []byte              `json:"body,omitempty"`
}

// JSON replies with v as JSON, encoded as encoding/json encodes it. Maps,
// slices and scalars (what a handler decodes into `any` or builds by hand)
// are written without reflection, which inside WebAssembly is most of a
// small answer's cost; structs go through encoding/json.
func JSON(status int, v any) *Response {
	b, ok := appendJSON(nil, v)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return Error(500, "cannot encode reply: %v", err)
		}
	}
	return &Response{Status: status, Headers: map[string][]string{"Content-Type": {"application/json"}}, Body: b}
}

// Text replies with plain text (an iPXE script, an answer file).
func Text(status int, contentType, body string) *Response {
	return &Response{Status: status, Headers: map[string][]string{"Content-Type": {contentType}}, Body: []byte(body)}
}

// Error replies with crowbar's JSON error body.
func Error(status int, format string, args ...any) *Response {
	b, _ := appendJSON(nil, map[string]any{"status": status, "message": fmt.Sprintf(format, args...)})
	return &Response{Status: status, Headers: map[string][]string{"Content-Type": {"application/json"}}, Body: b}
}

// Event is what a hook receives: for role hooks the node-role, its node
// and the merged attribs; for barclamp hooks the node or deployment.
type Event struct {
	Hook       string          `json:"hook"`
	Role       string          `json:"role,omitempty"`
	NodeRole   json.RawMessage `json:"node_role,omitempty"`
	Node       json.RawMessage `json:"node,omitempty"`
	Deployment json.RawMessage `json:"deployment,omitempty"`
	Attribs    json.RawMessage `json:"attribs,omitempty"`
}

// Result is what a hook returns.
type Result struct {
	State  string          `json:"state,omitempty"` // active, error, transition
	Wall   json.RawMessage `json:"wall,omitempty"`
	Runlog string          `json:"runlog,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// Active finishes the node-role now with wall data (any JSON-able value,
// or nil) and a run log.
func Active(wall any, runlog string) *Result {
	r := &Result{State: "active", Runlog: runlog}
	if wall != nil {
		r.Wall, _ = json.Marshal(wall)
	}
	return r
}

// Failed puts the node-role in ERROR with the message in its run log.
func Failed(format string, args ...any) *Result {
	msg := fmt.Sprintf(format, args...)
	return &Result{State: "error", Runlog: msg, Error: msg}
}

// Transition leaves the node-role in TRANSITION; something completes it
// later through the API (an installed machine calling back, say).
func Transition(runlog string) *Result { return &Result{State: "transition", Runlog: runlog} }

// Now is the host's clock.
func Now() time.Time { return time.Unix(0, hostNow()) }

// NodeInfo is the part of a node a barclamp usually needs; Event.NodeInfo
// decodes it.
type NodeInfo struct {
	ID           int64          `json:"id"`
	Name         string         `json:"name"`
	Alias        string         `json:"alias"`
	Admin        bool           `json:"admin"`
	Alive        bool           `json:"alive"`
	Available    bool           `json:"available"`
	Bootenv      string         `json:"bootenv"`
	DeploymentID int64          `json:"deployment_id"`
	Hint         map[string]any `json:"hint"`
	Discovery    map[string]any `json:"discovery"`
}

// NodeRole is the part of a node-role a hook usually needs.
type NodeRole struct {
	ID           int64  `json:"id"`
	NodeID       int64  `json:"node_id"`
	RoleID       int64  `json:"role_id"`
	DeploymentID int64  `json:"deployment_id"`
	State        int    `json:"state"`
	StateName    string `json:"state_name"`
	RunCount     int    `json:"run_count"`
}

// NodeInfo decodes the event's node.
func (e *Event) NodeInfo() (*NodeInfo, error) {
	var n NodeInfo
	if err := json.Unmarshal(e.Node, &n); err != nil {
		return nil, fmt.Errorf("the %s event carries no node: %v", e.Hook, err)
	}
	return &n, nil
}

// NodeRoleInfo decodes the event's node-role.
func (e *Event) NodeRoleInfo() (*NodeRole, error) {
	var nr NodeRole
	if err := json.Unmarshal(e.NodeRole, &nr); err != nil {
		return nil, fmt.Errorf("the %s event carries no node-role: %v", e.Hook, err)
	}
	return &nr, nil
}

// Attrib reads the merged attribs at a slash path such as
// "crowbar/network/admin/v4addr" into out; false when the path is absent.
func (e *Event) Attrib(path string, out any) (bool, error) {
	var cur any
	if err := json.Unmarshal(e.Attribs, &cur); err != nil {
		return false, fmt.Errorf("the %s event carries no attribs: %v", e.Hook, err)
	}
	for _, k := range strings.Split(path, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false, nil
		}
		if cur, ok = m[k]; !ok {
			return false, nil
		}
	}
	b, _ := json.Marshal(cur)
	return true, json.Unmarshal(b, out)
}
