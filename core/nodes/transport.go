package nodes

import (
	"context"
	"sync"
	"time"

	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/metrics"
	"github.com/crowbar-go/crowbar/core/model"
)

// nodeTokenValidity is how long the tokens the server gives agents last;
// connections are recycled well before (core0.Options.ConnMaxLifetime).
const nodeTokenValidity = 15 * time.Minute

// Transport hands out core0 clients for nodes' agents: one pooled client
// per node, its certificate pinned to the fingerprint learned at join,
// authenticating with short-lived tokens the server signs.
type Transport struct {
	svc *Service

	mu      sync.Mutex
	clients map[int64]*transportClient

	tokMu  sync.Mutex
	token  string
	tokExp time.Time
}

type transportClient struct {
	c                    *core0.Client
	address, fingerprint string
	tls                  bool
}

// NewTransport returns a transport over the agents svc knows.
func NewTransport(svc *Service) *Transport {
	return &Transport{svc: svc, clients: map[int64]*transportClient{}}
}

// Client returns the client for node's agent; a node without one is a
// NotFoundError.
func (t *Transport) Client(ctx context.Context, node *model.Node) (*core0.Client, error) {
	na, err := t.svc.Agent(ctx, node.ID)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tc, ok := t.clients[node.ID]; ok {
		if tc.address == na.Address && tc.fingerprint == na.Fingerprint && tc.tls == na.TLS {
			return tc.c, nil
		}
		tc.c.Close() //nolint:errcheck // the agent moved or re-joined
	}
	name := node.Name
	c := core0.New(core0.Options{Node: node.Name, Addr: na.Address, NoTLS: !na.TLS, Fingerprint: na.Fingerprint,
		Password: t.password, ConnMaxLifetime: nodeTokenValidity / 3,
		Observe: func(took time.Duration, err error) {
			result := "ok"
			if err != nil {
				result = "error"
			}
			metrics.NodeRoundTrips.WithLabelValues(name, result).Inc()
			metrics.NodeRoundTripSeconds.Observe(took.Seconds())
		}})
	t.clients[node.ID] = &transportClient{c: c, address: na.Address, fingerprint: na.Fingerprint, tls: na.TLS}
	return c, nil
}

// password is a token valid for at least two thirds of nodeTokenValidity.
func (t *Transport) password(context.Context) (string, error) {
	t.tokMu.Lock()
	defer t.tokMu.Unlock()
	if t.token != "" && time.Until(t.tokExp) > 2*nodeTokenValidity/3 {
		return t.token, nil
	}
	tok, exp, err := t.svc.auth.MintNodeToken(nodeTokenValidity)
	if err != nil {
		return "", err
	}
	t.token, t.tokExp = tok, exp
	return tok, nil
}

// Forget closes node's client (after the node is deleted).
func (t *Transport) Forget(nodeID int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tc, ok := t.clients[nodeID]; ok {
		tc.c.Close() //nolint:errcheck
		delete(t.clients, nodeID)
	}
}

// Close closes every client.
func (t *Transport) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, tc := range t.clients {
		tc.c.Close() //nolint:errcheck
		delete(t.clients, id)
	}
}
