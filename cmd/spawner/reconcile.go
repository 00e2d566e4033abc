package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
	"github.com/runner-spawner/runner-spawner/queue"
)

func reconcileCommand(g *globalFlags) *cobra.Command {
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Ask the active janitor for a reconcile pass now and print what it did",
		Long: `Ask the active janitor for a reconcile pass now (instead of waiting up to
janitor.interval) and print its summary: what it saw, deleted, settled, kept and
deferred. The pass has the usual bounds (janitor.max_deletes_per_pass,
janitor.max_github_calls_per_pass).

A suspect, such as an instance with no record, is deleted only once two passes at
least half of janitor.interval apart have seen it; a pass asked for right after
another marks new suspects ("marked") rather than deleting them. The command exits
non-zero when no janitor answered or the pass had errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := loadCLI(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			var sum control.PassSummary
			err = a.operate(cmd.Context(), "reconcile", timeout, 15*time.Second, func(ctx context.Context, conn *queue.Conn) error {
				s, err := control.Reconcile(ctx, conn)
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				sum = s
				return nil
			})
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(cmd, sum); err != nil {
					return err
				}
			} else {
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "reconcile by %s in %.2fs: %d instances, %d GitHub runners, %d records (GitHub checked: %v)\n",
					untrusted.Cell(sum.Janitor, cellMax), sum.Seconds, sum.Instances, sum.GitHubRunners, sum.Records, sum.GitHubChecked)
				fmt.Fprintf(w, "deleted %d %v, registrations removed %d, settled %d, slots released %d, resumed %d, replacements %d\n",
					sumCounts(sum.Deleted), sum.Deleted, sum.RegistrationsRemoved, sum.Settled, sum.SlotsReleased, sum.Resumed, sum.Replacements)
				fmt.Fprintf(w, "marked %d (acted on by a later pass if still suspect), kept %v, deferred %d, errors %d\n",
					sum.Marked, sum.Kept, sum.Deferred, sum.Errors)
				if sum.FirstError != "" {
					fmt.Fprintf(w, "first error: %s\n", untrusted.Cell(sum.FirstError, lineMax))
				}
			}
			if sum.Errors > 0 {
				return &exitError{code: 1, err: fmt.Errorf("")}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the pass summary as one JSON object")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the janitor's answer")
	return cmd
}
