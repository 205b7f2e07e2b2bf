//go:build wasip1

// Command crowbar is the first-party barclamp with crowbar's base roles:
// what every managed node, installed node and admin node is.
package main

import "github.com/crowbar-go/crowbar/sdk"

func init() {
	sdk.Register(&sdk.Barclamp{
		Name:        "crowbar",
		Version:     "1.0.0",
		Description: "Base roles of crowbar-managed nodes",
		Roles: []sdk.Role{
			{Name: "crowbar-managed-node", Flags: []string{"discovery"}, Requires: []string{"network-admin"},
				Description: "A node crowbar manages: bound to every node that is discovered or created; it gets an admin address"},
			{Name: "crowbar-installed-node", Requires: []string{"crowbar-managed-node", "provisioner-os-install"},
				Description: "A node with an operating system installed by crowbar"},
			{Name: "crowbar-admin-node", Flags: []string{"bootstrap"}, Requires: []string{"crowbar-managed-node", "provisioner-server"},
				Description: "The node the crowbar server runs on"},
		},
		// Hints: what an operator knows about a node before crowbar does.
		// They live in the node's hint; other barclamps read them.
		Attribs: []sdk.Attrib{
			{Name: "hint-admin-v4addr", Map: "admin_v4addr", Writable: true,
				Description: "The IPv4 address (with prefix length) the node should get on the admin network",
				Schema: map[string]any{"type": "string",
					"pattern": `^(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}(/([0-9]|[12][0-9]|3[0-2]))?$`}},
			{Name: "hint-admin-macs", Map: "admin_macs", Writable: true,
				Description: "MAC addresses of the node's admin interfaces",
				Schema: map[string]any{"type": "array", "items": map[string]any{"type": "string",
					"pattern": "^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$"}}},
		},
	})
}

func main() {}
