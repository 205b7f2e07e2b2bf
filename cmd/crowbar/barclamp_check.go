//go:build !agentonly

package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/crowbar-go/crowbar/api"
	"github.com/crowbar-go/crowbar/barclamps"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// checksFile is where a barclamp keeps what `barclamp test` checks.
const checksFile = "barclamp_test.yaml"

// barclampChecks is barclamp_test.yaml.
type barclampChecks struct {
	Requests []requestCheck `yaml:"requests"`
	Roles    []roleCheck    `yaml:"roles"`
}

// requestCheck sends one request to the server and checks its answer.
type requestCheck struct {
	Name     string         `yaml:"name"`
	Method   string         `yaml:"method"`
	Path     string         `yaml:"path"`
	Body     any            `yaml:"body"` // sent as JSON
	Status   int            `yaml:"status"`
	Contains string         `yaml:"contains"` // in the answer's body
	JSON     map[string]any `yaml:"json"`     // a subset of the answer's JSON object
}

// roleCheck binds a role to a node, commits it and waits for the node-role
// to settle.
type roleCheck struct {
	Role           string         `yaml:"role"`
	Node           string         `yaml:"node"`    // default test-node.example.com, made if missing
	Attribs        map[string]any `yaml:"attribs"` // set on the node before the commit
	State          string         `yaml:"state"`   // active (default) or error
	Wall           map[string]any `yaml:"wall"`    // a subset of the wall data
	RunlogContains string         `yaml:"runlog_contains"`
	Timeout        string         `yaml:"timeout"` // default 60s
}

func newBarclampTestCmd() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test DIR",
		Short: "Build the barclamp in DIR and run its " + checksFile + " against it in a real host",
		Long: `Build the barclamp in DIR, then start a throw-away crowbar in this process
(SQLite in a temporary directory, the first-party barclamps loaded, the
barclamp installed and enabled in the system deployment) and run the checks
in DIR/` + checksFile + `: requests to its routes (status, body, JSON) and roles
bound to a node and converged by the annealer (state, wall data, run log).
Prints one line per check; exits 1 if any fails, printing the server's log
(the barclamp's own log lines among it).`,
		Example: `  crowbar barclamp test .
  crowbar barclamp test ./hello -v`,
		Args: exactArgs(1, "DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBarclampChecks(cmd.Context(), args[0], cmd.OutOrStdout(), verbose)
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the server's log even when every check passes")
	return cmd
}

func runBarclampChecks(ctx context.Context, dir string, out io.Writer, verbose bool) error {
	raw, err := os.ReadFile(filepath.Join(dir, checksFile))
	if errors.Is(err, os.ErrNotExist) {
		return usageError{fmt.Errorf("%s has no %s: write one (crowbar barclamp new writes an example)", dir, checksFile)}
	} else if err != nil {
		return err
	}
	var checks barclampChecks
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&checks); err != nil && !errors.Is(err, io.EOF) {
		return usageError{fmt.Errorf("%s: %w", filepath.Join(dir, checksFile), err)}
	}
	tmp, err := os.MkdirTemp("", "crowbar-barclamp-test-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	m, _, err := buildBarclamp(ctx, dir, filepath.Join(tmp, "barclamp.wasm"))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "built barclamp %s %s in %s\n", m.Name, m.Version, time.Since(start).Round(time.Millisecond))
	wasm, err := os.ReadFile(filepath.Join(tmp, "barclamp.wasm"))
	if err != nil {
		return err
	}

	var logBuf lockedBuffer
	log := hclog.New(&hclog.LoggerOptions{Name: "crowbar", Level: hclog.Info, Output: &logBuf})
	srv, err := startCheckServer(ctx, tmp, log, &logBuf)
	if err != nil {
		return err
	}
	defer srv.close()
	if _, err := srv.registry.Install(ctx, wasm, barclamp.SourceInstalled); err != nil {
		return fmt.Errorf("install %s: %w", m.Name, err)
	}
	if st, body := srv.do("PUT", "/api/v2/deployments/system/barclamps/"+m.Name, nil); st != http.StatusOK {
		return fmt.Errorf("enable %s in the system deployment: %d %s", m.Name, st, body)
	}
	fmt.Fprintf(out, "barclamp %s running in a test server (ready in %s)\n", m.Name, time.Since(start).Round(time.Millisecond))

	failed := 0
	report := func(what string, err error, took time.Duration) {
		if err != nil {
			failed++
			fmt.Fprintf(out, "FAIL %s: %v\n", what, err)
			return
		}
		fmt.Fprintf(out, "ok   %s (%s)\n", what, took.Round(time.Millisecond))
	}
	for i, c := range checks.Requests {
		t0 := time.Now()
		what := fmt.Sprintf("request %s", cmp.Or(c.Name, fmt.Sprintf("%d: %s %s", i+1, c.Method, c.Path)))
		report(what, srv.checkRequest(c), time.Since(t0))
	}
	for _, c := range checks.Roles {
		t0 := time.Now()
		node := cmp.Or(c.Node, "test-node.example.com")
		report(fmt.Sprintf("role %s on %s", c.Role, node), srv.checkRole(ctx, c, node), time.Since(t0))
	}
	fmt.Fprintf(out, "%d of %d checks passed in %s\n", len(checks.Requests)+len(checks.Roles)-failed,
		len(checks.Requests)+len(checks.Roles), time.Since(start).Round(time.Millisecond))
	if failed > 0 || verbose {
		fmt.Fprintf(out, "--- server log\n%s", logBuf.String())
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d checks failed", failed, len(checks.Requests)+len(checks.Roles))
	}
	return nil
}

// checkServer is the throw-away server `barclamp test` runs checks on.
type checkServer struct {
	registry *barclamp.Registry
	handler  http.Handler
	token    string
	close    func()
}

func startCheckServer(ctx context.Context, dir string, log hclog.Logger, output io.Writer) (*checkServer, error) {
	// The store's migrations are no news here: its log starts at WARN.
	quiet := hclog.New(&hclog.LoggerOptions{Name: "crowbar.store", Level: hclog.Warn, Output: output})
	st, err := store.Open(ctx, filepath.Join(dir, "crowbar.db"), store.Options{Logger: quiet})
	if err != nil {
		return nil, err
	}
	svc, err := auth.New(ctx, st.DB, auth.Config{}, log)
	if err != nil {
		st.Close() //nolint:errcheck
		return nil, err
	}
	host, err := plugins.New(ctx, plugins.Config{CacheDir: defaultWasmCache(dir), PoolSize: 2, Logger: log, KV: barclamp.NewKV(st.DB),
		Trusted: barclamps.Trusted()})
	if err != nil {
		st.Close() //nolint:errcheck
		return nil, err
	}
	registry := barclamp.NewRegistry(st.DB, host, log)
	apiSrv := api.New(api.Config{Store: st, Auth: svc, Barclamps: registry, Logger: log})
	host.SetAPI(apiSrv)
	host.SetNodes(apiSrv)
	actx, stop := context.WithCancel(context.Background())
	annealing := make(chan struct{})
	s := &checkServer{registry: registry, handler: apiSrv.Handler()}
	s.close = func() {
		stop()
		<-annealing
		apiSrv.Transport().Close()
		registry.Close(context.Background())
		host.Close(context.Background()) //nolint:errcheck
		st.Close()                       //nolint:errcheck
	}
	embedded, err := barclamps.Embedded()
	if err == nil {
		err = registry.LoadAll(ctx, embedded)
	}
	go func() { defer close(annealing); apiSrv.Annealer().Run(actx) }()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("load the first-party barclamps: %w", err)
	}
	admin := &model.User{Username: "barclamp-test", Role: string(auth.RoleAdmin), Admin: true, APIAccess: true}
	svc.SetPassword(admin, "unused")
	if err := st.DB.Create(admin).Error; err != nil {
		s.close()
		return nil, err
	}
	if s.token, _, err = svc.MintToken(&auth.Caller{Username: admin.Username, Role: auth.RoleAdmin}, time.Hour); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// do sends a request as the test's admin, in process.
func (s *checkServer) do(method, path string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func (s *checkServer) checkRequest(c requestCheck) error {
	if c.Path == "" || !strings.HasPrefix(c.Path, "/") {
		return fmt.Errorf("path %q: want an absolute path such as /%s/v2/...", c.Path, "NAME")
	}
	status, body := s.do(cmp.Or(strings.ToUpper(c.Method), "GET"), c.Path, c.Body)
	want := c.Status
	if want == 0 {
		want = http.StatusOK
	}
	if status != want {
		return fmt.Errorf("status %d, want %d: %s", status, want, truncate(body))
	}
	if c.Contains != "" && !bytes.Contains(body, []byte(c.Contains)) {
		return fmt.Errorf("the body does not contain %q: %s", c.Contains, truncate(body))
	}
	if c.JSON != nil {
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			return fmt.Errorf("the body is not a JSON object: %s", truncate(body))
		}
		if err := subset("", c.JSON, got); err != nil {
			return err
		}
	}
	return nil
}

func (s *checkServer) checkRole(ctx context.Context, c roleCheck, node string) error {
	timeout := time.Minute
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			return fmt.Errorf("timeout %q: want a duration such as 30s", c.Timeout)
		}
		timeout = d
	}
	want := cmp.Or(c.State, "active")
	if want != "active" && want != "error" {
		return fmt.Errorf("state %q: want active or error", c.State)
	}
	if st, _ := s.do("GET", "/api/v2/nodes/"+node, nil); st == http.StatusNotFound {
		if st, body := s.do("POST", "/api/v2/nodes", map[string]any{"name": node, "alive": true}); st != http.StatusCreated {
			return fmt.Errorf("create node %s: %d %s", node, st, truncate(body))
		}
	}
	for k, v := range c.Attribs {
		if st, body := s.do("PUT", "/api/v2/nodes/"+node+"/attribs/"+k, map[string]any{"value": v}); st != http.StatusOK {
			return fmt.Errorf("set attrib %s on %s: %d %s", k, node, st, truncate(body))
		}
	}
	st, body := s.do("POST", "/api/v2/node_roles", map[string]any{"node": node, "role": c.Role})
	if st != http.StatusCreated {
		return fmt.Errorf("bind %s to %s: %d %s", c.Role, node, st, truncate(body))
	}
	var nr struct {
		ID int64 `json:"id"`
	}
	json.Unmarshal(body, &nr) //nolint:errcheck
	if st, body := s.do("PUT", "/api/v2/nodes/"+node+"/commit", nil); st != http.StatusOK {
		return fmt.Errorf("commit %s: %d %s", node, st, truncate(body))
	}
	deadline := time.Now().Add(timeout)
	for {
		_, body := s.do("GET", fmt.Sprintf("/api/v2/node_roles/%d", nr.ID), nil)
		var got struct {
			StateName string         `json:"state_name"`
			Wall      map[string]any `json:"wall"`
			Runlog    string         `json:"runlog"`
		}
		json.Unmarshal(body, &got) //nolint:errcheck
		if got.StateName == "active" || got.StateName == "error" {
			if got.StateName != want {
				return fmt.Errorf("state %s, want %s; run log: %s", got.StateName, want, got.Runlog)
			}
			if c.RunlogContains != "" && !strings.Contains(got.Runlog, c.RunlogContains) {
				return fmt.Errorf("the run log does not contain %q: %s", c.RunlogContains, got.Runlog)
			}
			if c.Wall != nil {
				if err := subset("wall", c.Wall, got.Wall); err != nil {
					return err
				}
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still %s after %s (is a parent role stuck? run with -v for the server log)", got.StateName, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// subset checks that every key of want is in got with an equal value
// (objects compared as subsets too).
func subset(path string, want, got map[string]any) error {
	for k, w := range want {
		p := strings.TrimPrefix(path+"."+k, ".")
		g, ok := got[k]
		if !ok {
			return fmt.Errorf("%s is missing (have %s)", p, truncateJSON(got))
		}
		if wm, ok := w.(map[string]any); ok {
			gm, ok := g.(map[string]any)
			if !ok {
				return fmt.Errorf("%s is %s, want an object", p, truncateJSON(g))
			}
			if err := subset(p, wm, gm); err != nil {
				return err
			}
			continue
		}
		// YAML and JSON disagree on number types: compare as JSON.
		wb, _ := json.Marshal(w)
		gb, _ := json.Marshal(g)
		var wv, gv any
		json.Unmarshal(wb, &wv) //nolint:errcheck
		json.Unmarshal(gb, &gv) //nolint:errcheck
		if !reflect.DeepEqual(wv, gv) {
			return fmt.Errorf("%s is %s, want %s", p, gb, wb)
		}
	}
	return nil
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

func truncateJSON(v any) string {
	b, _ := json.Marshal(v)
	return truncate(b)
}

// lockedBuffer is a buffer the server's goroutines log into while the
// report reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
