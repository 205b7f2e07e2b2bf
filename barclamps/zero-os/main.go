//go:build wasip1

// Command zero-os is the first-party barclamp that serves the Zero-OS
// orchestrator's API under /zero-os/v2: nodes (machines whose crowbar
// agent or Zero-OS core0 joined), their memory, CPUs, disks, nics, jobs and
// processes, reached through the server's core0 transport with the host's
// node commands (sdk.Node). A node's id is its MAC without colons.
package main

import (
	"encoding/json"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/crowbar-go/crowbar/sdk"
)

func init() {
	sdk.Register(&sdk.Barclamp{
		Name:        "zero-os",
		Version:     "0.1.0",
		Description: "The Zero-OS orchestrator API: nodes, jobs and processes through their agents",
		Roles:       roles,
		Routes: []sdk.Route{
			{Method: "GET", Path: "/nodes", Handler: listNodes},
			{Method: "GET", Path: "/nodes/{nodeid}", Handler: getNode},
			{Method: "POST", Path: "/nodes/{nodeid}/reboot", Handler: noContent("core.reboot", nil)},
			{Method: "GET", Path: "/nodes/{nodeid}/mem", Handler: info("info.mem", true)},
			{Method: "GET", Path: "/nodes/{nodeid}/cpus", Handler: info("info.cpu", false)},
			{Method: "GET", Path: "/nodes/{nodeid}/disks", Handler: info("info.disk", false)},
			{Method: "GET", Path: "/nodes/{nodeid}/nics", Handler: info("info.nic", false)},
			{Method: "GET", Path: "/nodes/{nodeid}/info", Handler: info("info.os", false)},
			{Method: "GET", Path: "/nodes/{nodeid}/state", Handler: info("core.state", false)},
			{Method: "GET", Path: "/nodes/{nodeid}/jobs", Handler: listJobs},
			{Method: "DELETE", Path: "/nodes/{nodeid}/jobs", Handler: noContent("core.killall", nil)},
			{Method: "GET", Path: "/nodes/{nodeid}/jobs/{jobid}", Handler: getJob},
			{Method: "DELETE", Path: "/nodes/{nodeid}/jobs/{jobid}", Handler: noContent("job.kill", jobSignal)},
			{Method: "GET", Path: "/nodes/{nodeid}/processes", Handler: listProcesses},
			{Method: "GET", Path: "/nodes/{nodeid}/processes/{pid}", Handler: getProcess},
			{Method: "DELETE", Path: "/nodes/{nodeid}/processes/{pid}", Handler: noContent("process.kill", processSignal)},
			{Method: "POST", Path: "/nodes/{nodeid}/processes/{pid}", Handler: noContent("process.kill", processSignal)},
			{Method: "GET", Path: "/nodes/{nodeid}/containers", Handler: listContainers},
			{Method: "POST", Path: "/nodes/{nodeid}/containers", Handler: createContainer},
			{Method: "GET", Path: "/nodes/{nodeid}/containers/{name}", Handler: getContainer},
			{Method: "DELETE", Path: "/nodes/{nodeid}/containers/{name}", Handler: deleteContainer},
			{Method: "POST", Path: "/nodes/{nodeid}/containers/{name}/start", Handler: startContainer},
			{Method: "POST", Path: "/nodes/{nodeid}/containers/{name}/stop", Handler: stopContainer},
			{Method: "GET", Path: "/nodes/{nodeid}/containers/{name}/state", Handler: info("core.state", false)},
			{Method: "GET", Path: "/nodes/{nodeid}/containers/{name}/mem", Handler: info("info.mem", false)},
			{Method: "GET", Path: "/nodes/{nodeid}/containers/{name}/cpus", Handler: info("info.cpu", false)},
			{Method: "GET", Path: "/nodes/{nodeid}/containers/{name}/nics", Handler: info("info.nic", false)},
			{Method: "GET", Path: "/nodes/{nodeid}/containers/{name}/info", Handler: info("info.os", false)},
			{Method: "GET", Path: "/nodes/{nodeid}/containers/{name}/jobs", Handler: listJobs},
			{Method: "POST", Path: "/nodes/{nodeid}/containers/{name}/jobs", Handler: startSystem},
			{Method: "DELETE", Path: "/nodes/{nodeid}/containers/{name}/jobs", Handler: noContent("core.killall", nil)},
			{Method: "GET", Path: "/nodes/{nodeid}/containers/{name}/jobs/{jobid}", Handler: getJob},
			{Method: "DELETE", Path: "/nodes/{nodeid}/containers/{name}/jobs/{jobid}", Handler: noContent("job.kill", jobSignal)},
			{Method: "POST", Path: "/nodes/{nodeid}/containers/{name}/jobs/{jobid}", Handler: noContent("job.kill", jobSignal)},
			{Method: "GET", Path: "/nodes/{nodeid}/containers/{name}/processes", Handler: listProcesses},
			{Method: "POST", Path: "/nodes/{nodeid}/containers/{name}/processes", Handler: startSystem},
			{Method: "GET", Path: "/nodes/{nodeid}/containers/{name}/processes/{pid}", Handler: getProcess},
			{Method: "DELETE", Path: "/nodes/{nodeid}/containers/{name}/processes/{pid}", Handler: noContent("process.kill", processSignal)},
			{Method: "POST", Path: "/nodes/{nodeid}/containers/{name}/processes/{pid}", Handler: noContent("process.kill", processSignal)},
			{Method: "GET", Path: "/nodes/{nodeid}/containers/{name}/filesystem", Handler: download},
			{Method: "POST", Path: "/nodes/{nodeid}/containers/{name}/filesystem", Handler: upload},
			{Method: "DELETE", Path: "/nodes/{nodeid}/containers/{name}/filesystem", Handler: deleteFile},
		},
	})
}

func main() {}

// Node is the orchestrator's Node.
type Node struct {
	ID        string `json:"id"`
	Hostname  string `json:"hostname"`
	IPAddress string `json:"ipaddress"`
	Status    string `json:"status"` // running or halted
}

// agentNode is what the core API tells of a node with an agent.
type agentNode struct {
	Name      string `json:"name"`
	Alive     bool   `json:"alive"`
	Discovery struct {
		Hostname string `json:"hostname"`
		ZeroOS   struct {
			ID string `json:"id"`
		} `json:"zero_os"`
		Agent struct {
			Address string `json:"address"`
		} `json:"agent"`
	} `json:"discovery"`
}

// view is a node as the orchestrator shows it: running while its agent's
// heartbeats arrive (the node is alive), halted otherwise.
func (n *agentNode) view() Node {
	host, _, err := net.SplitHostPort(n.Discovery.Agent.Address)
	if err != nil {
		host = n.Discovery.Agent.Address
	}
	hostname := n.Discovery.Hostname
	if hostname == "" {
		hostname, _, _ = strings.Cut(n.Name, ".")
	}
	status := "halted"
	if n.Alive {
		status = "running"
	}
	return Node{ID: n.Discovery.ZeroOS.ID, Hostname: hostname, IPAddress: host, Status: status}
}

func agentNodes() ([]agentNode, error) {
	var all []agentNode
	if err := sdk.APIJSON("GET", "/api/v2/nodes", nil, &all); err != nil {
		return nil, err
	}
	out := all[:0]
	for _, n := range all {
		if n.Discovery.ZeroOS.ID != "" {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Discovery.ZeroOS.ID < out[j].Discovery.ZeroOS.ID })
	return out, nil
}

func listNodes(*sdk.Request) *sdk.Response {
	nodes, err := agentNodes()
	if err != nil {
		return sdk.Error(sdk.StatusBadGateway, "list nodes: %v", err)
	}
	out := make([]Node, 0, len(nodes))
	for i := range nodes {
		out = append(out, nodes[i].view())
	}
	return sdk.JSON(sdk.StatusOK, out)
}

// find returns the node whose Zero-OS id is the request's nodeid.
func find(r *sdk.Request) (*agentNode, *sdk.Response) {
	id := strings.ToLower(r.Param("nodeid"))
	nodes, err := agentNodes()
	if err != nil {
		return nil, sdk.Error(sdk.StatusBadGateway, "list nodes: %v", err)
	}
	for i := range nodes {
		if nodes[i].Discovery.ZeroOS.ID == id {
			return &nodes[i], nil
		}
	}
	return nil, sdk.Error(sdk.StatusNotFound, "node '%s' not found (a node's id is its MAC without colons)", r.Param("nodeid"))
}

func getNode(r *sdk.Request) *sdk.Response {
	n, fail := find(r)
	if fail != nil {
		return fail
	}
	return sdk.JSON(sdk.StatusOK, n.view())
}

// failed answers a node command's error with its status (403, 404, 409,
// 502, 504) and message.
func failed(err error) *sdk.Response {
	if ne, ok := sdk.AsNodeError(err); ok && ne.Status >= 400 {
		status := ne.Status
		if status == sdk.StatusBadGateway && ne.Result != nil && ne.Result.Code == sdk.StatusNotFound {
			status = sdk.StatusNotFound // the node ran the job: what it looked for is not there
		}
		return sdk.Error(status, "%s", ne.Message)
	}
	return sdk.Error(sdk.StatusBadGateway, "%v", err)
}

// target is what a route acts on: the node, or with a {name} in its path
// the node's running container.
func target(r *sdk.Request) (sdk.NodeRef, *sdk.Response) {
	if r.Param("name") != "" {
		return inside(r)
	}
	return sdk.Node(r.Param("nodeid")), nil
}

// info answers a target's info.* (or core.state) as the orchestrator shows
// it; asList wraps a node's single object in a list, as the seed's mem
// example does.
func info(command string, asList bool) sdk.HandlerFunc {
	return func(r *sdk.Request) *sdk.Response {
		ref, fail := target(r)
		if fail != nil {
			return fail
		}
		var v any
		if err := ref.JSON(command, nil, &v); err != nil {
			return failed(err)
		}
		if asList && r.Param("name") == "" {
			v = []any{v}
		}
		return sdk.JSON(sdk.StatusOK, v)
	}
}

// JobListItem is the orchestrator's job list entry.
type JobListItem struct {
	ID        string `json:"id"`
	StartTime int64  `json:"startTime"`
}

type runningJob struct {
	Cmd struct {
		ID string `json:"id"`
	} `json:"cmd"`
	StartTime int64 `json:"starttime"`
}

func listJobs(r *sdk.Request) *sdk.Response {
	ref, fail := target(r)
	if fail != nil {
		return fail
	}
	var jobs []runningJob
	if err := ref.JSON("job.list", map[string]any{"id": nil}, &jobs); err != nil {
		return failed(err)
	}
	out := make([]JobListItem, 0, len(jobs))
	for _, j := range jobs {
		if j.Cmd.ID != "" {
			out = append(out, JobListItem{ID: j.Cmd.ID, StartTime: j.StartTime})
		}
	}
	return sdk.JSON(sdk.StatusOK, out)
}

// noContent runs one command on the request's target and answers 204.
func noContent(command string, args func(r *sdk.Request) (map[string]any, *sdk.Response)) sdk.HandlerFunc {
	return func(r *sdk.Request) *sdk.Response {
		ref, fail := target(r)
		if fail != nil {
			return fail
		}
		var a map[string]any
		if args != nil {
			if a, fail = args(r); fail != nil {
				return fail
			}
		}
		if _, err := ref.Call(command, a); err != nil {
			return failed(err)
		}
		return &sdk.Response{Status: sdk.StatusNoContent}
	}
}

// jobSignal is job.kill's arguments: SIGKILL for DELETE, the body's
// signal (default 15) for POST.
func jobSignal(r *sdk.Request) (map[string]any, *sdk.Response) {
	sig := 9
	if r.Method == "POST" {
		var fail *sdk.Response
		if sig, fail = decodeSignal(r); fail != nil {
			return nil, fail
		}
	}
	return map[string]any{"id": r.Param("jobid"), "signal": sig}, nil
}

// processSignal is process.kill's arguments: SIGTERM for DELETE, the
// body's signal (default 15) for POST.
func processSignal(r *sdk.Request) (map[string]any, *sdk.Response) {
	pid, fail := pidParam(r)
	if fail != nil {
		return nil, fail
	}
	sig := 15
	if r.Method == "POST" {
		if sig, fail = decodeSignal(r); fail != nil {
			return nil, fail
		}
	}
	return map[string]any{"pid": pid, "signal": sig}, nil
}

// JobResult is the orchestrator's JobResult.
type JobResult struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Level     int    `json:"level"`
	StartTime int64  `json:"startTime"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	State     string `json:"state"` // unknown_cmd, error, success, killed, timeout, duplicate_id, running
	Data      string `json:"data"`
}

func jobResult(res *sdk.NodeResult) JobResult {
	return JobResult{ID: res.ID, Name: res.Command, Level: res.Level, StartTime: res.StartTime, Stdout: res.Stdout(),
		Stderr: res.Stderr(), State: strings.ToLower(res.State), Data: res.Data}
}

func getJob(r *sdk.Request) *sdk.Response {
	ref, fail := target(r)
	if fail != nil {
		return fail
	}
	res, err := ref.Result(r.Param("jobid"))
	if err != nil {
		return failed(err)
	}
	return sdk.JSON(sdk.StatusOK, jobResult(res))
}

// startSystem starts a CoreSystem on the target; POST …/jobs answers 202
// with the job's id, POST …/processes 202 alone (as the seed shows).
func startSystem(r *sdk.Request) *sdk.Response {
	ref, fail := target(r)
	if fail != nil {
		return fail
	}
	p, fail := decodeSystem(r)
	if fail != nil {
		return fail
	}
	id, err := ref.Start("core.system", systemArgs(*p))
	if err != nil {
		return failed(err)
	}
	if !strings.HasSuffix(r.Path, "/jobs") {
		return &sdk.Response{Status: sdk.StatusAccepted}
	}
	resp := sdk.JSON(sdk.StatusAccepted, map[string]string{"id": id})
	resp.Headers["Location"] = []string{r.Path + "/" + id}
	return resp
}

// Process is the orchestrator's Process.
type Process struct {
	Cmdline string             `json:"cmdline"`
	CPU     map[string]float64 `json:"cpu"`
	PID     int                `json:"pid"`
	RSS     uint64             `json:"rss"`
	Swap    uint64             `json:"swap"`
	VMS     uint64             `json:"vms"`
}

func processes(r *sdk.Request, pid any) ([]Process, *sdk.Response) {
	ref, fail := target(r)
	if fail != nil {
		return nil, fail
	}
	var ps []Process
	if err := ref.JSON("process.list", map[string]any{"pid": pid}, &ps); err != nil {
		return nil, failed(err)
	}
	if ps == nil {
		ps = []Process{}
	}
	return ps, nil
}

func listProcesses(r *sdk.Request) *sdk.Response {
	ps, fail := processes(r, nil)
	if fail != nil {
		return fail
	}
	return sdk.JSON(sdk.StatusOK, ps)
}

func pidParam(r *sdk.Request) (int, *sdk.Response) {
	pid, err := strconv.Atoi(r.Param("pid"))
	if err != nil || pid <= 0 {
		return 0, sdk.Error(sdk.StatusBadRequest, "pid '%s' is not a process id", r.Param("pid"))
	}
	return pid, nil
}

func getProcess(r *sdk.Request) *sdk.Response {
	pid, fail := pidParam(r)
	if fail != nil {
		return fail
	}
	ps, fail := processes(r, pid)
	if fail != nil {
		return fail
	}
	if len(ps) == 0 {
		return sdk.Error(sdk.StatusNotFound, "process %d not found", pid)
	}
	return sdk.JSON(sdk.StatusOK, ps[0])
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
