//go:build !agentonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/crowbar-go/crowbar/api/client"
	"github.com/spf13/cobra"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// isTerminal reports whether w is a terminal (progress redraws in place).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// newClientCmds adds the API client's commands to root.
func newClientCmds(root *cobra.Command) {
	o := &cliOptions{out: os.Stdout, errOut: os.Stderr}
	byName := map[string]*cobra.Command{}
	var cmds []*cobra.Command
	for _, rs := range cliResources {
		c := newResourceCmd(o, rs)
		byName[rs.name] = c
		cmds = append(cmds, c)
	}
	addVerbs(o, byName)
	cmds = append(cmds, newTokenCmd(o), newAnnealCmd(o), newEventsCmd(o), newZeroOSCmd(o))
	for _, c := range cmds {
		o.addFlags(c)
		c.Args = cobra.ArbitraryArgs
		c.RunE = groupRun
		c.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
			o.out, o.errOut = cmd.OutOrStdout(), cmd.ErrOrStderr()
			return applyEnv(cmd.Flags())
		}
		root.AddCommand(c)
	}
	audit := newAuditCmd(o)
	o.addFlags(audit)
	audit.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		o.out, o.errOut = cmd.OutOrStdout(), cmd.ErrOrStderr()
		return applyEnv(cmd.Flags())
	}
	root.AddCommand(audit)
}

// groupRun answers a group command ("crowbar nodes"): its help, or a usage
// error for a subcommand it does not have.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unknown command %q for %q; see %s --help", args[0], cmd.CommandPath(), cmd.CommandPath())}
	}
	return cmd.Help()
}

func newTokenCmd(o *cliOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Bearer tokens"}
	var validity int
	create := simple(o, "create", "Mint a bearer token with your digest credentials", "  crowbar token create --validity 3600",
		args(), noJSON, func(ctx context.Context, c *client.Client, _ []string, _ client.Object) (any, error) {
			return c.CreateToken(ctx, validity)
		})
	create.Flags().IntVar(&validity, "validity", 3600, "seconds the token is valid (1–3600)")
	cmd.AddCommand(create)
	return cmd
}

func newAnnealCmd(o *cliOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "anneal", Short: "The annealer: status, and waiting for convergence"}
	cmd.AddCommand(simple(o, "status", "Counts of node-roles by state, runs in flight, idle", "  crowbar anneal status", args(), noJSON,
		func(ctx context.Context, c *client.Client, _ []string, _ client.Object) (any, error) {
			st, err := c.AnnealStatus(ctx)
			if err != nil || o.format == "json" {
				return st, err
			}
			row := client.Object{"idle": st.Idle, "in_flight": float64(st.InFlight), "runnable": float64(st.Runnable)}
			for k, v := range st.Counts {
				row[k] = float64(v)
			}
			return row, nil
		}))
	var w waiter
	wait := &cobra.Command{Use: "wait", Short: "Wait until every committed node-role is ACTIVE, showing progress",
		Long: "wait polls the annealer until every committed node-role (of the deployment or node, when given) is ACTIVE.\n" +
			"It exits 0 then; 1 as soon as one is in ERROR (naming it) or when --for runs out (naming what is left).\n" +
			"Proposed node-roles are not waited for: commit them first.",
		Example: "  crowbar anneal wait --deployment test1 --for 30m", Args: args(),
		RunE: func(*cobra.Command, []string) error {
			if w.limit <= 0 || w.every <= 0 {
				return usageError{fmt.Errorf("--for and --poll must be positive durations (got %s and %s)", w.limit, w.every)}
			}
			return o.runWithin(func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), w.limit)
			}, func(ctx context.Context, c *client.Client) error { return w.run(ctx, c, o) })
		}}
	wait.Flags().StringVar(&w.deployment, "deployment", "", "only this deployment's node-roles")
	wait.Flags().StringVar(&w.node, "node", "", "only this node's node-roles")
	wait.Flags().DurationVar(&w.limit, "for", 10*time.Minute, "give up after this long")
	wait.Flags().DurationVar(&w.every, "poll", 500*time.Millisecond, "how often to look")
	cmd.AddCommand(wait)
	return cmd
}

type waiter struct {
	deployment, node string
	limit, every     time.Duration
}

// progress is where the wait stands.
type progress struct {
	total, active, errors int
	left                  []client.Object // node-roles not yet ACTIVE
	failed                []client.Object
}

func (w *waiter) look(ctx context.Context, c *client.Client) (*progress, error) {
	var nrs []client.Object
	var err error
	switch {
	case w.node != "":
		nrs, err = c.NodeNodeRoles(ctx, w.node)
	case w.deployment != "":
		nrs, err = c.DeploymentNodeRoles(ctx, w.deployment)
	default:
		nrs, err = c.NodeRoles().List(ctx, nil)
	}
	if err != nil {
		return nil, err
	}
	p := &progress{}
	for _, nr := range nrs {
		switch nr["state_name"] {
		case "proposed":
			continue
		case "active":
			p.active++
		case "error":
			p.errors++
			p.failed = append(p.failed, nr)
		default:
			p.left = append(p.left, nr)
		}
		p.total++
	}
	return p, nil
}

// describe names a node-role: node, role, state and the first line of its
// run log.
func describe(ctx context.Context, c *client.Client, nr client.Object) string {
	name := func(res client.Resource, id any, field string) string {
		obj, err := res.Show(ctx, fmt.Sprint(id))
		if err != nil {
			return fmt.Sprint(id)
		}
		return fmt.Sprint(obj[field])
	}
	line := fmt.Sprintf("node-role %v: %s on %s is %v", nr["id"], name(c.Roles(), nr["role_id"], "name"),
		name(c.Nodes(), nr["node_id"], "name"), nr["state_name"])
	if log, _ := nr["runlog"].(string); log != "" {
		line += ": " + strings.SplitN(strings.TrimSpace(log), "\n", 2)[0]
	}
	return line
}

func (w *waiter) run(ctx context.Context, c *client.Client, o *cliOptions) error {
	tty := isTerminal(o.errOut)
	last := ""
	for {
		p, err := w.look(ctx, c)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("gave up after %s", w.limit)
			}
			return err
		}
		bar := progressBar(p)
		if tty {
			fmt.Fprintf(o.errOut, "\r%s", bar)
		} else if bar != last {
			fmt.Fprintln(o.errOut, bar)
		}
		last = bar
		if p.errors > 0 {
			if tty {
				fmt.Fprintln(o.errOut)
			}
			var lines []string
			for _, nr := range p.failed {
				lines = append(lines, describe(ctx, c, nr))
			}
			return errors.New(strings.Join(lines, "\n"))
		}
		if p.active == p.total {
			if tty {
				fmt.Fprintln(o.errOut)
			}
			return o.print(client.Object{"active": p.active, "total": p.total})
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(o.errOut)
			}
			lines := []string{fmt.Sprintf("gave up after %s with %d of %d node-roles active; still waiting for:", w.limit, p.active, p.total)}
			for i, nr := range p.left {
				if i == 10 {
					lines = append(lines, fmt.Sprintf("… and %d more", len(p.left)-10))
					break
				}
				lines = append(lines, "  "+describe(context.Background(), c, nr))
			}
			return errors.New(strings.Join(lines, "\n"))
		case <-time.After(w.every):
		}
	}
}

func progressBar(p *progress) string {
	const width = 30
	filled := 0
	if p.total > 0 {
		filled = p.active * width / p.total
	}
	return fmt.Sprintf("[%s%s] %d/%d active, %d error", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.active, p.total, p.errors)
}

func newEventsCmd(o *cliOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "events", Short: "The event stream"}
	var f client.EventFilter
	tail := &cobra.Command{Use: "tail", Short: "Print state changes as they happen, one line each (Ctrl-C stops)",
		Example: "  crowbar events tail --deployment test1 --format table\n  crowbar events tail | jq .state_name\n" +
			"  crowbar events tail --after 1234   # first what was logged after event 1234, then live", Args: args(),
		RunE: func(*cobra.Command, []string) error {
			return o.runWithin(signalContext, func(ctx context.Context, c *client.Client) error {
				return c.Events(ctx, f, o.printEvent)
			})
		}}
	tail.Flags().StringVar(&f.Node, "node", "", "only this node's events")
	tail.Flags().StringVar(&f.Deployment, "deployment", "", "only this deployment's events")
	tail.Flags().StringVar(&f.Role, "role", "", "only this role's events")
	tail.Flags().StringVar(&f.LastEventID, "after", "", "start with the events logged after this one (an event's seq), then follow")
	cmd.AddCommand(tail)
	return cmd
}

// printEvent writes one event: JSON on one line, or a line for people with
// --format table.
func (o *cliOptions) printEvent(e client.Event) error {
	if o.format == "json" {
		b, _ := json.Marshal(e)
		_, err := fmt.Fprintln(o.out, string(b))
		return err
	}
	line := fmt.Sprintf("%s %s %d %s", e.At, e.Type, e.ID, e.StateName)
	if e.Type == "node_role" {
		line = fmt.Sprintf("%s node_role %d %s %s %s", e.At, e.ID, e.Node, e.Role, e.StateName)
	}
	if e.Runlog != "" && e.StateName == "error" {
		line += ": " + strings.SplitN(e.Runlog, "\n", 2)[0]
	}
	_, err := fmt.Fprintln(o.out, line)
	return err
}
