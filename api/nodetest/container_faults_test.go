package nodetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// tarball builds a tar (gzipped when gz) from name → content; a content
// starting with "->" makes a symlink to the rest, "=>" a hard link.
func tarball(t *testing.T, gz bool, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w *tar.Writer
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = tar.NewWriter(zw)
	} else {
		w = tar.NewWriter(&buf)
	}
	// Files first, links after (a hard link needs its target written), in
	// a fixed order.
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		li, lj := strings.HasPrefix(files[names[i]], "=>"), strings.HasPrefix(files[names[j]], "=>")
		if li != lj {
			return lj
		}
		return names[i] < names[j]
	})
	for _, name := range names {
		content := files[name]
		hdr := &tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}
		switch {
		case strings.HasPrefix(content, "->"):
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeSymlink, content[2:], 0
		case strings.HasPrefix(content, "=>"):
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, content[2:], 0
		}
		if err := w.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			w.Write([]byte(content)) //nolint:errcheck
		}
	}
	w.Close()
	if zw != nil {
		zw.Close()
	}
	return buf.Bytes()
}

// createErr asks for a container that must be refused; it returns the
// ERROR result's data.
func createErr(t *testing.T, c *core0.Client, args agent.CreateArgs) (string, int) {
	t.Helper()
	r, err := c.Call(ctx(t), "corex.create", args)
	var ce *core0.Error
	if !errors.As(err, &ce) || ce.Result == nil || r.State != core0.StateError {
		t.Fatalf("create %+v was not refused: %+v %v", args, r, err)
	}
	return r.Data, r.Code
}

// TestContainerRoots: tar, tar.gz and URL roots work and are cached; bad
// roots are refused with a message saying what is supported.
func TestContainerRoots(t *testing.T) {
	_, ag, c := containerServer(t)
	bb, err := os.ReadFile(busyboxRoot(t) + "/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"bin/busybox": string(bb), "bin/sh": "->busybox", "bin/cat": "->busybox",
		"etc/motd": "from a tarball\n", "etc/motd2": "=>etc/motd"}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.tar"), tarball(t, false, files), 0o644)   //nolint:errcheck
	os.WriteFile(filepath.Join(dir, "root.tar.gz"), tarball(t, true, files), 0o644) //nolint:errcheck
	var downloads atomic.Int32
	gzRoot, _ := os.ReadFile(filepath.Join(dir, "root.tar.gz"))
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/root.tar.gz" {
			http.NotFound(w, r)
			return
		}
		downloads.Add(1)
		w.Write(gzRoot) //nolint:errcheck
	}))
	defer web.Close()
	for _, root := range []string{filepath.Join(dir, "root.tar"), filepath.Join(dir, "root.tar.gz"), web.URL + "/root.tar.gz", web.URL + "/root.tar.gz"} {
		var id int
		if err := c.JSON(ctx(t), "corex.create", agent.CreateArgs{Root: root, Nics: []agent.Nic{}}, &id); err != nil {
			t.Fatalf("root %s: %v", root, err)
		}
		if out := sh(t, c, id, "cat /etc/motd /etc/motd2"); out != "from a tarball\nfrom a tarball\n" {
			t.Fatalf("root %s: %q", root, out)
		}
		c.JSON(ctx(t), "corex.terminate", map[string]any{"container": id}, nil) //nolint:errcheck
	}
	if n := downloads.Load(); n != 1 {
		t.Errorf("the URL root was downloaded %d times, want once", n)
	}
	// The tar and the tar.gz hold the same files but are different
	// archives: two unpacked roots, plus the download's (same as the
	// tar.gz: shared by digest) and the downloads folder.
	entries, _ := os.ReadDir(filepath.Join(ag.Config.StateDir, "roots"))
	if len(entries) != 3 {
		t.Errorf("roots cache: %d entries, want 2 unpacked roots and the downloads folder", len(entries))
	}

	for _, tc := range []struct {
		name  string
		root  string
		code  int
		says  string
		files map[string]string
	}{
		{name: "missing", root: "/no/such/root", code: 404, says: "local directory"},
		{name: "flist", root: "https://hub.grid.tf/tf-official-apps/ubuntu.flist", code: 400, says: "Zero-OS flist"},
		{name: "ftp", root: "ftp://example.com/root.tar", code: 400, says: "scheme"},
		{name: "404", root: web.URL + "/missing.tar.gz", code: 404, says: "404"},
		{name: "traversal", code: 400, says: "leaves the root", files: map[string]string{"../../etc/evil": "x"}},
		{name: "absolute link", code: 400, says: "absolute path", files: map[string]string{"bin/sh": "->/etc/passwd"}},
		{name: "relative link out", code: 400, says: "outside the root", files: map[string]string{"a/b": "->../../../etc/passwd"}},
		{name: "hard link out", code: 400, says: "outside", files: map[string]string{"a": "=>../../etc/passwd"}},
		{name: "not a tar", code: 400, says: "not a tar", files: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := tc.root
			if root == "" {
				root = filepath.Join(t.TempDir(), "bad.tar")
				content := []byte("this is not an archive")
				if tc.files != nil {
					content = tarball(t, false, tc.files)
				}
				os.WriteFile(root, content, 0o644) //nolint:errcheck
			}
			data, code := createErr(t, c, agent.CreateArgs{Root: root})
			if code != tc.code || !strings.Contains(data, tc.says) {
				t.Fatalf("root %s: %d %q, want %d saying %q", root, code, data, tc.code, tc.says)
			}
		})
	}
	if _, err := os.Stat("/etc/evil"); err == nil {
		t.Fatal("a tar entry escaped the root")
	}
}

// TestContainerCreateFaults: bad arguments, a taken port, a duplicate
// name and unsupported nic types are refused, leaving nothing behind.
func TestContainerCreateFaults(t *testing.T) {
	_, ag, c := containerServer(t)
	root := busyboxRoot(t)
	taken, err := net.Listen("tcp", "127.0.0.1:18181")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var id int
	if err := c.JSON(ctx(t), "corex.create", agent.CreateArgs{Root: root, Name: "one"}, &id); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args agent.CreateArgs
		code int
		says string
	}{
		{"duplicate name", agent.CreateArgs{Root: root, Name: "one"}, 409, "already exists"},
		{"bad name", agent.CreateArgs{Root: root, Name: "no spaces"}, 400, "name"},
		{"port taken", agent.CreateArgs{Root: root, Nics: []agent.Nic{{Type: "default"}}, Port: map[string]int{"127.0.0.1:18181": 80}}, 409, "18181"},
		{"bad port", agent.CreateArgs{Root: root, Port: map[string]int{"http": 80}}, 400, "port"},
		{"vlan", agent.CreateArgs{Root: root, Nics: []agent.Nic{{Type: "vlan", ID: "100"}}}, 400, `type "vlan" is not supported`},
		{"vxlan", agent.CreateArgs{Root: root, Nics: []agent.Nic{{Type: "vxlan", ID: "100"}}}, 400, `type "vxlan" is not supported`},
		{"zerotier", agent.CreateArgs{Root: root, Nics: []agent.Nic{{Type: "zerotier", ID: "abc"}}}, 400, `type "zerotier" is not supported`},
		{"passthrough", agent.CreateArgs{Root: root, Nics: []agent.Nic{{Type: "passthrough", ID: "eth9"}}}, 400, `type "passthrough" is not supported`},
		{"missing bridge", agent.CreateArgs{Root: root, Nics: []agent.Nic{{Type: "bridge", ID: "nobr0"}}}, 404, "nobr0"},
		{"dhcp and cidr", agent.CreateArgs{Root: root, Nics: []agent.Nic{{Type: "macvlan", ID: "cbtest0", Config: &agent.NicConfig{DHCP: true, CIDR: "192.0.2.9/24"}}}}, 400, "not both"},
		{"bad cidr", agent.CreateArgs{Root: root, Nics: []agent.Nic{{Type: "default", Config: &agent.NicConfig{CIDR: "10.0.0.1"}}}}, 400, "cidr"},
		{"bad hwaddr", agent.CreateArgs{Root: root, Nics: []agent.Nic{{Type: "default", HWAddr: "zz"}}}, 400, "hwaddr"},
		{"missing mount", agent.CreateArgs{Root: root, Mount: map[string]string{"/no/such/dir": "/data"}}, 404, "mount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, code := createErr(t, c, tc.args)
			if code != tc.code || !strings.Contains(data, tc.says) {
				t.Fatalf("%d %q, want %d saying %q", code, data, tc.code, tc.says)
			}
		})
	}
	var list map[string]any
	if err := c.JSON(ctx(t), "corex.list", struct{}{}, &list); err != nil || len(list) != 1 {
		t.Fatalf("refused creates left containers: %v %v", list, err)
	}
	entries, _ := os.ReadDir(filepath.Join(ag.Config.StateDir, "containers"))
	if len(entries) != 1 {
		t.Fatalf("refused creates left directories: %v", entries)
	}
	if links := strings.Join(hostLinks(t), ","); strings.Contains(links, "cx") && strings.Count(links, "cx") > 0 {
		t.Fatalf("refused creates left links: %s", links)
	}
}

// TestContainersConcurrent creates 20 containers at once: all run, with
// distinct addresses.
func TestContainersConcurrent(t *testing.T) {
	_, _, c := containerServer(t)
	root := busyboxRoot(t)
	var wg sync.WaitGroup
	ids := make([]int, 20)
	errs := make([]error, 20)
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = c.JSON(ctx(t), "corex.create", agent.CreateArgs{Root: root, Name: fmt.Sprintf("c%d", i),
				Nics: []agent.Nic{{Type: "default"}}}, &ids[i])
		}(i)
	}
	wg.Wait()
	addrs := map[string]bool{}
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatalf("container %d: %v", i, errs[i])
		}
		out := strings.TrimSpace(sh(t, c, id, "ip -4 -o addr show eth0"))
		if !strings.Contains(out, "inet 172.31.") || addrs[out] {
			t.Fatalf("container %d has address %q (seen: %v)", id, out, addrs)
		}
		addrs[out] = true
	}
	for _, id := range ids {
		c.JSON(ctx(t), "corex.terminate", map[string]any{"container": id}, nil) //nolint:errcheck
	}
}

// TestContainerInitKilled: a container whose PID 1 dies is halted and its
// jobs end.
func TestContainerInitKilled(t *testing.T) {
	_, _, c := containerServer(t)
	var id int
	if err := c.JSON(ctx(t), "corex.create", agent.CreateArgs{Root: busyboxRoot(t)}, &id); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(core0.SystemArgs{Name: "sleep", Args: []string{"60"}})
	var job string
	if err := c.JSON(ctx(t), "corex.dispatch", map[string]any{"container": id, "command": core0.Command{Command: "core.system", Arguments: b}}, &job); err != nil {
		t.Fatal(err)
	}
	var info map[string]map[string]any
	if err := c.JSON(ctx(t), "corex.get", map[string]any{"query": id}, &info); err != nil {
		t.Fatal(err)
	}
	pid := int(info["container"]["pid"].(float64))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		var got map[string]map[string]any
		return c.JSON(ctx(t), "corex.get", map[string]any{"query": id}, &got) == nil && got["container"]["status"] == "halted"
	})
	r, err := c.Result(ctx(t), job)
	if err != nil || r.State == core0.StateSuccess {
		t.Fatalf("a job in a halted container: %+v %v", r, err)
	}
	if pids := processes(t, c, "sleep 60"); len(pids) != 0 {
		t.Fatalf("the container's processes outlived its init: %v", pids)
	}
	_, err = c.Call(ctx(t), "corex.dispatch", map[string]any{"container": id, "command": core0.Command{Command: "core.ping"}})
	if !errors.Is(err, core0.ErrJobFailed) || !strings.Contains(err.Error(), "halted") {
		t.Fatalf("dispatch to a halted container: %v", err)
	}
	if err := c.JSON(ctx(t), "corex.terminate", map[string]any{"container": id}, nil); err != nil {
		t.Fatal(err)
	}
	_ = time.Second
}

// TestContainersSurviveAgentRestart: the agent is killed with containers
// running; restarted, it re-adopts the running one (its forward back) and
// cleans up the one whose init died meanwhile, leaking nothing.
func TestContainersSurviveAgentRestart(t *testing.T) {
	agenttest.Require(t)
	st := storetest.Open(t, filepath.Join(t.TempDir(), "crowbar.db"))
	s := server(t, st)
	root := busyboxRoot(t)
	hc := helperConfig{Listen: freePort(t), StateDir: t.TempDir(), Server: s.URL, JoinToken: s.JoinToken(time.Hour), MAC: apitest.RandomMAC()}
	cmd, node := startHelper(t, s, hc)
	c, err := s.API.Transport().Client(context.Background(), node)
	if err != nil {
		t.Fatal(err)
	}
	var keep, dies int
	if err := c.JSON(ctx(t), "corex.create", agent.CreateArgs{Root: root, Name: "keep", Nics: []agent.Nic{{Type: "default"}},
		Port: map[string]int{"18282": 8080}}, &keep); err != nil {
		t.Fatal(err)
	}
	if err := c.JSON(ctx(t), "corex.create", agent.CreateArgs{Root: root, Name: "dies", Nics: []agent.Nic{{Type: "default"}}}, &dies); err != nil {
		t.Fatal(err)
	}
	inContainer(t, c, keep, "core.system", core0.SystemArgs{Name: "httpd", Args: []string{"-p", "8080", "-h", "/www"}})
	get := func() (string, error) {
		resp, err := http.Get("http://127.0.0.1:18282/index.html")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	waitFor(t, func() bool { b, err := get(); return err == nil && strings.Contains(b, "hello") })
	var info map[string]map[string]map[string]any
	if err := c.JSON(ctx(t), "corex.list", struct{}{}, &info); err != nil {
		t.Fatal(err)
	}
	diesPID := int(info[fmt.Sprint(dies)]["container"]["pid"].(float64))
	keepPID := int(info[fmt.Sprint(keep)]["container"]["pid"].(float64))

	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	cmd.Wait() //nolint:errcheck
	// The orphaned inits are now this process's (the subreaper's): reap
	// the one killed, so it is gone before the agent comes back.
	syscall.Kill(diesPID, syscall.SIGKILL) //nolint:errcheck
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(diesPID, &ws, 0, nil); err != nil {
		t.Fatalf("reap the killed init %d: %v", diesPID, err)
	}
	if err := syscall.Kill(keepPID, 0); err != nil {
		t.Fatalf("the container died with its agent: %v", err)
	}
	hc.JoinToken = ""
	startHelper(t, s, hc)
	waitFor(t, func() bool { return c.Ping(ctx(t)) == nil })

	var after map[string]map[string]map[string]any
	if err := c.JSON(ctx(t), "corex.list", struct{}{}, &after); err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || after[fmt.Sprint(keep)]["container"]["status"] != "running" {
		t.Fatalf("after the restart: %v", after)
	}
	if out := sh(t, c, keep, "echo still here"); out != "still here\n" {
		t.Fatalf("dispatch to a re-adopted container: %q", out)
	}
	waitFor(t, func() bool { b, err := get(); return err == nil && strings.Contains(b, "hello") })
	if links := strings.Join(hostLinks(t), ","); regexp.MustCompile(fmt.Sprintf(`cx[0-9a-f]{4}%dn0`, dies)).MatchString(links) {
		t.Fatalf("the dead container's link was not removed: %s", links)
	}
	if _, err := os.Stat(filepath.Join(hc.StateDir, "containers", fmt.Sprint(dies))); err == nil {
		t.Fatal("the dead container's directory was not removed")
	}
	if err := c.JSON(ctx(t), "corex.terminate", map[string]any{"container": keep}, nil); err != nil {
		t.Fatal(err)
	}
	if links := strings.Join(hostLinks(t), ","); strings.Contains(links, "cx") {
		t.Fatalf("links left: %s", links)
	}
}
