//go:build !agentonly

package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"

	"github.com/crowbar-go/crowbar/api/client"
	"github.com/spf13/cobra"
)

// addJoinTokenVerbs adds "join_tokens create" (which prints the secret
// alone, for scripts) and "join_tokens destroy" (which revokes).
func addJoinTokenVerbs(o *cliOptions, jt *cobra.Command) {
	var ttl, description string
	create := &cobra.Command{Use: "create", Short: "Create a join token and print it (agents join with it)",
		Example: "  crowbar join_tokens create --ttl 1h\n  TOKEN=$(crowbar join_tokens create --ttl 30m --description 'rack 4')\n  crowbar agent --server http://crowbar:3000 --join-token \"$TOKEN\"",
		Args:    args(),
		RunE: func(*cobra.Command, []string) error {
			return o.run(func(ctx context.Context, c *client.Client) error {
				tok, err := c.CreateJoinToken(ctx, description, ttl)
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "join token %v, valid until %v (shown once: keep it secret)\n", tok["id"], tok["expires_at"])
				fmt.Println(tok["token"])
				return nil
			})
		}}
	create.Flags().StringVar(&ttl, "ttl", "1h", "how long the token works: a duration (30m, 1h, 24h) or seconds")
	create.Flags().StringVar(&description, "description", "", "what the token is for")
	jt.AddCommand(create,
		simple(o, "destroy JOIN_TOKEN", "Revoke a join token (agents that joined with it stay)", "  crowbar join_tokens destroy 3",
			args("JOIN_TOKEN"), noJSON, func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return nil, c.JoinTokens().Destroy(ctx, a[0])
			}))
}

// nodeAgentCmd is "nodes agent NODE [--ping]".
func nodeAgentCmd(o *cliOptions) *cobra.Command {
	var ping bool
	cmd := simple(o, "agent NODE", "Show how the server reaches a node's agent (--ping: and whether it answers)",
		"  crowbar nodes agent d52-54-00-12-34-56.crowbar.internal --ping", args("NODE"), noJSON,
		func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
			return c.NodeAgent(ctx, a[0], ping)
		})
	cmd.Flags().BoolVar(&ping, "ping", false, "send core.ping through the server and report the round trip")
	return cmd
}

// newAuditCmd is "crowbar audit": the audit log, newest first (admins).
func newAuditCmd(o *cliOptions) *cobra.Command {
	var user, method, path, since, until string
	var status, limit, offset int
	cmd := &cobra.Command{Use: "audit", Short: "Show the audit log: every write through the API, newest first (admins)",
		Example: "  crowbar audit --since 1h\n  crowbar audit --user alice --method DELETE --format table\n  crowbar audit --path /api/v2/nodes --status 422 --limit 20",
		Args:    args(),
		RunE: func(*cobra.Command, []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"user": user, "method": method, "path": path, "since": since, "until": until} {
				if v != "" {
					q.Set(k, v)
				}
			}
			for k, v := range map[string]int{"status": status, "limit": limit, "offset": offset} {
				if v != 0 {
					q.Set(k, strconv.Itoa(v))
				}
			}
			return o.run(func(ctx context.Context, c *client.Client) error {
				var list []client.Object
				if err := c.Do(ctx, client.Request{Method: "GET", Path: "/api/v2/audit", Query: q}, &list); err != nil {
					return err
				}
				return o.print(list)
			})
		}}
	f := cmd.Flags()
	f.StringVar(&user, "user", "", "only this user's writes (barclamp:<name> for a barclamp's)")
	f.StringVar(&method, "method", "", "only this method (POST, PUT, PATCH, DELETE)")
	f.StringVar(&path, "path", "", "only paths starting with this")
	f.IntVar(&status, "status", 0, "only writes answered with this status")
	f.StringVar(&since, "since", "", "only writes since this time (RFC 3339) or this long ago (1h)")
	f.StringVar(&until, "until", "", "only writes before this time (RFC 3339) or this long ago")
	f.IntVar(&limit, "limit", 0, "at most this many (default 100, at most 1000)")
	f.IntVar(&offset, "offset", 0, "skip this many of the newest")
	return cmd
}
