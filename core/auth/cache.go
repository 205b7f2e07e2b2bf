package auth

import (
	"sync"
	"time"

	"github.com/crowbar-go/crowbar/core/model"
)

// userCache keeps recently used users for a short time so that a request
// does not pay a query to authenticate. Writes through the API invalidate
// the entry at once in this process; other replicas see a change within
// the TTL. Misses are not cached, so unknown names cannot fill it.
type userCache struct {
	ttl time.Duration
	now func() time.Time
	mu  sync.RWMutex
	m   map[string]cachedUser
}

type cachedUser struct {
	user model.User
	at   time.Time
}

const maxCachedUsers = 10000

func (c *userCache) get(name string) (*model.User, bool) {
	if c.ttl <= 0 {
		return nil, false
	}
	c.mu.RLock()
	e, ok := c.m[name]
	c.mu.RUnlock()
	if !ok || c.now().Sub(e.at) > c.ttl {
		return nil, false
	}
	u := e.user
	return &u, true
}

func (c *userCache) put(u *model.User) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedUsers {
		clear(c.m)
	}
	c.m[u.Username] = cachedUser{user: *u, at: c.now()}
}

func (c *userCache) forget(name string) {
	c.mu.Lock()
	delete(c.m, name)
	c.mu.Unlock()
}

// tokenCache remembers bearer tokens whose signature and claims were
// verified, keyed by the exact token text, until they expire: checking an
// ES256 signature costs about 100 µs, more than the rest of a request.
type tokenCache struct {
	mu sync.RWMutex
	m  map[string]*Claims
}

const maxCachedTokens = 10000

func (c *tokenCache) get(tok string) (*Claims, bool) {
	c.mu.RLock()
	cl, ok := c.m[tok]
	c.mu.RUnlock()
	return cl, ok
}

func (c *tokenCache) put(tok string, cl *Claims, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedTokens {
		for k, v := range c.m {
			if now.After(v.ExpiresAt) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCachedTokens {
			return
		}
	}
	c.m[tok] = cl
}

func (c *tokenCache) forget(tok string) {
	c.mu.Lock()
	delete(c.m, tok)
	c.mu.Unlock()
}
