// Command spawner is the one binary of runner-spawner: the webhook receiver, the
// consumers, the janitor and the operator CLI, as subcommands. It is the only place
// that reads the config file, the environment and flags, and wires the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if ee == nil || ee.err.Error() != "" {
			fmt.Fprintln(os.Stderr, "spawner:", err)
		}
		os.Exit(code)
	}
}

// globalFlags are the flags every subcommand takes.
type globalFlags struct {
	configPath string
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "spawner",
		Short:         "One fresh, single-use GitHub Actions runner for every queued job",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.configPath, "config", "", "config file (YAML; see docs/configuration.md)")
	root.AddCommand(
		serveCommand(g),
		webhookCommand(g),
		consumerCommand(g),
		janitorCommand(g),
		flushCommand(g),
		reconcileCommand(g),
		runnersCommand(g),
		jobsCommand(g),
		deadLettersCommand(g),
		statusCommand(g),
		configCommand(g),
		versionCommand(),
		devCommand(),
	)
	return root
}
