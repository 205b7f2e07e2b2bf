package apitest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/hashicorp/go-hclog"
)

// Agent is a real agent (TLS on, a loopback port) joined to a test server.
type Agent struct {
	*agent.Agent
	Config agent.Config
	Node   *model.Node
	Addr   string
	stop   context.CancelFunc
	done   chan error
}

// RandomMAC is a locally administered unicast MAC, unique per call.
func RandomMAC() string {
	var b [6]byte
	rand.Read(b[:]) //nolint:errcheck
	b[0] = b[0]&0xfe | 0x02
	return net.HardwareAddr(b[:]).String()
}

// JoinToken creates a join token valid for ttl and returns its secret.
func (s *Server) JoinToken(ttl time.Duration) string {
	s.t.Helper()
	jt, err := s.API.Nodes().CreateJoinToken(context.Background(), "test", "admin", ttl)
	if err != nil {
		s.t.Fatalf("create join token: %v", err)
	}
	return jt.Token
}

// StartAgent starts an agent that joins s with a fresh join token and waits
// until its node exists. opts may change the configuration first; it stops
// with the test.
func (s *Server) StartAgent(opts ...func(*agent.Config)) *Agent {
	s.t.Helper()
	cfg := agent.Config{Listen: "127.0.0.1:0", StateDir: s.t.TempDir(), TLS: true, Server: s.URL,
		JoinToken: s.JoinToken(time.Hour), MAC: RandomMAC(), Heartbeat: 250 * time.Millisecond,
		RebootCommand: []string{"true"}}
	for _, o := range opts {
		o(&cfg)
	}
	ag, err := s.RunAgent(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	return ag
}

// RunAgent starts an agent with cfg and waits until its node has joined.
// Without a logger it logs into a buffer the test prints if it fails.
func (s *Server) RunAgent(cfg agent.Config) (*Agent, error) {
	if cfg.Logger == nil {
		buf := &syncBuffer{}
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "agent", Level: hclog.Debug, Output: buf})
		t := s.t
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("agent log (%s):\n%s", cfg.Listen, buf.String())
			}
		})
	}
	a, err := agent.New(cfg)
	if err != nil {
		return nil, err
	}
	addr, err := a.Listen()
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	ag := &Agent{Agent: a, Config: cfg, Addr: addr.String(), stop: stop, done: make(chan error, 1)}
	go func() { ag.done <- a.Run(ctx) }()
	s.t.Cleanup(func() { ag.Stop() })
	mac, _ := net.ParseMAC(cfg.MAC)
	zid := ""
	if mac != nil {
		zid = fmt.Sprintf("%x", []byte(mac))
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var na model.NodeAgent
		q := s.Store.DB.Where("address = ? AND fingerprint = ?", ag.Addr, a.Fingerprint())
		if zid != "" {
			q = q.Where("zero_os_id = ?", zid)
		}
		// The join commits before the agent reads the answer: it is ready
		// once it holds it.
		err := q.Take(&na).Error
		if err == nil && a.Joined() {
			var n model.Node
			if err := s.Store.DB.Where("id = ?", na.NodeID).Take(&n).Error; err != nil {
				return nil, err
			}
			ag.Node = &n
			return ag, nil
		}
		select {
		case err := <-ag.done:
			ag.done <- err // for Stop
			return nil, fmt.Errorf("the agent stopped before joining: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil, errors.New("the agent did not join within 20 s")
}

// Stop stops the agent and returns what Run returned.
func (a *Agent) Stop() error {
	a.stop()
	select {
	case err := <-a.done:
		a.done <- err
		return err
	case <-time.After(30 * time.Second):
		return errors.New("the agent did not stop within 30 s")
	}
}

// AgentClient is the server transport's client for the agent's node.
func (s *Server) AgentClient(a *Agent) *core0.Client {
	s.t.Helper()
	c, err := s.API.Transport().Client(context.Background(), a.Node)
	if err != nil {
		s.t.Fatalf("transport: %v", err)
	}
	return c
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
