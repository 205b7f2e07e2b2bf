package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/barclamps"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// sharedWasmCache keeps compiled barclamps across the tests' servers (and
// test runs), as an operator's data dir keeps them across restarts.
var sharedWasmCache = filepath.Join(os.TempDir(), "crowbar-test-wasm-cache")

// seedServer runs crowbar server in-process on dsn and returns its base URL
// and the install key; it stops with the test.
func seedServer(t *testing.T, dsn string) (base, key string) {
	t.Helper()
	if e, _ := barclamps.Embedded(); len(e) == 0 {
		t.Fatal("no embedded barclamps: run make barclamps (make test does)")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the seed workflows run real curl; install curl")
	}
	dir := t.TempDir()
	addrc := make(chan net.Addr, 1)
	o := &serverOptions{listen: "127.0.0.1:0", dataDir: dir, agentHeartbeat: 10 * time.Second, agentDeadAfter: 30 * time.Second, database: dsn, wasmCache: sharedWasmCache, logLevel: "warn", logFormat: "text",
		maxBody: 1 << 20, shutdownTimeout: 10 * time.Second, realm: "crowbar", digestAlgorithms: []string{"SHA-256", "MD5"},
		nonceTTL: 5 * time.Minute, annealWorkers: 8, annealLease: 30 * time.Second, onListen: func(a net.Addr) { addrc <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServer(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	select {
	case a := <-addrc:
		base = "http://" + a.String()
	case err := <-done:
		done <- nil // for the cleanup
		t.Fatalf("server stopped early: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "crowbar.install.key"))
	if err != nil {
		t.Fatal(err)
	}
	return base, strings.TrimSpace(string(b))
}

// seedCurl runs the seed's curl command line (its arguments after
// "curl --digest -u $(cat /etc/crowbar.install.key)") with the URL's host
// rewritten, and returns the status and the decoded body.
func seedCurl(t *testing.T, base, key string, args ...string) (int, any) {
	t.Helper()
	full := []string{"-sS", "-w", "\n%{http_code}", "--digest", "-u", key}
	for _, a := range args {
		full = append(full, strings.Replace(a, "http://127.0.0.1:3000", base, 1))
	}
	out, err := exec.Command("curl", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	text := strings.TrimSpace(string(out))
	i := strings.LastIndex(text, "\n")
	code, _ := strconv.Atoi(text[i+1:])
	var body any
	if i > 0 {
		if err := json.Unmarshal([]byte(text[:i]), &body); err != nil {
			t.Fatalf("curl %v: body is not JSON: %v\n%s", args, err, text[:i])
		}
	}
	return code, body
}

func want(t *testing.T, what string, code, wantCode int, body any, fields map[string]any) map[string]any {
	t.Helper()
	if code != wantCode {
		t.Fatalf("%s: status %d, want %d: %v", what, code, wantCode, body)
	}
	obj, _ := body.(map[string]any)
	for k, v := range fields {
		got, ok := obj[k]
		if !ok {
			t.Fatalf("%s: response lacks field %q: %v", what, k, obj)
		}
		if v != nil && !jsonSame(got, v) {
			t.Fatalf("%s: %s = %v, want %v (%v)", what, k, got, v, obj)
		}
	}
	return obj
}

func jsonSame(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// waitActive polls a node's node-roles until all are ACTIVE.
func waitActive(t *testing.T, base, key, node string) []any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := seedCurl(t, base, key, "-X", "GET", "--url", "http://127.0.0.1:3000/api/v2/nodes/"+node+"/node_roles")
		list, _ := body.([]any)
		all := code == 200 && len(list) > 0
		for _, nr := range list {
			if nr.(map[string]any)["state_name"] != "active" {
				all = false
			}
		}
		if all {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-roles of %s not all active: %v", node, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const seedJSON = "Content-Type:application/json"

// TestSeedWorkflows runs both workflows of the OpenCrowbar API document,
// curl call by curl call, against a real server on each database.
func TestSeedWorkflows(t *testing.T) {
	for _, db := range storetest.Databases(t) {
		t.Run(string(db.Dialect), func(t *testing.T) {
			base, key := seedServer(t, db.DSN)
			const u = "http://127.0.0.1:3000"

			// Creating a Node for a system that already has an OS.
			code, body := seedCurl(t, base, key, "-X", "POST", "-d", "name=newtest.cr0wbar.com", "-d", "bootenv=local", "-H", seedJSON, "--url", u+"/api/v2/nodes")
			want(t, "create node", code, 201, body, map[string]any{"admin": false, "alias": "newtest", "alive": false, "allocated": false,
				"available": false, "bootenv": "local", "deployment_id": 1, "description": "", "discovery": map[string]any{},
				"hint": map[string]any{}, "name": "newtest.cr0wbar.com", "order": nil, "target_role_id": nil, "created_at": nil, "updated_at": nil, "id": nil})
			code, body = seedCurl(t, base, key, "-X", "PUT", "-H", seedJSON, "--url", u+"/api/v2/nodes/newtest.cr0wbar.com/attribs/hint-admin-v4addr", "-d", `{"value": "192.168.124.99/24"}`)
			want(t, "set hint", code, 200, body, map[string]any{"name": "hint-admin-v4addr", "value": "192.168.124.99/24", "writable": true})
			code, body = seedCurl(t, base, key, "-X", "POST", "-H", seedJSON, "--url", u+"/api/v2/node_roles", "-d", `{"node": "newtest.cr0wbar.com", "role": "crowbar-managed-node"}`)
			want(t, "bind", code, 201, body, map[string]any{"state": 4, "state_name": "proposed", "run_count": 0, "deployment_id": 1,
				"available": true, "runlog": "", "order": 10000, "status": nil, "cohort": nil, "role_id": nil, "node_id": nil})
			code, body = seedCurl(t, base, key, "-X", "PUT", "-H", seedJSON, "--url", u+"/api/v2/nodes/newtest.cr0wbar.com/commit")
			want(t, "commit node", code, 200, body, map[string]any{"available": true})
			code, body = seedCurl(t, base, key, "-X", "PUT", "-H", seedJSON, "--url", u+"/api/v2/nodes/newtest.cr0wbar.com", "-d", "alive=true")
			want(t, "alive", code, 200, body, map[string]any{"alive": true})
			waitActive(t, base, key, "newtest.cr0wbar.com")
			code, body = seedCurl(t, base, key, "-X", "GET", "--url", u+"/api/v2/nodes/newtest.cr0wbar.com/attribs/hint-admin-v4addr")
			want(t, "read hint", code, 200, body, map[string]any{"value": "192.168.124.99/24"})
			code, body = seedCurl(t, base, key, "-X", "GET", "--url", u+"/api/v2/nodes/newtest.cr0wbar.com/attribs/network-admin-v4addr")
			want(t, "admin address from the hint", code, 200, body, map[string]any{"value": "192.168.124.99/24"})

			// Two discovered nodes for the second workflow.
			for _, nm := range [][2]string{{"78e3be198029.smoke.test", "78:e3:be:19:80:29"}, {"d52-54-05-3f-00-00.smoke.test", "52:54:05:3f:00:00"}} {
				n, mac := nm[0], nm[1]
				code, body = seedCurl(t, base, key, "-X", "POST", "-H", seedJSON, "--url", u+"/api/v2/nodes", "-d",
					`{"name": "`+n+`", "bootenv": "sledgehammer", "alive": true, "hint": {"admin_macs": ["`+mac+`"]}}`)
				want(t, "discover "+n, code, 201, body, nil)
				code, body = seedCurl(t, base, key, "-X", "POST", "-H", seedJSON, "--url", u+"/api/v2/node_roles", "-d", `{"node": "`+n+`", "role": "crowbar-managed-node"}`)
				want(t, "bind discovered", code, 201, body, nil)
				code, body = seedCurl(t, base, key, "-X", "PUT", "-H", seedJSON, "--url", u+"/api/v2/nodes/"+n+"/commit")
				want(t, "commit discovered", code, 200, body, nil)
			}

			// Installing an operating system on a node.
			code, body = seedCurl(t, base, key, "-X", "GET", "-H", seedJSON, "-H", `x-return-attributes:["name"]`, "--url", u+"/api/v2/nodes")
			if code != 200 || !jsonSame(body, []any{map[string]any{"name": "newtest.cr0wbar.com"},
				map[string]any{"name": "78e3be198029.smoke.test"}, map[string]any{"name": "d52-54-05-3f-00-00.smoke.test"}}) {
				t.Fatalf("list names: %d %v", code, body)
			}
			code, body = seedCurl(t, base, key, "-X", "POST", "-H", seedJSON, "--url", u+"/api/v2/deployments", "-d", `{"name": "test1"}`)
			want(t, "create deployment", code, 201, body, map[string]any{"system": false, "state": 0, "parent_id": 1, "name": "test1",
				"description": nil, "created_at": nil, "updated_at": nil, "id": nil})
			code, body = seedCurl(t, base, key, "-X", "PUT", "-H", seedJSON, "--url", u+"/api/v2/nodes/d52-54-05-3f-00-00.smoke.test", "-d", `{"deployment": "test1"}`)
			dep := want(t, "move node", code, 200, body, map[string]any{"alias": "d52-54-05-3f-00-00", "alive": true, "available": true,
				"bootenv": "sledgehammer", "hint": map[string]any{"admin_macs": []any{"52:54:05:3f:00:00"}}, "deployment_id": nil})
			code, body = seedCurl(t, base, key, "-X", "POST", "-H", seedJSON, "--url", u+"/api/v2/node_roles", "-d", `{"node": "d52-54-05-3f-00-00.smoke.test", "role": "crowbar-installed-node"}`)
			want(t, "bind installed-node", code, 201, body, map[string]any{"state": 4, "run_count": 0, "deployment_id": dep["deployment_id"],
				"available": true, "runlog": "", "status": nil, "cohort": nil})
			code, body = seedCurl(t, base, key, "-X", "PUT", "-H", seedJSON, "--url", u+"/api/v2/nodes/d52-54-05-3f-00-00.smoke.test/attribs/provisioner-target_os", "-d", `{"value": "ubuntu-12.04"}`)
			attrib := want(t, "target os", code, 200, body, map[string]any{"description": "The operating system to install on a node",
				"writable": true, "value": "ubuntu-12.04", "name": "provisioner-target_os", "map": "crowbar/target_os",
				"order": nil, "id": nil, "role_id": nil, "barclamp_id": nil, "created_at": nil, "updated_at": nil})
			schema := attrib["schema"].(map[string]any)
			if schema["type"] != "str" || schema["required"] != true || !containsAll(schema["enum"].([]any), "ubuntu-12.04", "redhat-6.5", "centos-6.5", "ubuntu-24.04", "debian-12", "rocky-9") {
				t.Fatalf("target os schema: %v", schema)
			}
			code, body = seedCurl(t, base, key, "-X", "PUT", "-H", seedJSON, "--url", u+"/api/v2/nodes/d52-54-05-3f-00-00.smoke.test/attribs/provisioner-target_os", "-d", `{"value": "windows-95"}`)
			want(t, "target os outside the enum", code, 422, body, nil)
			code, body = seedCurl(t, base, key, "-X", "PUT", "-H", seedJSON, "--url", u+"/api/v2/deployments/test1/commit")
			want(t, "commit deployment", code, 200, body, map[string]any{"name": "test1", "system": false, "parent_id": 1, "state": nil})

			// The install: the machine boots, fetches its script and answer
			// file, installs, and calls back with its token.
			install(t, base, key, "d52-54-05-3f-00-00.smoke.test", "52-54-05-3f-00-00", "ubuntu-12.04")
			nrs := waitActive(t, base, key, "d52-54-05-3f-00-00.smoke.test")
			if len(nrs) != 4 { // network-admin, crowbar-managed-node, provisioner-os-install, crowbar-installed-node
				t.Fatalf("node-roles of the installed node: %v", nrs)
			}
			code, body = seedCurl(t, base, key, "-X", "GET", "--url", u+"/api/v2/nodes/d52-54-05-3f-00-00.smoke.test")
			want(t, "installed node", code, 200, body, map[string]any{"bootenv": "local"})
			code, body = seedCurl(t, base, key, "-X", "GET", "--url", u+"/network/v2/allocations?node=d52-54-05-3f-00-00.smoke.test")
			if list, _ := body.([]any); code != 200 || len(list) != 1 || list[0].(map[string]any)["network"] != "admin" {
				t.Fatalf("admin allocation of the installed node: %d %v", code, body)
			}
			code, body = seedCurl(t, base, key, "-X", "GET", "--url", u+"/api/v2/deployments/test1")
			want(t, "deployment active", code, 200, body, map[string]any{"state": 2, "state_name": "active"})
			code, body = seedCurl(t, base, key, "-X", "GET", "--url", u+"/api/v2/anneal")
			want(t, "anneal", code, 200, body, map[string]any{"idle": true})
		})
	}
}

func containsAll(list []any, want ...string) bool {
	have := map[any]bool{}
	for _, v := range list {
		have[v] = true
	}
	for _, w := range want {
		if !have[w] {
			return false
		}
	}
	return true
}

// plainCurl fetches url as a booting machine does: no credentials.
func plainCurl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "-w", "\n%{http_code}"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	text := string(out)
	i := strings.LastIndex(text, "\n")
	code, _ := strconv.Atoi(text[i+1:])
	return code, text[:i]
}

// install plays the machine being installed: it waits for its install
// script, fetches the preseed it names, and calls back with its token.
func install(t *testing.T, base, key, node, mac, os string) {
	t.Helper()
	var script string
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(script, os) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never got an install script: %s", node, script)
		}
		time.Sleep(50 * time.Millisecond)
		_, script = plainCurl(t, base+"/provisioner/v2/nodes/"+mac+"/ipxe")
	}
	if !strings.HasPrefix(script, "#!ipxe\n") {
		t.Fatalf("not an iPXE script: %s", script)
	}
	i := strings.Index(script, base+"/provisioner/v2/nodes/")
	if i < 0 {
		t.Fatalf("the install script names no answer file on %s: %s", base, script)
	}
	answer := strings.Fields(script[i:])[0]
	token := answer[strings.Index(answer, "token=")+len("token="):]
	code, preseed := plainCurl(t, answer)
	if code != 200 || !strings.Contains(preseed, "d-i mirror/suite string precise") || !strings.Contains(preseed, "d-i netcfg/hostname string "+node) {
		t.Fatalf("preseed: %d\n%s", code, preseed)
	}
	code, _ = plainCurl(t, strings.Replace(answer, token, "wrong", 1))
	if code != 401 {
		t.Fatalf("preseed with a wrong token: %d", code)
	}
	id := strings.Split(strings.TrimPrefix(answer, base+"/provisioner/v2/nodes/"), "/")[0]
	code, body := plainCurl(t, "-X", "PUT", "-H", "X-Provisioner-Token: "+token, base+"/provisioner/v2/nodes/"+id+"/installed")
	if code != 200 {
		t.Fatalf("callback: %d %s", code, body)
	}
	code, _ = plainCurl(t, "-X", "PUT", "-H", "X-Provisioner-Token: "+token, base+"/provisioner/v2/nodes/"+id+"/installed")
	if code != 401 {
		t.Fatalf("a second callback with the spent token: %d", code)
	}
}
