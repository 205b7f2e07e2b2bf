// Package barclamp is the core's side of barclamps: the manifest a module
// declares, the registry that stores and activates modules, per-deployment
// enablement and the private key/value store. The WebAssembly host lives in
// plugins/ and is reached through the Host interface defined here.
package barclamp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/crowbar-go/crowbar/core/model"
)

// ABIVersion is the barclamp ABI this core speaks (docs/abi.md).
const ABIVersion = 1

// Manifest is what a barclamp declares about itself.
type Manifest struct {
	ABI         int          `json:"abi"`
	Name        string       `json:"name"`
	Version     string       `json:"version"`
	Description string       `json:"description"`
	Roles       []RoleSpec   `json:"roles"`
	Attribs     []AttribSpec `json:"attribs"`
	Routes      []RouteSpec  `json:"routes"`
	Hooks       []string     `json:"hooks"` // barclamp-wide hooks: on_node_create, on_deployment_create
}

// RoleSpec declares a role.
type RoleSpec struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Jig         string `json:"jig"` // "noop" (default), "wasm" (the barclamp's hooks) or "script"
	// Script, for the script jig, runs on the node through its agent.
	Script   string          `json:"script,omitempty"`
	Requires []string        `json:"requires"`
	Flags    []string        `json:"flags"`
	Cohort   int             `json:"cohort"`
	Template json.RawMessage `json:"template,omitempty"`
	Attribs  []AttribSpec    `json:"attribs"`
	Hooks    []string        `json:"hooks"` // on_proposed, on_todo, on_active, on_error
}

// AttribSpec declares an attrib.
type AttribSpec struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Map         string          `json:"map"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Default     json.RawMessage `json:"default,omitempty"`
	Writable    bool            `json:"writable"`
	Order       int             `json:"order"`
}

// RouteSpec declares an HTTP route under /<barclamp>/v2. Path parameters
// are written {name}.
type RouteSpec struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Open routes skip digest and bearer authentication; the barclamp must
	// authenticate the caller itself (boot-time routes that machines fetch).
	Open bool `json:"open,omitempty"`
}

// Role flags a manifest may set.
var roleFlags = map[string]bool{"library": true, "implicit": true, "bootstrap": true, "discovery": true,
	"server": true, "cluster": true, "destructive": true, "abstract": true, "milestone": true,
	"powersave": true, "service": true}

var roleHooks = map[string]bool{"on_proposed": true, "on_todo": true, "on_active": true, "on_error": true, "on_delete": true}

var barclampHooks = map[string]bool{"on_node_create": true, "on_node_delete": true,
	"on_deployment_create": true, "on_deployment_delete": true}

// Validate checks a manifest's own rules; it names the barclamp and the
// field at fault.
func (m *Manifest) Validate() error {
	bad := func(format string, args ...any) error {
		return model.Invalid("manifest", "barclamp '%s': %s", m.Name, fmt.Sprintf(format, args...))
	}
	if m.ABI != ABIVersion {
		return model.Invalid("manifest", "barclamp '%s' speaks ABI %d; this crowbar speaks ABI %d", m.Name, m.ABI, ABIVersion)
	}
	if err := model.ValidName("name", m.Name); err != nil {
		return bad("%v", err)
	}
	if m.Name == "api" || strings.ContainsAny(m.Name, ".:") {
		return bad("the name must be usable as the first URL segment and may not be 'api'")
	}
	if m.Version == "" {
		return bad("version is required")
	}
	seen := map[string]bool{}
	for _, h := range m.Hooks {
		if !barclampHooks[h] {
			return bad("unknown barclamp hook '%s'", h)
		}
	}
	checkAttribs := func(as []AttribSpec) error {
		for _, a := range as {
			if err := model.ValidName("attrib", a.Name); err != nil {
				return bad("%v", err)
			}
			if seen["attrib "+a.Name] {
				return bad("attrib '%s' is declared twice", a.Name)
			}
			seen["attrib "+a.Name] = true
			if len(a.Schema) > 0 && !json.Valid(a.Schema) {
				return bad("attrib '%s': schema is not JSON", a.Name)
			}
		}
		return nil
	}
	for _, r := range m.Roles {
		if err := model.ValidName("role", r.Name); err != nil {
			return bad("%v", err)
		}
		if seen["role "+r.Name] {
			return bad("role '%s' is declared twice", r.Name)
		}
		seen["role "+r.Name] = true
		switch r.Jig {
		case "", "noop", "wasm", "script":
		default:
			return bad("role '%s': jig '%s' must be noop, wasm or script", r.Name, r.Jig)
		}
		switch {
		case r.Script != "" && slices.Contains(r.Hooks, "on_todo"):
			return bad("role '%s' has both a script and an on_todo hook: its jig runs one or the other", r.Name)
		case r.Script != "" && r.Jig != "" && r.Jig != "script":
			return bad("role '%s' has a script but jig '%s'", r.Name, r.Jig)
		case r.Jig == "script" && r.Script == "":
			return bad("role '%s' uses the script jig but has no script", r.Name)
		case len(r.Script) > 256<<10:
			return bad("role '%s': its script is over 256 KiB", r.Name)
		}
		for _, f := range r.Flags {
			if !roleFlags[f] {
				return bad("role '%s': unknown flag '%s'", r.Name, f)
			}
		}
		for _, h := range r.Hooks {
			if !roleHooks[h] {
				return bad("role '%s': unknown hook '%s'", r.Name, h)
			}
		}
		for _, req := range r.Requires {
			if req == r.Name {
				return bad("role '%s' requires itself", r.Name)
			}
		}
		if len(r.Template) > 0 && (!json.Valid(r.Template) || r.Template[0] != '{') {
			return bad("role '%s': template must be a JSON object", r.Name)
		}
		if err := checkAttribs(r.Attribs); err != nil {
			return err
		}
	}
	if err := checkAttribs(m.Attribs); err != nil {
		return err
	}
	for _, rt := range m.Routes {
		switch rt.Method {
		case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		default:
			return bad("route %s %s: method must be GET, POST, PUT, PATCH or DELETE", rt.Method, rt.Path)
		}
		if !strings.HasPrefix(rt.Path, "/") {
			return bad("route %s %s: path must start with /", rt.Method, rt.Path)
		}
		if seen["route "+rt.Method+rt.Path] {
			return bad("route %s %s is declared twice", rt.Method, rt.Path)
		}
		seen["route "+rt.Method+rt.Path] = true
	}
	return nil
}

// HasFlag reports whether the role spec sets flag.
func (r *RoleSpec) HasFlag(flag string) bool {
	for _, f := range r.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// HTTPRequest is what a barclamp's HTTP handler receives.
type HTTPRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"` // the full request path
	Host   string `json:"host"` // the Host the client asked for (host[:port])
	// Advertise is the URL machines reach the server at (--advertise-url).
	Advertise string              `json:"advertise,omitempty"`
	Route     string              `json:"route"` // the matched route, e.g. "GET /networks/{id}"
	Params    map[string]string   `json:"params"`
	Query     map[string][]string `json:"query"`
	Headers   map[string][]string `json:"headers"`
	Body      []byte              `json:"body"` // base64 in JSON
	Caller    *Caller             `json:"caller"`
}

// Caller is who made a request, as a barclamp sees it.
type Caller struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	Scheme   string `json:"scheme"`
}

// HTTPResponse is what a barclamp's HTTP handler returns.
type HTTPResponse struct {
	Status  int                 `json:"status"`
	Headers map[string][]string `json:"headers"`
	Body    []byte              `json:"body"`
}

// HookEvent is what a barclamp's hook receives.
type HookEvent struct {
	Hook       string          `json:"hook"` // on_todo, on_node_create, …
	Role       string          `json:"role,omitempty"`
	NodeRole   json.RawMessage `json:"node_role,omitempty"`
	Node       json.RawMessage `json:"node,omitempty"`
	Deployment json.RawMessage `json:"deployment,omitempty"`
	Attribs    json.RawMessage `json:"attribs,omitempty"` // the merged view
}

// HookResult is what a hook returns. State "active" or "error" finishes
// the node-role now; "transition" leaves it to be completed through the API.
type HookResult struct {
	State  string          `json:"state,omitempty"`
	Wall   json.RawMessage `json:"wall,omitempty"`
	Runlog string          `json:"runlog,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// CallError is a failed call into a barclamp (a trap, a panic, a deadline,
// bad or oversized output): the HTTP layer answers 502 with it, the
// annealer puts it in the node-role's run log.
type CallError struct {
	Barclamp string
	Call     string
	Reason   string
}

func (e *CallError) Error() string {
	return fmt.Sprintf("barclamp '%s' failed in %s: %s", e.Barclamp, e.Call, e.Reason)
}
