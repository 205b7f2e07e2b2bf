package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/client"
	"github.com/crowbar-go/crowbar/core/anneal/annealtest"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

// The fault campaign (docs/reliability.md). make test runs it short;
// CROWBAR_FAULTS=1 (make faults) runs it at full size.
func campaignSize() (nodes, kills int) {
	if os.Getenv("CROWBAR_FAULTS") != "" {
		return 1000, 20 // 10,000 node-roles
	}
	return 100, 3 // 1,000 node-roles
}

const campaignWorkers = 8

// faultServer is the real binary serving one database from one data dir.
// newFaultServer makes one for the campaign: its workers and a short lease.
type faultServer struct {
	t    *testing.T
	bin  string
	dir  string
	dsn  string
	base string
	cmd  *exec.Cmd
	args []string // more server flags
}

func newFaultServer(t *testing.T, bin, dsn string) *faultServer {
	return &faultServer{t: t, bin: bin, dir: t.TempDir(), dsn: dsn,
		args: []string{"--anneal-workers", strconv.Itoa(campaignWorkers), "--anneal-lease", "2s"}}
}

// seedCounter installs the counting barclamp through s (started and
// stopped again), then binds its last role on nodes new nodes: it returns
// the store and the number of node-roles.
func seedCounter(t *testing.T, s *faultServer, nodes int, domain string) (*store.Store, int64) {
	t.Helper()
	s.start()
	installCounter(t, s)
	s.stop()
	st, err := store.Open(context.Background(), s.dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, annealtest.BindNodes(t, st.DB, nodes, "counter-9", domain)
}

func (s *faultServer) start() {
	s.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s.base = "http://" + addr
	s.cmd = exec.Command(s.bin, append([]string{"server", "--data-dir", s.dir, "--wasm-cache", sharedWasmCache, "--database", s.dsn,
		"--listen", addr, "--log-level", "error"}, s.args...)...)
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if resp, err := http.Get(s.base + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatal("the server is not ready after a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill sends SIGKILL and returns the node-roles the process was running
// (in TRANSITION under its lease; a lease owner names its pid).
func (s *faultServer) kill(st *store.Store) []int64 {
	s.cmd.Process.Signal(syscall.SIGKILL) //nolint:errcheck
	s.cmd.Wait()                          //nolint:errcheck
	var running []int64
	st.DB.Model(&model.NodeRole{}).Where("state = ? AND lease_owner LIKE ?", model.StateTransition, fmt.Sprintf("%%-%d-%%", s.cmd.Process.Pid)).
		Pluck("id", &running)
	return running
}

func (s *faultServer) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck
	s.cmd.Wait()                          //nolint:errcheck
}

func (s *faultServer) key() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "crowbar.install.key"))
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// installCounter installs and enables the counting barclamp through a
// running server.
func installCounter(t *testing.T, s *faultServer) {
	t.Helper()
	wasm := filepath.Join(t.TempDir(), "counter.wasm")
	if err := os.WriteFile(wasm, pluginstest.Build(t, "plugins/testdata/counter"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCLI(t, s.base, s.key())
	c.ok("barclamps", "install", wasm)
	c.ok("barclamps", "enable", "counter", "in", "system")
}

// runCounts reads how often the counter hook ran for each node-role.
func runCounts(t *testing.T, st *store.Store) map[int64]int {
	t.Helper()
	var rows []struct {
		KvKey string
		Value []byte
	}
	if err := st.DB.Table("barclamp_kv").Where("barclamp = ? AND kv_key LIKE ?", "counter", "runs/%").Select("kv_key, value").Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := map[int64]int{}
	for _, r := range rows {
		id, _ := strconv.ParseInt(strings.TrimPrefix(r.KvKey, "runs/"), 10, 64)
		out[id], _ = strconv.Atoi(string(r.Value))
	}
	return out
}

func countState(st *store.Store, state int) int64 {
	var n int64
	st.DB.Model(&model.NodeRole{}).Where("state = ?", state).Count(&n)
	return n
}

// TestKill9Campaign converges node-roles through a wasm hook that counts
// its runs in its KV store while the real binary is killed with SIGKILL
// again and again at moments spread over the converge, then checks: no
// node-role lost, all ACTIVE, every one run at least once, and re-runs
// only of node-roles the killed process was running, at most once per
// kill each (so at most the worker count per kill).
func TestKill9Campaign(t *testing.T) {
	bin := testBinary(t)
	nodes, kills := campaignSize()
	for _, db := range storetest.Databases(t) {
		t.Run(string(db.Dialect), func(t *testing.T) {
			s := newFaultServer(t, bin, db.DSN)
			st, total := seedCounter(t, s, nodes, "fault")

			began := time.Now()
			inFlight := map[int64]int{} // node-role → kills it was running at
			killed, maxAtKill := 0, 0
			for k := 1; k <= kills; k++ {
				s.start()
				// Kill once the converge is past the k-th of kills+1 marks,
				// a random few milliseconds later.
				mark := total * int64(k) / int64(kills+1)
				deadline := time.Now().Add(2 * time.Minute)
				for countState(st, model.StateActive) < mark {
					if time.Now().After(deadline) {
						t.Fatalf("kill %d: the annealer made no progress (%d of %d active)", k, countState(st, model.StateActive), total)
					}
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
				running := s.kill(st)
				for _, id := range running {
					inFlight[id]++
				}
				killed++
				maxAtKill = max(maxAtKill, len(running))
				if countState(st, model.StateActive) == total {
					break
				}
			}
			s.start()
			deadline := time.Now().Add(5 * time.Minute)
			for countState(st, model.StateActive) < total {
				if time.Now().After(deadline) {
					t.Fatalf("after %d kills: %d of %d active", killed, countState(st, model.StateActive), total)
				}
				time.Sleep(20 * time.Millisecond)
			}
			took := time.Since(began)
			s.stop()

			var nodeRoles int64
			st.DB.Model(&model.NodeRole{}).Count(&nodeRoles)
			if nodeRoles != total {
				t.Fatalf("%d node-roles, want %d: something was lost", nodeRoles, total)
			}
			if maxAtKill > campaignWorkers {
				t.Fatalf("%d node-roles in TRANSITION at one kill, more than the %d workers", maxAtKill, campaignWorkers)
			}
			counts := runCounts(t, st)
			reruns := 0
			var nrIDs []int64
			st.DB.Model(&model.NodeRole{}).Pluck("id", &nrIDs)
			for _, id := range nrIDs {
				n := counts[id]
				if n < 1 {
					t.Fatalf("node-role %d is ACTIVE but its hook never ran", id)
				}
				if n-1 > inFlight[id] {
					t.Fatalf("node-role %d ran %d times but was in flight at %d kills", id, n, inFlight[id])
				}
				reruns += n - 1
			}
			t.Logf("%s: %d node-roles, %d kills, %d re-runs (at most %d in flight at one kill), all ACTIVE in %s",
				db.Dialect, total, killed, reruns, maxAtKill, took.Round(100*time.Millisecond))
		})
	}
}

// TestReplicaKilledMidConverge: two servers on one PostgreSQL converge
// together; one is killed with SIGKILL; the other finishes the work,
// including the dead one's runs once their leases expire.
func TestReplicaKilledMidConverge(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	if dsn == "" {
		t.Skip("needs PostgreSQL (CROWBAR_TEST_POSTGRES)")
	}
	bin := testBinary(t)
	nodes, _ := campaignSize()
	a, b := newFaultServer(t, bin, dsn), newFaultServer(t, bin, dsn)
	st, total := seedCounter(t, a, nodes, "replica")
	a.start()
	b.start()
	defer b.stop()
	for deadline := time.Now().Add(2 * time.Minute); countState(st, model.StateActive) < total/4; {
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %d of %d active", countState(st, model.StateActive), total)
		}
		time.Sleep(5 * time.Millisecond)
	}
	running := a.kill(st)
	killedAt := time.Now()
	deadline := time.Now().Add(3 * time.Minute)
	for countState(st, model.StateActive) < total {
		if time.Now().After(deadline) {
			t.Fatalf("the surviving replica left %d of %d active", countState(st, model.StateActive), total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	counts := runCounts(t, st)
	reruns := 0
	for _, n := range counts {
		reruns += n - 1
	}
	if len(counts) != int(total) || reruns > len(running) || len(running) > campaignWorkers {
		t.Fatalf("%d of %d node-roles ran; %d re-runs with %d running on the killed replica (%d workers)",
			len(counts), total, reruns, len(running), campaignWorkers)
	}
	for id, n := range counts {
		if n > 1 && !slices.Contains(running, id) {
			t.Fatalf("node-role %d ran %d times but was not running on the killed replica", id, n)
		}
	}
	t.Logf("one replica killed at %d of %d active; the other finished %s later, %d re-runs",
		total/4, total, time.Since(killedAt).Round(100*time.Millisecond), reruns)
}

// TestPostgresRestartUnderLoad restarts the local PostgreSQL cluster while
// a server converges node-roles and a client creates and lists nodes. It
// changes the whole cluster, so only the campaign runs it (make faults;
// never make test, whose other packages use that PostgreSQL at the same
// time). While PostgreSQL is down the server answers 503 with
// Retry-After; it recovers by itself; every node the client was told was
// created exists, and the converge finishes.
func TestPostgresRestartUnderLoad(t *testing.T) {
	if os.Getenv("CROWBAR_FAULTS") == "" {
		t.Skip("restarts the local PostgreSQL cluster: run by make faults (CROWBAR_FAULTS=1) only")
	}
	dsn := storetest.PostgresDSN(t)
	if dsn == "" {
		t.Skip("needs PostgreSQL (CROWBAR_TEST_POSTGRES)")
	}
	versions, _ := os.ReadDir("/etc/postgresql")
	if len(versions) != 1 || os.Getuid() != 0 {
		t.Skip("needs root and one local cluster in /etc/postgresql (pg_ctlcluster)")
	}
	bin := testBinary(t)
	s := newFaultServer(t, bin, dsn)
	st, total := seedCounter(t, s, 500, "restart")
	s.start()
	defer s.stop()
	user, pass, _ := strings.Cut(s.key(), ":")
	c, err := client.New(s.base, client.Digest(user, pass), client.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[int]int{}
	var created []string
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("load%05d.restart.test", i)
			_, err := c.Nodes().Create(context.Background(), client.Object{"name": name})
			var ce *client.Error
			switch {
			case err == nil:
				statuses[201]++
				created = append(created, name)
			case errors.As(err, &ce):
				statuses[ce.Status]++
			default:
				statuses[-1]++ // no answer at all
			}
			if _, err := c.Nodes().List(context.Background(), &client.ListOptions{Limit: 10}); errors.As(err, &ce) {
				statuses[ce.Status]++
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	for deadline := time.Now().Add(2 * time.Minute); countStateRetry(st, model.StateActive) < total/4; {
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %d of %d active", countStateRetry(st, model.StateActive), total)
		}
		time.Sleep(5 * time.Millisecond)
	}
	began := time.Now()
	out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", versions[0].Name(), "main", "restart").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_ctlcluster restart: %v\n%s", err, out)
	}
	restartTook := time.Since(began)
	deadline := time.Now().Add(3 * time.Minute)
	for countStateRetry(st, model.StateActive) < total {
		if time.Now().After(deadline) {
			var stuck []model.NodeRole
			st.DB.Where("state <> ?", model.StateActive).Limit(5).Find(&stuck)
			for _, nr := range stuck {
				t.Logf("node-role %d: %s, run log %q", nr.ID, model.StateNames[nr.State], nr.Runlog)
			}
			t.Fatalf("after the restart: %d of %d active", countStateRetry(st, model.StateActive), total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	recovered := time.Since(began)
	close(stop)
	<-loadDone
	for code, n := range statuses {
		if code != 201 && code != 503 {
			t.Errorf("%d answers with status %d (want only 201 and 503)", n, code)
		}
	}
	if statuses[503] == 0 {
		t.Errorf("no 503 while PostgreSQL restarted: %v", statuses)
	}
	var n int64
	st.DB.Model(&model.Node{}).Where("name IN ?", created).Count(&n)
	if int(n) != len(created) {
		t.Fatalf("%d nodes answered 201 but %d exist", len(created), n)
	}
	var nodeRoles int64
	st.DB.Model(&model.NodeRole{}).Count(&nodeRoles)
	if nodeRoles != total {
		t.Fatalf("%d node-roles, want %d", nodeRoles, total)
	}
	t.Logf("PostgreSQL restart took %s; answers during the test: %v; converge finished %s after the restart began",
		restartTook.Round(100*time.Millisecond), statuses, recovered.Round(100*time.Millisecond))
}

// countStateRetry is countState that waits out a database restart.
func countStateRetry(st *store.Store, state int) int64 {
	for {
		var n int64
		if err := st.DB.Model(&model.NodeRole{}).Where("state = ?", state).Count(&n).Error; err == nil {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSQLiteFullDisk runs the server with its data dir on a small tmpfs,
// fills the disk, and checks: writes fail with 507 and a clear message,
// reads go on, nothing half-written (integrity check, every 201 stored),
// and writes work again once space returns, without a restart.
func TestSQLiteFullDisk(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounts a tmpfs: needs root (CI runs as root)")
	}
	bin := testBinary(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=128m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) }) //nolint:errcheck
	dsn := filepath.Join(dir, "crowbar.db")
	s := &faultServer{t: t, bin: bin, dir: dir, dsn: dsn} // its data dir is the tmpfs
	s.start()
	defer s.stop()
	user, pass, _ := strings.Cut(s.key(), ":")
	c, err := client.New(s.base, client.Digest(user, pass))
	if err != nil {
		t.Fatal(err)
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	free := int64(fs.Bavail) * fs.Bsize
	t.Logf("free %d (blocks %d × %d)", free, fs.Bavail, fs.Bsize)
	if err := os.WriteFile(filler, make([]byte, free-256<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 60<<10)
	created, full := 0, 0
	var fullErr *client.Error
	for i := 0; i < 200 && full == 0; i++ {
		_, err := c.Nodes().Create(context.Background(), client.Object{"name": fmt.Sprintf("n%03d.full.test", i), "description": big})
		var ce *client.Error
		switch {
		case err == nil:
			created++
		case errors.As(err, &ce) && ce.Status == http.StatusInsufficientStorage:
			full++
			fullErr = ce
		default:
			t.Fatalf("create %d on a full disk: %v (want 201 or 507)", i, err)
		}
	}
	if full == 0 {
		t.Fatalf("no 507 after %d nodes on a full disk", created)
	}
	if !strings.Contains(fullErr.Message, "out of space") {
		t.Errorf("the 507 says %q", fullErr.Message)
	}
	list, err := c.Nodes().List(context.Background(), &client.ListOptions{Limit: 1000, Filters: nil})
	if err != nil {
		t.Fatalf("reads on a full disk: %v", err)
	}
	stored := 0
	for _, n := range list {
		if strings.HasSuffix(fmt.Sprint(n["name"]), ".full.test") {
			stored++
		}
	}
	if stored != created {
		t.Fatalf("%d nodes answered 201 but %d are stored", created, stored)
	}
	// Space returns: writes work again, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Nodes().Create(context.Background(), client.Object{"name": "after.full.test", "description": big}); err != nil {
		t.Fatalf("a write once space returned: %v", err)
	}
	s.stop()
	st, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var check string
	if err := st.DB.Raw("PRAGMA integrity_check").Scan(&check).Error; err != nil || check != "ok" {
		t.Fatalf("integrity check: %q %v", check, err)
	}
	t.Logf("%d nodes stored, then 507 (%q); reads kept working; writes resumed once space returned; integrity ok", created, fullErr.Message)
}
