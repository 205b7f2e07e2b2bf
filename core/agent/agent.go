// Package agent is `crowbar agent`: it plays Zero-OS core0's part on any
// Linux machine. It serves core0's command protocol (package core0) over
// the Redis wire protocol with TLS, admits only callers whose JWT the
// crowbar server signed, runs jobs as real processes in their own process
// groups, and joins a crowbar server with a join token, then heartbeats.
package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/hashicorp/go-hclog"
	"github.com/tidwall/redcon"
)

// Config configures an Agent.
type Config struct {
	// Listen is the address core0's protocol is served on (default ":6379").
	Listen string
	// StateDir keeps the certificate, the server's token key and the node
	// identity between restarts (default /var/lib/crowbar-agent).
	StateDir string
	// TLS serves the protocol over TLS (the default; false only for a lab).
	TLS bool
	// CertFile and KeyFile give a certificate; empty: a self-signed one made
	// on first start in StateDir.
	CertFile, KeyFile string
	// Server is the crowbar server's URL; with JoinToken the agent joins it.
	Server    string
	JoinToken string
	// Name overrides the node name sent at join (default: the host's FQDN).
	Name string
	// MAC overrides the MAC that identifies the node (default: the default
	// route's interface's, else the first non-loopback interface's).
	MAC string
	// Advertise is the host:port the server should reach the agent at
	// (default: this host's address towards the server, and Listen's port).
	Advertise string
	// RebootCommand is what core.reboot runs (default "reboot").
	RebootCommand []string
	// TokenKeys verify AUTH tokens in addition to the key learned at join
	// (for an agent that serves without joining).
	TokenKeys []crypto.PublicKey
	// ServerCA verifies an https server URL; nil uses the system's roots.
	ServerCA []byte
	// ResultTTL is how long finished jobs' results are kept (default 5 min).
	ResultTTL time.Duration
	// MaxOutput is how many bytes of each of a job's stdout and stderr are
	// kept in its result (the last ones; default 1 MiB).
	MaxOutput int
	// MaxStreamLines caps a stream:<id> list nobody reads (default 10,000).
	MaxStreamLines int
	// Heartbeat is the interval between heartbeats (default: what the
	// server asks for at join).
	Heartbeat time.Duration
	// Version is reported by info.version.
	Version string
	Logger  hclog.Logger

	// Listener, when set, is served instead of listening on Listen.
	Listener net.Listener
	// NoAuth serves without AUTH: only for a container's coreX, whose
	// socket only the agent can reach.
	NoAuth bool
	// ContainerRange is the network default container nics get addresses
	// from (default 172.31.0.0/16; the agent's bridge takes the first).
	ContainerRange string
	// container is set in a container's coreX: the id results carry.
	container int
}

// Agent serves core0's protocol. Create it with New, then Run.
type Agent struct {
	cfg        Config
	log        hclog.Logger
	lists      *lists
	jobs       *jobs
	files      *files
	containers *containers // nil in a container's coreX
	verifier   atomic.Pointer[auth.JWT]
	cert       *tls.Certificate
	fp         string // our certificate's fingerprint
	started    time.Time

	mu       sync.Mutex
	srv      *redcon.Server
	addr     net.Addr
	identity *identity // from the last join

	ctx    context.Context // ends when Run returns; blocking reads watch it
	cancel context.CancelFunc
}

// New prepares an agent: it loads or creates the state directory, the
// certificate and the identity of an earlier join.
func New(cfg Config) (*Agent, error) {
	if cfg.Listen == "" {
		cfg.Listen = ":6379"
	}
	if cfg.StateDir == "" {
		cfg.StateDir = "/var/lib/crowbar-agent"
	}
	if cfg.ResultTTL == 0 {
		cfg.ResultTTL = 5 * time.Minute
	}
	if cfg.MaxOutput == 0 {
		cfg.MaxOutput = 1 << 20
	}
	if cfg.MaxStreamLines == 0 {
		cfg.MaxStreamLines = 10000
	}
	if len(cfg.RebootCommand) == 0 {
		cfg.RebootCommand = []string{"reboot"}
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, lists: newLists(), files: newFiles(), started: time.Now()}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.jobs = newJobs(a)
	if cfg.NoAuth {
		return a, nil // a container's coreX: no state, no certificate, no identity
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	cx, err := newContainers(a)
	if err != nil {
		return nil, err
	}
	a.containers = cx
	if cfg.TLS {
		cert, err := loadOrCreateCert(cfg.StateDir, cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		a.cert = cert
		a.fp = fingerprintOf(cert)
	}
	id, err := loadIdentity(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	a.identity = id
	if err := a.setTokenKey(id.tokenKey()); err != nil {
		return nil, err
	}
	return a, nil
}

// Fingerprint is the hex SHA-256 of the agent's certificate ("" without TLS).
func (a *Agent) Fingerprint() string { return a.fp }

// Joined says whether the agent holds a server's answer to its join (and
// so trusts the server's tokens).
func (a *Agent) Joined() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.identity != nil
}

// setTokenKey installs the keys AUTH tokens are checked against: the
// server's (PEM, may be empty) and the configured ones.
func (a *Agent) setTokenKey(pemKey string) error {
	keys := append([]crypto.PublicKey(nil), a.cfg.TokenKeys...)
	if strings.TrimSpace(pemKey) != "" {
		k, err := auth.ParsePublicKeys([]byte(pemKey))
		if err != nil {
			return fmt.Errorf("the server's token key: %w", err)
		}
		keys = append(keys, k...)
	}
	if len(keys) == 0 {
		a.verifier.Store(nil)
		return nil
	}
	j, err := auth.NewJWT(auth.JWTConfig{PublicKeys: keys})
	if err != nil {
		return err
	}
	a.verifier.Store(j)
	return nil
}

// Listen binds the protocol's address; Run serves it. Tests call Listen
// first to learn the port.
func (a *Agent) Listen() (net.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv != nil {
		return a.addr, nil
	}
	ln := a.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", a.cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", a.cfg.Listen, err)
		}
	}
	a.addr = ln.Addr()
	if a.cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*a.cert}, MinVersion: tls.VersionTLS12})
	}
	a.srv = redcon.NewServerNetwork("tcp", a.cfg.Listen, a.handle, a.accept, a.closed)
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
			a.log.Error("serve", "error", err)
		}
	}()
	return a.addr, nil
}

// Run serves until ctx ends: it listens (unless Listen was called), joins
// the server when one is configured and heartbeats. A join refused by the
// server (a revoked or expired token) ends Run with that error.
func (a *Agent) Run(ctx context.Context) error {
	addr, err := a.Listen()
	if err != nil {
		return err
	}
	a.log.Info("serving core0's protocol", "address", addr.String(), "tls", a.cert != nil, "fingerprint", a.fp)
	go a.janitor(ctx)
	if a.containers != nil {
		a.containers.adopt()
	}
	errc := make(chan error, 1)
	if a.cfg.Server != "" {
		go func() { errc <- a.joinAndBeat(ctx) }()
	} else if a.verifier.Load() == nil {
		a.log.Warn("no server to join and no token key: every AUTH will be refused")
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	a.shutdown()
	return runErr
}

// shutdown stops serving, ends blocking reads and kills running jobs.
func (a *Agent) shutdown() {
	a.cancel()
	a.mu.Lock()
	if a.srv != nil {
		a.srv.Close() //nolint:errcheck
	}
	a.mu.Unlock()
	a.jobs.killAll("")
	a.jobs.wait(10 * time.Second)
	if a.containers != nil {
		a.containers.close() // containers keep running; the next agent re-adopts them
	}
}

// janitor drops expired results and streams.
func (a *Agent) janitor(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a.lists.sweep()
			a.files.sweep(now)
		}
	}
}

func statePath(dir, name string) string { return filepath.Join(dir, name) }
