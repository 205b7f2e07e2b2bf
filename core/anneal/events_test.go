package anneal_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/anneal"
	"github.com/crowbar-go/crowbar/core/anneal/annealtest"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"gorm.io/gorm"
)

// record commits one event for node-role id in its own transaction.
func record(t *testing.T, bus *anneal.Bus, st *store.Store, id int64, state int) {
	t.Helper()
	err := st.DB.Transaction(func(tx *gorm.DB) error {
		return bus.Record(tx, []anneal.Event{{Type: "node_role", ID: id, Node: "n", State: state, At: time.Now().UTC()}})
	})
	if err != nil {
		t.Fatal(err)
	}
	bus.Kick()
}

// next reads one event or fails after a while.
func next(t *testing.T, sub *anneal.Subscription) anneal.Event {
	t.Helper()
	select {
	case ev := <-sub.C:
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no event")
		return anneal.Event{}
	}
}

// none checks that nothing arrives for a moment.
func none(t *testing.T, sub *anneal.Subscription, why string) {
	t.Helper()
	select {
	case ev := <-sub.C:
		t.Fatalf("%s: got %+v", why, ev)
	case <-time.After(300 * time.Millisecond):
	}
}

// The log is delivered in order with its ids; a subscriber that comes back
// with the last id it saw gets what it missed; pruned entries are reported
// as lost.
func TestEventLogResume(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		bus := anneal.NewBus(st.DB, st.Dialect == store.Postgres, nil)
		sub, err := bus.Subscribe(context.Background(), anneal.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		for i := int64(1); i <= 3; i++ {
			record(t, bus, st, i, model.StateActive)
		}
		var last int64
		for i := int64(1); i <= 3; i++ {
			ev := next(t, sub)
			if ev.ID != i || ev.Seq <= last {
				t.Fatalf("event %d: %+v after seq %d", i, ev, last)
			}
			last = ev.Seq
		}
		bus.Unsubscribe(sub) // the client goes away; the feed stops
		seen := last
		for i := int64(4); i <= 6; i++ {
			record(t, bus, st, i, model.StateActive)
		}
		sub, err = bus.Subscribe(context.Background(), anneal.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		defer bus.Unsubscribe(sub)
		record(t, bus, st, 7, model.StateActive)
		var got []int64
		lost, err := bus.Replay(context.Background(), sub, seen, func(ev anneal.Event) error { got = append(got, ev.ID); return nil })
		if err != nil || lost {
			t.Fatalf("replay: lost=%v %v", lost, err)
		}
		got = append(got, next(t, sub).ID)
		if fmt.Sprint(got) != "[4 5 6 7]" {
			t.Fatalf("resumed with %v, want [4 5 6 7]", got)
		}
		if n, err := bus.Prune(context.Background(), time.Hour); err != nil || n != 0 {
			t.Fatalf("prune of entries older than an hour: %d %v", n, err)
		}
		if n, err := bus.Prune(context.Background(), -time.Hour); err != nil || n != 7 {
			t.Fatalf("prune: %d %v", n, err)
		}
		lost, err = bus.Replay(context.Background(), sub, seen, func(anneal.Event) error { return nil })
		if err != nil || !lost {
			t.Fatalf("replay after pruning: lost=%v %v", lost, err)
		}
	})
}

// On PostgreSQL an id is handed out before its transaction commits: the
// feed holds back what follows an id still committing, delivers both in id
// order once it commits, and moves past an id whose transaction rolled
// back.
func TestEventLogWaitsForEarlierCommits(t *testing.T) {
	t.Parallel()
	dsn := storetest.PostgresDSN(t)
	if dsn == "" {
		t.Skip("needs PostgreSQL (CROWBAR_TEST_POSTGRES)")
	}
	st := storetest.Open(t, dsn)
	bus := anneal.NewBus(st.DB, true, nil)
	sub, err := bus.Subscribe(context.Background(), anneal.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Unsubscribe(sub)

	// open holds a transaction with one event recorded until release says
	// whether to commit.
	open := func(id int64) (release chan bool, done chan error) {
		release, done, recorded := make(chan bool), make(chan error, 1), make(chan struct{})
		go func() {
			done <- st.DB.Transaction(func(tx *gorm.DB) error {
				if err := tx.Exec("UPDATE schema_migrations SET name = name WHERE version = 1").Error; err != nil {
					return err
				}
				if err := bus.Record(tx, []anneal.Event{{Type: "node_role", ID: id, At: time.Now().UTC()}}); err != nil {
					return err
				}
				close(recorded)
				if !<-release {
					return fmt.Errorf("rolled back on purpose")
				}
				return nil
			})
			bus.Kick()
		}()
		<-recorded
		return release, done
	}

	release, done := open(1)
	record(t, bus, st, 2, model.StateActive)
	none(t, sub, "an event after one still committing")
	release <- true
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	first, second := next(t, sub), next(t, sub)
	if first.ID != 1 || second.ID != 2 || first.Seq >= second.Seq {
		t.Fatalf("delivered %+v then %+v", first, second)
	}

	release, done = open(3)
	record(t, bus, st, 4, model.StateActive)
	none(t, sub, "an event after one still committing")
	release <- false
	<-done
	if ev := next(t, sub); ev.ID != 4 {
		t.Fatalf("after a rolled-back id: %+v", ev)
	}
}

// Two replicas on one PostgreSQL converge node-roles between them: each
// replica's stream carries every node-role's changes, its own and the
// other's, each node-role's in the order they happened, and both streams
// hold the same events in the same order.
func TestEventsAcrossReplicas(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	if dsn == "" {
		t.Skip("needs PostgreSQL (CROWBAR_TEST_POSTGRES)")
	}
	a := storetest.Open(t, dsn)
	b := storetest.Open(t, dsn)
	total := annealtest.SeedChain(t, a.DB, 50, 4, "ok")
	jig := func(context.Context, *anneal.Work) (*barclamp.HookResult, error) {
		return &barclamp.HookResult{State: "active"}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type stream struct {
		sub    *anneal.Subscription
		events []anneal.Event
	}
	var streams []*stream
	var wg sync.WaitGroup
	for _, st := range []*store.Store{a, b} {
		bus := anneal.NewBus(st.DB, true, nil)
		sub, err := bus.Subscribe(ctx, anneal.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		defer bus.Unsubscribe(sub)
		streams = append(streams, &stream{sub: sub})
		ann := anneal.New(st.DB, anneal.Config{Workers: 4, Postgres: true, Poll: 50 * time.Millisecond, Bus: bus,
			Jigs: map[string]anneal.Jig{"ok": jig}})
		wg.Add(1)
		go func() { defer wg.Done(); ann.Run(ctx) }()
	}
	// Every node-role is claimed (transition) and finished (active) once;
	// those waiting on a parent were unblocked (todo) before.
	for _, s := range streams {
		active := 0
		for active < total {
			select {
			case ev := <-s.sub.C:
				s.events = append(s.events, ev)
				if ev.State == model.StateActive {
					active++
				}
			case <-time.After(time.Minute):
				t.Fatalf("%d of %d node-roles active in %d events", active, total, len(s.events))
			}
		}
		if n := s.sub.Dropped(); n != 0 {
			t.Fatalf("%d events dropped", n)
		}
	}
	cancel()
	wg.Wait()
	for i, s := range streams {
		states := map[int64]string{}
		for j, ev := range s.events {
			if j > 0 && ev.Seq <= s.events[j-1].Seq {
				t.Fatalf("replica %d: seq %d after %d", i, ev.Seq, s.events[j-1].Seq)
			}
			states[ev.ID] += " " + model.StateNames[ev.State]
		}
		if len(states) != total {
			t.Fatalf("replica %d saw %d node-roles of %d", i, len(states), total)
		}
		for id, ss := range states {
			if ss != " transition active" && ss != " todo transition active" {
				t.Fatalf("replica %d: node-role %d went%s", i, id, ss)
			}
		}
	}
	if len(streams[0].events) != len(streams[1].events) {
		t.Fatalf("the replicas' streams hold %d and %d events", len(streams[0].events), len(streams[1].events))
	}
	for j := range streams[0].events {
		if streams[0].events[j].Seq != streams[1].events[j].Seq {
			t.Fatalf("the replicas' streams differ at %d", j)
		}
	}
}
