package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"gorm.io/gorm"
)

// DefaultSessionTTL is how long a browser session lasts from sign-in.
const DefaultSessionTTL = 12 * time.Hour

// Session is a signed-in browser: the web UI's credential. Its secret
// travels in an HttpOnly cookie and only its SHA-256 is stored, so a
// database dump opens no session; writes also need its CSRF token, which
// the page reads from GET /api/v2/session and sends in a header a
// cross-site form cannot set.
type Session struct {
	Secret    string    `json:"-"` // the cookie value; empty once stored
	Username  string    `json:"username"`
	CSRF      string    `json:"csrf_token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// sessionRow is the stored form of a Session.
type sessionRow struct {
	IDHash    string `gorm:"primaryKey"`
	Username  string
	CSRF      string `gorm:"column:csrf"`
	Remote    string
	CreatedAt time.Time
	ExpiresAt time.Time
}

func (sessionRow) TableName() string { return "sessions" }

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// CheckPassword signs username in with a password (the web UI's form):
// the password's HA1 in this realm must match the stored one. Failures are
// *Error, worded alike for an unknown user and a wrong password.
func (s *Service) CheckPassword(ctx context.Context, username, password string) (*Caller, error) {
	wrong := fail(Unauthenticated, "wrong user name or password")
	if username == "" || password == "" {
		return nil, fail(Unauthenticated, "a user name and a password are required")
	}
	u, err := s.findUser(ctx, username)
	if err != nil {
		return nil, fmt.Errorf("look up user: %w", err)
	}
	if u == nil || u.DigestRealm != s.Realm() || u.HA1SHA256 == "" {
		return nil, wrong
	}
	want := HA1(SHA256, u.Username, s.Realm(), password)
	if subtle.ConstantTimeCompare([]byte(want), []byte(u.HA1SHA256)) != 1 {
		return nil, wrong
	}
	if !u.APIAccess {
		e := fail(Forbidden, "user %q is not flagged for API access", u.Username)
		e.User = u.Username
		return nil, e
	}
	return &Caller{Username: u.Username, Role: Role(u.Role), Scheme: "session"}, nil
}

// CreateSession starts a session for c lasting ttl (DefaultSessionTTL when
// zero) and removes expired ones. remote is noted for the operator.
func (s *Service) CreateSession(ctx context.Context, c *Caller, remote string, ttl time.Duration) (*Session, error) {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	secret, err := randomToken()
	if err != nil {
		return nil, err
	}
	csrf, err := randomToken()
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	row := sessionRow{IDHash: hashSecret(secret), Username: c.Username, CSRF: csrf, Remote: remote,
		CreatedAt: now, ExpiresAt: now.Add(ttl)}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Where("expires_at < ?", now).Delete(&sessionRow{}).Error; err != nil {
			return err
		}
		return tx.Create(&row).Error
	})
	if err != nil {
		return nil, fmt.Errorf("store session: %w", err)
	}
	return &Session{Secret: secret, Username: c.Username, CSRF: csrf, ExpiresAt: row.ExpiresAt}, nil
}

// SessionCaller authenticates a session cookie's value: the caller (role
// from the user as it is now) and the session (for its CSRF token).
func (s *Service) SessionCaller(ctx context.Context, secret string) (*Caller, *Session, error) {
	h := hashSecret(secret)
	row, ok := s.sessions.get(h, s.now())
	if !ok {
		var r sessionRow
		err := s.db.WithContext(ctx).Where("id_hash = ?", h).Take(&r).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, nil, fail(Unauthenticated, "the session has ended: sign in again")
		}
		if err != nil {
			return nil, nil, fmt.Errorf("look up session: %w", err)
		}
		row = &r
		s.sessions.put(h, row, s.now())
	}
	if !s.now().Before(row.ExpiresAt) {
		return nil, nil, fail(Unauthenticated, "the session has expired: sign in again")
	}
	u, err := s.findUser(ctx, row.Username)
	if err != nil {
		return nil, nil, fmt.Errorf("look up user: %w", err)
	}
	if u == nil || !u.APIAccess {
		return nil, nil, fail(Unauthenticated, "the session's user %q may no longer sign in", row.Username)
	}
	return &Caller{Username: u.Username, Role: Role(u.Role), Scheme: "session"},
		&Session{Username: row.Username, CSRF: row.CSRF, ExpiresAt: row.ExpiresAt}, nil
}

// CheckCSRF reports whether token is the session's CSRF token.
func (sess *Session) CheckCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(sess.CSRF)) == 1
}

// EndSession signs a session out on every replica at once (its row is
// deleted; this process forgets it too; others cache it for at most the
// user cache TTL).
func (s *Service) EndSession(ctx context.Context, secret string) error {
	h := hashSecret(secret)
	s.sessions.forget(h)
	return s.db.WithContext(ctx).Where("id_hash = ?", h).Delete(&sessionRow{}).Error
}

// sessionCache keeps looked-up sessions for the user cache's TTL, so a
// page's requests do not each pay a query.
type sessionCache struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]cachedSession
}

type cachedSession struct {
	row *sessionRow
	at  time.Time
}

func (c *sessionCache) get(h string, now time.Time) (*sessionRow, bool) {
	if c.ttl <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[h]
	if !ok || now.Sub(e.at) > c.ttl {
		return nil, false
	}
	return e.row, true
}

func (c *sessionCache) put(h string, row *sessionRow, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedUsers {
		clear(c.m)
	}
	c.m[h] = cachedSession{row: row, at: now}
}

func (c *sessionCache) forget(h string) {
	c.mu.Lock()
	delete(c.m, h)
	c.mu.Unlock()
}
