// Package nodes is the server's side of node agents: join tokens, agents
// joining (which creates or updates their node), heartbeats and the
// liveness they imply, and the transport that sends core0 commands to a
// node's agent. It knows nothing of HTTP.
package nodes

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/hashicorp/go-hclog"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Config configures a Service.
type Config struct {
	// DefaultDomain is appended to a joining host's name when it has no
	// domain (default "crowbar.internal").
	DefaultDomain string
	// Heartbeat is the interval agents are told to heartbeat at (default 10 s).
	Heartbeat time.Duration
	// DeadAfter marks a node not alive when no heartbeat came for this long
	// (default three heartbeats).
	DeadAfter time.Duration
	// MaxJoinTokenTTL caps a join token's lifetime (default 365 days).
	MaxJoinTokenTTL time.Duration
	// NodeCreated and NodeChanged run after a join committed.
	NodeCreated func(*model.Node)
	NodeChanged func(*model.Node)
	Logger      hclog.Logger
	Now         func() time.Time
}

// Service manages join tokens, joins and heartbeats.
type Service struct {
	st   *store.Store
	auth *auth.Service
	cfg  Config
	log  hclog.Logger
}

// New returns the service.
func New(st *store.Store, a *auth.Service, cfg Config) *Service {
	if cfg.DefaultDomain == "" {
		cfg.DefaultDomain = "crowbar.internal"
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 10 * time.Second
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = 3 * cfg.Heartbeat
	}
	if cfg.MaxJoinTokenTTL <= 0 {
		cfg.MaxJoinTokenTTL = 365 * 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC() }
	}
	return &Service{st: st, auth: a, cfg: cfg, log: cfg.Logger}
}

// Config returns the settings in force.
func (s *Service) Config() Config { return s.cfg }

// Join-token secrets start with this, so they are recognisable in logs and
// secret scanners.
const (
	joinTokenPrefix = "cbj_"
	agentKeyPrefix  = "cba_"
)

func secret(prefix string) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func unauthenticated(format string, args ...any) error {
	return &auth.Error{Kind: auth.Unauthenticated, Message: fmt.Sprintf(format, args...)}
}

// CreateJoinToken makes a join token valid for ttl; the secret is in the
// returned token's Token field and is never shown again.
func (s *Service) CreateJoinToken(ctx context.Context, description, createdBy string, ttl time.Duration) (*model.JoinToken, error) {
	if ttl <= 0 || ttl > s.cfg.MaxJoinTokenTTL {
		return nil, model.Invalid("ttl", "must be between 1s and %s, got %s", s.cfg.MaxJoinTokenTTL, ttl)
	}
	if len(description) > 1000 {
		return nil, model.Invalid("description", "may not be longer than 1000 characters")
	}
	tok, err := secret(joinTokenPrefix)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	jt := &model.JoinToken{Description: description, TokenHash: hash(tok), CreatedBy: createdBy,
		ExpiresAt: now.Add(ttl).Truncate(time.Second)}
	if err := s.st.WithContext(ctx).Create(jt).Error; err != nil {
		return nil, err
	}
	jt.Token = tok
	s.present(jt)
	return jt, nil
}

func (s *Service) present(jt *model.JoinToken) {
	switch {
	case jt.RevokedAt != nil:
		jt.State = "revoked"
	case !s.cfg.Now().Before(jt.ExpiresAt):
		jt.State = "expired"
	default:
		jt.State = "active"
	}
}

// JoinTokens lists the join tokens, newest first (secrets are not kept).
func (s *Service) JoinTokens(ctx context.Context) ([]model.JoinToken, error) {
	var out []model.JoinToken
	if err := s.st.WithContext(ctx).Order("id DESC").Find(&out).Error; err != nil {
		return nil, err
	}
	for i := range out {
		s.present(&out[i])
	}
	return out, nil
}

// JoinToken returns one join token by id.
func (s *Service) JoinToken(ctx context.Context, key string) (*model.JoinToken, error) {
	jt, err := store.Find[model.JoinToken](ctx, s.st.DB, "join token", "", key)
	if err != nil {
		return nil, err
	}
	s.present(jt)
	return jt, nil
}

// RevokeJoinToken makes a join token unusable. Revoking twice is not an
// error; agents that joined with it keep their identity.
func (s *Service) RevokeJoinToken(ctx context.Context, key string) (*model.JoinToken, error) {
	var jt *model.JoinToken
	err := s.st.Tx(ctx, func(tx *gorm.DB) error {
		var err error
		jt, err = store.Find[model.JoinToken](ctx, tx.Clauses(clause.Locking{Strength: "UPDATE"}), "join token", "", key)
		if err != nil {
			return err
		}
		if jt.RevokedAt == nil {
			now := s.cfg.Now()
			jt.RevokedAt = &now
			return tx.Model(jt).Updates(map[string]any{"revoked_at": now, "updated_at": now}).Error
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.present(jt)
	return jt, nil
}

// JoinResult is what Join hands back to the agent.
type JoinResult struct {
	Node     *model.Node
	Response agent.JoinResponse
	Created  bool
}

// ZeroOSID is a node's Zero-OS id: its primary MAC without colons.
func ZeroOSID(mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "", model.Invalid("mac", "'%s' is not a MAC address", mac)
	}
	return strings.ReplaceAll(hw.String(), ":", ""), nil
}

// macName is the seed's name for a node known by its MAC only:
// d52-54-00-12-34-56.<domain>.
func macName(mac, domain string) string {
	return "d" + strings.ReplaceAll(mac, ":", "-") + "." + domain
}

// nodeName picks the name for a joining node: the override, else the
// host's FQDN (the default domain added to a bare host name), else the
// MAC name when the host name is not a valid node name.
func (s *Service) nodeName(req *agent.JoinRequest, mac string) (string, error) {
	if req.Name != "" {
		if err := model.ValidFQDN("name", req.Name); err != nil {
			return "", err
		}
		return strings.ToLower(req.Name), nil
	}
	host := strings.ToLower(strings.TrimSuffix(req.Hostname, "."))
	if host != "" && !strings.Contains(host, ".") {
		host += "." + s.cfg.DefaultDomain
	}
	if host == "" || model.ValidFQDN("name", host) != nil {
		return macName(mac, s.cfg.DefaultDomain), nil
	}
	return host, nil
}

func checkAgentInfo(info agent.AgentInfo) error {
	host, port, err := net.SplitHostPort(info.Address)
	if err != nil || host == "" || port == "" {
		return model.Invalid("agent.address", "'%s' must be host:port", info.Address)
	}
	if info.TLS {
		fp := strings.ToLower(info.Fingerprint)
		if len(fp) != 64 || strings.Trim(fp, "0123456789abcdef") != "" {
			return model.Invalid("agent.fingerprint", "must be the hex SHA-256 of the agent's certificate")
		}
	}
	return nil
}

// Join admits an agent holding a valid join token: it creates its node (or
// updates the node with the same Zero-OS id, or an agent-less node of the
// same name), records how to reach the agent and hands back a fresh agent
// key, replacing any earlier identity.
func (s *Service) Join(ctx context.Context, token string, req *agent.JoinRequest) (*JoinResult, error) {
	if !strings.HasPrefix(token, joinTokenPrefix) {
		return nil, unauthenticated("a join token (cbj_…) is required: create one with POST /api/v2/join_tokens")
	}
	zid, err := ZeroOSID(req.MAC)
	if err != nil {
		return nil, err
	}
	if err := checkAgentInfo(req.Agent); err != nil {
		return nil, err
	}
	mac, _ := net.ParseMAC(req.MAC)
	name, err := s.nodeName(req, mac.String())
	if err != nil {
		return nil, err
	}
	key, err := secret(agentKeyPrefix)
	if err != nil {
		return nil, err
	}
	tokenKey, err := s.auth.TokenKeyPEM()
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	res := &JoinResult{}
	err = s.st.Tx(ctx, func(tx *gorm.DB) error {
		var jt model.JoinToken
		err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("token_hash = ?", hash(token)).Take(&jt).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			return unauthenticated("the join token is not valid")
		case err != nil:
			return err
		case jt.RevokedAt != nil:
			return unauthenticated("the join token %d was revoked at %s", jt.ID, jt.RevokedAt.UTC().Format(time.RFC3339))
		case !now.Before(jt.ExpiresAt):
			return unauthenticated("the join token %d expired at %s", jt.ID, jt.ExpiresAt.UTC().Format(time.RFC3339))
		}
		node, err := s.findJoiningNode(tx, zid, name)
		if err != nil {
			return err
		}
		if node != nil && node.Name != name {
			// A node keeps its name across re-joins unless asked otherwise.
			if req.Name != "" && !s.nameTaken(tx, req.Name, node.ID) {
				node.Name = name
			}
		}
		if node == nil {
			if s.nameTaken(tx, name, 0) {
				name = macName(mac.String(), s.cfg.DefaultDomain)
			}
			node = &model.Node{Name: name, DeploymentID: model.SystemDeploymentID}
			node.Defaults()
			// The MAC it joined with is its admin MAC: the provisioner
			// reserves its admin address for it in DHCP.
			hint, _ := json.Marshal(map[string]any{"admin_macs": []string{mac.String()}})
			node.Hint = model.JSON(hint)
			res.Created = true
		}
		node.Normalize()
		node.Alive, node.Available = true, true
		node.Discovery = mergeDiscovery(node.Discovery, req, zid)
		if err := store.Translate(tx.Save(node).Error); err != nil {
			return err
		}
		na := model.NodeAgent{NodeID: node.ID, ZeroOSID: zid, Address: req.Agent.Address, TLS: req.Agent.TLS,
			Fingerprint: strings.ToLower(req.Agent.Fingerprint), KeyHash: hash(key), Version: req.Agent.Version,
			JoinTokenID: &jt.ID, JoinedAt: now, LastHeartbeat: now}
		// Another node holding this Zero-OS id (a machine renamed by
		// hand) gives it up: the id follows the machine.
		if err := tx.Where("zero_os_id = ? AND node_id <> ?", zid, node.ID).Delete(&model.NodeAgent{}).Error; err != nil {
			return err
		}
		if err := tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "node_id"}}, UpdateAll: true}).Create(&na).Error; err != nil {
			return store.Translate(err)
		}
		if err := tx.Model(&jt).Updates(map[string]any{"uses": gorm.Expr("uses + 1"), "last_used_at": now}).Error; err != nil {
			return err
		}
		res.Node = node
		res.Response = agent.JoinResponse{NodeID: node.ID, Name: node.Name, ZeroOSID: zid, AgentKey: key,
			TokenKey: tokenKey, HeartbeatInterval: int(s.cfg.Heartbeat / time.Second)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("agent joined", "node", res.Node.Name, "zero_os_id", zid, "address", req.Agent.Address, "created", res.Created)
	if res.Created && s.cfg.NodeCreated != nil {
		s.cfg.NodeCreated(res.Node)
	}
	if s.cfg.NodeChanged != nil {
		s.cfg.NodeChanged(res.Node)
	}
	return res, nil
}

// findJoiningNode finds the node an agent is joining as: the one with its
// Zero-OS id, else an agent-less node of the same name.
func (s *Service) findJoiningNode(tx *gorm.DB, zid, name string) (*model.Node, error) {
	var na model.NodeAgent
	err := tx.Where("zero_os_id = ?", zid).Take(&na).Error
	if err == nil {
		var n model.Node
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", na.NodeID).Take(&n).Error; err != nil {
			return nil, err
		}
		return &n, nil
	}
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, err
	}
	var n model.Node
	err = tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("name = ?", name).Take(&n).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var count int64
	if err := tx.Model(&model.NodeAgent{}).Where("node_id = ?", n.ID).Count(&count).Error; err != nil {
		return nil, err
	}
	if count > 0 {
		// Another machine's node: this one gets a name of its own.
		return nil, nil
	}
	return &n, nil
}

func (s *Service) nameTaken(tx *gorm.DB, name string, except int64) bool {
	var n int64
	tx.Model(&model.Node{}).Where("name = ? AND id <> ?", name, except).Count(&n)
	return n > 0
}

// mergeDiscovery writes what the agent reported under the discovery keys
// it owns, keeping the others.
func mergeDiscovery(old model.JSON, req *agent.JoinRequest, zid string) model.JSON {
	m := map[string]any{}
	if len(old) > 0 {
		json.Unmarshal(old, &m) //nolint:errcheck // a corrupt value is replaced
	}
	m["zero_os"] = map[string]any{"id": zid}
	m["hostname"] = req.Hostname
	m["macs"] = req.MACs
	m["mac"] = req.MAC
	m["addresses"] = req.Addresses
	m["hardware"] = req.Hardware
	m["agent"] = map[string]any{"address": req.Agent.Address, "tls": req.Agent.TLS,
		"fingerprint": strings.ToLower(req.Agent.Fingerprint), "version": req.Agent.Version}
	b, _ := json.Marshal(m)
	return model.JSON(b)
}

// Heartbeat records that the agent holding key is alive and where it is.
func (s *Service) Heartbeat(ctx context.Context, key string, req *agent.HeartbeatRequest) (*agent.HeartbeatResponse, error) {
	if !strings.HasPrefix(key, agentKeyPrefix) {
		return nil, unauthenticated("an agent key (cba_…, given at join) is required")
	}
	if req.Agent.Address != "" {
		if err := checkAgentInfo(agent.AgentInfo{Address: req.Agent.Address}); err != nil {
			return nil, err
		}
	}
	tokenKey, err := s.auth.TokenKeyPEM()
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	var node model.Node
	revived := false
	err = s.st.Tx(ctx, func(tx *gorm.DB) error {
		var na model.NodeAgent
		err := tx.Where("key_hash = ?", hash(key)).Take(&na).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return unauthenticated("this agent's identity is unknown: its node was deleted or it joined again elsewhere")
		}
		if err != nil {
			return err
		}
		up := map[string]any{"last_heartbeat": now}
		if req.Agent.Address != "" && req.Agent.Address != na.Address {
			up["address"] = req.Agent.Address
		}
		if req.Agent.Fingerprint != "" && !strings.EqualFold(req.Agent.Fingerprint, na.Fingerprint) {
			s.log.Warn("agent reports a certificate other than the one it joined with; it must join again to change it",
				"node_id", na.NodeID, "pinned", na.Fingerprint, "reported", req.Agent.Fingerprint)
		}
		if err := tx.Model(&model.NodeAgent{}).Where("node_id = ?", na.NodeID).Updates(up).Error; err != nil {
			return err
		}
		if err := tx.Where("id = ?", na.NodeID).Take(&node).Error; err != nil {
			return err
		}
		if !node.Alive {
			revived = true
			node.Alive = true
			return tx.Model(&node).Updates(map[string]any{"alive": true, "updated_at": now}).Error
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if revived {
		s.log.Info("node is alive again: its agent's heartbeat arrived", "node", node.Name)
		if s.cfg.NodeChanged != nil {
			s.cfg.NodeChanged(&node)
		}
	}
	return &agent.HeartbeatResponse{TokenKey: tokenKey, HeartbeatInterval: int(s.cfg.Heartbeat / time.Second)}, nil
}

// MarkDead marks not alive every node whose agent missed its heartbeats
// for DeadAfter. It is one idempotent statement, so every replica may run
// it; it returns how many nodes it changed.
func (s *Service) MarkDead(ctx context.Context) (int64, error) {
	now := s.cfg.Now()
	cutoff := now.Add(-s.cfg.DeadAfter)
	res := s.st.WithContext(ctx).Model(&model.Node{}).
		Where("alive = ? AND id IN (?)", true,
			s.st.DB.Model(&model.NodeAgent{}).Select("node_id").Where("last_heartbeat < ?", cutoff)).
		Updates(map[string]any{"alive": false, "updated_at": now})
	if res.Error != nil {
		return 0, res.Error
	}
	if res.RowsAffected > 0 {
		s.log.Warn("nodes marked not alive: their agents missed heartbeats", "count", res.RowsAffected, "window", s.cfg.DeadAfter)
	}
	return res.RowsAffected, nil
}

// Watch runs MarkDead every third of DeadAfter until ctx ends.
func (s *Service) Watch(ctx context.Context) {
	t := time.NewTicker(s.cfg.DeadAfter / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.MarkDead(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("mark nodes with silent agents not alive", "error", err)
			}
		}
	}
}

// Agent returns how to reach node nodeID's agent.
func (s *Service) Agent(ctx context.Context, nodeID int64) (*model.NodeAgent, error) {
	var na model.NodeAgent
	err := s.st.WithContext(ctx).Where("node_id = ?", nodeID).Take(&na).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, &model.NotFoundError{Kind: "agent of node", Key: fmt.Sprint(nodeID)}
	}
	return &na, err
}
