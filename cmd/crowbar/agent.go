package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/spf13/cobra"
)

// version is stamped by the linker in releases.
var version = "dev"

type agentOptions struct {
	server         string
	joinToken      string
	joinTokenFile  string
	listen         string
	stateDir       string
	name           string
	mac            string
	advertise      string
	reboot         string
	tls            bool
	tlsCert        string
	tlsKey         string
	tokenKeys      []string
	serverCA       string
	heartbeat      time.Duration
	maxOutput      int
	containerRange string
	logLevel       string
	logFormat      string
}

func newAgentCmd() *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: Zero-OS core0's protocol on this machine, joined to a crowbar server",
		Long: `Run the node agent. It serves Zero-OS core0's command protocol (the Redis
wire protocol, TLS by default) so the crowbar server and Zero-OS clients can
run jobs and processes on this machine, and joins a crowbar server with a
join token (crowbar join_tokens create), then heartbeats so the node stays
alive. Only callers holding a JWT signed by the server, for an admin or an
operator, may run commands: they run as the agent's user (root, usually).

Every flag can also be set through the environment: --server is
CROWBAR_SERVER, --join-token is CROWBAR_JOIN_TOKEN, and so on. Flags win.`,
		Example: `  crowbar agent --server http://192.168.124.10:3000 --join-token cbj_…
  crowbar agent --server http://crowbar:3000 --join-token-file /run/crowbar/join-token --state-dir /var/lib/crowbar-agent
  crowbar agent --listen 127.0.0.1:6380 --tls=false --token-key server.pub   # a lab agent that joins nothing`,
		Args: cobra.NoArgs,
		RunE: daemon(func(ctx context.Context) error { return runAgent(ctx, o) }),
	}
	f := cmd.Flags()
	f.StringVar(&o.server, "server", "", "URL of the crowbar server to join, e.g. http://192.168.124.10:3000")
	f.StringVar(&o.joinToken, "join-token", "", "join token (crowbar join_tokens create); needed for the first join only")
	f.StringVar(&o.joinTokenFile, "join-token-file", "", "file holding the join token")
	f.StringVar(&o.listen, "listen", ":6379", "address to serve core0's protocol on")
	f.StringVar(&o.stateDir, "state-dir", "/var/lib/crowbar-agent", "directory for the certificate, the server's token key and the node identity")
	f.StringVar(&o.name, "name", "", "node name to join as (default: this host's FQDN, the server's default domain added to a bare name)")
	f.StringVar(&o.mac, "mac", "", "MAC that identifies this node (default: the default route's interface's)")
	f.StringVar(&o.advertise, "advertise", "", "host:port the server should reach this agent at (default: this host's address towards the server)")
	f.StringVar(&o.reboot, "reboot-command", "reboot", "command core.reboot runs")
	f.BoolVar(&o.tls, "tls", true, "serve over TLS (false only for a lab: tokens then cross the network in clear)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate to serve (default: a self-signed one made in --state-dir)")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM key of --tls-cert")
	f.StringSliceVar(&o.tokenKeys, "token-key", nil, "PEM public key trusted to sign AUTH tokens besides the joined server's; repeatable")
	f.StringVar(&o.serverCA, "server-ca", "", "PEM CA certificate that verifies an https --server")
	f.DurationVar(&o.heartbeat, "heartbeat", 0, "heartbeat interval (default: what the server asks for)")
	f.IntVar(&o.maxOutput, "max-output", 1<<20, "bytes of each of a job's stdout and stderr kept in its result (the last ones)")
	f.StringVar(&o.containerRange, "container-range", "172.31.0.0/16", "addresses of containers' default nics (the agent's bridge takes the first)")
	f.StringVar(&o.logLevel, "log-level", "info", "trace, debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	return cmd
}

func runAgent(ctx context.Context, o *agentOptions) error {
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	log = log.Named("agent")
	token := o.joinToken
	if o.joinTokenFile != "" {
		if token != "" {
			return usageError{errors.New("give --join-token or --join-token-file, not both")}
		}
		b, err := os.ReadFile(o.joinTokenFile)
		if err != nil {
			return usageError{fmt.Errorf("--join-token-file: %w", err)}
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" && o.server == "" {
		return usageError{errors.New("--join-token needs --server")}
	}
	if o.maxOutput < 1024 {
		return usageError{fmt.Errorf("--max-output %d: want at least 1024 bytes", o.maxOutput)}
	}
	reboot := strings.Fields(o.reboot)
	if len(reboot) == 0 {
		return usageError{errors.New("--reboot-command may not be empty")}
	}
	cfg := agent.Config{Listen: o.listen, StateDir: o.stateDir, TLS: o.tls, CertFile: o.tlsCert, KeyFile: o.tlsKey,
		Server: o.server, JoinToken: token, Name: o.name, MAC: o.mac, Advertise: o.advertise, RebootCommand: reboot,
		Heartbeat: o.heartbeat, MaxOutput: o.maxOutput, Version: version, Logger: log, ContainerRange: o.containerRange}
	for _, p := range o.tokenKeys {
		b, err := os.ReadFile(p)
		if err != nil {
			return usageError{fmt.Errorf("--token-key: %w", err)}
		}
		keys, err := auth.ParsePublicKeys(b)
		if err != nil {
			return usageError{fmt.Errorf("--token-key %s: %w", p, err)}
		}
		cfg.TokenKeys = append(cfg.TokenKeys, keys...)
	}
	if o.serverCA != "" {
		if cfg.ServerCA, err = os.ReadFile(o.serverCA); err != nil {
			return usageError{fmt.Errorf("--server-ca: %w", err)}
		}
	}
	if abs, err := filepath.Abs(o.stateDir); err == nil {
		cfg.StateDir = abs
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
