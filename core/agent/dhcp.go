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
// of pid: on a thread of its own that enters the namespace and dies with
// the goroutine (so no thread returns to the pool in the wrong namespace).
// With renew, it renews that lease instead.
func dhcpRequest(pid int, ifname string, prev *nclient4.Lease) (*nclient4.Lease, error) {
	type answer struct {
		l   *nclient4.Lease
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		ns, err := netns.GetFromPid(pid)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ch <- answer{err: err}
			return
		}
		cl, err := nclient4.New(ifname, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(4))
		if err != nil {
			ch <- answer{err: err}
			return
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var l *nclient4.Lease
		if prev != nil {
			l, err = cl.Renew(ctx, prev)
		} else {
			l, err = cl.Request(ctx)
		}
		ch <- answer{l, err}
	}()
	a := <-ch
	return a.l, a.err
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
