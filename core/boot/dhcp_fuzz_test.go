package boot_test

import (
	"context"
	"testing"

	"github.com/crowbar-go/crowbar/core/boot"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzDHCPHandle: whatever arrives on port 67, the server answers or
// ignores it without a panic, and never offers an address outside the
// network.
func FuzzDHCPHandle(f *testing.F) {
	for _, m := range []*dhcpv4.DHCPv4{
		request(reservedMAC, dhcpv4.MessageTypeDiscover),
		request("52:54:00:dd:00:01", dhcpv4.MessageTypeDiscover, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007"))),
		request("52:54:00:dd:00:02", dhcpv4.MessageTypeRequest, dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{1})),
		request("52:54:00:dd:00:03", dhcpv4.MessageTypeInform),
	} {
		f.Add(m.ToBytes())
	}
	src := newPlans()
	full, _ := boot.NewDHCP(boot.DHCPConfig{Interface: "unused", Plan: src.get})
	proxy, _ := boot.NewDHCP(boot.DHCPConfig{Interface: "unused", Proxy: true, Plan: src.get})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		for _, d := range []*boot.DHCP{full, proxy} {
			resp := d.Handle(context.Background(), req, self)
			if resp == nil || resp.YourIPAddr == nil || resp.YourIPAddr.IsUnspecified() {
				continue
			}
			if ip := resp.YourIPAddr.To4(); ip == nil || ip[0] != 10 || ip[1] != 77 || ip[2] != 0 {
				t.Fatalf("offered %s outside 10.77.0.0/24", resp.YourIPAddr)
			}
		}
	})
}
