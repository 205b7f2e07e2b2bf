package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/anneal"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/nodes"
	"github.com/gorilla/mux"
	"gorm.io/gorm"
)

// Agents authenticate the two routes they call with their own credentials:
// a join token to join, the agent key it got to heartbeat.
var agentPaths = map[string]bool{"/api/v2/agents/join": true, "/api/v2/agents/heartbeat": true}

func (s *Server) mountAgents(r prefixed) {
	r.HandleFunc("/join_tokens", s.listJoinTokens).Methods(http.MethodGet)
	r.HandleFunc("/join_tokens", s.createJoinToken).Methods(http.MethodPost)
	r.HandleFunc("/join_tokens/{id}", s.getJoinToken).Methods(http.MethodGet)
	r.HandleFunc("/join_tokens/{id}", s.revokeJoinToken).Methods(http.MethodDelete)
	r.HandleFunc("/agents/join", s.agentJoin).Methods(http.MethodPost)
	r.HandleFunc("/agents/heartbeat", s.agentHeartbeat).Methods(http.MethodPut, http.MethodPost)
	r.HandleFunc("/nodes/{id}/agent", s.nodeAgent).Methods(http.MethodGet)
}

// joinTokenTTL reads "ttl" as seconds or a Go duration ("1h", "30m").
type joinTokenRequest struct {
	Description string          `json:"description"`
	TTL         json.RawMessage `json:"ttl"`
}

func parseTTL(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Hour, nil
	}
	var n float64
	if err := json.Unmarshal(raw, &n); err == nil {
		if n != float64(int64(n)) {
			return 0, model.Invalid("ttl", "seconds must be a whole number, got %v", n)
		}
		return time.Duration(n) * time.Second, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, model.BadRequest("field 'ttl' must be seconds or a duration such as \"1h\"")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, model.Invalid("ttl", "'%s' is not a duration such as 1h or 30m", s)
	}
	return d, nil
}

// createJoinToken answers POST /api/v2/join_tokens (admins): the token's
// secret is in the answer and never shown again.
func (s *Server) createJoinToken(w http.ResponseWriter, r *http.Request) {
	var req joinTokenRequest
	if err := decodeStrict(r, &req); err != nil {
		writeError(w, r, "join_token", err)
		return
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		writeError(w, r, "join_token", err)
		return
	}
	jt, err := s.nodes.CreateJoinToken(r.Context(), req.Description, auth.CallerFrom(r.Context()).Username, ttl)
	if err != nil {
		writeError(w, r, "join_token", err)
		return
	}
	writeObject(w, r, http.StatusCreated, "join_token", jt)
}

func (s *Server) listJoinTokens(w http.ResponseWriter, r *http.Request) {
	list, err := s.nodes.JoinTokens(r.Context())
	if err != nil {
		writeError(w, r, "join_token", err)
		return
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(len(list)))
	writeList(w, r, "join_token", list)
}

func (s *Server) getJoinToken(w http.ResponseWriter, r *http.Request) {
	jt, err := s.nodes.JoinToken(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		writeError(w, r, "join_token", err)
		return
	}
	writeObject(w, r, http.StatusOK, "join_token", jt)
}

// revokeJoinToken answers DELETE /api/v2/join_tokens/:id: the token stops
// working at once (it stays listed as revoked).
func (s *Server) revokeJoinToken(w http.ResponseWriter, r *http.Request) {
	if _, err := s.nodes.RevokeJoinToken(r.Context(), mux.Vars(r)["id"]); err != nil {
		writeError(w, r, "join_token", err)
		return
	}
	writeEmpty(w, "join_token")
}

// agentJoin answers POST /api/v2/agents/join, authenticated by a join token.
func (s *Server) agentJoin(w http.ResponseWriter, r *http.Request) {
	agentCall(s, w, r, "a join token", func(tok string, req *agent.JoinRequest) (any, int, error) {
		res, err := s.nodes.Join(r.Context(), tok, req)
		if err != nil {
			return nil, 0, err
		}
		if res.Created {
			return res.Response, http.StatusCreated, nil
		}
		return res.Response, http.StatusOK, nil
	})
}

// agentHeartbeat answers PUT /api/v2/agents/heartbeat, authenticated by
// the agent key given at join.
func (s *Server) agentHeartbeat(w http.ResponseWriter, r *http.Request) {
	agentCall(s, w, r, "the agent key given at join", func(key string, req *agent.HeartbeatRequest) (any, int, error) {
		res, err := s.nodes.Heartbeat(r.Context(), key, req)
		return res, http.StatusOK, err
	})
}

// agentCall serves a route agents call with their own bearer credential
// (what names it): it reads the body into Req and answers what call does,
// authentication failures as the API's own (401 with challenges).
func agentCall[Req any](s *Server, w http.ResponseWriter, r *http.Request, what string, call func(credential string, req *Req) (any, int, error)) {
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Bearer ") {
		s.authFailed(w, r, &auth.Error{Kind: auth.Unauthenticated, Message: what + " is required as a Bearer credential"})
		return
	}
	var req Req
	if err := decodeStrict(r, &req); err != nil {
		writeError(w, r, "agent", err)
		return
	}
	out, status, err := call(strings.TrimSpace(strings.TrimPrefix(h, "Bearer ")), &req)
	if _, isAuth := auth.AsError(err); isAuth {
		s.authFailed(w, r, err)
		return
	}
	if err != nil {
		writeError(w, r, "agent", err)
		return
	}
	writeObject(w, r, status, "agent", out)
}

// nodeAgentView is GET /nodes/:id/agent's answer.
type nodeAgentView struct {
	*model.NodeAgent
	Node string `json:"node"`
	// Alive is whether heartbeats arrive in time.
	Alive bool `json:"alive"`
	// Reachable and RoundTrip are set with ?ping=true: core.ping through
	// the server's transport.
	Reachable *bool   `json:"reachable,omitempty"`
	RoundTrip float64 `json:"round_trip_ms,omitempty"`
}

// nodeAgent answers GET /api/v2/nodes/:id/agent: how the server reaches
// the node's agent and, with ?ping=true, whether it answers (502 or 504
// naming the node when it does not).
func (s *Server) nodeAgent(w http.ResponseWriter, r *http.Request) {
	node, err := s.res.nodes.Find(r.Context(), s.store.DB, mux.Vars(r)["id"])
	if err != nil {
		writeError(w, r, "agent", err)
		return
	}
	na, err := s.nodes.Agent(r.Context(), node.ID)
	if err != nil {
		writeError(w, r, "agent", &model.NotFoundError{Kind: "agent of node", Key: node.Name})
		return
	}
	view := nodeAgentView{NodeAgent: na, Node: node.Name, Alive: node.Alive}
	if r.URL.Query().Get("ping") == "true" {
		c, err := s.transport.Client(r.Context(), node)
		if err != nil {
			writeError(w, r, "agent", err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		if err := c.Ping(ctx); err != nil {
			writeError(w, r, "agent", err)
			return
		}
		yes := true
		view.Reachable = &yes
		view.RoundTrip = float64(time.Since(start).Microseconds()) / 1000
	}
	writeObject(w, r, http.StatusOK, "agent", view)
}

// NodeCommand sends a barclamp's core0 command to a node after checking who
// may (plugins.NodeCommander).
func (s *Server) NodeCommand(ctx context.Context, origin nodes.Origin, call nodes.Call) (*core0.Result, error) {
	return s.nodes.Command(ctx, s.transport, origin, call)
}

// bindDiscovery binds the roles flagged discovery (crowbar-managed-node)
// to a node an agent's join created, in its deployment where their
// barclamp is enabled, and commits them: a machine is managed from the
// moment it is discovered, as OpenCrowbar's sledgehammer made it.
func (s *Server) bindDiscovery(n *model.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var bound []string
	err := s.change(ctx, func(tx *gorm.DB, ch *anneal.Changes) error {
		bound = bound[:0]
		var roles []model.Role
		if err := tx.Where("discovery = ?", true).Order("id").Find(&roles).Error; err != nil {
			return err
		}
		for _, r := range roles {
			var have int64
			if err := tx.Model(&model.NodeRole{}).Where("node_id = ? AND role_id = ?", n.ID, r.ID).Count(&have).Error; err != nil {
				return err
			}
			if have > 0 {
				continue
			}
			if ok, err := barclamp.IsEnabled(ctx, tx, n.DeploymentID, r.BarclampID); err != nil {
				return err
			} else if !ok {
				continue
			}
			if _, err := anneal.Bind(ctx, tx, n.ID, r.ID, 0, ch); err != nil {
				return fmt.Errorf("bind %s: %w", r.Name, err)
			}
			bound = append(bound, r.Name)
		}
		if len(bound) == 0 {
			return nil
		}
		return anneal.CommitNode(tx, n, ch)
	})
	if err != nil {
		s.log.Error("a discovered node's discovery roles could not be bound; bind them by hand", "node", n.Name, "error", err)
		return
	}
	if len(bound) > 0 {
		s.log.Info("discovered node: discovery roles bound and committed", "node", n.Name, "roles", bound)
	}
}
