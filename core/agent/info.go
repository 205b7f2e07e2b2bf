package agent

import (
	"context"
	"os"
	"runtime"
	"syscall"

	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/host"
	"github.com/shirou/gopsutil/v4/mem"
	gnet "github.com/shirou/gopsutil/v4/net"
	"github.com/shirou/gopsutil/v4/process"
)

// The info.* commands answer gopsutil's shapes, as core0 does.

func cmdInfoCPU(ctx context.Context, _ *job) (output, error) {
	v, err := cpu.InfoWithContext(ctx)
	if err != nil {
		return output{}, err
	}
	return jsonOut(v)
}

func cmdInfoMem(ctx context.Context, _ *job) (output, error) {
	v, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return output{}, err
	}
	return jsonOut(v)
}

func cmdInfoDisk(ctx context.Context, _ *job) (output, error) {
	v, err := disk.PartitionsWithContext(ctx, false)
	if err != nil {
		return output{}, err
	}
	if v == nil {
		v = []disk.PartitionStat{}
	}
	return jsonOut(v)
}

func cmdInfoNIC(ctx context.Context, _ *job) (output, error) {
	v, err := gnet.InterfacesWithContext(ctx)
	if err != nil {
		return output{}, err
	}
	return jsonOut(v)
}

func cmdInfoOS(ctx context.Context, _ *job) (output, error) {
	v, err := host.InfoWithContext(ctx)
	if err != nil {
		return output{}, err
	}
	return jsonOut(v)
}

// cmdInfoPort answers the listening and connected sockets (as netstat).
func cmdInfoPort(ctx context.Context, _ *job) (output, error) {
	v, err := gnet.ConnectionsWithContext(ctx, "inet")
	if err != nil {
		return output{}, err
	}
	type port struct {
		Network string `json:"network"`
		Port    uint32 `json:"port"`
		IP      string `json:"ip"`
		PID     int32  `json:"pid"`
		Status  string `json:"status"`
	}
	out := []port{}
	for _, c := range v {
		network := "tcp"
		if c.Type == syscall.SOCK_DGRAM {
			network = "udp"
		}
		if c.Family == syscall.AF_INET6 {
			network += "6"
		}
		out = append(out, port{Network: network, Port: c.Laddr.Port, IP: c.Laddr.IP, PID: c.Pid, Status: c.Status})
	}
	return jsonOut(out)
}

func cmdInfoVersion(_ context.Context, j *job) (output, error) {
	v := j.a().cfg.Version
	if v == "" {
		v = "dev"
	}
	return jsonOut(map[string]string{"branch": "crowbar-agent", "revision": v, "go": runtime.Version()})
}

// cmdState answers the agent's own resource use and its jobs' (core.state).
func cmdState(ctx context.Context, j *job) (output, error) {
	type usage struct {
		CPU  float64 `json:"cpu"`
		RSS  uint64  `json:"rss"`
		VMS  uint64  `json:"vms"`
		Swap uint64  `json:"swap"`
	}
	self, _ := processInfo(int32(os.Getpid()))
	st := usage{CPU: self.CPU.User + self.CPU.System, RSS: self.RSS, VMS: self.VMS, Swap: self.Swap}
	for _, r := range j.a().jobs.list() {
		r.mu.Lock()
		pid := r.pid
		r.mu.Unlock()
		if pid > 0 {
			if p, ok := processInfo(int32(pid)); ok {
				st.CPU += p.CPU.User + p.CPU.System
				st.RSS += p.RSS
				st.VMS += p.VMS
				st.Swap += p.Swap
			}
		}
	}
	return jsonOut(st)
}

// processInfo reads one process in the orchestrator's Process shape.
func processInfo(pid int32) (core0.Process, bool) {
	p, err := process.NewProcess(pid)
	if err != nil {
		return core0.Process{PID: pid}, false
	}
	return describe(p), true
}

func describe(p *process.Process) core0.Process {
	out := core0.Process{PID: p.Pid}
	out.Cmdline, _ = p.Cmdline()
	if out.Cmdline == "" {
		out.Cmdline, _ = p.Name()
	}
	out.PPID, _ = p.Ppid()
	if t, err := p.Times(); err == nil {
		out.CPU = core0.CPUTimes{GuestNice: t.GuestNice, Idle: t.Idle, IOWait: t.Iowait, IRQ: t.Irq, Nice: t.Nice,
			SoftIRQ: t.Softirq, Steal: t.Steal, Stolen: t.Steal, System: t.System, User: t.User}
	}
	if m, err := p.MemoryInfo(); err == nil {
		out.RSS, out.VMS, out.Swap = m.RSS, m.VMS, m.Swap
	}
	return out
}

// cmdProcessList answers every process (or one, with a pid).
func cmdProcessList(ctx context.Context, j *job) (output, error) {
	var a struct {
		PID *int32 `json:"pid"`
	}
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	if a.PID != nil && *a.PID != 0 {
		p, ok := processInfo(*a.PID)
		if !ok {
			return output{}, notFound("process.list: no process %d", *a.PID)
		}
		return jsonOut([]core0.Process{p})
	}
	ps, err := process.ProcessesWithContext(ctx)
	if err != nil {
		return output{}, err
	}
	out := make([]core0.Process, 0, len(ps))
	for _, p := range ps {
		out = append(out, describe(p))
	}
	return jsonOut(out)
}

// cmdProcessKill signals a process (default SIGTERM).
func cmdProcessKill(_ context.Context, j *job) (output, error) {
	var a struct {
		PID    int32 `json:"pid"`
		Signal *int  `json:"signal"`
	}
	if err := args(j, &a); err != nil {
		return output{}, err
	}
	if a.PID <= 1 {
		return output{}, badRequest("process.kill: pid %d may not be signalled", a.PID)
	}
	sig := syscall.SIGTERM
	if a.Signal != nil {
		if *a.Signal < 0 || *a.Signal > 64 {
			return output{}, badRequest("process.kill: signal %d is not a signal", *a.Signal)
		}
		sig = syscall.Signal(*a.Signal)
	}
	if err := syscall.Kill(int(a.PID), sig); err != nil {
		if err == syscall.ESRCH {
			return output{}, notFound("process.kill: no process %d", a.PID)
		}
		return output{}, badRequest("process.kill: signal %d: %v", a.PID, err)
	}
	return jsonOut(true)
}
