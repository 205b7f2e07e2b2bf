package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"gorm.io/gorm"
)

// StatusTokenTooLong is the Zero-OS status for a JWT valid for over an hour.
const StatusTokenTooLong = 440

// openPaths answer without credentials. Keep this list at one entry: a test
// walks every route and requires 401 from all others.
var openPaths = map[string]bool{"/health": true, "/ready": true}

// authenticate admits a request only with valid credentials whose role
// permits it, and puts the caller in the request context.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name := barclampOf(r.URL.Path); name != "" && s.barclamps != nil && s.barclamps.IsPending(name) {
			// Its routes (open or not) are not known yet.
			w.Header().Set("Retry-After", "2")
			writeError(w, r, "", statusError(http.StatusServiceUnavailable, "barclamp "+name+" is still loading; try again shortly (GET /ready says when everything is)"))
			return
		}
		if openPaths[r.URL.Path] || agentPaths[r.URL.Path] || s.isOpenBarclampRoute(r) || isUIAsset(r) ||
			(r.URL.Path == sessionPath && r.Method == http.MethodPost) {
			next.ServeHTTP(w, r)
			return
		}
		// In-process calls from barclamps carry their identity already; an
		// HTTP client cannot set a context value.
		if c := auth.CallerFrom(r.Context()); c != nil && c.Scheme == "internal" {
			s.admit(w, r, next, c, nil, r.Context())
			return
		}
		if r.Header.Get("Authorization") == "" {
			// A browser signed in to the web UI.
			if caller, sess, err := s.sessionSignIn(r); caller != nil || err != nil {
				s.admit(w, r, next, caller, err, context.WithValue(auth.WithCaller(r.Context(), caller), sessionKey{}, sess))
				return
			}
		}
		caller, err := s.signIn(r)
		var th *auth.Throttled
		if errors.As(err, &th) {
			s.throttled(w, r, err)
			return
		}
		s.admit(w, r, next, caller, err, auth.WithCaller(r.Context(), caller))
	})
}

// admit serves r in ctx when its caller signed in (err nil) and their role
// permits the request; otherwise it answers why not.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, next http.Handler, caller *auth.Caller, err error, ctx context.Context) {
	if err == nil {
		noteCaller(r.Context(), caller)
		err = permits(caller, r)
	}
	if err != nil {
		s.authFailed(w, r, err)
		return
	}
	next.ServeHTTP(w, r.WithContext(ctx))
}

// signIn authenticates r's credentials under sign-in throttling: a
// *auth.Throttled while its user or address waits, else what
// Authenticate says, counted.
func (s *Server) signIn(r *http.Request) (*auth.Caller, error) {
	header := r.Header.Get("Authorization")
	var subjects []string
	if header != "" {
		subjects = auth.Subjects(r.RemoteAddr, auth.DigestUsername(header))
		if err := s.auth.CheckThrottle(r.Context(), subjects); err != nil {
			return nil, err
		}
	}
	caller, err := s.auth.Authenticate(r.Context(), r.Method, r.RequestURI, header)
	if err != nil {
		s.auth.SignInFailed(r.Context(), subjects, err)
	} else if subjects != nil {
		s.auth.SignInSucceeded(r.Context(), subjects)
	}
	return caller, err
}

// permits applies the caller's role. Minting a token for oneself is open to
// every role, since the token carries the same role.
func permits(c *auth.Caller, r *http.Request) error {
	p := r.URL.Path
	if p == "/api/v2/tokens" {
		return nil
	}
	if p == "/api/v2/join_tokens" || strings.HasPrefix(p, "/api/v2/join_tokens/") {
		// A join token makes nodes whose agents run commands as root.
		return adminOnly(c, "manage join tokens")
	}
	if p == "/api/v2/audit" {
		return adminOnly(c, "read the audit log")
	}
	return auth.Permits(c, r.Method, p == "/api/v2/users" || strings.HasPrefix(p, "/api/v2/users/"))
}

// throttled answers 429 with Retry-After: the caller's user or address
// waits after failed sign-ins.
func (s *Server) throttled(w http.ResponseWriter, r *http.Request, err error) {
	var t *auth.Throttled
	if !errors.As(err, &t) {
		writeError(w, r, "", err)
		return
	}
	secs := int((t.RetryAfter + time.Second - 1) / time.Second)
	loggerFrom(r).Warn("sign-in throttled", "remote", r.RemoteAddr, "subject", t.Subject, "retry_after_s", secs)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, r, "", statusError(http.StatusTooManyRequests, t.Error()))
}

func adminOnly(c *auth.Caller, what string) error {
	if c.Role != auth.RoleAdmin {
		return &auth.Error{Kind: auth.Forbidden, User: c.Username,
			Message: "user \"" + c.Username + "\" (role " + string(c.Role) + ") may not " + what + ": that needs the admin role"}
	}
	return nil
}

// authFailed logs the failure (who and from where, never the secret) and
// answers 401 with challenges for both schemes, 403, or 440.
func (s *Server) authFailed(w http.ResponseWriter, r *http.Request, err error) {
	ae, ok := auth.AsError(err)
	if !ok {
		writeError(w, r, "", err)
		return
	}
	// No credentials at all is the first leg of every digest exchange, not
	// a failure worth a warning.
	logf := loggerFrom(r).Warn
	if r.Header.Get("Authorization") == "" {
		logf = loggerFrom(r).Debug
	}
	logf("authentication failed", "remote", r.RemoteAddr, "user", ae.User,
		"method", r.Method, "path", r.URL.Path, "reason", ae.Message)
	status := http.StatusUnauthorized
	switch ae.Kind {
	case auth.Forbidden:
		status = http.StatusForbidden
	case auth.TokenTooLong:
		status = StatusTokenTooLong
	default:
		// A browser would answer a challenge with its own sign-in dialog
		// in front of the web UI's form.
		if !fromUI(r) {
			for _, c := range s.auth.Challenges(ae.Stale) {
				w.Header().Add("WWW-Authenticate", c)
			}
		}
	}
	writeError(w, r, "", statusError(status, ae.Message))
}

// usersHook turns a write-only password into digest HA1s and guards what a
// user change may not do.
func (s *Server) usersHook(tx *gorm.DB, u *model.User, creating bool) error {
	if !creating {
		var old model.User
		if err := tx.Select("username", "role").Where("id = ?", u.ID).Take(&old).Error; err != nil {
			return err
		}
		if old.Username != u.Username && u.Password == "" {
			return model.Invalid("username", "changing the username needs a new password: digest credentials include the name")
		}
		if old.Role == "admin" && u.Role != "admin" {
			if err := store.LastAdminGuard(tx, u.ID); err != nil {
				return err
			}
		}
	}
	if u.Password != "" {
		s.auth.SetPassword(u, u.Password)
		u.Password = ""
	}
	return nil
}

type tokenRequest struct {
	Validity int64 `json:"validity"`
}

type tokenResponse struct {
	Token     string    `json:"token"`
	Username  string    `json:"username"`
	ExpiresAt time.Time `json:"expires_at"`
	Validity  int64     `json:"validity"`
}

// createToken answers POST /api/v2/tokens: a bearer token for the caller,
// valid for "validity" seconds (default and most 3600). Only a caller who
// proved a password may mint one, so a token cannot extend itself.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	caller := auth.CallerFrom(r.Context())
	if caller.Scheme == "bearer" {
		writeError(w, r, "token", statusError(http.StatusForbidden, "tokens are minted with digest credentials or a web session, not with another token"))
		return
	}
	req := tokenRequest{Validity: 3600}
	if err := decodeStrict(r, &req); err != nil {
		writeError(w, r, "token", err)
		return
	}
	if req.Validity < 1 || req.Validity > int64(auth.MaxTokenValidity/time.Second) {
		writeError(w, r, "token", model.Invalid("validity", "must be between 1 and 3600 seconds, got %d", req.Validity))
		return
	}
	tok, exp, err := s.auth.MintToken(caller, time.Duration(req.Validity)*time.Second)
	if err != nil {
		writeError(w, r, "token", err)
		return
	}
	writeObject(w, r, http.StatusCreated, "token", tokenResponse{Token: tok, Username: caller.Username, ExpiresAt: exp, Validity: req.Validity})
}

// barclampOf is the barclamp a /<name>/v2/… path belongs to ("" for
// the core API and anything else).
func barclampOf(path string) string {
	parts := strings.SplitN(strings.TrimPrefix(path, "/"), "/", 3)
	if len(parts) >= 2 && parts[0] != "api" && parts[1] == "v2" {
		return parts[0]
	}
	return ""
}
