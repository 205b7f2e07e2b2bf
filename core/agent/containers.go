package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/google/uuid"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// CreateArgs are corex.create's arguments (Zero-OS's names).
type CreateArgs struct {
	Root        string            `json:"root"`
	Mount       map[string]string `json:"mount"`
	HostNetwork bool              `json:"host_network"`
	Nics        []Nic             `json:"nics"`
	Port        map[string]int    `json:"port"`
	Hostname    string            `json:"hostname"`
	Privileged  bool              `json:"privileged"`
	Storage     string            `json:"storage"`
	Name        string            `json:"name"`
	Identity    string            `json:"identity"`
	Env         map[string]string `json:"env"`
	Cgroups     json.RawMessage   `json:"cgroups,omitempty"`
	Tags        []string          `json:"tags"`
}

// Nic is one network interface of a container.
type Nic struct {
	Type    string     `json:"type"`
	ID      string     `json:"id"`
	Name    string     `json:"name"`
	HWAddr  string     `json:"hwaddr"`
	Config  *NicConfig `json:"config"`
	Monitor bool       `json:"monitor"`
}

// NicConfig is a nic's addressing.
type NicConfig struct {
	DHCP    bool     `json:"dhcp"`
	CIDR    string   `json:"cidr"`
	Gateway string   `json:"gateway"`
	DNS     []string `json:"dns"`
}

// container is one container the agent runs.
type container struct {
	ID        int        `json:"id"`
	Args      CreateArgs `json:"arguments"`
	PID       int        `json:"pid"`
	Root      string     `json:"root"`   // the resolved lower layer
	Dir       string     `json:"dir"`    // <state>/containers/<id>
	Links     []string   `json:"links"`  // host-side interfaces to delete
	IPs       []string   `json:"ips"`    // addresses given from the container range
	Addrs     []string   `json:"addrs"`  // every address the nics got (cidr)
	Status    string     `json:"status"` // running or halted
	StartTime int64      `json:"starttime"`
	DNS       []string   `json:"dns,omitempty"` // name servers DHCP gave

	mu      *sync.Mutex // the containers' lock: guards every field that changes
	client  *core0.Client
	proxies []*proxy
	exited  chan struct{}
	leases  []nicLease // DHCP leases to renew
	// files serializes writing the record with removing the directory;
	// removed (under files) makes later writes no-ops, so a record saved
	// as the init dies cannot recreate the directory destroy removed.
	files   sync.Mutex
	removed bool
}

type nicLease struct {
	nic   string
	lease *nclient4.Lease
}

func (c *container) socket() string { return filepath.Join(c.Dir, "corex.sock") }

// containers manages the agent's containers; their records live in
// <state>/containers/<id>/container.json so a restarted agent finds them.
type containers struct {
	a     *Agent
	dir   string
	roots *roots
	net   *cnet

	mu   sync.Mutex
	m    map[int]*container
	busy map[string]bool // names being created

	// adopted is closed once adopt has taken over or cleaned up what an
	// earlier agent left: the agent answers before that (pings, jobs), but
	// container commands wait, so none sees a dead container still listed
	// or misses a live one.
	adopted chan struct{}
}

func newContainers(a *Agent) (*containers, error) {
	dir := filepath.Join(a.cfg.StateDir, "containers")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	rdir := filepath.Join(a.cfg.StateDir, "roots")
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return nil, err
	}
	n, err := newCnet(a.cfg.ContainerRange)
	if err != nil {
		return nil, err
	}
	n.log = a.log
	// Several agents may share a host (tests, labs): their links must not
	// clash, so each marks them with a tag of its state directory.
	h := fnv.New32a()
	h.Write([]byte(a.cfg.StateDir)) //nolint:errcheck
	n.tag = fmt.Sprintf("%04x", h.Sum32()&0xffff)
	return &containers{a: a, dir: dir, roots: &roots{dir: rdir}, net: n, m: map[int]*container{}, busy: map[string]bool{}, adopted: make(chan struct{})}, nil
}

var containerName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// create makes and starts a container; it answers its id once the coreX
// inside answers.
func (cs *containers) create(ctx context.Context, args CreateArgs, tags []string) (int, error) {
	if args.Name != "" && !containerName.MatchString(args.Name) {
		return 0, badRequest("corex.create: name %q: use letters, digits and . _ - (at most 63)", args.Name)
	}
	if args.Hostname != "" && !containerName.MatchString(args.Hostname) {
		return 0, badRequest("corex.create: hostname %q is not a host name", args.Hostname)
	}
	for host := range args.Mount {
		if _, err := os.Stat(host); err != nil {
			return 0, notFound("corex.create: mount source %q: %v", host, err)
		}
	}
	if args.HostNetwork {
		args.Nics = nil
	} else if err := cs.net.check(args); err != nil {
		return 0, err
	}
	ports, err := parsePorts(args.Port, args.HostNetwork)
	if err != nil {
		return 0, err
	}
	if len(tags) > 0 {
		args.Tags = tags
	}
	lower, err := cs.roots.resolve(ctx, args.Root)
	if err != nil {
		return 0, err
	}

	cs.mu.Lock()
	if args.Name != "" {
		if cs.busy[args.Name] || cs.byNameLocked(args.Name) != nil {
			cs.mu.Unlock()
			return 0, &cmdError{code: core0.CodeConflict, msg: fmt.Sprintf("corex.create: a container named %q already exists", args.Name)}
		}
		cs.busy[args.Name] = true
		defer func() { cs.mu.Lock(); delete(cs.busy, args.Name); cs.mu.Unlock() }()
	}
	id := 1
	for cs.m[id] != nil || fileExists(filepath.Join(cs.dir, strconv.Itoa(id))) {
		id++
	}
	c := &container{ID: id, Args: args, Root: lower, Dir: filepath.Join(cs.dir, strconv.Itoa(id)), Status: "starting",
		StartTime: time.Now().UnixMilli(), exited: make(chan struct{}), mu: &cs.mu}
	cs.m[id] = c
	cs.mu.Unlock()
	if args.Hostname == "" {
		c.Args.Hostname = fmt.Sprintf("core-%d", id)
	}
	if err := cs.start(ctx, c, ports); err != nil {
		cs.destroy(c)
		return 0, err
	}
	return id, nil
}

// start runs the container's PID 1 in new namespaces, wires its network
// and waits for its coreX to answer.
func (cs *containers) start(ctx context.Context, c *container, ports []portSpec) error {
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return err
		}
	}
	cfg := coreXConfig{ID: c.ID, Hostname: c.Args.Hostname, Lower: c.Root, Upper: filepath.Join(c.Dir, "upper"),
		Work: filepath.Join(c.Dir, "work"), Merged: filepath.Join(c.Dir, "merged"), Mounts: c.Args.Mount,
		Socket: c.socket(), Env: c.Args.Env, MaxOutput: cs.a.cfg.MaxOutput}
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil && !c.Args.HostNetwork {
		cfg.Resolv = string(b)
	}
	if dns := nicDNS(c.Args.Nics); len(dns) > 0 {
		cfg.Resolv = "nameserver " + strings.Join(dns, "\nnameserver ") + "\n"
	}
	raw, _ := json.Marshal(cfg)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(c.Dir, "corex.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self)
	cmd.Args = []string{"corex-" + strconv.Itoa(c.ID)}
	cmd.Env = []string{coreXEnv + "=" + string(raw)}
	cmd.Stdout, cmd.Stderr = logf, logf
	flags := uintptr(syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC)
	if !c.Args.HostNetwork {
		flags |= syscall.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("corex.create: start the container: %w", err)
	}
	c.PID = cmd.Process.Pid
	go func() {
		cmd.Wait() //nolint:errcheck
		cs.halted(c)
	}()
	if err := cs.save(c); err != nil {
		return err
	}
	if !c.Args.HostNetwork {
		if err := cs.net.wire(c); err != nil {
			return err
		}
		cs.save(c) //nolint:errcheck
	}
	c.client = core0.New(core0.Options{Node: fmt.Sprintf("container %d", c.ID), Network: "unix", Addr: c.socket(), NoTLS: true})
	deadline := time.Now().Add(15 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.client.Ping(pctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-c.exited:
			log, _ := os.ReadFile(filepath.Join(c.Dir, "corex.log"))
			return fmt.Errorf("corex.create: the container's init exited: %s", strings.TrimSpace(string(log)))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("corex.create: the container did not answer within 15 s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cs.mu.Lock()
	dns, leases := append([]string(nil), c.DNS...), append([]nicLease(nil), c.leases...)
	cs.mu.Unlock()
	if len(dns) > 0 {
		// Name servers from DHCP: the container's resolver file.
		if _, err := c.client.Call(ctx, "bash", core0.BashArgs{Script: "cat > /etc/resolv.conf",
			Stdin: "nameserver " + strings.Join(dns, "\nnameserver ") + "\n"}); err != nil {
			cs.a.log.Warn("write the container's resolv.conf", "container", c.ID, "error", err)
		}
	}
	for _, l := range leases {
		go cs.keepLease(c, l.nic, l.lease)
	}
	for _, p := range ports {
		px, err := startProxy(p, c)
		if err != nil {
			return err
		}
		cs.mu.Lock()
		c.proxies = append(c.proxies, px)
		cs.mu.Unlock()
	}
	cs.mu.Lock()
	if c.Status == "starting" {
		c.Status = "running"
	}
	cs.mu.Unlock()
	return cs.save(c)
}

// halted records that a container's PID 1 ended (its other processes died
// with it).
func (cs *containers) halted(c *container) {
	cs.mu.Lock()
	if c.Status != "halted" {
		c.Status = "halted"
		close(c.exited)
	}
	proxies := c.proxies
	cs.mu.Unlock()
	for _, p := range proxies {
		p.close()
	}
	cs.save(c) //nolint:errcheck
	cs.a.log.Warn("container halted: its init exited", "container", c.ID, "name", c.Args.Name)
}

func (cs *containers) save(c *container) error {
	cs.mu.Lock()
	b, err := json.MarshalIndent(c, "", "  ")
	cs.mu.Unlock()
	if err != nil {
		return err
	}
	c.files.Lock()
	defer c.files.Unlock()
	if c.removed {
		return nil
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(c.Dir, "container.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(c.Dir, "container.json"))
}

// removeDir removes the container's directory for good: a record saved
// afterwards (as its init's death is noticed) is not written.
func (c *container) removeDir() error {
	c.files.Lock()
	defer c.files.Unlock()
	c.removed = true
	return os.RemoveAll(c.Dir)
}

// destroy kills a container's processes and removes everything it had:
// links, forwards, its changes and its record. Its mounts lived in its own
// mount namespace and went with its last process.
func (cs *containers) destroy(c *container) {
	cs.mu.Lock()
	running := c.Status != "halted"
	proxies := c.proxies
	cs.mu.Unlock()
	if c.PID > 0 && running {
		syscall.Kill(c.PID, syscall.SIGKILL) //nolint:errcheck
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			cs.a.log.Error("container's init did not die after SIGKILL", "container", c.ID, "pid", c.PID)
		}
	}
	for _, p := range proxies {
		p.close()
	}
	if c.client != nil {
		c.client.Close() //nolint:errcheck
	}
	cs.net.unwire(c)
	if err := c.removeDir(); err != nil {
		cs.a.log.Error("remove container directory", "container", c.ID, "error", err)
	}
	cs.mu.Lock()
	delete(cs.m, c.ID)
	cs.mu.Unlock()
}

// adopt finds the containers an earlier agent left: running ones are
// taken over (their forwards restarted), dead ones cleaned up.
func (cs *containers) adopt() {
	defer close(cs.adopted)
	entries, err := os.ReadDir(cs.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		dir := filepath.Join(cs.dir, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, "container.json"))
		var c container
		if err != nil || json.Unmarshal(b, &c) != nil {
			os.RemoveAll(dir) //nolint:errcheck // a container that never started
			continue
		}
		c.Dir, c.exited, c.mu = dir, make(chan struct{}), &cs.mu
		cs.mu.Lock()
		cs.m[c.ID] = &c
		cs.mu.Unlock()
		cs.net.reserve(&c)
		if c.Status == "halted" || !isCoreX(c.PID) {
			if c.Status != "halted" {
				c.Status = "halted"
				close(c.exited)
			}
			cs.a.log.Warn("cleaning up a container that died while the agent was away", "container", c.ID)
			cs.destroy(&c)
			continue
		}
		c.client = core0.New(core0.Options{Node: fmt.Sprintf("container %d", c.ID), Network: "unix", Addr: c.socket(), NoTLS: true})
		ports, _ := parsePorts(c.Args.Port, c.Args.HostNetwork)
		for _, p := range ports {
			if px, err := startProxy(p, &c); err == nil {
				cs.mu.Lock()
				c.proxies = append(c.proxies, px)
				cs.mu.Unlock()
			} else {
				cs.a.log.Error("restart a port forward", "container", c.ID, "error", err)
			}
		}
		for i, nic := range c.Args.Nics {
			if nic.Config != nil && nic.Config.DHCP {
				go cs.renewAfterAdoption(&c, nicName(nic, i))
			}
		}
		go cs.watch(&c)
		cs.a.log.Info("re-adopted a running container", "container", c.ID, "name", c.Args.Name, "pid", c.PID)
	}
}

// watch notices an adopted container's PID 1 ending (it is not our child,
// so there is nothing to wait for).
func (cs *containers) watch(c *container) {
	for {
		select {
		case <-cs.a.ctx.Done():
			return
		case <-c.exited:
			return
		case <-time.After(500 * time.Millisecond):
		}
		if !isCoreX(c.PID) {
			cs.halted(c)
			return
		}
	}
}

// isCoreX reports whether pid is alive and a container's init.
func isCoreX(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
		return false
	}
	return strings.HasPrefix(string(b), "corex-")
}

// close stops the forwards (the containers run on; the next agent adopts
// them).
func (cs *containers) close() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.m {
		for _, p := range c.proxies {
			p.close()
		}
		if c.client != nil {
			c.client.Close() //nolint:errcheck
		}
	}
}

func (cs *containers) byNameLocked(name string) *container {
	for _, c := range cs.m {
		if c.Args.Name == name {
			return c
		}
	}
	return nil
}

// find returns the container named by an id or a name.
func (cs *containers) find(query string) (*container, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if id, err := strconv.Atoi(query); err == nil {
		if c := cs.m[id]; c != nil && c.Status != "starting" {
			return c, nil
		}
	}
	if c := cs.byNameLocked(query); c != nil && c.Status != "starting" {
		return c, nil
	}
	return nil, notFound("no container %q", query)
}

// info is a container as corex.list and corex.get answer it.
func (cs *containers) info(c *container) map[string]any {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return map[string]any{"container": map[string]any{
		"id": c.ID, "arguments": c.Args, "pid": c.PID, "root": c.Root, "status": c.Status,
		"name": c.Args.Name, "hostname": c.Args.Hostname, "ips": c.Addrs, "starttime": c.StartTime}}
}

func (cs *containers) all() []*container {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	out := make([]*container, 0, len(cs.m))
	for _, c := range cs.m {
		if c.Status != "starting" {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// dispatch sends cmd into container c and relays its flag, stream and
// result to the agent's own lists, where the caller reads them.
func (cs *containers) dispatch(c *container, cmd core0.Command) (string, error) {
	cs.mu.Lock()
	status := c.Status
	cs.mu.Unlock()
	if status != "running" {
		return "", &cmdError{code: core0.CodeConflict, msg: fmt.Sprintf("corex.dispatch: container %d is %s", c.ID, status)}
	}
	if cmd.ID == "" {
		cmd.ID = uuid.NewString()
	}
	if len(cmd.Arguments) == 0 {
		cmd.Arguments = json.RawMessage("{}")
	}
	a := cs.a
	if a.jobs.get(cmd.ID) != nil || a.lists.exists(core0.FlagKey(cmd.ID)) {
		return "", &cmdError{code: core0.CodeConflict, msg: fmt.Sprintf("corex.dispatch: job id %s is already known", cmd.ID)}
	}
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	if _, err := c.client.Push(ctx, cmd); err != nil {
		return "", fmt.Errorf("corex.dispatch: container %d: %w", c.ID, err)
	}
	a.lists.push(core0.FlagKey(cmd.ID), 0, []byte(cmd.ID))
	go cs.relay(c, cmd)
	return cmd.ID, nil
}

// relay copies a dispatched job's stream and result from the container.
func (cs *containers) relay(c *container, cmd core0.Command) {
	a := cs.a
	ctx := a.ctx
	if cmd.Stream {
		err := c.client.Stream(ctx, cmd.ID, func(m core0.StreamMessage) error {
			b, _ := json.Marshal(core0.StreamLine{Command: cmd.ID, Message: m})
			a.lists.push(core0.StreamKey(cmd.ID), a.cfg.MaxStreamLines, b)
			return nil
		})
		if err != nil {
			a.log.Debug("relay a container job's stream", "container", c.ID, "job", cmd.ID, "error", err)
		}
	}
	var r *core0.Result
	for {
		var err error
		r, err = c.client.Result(ctx, cmd.ID)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-c.exited:
			r = &core0.Result{ID: cmd.ID, Command: cmd.Command, State: core0.StateKilled, Code: core0.CodeServerError,
				Data: fmt.Sprintf("container %d halted: its init exited", c.ID), Streams: []string{"", ""}, Container: c.ID}
		default:
			var ce *core0.Error
			if errors.As(err, &ce) && ce.Kind == core0.Timeout {
				continue
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		break
	}
	b, _ := json.Marshal(r)
	a.lists.set(core0.ResultKey(cmd.ID), b)
	for _, k := range []string{core0.FlagKey(cmd.ID), core0.ResultKey(cmd.ID), core0.StreamKey(cmd.ID)} {
		a.lists.expire(k, a.cfg.ResultTTL)
	}
}

// renewAfterAdoption takes over a DHCP nic's lease after an agent restart
// (the lease itself died with the old agent): it asks again, normally for
// the same address, and keeps that lease.
func (cs *containers) renewAfterAdoption(c *container, ifname string) {
	l, err := dhcpRequest(c.PID, ifname, nil)
	if err != nil {
		cs.a.log.Error("re-adopted container nic: no DHCP lease", "container", c.ID, "nic", ifname, "error", err)
		return
	}
	cs.keepLease(c, ifname, l)
}
