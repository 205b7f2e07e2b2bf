package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/gorilla/mux"
	"gorm.io/gorm"
)

// DefaultMaxModule is the largest barclamp module accepted by POST /api/v2/barclamps.
const DefaultMaxModule = 64 << 20

// installBarclamp answers POST /api/v2/barclamps with a module body
// (Content-Type: application/wasm): compiled and validated before anything
// is stored, then registered and served.
func (s *Server) installBarclamp(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/wasm" {
		writeError(w, r, "barclamp", statusError(http.StatusUnsupportedMediaType,
			"send the module as Content-Type: application/wasm (curl --data-binary @x.wasm -H 'Content-Type: application/wasm')"))
		return
	}
	wasm, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, r, "barclamp", err)
		return
	}
	bc, err := s.barclamps.Install(r.Context(), wasm, barclamp.SourceInstalled)
	if err != nil {
		writeError(w, r, "barclamp", err)
		return
	}
	writeObject(w, r, http.StatusCreated, "barclamp", bc)
}

// removeBarclamp answers DELETE /api/v2/barclamps/:id.
func (s *Server) removeBarclamp(w http.ResponseWriter, r *http.Request) {
	if err := s.barclamps.Remove(r.Context(), mux.Vars(r)["id"]); err != nil {
		writeError(w, r, "barclamp", err)
		return
	}
	writeEmpty(w, "barclamp")
}

func (s *Server) deploymentID(r *http.Request) (int64, error) {
	return store.ResolveID(r.Context(), s.store.DB, "deployment", "deployments", "name", mux.Vars(r)["id"])
}

// deploymentBarclamps answers GET /api/v2/deployments/:id/barclamps.
func (s *Server) deploymentBarclamps(w http.ResponseWriter, r *http.Request) {
	id, err := s.deploymentID(r)
	if err != nil {
		writeError(w, r, "barclamp", err)
		return
	}
	list, err := barclamp.Enabled(r.Context(), s.store.DB, id)
	if err != nil {
		writeError(w, r, "barclamp", err)
		return
	}
	for i := range list {
		list[i].Status = s.barclamps.Status(list[i].Name)
	}
	writeList(w, r, "barclamp", list)
}

// enableBarclamp answers PUT /api/v2/deployments/:id/barclamps/:name.
func (s *Server) enableBarclamp(w http.ResponseWriter, r *http.Request) {
	id, err := s.deploymentID(r)
	if err != nil {
		writeError(w, r, "barclamp", err)
		return
	}
	bc, err := barclamp.Enable(r.Context(), s.store.DB, id, mux.Vars(r)["name"])
	if err != nil {
		writeError(w, r, "barclamp", err)
		return
	}
	bc.Status = s.barclamps.Status(bc.Name)
	writeObject(w, r, http.StatusOK, "barclamp", bc)
}

// disableBarclamp answers DELETE /api/v2/deployments/:id/barclamps/:name.
func (s *Server) disableBarclamp(w http.ResponseWriter, r *http.Request) {
	id, err := s.deploymentID(r)
	if err != nil {
		writeError(w, r, "barclamp", err)
		return
	}
	if err := barclamp.Disable(r.Context(), s.store.DB, id, mux.Vars(r)["name"]); err != nil {
		writeError(w, r, "barclamp", err)
		return
	}
	writeEmpty(w, "barclamp")
}

// bridge routes /<barclamp>/v2/... to the barclamp's routes, matched by a
// router built from its manifest (rebuilt when a new version loads).
type bridge struct {
	mu      sync.Mutex
	routers map[string]*bridgeRouter // barclamp name → router for its digest
}

type bridgeRouter struct {
	digest string
	router *mux.Router
}

type routeKey struct{}

type matched struct {
	spec   barclamp.RouteSpec
	params map[string]string
}

func (b *bridge) routerFor(name string, a *barclamp.Active) *mux.Router {
	b.mu.Lock()
	defer b.mu.Unlock()
	if br, ok := b.routers[name]; ok && br.digest == a.Digest {
		return br.router
	}
	r := mux.NewRouter()
	for _, spec := range a.Module.Manifest().Routes {
		spec := spec
		r.NewRoute().Path("/" + name + "/v2" + spec.Path).Methods(spec.Method).HandlerFunc(func(http.ResponseWriter, *http.Request) {}).
			Name(spec.Method + " " + spec.Path)
	}
	b.routers[name] = &bridgeRouter{digest: a.Digest, router: r}
	return r
}

// match finds the barclamp route for r; status is 404 or 405 when none.
func (s *Server) matchBarclamp(r *http.Request) (*barclamp.Active, string, *matched, int) {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 3)
	if len(parts) < 2 || parts[1] != "v2" {
		return nil, "", nil, http.StatusNotFound
	}
	a, ok := s.barclamps.Get(parts[0])
	if !ok {
		return nil, parts[0], nil, http.StatusNotFound
	}
	var m mux.RouteMatch
	if !s.bridge.routerFor(parts[0], a).Match(r, &m) || m.Route == nil {
		if errors.Is(m.MatchErr, mux.ErrMethodMismatch) {
			return a, parts[0], nil, http.StatusMethodNotAllowed
		}
		return a, parts[0], nil, http.StatusNotFound
	}
	method, path, _ := strings.Cut(m.Route.GetName(), " ")
	for _, spec := range a.Module.Manifest().Routes {
		if spec.Method == method && spec.Path == path {
			return a, parts[0], &matched{spec: spec, params: m.Vars}, 0
		}
	}
	return a, parts[0], nil, http.StatusNotFound
}

// isOpenBarclampRoute reports whether r targets a route its barclamp
// declared open (the barclamp authenticates such callers itself).
func (s *Server) isOpenBarclampRoute(r *http.Request) bool {
	if s.barclamps == nil || strings.HasPrefix(r.URL.Path, "/api/") {
		return false
	}
	_, _, m, _ := s.matchBarclamp(r)
	return m != nil && m.spec.Open
}

// serveBarclamp answers /<barclamp>/v2/... through the barclamp's handler.
func (s *Server) serveBarclamp(w http.ResponseWriter, r *http.Request) {
	a, name, m, status := s.matchBarclamp(r)
	if m == nil {
		msg := "no route for " + r.Method + " " + r.URL.Path
		if a == nil {
			msg = fmt.Sprintf("barclamp '%s' is not loaded", name)
		}
		writeError(w, r, "", statusError(status, msg))
		return
	}
	setRoute(r, "/"+name+"/v2"+m.spec.Path)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, r, "", err)
		return
	}
	req := &barclamp.HTTPRequest{Method: r.Method, Path: r.URL.Path, Host: r.Host, Advertise: s.advertise, Route: m.spec.Method + " " + m.spec.Path,
		Params: m.params, Query: r.URL.Query(), Headers: r.Header.Clone(), Body: body}
	delete(req.Headers, "Authorization")
	if c := auth.CallerFrom(r.Context()); c != nil {
		req.Caller = &barclamp.Caller{Username: c.Username, Role: string(c.Role), Scheme: c.Scheme}
	}
	resp, err := a.Module.HTTP(r.Context(), req)
	if err != nil {
		var ce *barclamp.CallError
		if errors.As(err, &ce) {
			loggerFrom(r).Error("barclamp call failed", "barclamp", ce.Barclamp, "call", ce.Call, "reason", ce.Reason)
			writeError(w, r, "", statusError(http.StatusBadGateway, ce.Error()))
			return
		}
		writeError(w, r, "", err)
		return
	}
	for k, vs := range resp.Headers {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.Status)
	w.Write(resp.Body) //nolint:errcheck
}

// Call makes an in-process API request under a barclamp's identity (an
// operator): it goes through the same router, limits and resource layer as
// any client. It implements plugins.APICaller.
func (s *Server) Call(ctx context.Context, name, method, path string, body []byte) (int, []byte, error) {
	if !strings.HasPrefix(path, "/") {
		return 0, nil, fmt.Errorf("api path %q must start with /", path)
	}
	req := httptest.NewRequest(method, path, strings.NewReader(string(body)))
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	caller := &auth.Caller{Username: "barclamp:" + name, Role: auth.RoleOperator, Scheme: "internal"}
	req = req.WithContext(auth.WithCaller(ctx, caller))
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes(), nil
}

// inheritBarclamps gives a new deployment its parent's enabled barclamps.
func inheritBarclamps(tx *gorm.DB, d *model.Deployment, creating bool) error {
	if !creating || d.ParentID == nil {
		return nil
	}
	return barclamp.Inherit(tx, *d.ParentID, d.ID)
}
