//go:build wasip1

package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"

	"github.com/crowbar-go/crowbar/sdk"
)

// The roles: zero-os-node (a node whose agent answers) and
// zero-os-container (a container on its node, the same model as the API's
// POST /containers).

var roles = []sdk.Role{
	{Name: "zero-os-node", Description: "A node with a crowbar agent (or Zero-OS core0) that answers; records its OS and memory",
		OnTodo: nodeTodo},
	{Name: "zero-os-container", Requires: []string{"zero-os-node"},
		Description: "A container on the node, created from its attribs; unbinding terminates it",
		OnTodo:      containerTodo, OnDelete: containerDelete,
		Attribs: []sdk.Attrib{
			{Name: "zero-os-container-name", Map: "zero_os/container/name", Writable: true,
				Description: "The container's name on its node (default crowbar-<node-role id>)",
				Schema:      map[string]any{"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$"}},
			{Name: "zero-os-container-root", Map: "zero_os/container/root", Writable: true,
				Description: "The root: a directory, a .tar/.tar.gz, or an http(s) URL of one on the node's agent",
				Schema:      map[string]any{"type": "string", "minLength": 1}},
			{Name: "zero-os-container-hostname", Map: "zero_os/container/hostname", Writable: true,
				Description: "The container's host name", Schema: map[string]any{"type": "string"}},
			{Name: "zero-os-container-nics", Map: "zero_os/container/nics", Writable: true,
				Description: "Nics, as corex.create takes them (default one default nic)",
				Schema:      map[string]any{"type": "array", "items": map[string]any{"type": "object", "required": []any{"type"}}},
				Default:     []any{map[string]any{"type": "default"}}},
			{Name: "zero-os-container-ports", Map: "zero_os/container/ports", Writable: true,
				Description: "Port forwards, host_port:container_port",
				Schema:      map[string]any{"type": "array", "items": map[string]any{"type": "string", "pattern": "^([^:]+:)?[0-9]{1,5}:[0-9]{1,5}$"}}},
			{Name: "zero-os-container-env", Map: "zero_os/container/env", Writable: true,
				Description: "Environment of the container's processes",
				Schema:      map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}}},
			{Name: "zero-os-container-init", Map: "zero_os/container/init", Writable: true,
				Description: "Processes started in the container (CoreSystem: name, args, pwd, environment)",
				Schema:      map[string]any{"type": "array", "items": map[string]any{"type": "object", "required": []any{"name"}}}},
		}},
}

type hookNode struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

func eventNode(ev *sdk.Event) (*hookNode, error) {
	var n hookNode
	if err := json.Unmarshal(ev.Node, &n); err != nil || n.ID == 0 {
		return nil, fmt.Errorf("the %s event carries no node", ev.Hook)
	}
	return &n, nil
}

// nodeTodo checks the node's agent answers and records what it runs.
func nodeTodo(ev *sdk.Event) *sdk.Result {
	n, err := eventNode(ev)
	if err != nil {
		return sdk.Failed("%v", err)
	}
	ref := sdk.Node(strconv.FormatInt(n.ID, 10))
	var osInfo, mem map[string]any
	if err := ref.JSON("info.os", nil, &osInfo); err != nil {
		return sdk.Failed("the agent of node %s does not answer: %v", n.Name, err)
	}
	if err := ref.JSON("info.mem", nil, &mem); err != nil {
		return sdk.Failed("node %s: info.mem: %v", n.Name, err)
	}
	wall := map[string]any{"zero_os": map[string]any{"node": map[string]any{
		"os": osInfo["os"], "platform": osInfo["platform"], "platform_version": osInfo["platformVersion"],
		"kernel": osInfo["kernelVersion"], "hostname": osInfo["hostname"], "memory": mem["total"]}}}
	return sdk.Active(wall, fmt.Sprintf("the agent of %s answers: %v %v, %v bytes of memory", n.Name, osInfo["platform"],
		osInfo["platformVersion"], mem["total"]))
}

// containerSpec reads a zero-os-container node-role's attribs.
type containerSpec struct {
	Name     string            `json:"name"`
	Root     string            `json:"root"`
	Hostname string            `json:"hostname"`
	Nics     []ContainerNIC    `json:"nics"`
	Ports    []string          `json:"ports"`
	Env      map[string]string `json:"env"`
	Init     []CoreSystem      `json:"init"`
}

type nodeRoleID struct {
	ID int64 `json:"id"`
}

func specOf(ev *sdk.Event) (*containerSpec, error) {
	var attribs struct {
		ZeroOS struct {
			Container containerSpec `json:"container"`
		} `json:"zero_os"`
	}
	if err := json.Unmarshal(ev.Attribs, &attribs); err != nil {
		return nil, fmt.Errorf("attribs: %v", err)
	}
	spec := attribs.ZeroOS.Container
	if spec.Name == "" {
		var nr nodeRoleID
		json.Unmarshal(ev.NodeRole, &nr) //nolint:errcheck
		spec.Name = fmt.Sprintf("crowbar-%d", nr.ID)
	}
	if spec.Hostname == "" {
		spec.Hostname = spec.Name
	}
	if spec.Root == "" {
		return nil, fmt.Errorf("the zero-os-container-root attrib is not set: the container has no root")
	}
	return &spec, nil
}

// definition is the API's container model for a spec.
func (spec *containerSpec) definition() Container {
	c := Container{Name: spec.Name, Hostname: spec.Hostname, Flist: spec.Root, Nics: spec.Nics, Ports: spec.Ports,
		InitProcesses: spec.Init, Filesystems: []string{}}
	if c.Nics == nil {
		c.Nics = []ContainerNIC{}
	}
	if c.Ports == nil {
		c.Ports = []string{}
	}
	if c.InitProcesses == nil {
		c.InitProcesses = []CoreSystem{}
	}
	for i := range c.InitProcesses {
		for k, v := range spec.Env {
			c.InitProcesses[i].Environment = append(c.InitProcesses[i].Environment, k+"="+v)
		}
	}
	return c
}

// containerTodo makes the container the attribs describe exist and run on
// the node: idempotent by name; a changed description replaces it.
func containerTodo(ev *sdk.Event) *sdk.Result {
	n, spec, zid, err := containerTarget(ev)
	if err != nil {
		return sdk.Failed("%v", err)
	}
	want := spec.definition()
	rec, rev, err := load(zid, spec.Name)
	if err != nil {
		return sdk.Failed("read the container's record: %v", err)
	}
	live, err := running(zid)
	if err != nil {
		return sdk.Failed("node %s: %v", n.Name, err)
	}
	if rec != nil && rec.Corex != 0 && live[rec.Corex] == "running" && reflect.DeepEqual(rec.Spec.without(), want.without()) {
		return sdk.Active(containerWall(rec), fmt.Sprintf("container %s runs on %s (id %d)", spec.Name, n.Name, rec.Corex))
	}
	if rec == nil {
		rec = &record{Node: zid}
	} else if err := terminate(rec); err != nil {
		return sdk.Failed("replace container %s on %s: terminate the old one: %v", spec.Name, n.Name, err)
	}
	rec.Spec = want
	start(rec)
	if err := save(rec, rev); err != nil {
		return sdk.Failed("record container %s: %v", spec.Name, err)
	}
	if rec.Error != "" {
		return sdk.Failed("container %s on node %s did not start: %s", spec.Name, n.Name, rec.Error)
	}
	var info map[string]map[string]any
	if err := sdk.Node(zid).JSON("corex.get", map[string]any{"query": rec.Corex}, &info); err == nil {
		if ips, ok := info["container"]["ips"].([]any); ok {
			for _, ip := range ips {
				rec.addresses = append(rec.addresses, fmt.Sprint(ip))
			}
		}
	}
	return sdk.Active(containerWall(rec), fmt.Sprintf("container %s created on %s (id %d)", spec.Name, n.Name, rec.Corex))
}

func containerWall(rec *record) map[string]any {
	return map[string]any{"zero_os": map[string]any{"container": map[string]any{
		"name": rec.Spec.Name, "id": rec.Corex, "node": rec.Node, "addresses": rec.addresses}}}
}

// without clears what the role does not set, for comparing descriptions.
func (c Container) without() Container {
	c.Status, c.Error, c.ZerotierNodeID = "", "", ""
	return c
}

// containerDelete terminates the container of an unbound node-role and
// forgets it.
func containerDelete(ev *sdk.Event) *sdk.Result {
	n, spec, zid, err := containerTarget(ev)
	if err != nil {
		return sdk.Failed("%v", err)
	}
	rec, rev, err := load(zid, spec.Name)
	if err != nil || rec == nil {
		return sdk.Active(nil, "no container to terminate")
	}
	if err := terminate(rec); err != nil {
		return sdk.Failed("terminate container %s on %s: %v", spec.Name, n.Name, err)
	}
	if _, err := sdk.KVDelete(key(zid, spec.Name), rev); err != nil {
		return sdk.Failed("forget container %s: %v", spec.Name, err)
	}
	return sdk.Active(nil, fmt.Sprintf("container %s terminated on %s", spec.Name, n.Name))
}

// containerTarget is what a container hook acts on: the node, the
// container its attribs describe and the node's Zero-OS id.
func containerTarget(ev *sdk.Event) (*hookNode, *containerSpec, string, error) {
	n, err := eventNode(ev)
	if err != nil {
		return nil, nil, "", err
	}
	spec, err := specOf(ev)
	if err != nil {
		return nil, nil, "", err
	}
	zid, err := zeroOSID(n.ID)
	return n, spec, zid, err
}

// zeroOSID is the Zero-OS id of node id (its discovery data's).
func zeroOSID(id int64) (string, error) {
	var n agentNode
	if err := sdk.APIJSON("GET", fmt.Sprintf("/api/v2/nodes/%d", id), nil, &n); err != nil {
		return "", err
	}
	if n.Discovery.ZeroOS.ID == "" {
		return "", fmt.Errorf("node %s has no agent: it never joined", n.Name)
	}
	return n.Discovery.ZeroOS.ID, nil
}
