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
	// The zone database in the binary: min_idle_schedule's CRON_TZ= zones resolve in
	// the scratch and distroless images too, which have no /usr/share/zoneinfo.
	_ "time/tzdata"

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
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := newStopper(cancel, os.Stderr, os.Exit)
	// Room for the second signal while the first is being handled.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go stop.watch(sigs)
	err := newRootCommand(stop).ExecuteContext(ctx)
	signal.Stop(sigs)
	cancel(nil)
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
	// stop bounds the shutdown after a signal (shutdown_timeout).
	stop *stopper
}

func newRootCommand(stop *stopper) *cobra.Command {
	g := &globalFlags{stop: stop}
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
