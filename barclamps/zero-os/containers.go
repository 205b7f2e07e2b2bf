//go:build wasip1

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/crowbar-go/crowbar/sdk"
)

// The containers of the orchestrator's API. A container is a definition
// kept in the barclamp's store under container/<nodeid>/<name> (what was
// asked for) and, while it runs, a container on the node's agent (corex).
// POST defines it and starts it; 204 means defined: a container the node
// could not start is listed halted with the node's reason.

// CoreSystem is a process to start: the orchestrator's CoreSystem.
type CoreSystem struct {
	Name        string   `json:"name"`
	Pwd         string   `json:"pwd"`
	Args        []string `json:"args"`
	Environment []string `json:"environment"` // "K=V"
	Stdin       string   `json:"stdin"`
}

// ContainerNIC is one nic of a container.
type ContainerNIC struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	Name   string          `json:"name,omitempty"`
	HWAddr string          `json:"hwaddr,omitempty"`
	Config json.RawMessage `json:"config,omitempty"`
	Status string          `json:"status,omitempty"` // up or down, in answers
}

// Container is the orchestrator's Container.
type Container struct {
	Name           string         `json:"name"`
	Hostname       string         `json:"hostname"`
	Flist          string         `json:"flist"`
	InitProcesses  []CoreSystem   `json:"initprocesses"`
	Filesystems    []string       `json:"filesystems"`
	Nics           []ContainerNIC `json:"nics"`
	HostNetworking bool           `json:"hostNetworking"`
	Ports          []string       `json:"ports"`
	Storage        string         `json:"storage"`
	Status         string         `json:"status"`
	ZerotierNodeID string         `json:"zerotiernodeid"`
	// Error is why the node could not start it (crowbar's addition).
	Error string `json:"error,omitempty"`
}

// record is what the store keeps per container.
type record struct {
	Spec  Container `json:"spec"`
	Node  string    `json:"node"`  // the node's Zero-OS id
	Corex int       `json:"corex"` // the agent's container id while it runs
	Error string    `json:"error,omitempty"`

	addresses []string // what the node says the container got (not kept)
}

func key(node, name string) string { return "container/" + node + "/" + name }

// fields a create body may carry: the RAML's and the seed's spellings.
var createFields = map[string]string{
	"name": "name", "id": "name", "hostname": "hostname", "flist": "flist",
	"initProcesses": "initprocesses", "initprocesses": "initprocesses", "filesystems": "filesystems",
	"nics": "nics", "hostNetworking": "hostNetworking", "ports": "ports", "storage": "storage",
}

var nameRule = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
var portRule = regexp.MustCompile(`^(?:(.+):)?([0-9]{1,5}):([0-9]{1,5})$`)

func invalid(field, format string, args ...any) *sdk.Response {
	b, _ := json.Marshal(map[string]any{"status": 422, "message": field + " " + fmt.Sprintf(format, args...), "field": field})
	return &sdk.Response{Status: 422, Headers: map[string][]string{"Content-Type": {"application/json"}}, Body: b}
}

// decodeCreate reads a CreateContainer body, both spellings accepted,
// unknown fields refused.
func decodeCreate(r *sdk.Request) (*Container, *sdk.Response) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		return nil, sdk.Error(sdk.StatusBadRequest, "malformed JSON body: %v", err)
	}
	norm := map[string]json.RawMessage{}
	for k, v := range raw {
		f, ok := createFields[k]
		if !ok {
			return nil, sdk.Error(sdk.StatusBadRequest, "unknown field '%s'", k)
		}
		norm[f] = v
	}
	b, _ := json.Marshal(norm)
	var c Container
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, sdk.Error(sdk.StatusBadRequest, "malformed container: %v", err)
	}
	switch {
	case !nameRule.MatchString(c.Name):
		return nil, invalid("name", "'%s' must be 1-63 letters, digits, . _ - (the seed sends it as id)", c.Name)
	case c.Flist == "":
		return nil, invalid("flist", "is required: the container's root (a directory, a .tar/.tar.gz or an http(s) URL of one on this agent)")
	case c.Hostname != "" && !nameRule.MatchString(c.Hostname):
		return nil, invalid("hostname", "'%s' is not a host name", c.Hostname)
	}
	for i, p := range c.Ports {
		if !portRule.MatchString(p) {
			return nil, invalid("ports", "entry %d '%s' must be host_port:container_port (e.g. 10022:22)", i, p)
		}
	}
	for i, n := range c.Nics {
		if n.Type == "" {
			return nil, invalid("nics", "entry %d has no type", i)
		}
	}
	for i, p := range c.InitProcesses {
		if p.Name == "" {
			return nil, invalid("initprocesses", "entry %d has no name", i)
		}
	}
	return &c, nil
}

// corexArgs turns a definition into corex.create's arguments.
func corexArgs(c *Container) map[string]any {
	ports := map[string]int{}
	for _, p := range c.Ports {
		m := portRule.FindStringSubmatch(p)
		cp, _ := strconv.Atoi(m[3])
		host := m[2]
		if m[1] != "" {
			host = m[1] + ":" + m[2]
		}
		ports[host] = cp
	}
	nics := make([]map[string]any, 0, len(c.Nics))
	for _, n := range c.Nics {
		nic := map[string]any{"type": n.Type, "id": n.ID}
		if n.Name != "" {
			nic["name"] = n.Name
		}
		if n.HWAddr != "" {
			nic["hwaddr"] = n.HWAddr
		}
		if len(n.Config) > 0 {
			nic["config"] = n.Config
		}
		nics = append(nics, nic)
	}
	return map[string]any{"root": c.Flist, "name": c.Name, "hostname": c.Hostname, "nics": nics, "port": ports,
		"host_network": c.HostNetworking, "storage": c.Storage, "tags": []string{"zero-os"}}
}

// start creates the container on its node and runs its init processes;
// the record says how it went.
func start(rec *record) {
	var id int
	err := sdk.Node(rec.Node).JSON("corex.create", corexArgs(&rec.Spec), &id)
	if err != nil {
		rec.Corex, rec.Error = 0, err.Error()
		return
	}
	rec.Corex, rec.Error = id, ""
	for _, p := range rec.Spec.InitProcesses {
		if _, err := sdk.Node(rec.Node).Container(id).Start("core.system", systemArgs(p)); err != nil {
			rec.Error = fmt.Sprintf("init process %s: %v", p.Name, err)
		}
	}
}

func systemArgs(p CoreSystem) map[string]any {
	env := map[string]string{}
	for _, kv := range p.Environment {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	args := p.Args
	if args == nil {
		args = []string{}
	}
	return map[string]any{"name": p.Name, "args": args, "dir": p.Pwd, "stdin": p.Stdin, "env": env}
}

func load(node, name string) (*record, int64, error) {
	b, rev, found, err := sdk.KVGet(key(node, name))
	if err != nil || !found {
		return nil, 0, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, 0, err
	}
	return &rec, rev, nil
}

func save(rec *record, expected int64) error {
	b, _ := json.Marshal(rec)
	_, ok, err := sdk.KVCompareAndSwap(key(rec.Node, rec.Spec.Name), b, expected)
	if err == nil && !ok {
		return errConflict
	}
	return err
}

var errConflict = errors.New("the container changed meanwhile; try again")

// running asks the node which of its containers run: corex id → status.
func running(node string) (map[int]string, error) {
	var list map[string]struct {
		Container struct {
			Status string `json:"status"`
		} `json:"container"`
	}
	if err := sdk.Node(node).JSON("corex.list", nil, &list); err != nil {
		return nil, err
	}
	out := map[int]string{}
	for id, c := range list {
		n, _ := strconv.Atoi(id)
		out[n] = c.Container.Status
	}
	return out, nil
}

// view is a record as the API shows it, its status from the node.
func view(rec *record, live map[int]string) Container {
	c := rec.Spec
	c.Status = "halted"
	if rec.Corex != 0 && live[rec.Corex] == "running" {
		c.Status = "running"
	}
	c.Error = rec.Error
	if c.Nics == nil {
		c.Nics = []ContainerNIC{}
	}
	for i := range c.Nics {
		c.Nics[i].Status = map[bool]string{true: "up", false: "down"}[c.Status == "running"]
	}
	return c
}

func nodeOf(r *sdk.Request) (string, *sdk.Response) {
	n, fail := find(r)
	if fail != nil {
		return "", fail
	}
	return n.Discovery.ZeroOS.ID, nil
}

func listContainers(r *sdk.Request) *sdk.Response {
	node, fail := nodeOf(r)
	if fail != nil {
		return fail
	}
	entries, err := sdk.KVList("container/" + node + "/")
	if err != nil {
		return sdk.Error(sdk.StatusInternalServerError, "%v", err)
	}
	live, err := running(node)
	if err != nil {
		return failed(err)
	}
	type item struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Hostname string `json:"hostname"`
		Flist    string `json:"flist"`
		Status   string `json:"status"`
	}
	out := []item{}
	for _, e := range entries {
		var rec record
		if json.Unmarshal(e.Value, &rec) != nil {
			continue
		}
		c := view(&rec, live)
		out = append(out, item{ID: c.Name, Name: c.Name, Hostname: c.Hostname, Flist: c.Flist, Status: c.Status})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return sdk.JSON(sdk.StatusOK, out)
}

func createContainer(r *sdk.Request) *sdk.Response {
	node, fail := nodeOf(r)
	if fail != nil {
		return fail
	}
	c, fail := decodeCreate(r)
	if fail != nil {
		return fail
	}
	if c.Hostname == "" {
		c.Hostname = c.Name
	}
	if c.InitProcesses == nil {
		c.InitProcesses = []CoreSystem{}
	}
	if c.Filesystems == nil {
		c.Filesystems = []string{}
	}
	if c.Ports == nil {
		c.Ports = []string{}
	}
	// Refused early so nothing is stored; the host refuses the create itself
	// anyway (it never trusts the guest with who may change a node).
	if r.Caller == nil || (r.Caller.Role != "admin" && r.Caller.Role != "operator") {
		return sdk.Error(sdk.StatusForbidden, "creating a container needs the operator or admin role")
	}
	rec := &record{Spec: *c, Node: node}
	b, _ := json.Marshal(rec)
	_, ok, err := sdk.KVCompareAndSwap(key(node, c.Name), b, 0)
	if err != nil {
		return sdk.Error(sdk.StatusInternalServerError, "%v", err)
	}
	if !ok {
		return sdk.Error(sdk.StatusConflict, "container '%s' already exists on node %s", c.Name, node)
	}
	start(rec)
	if err := save(rec, revision(node, c.Name)); err != nil {
		return sdk.Error(sdk.StatusInternalServerError, "%v", err)
	}
	return &sdk.Response{Status: sdk.StatusNoContent}
}

func revision(node, name string) int64 {
	_, rev, _, _ := sdk.KVGet(key(node, name))
	return rev
}

// container loads the request's container (404 when undefined).
func container(r *sdk.Request) (*record, int64, *sdk.Response) {
	node, fail := nodeOf(r)
	if fail != nil {
		return nil, 0, fail
	}
	rec, rev, err := load(node, r.Param("name"))
	if err != nil {
		return nil, 0, sdk.Error(sdk.StatusInternalServerError, "%v", err)
	}
	if rec == nil {
		return nil, 0, sdk.Error(sdk.StatusNotFound, "container '%s' not found on node %s", r.Param("name"), node)
	}
	return rec, rev, nil
}

func getContainer(r *sdk.Request) *sdk.Response {
	rec, _, fail := container(r)
	if fail != nil {
		return fail
	}
	live, err := running(rec.Node)
	if err != nil {
		return failed(err)
	}
	return sdk.JSON(sdk.StatusOK, view(rec, live))
}

// terminate stops the container on its node (if it runs there).
func terminate(rec *record) error {
	if rec.Corex == 0 {
		return nil
	}
	_, err := sdk.Node(rec.Node).Call("corex.terminate", map[string]any{"container": rec.Corex})
	if ne, ok := sdk.AsNodeError(err); ok && ne.Result != nil && ne.Result.Code == 404 {
		err = nil // already gone
	}
	if err == nil {
		rec.Corex = 0
	}
	return err
}

func deleteContainer(r *sdk.Request) *sdk.Response {
	rec, rev, fail := container(r)
	if fail != nil {
		return fail
	}
	if err := terminate(rec); err != nil {
		return failed(err)
	}
	if _, err := sdk.KVDelete(key(rec.Node, rec.Spec.Name), rev); err != nil {
		return sdk.Error(sdk.StatusInternalServerError, "%v", err)
	}
	return &sdk.Response{Status: sdk.StatusNoContent}
}

func startContainer(r *sdk.Request) *sdk.Response {
	rec, rev, fail := container(r)
	if fail != nil {
		return fail
	}
	live, err := running(rec.Node)
	if err != nil {
		return failed(err)
	}
	if rec.Corex != 0 && live[rec.Corex] == "running" {
		return &sdk.Response{Status: sdk.StatusNoContent}
	}
	if rec.Corex != 0 {
		terminate(rec) //nolint:errcheck // a halted leftover
	}
	start(rec)
	if err := save(rec, rev); err != nil {
		return sdk.Error(sdk.StatusConflict, "%v", err)
	}
	if rec.Error != "" {
		return sdk.Error(sdk.StatusBadGateway, "container '%s' did not start: %s", rec.Spec.Name, rec.Error)
	}
	return &sdk.Response{Status: sdk.StatusNoContent}
}

func stopContainer(r *sdk.Request) *sdk.Response {
	rec, rev, fail := container(r)
	if fail != nil {
		return fail
	}
	if err := terminate(rec); err != nil {
		return failed(err)
	}
	if err := save(rec, rev); err != nil {
		return sdk.Error(sdk.StatusConflict, "%v", err)
	}
	return &sdk.Response{Status: sdk.StatusNoContent}
}

// inside is the node reference of the request's running container.
func inside(r *sdk.Request) (sdk.NodeRef, *sdk.Response) {
	rec, _, fail := container(r)
	if fail != nil {
		return sdk.NodeRef{}, fail
	}
	live, err := running(rec.Node)
	if err != nil {
		return sdk.NodeRef{}, failed(err)
	}
	if rec.Corex == 0 || live[rec.Corex] != "running" {
		return sdk.NodeRef{}, sdk.Error(sdk.StatusConflict, "container '%s' is not running", rec.Spec.Name)
	}
	return sdk.Node(rec.Node).Container(rec.Corex), nil
}

// decodeSystem reads a CoreSystem; the seed sends "env", the RAML
// "environment".
func decodeSystem(r *sdk.Request) (*CoreSystem, *sdk.Response) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		return nil, sdk.Error(sdk.StatusBadRequest, "malformed JSON body: %v", err)
	}
	norm := map[string]json.RawMessage{}
	for k, v := range raw {
		switch k {
		case "name", "pwd", "args", "stdin":
			norm[k] = v
		case "environment", "env":
			norm["environment"] = v
		default:
			return nil, sdk.Error(sdk.StatusBadRequest, "unknown field '%s'", k)
		}
	}
	b, _ := json.Marshal(norm)
	var p CoreSystem
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, sdk.Error(sdk.StatusBadRequest, "malformed process: %v", err)
	}
	if p.Name == "" {
		return nil, invalid("name", "is required: the program to run")
	}
	for _, e := range p.Environment {
		if !strings.Contains(e, "=") {
			return nil, invalid("environment", "'%s' must be KEY=VALUE", e)
		}
	}
	return &p, nil
}

func decodeSignal(r *sdk.Request) (int, *sdk.Response) {
	body := struct {
		Signal *int `json:"signal"`
	}{}
	if len(r.Body) > 0 {
		if err := r.Decode(&body); err != nil {
			return 0, sdk.Error(sdk.StatusBadRequest, "%v", err)
		}
	}
	sig := 15
	if body.Signal != nil {
		sig = *body.Signal
	}
	if sig < 1 || sig > 64 {
		return 0, invalid("signal", "must be between 1 and 64")
	}
	return sig, nil
}
