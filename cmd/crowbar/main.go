// Command crowbar is the crowbar server and its command-line client.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes shared by every command.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 3
)

// usageError marks an error in how a command was called.
type usageError struct{ error }

func main() {
	agent.MaybeCoreX() // a container's init: the agent re-runs this binary as one
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "crowbar:", err)
		code := exitCode(err)
		if code == exitFailure && (strings.HasPrefix(err.Error(), "unknown ") || strings.Contains(err.Error(), "flag")) {
			code = exitUsage // cobra's own usage errors
		}
		os.Exit(code)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "crowbar",
		Short:         "Bare-metal orchestration: the crowbar server and its client",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCmd())
	addCommands(root)
	return root
}

// envName is the environment variable that stands in for a flag:
// --data-dir → CROWBAR_DATA_DIR.
func envName(flag string) string {
	return "CROWBAR_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv fills every flag not given on the command line from its
// CROWBAR_* variable, so flags win over the environment, which wins over
// defaults.
func applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := f.Value.Set(v); e != nil {
				err = usageError{fmt.Errorf("%s=%q: %v", envName(f.Name), v, e)}
			}
		}
	})
	return err
}

// daemon is the RunE of a long-running command: flags from the
// environment, then run until SIGINT or SIGTERM.
func daemon(run func(ctx context.Context) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if err := applyEnv(cmd.Flags()); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return run(ctx)
	}
}

// exitCode maps an error to the process's exit status.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case notFound(err):
		return exitNotFound
	}
	return exitFailure
}
