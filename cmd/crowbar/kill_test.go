package main

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/anneal/annealtest"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// TestKill9MidAnnealLosesNothing starts the real binary on a database with
// 5,000 committed node-roles, kills it with SIGKILL mid-anneal, restarts
// it, and checks that every node-role ends ACTIVE and that only the runs in
// flight at the kill ran a second time.
func TestKill9MidAnnealLosesNothing(t *testing.T) {
	bin := testBinary(t)
	const workers = 8
	for _, db := range storetest.Databases(t) {
		t.Run(string(db.Dialect), func(t *testing.T) {
			dir := t.TempDir()
			st, err := store.Open(context.Background(), db.DSN, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			total := int64(annealtest.SeedChain(t, st.DB, 1000, 5, "noop"))
			count := func(q string, args ...any) int64 {
				var n int64
				st.DB.Model(&model.NodeRole{}).Where(q, args...).Count(&n)
				return n
			}
			start := func() *exec.Cmd {
				ln, _ := net.Listen("tcp", "127.0.0.1:0")
				addr := ln.Addr().String()
				ln.Close()
				cmd := exec.Command(bin, "server", "--data-dir", dir, "--wasm-cache", sharedWasmCache, "--database", db.DSN, "--listen", addr,
					"--log-level", "error", "--anneal-workers", "8", "--anneal-lease", "2s")
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 3000; i++ {
					if resp, err := http.Get("http://" + addr + "/health"); err == nil {
						resp.Body.Close()
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				return cmd
			}
			cmd := start()
			deadline := time.Now().Add(time.Minute)
			for count("state = ?", model.StateActive) < total/4 {
				if time.Now().After(deadline) {
					t.Fatal("the annealer made no progress")
				}
				time.Sleep(5 * time.Millisecond)
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			activeAtKill := count("state = ?", model.StateActive)
			if activeAtKill == total {
				t.Fatal("the anneal finished before the kill; nothing was tested")
			}
			t.Logf("killed with %d of %d active, %d in transition", activeAtKill, total, count("state = ?", model.StateTransition))

			cmd = start()
			defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
			deadline = time.Now().Add(time.Minute)
			for count("state = ?", model.StateActive) < total {
				if time.Now().After(deadline) {
					t.Fatalf("after restart: %d of %d active", count("state = ?", model.StateActive), total)
				}
				time.Sleep(20 * time.Millisecond)
			}
			var nodeRoles, runs, maxRuns int64
			st.DB.Model(&model.NodeRole{}).Count(&nodeRoles)
			st.DB.Model(&model.NodeRole{}).Select("COALESCE(SUM(run_count), 0)").Scan(&runs)
			st.DB.Model(&model.NodeRole{}).Select("COALESCE(MAX(run_count), 0)").Scan(&maxRuns)
			if nodeRoles != total {
				t.Fatalf("%d node-roles, want %d: something was lost", nodeRoles, total)
			}
			if runs-total > workers || maxRuns > 2 {
				t.Fatalf("%d runs for %d node-roles (max %d on one): more re-runs than the %d that can be in flight", runs, total, maxRuns, workers)
			}
			t.Logf("%d node-roles re-ran after the kill", runs-total)
		})
	}
}
