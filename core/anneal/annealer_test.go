package anneal_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/anneal"
	"github.com/crowbar-go/crowbar/core/anneal/annealtest"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// waitAll waits until every node-role is ACTIVE.
func waitAll(t *testing.T, st *store.Store, total int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var n int64
		st.DB.Model(&model.NodeRole{}).Where("state = ?", model.StateActive).Count(&n)
		if n == total {
			return
		}
		if time.Now().After(deadline) {
			var rows []struct {
				State int
				N     int64
			}
			st.DB.Model(&model.NodeRole{}).Select("state, COUNT(*) AS n").Group("state").Scan(&rows)
			t.Fatalf("%d of %d node-roles active after %s: %v", n, total, timeout, rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two annealers (two servers' worth, each with its own connection pool) on
// one PostgreSQL share 1,000 node-roles and run each exactly once.
func TestTwoServersShareTheWorkAndRunEachOnce(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	if dsn == "" {
		t.Skip("needs PostgreSQL (CROWBAR_TEST_POSTGRES)")
	}
	a := storetest.Open(t, dsn)
	b := storetest.Open(t, dsn)
	total := annealtest.SeedChain(t, a.DB, 100, 10, "counted")
	var runs sync.Map // node-role id → count
	var perServer [2]atomic.Int64
	jig := func(i int) anneal.Jig {
		return func(ctx context.Context, w *anneal.Work) (*barclamp.HookResult, error) {
			n, _ := runs.LoadOrStore(w.NodeRole.ID, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			perServer[i].Add(1)
			return &barclamp.HookResult{State: "active"}, nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, st := range []*store.Store{a, b} {
		ann := anneal.New(st.DB, anneal.Config{Workers: 8, Postgres: true, Poll: 50 * time.Millisecond,
			Jigs: map[string]anneal.Jig{"counted": jig(i)}})
		wg.Add(1)
		go func() { defer wg.Done(); ann.Run(ctx) }()
	}
	waitAll(t, a, int64(total), time.Minute)
	cancel()
	wg.Wait()
	twice := 0
	count := 0
	runs.Range(func(_, v any) bool {
		count++
		if v.(*atomic.Int64).Load() != 1 {
			twice++
		}
		return true
	})
	if count != total || twice != 0 {
		t.Fatalf("%d node-roles ran, %d more than once; want %d exactly once", count, twice, total)
	}
	var maxRuns int64
	a.DB.Model(&model.NodeRole{}).Select("MAX(run_count)").Scan(&maxRuns)
	if maxRuns != 1 {
		t.Fatalf("run_count up to %d", maxRuns)
	}
	if perServer[0].Load() == 0 || perServer[1].Load() == 0 {
		t.Fatalf("the work was not shared: %d / %d", perServer[0].Load(), perServer[1].Load())
	}
	t.Logf("server a ran %d, server b ran %d", perServer[0].Load(), perServer[1].Load())
}

// An expired lease (its server died) returns the node-role to TODO and
// another annealer finishes it; the dead server's late result is dropped.
func TestExpiredLeaseIsRunAgain(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		total := annealtest.SeedChain(t, st.DB, 3, 2, "noop")
		// A "crashed" server: claimed the first node-roles, never finished.
		past := time.Now().UTC().Add(-time.Minute)
		st.DB.Model(&model.NodeRole{}).Where("state = ?", model.StateTodo).
			Updates(map[string]any{"state": model.StateTransition, "lease_owner": "dead", "lease_until": past, "run_count": 1})
		ann := anneal.New(st.DB, anneal.Config{Workers: 4, Postgres: st.Dialect == store.Postgres, Poll: 20 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { ann.Run(ctx); close(done) }()
		waitAll(t, st, int64(total), 30*time.Second)
		cancel()
		<-done
		var twice int64
		st.DB.Model(&model.NodeRole{}).Where("run_count = 2").Count(&twice)
		if twice != 3 {
			t.Fatalf("%d node-roles show the re-run after the lease expired, want the 3 that were leased", twice)
		}
	})
}

// TestStatusDoesNotWaitForTheWriter: on SQLite the annealer's status is a
// read-only snapshot, answered while another transaction holds the write
// lock (it used to queue behind writers and could wait out the busy
// timeout: a 500 on GET /api/v2/anneal under load).
func TestStatusDoesNotWaitForTheWriter(t *testing.T) {
	st := storetest.Open(t, storetest.Databases(t)[0].DSN) // SQLite
	annealtest.SeedChain(t, st.DB, 3, 2, "noop")
	ann := anneal.New(st.DB, anneal.Config{})
	tx := st.DB.Begin() // IMMEDIATE: holds the write lock until rolled back
	if err := tx.Model(&model.NodeRole{}).Where("1 = 1").Update("runlog", "held").Error; err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	// Well under the 10 s busy timeout a queued writer would wait.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	status, err := ann.Status(ctx)
	if err != nil {
		t.Fatalf("status while a writer holds the lock: %v", err)
	}
	if status.Counts["todo"] != 3 || status.Counts["blocked"] != 3 {
		t.Fatalf("status %+v, want 3 todo and 3 blocked", status.Counts)
	}
}
