package core0

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Options configure a Client.
type Options struct {
	// Node names the node in errors ("node web1.example.com: unreachable…").
	Node string
	// Addr is host:port of the node's core0 (or crowbar agent), or a
	// socket path when Network is "unix".
	Addr string
	// Network is "tcp" (the default) or "unix" (a container's coreX).
	Network string
	// NoTLS speaks plain TCP, for agents run with --tls=false.
	NoTLS bool
	// Fingerprint pins the node's certificate: the hex SHA-256 of its DER
	// encoding, as learned when the agent joined. Empty accepts any
	// certificate, as Zero-OS's own client does.
	Fingerprint string
	// Password returns the JWT given with AUTH; it is called for every new
	// connection, so short-lived tokens are renewed as connections are.
	Password func(ctx context.Context) (string, error)
	// PoolSize caps open connections (default 64). Each job being waited
	// for holds one for the wait.
	PoolSize int
	// DialTimeout bounds connecting and the TLS handshake (default 5 s).
	DialTimeout time.Duration
	// ConnMaxLifetime recycles connections (default 5 minutes), which must be
	// shorter than the tokens Password hands out.
	ConnMaxLifetime time.Duration
	// Observe, when set, is told of every round trip to the node: how long
	// it took and its error (nil for an empty blocking wait).
	Observe func(took time.Duration, err error)
}

// Client sends core0 commands to one node over a pool of connections.
// It is safe for concurrent use.
type Client struct {
	opts Options
	rdb  *redis.Client
}

// New returns a client for the node at opts.Addr; it connects lazily.
func New(opts Options) *Client {
	if opts.PoolSize == 0 {
		opts.PoolSize = 64
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.ConnMaxLifetime == 0 {
		opts.ConnMaxLifetime = 5 * time.Minute
	}
	if opts.Node == "" {
		opts.Node = opts.Addr
	}
	ro := &redis.Options{
		Network:               opts.Network,
		Addr:                  opts.Addr,
		Protocol:              2,
		DisableIdentity:       true,
		PoolSize:              opts.PoolSize,
		MinIdleConns:          0,
		DialTimeout:           opts.DialTimeout,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          10 * time.Second,
		PoolTimeout:           time.Minute,
		ConnMaxLifetime:       opts.ConnMaxLifetime,
		ConnMaxIdleTime:       time.Minute,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1, // a pushed command must not be pushed twice
	}
	if opts.Password != nil {
		ro.CredentialsProviderContext = func(ctx context.Context) (string, string, error) {
			p, err := opts.Password(ctx)
			return "", p, err
		}
	}
	if !opts.NoTLS {
		ro.TLSConfig = tlsConfig(opts.Fingerprint)
	}
	rdb := redis.NewClient(ro)
	if opts.Observe != nil {
		rdb.AddHook(observeHook(opts.Observe))
	}
	return &Client{opts: opts, rdb: rdb}
}

// observeHook reports each command's round trip.
type observeHook func(time.Duration, error)

func (h observeHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h observeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		if errors.Is(err, redis.Nil) {
			h(time.Since(start), nil)
		} else {
			h(time.Since(start), err)
		}
		return err
	}
}

func (h observeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// tlsConfig checks the peer against a pinned fingerprint, or accepts any
// certificate when none is pinned (nodes use self-signed certificates).
func tlsConfig(fingerprint string) *tls.Config {
	want := strings.ToLower(strings.ReplaceAll(fingerprint, ":", ""))
	return &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // verified below against the pinned fingerprint
		MinVersion:         tls.VersionTLS12,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if want == "" {
				return nil
			}
			if len(raw) == 0 {
				return errors.New("the node sent no certificate")
			}
			if got := Fingerprint(raw[0]); got != want {
				return &fingerprintError{want: want, got: got}
			}
			return nil
		},
	}
}

type fingerprintError struct{ want, got string }

func (e *fingerprintError) Error() string {
	return fmt.Sprintf("certificate fingerprint %s is not the %s learned when the agent joined (re-join the agent if it was reinstalled)",
		e.got, e.want)
}

// Fingerprint is the hex SHA-256 of a DER certificate.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// Node is the node's name as given in Options.
func (c *Client) Node() string { return c.opts.Node }

// Close closes the client's connections.
func (c *Client) Close() error { return c.rdb.Close() }

// Push sends cmd and waits until the node has accepted it; it returns the
// job id (cmd.ID, or a new UUID when empty).
func (c *Client) Push(ctx context.Context, cmd Command) (string, error) {
	if cmd.ID == "" {
		cmd.ID = uuid.NewString()
	}
	if len(cmd.Arguments) == 0 {
		cmd.Arguments = json.RawMessage("{}")
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return "", c.fail(JobFailed, "encode "+cmd.Command, err)
	}
	if err := c.rdb.RPush(ctx, Queue, b).Err(); err != nil {
		return "", c.classify("send "+cmd.Command, err)
	}
	wait := 10 * time.Second
	if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
		// Whole seconds: the context ends the wait sooner if it must.
		wait = time.Until(d).Truncate(time.Second) + time.Second
	}
	flag := FlagKey(cmd.ID)
	if err := c.rdb.BRPopLPush(ctx, flag, flag, wait).Err(); err != nil {
		if errors.Is(err, redis.Nil) {
			return "", c.fail(Timeout, "send "+cmd.Command, fmt.Errorf("the node did not accept job %s within %s", cmd.ID, wait))
		}
		return "", c.classify("send "+cmd.Command, err)
	}
	return cmd.ID, nil
}

// Result waits for job id's result until ctx ends. A job the node does not
// know (never pushed, or its result expired) is an UnknownJob error.
func (c *Client) Result(ctx context.Context, id string) (*Result, error) {
	key := ResultKey(id)
	for {
		exists, err := c.Exists(ctx, id)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, c.fail(UnknownJob, "read result", fmt.Errorf("the node does not know job %s (it never ran, or its result expired)", id))
		}
		wait := 10 * time.Second
		if d, ok := ctx.Deadline(); ok {
			left := time.Until(d)
			if left <= 0 {
				return nil, c.classify("read result of "+id, context.DeadlineExceeded)
			}
			if left < wait {
				// BRPOPLPUSH counts whole seconds; the context ends the wait sooner.
				wait = left.Truncate(time.Second) + time.Second
			}
		}
		s, err := c.rdb.BRPopLPush(ctx, key, key, wait).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, c.classify("read result of "+id, err)
		}
		var r Result
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			return nil, c.fail(JobFailed, "read result of "+id, fmt.Errorf("the result is not JSON: %v", err))
		}
		return &r, nil
	}
}

// Exists reports whether the node knows job id (running, or finished less
// than its result lifetime ago).
func (c *Client) Exists(ctx context.Context, id string) (bool, error) {
	n, err := c.rdb.Do(ctx, "LKEYEXISTS", FlagKey(id)).Int()
	if err != nil {
		return false, c.classify("look up job "+id, err)
	}
	return n == 1, nil
}

// Running reports whether job id is still running.
func (c *Client) Running(ctx context.Context, id string) (bool, error) {
	ok, err := c.Exists(ctx, id)
	if err != nil || !ok {
		return false, err
	}
	ttl, err := c.rdb.Do(ctx, "LTTL", FlagKey(id)).Int()
	if err != nil {
		return false, c.classify("look up job "+id, err)
	}
	return ttl == -1, nil
}

// Run sends cmd and waits for its result. A result that is not SUCCESS is
// returned with a JobFailed error carrying it.
func (c *Client) Run(ctx context.Context, cmd Command) (*Result, error) {
	id, err := c.Push(ctx, cmd)
	if err != nil {
		return nil, err
	}
	r, err := c.Result(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.State != StateSuccess {
		return r, &Error{Node: c.opts.Node, Kind: JobFailed, Op: cmd.Command, Result: r, Err: resultError(r)}
	}
	return r, nil
}

func resultError(r *Result) error {
	msg := strings.TrimSpace(r.Data)
	if msg == "" {
		msg = strings.TrimSpace(r.Stderr())
	}
	if len(msg) > 512 {
		msg = msg[:512] + "…"
	}
	if msg == "" {
		return fmt.Errorf("%s (code %d)", r.State, r.Code)
	}
	return fmt.Errorf("%s (code %d): %s", r.State, r.Code, msg)
}

// Stream calls fn for each line job id writes to its stream (it must have
// been sent with Stream set) until the last one, the job ending, or ctx.
func (c *Client) Stream(ctx context.Context, id string, fn func(StreamMessage) error) error {
	key := StreamKey(id)
	for {
		wait := 10 * time.Second
		if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
			wait = time.Until(d).Truncate(time.Second) + time.Second
		}
		vals, err := c.rdb.BLPop(ctx, wait, key).Result()
		if errors.Is(err, redis.Nil) {
			running, err := c.Running(ctx, id)
			if err != nil {
				return err
			}
			if !running {
				n, err := c.rdb.LLen(ctx, key).Result()
				if err != nil {
					return c.classify("read stream of "+id, err)
				}
				if n == 0 {
					return nil
				}
			}
			continue
		}
		if err != nil {
			return c.classify("read stream of "+id, err)
		}
		var line StreamLine
		if err := json.Unmarshal([]byte(vals[1]), &line); err != nil {
			return c.fail(JobFailed, "read stream of "+id, fmt.Errorf("a stream line is not JSON: %v", err))
		}
		if err := fn(line.Message); err != nil {
			return err
		}
		if line.Message.EOF() {
			return nil
		}
	}
}

func (c *Client) command(name string, args any) (Command, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return Command{}, c.fail(JobFailed, "encode "+name, err)
	}
	return Command{Command: name, Arguments: b}, nil
}

// Call runs command with args and returns its result.
func (c *Client) Call(ctx context.Context, command string, args any) (*Result, error) {
	cmd, err := c.command(command, args)
	if err != nil {
		return nil, err
	}
	return c.Run(ctx, cmd)
}

// JSON runs command with args and decodes its JSON data into out.
func (c *Client) JSON(ctx context.Context, command string, args, out any) error {
	r, err := c.Call(ctx, command, args)
	if err != nil {
		return err
	}
	if r.Level != LevelJSON {
		return c.fail(JobFailed, command, fmt.Errorf("the result is not JSON (level %d)", r.Level))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal([]byte(r.Data), out); err != nil {
		return c.fail(JobFailed, command, fmt.Errorf("decode the result: %v", err))
	}
	return nil
}

// Ping checks that the node answers core.ping with "pong".
func (c *Client) Ping(ctx context.Context) error {
	var s string
	if err := c.JSON(ctx, "core.ping", struct{}{}, &s); err != nil {
		return err
	}
	if s != "pong" {
		return c.fail(JobFailed, "core.ping", fmt.Errorf("answered %q, not pong", s))
	}
	return nil
}

// System runs a program with arguments (core.system) and waits for it.
func (c *Client) System(ctx context.Context, name string, args ...string) (*Result, error) {
	if args == nil {
		args = []string{}
	}
	return c.Call(ctx, "core.system", SystemArgs{Name: name, Args: args})
}

// Bash runs a shell script (bash) and waits for it.
func (c *Client) Bash(ctx context.Context, script, stdin string) (*Result, error) {
	return c.Call(ctx, "bash", BashArgs{Script: script, Stdin: stdin})
}

// Kind classifies a failure to get an answer from a node.
type Kind int

// The kinds of failure; the API maps Unreachable, AuthRefused and
// JobFailed to 502 and Timeout to 504.
const (
	Unreachable Kind = iota + 1 // no connection, TLS failed, connection lost
	AuthRefused                 // the node refused the token
	Timeout                     // no answer before the deadline
	JobFailed                   // the job ran and did not succeed, or answered nonsense
	UnknownJob                  // the node does not know the job
)

var kindNames = map[Kind]string{Unreachable: "unreachable", AuthRefused: "refused the credentials",
	Timeout: "timed out", JobFailed: "job failed", UnknownJob: "unknown job"}

func (k Kind) String() string { return kindNames[k] }

// Error is a failure talking to a node; its message names the node.
type Error struct {
	Node   string
	Kind   Kind
	Op     string
	Err    error
	Result *Result // the result, for JobFailed errors from Run
}

func (e *Error) Error() string {
	return fmt.Sprintf("node %s: %s: %s: %v", e.Node, e.Op, e.Kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches the sentinel of e's kind (errors.Is(err, core0.ErrTimeout)).
func (e *Error) Is(target error) bool {
	k, ok := target.(kindError)
	return ok && Kind(k) == e.Kind
}

type kindError Kind

func (k kindError) Error() string { return Kind(k).String() }

// Sentinels for errors.Is.
var (
	ErrUnreachable error = kindError(Unreachable)
	ErrAuthRefused error = kindError(AuthRefused)
	ErrTimeout     error = kindError(Timeout)
	ErrJobFailed   error = kindError(JobFailed)
	ErrUnknownJob  error = kindError(UnknownJob)
)

func (c *Client) fail(k Kind, op string, err error) *Error {
	return &Error{Node: c.opts.Node, Kind: k, Op: op, Err: err}
}

// classify turns a transport error into an *Error of the right kind.
func (c *Client) classify(op string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	msg := err.Error()
	var fp *fingerprintError
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return c.fail(Timeout, op, errors.New("no answer before the deadline"))
	case errors.Is(err, context.Canceled):
		return c.fail(Timeout, op, err)
	case errors.As(err, &fp):
		return c.fail(Unreachable, op, fp)
	case errors.As(err, &oe) && oe.Op == "dial":
		return c.fail(Unreachable, op, err)
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"), strings.Contains(msg, "invalid password"),
		strings.HasPrefix(msg, "NOPERM"):
		return c.fail(AuthRefused, op, err)
	case errors.As(err, &ne) && ne.Timeout():
		return c.fail(Timeout, op, err)
	case strings.HasPrefix(msg, "ERR "):
		return c.fail(JobFailed, op, err)
	}
	return c.fail(Unreachable, op, err)
}
