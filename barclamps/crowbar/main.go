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
			{Name: "crowbar-managed-node", Flags: []string{"discovery"},
				Description: "A node crowbar manages: bound to every node that is discovered or created"},
			{Name: "crowbar-installed-node", Requires: []string{"crowbar-managed-node"},
				Description: "A node with an operating system installed by crowbar"},
			{Name: "crowbar-admin-node", Flags: []string{"bootstrap"}, Requires: []string{"crowbar-managed-node"},
				Description: "The node the crowbar server runs on"},
		},
	})
}

func main() {}
