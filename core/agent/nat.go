package agent

import (
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// natTable is the nftables table the agent owns (inet family, so it never
// touches anyone else's rules).
const natTable = "crowbar_agent"

// masquerade makes traffic from the container range leaving through any
// other interface than the agent's bridge look like it comes from the
// host, with nftables over netlink. It replaces the agent's own table, so
// running it again is harmless; a kernel without nf_tables gets an error
// (containers then reach the host and each other, not beyond).
func masquerade(prefix *net.IPNet) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Name: natTable, Family: nftables.TableFamilyIPv4}
	c.DelTable(t)
	c.Flush() //nolint:errcheck // absent the first time
	t = c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	ip := prefix.IP.To4()
	mask := net.IP(prefix.Mask).To4()
	ifname := make([]byte, 16)
	copy(ifname, bridgeName)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		// ip saddr & mask == prefix
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip},
		// oifname != the bridge
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname},
		&expr.Masq{},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: add the masquerade rule: %w", err)
	}
	return nil
}

// unmasquerade removes the agent's table.
func unmasquerade() {
	c, err := nftables.New()
	if err != nil {
		return
	}
	c.DelTable(&nftables.Table{Name: natTable, Family: nftables.TableFamilyIPv4})
	c.Flush() //nolint:errcheck
}
