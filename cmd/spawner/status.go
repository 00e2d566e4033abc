package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
	"github.com/runner-spawner/runner-spawner/queue"
)

func statusCommand(g *globalFlags) *cobra.Command {
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show per flavor the events waiting and the queue's health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := loadCLI(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return a.operate(cmd.Context(), "status", timeout, timeout, func(ctx context.Context, conn *queue.Conn) error {
				rep, err := a.status(ctx, conn)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd, rep)
				}
				return printStatus(cmd.OutOrStdout(), rep)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for NATS")
	return cmd
}

func (a *app) status(ctx context.Context, conn *queue.Conn) (*control.Report, error) {
	st, err := conn.State(ctx)
	if err != nil {
		return nil, err
	}
	fl, err := a.asm.Fleet(ctx, conn)
	if err != nil {
		return nil, err
	}
	limits := make([]control.FlavorLimit, len(a.cfg.Flavors))
	for i, f := range a.cfg.Flavors {
		pool, err := f.PoolSchedule()
		if err != nil {
			return nil, fmt.Errorf("flavor %s: min_idle_schedule: %w", f.Name, err)
		}
		limits[i] = control.FlavorLimit{Name: f.Name, MaxRunners: f.MaxRunners, MinIdle: pool.At(time.Now())}
	}
	return control.BuildReport(ctx, conn, st, fl, limits, secret.RedactURL(a.asm.NATSURL()))
}

func printStatus(w io.Writer, rep *control.Report) error {
	tw := newTable(w, "FLAVOR", "QUEUED JOBS", "SLOTS", "POOL", "CREATING", "BOOTING", "IDLE", "BUSY", "EVENTS PENDING", "PAUSED")
	for _, f := range rep.Flavors {
		pool := "-"
		if f.MinIdle > 0 || f.Pool > 0 {
			// n/0: a min_idle_schedule window closed and its pool is being reaped.
			pool = fmt.Sprintf("%d/%d", f.Pool, f.MinIdle)
		}
		tw.row(f.Name, f.Queued, fmt.Sprintf("%d/%d", f.SlotsInUse, f.MaxRunners), pool,
			f.Runners["creating"], f.Runners["booting"], f.Runners["idle"], f.Runners["busy"], f.Pending, f.Paused)
	}
	if err := tw.flush(); err != nil {
		return err
	}
	s := rep.Stream
	// The janitor's name is what it announced on NATS: printed like a table cell.
	active := untrusted.Cell(rep.Janitor.Active, cellMax)
	if active == "" {
		active = "none"
	}
	last := "never"
	if lr := rep.Janitor.LastReconcile; lr != nil {
		last = fmt.Sprintf("%s ago (deleted %d, kept %v)", time.Since(lr.StartedAt).Round(time.Second), sumCounts(lr.Deleted), lr.Kept)
	}
	fmt.Fprintf(w, "\njanitor: active %s, last reconcile %s", active, last)
	if b := rep.GitHub; b != nil {
		fmt.Fprintf(w, "\ngithub budget: %d of %d left, resets %s", b.Remaining, b.Limit, b.Reset.Local().Format(time.TimeOnly))
	}
	_, err := fmt.Fprintf(w, "\ndead letters: %d\nstream %s: %d events, %d bytes (%.1f%% full), replicas %d; nats %s connected=%v\n",
		rep.DeadLetters, s.Name, s.Messages, s.Bytes, s.FullPercent, s.Replicas, rep.NATS.URL, rep.NATS.Connected)
	return err
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
