//go:build !agentonly

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/api"
	"github.com/crowbar-go/crowbar/barclamps"
	"github.com/crowbar-go/crowbar/core/anneal"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/nodes"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
)

type serverOptions struct {
	listen          string
	advertiseURL    string
	database        string
	dataDir         string
	wasmCache       string
	logLevel        string
	logFormat       string
	maxBody         int64
	shutdownTimeout time.Duration

	realm            string
	digestAlgorithms []string
	nonceTTL         time.Duration
	installKey       string
	resetAdminKey    bool
	jwtPublicKeys    []string
	jwtHMACFile      string
	jwtScope         string
	jwtDefaultRole   string
	signinFree       int
	signinMaxWait    time.Duration
	auditRetention   time.Duration
	eventRetention   time.Duration
	metricsListen    string
	metricsTokenFile string

	wasmPool        int
	wasmMemoryMiB   uint32
	wasmHTTPTimeout time.Duration
	wasmHookTimeout time.Duration
	barclampSync    time.Duration
	annealWorkers   int
	annealLease     time.Duration

	defaultDomain  string
	agentHeartbeat time.Duration
	agentDeadAfter time.Duration
	sessionTTL     time.Duration

	bootInterface string
	dhcpMode      string
	tftpRoot      string
	tftpListen    string
	filesDir      string
	filesListen   string

	onListen func(addr net.Addr) // tests learn the port here
}

func newServerCmd() *cobra.Command {
	o := &serverOptions{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the crowbar server",
		Long: `Run the crowbar server: the OpenCrowbar v2 API under /api/v2, barclamp routes
under /:barclamp/v2 and an unauthenticated health check at /health.

Every flag can also be set through the environment: --data-dir is
CROWBAR_DATA_DIR, --database is CROWBAR_DATABASE, and so on. Flags win.`,
		Example: `  crowbar server
  crowbar server --listen 0.0.0.0:3000 --database postgres://crowbar@db/crowbar
  CROWBAR_LOG_FORMAT=json crowbar server`,
		Args: cobra.NoArgs,
		RunE: daemon(func(ctx context.Context) error { return runServer(ctx, o) }),
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:3000", "address to serve HTTP on")
	f.StringVar(&o.advertiseURL, "advertise-url", "", "URL machines reach this server at, in DHCP options, boot scripts and answer files (default http://<address of --listen, or of the default-route interface when listening on all>:<port>)")
	f.StringVar(&o.database, "database", "", "postgres:// URL, or SQLite file path (default <data-dir>/crowbar.db)")
	f.StringVar(&o.dataDir, "data-dir", ".", "directory for the SQLite database, keys and caches")
	f.StringVar(&o.logLevel, "log-level", "info", "trace, debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	f.Int64Var(&o.maxBody, "max-body", api.DefaultMaxBody, "largest request body accepted, in bytes")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight requests may run after SIGTERM")
	f.StringVar(&o.realm, "realm", "crowbar", "HTTP Digest realm (changing it needs new passwords)")
	f.StringSliceVar(&o.digestAlgorithms, "digest-algorithms", []string{auth.SHA256, auth.MD5}, "digest algorithms offered, in order")
	f.DurationVar(&o.nonceTTL, "nonce-ttl", 5*time.Minute, "how long a digest nonce is good for before stale=true")
	f.StringVar(&o.wasmCache, "wasm-cache", "", "directory of compiled barclamp modules (default the user's cache dir, crowbar/wasm-cache; else <data-dir>/wasm-cache); safe to share and to delete")
	f.StringVar(&o.installKey, "install-key", "", "path of the install key file (default <data-dir>/crowbar.install.key)")
	f.BoolVar(&o.resetAdminKey, "reset-admin-key", false, "give the install user a new password and rewrite the install key, then serve")
	f.StringSliceVar(&o.jwtPublicKeys, "jwt-public-key", nil, "PEM file of a public key (or certificate) trusted to sign bearer tokens; repeatable")
	f.StringVar(&o.jwtHMACFile, "jwt-hmac-secret-file", "", "file holding a shared secret that verifies HS256/384/512 bearer tokens")
	f.StringVar(&o.jwtScope, "jwt-required-scope", "", "scope every bearer token must carry, e.g. user:memberof:myorg (403 otherwise)")
	f.IntVar(&o.wasmPool, "wasm-pool-size", 0, "instances per barclamp (default GOMAXPROCS)")
	f.Uint32Var(&o.wasmMemoryMiB, "wasm-memory-mib", 128, "memory cap per barclamp instance, in MiB")
	f.DurationVar(&o.wasmHTTPTimeout, "wasm-http-timeout", 30*time.Second, "deadline of a barclamp HTTP call")
	f.DurationVar(&o.wasmHookTimeout, "wasm-hook-timeout", 5*time.Minute, "deadline of a barclamp hook call")
	f.DurationVar(&o.barclampSync, "barclamp-sync", 10*time.Second, "how often to pick up barclamps installed or removed through another replica (0 disables)")
	f.IntVar(&o.annealWorkers, "anneal-workers", 16, "node-roles the annealer runs at once (each on a different node)")
	f.DurationVar(&o.annealLease, "anneal-lease", time.Minute, "how long a claimed node-role stays leased without renewal; a crashed server's runs return to todo after it")
	f.StringVar(&o.defaultDomain, "default-domain", "crowbar.internal", "domain given to joining agents whose host name has none")
	f.DurationVar(&o.agentHeartbeat, "agent-heartbeat", 10*time.Second, "how often agents are told to heartbeat")
	f.DurationVar(&o.agentDeadAfter, "agent-dead-after", 30*time.Second, "a node whose agent sent no heartbeat for this long is marked not alive")
	f.StringVar(&o.bootInterface, "boot-interface", "", "serve DHCP (see --dhcp) on this interface of the admin network, and TFTP and boot files on its address; off when empty")
	f.StringVar(&o.dhcpMode, "dhcp", "full", "with --boot-interface: full (addresses, reservations and boot options), proxy (boot options beside another DHCP server) or off")
	f.StringVar(&o.tftpRoot, "tftp-root", "", "directory of iPXE binaries served over TFTP (default with --boot-interface: /usr/lib/ipxe from Debian's ipxe package); off disables TFTP")
	f.StringVar(&o.tftpListen, "tftp-listen", "", "TFTP address (default <--boot-interface address>:69)")
	f.StringVar(&o.filesDir, "files-dir", "", "serve kernels and initrds from this directory over HTTP (what the provisioner's files_url points at; make discovery-image fills it)")
	f.StringVar(&o.filesListen, "files-listen", "", "boot files address (default <--boot-interface address>:8091, else :8091)")
	f.IntVar(&o.signinFree, "signin-free-failures", 5, "failed sign-ins in a row a user or an address gets before it must wait (1 s, doubling)")
	f.DurationVar(&o.signinMaxWait, "signin-max-wait", time.Minute, "the longest wait after failed sign-ins (429 with Retry-After meanwhile); 0 disables throttling")
	f.DurationVar(&o.auditRetention, "audit-retention", 90*24*time.Hour, "how long audit log entries are kept (pruned hourly); 0 keeps them forever")
	f.DurationVar(&o.sessionTTL, "session-ttl", auth.DefaultSessionTTL, "how long a web UI sign-in lasts (the session cookie's lifetime)")
	f.DurationVar(&o.eventRetention, "event-retention", 24*time.Hour, "how long the event log is kept for clients resuming with Last-Event-ID (pruned hourly); 0 keeps it forever")
	f.StringVar(&o.metricsListen, "metrics-listen", "", "serve Prometheus metrics at /metrics on this address (off when empty); scrapes need credentials")
	f.StringVar(&o.metricsTokenFile, "metrics-token-file", "", "file holding a secret a scraper may send as a bearer token to --metrics-listen (crowbar users' credentials work too)")
	f.StringVar(&o.jwtDefaultRole, "jwt-default-role", "", "role for bearer-token subjects that are not crowbar users (admin, operator, reader); empty refuses them")
	return cmd
}

// checkTuning refuses numeric settings that would silently mean something
// else (a negative pool, a lease too short to renew).
func (o *serverOptions) checkTuning() error {
	switch {
	case o.wasmPool < 0:
		return usageError{fmt.Errorf("--wasm-pool-size %d: want 0 (GOMAXPROCS) or more", o.wasmPool)}
	case o.annealWorkers < 1:
		return usageError{fmt.Errorf("--anneal-workers %d: want 1 or more", o.annealWorkers)}
	case o.annealLease < time.Second:
		return usageError{fmt.Errorf("--anneal-lease %s: want at least 1s (it is renewed every third of it)", o.annealLease)}
	case o.barclampSync < 0:
		return usageError{fmt.Errorf("--barclamp-sync %s: want 0 (off) or a positive interval", o.barclampSync)}
	case o.agentHeartbeat < time.Second:
		return usageError{fmt.Errorf("--agent-heartbeat %s: want at least 1s", o.agentHeartbeat)}
	case o.agentDeadAfter < 2*o.agentHeartbeat:
		return usageError{fmt.Errorf("--agent-dead-after %s: want at least two heartbeats (%s)", o.agentDeadAfter, 2*o.agentHeartbeat)}
	case o.signinFree < 0:
		return usageError{fmt.Errorf("--signin-free-failures %d: want 1 or more", o.signinFree)}
	case o.auditRetention < 0:
		return usageError{fmt.Errorf("--audit-retention %s: want 0 (keep forever) or a positive duration", o.auditRetention)}
	case o.sessionTTL < 0:
		return usageError{fmt.Errorf("--session-ttl %s: want a positive duration", o.sessionTTL)}
	case o.eventRetention < 0:
		return usageError{fmt.Errorf("--event-retention %s: want 0 (keep forever) or a positive duration", o.eventRetention)}
	case o.signinMaxWait < 0:
		return usageError{fmt.Errorf("--signin-max-wait %s: want 0 (no throttling) or a positive duration", o.signinMaxWait)}
	case o.dhcpMode != "" && o.dhcpMode != "full" && o.dhcpMode != "proxy" && o.dhcpMode != "off":
		return usageError{fmt.Errorf("--dhcp %q: want full, proxy or off", o.dhcpMode)}
	case o.tftpRoot != "" && o.tftpRoot != "off" && o.bootInterface == "" && o.tftpListen == "":
		return usageError{fmt.Errorf("--tftp-root needs --boot-interface or --tftp-listen")}
	}
	return nil
}

func runServer(ctx context.Context, o *serverOptions) error {
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	if err := o.checkTuning(); err != nil {
		return err
	}
	if o.advertiseURL != "" {
		if o.advertiseURL, err = checkAdvertiseURL(o.advertiseURL); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.dataDir, 0o750); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	dsn := o.database
	if dsn == "" {
		dsn = filepath.Join(o.dataDir, "crowbar.db")
	}
	st, err := store.Open(ctx, dsn, store.Options{Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("close database", "error", err)
		} else {
			log.Info("database closed")
		}
	}()
	log.Info("database ready", "dialect", st.Dialect, "schema_version", store.SchemaVersion())

	svc, err := newAuth(ctx, o, st, log)
	if err != nil {
		return err
	}
	host, err := plugins.New(ctx, plugins.Config{CacheDir: o.wasmCacheDir(), PoolSize: o.wasmPool,
		MemoryMiB: o.wasmMemoryMiB, HTTPTimeout: o.wasmHTTPTimeout, HookTimeout: o.wasmHookTimeout,
		Logger: log, KV: barclamp.NewKV(st.DB), Trusted: barclamps.Trusted()})
	if err != nil {
		return err
	}
	defer host.Close(context.Background()) //nolint:errcheck
	registry := barclamp.NewRegistry(st.DB, host, log)
	defer registry.Close(context.Background())
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	defer ln.Close() //nolint:errcheck // Serve closes it; this covers the returns before Serve
	advertise := o.advertiseURL
	if advertise == "" {
		advertise = defaultAdvertiseURL(ln.Addr())
	}
	if isLoopbackURL(advertise) {
		log.Info("the advertised URL is loopback: only machines on this host can boot from it; set --advertise-url for others", "advertise_url", advertise)
	}
	apiSrv := api.New(api.Config{Store: st, Auth: svc, Barclamps: registry, Logger: log, MaxBody: o.maxBody, Advertise: advertise, SessionTTL: o.sessionTTL,
		Anneal: anneal.Config{Workers: o.annealWorkers, Lease: o.annealLease},
		Nodes:  nodes.Config{DefaultDomain: o.defaultDomain, Heartbeat: o.agentHeartbeat, DeadAfter: o.agentDeadAfter}})
	defer apiSrv.Transport().Close()
	host.SetAPI(apiSrv)
	host.SetNodes(apiSrv)
	names, err := barclamps.Names()
	if err != nil {
		return fmt.Errorf("read embedded barclamps: %w", err)
	}
	if len(names) == 0 {
		log.Warn("this binary embeds no first-party barclamps; build it with make")
	}
	bootSvc, err := startBoot(o, apiSrv, log)
	if err != nil {
		return err
	}
	if bootSvc != nil {
		defer bootSvc.Close()
	}
	if o.metricsListen != "" {
		stop, err := serveMetrics(o, apiSrv, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	handler := apiSrv.Handler()
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	// The core API answers at once; the embedded barclamps load meanwhile
	// (their routes answer 503 with Retry-After, /ready says when all have).
	registry.Expect(names...)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", "address", ln.Addr().String(), "advertise_url", advertise, "web_ui", "http://"+ln.Addr().String()+"/")
	wctx, stopWatch := context.WithCancel(ctx)
	watchingNodes := make(chan struct{})
	go func() { defer close(watchingNodes); apiSrv.Nodes().Watch(wctx) }()
	pruning := make(chan struct{})
	go func() { defer close(pruning); apiSrv.KeepPruned(wctx, o.auditRetention, o.eventRetention) }()
	defer func() { stopWatch(); <-pruning }()
	defer func() { stopWatch(); <-watchingNodes }()
	// The annealer and the barclamp sync start once the barclamps are
	// loaded: a hook of a barclamp still loading would fail its node-role.
	start := time.Now()
	loadErr := make(chan error, 1)
	background := make(chan struct{})
	go func() {
		defer close(background)
		embedded, err := barclamps.Embedded()
		if err == nil {
			err = registry.LoadAll(wctx, embedded)
		}
		if err != nil {
			loadErr <- err
			return
		}
		log.Info("barclamps ready", "embedded", len(embedded), "took", time.Since(start))
		watching := make(chan struct{})
		go func() {
			defer close(watching)
			if o.barclampSync > 0 {
				registry.Watch(wctx, o.barclampSync)
			}
		}()
		apiSrv.Annealer().Run(wctx) // runs in flight finish before the database closes
		<-watching                  // before the registry closes
	}()
	defer func() { stopWatch(); <-background }()
	if o.onListen != nil {
		// Tests learn the port once the server serves everything.
		go func() {
			for len(registry.Pending()) > 0 {
				select {
				case <-wctx.Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
			o.onListen(ln.Addr())
		}()
	}

	var bootErr <-chan error
	if bootSvc != nil {
		bootErr = bootSvc.Err()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case err := <-bootErr:
		return fmt.Errorf("boot services: %w", err)
	case err := <-loadErr:
		return fmt.Errorf("load barclamps: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: waiting for in-flight requests", "timeout", o.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// newAuth builds the authentication service from the flags and makes sure
// the install key and its admin user exist.
func newAuth(ctx context.Context, o *serverOptions, st *store.Store, log hclog.Logger) (*auth.Service, error) {
	cfg := auth.Config{Realm: o.realm, DigestAlgorithms: o.digestAlgorithms, NonceTTL: o.nonceTTL,
		RequiredScope: o.jwtScope, DefaultRole: auth.Role(o.jwtDefaultRole),
		Throttle: auth.ThrottleConfig{Free: o.signinFree, Max: o.signinMaxWait}}
	if o.signinMaxWait == 0 {
		cfg.Throttle.Max = -1
	}
	for _, path := range o.jwtPublicKeys {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key: %w", err)
		}
		keys, err := auth.ParsePublicKeys(b)
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key %s: %w", path, err)
		}
		cfg.JWTPublicKeys = append(cfg.JWTPublicKeys, keys...)
	}
	if o.jwtHMACFile != "" {
		b, err := os.ReadFile(o.jwtHMACFile)
		if err != nil {
			return nil, fmt.Errorf("--jwt-hmac-secret-file: %w", err)
		}
		if cfg.JWTHMACSecret = []byte(strings.TrimSpace(string(b))); len(cfg.JWTHMACSecret) < 32 {
			return nil, usageError{fmt.Errorf("--jwt-hmac-secret-file: the secret must be at least 32 bytes")}
		}
	}
	svc, err := auth.New(ctx, st.DB, cfg, log.Named("auth"))
	if err != nil {
		return nil, err
	}
	keyPath := o.installKey
	if keyPath == "" {
		keyPath = filepath.Join(o.dataDir, "crowbar.install.key")
	}
	res, err := svc.EnsureInstallKey(ctx, keyPath, o.resetAdminKey)
	if err != nil {
		return nil, fmt.Errorf("install key: %w", err)
	}
	switch res {
	case auth.KeyCreated:
		log.Info("created the admin user and wrote its install key", "path", keyPath, "user", auth.InstallUser)
	case auth.KeyRotated:
		log.Info("rotated the admin password and rewrote the install key", "path", keyPath)
	case auth.KeyRestored:
		log.Info("re-created the admin user from the existing install key", "path", keyPath)
	case auth.KeyMissing:
		log.Warn("the install key file is missing but its user exists; run with --reset-admin-key to write a new one", "path", keyPath)
	default:
		log.Info("install key", "path", keyPath)
	}
	return svc, nil
}

func (o *serverOptions) wasmCacheDir() string {
	if o.wasmCache != "" {
		return o.wasmCache
	}
	return defaultWasmCache(o.dataDir)
}

// defaultWasmCache is where compiled modules are kept: the user's cache
// directory (so a new data dir, and `make build`'s precompile, share it),
// else the data dir.
func defaultWasmCache(dataDir string) string {
	if dir, err := os.UserCacheDir(); err == nil {
		p := filepath.Join(dir, "crowbar", "wasm-cache")
		if os.MkdirAll(p, 0o755) == nil {
			return p
		}
	}
	return filepath.Join(dataDir, "wasm-cache")
}
