//go:build !agentonly

package main

import (
	"github.com/crowbar-go/crowbar/api/client"
	"github.com/spf13/cobra"
)

// addCommands adds the server, barclamp tooling and the API client: all
// but the agent, which a build with -tags agentonly (the discovery
// image's) carries alone.
func addCommands(root *cobra.Command) {
	root.AddCommand(newServerCmd(), newBarclampCmd())
	newClientCmds(root)
}

// notFound says whether err is the API's 404.
func notFound(err error) bool { return client.IsNotFound(err) }
