// Package api is crowbar's HTTP layer: the gorilla/mux router, middleware,
// the generic resource handler and the resources of the OpenCrowbar v2 API.
package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/api/ui"
	"github.com/crowbar-go/crowbar/core/anneal"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/nodes"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"
)

// DefaultMaxBody is the default request body limit.
const DefaultMaxBody = 1 << 20

// Config assembles the router.
type Config struct {
	Store *store.Store
	Auth  *auth.Service // required: every route but /health needs credentials
	// Barclamps serves /:barclamp/v2 and barclamp installs; required.
	Barclamps *barclamp.Registry
	Logger    hclog.Logger
	MaxBody   int64 // request body limit in bytes (default DefaultMaxBody)
	// Anneal tunes the annealer (its jigs, bus and logger are filled in);
	// run it with Server.Annealer().Run.
	Anneal anneal.Config
	// Nodes tunes agents joining and heartbeating (its callbacks and
	// logger are filled in); run Server.Nodes().Watch to mark silent
	// agents' nodes not alive.
	Nodes nodes.Config
	// Advertise is the URL machines reach the server at, handed to
	// barclamps with each request (see barclamp.HTTPRequest.Advertise).
	Advertise string
	// SessionTTL is how long a web UI sign-in lasts (default
	// auth.DefaultSessionTTL).
	SessionTTL time.Duration
}

// Server holds what the handlers share.
type Server struct {
	store      *store.Store
	auth       *auth.Service
	barclamps  *barclamp.Registry
	bridge     *bridge
	handler    http.Handler // the whole stack, for in-process calls
	log        hclog.Logger
	res        resources
	annealer   *anneal.Annealer
	bus        *anneal.Bus
	hooks      *anneal.Hooks
	nodes      *nodes.Service
	transport  *nodes.Transport
	auditLog   *auditWriter
	advertise  string
	sessionTTL time.Duration
}

// Nodes is the server's node-agent service.
func (s *Server) Nodes() *nodes.Service { return s.nodes }

// Transport sends core0 commands to nodes' agents.
func (s *Server) Transport() *nodes.Transport { return s.transport }

// Hooks is the server's notification hook dispatcher (the annealer runs
// it); tests wait on it.
func (s *Server) Hooks() *anneal.Hooks { return s.hooks }

// Annealer is the server's annealer; the caller runs it.
func (s *Server) Annealer() *anneal.Annealer { return s.annealer }

// NewRouter builds the HTTP handler serving /health, /api/v2 and the
// barclamps' /:barclamp/v2 routes.
func NewRouter(cfg Config) http.Handler {
	h, _, _ := build(cfg)
	return h
}

// New builds the server; its Handler serves HTTP and its Call serves
// barclamps' in-process API requests.
func New(cfg Config) *Server {
	_, _, s := build(cfg)
	return s
}

// Handler is the whole HTTP stack.
func (s *Server) Handler() http.Handler { return s.handler }

// newRouter returns the wrapped handler and the bare router (which tests
// walk to check every route).
func newRouter(cfg Config) (http.Handler, *mux.Router) {
	h, r, _ := build(cfg)
	return h, r
}

func build(cfg Config) (http.Handler, *mux.Router, *Server) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Auth == nil {
		panic("api: Config.Auth is required")
	}
	if cfg.Barclamps == nil {
		panic("api: Config.Barclamps is required")
	}
	s := &Server{store: cfg.Store, auth: cfg.Auth, barclamps: cfg.Barclamps, log: cfg.Logger, advertise: strings.TrimSuffix(cfg.Advertise, "/"), sessionTTL: cfg.SessionTTL,
		bridge: &bridge{routers: map[string]*bridgeRouter{}}, auditLog: &auditWriter{db: cfg.Store.DB}}
	s.bus = anneal.NewBus(cfg.Store.DB, cfg.Store.Dialect == store.Postgres, cfg.Logger)
	ac := cfg.Anneal
	ac.Bus, ac.Logger, ac.Postgres = s.bus, cfg.Logger, cfg.Store.Dialect == store.Postgres
	nc := cfg.Nodes
	nc.Logger = cfg.Logger.Named("nodes")
	nc.NodeCreated = func(n *model.Node) { s.bindDiscovery(n); s.hooks.Node("on_node_create", n) }
	nc.NodeChanged = func(*model.Node) { s.annealer.Kick() }
	s.nodes = nodes.New(cfg.Store, cfg.Auth, nc)
	s.transport = nodes.NewTransport(s.nodes)
	ac.Jigs = map[string]anneal.Jig{"noop": anneal.Noop, "wasm": anneal.WasmJig(cfg.Barclamps), "script": nodes.ScriptJig(s.transport)}
	s.hooks = anneal.NewHooks(cfg.Store.DB, cfg.Barclamps, cfg.Logger)
	ac.Hooks = s.hooks
	s.annealer = anneal.New(cfg.Store.DB, ac)
	s.res = s.newResources(cfg.Store)

	r := mux.NewRouter()
	r.Use(routeTemplates)
	jsonErrors(r)
	r.HandleFunc("/health", s.health).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/ready", s.ready).Methods(http.MethodGet, http.MethodHead)
	// The web UI's page and files (no data in them: open, like /health).
	uiFiles := ui.Handler()
	for _, p := range ui.Paths() {
		r.Handle(p, uiFiles).Methods(http.MethodGet, http.MethodHead)
	}
	// Routes hang off the root router, not a subrouter: mux answers a
	// method mismatch inside a subrouter with 404 instead of 405.
	s.mountV2(prefixed{r, "/api/v2"})
	// Everything else under /<barclamp>/v2 goes to barclamps.
	// (through the not-found handler: a catch-all route would make mux
	// answer 404 instead of 405 for a wrong method on /api/v2 routes).
	notFound := r.NotFoundHandler
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		parts := strings.SplitN(strings.TrimPrefix(req.URL.Path, "/"), "/", 3)
		if len(parts) == 3 && parts[0] != "api" && parts[1] == "v2" {
			s.serveBarclamp(w, req)
			return
		}
		notFound.ServeHTTP(w, req)
	})
	limit := func(req *http.Request) int64 {
		if req.Method == http.MethodPost && req.URL.Path == "/api/v2/barclamps" {
			return DefaultMaxModule
		}
		return cfg.MaxBody
	}
	// Wrapped outside the router so unmatched routes are logged and limited too.
	s.handler = accessLog(cfg.Logger)(recoverer(s.audit(s.authenticate(limitBody(limit)(r)))))
	return s.handler, r, s
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

// ready answers 200 once the server can serve everything: the database
// answers (its migrations ran before the server listened) and every
// embedded barclamp has loaded (or failed to); 503 with what is missing
// otherwise. It needs no credentials. Load balancers should route by it;
// /health only says the process and its database are alive.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	body := map[string]any{"status": "ready", "database": "ok", "barclamps": map[string]any{"loading": []string{}}}
	status := http.StatusOK
	if err := s.store.Ping(ctx); err != nil {
		status, body["status"], body["database"] = http.StatusServiceUnavailable, "not ready", "unreachable: "+err.Error()
	}
	if pending := s.barclamps.Pending(); len(pending) > 0 {
		status, body["status"] = http.StatusServiceUnavailable, "not ready"
		body["barclamps"] = map[string]any{"loading": pending}
	}
	if status != http.StatusOK {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, ContentType("ready", "obj"), body)
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
