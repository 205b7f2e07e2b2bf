package agent

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// lease is what a DHCP server gave a container's nic.
type lease struct {
	cidr, gateway string
	dns           []string
	duration      time.Duration
}

// dhcpRequest runs a DHCP exchange on ifname inside the network namespace
// of pid (renewing prev when given). The client's socket is made inside
// that namespace on a locked thread, which then returns to the agent's
// namespace; the exchange itself runs anywhere (the socket stays there).
func dhcpRequest(pid int, ifname string, prev *nclient4.Lease) (*nclient4.Lease, error) {
	cl, err := dhcpClient(pid, ifname)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if prev != nil {
		return cl.Renew(ctx, prev)
	}
	return cl.Request(ctx)
}

func dhcpClient(pid int, ifname string) (*nclient4.Client, error) {
	runtime.LockOSThread()
	home, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer home.Close()
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	cl, err := nclient4.New(ifname, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(4))
	if err := netns.Set(home); err != nil {
		// Leave the thread locked: it ends with this goroutine rather than
		// serve others in the container's namespace.
		if cl != nil {
			cl.Close()
		}
		return nil, fmt.Errorf("return to the agent's network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return cl, err
}

func leaseOf(l *nclient4.Lease) lease {
	ack := l.ACK
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	ones, _ := mask.Size()
	out := lease{cidr: fmt.Sprintf("%s/%d", ack.YourIPAddr, ones), duration: ack.IPAddressLeaseTime(time.Hour)}
	if r := ack.Router(); len(r) > 0 {
		out.gateway = r[0].String()
	}
	for _, d := range ack.DNS() {
		out.dns = append(out.dns, d.String())
	}
	return out
}

// applyLease addresses the nic and routes through the lease's router.
func applyLease(h *netlink.Handle, l netlink.Link, le lease) error {
	addr, err := netlink.ParseAddr(le.cidr)
	if err != nil {
		return err
	}
	if err := h.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("address %s: %w", le.cidr, err)
	}
	if le.gateway != "" {
		if err := h.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(le.gateway)}); err != nil {
			return fmt.Errorf("default route via %s: %w", le.gateway, err)
		}
	}
	return nil
}

// keepLease renews a container nic's lease at half its time until the
// container ends, taking a new one when a renewal is refused.
func (cs *containers) keepLease(c *container, ifname string, l *nclient4.Lease) {
	for {
		wait := leaseOf(l).duration / 2
		if wait < 10*time.Second {
			wait = 10 * time.Second
		}
		select {
		case <-c.exited:
			return
		case <-cs.a.ctx.Done():
			return
		case <-time.After(wait):
		}
		next, err := dhcpRequest(c.PID, ifname, l)
		if err != nil {
			cs.a.log.Warn("container nic: DHCP renewal refused; asking again", "container", c.ID, "nic", ifname, "error", err)
			if next, err = dhcpRequest(c.PID, ifname, nil); err != nil {
				cs.a.log.Error("container nic: no DHCP lease", "container", c.ID, "nic", ifname, "error", err)
				continue
			}
		}
		if err := cs.net.inNetns(c.PID, func(h *netlink.Handle) error {
			link, err := h.LinkByName(ifname)
			if err != nil {
				return err
			}
			return applyLease(h, link, leaseOf(next))
		}); err != nil {
			cs.a.log.Error("container nic: apply the DHCP lease", "container", c.ID, "nic", ifname, "error", err)
		}
		l = next
	}
}
