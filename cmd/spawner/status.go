package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
	"github.com/runner-spawner/runner-spawner/queue"
)

// statusReport is what `spawner status --json` prints. Fields are added, never
// renamed: scripts and monitoring parse it.
type statusReport struct {
	Flavors     []flavorStatus        `json:"flavors"`
	Janitor     control.JanitorStatus `json:"janitor"`
	GitHub      *control.Budget       `json:"github_budget,omitempty"`
	DeadLetters uint64                `json:"dead_letters"`
	Stream      queue.StreamHealth    `json:"stream"`
	NATS        natsStatus            `json:"nats"`
}

type flavorStatus struct {
	Name string `json:"name"`
	// Pending is the number of job events stored and not yet consumed.
	Pending  uint64            `json:"pending"`
	ByAction map[string]uint64 `json:"pending_by_action"`
	// Queued is the number of jobs waiting for a runner to take them.
	Queued int `json:"queued"`
	// Runners counts runner records by state.
	Runners    map[string]int `json:"runners"`
	MaxRunners int            `json:"max_runners"`
	// SlotsInUse is the capacity held now (live runners and instances being deleted).
	SlotsInUse int  `json:"slots_in_use"`
	Paused     bool `json:"paused,omitempty"`
}

type natsStatus struct {
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
}

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

func (a *app) status(ctx context.Context, conn *queue.Conn) (*statusReport, error) {
	backlog, health, err := conn.JobBacklog(ctx)
	if err != nil {
		return nil, err
	}
	rep := &statusReport{Stream: health, NATS: natsStatus{URL: secret.RedactURL(a.natsURL()), Connected: conn.Connected()}}
	st, err := conn.State(ctx)
	if err != nil {
		return nil, err
	}
	fl, err := fleet.Open(ctx, conn, a.logger)
	if err != nil {
		return nil, err
	}
	jobs, err := fl.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	runners, err := fl.Runners(ctx)
	if err != nil {
		return nil, err
	}
	if rep.DeadLetters, err = conn.DeadLetterCount(ctx); err != nil {
		return nil, err
	}
	snap, err := control.Snapshot(ctx, st, fl)
	if err != nil {
		return nil, err
	}
	rep.Janitor = snap.Janitor
	if lr := snap.Janitor.LastReconcile; lr != nil {
		rep.GitHub = lr.GitHubBudget
	}
	for _, f := range a.cfg.Flavors {
		fs := flavorStatus{Name: f.Name, ByAction: map[string]uint64{}, Runners: map[string]int{}, MaxRunners: f.MaxRunners}
		if b := backlog[f.Name]; b != nil {
			fs.Pending, fs.ByAction = b.Pending, b.ByAction
		}
		for _, j := range jobs {
			if j.Flavor == f.Name && j.State == fleet.JobQueued && !j.Gone && !j.DeadLettered {
				fs.Queued++
			}
		}
		for _, r := range runners {
			if r.Flavor == f.Name {
				fs.Runners[string(r.State)]++
			}
		}
		capRec, err := fl.Capacity(ctx, f.Name)
		if err != nil {
			return nil, err
		}
		fs.SlotsInUse = len(capRec.Slots)
		fs.Paused = time.Now().Before(capRec.PausedUntil)
		rep.Flavors = append(rep.Flavors, fs)
	}
	return rep, nil
}

func printStatus(w io.Writer, rep *statusReport) error {
	tw := newTable(w, "FLAVOR", "QUEUED JOBS", "SLOTS", "CREATING", "BOOTING", "IDLE", "BUSY", "EVENTS PENDING", "PAUSED")
	for _, f := range rep.Flavors {
		tw.row(f.Name, f.Queued, fmt.Sprintf("%d/%d", f.SlotsInUse, f.MaxRunners),
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
