// Package apitest runs crowbar's HTTP API on a loopback port over a real
// store, with real authentication, for tests and benchmarks.
package apitest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/hashicorp/go-hclog"
)

// Setup is what options may change before the server starts.
type Setup struct {
	API  api.Config
	Auth auth.Config
	// Host runs barclamps; nil serves none (installs then fail).
	Host barclamp.Host
}

// Server is a running API server. Requests made with Do carry the admin's
// bearer token unless they set their own Authorization header.
type Server struct {
	*httptest.Server
	Store     *store.Store
	Auth      *auth.Service
	Barclamps *barclamp.Registry
	API       *api.Server
	Token     string // bearer token of the "admin" user
	t         testing.TB
}

// AdminPassword is the password of the "admin" user every test server has.
const AdminPassword = "admin-password"

// New starts the API over st on a loopback port; it stops with the test.
func New(t testing.TB, st *store.Store, opts ...func(*Setup)) *Server {
	t.Helper()
	setup := &Setup{API: api.Config{Store: st}}
	for _, o := range opts {
		o(setup)
	}
	if setup.API.Logger == nil {
		// Warnings and errors (a 500's cause) are printed if the test fails.
		buf := &syncBuffer{}
		setup.API.Logger = hclog.New(&hclog.LoggerOptions{Name: "server", Level: hclog.Warn, Output: buf})
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("server log:\n%s", buf.String())
			}
		})
	}
	svc, err := auth.New(context.Background(), st.DB, setup.Auth, nil)
	if err != nil {
		t.Fatalf("auth: %v", err)
	}
	setup.API.Auth = svc
	setup.API.Barclamps = barclamp.NewRegistry(st.DB, setup.Host, nil)
	apiSrv := api.New(setup.API)
	if hs, ok := setup.Host.(interface{ SetAPI(plugins.APICaller) }); ok {
		hs.SetAPI(apiSrv)
	}
	if hs, ok := setup.Host.(interface{ SetNodes(plugins.NodeCommander) }); ok {
		hs.SetNodes(apiSrv)
	}
	srv := httptest.NewServer(apiSrv.Handler())
	t.Cleanup(srv.Close)
	ctx, stop := context.WithCancel(context.Background())
	annealing := make(chan struct{})
	go func() { defer close(annealing); apiSrv.Annealer().Run(ctx) }()
	watching := make(chan struct{})
	go func() { defer close(watching); apiSrv.Nodes().Watch(ctx) }()
	t.Cleanup(func() { stop(); <-annealing; <-watching; apiSrv.Transport().Close() })
	s := &Server{Server: srv, Store: st, Auth: svc, Barclamps: setup.API.Barclamps, API: apiSrv, t: t}
	s.AddUser("admin", AdminPassword, auth.RoleAdmin, true)
	tok, _, err := svc.MintToken(&auth.Caller{Username: "admin", Role: auth.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.Token = tok
	return s
}

// AddUser stores a user with digest credentials for password.
func (s *Server) AddUser(name, password string, role auth.Role, apiAccess bool) *model.User {
	s.t.Helper()
	u := &model.User{Username: name, Role: string(role), Admin: role == auth.RoleAdmin, APIAccess: apiAccess}
	s.Auth.SetPassword(u, password)
	if err := s.Store.DB.Create(u).Error; err != nil {
		s.t.Fatalf("add user %s: %v", name, err)
	}
	return u
}

// Response is what a request got back.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends a request with an optional body and header pairs ("Name",
// "value", …). A body without a Content-Type header is sent as JSON. An
// "Authorization" pair replaces the admin token; its value "" sends none.
func (s *Server) Do(method, path, body string, header ...string) *Response {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Must sends a request and fails the test unless it answers want.
func (s *Server) Must(want int, method, path, body string, header ...string) *Response {
	s.t.Helper()
	r := s.Do(method, path, body, header...)
	if r.Status != want {
		s.t.Fatalf("%s %s %s: status %d, want %d; body %s", method, path, body, r.Status, want, r.Body)
	}
	return r
}

// Object decodes the body as a JSON object.
func (r *Response) Object(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// List decodes the body as a JSON array of objects.
func (r *Response) List(t testing.TB) []map[string]any {
	t.Helper()
	var l []map[string]any
	if err := json.Unmarshal(r.Body, &l); err != nil {
		t.Fatalf("body is not a JSON array: %v: %s", err, r.Body)
	}
	return l
}
