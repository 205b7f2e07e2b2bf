package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/mem"
)

// JoinRequest is what an agent tells the server when it joins.
type JoinRequest struct {
	Name      string    `json:"name,omitempty"` // an override; else the server names the node from Hostname
	Hostname  string    `json:"hostname"`
	MAC       string    `json:"mac"` // the primary MAC: the node's Zero-OS id without colons
	MACs      []string  `json:"macs"`
	Addresses []string  `json:"addresses"`
	Agent     AgentInfo `json:"agent"`
	Hardware  Hardware  `json:"hardware"`
}

// AgentInfo is how the server reaches the agent.
type AgentInfo struct {
	Address     string `json:"address"` // host:port
	TLS         bool   `json:"tls"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Version     string `json:"version,omitempty"`
}

// Hardware is a summary for the node's discovery data.
type Hardware struct {
	CPUs   int    `json:"cpus"`
	Memory uint64 `json:"memory"`
	Arch   string `json:"arch"`
	OS     string `json:"os"`
}

// JoinResponse is what the server hands back.
type JoinResponse struct {
	NodeID            int64  `json:"node_id"`
	Name              string `json:"name"`
	ZeroOSID          string `json:"zero_os_id"`
	AgentKey          string `json:"agent_key"`
	TokenKey          string `json:"token_key"`
	HeartbeatInterval int    `json:"heartbeat_interval"`
}

// HeartbeatRequest refreshes how the server reaches the agent.
type HeartbeatRequest struct {
	Agent AgentInfo `json:"agent"`
}

// HeartbeatResponse carries the current token key and interval.
type HeartbeatResponse struct {
	TokenKey          string `json:"token_key"`
	HeartbeatInterval int    `json:"heartbeat_interval"`
}

// RefusedError is the server refusing the agent (a revoked or expired join
// token, a replaced identity): retrying will not help.
type RefusedError struct {
	Status  int
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("the crowbar server refused this agent (%d): %s", e.Status, e.Message)
}

// joinAndBeat joins (or resumes with the identity of an earlier join) and
// heartbeats until ctx ends. Only a refusal ends it early.
func (a *Agent) joinAndBeat(ctx context.Context) error {
	client, err := a.httpClient()
	if err != nil {
		return err
	}
	interval := a.cfg.Heartbeat
	resumed := false
	if id := a.identity; id != nil && id.AgentKey != "" && id.Server == a.cfg.Server {
		// An agent restarted long after its join token expired resumes
		// with the key it got at join.
		hb, err := a.heartbeat(ctx, client, id.AgentKey)
		var refused *RefusedError
		switch {
		case err == nil:
			resumed = true
			a.applyHeartbeat(hb, &interval)
			a.log.Info("resumed as an already joined node", "node", id.Name, "zero_os_id", id.ZeroOSID)
		case errors.As(err, &refused) && a.cfg.JoinToken != "":
			a.log.Warn("the server no longer knows this agent's identity; joining again", "reason", refused.Message)
		case errors.As(err, &refused):
			return fmt.Errorf("%w; give the agent a join token to join again", err)
		default:
			a.log.Warn("heartbeat failed; will retry", "error", err)
			resumed = true // keep the identity; the server may just be down
		}
	}
	if !resumed {
		if a.cfg.JoinToken == "" {
			return errors.New("no join token: give --join-token (or --join-token-file) to join the server")
		}
		if err := a.joinWithRetry(ctx, client, &interval); err != nil {
			return err
		}
	}
	backoff := time.Second
	for {
		if interval <= 0 {
			interval = 10 * time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		hb, err := a.heartbeat(ctx, client, a.identity.AgentKey)
		var refused *RefusedError
		switch {
		case err == nil:
			backoff = time.Second
			a.applyHeartbeat(hb, &interval)
		case errors.As(err, &refused) && a.cfg.JoinToken != "":
			a.log.Warn("heartbeat refused; joining again", "reason", refused.Message)
			if err := a.joinWithRetry(ctx, client, &interval); err != nil {
				return err
			}
		case errors.As(err, &refused):
			return err
		default:
			if ctx.Err() != nil {
				return nil
			}
			a.log.Warn("heartbeat failed; will retry", "error", err, "in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			if backoff < 30*time.Second {
				backoff *= 2
			}
		}
	}
}

func (a *Agent) applyHeartbeat(hb *HeartbeatResponse, interval *time.Duration) {
	if hb.TokenKey != "" && hb.TokenKey != a.identity.TokenKey {
		if err := a.setTokenKey(hb.TokenKey); err != nil {
			a.log.Error("the server sent a token key that does not parse", "error", err)
			return
		}
		a.identity.TokenKey = hb.TokenKey
		if err := saveIdentity(a.cfg.StateDir, a.identity); err != nil {
			a.log.Error("save identity", "error", err)
		}
	}
	if a.cfg.Heartbeat == 0 && hb.HeartbeatInterval > 0 {
		*interval = time.Duration(hb.HeartbeatInterval) * time.Second
	}
}

// joinWithRetry joins, retrying while the server cannot be reached.
func (a *Agent) joinWithRetry(ctx context.Context, client *http.Client, interval *time.Duration) error {
	backoff := time.Second
	for {
		resp, err := a.join(ctx, client)
		var refused *RefusedError
		switch {
		case err == nil:
			id := &identity{Server: a.cfg.Server, NodeID: resp.NodeID, Name: resp.Name, ZeroOSID: resp.ZeroOSID,
				AgentKey: resp.AgentKey, TokenKey: resp.TokenKey}
			if err := a.setTokenKey(resp.TokenKey); err != nil {
				return err
			}
			if err := saveIdentity(a.cfg.StateDir, id); err != nil {
				return fmt.Errorf("save identity: %w", err)
			}
			a.mu.Lock()
			a.identity = id
			a.mu.Unlock()
			if a.cfg.Heartbeat == 0 && resp.HeartbeatInterval > 0 {
				*interval = time.Duration(resp.HeartbeatInterval) * time.Second
			}
			a.log.Info("joined the crowbar server", "server", a.cfg.Server, "node", resp.Name, "zero_os_id", resp.ZeroOSID)
			return nil
		case errors.As(err, &refused):
			return err
		}
		a.log.Warn("join failed; will retry", "server", a.cfg.Server, "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		if backoff < 30*time.Second {
			backoff *= 2
		}
	}
}

func (a *Agent) join(ctx context.Context, client *http.Client) (*JoinResponse, error) {
	req, err := a.describe()
	if err != nil {
		return nil, err
	}
	var out JoinResponse
	if err := a.post(ctx, client, http.MethodPost, "/api/v2/agents/join", a.cfg.JoinToken, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (a *Agent) heartbeat(ctx context.Context, client *http.Client, key string) (*HeartbeatResponse, error) {
	info, err := a.agentInfo()
	if err != nil {
		return nil, err
	}
	var out HeartbeatResponse
	if err := a.post(ctx, client, http.MethodPut, "/api/v2/agents/heartbeat", key, HeartbeatRequest{Agent: info}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// post sends body as JSON with a bearer credential and decodes the answer;
// 401 and 403 are refusals, other failures may pass.
func (a *Agent) post(ctx context.Context, client *http.Client, method, path, credential string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(a.cfg.Server, "/")+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+credential)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden ||
			resp.StatusCode == http.StatusUnprocessableEntity || resp.StatusCode == http.StatusBadRequest {
			return &RefusedError{Status: resp.StatusCode, Message: e.Message}
		}
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, e.Message)
	}
	return json.Unmarshal(data, out)
}

func (a *Agent) httpClient() (*http.Client, error) {
	u, err := url.Parse(a.cfg.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want an http:// or https:// URL", a.cfg.Server)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if len(a.cfg.ServerCA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(a.cfg.ServerCA) {
			return nil, errors.New("the server CA file holds no PEM certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}

// describe gathers the join request: names, MACs, addresses, hardware.
func (a *Agent) describe() (*JoinRequest, error) {
	info, err := a.agentInfo()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	nics, err := scanNICs()
	if err != nil {
		return nil, err
	}
	mac := a.cfg.MAC
	if mac == "" {
		mac = nics.primary
	}
	if mac == "" {
		return nil, errors.New("this host has no network interface with a MAC address to identify it; give --mac")
	}
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return nil, fmt.Errorf("--mac %q is not a MAC address", mac)
	}
	req := &JoinRequest{Name: a.cfg.Name, Hostname: host, MAC: hw.String(), MACs: nics.macs, Addresses: nics.addrs,
		Agent: info, Hardware: Hardware{CPUs: runtime.NumCPU(), Arch: runtime.GOARCH, OS: runtime.GOOS}}
	if vm, err := mem.VirtualMemory(); err == nil {
		req.Hardware.Memory = vm.Total
	}
	return req, nil
}

// agentInfo is how the server reaches this agent: the advertised address,
// or the local address towards the server with the listening port.
func (a *Agent) agentInfo() (AgentInfo, error) {
	info := AgentInfo{TLS: a.cert != nil, Fingerprint: a.fp, Version: a.cfg.Version}
	if a.cfg.Advertise != "" {
		info.Address = a.cfg.Advertise
		return info, nil
	}
	a.mu.Lock()
	addr := a.addr
	a.mu.Unlock()
	if addr == nil {
		return info, errors.New("the agent is not listening yet")
	}
	_, port, _ := net.SplitHostPort(addr.String())
	host, _, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = localAddressTowards(a.cfg.Server)
	}
	info.Address = net.JoinHostPort(host, port)
	return info, nil
}

// localAddressTowards returns the address this host uses to reach the
// server (a UDP "connection" sends nothing).
func localAddressTowards(server string) string {
	u, err := url.Parse(server)
	if err != nil {
		return "127.0.0.1"
	}
	host := u.Hostname()
	port := u.Port()
	if port == "" {
		port = "80"
	}
	c, err := net.Dial("udp", net.JoinHostPort(host, port))
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}

type nicScan struct {
	primary string
	macs    []string
	addrs   []string
}

// scanNICs lists MACs and addresses; the primary MAC is the default
// route's interface's, else the first non-loopback interface's with one.
func scanNICs() (nicScan, error) {
	var s nicScan
	ifs, err := net.Interfaces()
	if err != nil {
		return s, fmt.Errorf("list network interfaces: %w", err)
	}
	sort.Slice(ifs, func(i, j int) bool { return ifs[i].Index < ifs[j].Index })
	def := defaultRouteInterface()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if len(ifc.HardwareAddr) == 6 && ifc.HardwareAddr.String() != "00:00:00:00:00:00" {
			mac := ifc.HardwareAddr.String()
			s.macs = append(s.macs, mac)
			if ifc.Name == def || (s.primary == "" && def == "") {
				s.primary = mac
			}
		}
		addrs, _ := ifc.Addrs()
		for _, ad := range addrs {
			s.addrs = append(s.addrs, ad.String())
		}
	}
	if s.primary == "" && len(s.macs) > 0 {
		s.primary = s.macs[0]
	}
	if s.macs == nil {
		s.macs = []string{}
	}
	if s.addrs == nil {
		s.addrs = []string{}
	}
	return s, nil
}

// defaultRouteInterface reads the calling thread's routes for the
// interface of the IPv4 default route ("" when there is none).
// (/proc/net is the main thread's view, which a locked thread may briefly
// have moved into a container's namespace.)
func defaultRouteInterface() string {
	b, err := os.ReadFile("/proc/thread-self/net/route")
	if err != nil {
		b, err = os.ReadFile("/proc/net/route")
	}
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == "00000000" && f[2] != "" {
			return f[0]
		}
	}
	return ""
}
