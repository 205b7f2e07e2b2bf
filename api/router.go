// Package api is crowbar's HTTP layer: the gorilla/mux router, middleware,
// the generic resource handler and the resources of the OpenCrowbar v2 API.
package api

import (
	"context"
	"net/http"
	"time"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"
)

// DefaultMaxBody is the default request body limit.
const DefaultMaxBody = 1 << 20

// Config assembles the router.
type Config struct {
	Store   *store.Store
	Auth    *auth.Service // required: every route but /health needs credentials
	Logger  hclog.Logger
	MaxBody int64 // request body limit in bytes (default DefaultMaxBody)
}

// Server holds what the handlers share.
type Server struct {
	store *store.Store
	auth  *auth.Service
	log   hclog.Logger
	res   resources
}

// NewRouter builds the HTTP handler serving /health and /api/v2.
func NewRouter(cfg Config) http.Handler {
	h, _ := newRouter(cfg)
	return h
}

// newRouter returns the wrapped handler and the bare router (which tests
// walk to check every route).
func newRouter(cfg Config) (http.Handler, *mux.Router) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Auth == nil {
		panic("api: Config.Auth is required")
	}
	s := &Server{store: cfg.Store, auth: cfg.Auth, log: cfg.Logger}
	s.res = s.newResources(cfg.Store)

	r := mux.NewRouter()
	jsonErrors(r)
	r.HandleFunc("/health", s.health).Methods(http.MethodGet, http.MethodHead)
	// Routes hang off the root router, not a subrouter: mux answers a
	// method mismatch inside a subrouter with 404 instead of 405.
	s.mountV2(prefixed{r, "/api/v2"})
	// Wrapped outside the router so unmatched routes are logged and limited too.
	return accessLog(cfg.Logger)(recoverer(s.authenticate(limitBody(cfg.MaxBody)(r)))), r
}

// health answers 200 when the database answers within two seconds, 503
// otherwise; it needs no credentials.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	body := map[string]any{"status": "ok", "database": map[string]any{"dialect": s.store.Dialect, "status": "ok"}}
	status := http.StatusOK
	if err := s.store.Ping(ctx); err != nil {
		status = http.StatusServiceUnavailable
		body["status"] = "unavailable"
		body["database"] = map[string]any{"dialect": s.store.Dialect, "status": "unreachable", "error": err.Error()}
	}
	writeJSON(w, status, ContentType("health", "obj"), body)
}

// jsonErrors makes r answer unknown routes and methods with JSON errors.
func jsonErrors(r *mux.Router) {
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, "", statusError(http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, "", statusError(http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed on "+r.URL.Path))
	})
}

// prefixed registers routes under a path prefix on one router.
type prefixed struct {
	r      *mux.Router
	prefix string
}

// HandleFunc registers path (relative to the prefix).
func (p prefixed) HandleFunc(path string, f http.HandlerFunc) *mux.Route {
	return p.r.HandleFunc(p.prefix+path, f)
}
