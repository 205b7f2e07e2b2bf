// Package auth authenticates API callers (HTTP Digest for users, JWT
// bearer tokens) and decides what their role lets them do. It knows nothing
// of HTTP routing: the api package feeds it headers and maps its errors to
// status codes.
package auth

import (
	"context"
	"errors"
	"fmt"
)

// Role is what a user may do.
type Role string

// The roles, from most to least powerful.
const (
	RoleAdmin    Role = "admin"    // everything
	RoleOperator Role = "operator" // everything but user management
	RoleReader   Role = "reader"   // reads only
)

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleOperator, RoleReader:
		return r, nil
	}
	return "", fmt.Errorf("role '%s' must be one of admin, operator, reader", s)
}

// Caller is who made a request.
type Caller struct {
	Username string
	Role     Role
	Scheme   string // "digest", "bearer", "session" (the web UI) or "internal"
}

type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller stored in ctx, or nil.
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// Kind classifies an authentication failure.
type Kind int

// The kinds of failure; the HTTP layer maps them to 401, 403 and 440.
const (
	Unauthenticated Kind = iota // no, bad or expired credentials: 401
	Forbidden                   // valid credentials that may not do this: 403
	TokenTooLong                // a JWT valid for longer than allowed: 440
)

// Error is an authentication or authorization failure. Message is safe to
// show to the caller; it never contains a secret.
type Error struct {
	Kind    Kind
	Message string
	Stale   bool   // digest: the nonce expired, the client should retry with a new one
	User    string // who tried, for the log
	// Guess marks credentials that are simply wrong (a password, a token
	// signature): what sign-in throttling counts.
	Guess bool
}

func (e *Error) Error() string { return e.Message }

func fail(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// AsError returns err as an *Error when it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
