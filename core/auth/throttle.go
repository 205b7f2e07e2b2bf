package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// ThrottleConfig slows down guessing: after Free failed sign-ins in a row
// for one user or from one address, each further failure makes that user
// or address wait Base, then twice as long each time, up to Max; requests
// meanwhile get 429 with Retry-After and their credentials are not even
// checked. A success resets both. The failures are kept in the database,
// so every replica applies them.
type ThrottleConfig struct {
	Free int           // failures allowed before any wait (default 5)
	Base time.Duration // the first wait (default 1 s)
	Max  time.Duration // the longest wait (default 1 min); negative disables throttling
	// Window forgets failures older than this (default 15 min).
	Window time.Duration
	// Refresh is how often waits imposed through other replicas are read
	// (default 1 s): the check on each request is a map lookup.
	Refresh time.Duration
}

func (c *ThrottleConfig) defaults() {
	if c.Free <= 0 {
		c.Free = 5
	}
	if c.Base <= 0 {
		c.Base = time.Second
	}
	if c.Max == 0 {
		c.Max = time.Minute
	}
	if c.Window <= 0 {
		c.Window = 15 * time.Minute
	}
	if c.Refresh <= 0 {
		c.Refresh = time.Second
	}
}

// authFailure is a row of auth_failures: the failures of one subject
// ("user:<name>" or "addr:<ip>").
type authFailure struct {
	Subject      string    `gorm:"primaryKey"`
	Failures     int       `gorm:"not null"`
	LastFailure  time.Time `gorm:"not null"`
	BlockedUntil time.Time `gorm:"not null"`
}

func (authFailure) TableName() string { return "auth_failures" }

// guess is a failure throttling counts.
func guess(format string, args ...any) *Error {
	e := fail(Unauthenticated, format, args...)
	e.Guess = true
	return e
}

// Throttled is the refusal of a request while its user or address waits.
type Throttled struct {
	Subject    string
	RetryAfter time.Duration
}

func (t *Throttled) Error() string {
	what := strings.Replace(t.Subject, ":", " ", 1)
	return fmt.Sprintf("too many failed sign-ins for %s: try again in %d s", what, int((t.RetryAfter+time.Second-1)/time.Second))
}

type throttle struct {
	db  *gorm.DB
	cfg ThrottleConfig
	now func() time.Time

	mu        sync.Mutex
	known     map[string]authFailure // subjects with recent failures, as last read or written
	refreshed time.Time
}

func newThrottle(db *gorm.DB, cfg ThrottleConfig, now func() time.Time) *throttle {
	cfg.defaults()
	return &throttle{db: db, cfg: cfg, now: now, known: map[string]authFailure{}}
}

// Subjects are the throttle subjects of a sign-in: its address and, when
// it names one, its user.
func Subjects(remoteAddr, username string) []string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	out := []string{"addr:" + host}
	if username != "" {
		out = append(out, "user:"+username)
	}
	return out
}

// DigestUsername is the user a Digest Authorization header names ("" for
// other schemes or a header that cannot be read).
func DigestUsername(header string) string {
	if !strings.HasPrefix(header, "Digest ") {
		return ""
	}
	c, err := ParseDigest(header)
	if err != nil {
		return ""
	}
	return c["username"]
}

// refresh reads the failures recorded through every replica, at most once
// per Refresh.
func (t *throttle) refresh(ctx context.Context) {
	now := t.now()
	t.mu.Lock()
	if now.Sub(t.refreshed) < t.cfg.Refresh {
		t.mu.Unlock()
		return
	}
	t.refreshed = now
	t.mu.Unlock()
	var rows []authFailure
	if err := t.db.WithContext(ctx).Where("last_failure > ?", now.Add(-t.cfg.Window)).Find(&rows).Error; err != nil {
		return // the next request tries again; meanwhile what is known applies
	}
	known := make(map[string]authFailure, len(rows))
	for _, r := range rows {
		known[r.Subject] = r
	}
	t.mu.Lock()
	t.known = known
	t.mu.Unlock()
}

// Check refuses (*Throttled) a sign-in whose subjects wait.
func (t *throttle) Check(ctx context.Context, subjects []string) error {
	if t.cfg.Max < 0 {
		return nil
	}
	t.refresh(ctx)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var worst *Throttled
	for _, s := range subjects {
		if f, ok := t.known[s]; ok && f.BlockedUntil.After(now) {
			if wait := f.BlockedUntil.Sub(now); worst == nil || wait > worst.RetryAfter {
				worst = &Throttled{Subject: s, RetryAfter: wait}
			}
		}
	}
	if worst != nil {
		return worst
	}
	return nil
}

// wait is how long a subject waits after its n-th failure in a row.
func (t *throttle) wait(n int) time.Duration {
	if n <= t.cfg.Free {
		return 0
	}
	d := t.cfg.Base
	for i := t.cfg.Free + 1; i < n && d < t.cfg.Max; i++ {
		d *= 2
	}
	if d > t.cfg.Max {
		d = t.cfg.Max
	}
	return d
}

// Failed records a failed sign-in for each subject.
func (t *throttle) Failed(ctx context.Context, subjects []string) error {
	if t.cfg.Max < 0 {
		return nil
	}
	now := t.now()
	for _, s := range subjects {
		var row authFailure
		err := t.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var old authFailure
			err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("subject = ?", s).Take(&old).Error
			n := 1
			switch {
			case err == nil && old.LastFailure.After(now.Add(-t.cfg.Window)):
				n = old.Failures + 1
			case err != nil && !errors.Is(err, gorm.ErrRecordNotFound):
				return err
			}
			row = authFailure{Subject: s, Failures: n, LastFailure: now, BlockedUntil: now.Add(t.wait(n))}
			return tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "subject"}},
				DoUpdates: clause.AssignmentColumns([]string{"failures", "last_failure", "blocked_until"})}).Create(&row).Error
		})
		if err != nil {
			return fmt.Errorf("record a failed sign-in: %w", err)
		}
		t.mu.Lock()
		t.known[s] = row
		t.mu.Unlock()
	}
	return nil
}

// Succeeded forgets the failures of the subjects, when there are any.
func (t *throttle) Succeeded(ctx context.Context, subjects []string) {
	if t.cfg.Max < 0 {
		return
	}
	var forget []string
	t.mu.Lock()
	for _, s := range subjects {
		if _, ok := t.known[s]; ok {
			forget = append(forget, s)
			delete(t.known, s)
		}
	}
	t.mu.Unlock()
	if len(forget) > 0 {
		t.db.WithContext(ctx).Where("subject IN ?", forget).Delete(&authFailure{}) //nolint:errcheck // a stale row only delays its subject
	}
}
