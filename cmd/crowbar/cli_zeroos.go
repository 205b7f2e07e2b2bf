//go:build !agentonly

package main

import (
	"context"
	"net/url"
	"strings"

	"github.com/crowbar-go/crowbar/api/client"
	"github.com/spf13/cobra"
)

// newZeroOSCmd is "crowbar zero-os …": the zero-os barclamp's API
// (/zero-os/v2) for operators: nodes, containers, jobs and processes.
func newZeroOSCmd(o *cliOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "zero-os", Short: "Zero-OS nodes, containers, jobs and processes (the zero-os barclamp)"}
	esc := url.PathEscape
	call := func(method string, path func(a []string) string, jsonAt int) func(ctx context.Context, c *client.Client, a []string, body client.Object) (any, error) {
		return func(ctx context.Context, c *client.Client, a []string, body client.Object) (any, error) {
			var out any
			var in any
			if jsonAt != noJSON {
				in = body
			}
			if err := c.ZeroOS(ctx, method, path(a), in, &out); err != nil {
				return nil, err
			}
			if m, ok := out.(map[string]any); ok {
				return client.Object(m), nil
			}
			if l, ok := out.([]any); ok {
				return toObjects(l), nil
			}
			return out, nil
		}
	}
	node := func(a []string) string { return "/nodes/" + esc(a[0]) }
	container := func(a []string) string { return node(a) + "/containers/" + esc(a[1]) }
	// where is a node's or, with a container name, a container's subtree.
	where := func(a []string, rest string) string {
		if len(a) > 1 && a[1] != "" {
			return container(a) + rest
		}
		return node(a) + rest
	}
	nodes := &cobra.Command{Use: "nodes", Short: "Zero-OS nodes (machines whose agent joined)"}
	nodes.AddCommand(
		simple(o, "list", "List nodes: id (the MAC without colons), hostname, address, status", "  crowbar zero-os nodes list --format table",
			args(), noJSON, call("GET", func([]string) string { return "/nodes" }, noJSON)),
		simple(o, "show NODE", "Show a node", "  crowbar zero-os nodes show 525400123456", args("NODE"), noJSON,
			call("GET", node, noJSON)))
	for _, info := range []string{"mem", "cpus", "disks", "nics", "info", "state"} {
		info := info
		nodes.AddCommand(simple(o, info+" NODE", "A node's "+info, "  crowbar zero-os nodes "+info+" 525400123456", args("NODE"), noJSON,
			call("GET", func(a []string) string { return node(a) + "/" + info }, noJSON)))
	}
	nodes.AddCommand(simple(o, "reboot NODE", "Reboot a node (operator or admin)", "  crowbar zero-os nodes reboot 525400123456",
		args("NODE"), noJSON, call("POST", func(a []string) string { return node(a) + "/reboot" }, noJSON)))

	containers := &cobra.Command{Use: "containers", Short: "Containers on Zero-OS nodes"}
	containers.AddCommand(
		simple(o, "list NODE", "List a node's containers", "  crowbar zero-os containers list 525400123456 --format table",
			args("NODE"), noJSON, call("GET", func(a []string) string { return node(a) + "/containers" }, noJSON)),
		simple(o, "show NODE NAME", "Show a container", "  crowbar zero-os containers show 525400123456 web", args("NODE", "NAME"), noJSON,
			call("GET", container, noJSON)),
		simple(o, "create NODE JSON", "Define and start a container (the orchestrator's CreateContainer)",
			`  crowbar zero-os containers create 525400123456 '{"name": "web", "flist": "/srv/roots/busybox", "nics": [{"type": "default"}], "ports": ["8080:80"]}'`,
			args("NODE", "JSON"), 1, call("POST", func(a []string) string { return node(a) + "/containers" }, 1)),
		simple(o, "destroy NODE NAME", "Terminate and forget a container", "  crowbar zero-os containers destroy 525400123456 web",
			args("NODE", "NAME"), noJSON, call("DELETE", container, noJSON)))
	for _, verb := range []string{"start", "stop"} {
		verb := verb
		containers.AddCommand(simple(o, verb+" NODE NAME", strings.ToUpper(verb[:1])+verb[1:]+" a container",
			"  crowbar zero-os containers "+verb+" 525400123456 web", args("NODE", "NAME"), noJSON,
			call("POST", func(a []string) string { return container(a) + "/" + verb }, noJSON)))
	}

	var in string
	jobs := &cobra.Command{Use: "jobs", Short: "Jobs on a node, or in a container with --container"}
	jobs.PersistentFlags().StringVar(&in, "container", "", "the container (by name) whose jobs to work with")
	nodeArgs := func(a []string) []string { return []string{a[0], in} }
	jobs.AddCommand(
		simple(o, "list NODE", "List running jobs", "  crowbar zero-os jobs list 525400123456 --container web", args("NODE"), noJSON,
			call("GET", func(a []string) string { return where(nodeArgs(a), "/jobs") }, noJSON)),
		simple(o, "show NODE JOB", "Show a job's result", "  crowbar zero-os jobs show 525400123456 f3976780-f369-45df-ab54-206149dc000e",
			args("NODE", "JOB"), noJSON, call("GET", func(a []string) string { return where(nodeArgs(a), "/jobs/"+esc(a[1])) }, noJSON)),
		simple(o, "kill NODE JOB", "Kill a job", "  crowbar zero-os jobs kill 525400123456 f3976780-f369-45df-ab54-206149dc000e",
			args("NODE", "JOB"), noJSON, call("DELETE", func(a []string) string { return where(nodeArgs(a), "/jobs/"+esc(a[1])) }, noJSON)))

	var pin string
	processes := &cobra.Command{Use: "processes", Short: "Processes on a node, or in a container with --container"}
	processes.PersistentFlags().StringVar(&pin, "container", "", "the container (by name) whose processes to work with")
	pArgs := func(a []string) []string { return []string{a[0], pin} }
	processes.AddCommand(
		simple(o, "list NODE", "List processes", "  crowbar zero-os processes list 525400123456 --format table", args("NODE"), noJSON,
			call("GET", func(a []string) string { return where(pArgs(a), "/processes") }, noJSON)),
		simple(o, "kill NODE PID", "Stop a process (SIGTERM)", "  crowbar zero-os processes kill 525400123456 4242", args("NODE", "PID"), noJSON,
			call("DELETE", func(a []string) string { return where(pArgs(a), "/processes/"+esc(a[1])) }, noJSON)),
		simple(o, "start NODE JSON", "Start a process in a container (CoreSystem: name, args, pwd, environment)",
			`  crowbar zero-os processes start 525400123456 '{"name": "/bin/sleep", "args": ["60"]}' --container web`,
			args("NODE", "JSON"), 1, call("POST", func(a []string) string { return where(pArgs(a), "/processes") }, 1)))
	for _, group := range []*cobra.Command{nodes, containers, jobs, processes} {
		group.Args, group.RunE = cobra.ArbitraryArgs, groupRun
		cmd.AddCommand(group)
	}
	return cmd
}
