package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"
)

func runnersCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "runners", Short: "Inspect runners"}
	var flavor string
	var states []string
	var live, asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List runner records (oldest first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withState(cmd, g, func(ctx context.Context, _ *app, _ *queue.Conn, fl *fleet.Fleet) error {
				f := control.RunnerFilter{Flavor: flavor, Live: live}
				for _, s := range states {
					f.States = append(f.States, fleet.RunnerState(s))
				}
				rs, err := control.ListRunners(ctx, fl, f)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd, rs)
				}
				tw := newTable(cmd.OutOrStdout(), "RUNNER", "FLAVOR", "STATE", "FOR JOB", "TOOK JOB", "SPARE", "PRE-JOB", "OUTCOME", "AGE", "NOTE")
				for _, r := range rs {
					note := r.FailReason
					if note == "" {
						note = r.LastError
					}
					if r.Outcome.IsCheckFailure() {
						note = checkNote(r.CheckHTTPCode, r.CheckReason)
					}
					tw.row(r.Name, r.Flavor, string(r.State), r.ForJob, r.TookJob, r.Spare, r.InPreJob(), string(r.Outcome), time.Since(r.CreatedAt).Round(time.Second), note)
				}
				return tw.flush()
			})
		},
	}
	list.Flags().StringVar(&flavor, "flavor", "", "only this flavor")
	list.Flags().StringSliceVar(&states, "state", nil, "only these states (creating, booting, idle, busy, finished, failed)")
	list.Flags().BoolVar(&live, "live", false, "only runners that are not over")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list)
	return cmd
}

// checkNote is a refused job's note: the policy service's HTTP status (none for the
// fork check, or a service not reached) and its reason, already cut when stored.
func checkNote(code int, reason string) string {
	if code == 0 {
		return reason
	}
	return fmt.Sprintf("HTTP %d: %s", code, reason)
}
