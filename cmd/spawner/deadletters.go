package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"
)

func deadLettersCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "dead-letters", Short: "List, retry or drop job events the consumers gave up on"}
	var asJSON bool
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters (oldest first) with their reasons",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withState(cmd, g, func(ctx context.Context, _ *app, conn *queue.Conn, _ *fleet.Fleet) error {
				dls, err := control.DeadLetters(ctx, conn, limit)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd, dls)
				}
				tw := newTable(cmd.OutOrStdout(), "SEQ", "AT", "FLAVOR", "JOB", "REPO", "REASON")
				for _, dl := range dls {
					job, repo, flavor := int64(0), "", strings.TrimPrefix(dl.Subject, "spawner.dead.")
					if dl.Event != nil {
						job, repo = dl.Event.JobID, dl.Event.Repo
					}
					tw.row(dl.Seq, dl.At.Format(time.DateTime), flavor, job, repo, dl.Reason)
				}
				return tw.flush()
			})
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	list.Flags().IntVar(&limit, "limit", 1000, "at most this many")
	retry := &cobra.Command{
		Use:   "retry SEQ...",
		Short: "Queue the jobs of these dead letters again (their attempt and replacement counts restart) and drop the letters",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withState(cmd, g, func(ctx context.Context, a *app, conn *queue.Conn, fl *fleet.Fleet) error {
				return forDeadLetters(ctx, cmd, conn, args, func(dl *queue.DeadLetter) error {
					return control.RetryDeadLetter(ctx, conn, fl, dl)
				})
			})
		},
	}
	drop := &cobra.Command{
		Use:   "drop SEQ...",
		Short: "Delete these dead letters",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withState(cmd, g, func(ctx context.Context, _ *app, conn *queue.Conn, _ *fleet.Fleet) error {
				return forDeadLetters(ctx, cmd, conn, args, func(dl *queue.DeadLetter) error {
					return control.DropDeadLetter(ctx, conn, dl)
				})
			})
		},
	}
	cmd.AddCommand(list, retry, drop)
	return cmd
}

// forDeadLetters does fn to each dead letter named in args (their sequences) and says
// which were done; a sequence that names none is an error, reported with the others.
func forDeadLetters(ctx context.Context, cmd *cobra.Command, conn *queue.Conn, args []string, fn func(*queue.DeadLetter) error) error {
	found, errs, err := control.FindDeadLetters(ctx, conn, args)
	if err != nil {
		return err
	}
	for _, dl := range found {
		if err := fn(dl); err != nil {
			errs = append(errs, fmt.Errorf("dead letter %d: %w", dl.Seq, err))
			continue
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%d: done\n", dl.Seq)
	}
	if len(errs) > 0 {
		return &exitError{code: 1, err: errors.Join(errs...)}
	}
	return nil
}
