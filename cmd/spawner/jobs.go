package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"
)

func jobsCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "jobs", Short: "Inspect jobs"}
	var flavor, repo string
	var states []string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List job records (oldest first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withState(cmd, g, func(ctx context.Context, _ *app, _ *queue.Conn, fl *fleet.Fleet) error {
				f := control.JobFilter{Flavor: flavor, Repo: repo}
				for _, s := range states {
					f.States = append(f.States, fleet.JobState(s))
				}
				js, err := control.ListJobViews(ctx, fl, f)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd, js)
				}
				tw := newTable(cmd.OutOrStdout(), "JOB", "FLAVOR", "REPO", "STATE", "CONCLUSION", "RUNNERS", "TAKEN BY", "OUTCOME", "WAITED", "NOTE")
				for _, j := range js {
					waited := ""
					if !j.ReceivedAt.IsZero() {
						end := j.StartedAt
						if end.IsZero() {
							end = time.Now()
						}
						waited = end.Sub(j.ReceivedAt).Round(time.Millisecond).String()
					}
					note := j.LastError
					if j.Gone {
						note = "gone on GitHub"
					}
					if j.Outcome.IsCheckFailure() {
						note = checkNote(j.CheckHTTPCode, j.CheckReason)
					}
					tw.row(j.ID, j.Flavor, j.Repo, string(j.State), j.Conclusion, strings.Join(j.Runners, ","), j.TakenBy, string(j.Outcome), waited, note)
				}
				return tw.flush()
			})
		},
	}
	list.Flags().StringVar(&flavor, "flavor", "", "only this flavor")
	list.Flags().StringVar(&repo, "repo", "", "only this repository (owner/name)")
	list.Flags().StringSliceVar(&states, "state", nil, "only these states (queued, in_progress, completed)")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list)
	return cmd
}
