package auth_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// clock is a settable time for the throttle's waits.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var wrong = &auth.Error{Kind: auth.Unauthenticated, Message: "wrong", Guess: true}

// TestThrottleGuessesPerMinute: an attacker who retries the moment the
// wait ends gets the free failures and a handful of doubling waits in
// its first minute, then one guess a minute; the figures go to
// docs/reliability.md.
func TestThrottleGuessesPerMinute(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		clk := &clock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
		svc, err := auth.New(ctx, st.DB, auth.Config{Now: clk.Now}, nil)
		if err != nil {
			t.Fatal(err)
		}
		victim := auth.Subjects("198.51.100.7:40000", "victim")
		start := clk.Now()
		perMinute := make([]int, 10)
		for clk.Now().Sub(start) < 10*time.Minute {
			err := svc.CheckThrottle(ctx, victim)
			var th *auth.Throttled
			switch {
			case errors.As(err, &th):
				if th.RetryAfter <= 0 || th.RetryAfter > time.Minute {
					t.Fatalf("Retry-After %s", th.RetryAfter)
				}
				clk.Add(th.RetryAfter) // retry the moment the wait ends
				continue
			case err != nil:
				t.Fatal(err)
			}
			perMinute[int(clk.Now().Sub(start)/time.Minute)]++
			svc.SignInFailed(ctx, victim, wrong)
			clk.Add(10 * time.Millisecond) // the attempt itself
		}
		t.Logf("guesses per minute against one user: %v", perMinute)
		if perMinute[0] > 13 {
			t.Errorf("first minute: %d guesses", perMinute[0])
		}
		for m, n := range perMinute[2:] {
			if n > 1 {
				t.Errorf("minute %d: %d guesses, want at most one once the wait is capped", m+2, n)
			}
		}
	})
}

// TestThrottleSubjects: a wait binds its user and its address only, a
// success resets, other failures (an expired nonce, a forbidden user) are
// not counted, and a replica sharing the database applies a wait made
// through another.
func TestThrottleSubjects(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		clk := &clock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
		cfg := auth.Config{Now: clk.Now, Throttle: auth.ThrottleConfig{Free: 2, Base: time.Second, Max: 30 * time.Second}}
		a, err := auth.New(ctx, st.DB, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := auth.New(ctx, st.DB, cfg, nil) // another replica
		if err != nil {
			t.Fatal(err)
		}
		attacker := auth.Subjects("198.51.100.7:40000", "victim")
		for i := 0; i < 3; i++ {
			if err := a.CheckThrottle(ctx, attacker); err != nil {
				t.Fatalf("attempt %d refused: %v", i+1, err)
			}
			a.SignInFailed(ctx, attacker, wrong)
		}
		var th *auth.Throttled
		if err := a.CheckThrottle(ctx, attacker); !errors.As(err, &th) || th.RetryAfter != time.Second {
			t.Fatalf("after 3 failures (2 free): %v", err)
		}
		for what, subjects := range map[string][]string{
			"the victim from elsewhere":   auth.Subjects("203.0.113.9:1", "victim"),
			"another user from there":     auth.Subjects("198.51.100.7:1", "other"),
			"a bearer token from there":   auth.Subjects("198.51.100.7:1", ""),
			"another user from elsewhere": auth.Subjects("203.0.113.9:1", "other"),
		} {
			err := a.CheckThrottle(ctx, subjects)
			blocked := what != "another user from elsewhere"
			if (err != nil) != blocked {
				t.Errorf("%s: %v (blocked: want %v)", what, err, blocked)
			}
		}
		// Not guesses: counted for nobody.
		other := auth.Subjects("192.0.2.1:1", "carol")
		for i := 0; i < 10; i++ {
			a.SignInFailed(ctx, other, &auth.Error{Kind: auth.Unauthenticated, Message: "digest nonce has expired", Stale: true})
			a.SignInFailed(ctx, other, &auth.Error{Kind: auth.Forbidden, Message: "not flagged for API access"})
		}
		if err := a.CheckThrottle(ctx, other); err != nil {
			t.Errorf("stale nonces and forbidden users were counted: %v", err)
		}
		// The other replica learns of the wait within its refresh.
		clk.Add(1100 * time.Millisecond)
		a.SignInFailed(ctx, attacker, wrong) // the 4th: waits 2 s
		clk.Add(1100 * time.Millisecond)
		if err := b.CheckThrottle(ctx, attacker); !errors.As(err, &th) {
			t.Errorf("the other replica does not apply the wait: %v", err)
		}
		// Once the wait is over, a success resets both subjects.
		clk.Add(time.Second)
		if err := b.CheckThrottle(ctx, attacker); err != nil {
			t.Fatalf("after the wait: %v", err)
		}
		b.SignInSucceeded(ctx, attacker)
		for i := 0; i < 2; i++ {
			a.SignInFailed(ctx, attacker, wrong)
		}
		clk.Add(1100 * time.Millisecond)
		if err := a.CheckThrottle(ctx, attacker); err != nil {
			t.Errorf("after a success, two failures (free) made a wait: %v", err)
		}
	})
}
