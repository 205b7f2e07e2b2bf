// Package apitest runs crowbar's HTTP API on a loopback port over a real
// store, for tests and benchmarks.
package apitest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/api"
	"github.com/crowbar-go/crowbar/core/store"
)

// Server is a running API server.
type Server struct {
	*httptest.Server
	Store *store.Store
	t     testing.TB
}

// New starts the API over st on a loopback port; it stops with the test.
func New(t testing.TB, st *store.Store, opts ...func(*api.Config)) *Server {
	t.Helper()
	cfg := api.Config{Store: st}
	for _, o := range opts {
		o(&cfg)
	}
	srv := httptest.NewServer(api.NewRouter(cfg))
	t.Cleanup(srv.Close)
	return &Server{Server: srv, Store: st, t: t}
}

// Response is what a request got back.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends a request with an optional body and header pairs ("Name",
// "value", …). A body without a Content-Type header is sent as JSON.
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
	for i := 0; i+1 < len(header); i += 2 {
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
