package nodetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/nodes"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
	"github.com/golang-jwt/jwt/v5"
)

// zeroOSServer is a server with the zero-os barclamp installed (compiled
// from source) and agents joined to it.
func zeroOSServer(t *testing.T, st *store.Store) *apitest.Server {
	t.Helper()
	return barclampServer(t, st, "barclamps/zero-os", barclamp.SourceEmbedded, 2,
		nodes.Config{Heartbeat: 250 * time.Millisecond, DeadAfter: time.Second})
}

// barclampServer is a server for agents (tuned by nc) with the barclamp
// at dir compiled from source and installed (pool instances of it).
func barclampServer(t testing.TB, st *store.Store, dir, source string, pool int, nc nodes.Config) *apitest.Server {
	t.Helper()
	agenttest.Require(t)
	wasm := pluginstest.Build(t, dir)
	s := apitest.New(t, st, func(su *apitest.Setup) {
		su.Host = pluginstest.Host(t, st, plugins.Config{PoolSize: pool})
		su.API.Nodes = nc
	})
	if _, err := s.Barclamps.Install(context.Background(), wasm, source); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestZeroOSNodes: the orchestrator's node subtree under /zero-os/v2, the
// seed's first three examples verbatim with a bearer JWT.
func TestZeroOSNodes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := zeroOSServer(t, st)
		ag := s.StartAgent(func(c *agent.Config) { c.MAC = "52:54:00:12:34:56" })
		other := s.StartAgent()
		bearer := "Bearer " + s.Token

		// List all Zero-OS nodes.
		list := s.Must(200, "GET", "/zero-os/v2/nodes", "", "Authorization", bearer).List(t)
		if len(list) != 2 || list[0]["id"] == nil || list[0]["hostname"] == nil || list[0]["ipaddress"] == nil {
			t.Fatalf("nodes: %v", list)
		}
		var mine map[string]any
		for _, n := range list {
			if n["id"] == "525400123456" {
				mine = n
			}
		}
		if mine == nil || mine["status"] != "running" || mine["ipaddress"] != "127.0.0.1" {
			t.Fatalf("node 525400123456 in %v", list)
		}
		// Memory information of a node: a list with gopsutil's fields.
		mem := s.Must(200, "GET", "/zero-os/v2/nodes/525400123456/mem", "", "Authorization", bearer).List(t)
		for _, k := range []string{"active", "available", "buffers", "cached", "free", "inactive", "total", "used", "usedPercent", "wired"} {
			if _, ok := mem[0][k]; !ok {
				t.Errorf("mem lacks %s: %v", k, mem[0])
			}
		}
		// Reboot a node: 204, and the agent ran its reboot command.
		r := s.Do("POST", "/zero-os/v2/nodes/525400123456/reboot", "", "Authorization", bearer)
		if r.Status != 204 {
			t.Fatalf("reboot: %d %s", r.Status, r.Body)
		}

		one := s.Must(200, "GET", "/zero-os/v2/nodes/525400123456", "").Object(t)
		if one["id"] != "525400123456" || one["status"] != "running" {
			t.Fatalf("one node: %v", one)
		}
		for _, sub := range []string{"cpus", "disks", "nics", "info", "state"} {
			s.Must(200, "GET", "/zero-os/v2/nodes/525400123456/"+sub, "")
		}
		// Jobs and processes.
		c := s.AgentClient(ag)
		id, err := c.Push(ctx(t), core0.Command{Command: "core.system", Arguments: mustJSON(core0.SystemArgs{Name: "sleep", Args: []string{"77"}})})
		if err != nil {
			t.Fatal(err)
		}
		jobs := s.Must(200, "GET", "/zero-os/v2/nodes/525400123456/jobs", "").List(t)
		if !strings.Contains(fmt.Sprint(jobs), id) || jobs[0]["startTime"] == nil {
			t.Fatalf("jobs: %v", jobs)
		}
		if got := s.Must(200, "GET", "/zero-os/v2/nodes/525400123456/jobs/"+id, "").Object(t); got["state"] != "running" {
			t.Fatalf("a running job: %v", got)
		}
		var pid float64
		waitFor(t, func() bool {
			for _, p := range s.Must(200, "GET", "/zero-os/v2/nodes/525400123456/processes", "").List(t) {
				if p["cmdline"] == "sleep 77" {
					pid = p["pid"].(float64)
					return true
				}
			}
			return false
		})
		p := s.Must(200, "GET", fmt.Sprintf("/zero-os/v2/nodes/525400123456/processes/%d", int(pid)), "").Object(t)
		if p["cmdline"] != "sleep 77" || p["cpu"] == nil {
			t.Fatalf("one process: %v", p)
		}
		s.Must(204, "DELETE", "/zero-os/v2/nodes/525400123456/jobs/"+id, "")
		done := s.Must(200, "GET", "/zero-os/v2/nodes/525400123456/jobs/"+id, "").Object(t)
		if done["state"] != "killed" || done["name"] != "core.system" {
			t.Fatalf("a killed job: %v", done)
		}
		id2, _ := c.Push(ctx(t), core0.Command{Command: "bash", Arguments: mustJSON(core0.BashArgs{Script: "exec sleep 78"})})
		waitFor(t, func() bool { return len(processes(t, c, "sleep 78")) == 1 })
		pid2 := processes(t, c, "sleep 78")[0]
		s.Must(204, "POST", fmt.Sprintf("/zero-os/v2/nodes/525400123456/processes/%d", pid2), `{"signal": 9}`)
		if r, _ := c.Result(ctx(t), id2); r.State != core0.StateKilled {
			t.Fatalf("signalled process: %+v", r)
		}
		c.Push(ctx(t), core0.Command{Command: "core.system", Arguments: mustJSON(core0.SystemArgs{Name: "sleep", Args: []string{"79"}})}) //nolint:errcheck
		s.Must(204, "DELETE", "/zero-os/v2/nodes/525400123456/jobs", "")
		waitFor(t, func() bool { return len(processes(t, c, "sleep 79")) == 0 })

		// Refusals.
		s.AddUser("reader", "reader-password", auth.RoleReader, true)
		rt, _, _ := s.Auth.MintToken(&auth.Caller{Username: "reader", Role: auth.RoleReader}, time.Hour)
		if r := s.Do("POST", "/zero-os/v2/nodes/525400123456/reboot", "", "Authorization", "Bearer "+rt); r.Status != 403 {
			t.Errorf("a reader's reboot: %d %s", r.Status, r.Body)
		}
		s.Must(200, "GET", "/zero-os/v2/nodes/525400123456/mem", "", "Authorization", "Bearer "+rt)
		for _, path := range []string{"/zero-os/v2/nodes/0000deadbeef", "/zero-os/v2/nodes/0000deadbeef/mem", "/zero-os/v2/nodes/525400123456/jobs/no-such-job"} {
			if r := s.Do("GET", path, ""); r.Status != 404 || !strings.Contains(string(r.Body), `"message"`) {
				t.Errorf("GET %s: %d %s", path, r.Status, r.Body)
			}
		}
		if r := s.Do("GET", "/zero-os/v2/nodes/525400123456/processes/abc", ""); r.Status != 400 {
			t.Errorf("bad pid: %d %s", r.Status, r.Body)
		}
		if r := s.Do("POST", "/zero-os/v2/nodes/525400123456/processes/12345", `{"signal": 99}`); r.Status != 422 || !strings.Contains(string(r.Body), `"field":"signal"`) {
			t.Errorf("bad signal: %d %s", r.Status, r.Body)
		}
		if r := s.Do("GET", "/zero-os/v2/nodes", "", "Authorization", ""); r.Status != 401 {
			t.Errorf("no credentials: %d", r.Status)
		}
		// A stopped agent: 502 naming the node, and halted once its heartbeats stop.
		other.Stop() //nolint:errcheck
		zid := strings.ReplaceAll(other.Config.MAC, ":", "")
		r = s.Do("GET", "/zero-os/v2/nodes/"+zid+"/mem", "")
		if r.Status != 502 || !strings.Contains(string(r.Body), other.Node.Name) {
			t.Errorf("a stopped agent's mem: %d %s", r.Status, r.Body)
		}
		waitFor(t, func() bool {
			var n map[string]any
			json.Unmarshal(s.Do("GET", "/zero-os/v2/nodes/"+zid, "").Body, &n) //nolint:errcheck
			return n["status"] == "halted"
		})
	})
}

// TestZeroOSContainers: the seed's container examples (list, create, jobs,
// kill a job, processes, start a process) with the seed's field names and
// status codes, on a root and a nic this agent supports.
func TestZeroOSContainers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) { testZeroOSContainers(t, st) })
}

func testZeroOSContainers(t *testing.T, st *store.Store) {
	s := zeroOSServer(t, st)
	ag := s.StartAgent(func(c *agent.Config) { c.MAC = "52:54:00:12:34:56" })
	c := s.AgentClient(ag)
	t.Cleanup(func() { terminateContainers(c) })
	root := busyboxRoot(t)
	bearer := []string{"Authorization", "Bearer " + s.Token}
	base := "/zero-os/v2/nodes/525400123456/containers"

	if got := s.Must(200, "GET", base, "", bearer...).List(t); len(got) != 0 {
		t.Fatalf("no containers yet: %v", got)
	}
	create := fmt.Sprintf(`{
  "nics":[{"config":{"dhcp":false,"cidr":"172.31.200.217/16","gateway":"172.31.0.1","dns":["8.8.8.8"]},"id":"0","type":"default"}],
  "id":"vfw_22",
  "filesystems":[],
  "flist":%q,
  "hostNetworking":false,
  "hostname":"vfw_22",
  "initprocesses":[{"name": "/bin/sleep", "args": ["1000"], "pwd": "", "environment": ["A=1"]}],
  "ports":["18484:80"]
}`, root)
	if r := s.Do("POST", base, create, bearer...); r.Status != 204 {
		t.Fatalf("create a container: %d %s", r.Status, r.Body)
	}
	list := s.Must(200, "GET", base, "", bearer...).List(t)
	if len(list) != 1 || list[0]["id"] != "vfw_22" || list[0]["hostname"] != "vfw_22" || list[0]["flist"] != root || list[0]["status"] != "running" {
		t.Fatalf("containers: %v", list)
	}
	got := s.Must(200, "GET", base+"/vfw_22", "").Object(t)
	if got["status"] != "running" || len(got["initprocesses"].([]any)) != 1 || got["ports"].([]any)[0] != "18484:80" {
		t.Fatalf("the container: %v", got)
	}
	// List jobs on a container: the init process runs as a job.
	var jobs []map[string]any
	waitFor(t, func() bool {
		jobs = s.Must(200, "GET", base+"/vfw_22/jobs", "", bearer...).List(t)
		return len(jobs) >= 1
	})
	if jobs[0]["id"] == nil || jobs[0]["startTime"] == nil {
		t.Fatalf("container jobs: %v", jobs)
	}
	// Kill a job.
	if r := s.Do("DELETE", base+"/vfw_22/jobs/"+jobs[0]["id"].(string), "", bearer...); r.Status != 204 {
		t.Fatalf("kill a job: %d %s", r.Status, r.Body)
	}
	// List processes on a container: its init is pid 1.
	procs := s.Must(200, "GET", base+"/vfw_22/processes", "", bearer...).List(t)
	if len(procs) == 0 || procs[0]["pid"].(float64) != 1 || procs[0]["cpu"] == nil {
		t.Fatalf("container processes: %v", procs)
	}
	// Start a process on a container (the seed sends env): 202.
	if r := s.Do("POST", base+"/vfw_22/processes", `{"name": "/bin/sleep", "pwd": "", "args": ["999"], "env": []}`, bearer...); r.Status != 202 {
		t.Fatalf("start a process: %d %s", r.Status, r.Body)
	}
	waitFor(t, func() bool {
		return strings.Contains(string(s.Must(200, "GET", base+"/vfw_22/processes", "").Body), "sleep 999")
	})
	for _, sub := range []string{"state", "mem", "cpus", "nics", "info"} {
		s.Must(200, "GET", base+"/vfw_22/"+sub, "")
	}
	// Files: upload (multipart), download, delete.
	payload := strings.Repeat("crowbar\n", 100000) // 800 KB: two write blocks
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	fw, _ := mw.CreateFormFile("file", "big.txt")
	fw.Write([]byte(payload)) //nolint:errcheck
	mw.Close()
	if r := s.Do("POST", base+"/vfw_22/filesystem?path=/tmp/big.txt", mp.String(), "Content-Type", mw.FormDataContentType()); r.Status != 204 {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	if r := s.Must(200, "GET", base+"/vfw_22/filesystem?path=/tmp/big.txt", ""); string(r.Body) != payload {
		t.Fatalf("download: %d bytes back, %d sent", len(r.Body), len(payload))
	}
	for _, bad := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/vfw_22/filesystem", "", 422},
		{"GET", "/vfw_22/filesystem?path=relative", "", 422},
		{"GET", "/vfw_22/filesystem?path=/no/such/file", "", 404},
		{"POST", "/vfw_22/filesystem?path=/tmp/x", "not multipart", 400},
		{"DELETE", "/vfw_22/filesystem", `{"path": "/no/such"}`, 404},
	} {
		r := s.Do(bad.method, base+bad.path, bad.body, "Content-Type", "multipart/form-data")
		if r.Status != bad.status {
			t.Errorf("%s %s: %d %s, want %d", bad.method, bad.path, r.Status, r.Body, bad.status)
		}
	}
	s.Must(204, "DELETE", base+"/vfw_22/filesystem", `{"path": "/tmp/big.txt"}`)
	s.Must(404, "GET", base+"/vfw_22/filesystem?path=/tmp/big.txt", "")

	// Stop keeps the definition (halted); start runs it again.
	s.Must(204, "POST", base+"/vfw_22/stop", "")
	if got := s.Must(200, "GET", base+"/vfw_22", "").Object(t); got["status"] != "halted" {
		t.Fatalf("after stop: %v", got)
	}
	if r := s.Do("GET", base+"/vfw_22/processes", ""); r.Status != 409 {
		t.Fatalf("processes of a stopped container: %d %s", r.Status, r.Body)
	}
	s.Must(204, "POST", base+"/vfw_22/start", "")
	if got := s.Must(200, "GET", base+"/vfw_22", "").Object(t); got["status"] != "running" {
		t.Fatalf("after start: %v", got)
	}

	// Bad input: nothing stored.
	s.AddUser("reader", "reader-password", auth.RoleReader, true)
	rt, _, _ := s.Auth.MintToken(&auth.Caller{Username: "reader", Role: auth.RoleReader}, time.Hour)
	before := snapshot(t, st)
	for _, tc := range []struct {
		body   string
		status int
		field  string
	}{
		{`{"id": "x", "flist": `, 400, ""},
		{`{"id": "x", "flist": "/r", "colour": "red"}`, 400, ""},
		{`{"id": "x", "flist": 7}`, 400, ""},
		{`{"id": "no spaces", "flist": "/r"}`, 422, "name"},
		{`{"id": "x"}`, 422, "flist"},
		{`{"id": "x", "flist": "/r", "ports": ["eighty"]}`, 422, "ports"},
		{`{"id": "x", "flist": "/r", "nics": [{"id": "0"}]}`, 422, "nics"},
		{create, 409, ""},
	} {
		r := s.Do("POST", base, tc.body)
		if r.Status != tc.status || !strings.Contains(string(r.Body), `"field":"`+tc.field) && tc.field != "" {
			t.Errorf("POST %s: %d %s, want %d (field %q)", tc.body, r.Status, r.Body, tc.status, tc.field)
		}
	}
	if r := s.Do("POST", base+"/vfw_22/processes", `{"pwd": "/"}`); r.Status != 422 {
		t.Errorf("a process without a name: %d %s", r.Status, r.Body)
	}
	if r := s.Do("POST", base, strings.Replace(create, "vfw_22", "vfw_23", -1), "Authorization", "Bearer "+rt); r.Status != 403 {
		t.Errorf("a reader creates: %d %s", r.Status, r.Body)
	}
	if r := s.Do("POST", base+"/vfw_22/processes", `{"name": "/bin/true"}`, "Authorization", "Bearer "+rt); r.Status != 403 {
		t.Errorf("a reader starts a process: %d %s", r.Status, r.Body)
	}
	if after := snapshot(t, st); !reflect.DeepEqual(before, after) {
		t.Error("refused requests changed stored data")
	}
	s.Must(404, "GET", base+"/nope", "")
	// A root the agent cannot use (the seed's flist): defined (204), halted with the reason.
	flist := `{"id": "vfw_24", "flist": "http://192.0.2.132:8080/deboeckj/lede.flist", "nics": [{"type": "default", "id": "0"}]}`
	s.Must(204, "POST", base, flist)
	if got := s.Must(200, "GET", base+"/vfw_24", "").Object(t); got["status"] != "halted" || !strings.Contains(fmt.Sprint(got["error"]), "flist") {
		t.Fatalf("a container from an flist: %v", got)
	}
	// Delete: gone from the node and the list.
	s.Must(204, "DELETE", base+"/vfw_22", "")
	s.Must(204, "DELETE", base+"/vfw_24", "")
	if got := s.Must(200, "GET", base, "").List(t); len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
	var left map[string]any
	c.JSON(ctx(t), "corex.list", struct{}{}, &left) //nolint:errcheck
	if len(left) != 0 {
		t.Fatalf("containers left on the node: %v", left)
	}
}

// TestZeroOSOrchestratorPythonClient: the calls of the orchestrator's
// generated Python client (testdata/orchestrator_client.py, on Debian's
// python3-requests) against /zero-os/v2.
func TestZeroOSOrchestratorPythonClient(t *testing.T) {
	if err := exec.Command(python, "-c", "import requests").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s cannot import requests (make test-tools installs python3-requests): %v", python, err)
		}
		t.Skipf("skipped: %s cannot import requests; run make test-tools", python)
	}
	st := storetest.Open(t, filepath.Join(t.TempDir(), "crowbar.db"))
	s := zeroOSServer(t, st)
	ag := s.StartAgent(func(c *agent.Config) { c.MAC = "52:54:00:12:34:56" })
	c := s.AgentClient(ag)
	t.Cleanup(func() { terminateContainers(c) })
	script := filepath.Join(filepath.Dir(pythonScript()), "orchestrator_client.py")
	out, err := exec.Command(python, script, s.URL+"/zero-os/v2", s.Token, "525400123456", busyboxRoot(t)).CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("the orchestrator client failed: %v", err)
	}
	for _, check := range []string{"ListNodes GetNode", "GetMemInfo", "ListNodeProcesses", "CreateContainer ListContainers GetContainer",
		"StartContainerProcess", "StartContainerJob", "FileUpload FileDownload", "StopContainer StartContainer DeleteContainer", "404"} {
		if !strings.Contains(string(out), "ok "+check) {
			t.Errorf("check %q did not pass", check)
		}
	}
}

// snapshot is every table but node_agents, whose heartbeat times move on
// their own while agents run.
func snapshot(t *testing.T, st *store.Store) map[string][]map[string]any {
	snap := storetest.Snapshot(t, st)
	delete(snap, "node_agents")
	return snap
}

// TestZeroOSTimeoutsAndTokens: a node that accepts but does not answer is
// 504 naming it; a bearer token valid for over an hour is 440.
func TestZeroOSTimeoutsAndTokens(t *testing.T) {
	agenttest.Require(t)
	st := storetest.Open(t, filepath.Join(t.TempDir(), "crowbar.db"))
	wasm := pluginstest.Build(t, "barclamps/zero-os")
	s := apitest.New(t, st, func(su *apitest.Setup) {
		su.Host = pluginstest.Host(t, st, plugins.Config{PoolSize: 2, HTTPTimeout: 3 * time.Second})
		su.API.Nodes = nodes.Config{Heartbeat: 250 * time.Millisecond, DeadAfter: time.Minute}
	})
	if _, err := s.Barclamps.Install(context.Background(), wasm, barclamp.SourceEmbedded); err != nil {
		t.Fatal(err)
	}
	hc := helperConfig{Listen: freePort(t), StateDir: t.TempDir(), Server: s.URL, JoinToken: s.JoinToken(time.Hour), MAC: "52:54:00:ab:cd:ef"}
	cmd, node := startHelper(t, s, hc)
	s.Must(200, "GET", "/zero-os/v2/nodes/525400abcdef/mem", "") // connections made
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck
	r := s.Do("GET", "/zero-os/v2/nodes/525400abcdef/mem", "")
	if r.Status != 504 || !strings.Contains(string(r.Body), node.Name) {
		t.Fatalf("a frozen agent: %d %s", r.Status, r.Body)
	}
	cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck

	long := signed(t, s, jwt.MapClaims{"sub": "admin", "username": "admin", "role": "admin",
		"iat": time.Now().Unix(), "exp": time.Now().Add(2 * time.Hour).Unix()})
	if r := s.Do("GET", "/zero-os/v2/nodes", "", "Authorization", "Bearer "+long); r.Status != 440 {
		t.Fatalf("a token valid for two hours: %d %s", r.Status, r.Body)
	}
}
