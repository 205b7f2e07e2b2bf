package api

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/api/ui"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/model"
)

// SessionCookie carries a web UI session's secret.
const SessionCookie = "crowbar_session"

// CSRFHeader carries a session's CSRF token on every write made with the
// session cookie. A cross-site form cannot set a header, and a cross-site
// script cannot read the token (GET /api/v2/session is same-origin only).
const CSRFHeader = "X-CSRF-Token"

// sessionPath is the sign-in route; POST to it is open.
const sessionPath = "/api/v2/session"

type signInRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// sessionResponse describes the caller's session (or, for a digest or
// bearer caller, just who they are).
type sessionResponse struct {
	Username  string     `json:"username"`
	Role      string     `json:"role"`
	Scheme    string     `json:"scheme"`
	CSRFToken string     `json:"csrf_token,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

func (s *Server) mountSession(r prefixed) {
	r.HandleFunc("/session", s.signInSession).Methods(http.MethodPost)
	r.HandleFunc("/session", s.getSession).Methods(http.MethodGet)
	r.HandleFunc("/session", s.signOutSession).Methods(http.MethodDelete)
}

// signInSession answers POST /api/v2/session: a user name and password
// (the same credentials as digest) start a browser session, set as an
// HttpOnly, SameSite=Strict cookie. Guesses are throttled like digest ones.
func (s *Server) signInSession(w http.ResponseWriter, r *http.Request) {
	var req signInRequest
	if err := decodeStrict(r, &req); err != nil {
		writeError(w, r, "session", err)
		return
	}
	switch {
	case strings.TrimSpace(req.Username) == "":
		writeError(w, r, "session", model.Invalid("username", "is required"))
		return
	case req.Password == "":
		writeError(w, r, "session", model.Invalid("password", "is required"))
		return
	}
	subjects := auth.Subjects(r.RemoteAddr, req.Username)
	if err := s.auth.CheckThrottle(r.Context(), subjects); err != nil {
		s.throttled(w, r, err)
		return
	}
	caller, err := s.auth.CheckPassword(r.Context(), req.Username, req.Password)
	if err != nil {
		s.auth.SignInFailed(r.Context(), subjects, err)
		noteCaller(r.Context(), &auth.Caller{Username: req.Username, Scheme: "session"})
		if ae, ok := auth.AsError(err); ok {
			loggerFrom(r).Warn("sign-in failed", "remote", r.RemoteAddr, "user", req.Username, "reason", ae.Message)
			status := http.StatusUnauthorized
			if ae.Kind == auth.Forbidden {
				status = http.StatusForbidden
			}
			writeError(w, r, "session", statusError(status, ae.Message))
			return
		}
		writeError(w, r, "session", err)
		return
	}
	s.auth.SignInSucceeded(r.Context(), subjects)
	noteCaller(r.Context(), caller)
	sess, err := s.auth.CreateSession(r.Context(), caller, r.RemoteAddr, s.sessionTTL)
	if err != nil {
		writeError(w, r, "session", err)
		return
	}
	http.SetCookie(w, s.sessionCookie(r, sess.Secret, int(time.Until(sess.ExpiresAt)/time.Second)))
	exp := sess.ExpiresAt
	writeObject(w, r, http.StatusCreated, "session", sessionResponse{Username: caller.Username, Role: string(caller.Role),
		Scheme: "session", CSRFToken: sess.CSRF, ExpiresAt: &exp})
}

// getSession answers GET /api/v2/session: who the caller is, and for a
// session its CSRF token (what the web UI sends with writes).
func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	c := auth.CallerFrom(r.Context())
	resp := sessionResponse{Username: c.Username, Role: string(c.Role), Scheme: c.Scheme}
	if sess := sessionFrom(r); sess != nil {
		exp := sess.ExpiresAt
		resp.CSRFToken, resp.ExpiresAt = sess.CSRF, &exp
	}
	writeObject(w, r, http.StatusOK, "session", resp)
}

// signOutSession answers DELETE /api/v2/session: the session ends on every
// replica and the cookie is cleared.
func (s *Server) signOutSession(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil || sessionFrom(r) == nil {
		writeError(w, r, "session", model.BadRequest("this request is not signed in with a session cookie; there is nothing to sign out"))
		return
	}
	if err := s.auth.EndSession(r.Context(), ck.Value); err != nil {
		writeError(w, r, "session", err)
		return
	}
	http.SetCookie(w, s.sessionCookie(r, "", -1))
	writeEmpty(w, "session")
}

// sessionCookie is the cookie carrying secret for maxAge seconds (-1
// deletes it). Secure whenever the browser reached us over TLS.
func (s *Server) sessionCookie(r *http.Request, secret string, maxAge int) *http.Cookie {
	secure := r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") ||
		strings.HasPrefix(s.advertise, "https://")
	return &http.Cookie{Name: SessionCookie, Value: secret, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode}
}

type sessionKey struct{}

func sessionFrom(r *http.Request) *auth.Session {
	sess, _ := r.Context().Value(sessionKey{}).(*auth.Session)
	return sess
}

// errCSRF refuses a write made with the session cookie but without the
// session's CSRF token.
var errCSRF = errors.New("this write carries the session cookie but not its CSRF token: send the csrf_token from GET /api/v2/session in the " + CSRFHeader + " header")

// sessionSignIn authenticates the session cookie of a request without an
// Authorization header: the caller, the session, and for a write whether
// it carries the session's CSRF token.
func (s *Server) sessionSignIn(r *http.Request) (*auth.Caller, *auth.Session, error) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return nil, nil, nil
	}
	caller, sess, err := s.auth.SessionCaller(r.Context(), ck.Value)
	if err != nil {
		return nil, nil, err
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !sess.CheckCSRF(r.Header.Get(CSRFHeader)) {
		return caller, sess, &auth.Error{Kind: auth.Forbidden, User: caller.Username, Message: errCSRF.Error()}
	}
	return caller, sess, nil
}

// UIHeader marks the web UI's own requests (X-Crowbar-Client: ui).
const UIHeader = "X-Crowbar-Client"

// fromUI reports a request made by the web UI: it sends UIHeader, or the
// session cookie (an EventSource cannot set headers).
func fromUI(r *http.Request) bool {
	if r.Header.Get(UIHeader) == "ui" {
		return true
	}
	ck, err := r.Cookie(SessionCookie)
	return err == nil && ck.Value != ""
}

// isUIAsset reports a request for the web UI's page or files.
func isUIAsset(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && ui.Has(r.URL.Path)
}
