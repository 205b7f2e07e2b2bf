package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/spf13/cobra"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// testBinary builds the crowbar binary once per test run.
func testBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "crowbar-test-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "crowbar")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = &buildError{err, string(out)}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "build: " + e.err.Error() + "\n" + e.out }

// cli runs the crowbar binary against a server and returns stdout, stderr
// and the exit code.
type cli struct {
	t   *testing.T
	bin string
	env []string
}

func newCLI(t *testing.T, base, key string) *cli {
	return &cli{t: t, bin: testBinary(t), env: append(os.Environ(), "CROWBAR_ENDPOINT="+base, "CROWBAR_KEY="+key)}
}

func (c *cli) run(args ...string) (string, string, int) {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("crowbar %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// ok runs a command that must succeed and decodes its JSON output.
func (c *cli) ok(args ...string) any {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("crowbar %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	var v any
	if strings.TrimSpace(out) != "" {
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			c.t.Fatalf("crowbar %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return v
}

func field(t *testing.T, v any, key string) any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("not an object: %v", v)
	}
	return m[key]
}

// TestCLISeedCommands runs every CLI command of the seed, verbatim, as a
// subprocess against a real server, and the other verbs around them.
func TestCLISeedCommands(t *testing.T) {
	for _, db := range storetest.Databases(t) {
		t.Run(string(db.Dialect), func(t *testing.T) {
			base, key := seedServer(t, db.DSN)
			c := newCLI(t, base, key)

			// Creating a Node for a system that already has an OS.
			n := c.ok("nodes", "create", `{"name": "newtest.cr0wbar.com", "bootenv": "local"}`)
			if field(t, n, "name") != "newtest.cr0wbar.com" || field(t, n, "alias") != "newtest" || field(t, n, "bootenv") != "local" {
				t.Fatalf("nodes create: %v", n)
			}
			if v := c.ok("nodes", "set", "newtest.cr0wbar.com", "attrib", "hint-admin-v4addr", "to", `{"value": "192.168.124.99/24"}`); field(t, v, "value") != "192.168.124.99/24" {
				t.Fatalf("nodes set: %v", v)
			}
			if v := c.ok("roles", "bind", "crowbar-managed-node", "to", "newtest.cr0wbar.com"); field(t, v, "state").(float64) != 4 {
				t.Fatalf("roles bind: %v", v)
			}
			if v := c.ok("nodes", "commit", "newtest.cr0wbar.com"); field(t, v, "available") != true {
				t.Fatalf("nodes commit: %v", v)
			}
			if v := c.ok("nodes", "update", "newtest.cr0wbar.com", `{"alive": true}`); field(t, v, "alive") != true {
				t.Fatalf("nodes update: %v", v)
			}
			out, progress, code := c.run("anneal", "wait", "--node", "newtest.cr0wbar.com", "--for", "60s")
			if code != 0 || !strings.Contains(out, `"active": 2`) || !strings.Contains(progress, "2/2 active") {
				t.Fatalf("anneal wait: %d\n%s\n%s", code, out, progress)
			}
			if v := c.ok("nodes", "get", "newtest.cr0wbar.com", "attrib", "network-admin-v4addr"); field(t, v, "value") != "192.168.124.99/24" {
				t.Fatalf("nodes get: %v", v)
			}

			// Installing an operating system on a node.
			c.ok("nodes", "create", `{"name": "d52-54-05-3f-00-00.smoke.test", "bootenv": "sledgehammer", "alive": true, "hint": {"admin_macs": ["52:54:05:3f:00:00"]}}`)
			c.ok("roles", "bind", "crowbar-managed-node", "to", "d52-54-05-3f-00-00.smoke.test")
			c.ok("nodes", "commit", "d52-54-05-3f-00-00.smoke.test")
			if v := c.ok("nodes", "list", "--attributes", "name"); len(v.([]any)) != 2 || len(v.([]any)[0].(map[string]any)) != 1 {
				t.Fatalf("nodes list --attributes name: %v", v)
			}
			if v := c.ok("deployments", "create", `{"name": "test1"}`); field(t, v, "state").(float64) != 0 || field(t, v, "system") != false {
				t.Fatalf("deployments create: %v", v)
			}
			if v := c.ok("nodes", "move", "d52-54-05-3f-00-00.smoke.test", "to", "test1"); field(t, v, "deployment_id").(float64) != 2 {
				t.Fatalf("nodes move: %v", v)
			}
			c.ok("roles", "bind", "crowbar-installed-node", "to", "d52-54-05-3f-00-00.smoke.test")
			if v := c.ok("nodes", "set", "d52-54-05-3f-00-00.smoke.test", "attrib", "provisioner-target_os", "to", `{"value": "ubuntu-12.04"}`); field(t, v, "value") != "ubuntu-12.04" {
				t.Fatalf("target os: %v", v)
			}
			if v := c.ok("deployments", "commit", "test1"); field(t, v, "name") != "test1" {
				t.Fatalf("deployments commit: %v", v)
			}
			install(t, base, key, "d52-54-05-3f-00-00.smoke.test", "52-54-05-3f-00-00", "ubuntu-12.04")
			if out, errOut, code := c.run("anneal", "wait", "--deployment", "test1", "--for", "60s"); code != 0 {
				t.Fatalf("anneal wait --deployment: %d\n%s%s", code, out, errOut)
			}
			if v := c.ok("deployments", "show", "test1"); field(t, v, "state_name") != "active" {
				t.Fatalf("deployment: %v", v)
			}

			// The rest of the grammar.
			table, _, code := c.run("nodes", "list", "--format", "table")
			if code != 0 || !strings.HasPrefix(table, "ID") || !strings.Contains(table, "newtest.cr0wbar.com") || strings.Count(table, "\n") != 3 {
				t.Fatalf("table:\n%s", table)
			}
			if dot, _, code := c.run("deployments", "graph", "test1", "--dot"); code != 0 || !strings.HasPrefix(dot, `digraph "test1"`) {
				t.Fatalf("graph --dot: %d %s", code, dot)
			}
			if v := c.ok("anneal", "status"); field(t, v, "idle") != true {
				t.Fatalf("anneal status: %v", v)
			}
			tok := c.ok("token", "create", "--validity", "3600")
			bearer := &cli{t: t, bin: c.bin, env: append(os.Environ(), "CROWBAR_ENDPOINT="+base, "CROWBAR_TOKEN="+field(t, tok, "token").(string), "CROWBAR_KEY_FILE=/nonexistent")}
			if v := bearer.ok("deployments", "show", "test1"); field(t, v, "name") != "test1" {
				t.Fatalf("with a bearer token: %v", v)
			}
			if _, errOut, code := c.run("nodes", "show", "ghost.example.com"); code != exitNotFound || !strings.Contains(errOut, "node 'ghost.example.com' not found") {
				t.Fatalf("not found: %d %s", code, errOut)
			}
			if _, errOut, code := c.run("deployments", "destroy", "system"); code != exitFailure || !strings.Contains(errOut, "409") {
				t.Fatalf("destroying the system deployment: %d %s", code, errOut)
			}
			if _, errOut, code := c.run("nodes", "create", `{"name": "bad name"}`); code != exitFailure || !strings.Contains(errOut, "422") {
				t.Fatalf("bad name: %d %s", code, errOut)
			}
			if _, errOut, code := (&cli{t: t, bin: c.bin, env: append(os.Environ(), "CROWBAR_ENDPOINT="+base, "CROWBAR_KEY=crowbar:wrong")}).run("nodes", "list"); code != exitFailure || !strings.Contains(errOut, "401") {
				t.Fatalf("wrong password: %d %s", code, errOut)
			}

			// anneal wait names what failed, and what is left when time runs out.
			c.ok("nodes", "create", `{"name": "stray.example.com", "alive": true, "hint": {"admin_v4addr": "10.9.9.9/24"}}`)
			c.ok("roles", "bind", "crowbar-managed-node", "to", "stray.example.com")
			c.ok("nodes", "commit", "stray.example.com")
			if _, errOut, code := c.run("anneal", "wait", "--node", "stray.example.com", "--for", "60s"); code != exitFailure ||
				!strings.Contains(errOut, "network-admin on stray.example.com is error") || !strings.Contains(errOut, "outside network 'admin'") {
				t.Fatalf("anneal wait on an ERROR: %d\n%s", code, errOut)
			}
			c.ok("nodes", "create", `{"name": "slow.example.com", "alive": true, "hint": {"admin_macs": ["52:54:00:aa:bb:cc"]}}`)
			c.ok("roles", "bind", "crowbar-installed-node", "to", "slow.example.com")
			c.ok("nodes", "commit", "slow.example.com")
			if _, errOut, code := c.run("anneal", "wait", "--node", "slow.example.com", "--for", "3s"); code != exitFailure ||
				!strings.Contains(errOut, "gave up after 3s") || !strings.Contains(errOut, "provisioner-os-install on slow.example.com") {
				t.Fatalf("anneal wait running out of time: %d\n%s", code, errOut)
			}

			// events tail: one line per event, filtered.
			tail := exec.Command(c.bin, "events", "tail", "--node", "tailed.example.com", "--format", "table")
			tail.Env = c.env
			stdout, _ := tail.StdoutPipe()
			if err := tail.Start(); err != nil {
				t.Fatal(err)
			}
			defer tail.Process.Kill() //nolint:errcheck
			lines := make(chan string, 16)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			c.ok("nodes", "create", `{"name": "tailed.example.com"}`)
			// The stream may not be subscribed yet: bind and unbind until a
			// line arrives (each bind is a "proposed" event).
			var line string
			for i := 0; i < 20 && line == ""; i++ {
				nr := c.ok("roles", "bind", "network-admin", "to", "tailed.example.com")
				select {
				case line = <-lines:
				case <-time.After(time.Second):
					c.ok("node_roles", "destroy", fmt.Sprint(field(t, nr, "id")))
				}
			}
			if !strings.Contains(line, "node_role") || !strings.Contains(line, "tailed.example.com network-admin proposed") {
				t.Fatalf("event line: %q", line)
			}
			// --after 0: the log from its start, so the first bind's event
			// at once, without a new change.
			replay := exec.Command(c.bin, "events", "tail", "--node", "tailed.example.com", "--after", "0")
			replay.Env = c.env
			rout, _ := replay.StdoutPipe()
			if err := replay.Start(); err != nil {
				t.Fatal(err)
			}
			defer replay.Process.Kill() //nolint:errcheck
			first, err := bufio.NewReader(rout).ReadString('\n')
			if err != nil || !strings.Contains(first, `"seq":`) || !strings.Contains(first, `"state_name":"proposed"`) {
				t.Fatalf("events tail --after 0: %q %v", first, err)
			}

			// The audit log: every write above, newest first.
			entries, ok := c.ok("audit", "--path", "/api/v2/nodes", "--method", "POST", "--limit", "3").([]any)
			if !ok || len(entries) != 3 || field(t, entries[0], "method") != "POST" || field(t, entries[0], "username") != "crowbar" {
				t.Fatalf("crowbar audit: %v", entries)
			}
			if _, errOut, code := c.run("audit", "--since", "yesterday"); code != 1 || !strings.Contains(errOut, "since") {
				t.Fatalf("crowbar audit --since yesterday: %d %s", code, errOut)
			}
		})
	}
}

// TestCLIBadUsage: mistakes are caught before any request (the endpoint
// is a closed port) with a helpful message and exit code 2.
func TestCLIBadUsage(t *testing.T) {
	c := &cli{t: t, bin: testBinary(t), env: append(os.Environ(), "CROWBAR_ENDPOINT=http://127.0.0.1:1", "CROWBAR_KEY=a:b")}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"nodes", "create"}, "takes 1 argument(s): JSON"},
		{[]string{"nodes", "create", `{"name": `}, "is not a JSON object"},
		{[]string{"nodes", "create", `["a"]`}, "is not a JSON object"},
		{[]string{"nodes", "set", "n1", "attrib", "a", "to"}, "takes 5 argument(s)"},
		{[]string{"nodes", "set", "n1", "attrib", "a", "into", `{"value": 1}`}, `expected "to"`},
		{[]string{"nodes", "set", "n1", "attrib", "a", "to", `{value}`}, "is not a JSON object"},
		{[]string{"roles", "bind", "r", "onto", "n1"}, `expected "to"`},
		{[]string{"roles", "bind", "r", "to", "n1", "in"}, "usage: crowbar roles bind ROLE to NODE [in DEPLOYMENT]"},
		{[]string{"nodes", "move", "n1", "test1"}, "takes 3 argument(s)"},
		{[]string{"widgets", "list"}, `unknown command "widgets"`},
		{[]string{"nodes", "explode", "n1"}, "explode"},
		{[]string{"nodes", "list", "--format", "xml"}, "--format must be json or table"},
		{[]string{"nodes", "list", "--bogus"}, "unknown flag"},
		{[]string{"barclamps", "install", "/nonexistent.wasm"}, "no such file"},
		{[]string{"barclamps", "enable", "hello", "on", "test1"}, `expected "in"`},
		{[]string{"anneal", "wait", "--poll", "0s"}, "must be positive durations"},
		{[]string{"anneal", "wait", "--for", "-1m"}, "must be positive durations"},
		{[]string{"node_roles", "update", "25", "{"}, "is not a JSON object"},
		{[]string{"join_tokens", "create", "extra"}, "takes 0 argument(s)"},
		{[]string{"agent", "--join-token", "cbj_x"}, "--join-token needs --server"},
		{[]string{"agent", "--server", "http://127.0.0.1:1", "--join-token", "a", "--join-token-file", "/etc/hostname"}, "not both"},
		{[]string{"agent", "--join-token-file", "/nonexistent"}, "--join-token-file"},
		{[]string{"agent", "--max-output", "10"}, "--max-output 10"},
		{[]string{"agent", "--reboot-command", " "}, "--reboot-command may not be empty"},
		{[]string{"agent", "--log-level", "loud"}, "--log-level"},
	} {
		_, errOut, code := c.run(tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.says) {
			t.Errorf("crowbar %s: exit %d, stderr %q; want exit 2 saying %q", strings.Join(tc.args, " "), code, errOut, tc.says)
		}
		if strings.Contains(errOut, "connection refused") {
			t.Errorf("crowbar %s contacted the server", strings.Join(tc.args, " "))
		}
	}
	nocreds := &cli{t: t, bin: c.bin, env: append(os.Environ(), "CROWBAR_ENDPOINT=http://127.0.0.1:1", "CROWBAR_KEY_FILE=/nonexistent", "CROWBAR_KEY=")}
	if _, errOut, code := nocreds.run("nodes", "list"); code != exitUsage || !strings.Contains(errOut, "no credentials") {
		t.Errorf("without credentials: %d %s", code, errOut)
	}
}

// TestCLIHelpHasExamples: every client command documents itself with an
// example, and completion is there.
func TestCLIHelpHasExamples(t *testing.T) {
	root := newRootCmd()
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
		if cmd.Runnable() && !cmd.HasSubCommands() && cmd.Example == "" && !strings.HasPrefix(cmd.CommandPath(), "crowbar server") &&
			!strings.HasPrefix(cmd.CommandPath(), "crowbar barclamp ") && !strings.HasPrefix(cmd.CommandPath(), "crowbar completion") &&
			cmd.Name() != "help" {
			t.Errorf("%s has no example in its --help", cmd.CommandPath())
		}
	}
	walk(root)
	c := &cli{t: t, bin: testBinary(t), env: os.Environ()}
	if out, _, code := c.run("completion", "bash"); code != 0 || !strings.Contains(out, "crowbar") {
		t.Fatalf("completion bash: %d", code)
	}
}

// TestWorkflowScripts runs examples/workflows, each against a fresh server.
func TestWorkflowScripts(t *testing.T) {
	bin := testBinary(t)
	scripts, _ := filepath.Glob("../../examples/workflows/*.sh")
	for _, s := range scripts {
		if filepath.Base(s) == "lib.sh" {
			continue
		}
		t.Run(filepath.Base(s), func(t *testing.T) {
			base, key := seedServer(t, filepath.Join(t.TempDir(), "crowbar.db"))
			cmd := exec.Command("bash", s)
			cmd.Env = append(os.Environ(), "CROWBAR_ENDPOINT="+base, "CROWBAR_KEY="+key, "CROWBAR="+bin)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", s, err, out)
			}
		})
	}
	if len(scripts) < 5 {
		t.Fatalf("walkthroughs missing: %v", scripts)
	}
}
