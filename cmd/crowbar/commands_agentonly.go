//go:build agentonly

package main

import "github.com/spf13/cobra"

// addCommands adds nothing: this build is the agent alone, small enough
// for the discovery image.
func addCommands(*cobra.Command) {}

func notFound(error) bool { return false }
