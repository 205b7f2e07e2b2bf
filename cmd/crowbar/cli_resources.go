package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/crowbar-go/crowbar/api/client"
	"github.com/spf13/cobra"
)

// args requires exactly the named arguments; a wrong count is a usage
// error that names them.
func args(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) != len(names) {
			return usageError{fmt.Errorf("%s takes %d argument(s): %s (got %d); see --help", cmd.CommandPath(), len(names), strings.Join(names, " "), len(a))}
		}
		return nil
	}
}

// argsBetween allows the optional trailing arguments of a grammar such as
// "bind ROLE to NODE [in DEPLOYMENT]".
func argsBetween(min, max int, usage string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) < min || len(a) > max {
			return usageError{fmt.Errorf("usage: %s %s (got %d argument(s))", cmd.CommandPath(), usage, len(a))}
		}
		return nil
	}
}

// resourceSpec describes one API collection for the CLI.
type resourceSpec struct {
	name     string // the collection, as in the URL
	singular string
	example  string // a name to use in examples
	writable bool   // create, update and destroy
	create   string // an example create body
}

var cliResources = []resourceSpec{
	{name: "nodes", singular: "node", example: "newtest.cr0wbar.com", writable: true, create: `{"name": "newtest.cr0wbar.com", "bootenv": "local"}`},
	{name: "deployments", singular: "deployment", example: "test1", writable: true, create: `{"name": "test1"}`},
	{name: "deployment_roles", singular: "deployment-role", example: "1", writable: true, create: `{"deployment": "test1", "role": "crowbar-managed-node"}`},
	{name: "groups", singular: "group", example: "rack1", writable: true, create: `{"name": "rack1"}`},
	{name: "jigs", singular: "jig", example: "noop", writable: true, create: `{"name": "script"}`},
	{name: "users", singular: "user", example: "operator", writable: true, create: `{"username": "operator", "role": "operator", "api_access": true, "password": "…"}`},
	{name: "roles", singular: "role", example: "crowbar-managed-node"},
	{name: "attribs", singular: "attrib", example: "provisioner-target_os"},
	{name: "barclamps", singular: "barclamp", example: "network"},
	{name: "node_roles", singular: "node-role", example: "25"},
}

// newResourceCmd builds "crowbar <collection> list|show|create|update|destroy".
func newResourceCmd(o *cliOptions, rs resourceSpec) *cobra.Command {
	cmd := &cobra.Command{Use: rs.name, Short: "Work with " + strings.ReplaceAll(rs.name, "_", "-")}
	res := func(c *client.Client) client.Resource { return c.Resource(rs.name) }
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List " + rs.name, Args: args(),
		Example: fmt.Sprintf("  crowbar %s list --attributes name\n  crowbar %s list --format table", rs.name, rs.name),
		RunE: func(*cobra.Command, []string) error {
			return o.run(func(ctx context.Context, c *client.Client) error {
				l, err := res(c).List(ctx, o.listOptions())
				if err != nil {
					return err
				}
				return o.print(l)
			})
		},
	}, &cobra.Command{
		Use: "show " + strings.ToUpper(rs.singular), Short: "Show one " + rs.singular + " by name or id", Args: args(strings.ToUpper(rs.singular)),
		Example: fmt.Sprintf("  crowbar %s show %s", rs.name, rs.example),
		RunE: func(_ *cobra.Command, a []string) error {
			return o.run(func(ctx context.Context, c *client.Client) error {
				obj, err := res(c).Show(ctx, a[0])
				if err != nil {
					return err
				}
				return o.print(o.trim(obj))
			})
		},
	})
	if !rs.writable {
		return cmd
	}
	cmd.AddCommand(&cobra.Command{
		Use: "create JSON", Short: "Create a " + rs.singular, Args: args("JSON"),
		Example: fmt.Sprintf("  crowbar %s create '%s'", rs.name, rs.create),
		RunE: func(_ *cobra.Command, a []string) error {
			body, err := jsonArg(a[0])
			if err != nil {
				return err
			}
			return o.run(func(ctx context.Context, c *client.Client) error {
				obj, err := res(c).Create(ctx, body)
				if err != nil {
					return err
				}
				return o.print(o.trim(obj))
			})
		},
	}, &cobra.Command{
		Use: "update " + strings.ToUpper(rs.singular) + " JSON", Short: "Change fields of a " + rs.singular, Args: args(strings.ToUpper(rs.singular), "JSON"),
		Example: fmt.Sprintf("  crowbar %s update %s '{\"description\": \"rack 4\"}'", rs.name, rs.example),
		RunE: func(_ *cobra.Command, a []string) error {
			body, err := jsonArg(a[1])
			if err != nil {
				return err
			}
			return o.run(func(ctx context.Context, c *client.Client) error {
				obj, err := res(c).Update(ctx, a[0], body)
				if err != nil {
					return err
				}
				return o.print(o.trim(obj))
			})
		},
	}, &cobra.Command{
		Use: "destroy " + strings.ToUpper(rs.singular), Short: "Delete a " + rs.singular, Args: args(strings.ToUpper(rs.singular)),
		Example: fmt.Sprintf("  crowbar %s destroy %s", rs.name, rs.example),
		RunE: func(_ *cobra.Command, a []string) error {
			return o.run(func(ctx context.Context, c *client.Client) error { return res(c).Destroy(ctx, a[0]) })
		},
	})
	return cmd
}

// trim keeps the --attributes fields of a single object (lists are
// trimmed by the server).
func (o *cliOptions) trim(obj client.Object) client.Object {
	if len(o.attributes) == 0 {
		return obj
	}
	out := client.Object{}
	for _, a := range o.attributes {
		if v, ok := obj[a]; ok {
			out[a] = v
		}
	}
	return out
}

// simple is a command that makes one call and prints its answer.
func simple(o *cliOptions, use, short, example string, a cobra.PositionalArgs, call func(ctx context.Context, c *client.Client, args []string) (any, error)) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Example: example, Args: a,
		RunE: func(_ *cobra.Command, args []string) error {
			return o.run(func(ctx context.Context, c *client.Client) error {
				v, err := call(ctx, c, args)
				if err != nil || v == nil {
					return err
				}
				if obj, ok := v.(client.Object); ok {
					v = o.trim(obj)
				}
				return o.print(v)
			})
		}}
}

// addVerbs adds the commands beyond CRUD: the seed's grammar and the
// lifecycle verbs.
func addVerbs(o *cliOptions, byName map[string]*cobra.Command) {
	nodes, roles, deps, nrs, bcs := byName["nodes"], byName["roles"], byName["deployments"], byName["node_roles"], byName["barclamps"]

	setAttrib := simple(o, "set NODE attrib ATTRIB to JSON", "Set a node's attrib ({\"value\": …})",
		`  crowbar nodes set newtest.cr0wbar.com attrib hint-admin-v4addr to '{"value": "192.168.124.99/24"}'`, args("NODE", "attrib", "ATTRIB", "to", "JSON"),
		func(ctx context.Context, c *client.Client, a []string) (any, error) {
			return c.SetNodeAttrib(ctx, a[0], a[2], nil)
		})
	setAttrib.PreRunE = func(_ *cobra.Command, a []string) error { return grammar(a, map[int]string{1: "attrib", 3: "to"}, 4) }
	setAttrib.RunE = func(_ *cobra.Command, a []string) error {
		body, err := jsonArg(a[4])
		if err != nil {
			return err
		}
		return o.run(func(ctx context.Context, c *client.Client) error {
			obj, err := c.SetNodeAttrib(ctx, a[0], a[2], body)
			if err != nil {
				return err
			}
			return o.print(o.trim(obj))
		})
	}
	getAttrib := simple(o, "get NODE attrib ATTRIB", "Show a node's attrib with its value",
		"  crowbar nodes get d52-54-05-3f-00-00.smoke.test attrib provisioner-target_os", args("NODE", "attrib", "ATTRIB"),
		func(ctx context.Context, c *client.Client, a []string) (any, error) {
			return c.NodeAttrib(ctx, a[0], a[2])
		})
	getAttrib.PreRunE = func(_ *cobra.Command, a []string) error { return grammar(a, map[int]string{1: "attrib"}, -1) }
	move := simple(o, "move NODE to DEPLOYMENT", "Move a node to another deployment",
		"  crowbar nodes move d52-54-05-3f-00-00.smoke.test to test1", args("NODE", "to", "DEPLOYMENT"),
		func(ctx context.Context, c *client.Client, a []string) (any, error) {
			return c.Nodes().Update(ctx, a[0], client.Object{"deployment": a[2]})
		})
	move.PreRunE = func(_ *cobra.Command, a []string) error { return grammar(a, map[int]string{1: "to"}, -1) }
	nodes.AddCommand(setAttrib, getAttrib, move,
		simple(o, "commit NODE", "Commit a node's proposed node-roles and make it available", "  crowbar nodes commit newtest.cr0wbar.com",
			args("NODE"), func(ctx context.Context, c *client.Client, a []string) (any, error) { return c.CommitNode(ctx, a[0]) }),
		simple(o, "attribs NODE", "List a node's attribs with their values", "  crowbar nodes attribs newtest.cr0wbar.com",
			args("NODE"), func(ctx context.Context, c *client.Client, a []string) (any, error) { return c.NodeAttribs(ctx, a[0]) }),
		simple(o, "node_roles NODE", "List a node's node-roles", "  crowbar nodes node_roles newtest.cr0wbar.com --format table",
			args("NODE"), func(ctx context.Context, c *client.Client, a []string) (any, error) {
				return c.NodeNodeRoles(ctx, a[0])
			}))

	bind := simple(o, "bind ROLE to NODE [in DEPLOYMENT]", "Bind a role to a node (and the roles it requires)",
		"  crowbar roles bind crowbar-managed-node to newtest.cr0wbar.com", argsBetween(3, 5, "ROLE to NODE [in DEPLOYMENT]"),
		func(ctx context.Context, c *client.Client, a []string) (any, error) {
			dep := ""
			if len(a) == 5 {
				dep = a[4]
			}
			return c.Bind(ctx, a[0], a[2], dep)
		})
	bind.PreRunE = func(_ *cobra.Command, a []string) error {
		if len(a) == 4 {
			return usageError{fmt.Errorf("usage: crowbar roles bind ROLE to NODE [in DEPLOYMENT]")}
		}
		return grammar(a, map[int]string{1: "to", 3: "in"}, -1)
	}
	roles.AddCommand(bind)

	for _, v := range []struct {
		verb, short string
		call        func(*client.Client, context.Context, string) (client.Object, error)
	}{
		{"commit", "Commit a deployment: its proposed node-roles become runnable", (*client.Client).CommitDeployment},
		{"propose", "Return a committed deployment to proposed", (*client.Client).ProposeDeployment},
		{"recall", "Withdraw a proposal (its proposed node-roles are removed)", (*client.Client).RecallDeployment},
	} {
		deps.AddCommand(simple(o, v.verb+" DEPLOYMENT", v.short, "  crowbar deployments "+v.verb+" test1", args("DEPLOYMENT"),
			func(ctx context.Context, c *client.Client, a []string) (any, error) { return v.call(c, ctx, a[0]) }))
	}
	var dot bool
	graph := simple(o, "graph DEPLOYMENT", "The deployment's node-role graph (JSON, or Graphviz with --dot)",
		"  crowbar deployments graph test1 --dot | dot -Tsvg > test1.svg", args("DEPLOYMENT"),
		func(ctx context.Context, c *client.Client, a []string) (any, error) {
			b, err := c.DeploymentGraph(ctx, a[0], dot)
			if err != nil || dot || o.format == "json" {
				return b, err
			}
			var g map[string]any
			if err := jsonUnmarshal(b, &g); err != nil {
				return nil, err
			}
			return toObjects(g["nodes"]), nil
		})
	graph.Flags().BoolVar(&dot, "dot", false, "Graphviz DOT instead of JSON")
	deps.AddCommand(graph,
		simple(o, "node_roles DEPLOYMENT", "List a deployment's node-roles", "  crowbar deployments node_roles test1 --format table", args("DEPLOYMENT"),
			func(ctx context.Context, c *client.Client, a []string) (any, error) {
				return c.DeploymentNodeRoles(ctx, a[0])
			}))

	nrs.AddCommand(
		simple(o, "retry NODE_ROLE", "Send a node-role in ERROR back to TODO", "  crowbar node_roles retry 25", args("NODE_ROLE"),
			func(ctx context.Context, c *client.Client, a []string) (any, error) {
				return c.RetryNodeRole(ctx, a[0])
			}),
		simple(o, "destroy NODE_ROLE", "Unbind a node-role nothing depends on", "  crowbar node_roles destroy 25", args("NODE_ROLE"),
			func(ctx context.Context, c *client.Client, a []string) (any, error) { return nil, c.Unbind(ctx, a[0]) }))
	update := simple(o, "update NODE_ROLE JSON", "Change a node-role's proposed data, or complete one in transition",
		`  crowbar node_roles update 25 '{"proposed_data": {"crowbar": {"target_os": "debian-12"}}}'`, args("NODE_ROLE", "JSON"), nil)
	update.RunE = func(_ *cobra.Command, a []string) error {
		body, err := jsonArg(a[1])
		if err != nil {
			return err
		}
		return o.run(func(ctx context.Context, c *client.Client) error {
			obj, err := c.UpdateNodeRole(ctx, a[0], body)
			if err != nil {
				return err
			}
			return o.print(obj)
		})
	}
	nrs.AddCommand(update)

	install := simple(o, "install FILE", "Install (or replace) a barclamp module", "  crowbar barclamps install hello.wasm", args("FILE"), nil)
	install.RunE = func(_ *cobra.Command, a []string) error {
		wasm, err := os.ReadFile(a[0])
		if err != nil {
			return usageError{err}
		}
		return o.run(func(ctx context.Context, c *client.Client) error {
			obj, err := c.InstallBarclamp(ctx, wasm)
			if err != nil {
				return err
			}
			return o.print(o.trim(obj))
		})
	}
	enable := simple(o, "enable BARCLAMP in DEPLOYMENT", "Enable a barclamp in a deployment", "  crowbar barclamps enable hello in test1",
		args("BARCLAMP", "in", "DEPLOYMENT"), func(ctx context.Context, c *client.Client, a []string) (any, error) {
			return nil, c.EnableBarclamp(ctx, a[2], a[0])
		})
	enable.PreRunE = func(_ *cobra.Command, a []string) error { return grammar(a, map[int]string{1: "in"}, -1) }
	disable := simple(o, "disable BARCLAMP in DEPLOYMENT", "Disable a barclamp in a deployment", "  crowbar barclamps disable hello in test1",
		args("BARCLAMP", "in", "DEPLOYMENT"), func(ctx context.Context, c *client.Client, a []string) (any, error) {
			return nil, c.DisableBarclamp(ctx, a[2], a[0])
		})
	disable.PreRunE = enable.PreRunE
	bcs.AddCommand(install, enable, disable,
		simple(o, "destroy BARCLAMP", "Unload and remove an installed barclamp", "  crowbar barclamps destroy hello", args("BARCLAMP"),
			func(ctx context.Context, c *client.Client, a []string) (any, error) {
				return nil, c.RemoveBarclamp(ctx, a[0])
			}))
}

// grammar checks the keywords of a command's sentence and, when jsonAt is
// not -1, that argument's JSON.
func grammar(a []string, words map[int]string, jsonAt int) error {
	for i, w := range words {
		if i < len(a) {
			if err := word(a, i, w); err != nil {
				return err
			}
		}
	}
	if jsonAt >= 0 && jsonAt < len(a) {
		_, err := jsonArg(a[jsonAt])
		return err
	}
	return nil
}

func toObjects(v any) []client.Object {
	list, _ := v.([]any)
	out := make([]client.Object, 0, len(list))
	for _, x := range list {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}
