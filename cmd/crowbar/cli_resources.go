//go:build !agentonly

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
	{name: "jigs", singular: "jig", example: "noop", writable: true, create: `{"name": "ansible"}`},
	{name: "users", singular: "user", example: "operator", writable: true, create: `{"username": "operator", "role": "operator", "api_access": true, "password": "…"}`},
	{name: "roles", singular: "role", example: "crowbar-managed-node"},
	{name: "attribs", singular: "attrib", example: "provisioner-target_os"},
	{name: "barclamps", singular: "barclamp", example: "network"},
	{name: "node_roles", singular: "node-role", example: "25"},
	{name: "join_tokens", singular: "join-token", example: "3"},
}

// newResourceCmd builds "crowbar <collection> list|show|create|update|destroy".
func newResourceCmd(o *cliOptions, rs resourceSpec) *cobra.Command {
	cmd := &cobra.Command{Use: rs.name, Short: "Work with " + strings.ReplaceAll(rs.name, "_", "-")}
	res := func(c *client.Client) client.Resource { return c.Resource(rs.name) }
	one := strings.ToUpper(rs.singular)
	cmd.AddCommand(
		simple(o, "list", "List "+rs.name, fmt.Sprintf("  crowbar %s list --attributes name\n  crowbar %s list --format table", rs.name, rs.name),
			args(), noJSON, func(ctx context.Context, c *client.Client, _ []string, _ client.Object) (any, error) {
				return res(c).List(ctx, o.listOptions())
			}),
		simple(o, "show "+one, "Show one "+rs.singular+" by name or id", fmt.Sprintf("  crowbar %s show %s", rs.name, rs.example),
			args(one), noJSON, func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return res(c).Show(ctx, a[0])
			}))
	if !rs.writable {
		return cmd
	}
	cmd.AddCommand(
		simple(o, "create JSON", "Create a "+rs.singular, fmt.Sprintf("  crowbar %s create '%s'", rs.name, rs.create),
			args("JSON"), 0, func(ctx context.Context, c *client.Client, _ []string, body client.Object) (any, error) {
				return res(c).Create(ctx, body)
			}),
		simple(o, "update "+one+" JSON", "Change fields of a "+rs.singular, fmt.Sprintf("  crowbar %s update %s '{\"description\": \"rack 4\"}'", rs.name, rs.example),
			args(one, "JSON"), 1, func(ctx context.Context, c *client.Client, a []string, body client.Object) (any, error) {
				return res(c).Update(ctx, a[0], body)
			}),
		simple(o, "destroy "+one, "Delete a "+rs.singular, fmt.Sprintf("  crowbar %s destroy %s", rs.name, rs.example),
			args(one), noJSON, func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return nil, res(c).Destroy(ctx, a[0])
			}))
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

// noJSON: the command takes no JSON argument.
const noJSON = -1

// simple is a command that makes one call and prints its answer. When
// jsonAt is not noJSON, that argument must be a JSON object (checked before
// any request) and reaches call as body.
func simple(o *cliOptions, use, short, example string, a cobra.PositionalArgs, jsonAt int,
	call func(ctx context.Context, c *client.Client, args []string, body client.Object) (any, error)) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Example: example, Args: a,
		RunE: func(_ *cobra.Command, args []string) error {
			var body client.Object
			if jsonAt != noJSON {
				var err error
				if body, err = jsonArg(args[jsonAt]); err != nil {
					return err
				}
			}
			return o.run(func(ctx context.Context, c *client.Client) error {
				v, err := call(ctx, c, args, body)
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
	addJoinTokenVerbs(o, byName["join_tokens"])
	keywords := func(cmd *cobra.Command, words map[int]string) *cobra.Command {
		cmd.PreRunE = func(_ *cobra.Command, a []string) error { return grammar(a, words) }
		return cmd
	}

	nodes.AddCommand(
		keywords(simple(o, "set NODE attrib ATTRIB to JSON", "Set a node's attrib ({\"value\": …})",
			`  crowbar nodes set newtest.cr0wbar.com attrib hint-admin-v4addr to '{"value": "192.168.124.99/24"}'`, args("NODE", "attrib", "ATTRIB", "to", "JSON"), 4,
			func(ctx context.Context, c *client.Client, a []string, body client.Object) (any, error) {
				return c.SetNodeAttrib(ctx, a[0], a[2], body)
			}), map[int]string{1: "attrib", 3: "to"}),
		keywords(simple(o, "get NODE attrib ATTRIB", "Show a node's attrib with its value",
			"  crowbar nodes get d52-54-05-3f-00-00.smoke.test attrib provisioner-target_os", args("NODE", "attrib", "ATTRIB"), noJSON,
			func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return c.NodeAttrib(ctx, a[0], a[2])
			}), map[int]string{1: "attrib"}),
		keywords(simple(o, "move NODE to DEPLOYMENT", "Move a node to another deployment",
			"  crowbar nodes move d52-54-05-3f-00-00.smoke.test to test1", args("NODE", "to", "DEPLOYMENT"), noJSON,
			func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return c.Nodes().Update(ctx, a[0], client.Object{"deployment": a[2]})
			}), map[int]string{1: "to"}),
		simple(o, "commit NODE", "Commit a node's proposed node-roles and make it available", "  crowbar nodes commit newtest.cr0wbar.com",
			args("NODE"), noJSON, func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return c.CommitNode(ctx, a[0])
			}),
		simple(o, "attribs NODE", "List a node's attribs with their values", "  crowbar nodes attribs newtest.cr0wbar.com",
			args("NODE"), noJSON, func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return c.NodeAttribs(ctx, a[0])
			}),
		simple(o, "node_roles NODE", "List a node's node-roles", "  crowbar nodes node_roles newtest.cr0wbar.com --format table",
			args("NODE"), noJSON, func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return c.NodeNodeRoles(ctx, a[0])
			}),
		nodeAgentCmd(o))

	bind := simple(o, "bind ROLE to NODE [in DEPLOYMENT]", "Bind a role to a node (and the roles it requires)",
		"  crowbar roles bind crowbar-managed-node to newtest.cr0wbar.com", argsBetween(3, 5, "ROLE to NODE [in DEPLOYMENT]"), noJSON,
		func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
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
		return grammar(a, map[int]string{1: "to", 3: "in"})
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
		deps.AddCommand(simple(o, v.verb+" DEPLOYMENT", v.short, "  crowbar deployments "+v.verb+" test1", args("DEPLOYMENT"), noJSON,
			func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return v.call(c, ctx, a[0])
			}))
	}
	var dot bool
	graph := simple(o, "graph DEPLOYMENT", "The deployment's node-role graph (JSON, or Graphviz with --dot)",
		"  crowbar deployments graph test1 --dot | dot -Tsvg > test1.svg", args("DEPLOYMENT"), noJSON,
		func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
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
		simple(o, "node_roles DEPLOYMENT", "List a deployment's node-roles", "  crowbar deployments node_roles test1 --format table",
			args("DEPLOYMENT"), noJSON, func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return c.DeploymentNodeRoles(ctx, a[0])
			}))

	nrs.AddCommand(
		simple(o, "retry NODE_ROLE", "Send a node-role in ERROR back to TODO", "  crowbar node_roles retry 25",
			args("NODE_ROLE"), noJSON, func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return c.RetryNodeRole(ctx, a[0])
			}),
		simple(o, "destroy NODE_ROLE", "Unbind a node-role nothing depends on", "  crowbar node_roles destroy 25",
			args("NODE_ROLE"), noJSON, func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return nil, c.Unbind(ctx, a[0])
			}),
		simple(o, "update NODE_ROLE JSON", "Change a node-role's proposed data, or complete one in transition",
			`  crowbar node_roles update 25 '{"proposed_data": {"crowbar": {"target_os": "debian-12"}}}'`, args("NODE_ROLE", "JSON"), 1,
			func(ctx context.Context, c *client.Client, a []string, body client.Object) (any, error) {
				return c.UpdateNodeRole(ctx, a[0], body)
			}))

	inDeployment := map[int]string{1: "in"}
	bcs.AddCommand(
		simple(o, "install FILE", "Install (or replace) a barclamp module", "  crowbar barclamps install hello.wasm", args("FILE"), noJSON,
			func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				wasm, err := os.ReadFile(a[0])
				if err != nil {
					return nil, usageError{err}
				}
				return c.InstallBarclamp(ctx, wasm)
			}),
		keywords(simple(o, "enable BARCLAMP in DEPLOYMENT", "Enable a barclamp in a deployment", "  crowbar barclamps enable hello in test1",
			args("BARCLAMP", "in", "DEPLOYMENT"), noJSON, func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return nil, c.EnableBarclamp(ctx, a[2], a[0])
			}), inDeployment),
		keywords(simple(o, "disable BARCLAMP in DEPLOYMENT", "Disable a barclamp in a deployment", "  crowbar barclamps disable hello in test1",
			args("BARCLAMP", "in", "DEPLOYMENT"), noJSON, func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return nil, c.DisableBarclamp(ctx, a[2], a[0])
			}), inDeployment),
		simple(o, "destroy BARCLAMP", "Unload and remove an installed barclamp", "  crowbar barclamps destroy hello",
			args("BARCLAMP"), noJSON, func(ctx context.Context, c *client.Client, a []string, _ client.Object) (any, error) {
				return nil, c.RemoveBarclamp(ctx, a[0])
			}))
}

// grammar checks the keywords of a command's sentence ("to", "attrib",
// "in") before any request.
func grammar(a []string, words map[int]string) error {
	for i, w := range words {
		if i < len(a) {
			if err := word(a, i, w); err != nil {
				return err
			}
		}
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
