// Package client is a Go client of the crowbar API: one method per route,
// digest or bearer authentication, errors that carry the server's status
// and message, and a context on every call. The crowbar CLI is built on
// it; barclamp authors' tools and scripts can import it.
//
//	c, err := client.New("http://127.0.0.1:3000", client.Digest("crowbar", password))
//	node, err := c.Nodes().Create(ctx, client.Object{"name": "n1.example.com"})
//	_, err = c.Bind(ctx, "crowbar-managed-node", "n1.example.com")
//	err = c.CommitNode(ctx, "n1.example.com")
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/icholy/digest"
)

// Object is a JSON object as the API answers it.
type Object = map[string]any

// Error is an answer with a status of 400 or more.
type Error struct {
	Method, Path string
	Status       int
	Message      string // the server's message
	Field        string // the field at fault (422), when the server names one
}

func (e *Error) Error() string {
	if e.Field != "" && !strings.Contains(e.Message, e.Field) {
		return fmt.Sprintf("%s %s: %d: %s: %s", e.Method, e.Path, e.Status, e.Field, e.Message)
	}
	return fmt.Sprintf("%s %s: %d: %s", e.Method, e.Path, e.Status, e.Message)
}

// IsNotFound reports whether err is a 404 from the server.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// Client talks to one crowbar server.
type Client struct {
	base  *url.URL
	http  *http.Client
	token string
}

// Option configures a Client.
type Option func(*Client)

// Digest authenticates with a user's digest credentials (RFC 7616: the
// server's SHA-256 or MD5 challenge).
func Digest(username, password string) Option {
	return func(c *Client) {
		t := c.http.Transport
		if t == nil {
			t = http.DefaultTransport
		}
		c.http.Transport = &digest.Transport{Username: username, Password: password, Transport: t}
	}
}

// Bearer authenticates with a token from POST /api/v2/tokens.
func Bearer(token string) Option { return func(c *Client) { c.token = token } }

// Timeout bounds each request (default: none; use the context).
func Timeout(d time.Duration) Option { return func(c *Client) { c.http.Timeout = d } }

// New returns a client of the server at endpoint (http://host:port).
func New(endpoint string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(endpoint, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("endpoint %q is not an http:// or https:// URL", endpoint)
	}
	c := &Client{base: u, http: &http.Client{}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Request is one call: its method, path (from /, e.g. /api/v2/nodes),
// query, headers and JSON body.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   any // marshalled to JSON unless nil; []byte is sent as is
}

// Do sends req and decodes a JSON answer into out (unless nil). A status of
// 400 or more is an *Error.
func (c *Client) Do(ctx context.Context, req Request, out any) error {
	resp, err := c.send(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", req.Method, req.Path, err)
	}
	if resp.StatusCode >= 400 {
		return answerError(req, resp.StatusCode, body)
	}
	if out == nil || len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = body
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not the JSON expected: %w", req.Method, req.Path, err)
	}
	return nil
}

func answerError(req Request, status int, body []byte) error {
	e := &Error{Method: req.Method, Path: req.Path, Status: status}
	var msg struct {
		Message string `json:"message"`
		Field   string `json:"field"`
	}
	if json.Unmarshal(body, &msg) == nil && msg.Message != "" {
		e.Message, e.Field = msg.Message, msg.Field
	} else {
		e.Message = strings.TrimSpace(string(body))
		if e.Message == "" {
			e.Message = http.StatusText(status)
		}
	}
	return e
}

// send makes the HTTP request; the caller closes the body.
func (c *Client) send(ctx context.Context, req Request) (*http.Response, error) {
	u := *c.base
	u.Path = c.base.Path + req.Path
	if p, q, ok := strings.Cut(req.Path, "?"); ok {
		u.Path, u.RawQuery = c.base.Path+p, q
	}
	if len(req.Query) > 0 {
		u.RawQuery = req.Query.Encode()
	}
	var rd io.Reader
	if req.Body != nil {
		b, ok := req.Body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(req.Body); err != nil {
				return nil, fmt.Errorf("%s %s: encoding the body: %w", req.Method, req.Path, err)
			}
		}
		rd = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Accept", "application/json")
	if req.Body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range req.Header {
		hr.Header[k] = vs
	}
	if c.token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.Path, err)
	}
	return resp, nil
}

// ListOptions page and trim a list.
type ListOptions struct {
	Limit, Offset int
	Attributes    []string   // sent as x-return-attributes
	Filters       url.Values // e.g. deployment=test1
}

func (o *ListOptions) apply(req *Request) {
	if o == nil {
		return
	}
	req.Query = url.Values{}
	for k, vs := range o.Filters {
		req.Query[k] = vs
	}
	if o.Limit > 0 {
		req.Query.Set("limit", fmt.Sprint(o.Limit))
	}
	if o.Offset > 0 {
		req.Query.Set("offset", fmt.Sprint(o.Offset))
	}
	if len(o.Attributes) > 0 {
		b, _ := json.Marshal(o.Attributes)
		req.Header = http.Header{"X-Return-Attributes": {string(b)}}
	}
}

// Resource is one collection under /api/v2 with the generic pattern.
type Resource struct {
	c    *Client
	path string
}

// Path is the collection's URL path.
func (r Resource) Path() string { return "/api/v2/" + r.path }

func (r Resource) item(key string) string { return r.Path() + "/" + url.PathEscape(key) }

// List answers GET /api/v2/<collection>.
func (r Resource) List(ctx context.Context, opts *ListOptions) ([]Object, error) {
	req := Request{Method: "GET", Path: r.Path()}
	opts.apply(&req)
	var out []Object
	return out, r.c.Do(ctx, req, &out)
}

// Show answers GET /api/v2/<collection>/<name or id>.
func (r Resource) Show(ctx context.Context, key string) (Object, error) {
	var out Object
	return out, r.c.Do(ctx, Request{Method: "GET", Path: r.item(key)}, &out)
}

// Create answers POST /api/v2/<collection>.
func (r Resource) Create(ctx context.Context, body Object) (Object, error) {
	var out Object
	return out, r.c.Do(ctx, Request{Method: "POST", Path: r.Path(), Body: body}, &out)
}

// Update answers PUT /api/v2/<collection>/<key>: the fields given change.
func (r Resource) Update(ctx context.Context, key string, body Object) (Object, error) {
	var out Object
	return out, r.c.Do(ctx, Request{Method: "PUT", Path: r.item(key), Body: body}, &out)
}

// Destroy answers DELETE /api/v2/<collection>/<key>.
func (r Resource) Destroy(ctx context.Context, key string) error {
	return r.c.Do(ctx, Request{Method: "DELETE", Path: r.item(key)}, nil)
}

// Collections the API serves with the generic pattern.
func (c *Client) Nodes() Resource           { return Resource{c, "nodes"} }
func (c *Client) Deployments() Resource     { return Resource{c, "deployments"} }
func (c *Client) DeploymentRoles() Resource { return Resource{c, "deployment_roles"} }
func (c *Client) Roles() Resource           { return Resource{c, "roles"} }
func (c *Client) Attribs() Resource         { return Resource{c, "attribs"} }
func (c *Client) Barclamps() Resource       { return Resource{c, "barclamps"} }
func (c *Client) NodeRoles() Resource       { return Resource{c, "node_roles"} }
func (c *Client) Groups() Resource          { return Resource{c, "groups"} }
func (c *Client) Jigs() Resource            { return Resource{c, "jigs"} }
func (c *Client) Users() Resource           { return Resource{c, "users"} }
func (c *Client) JoinTokens() Resource      { return Resource{c, "join_tokens"} }

// Resource returns the collection called name (nodes, deployments, …).
func (c *Client) Resource(name string) Resource { return Resource{c, name} }
