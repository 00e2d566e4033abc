package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/queue"
)

// statusReport is what `spawner status --json` prints. Fields are added, never
// renamed: scripts and monitoring parse it.
type statusReport struct {
	Flavors []flavorStatus     `json:"flavors"`
	Stream  queue.StreamHealth `json:"stream"`
	NATS    natsStatus         `json:"nats"`
}

type flavorStatus struct {
	Name string `json:"name"`
	// Pending is the number of job events stored and not yet consumed.
	Pending  uint64            `json:"pending"`
	ByAction map[string]uint64 `json:"pending_by_action"`
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
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			conn, err := a.connect(ctx, "status", nil, timeout)
			if err != nil {
				return err
			}
			defer conn.Close()
			rep, err := a.status(ctx, conn)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printStatus(cmd.OutOrStdout(), rep)
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
	rep := &statusReport{Stream: health, NATS: natsStatus{URL: redact(a.natsURL()), Connected: conn.Connected()}}
	for _, f := range a.cfg.Flavors {
		fs := flavorStatus{Name: f.Name, ByAction: map[string]uint64{}}
		if b := backlog[f.Name]; b != nil {
			fs.Pending, fs.ByAction = b.Pending, b.ByAction
		}
		rep.Flavors = append(rep.Flavors, fs)
	}
	return rep, nil
}

func printStatus(w io.Writer, rep *statusReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FLAVOR\tPENDING\tQUEUED\tIN_PROGRESS\tCOMPLETED")
	for _, f := range rep.Flavors {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", f.Name, f.Pending, f.ByAction[queue.ActionQueued], f.ByAction[queue.ActionInProgress], f.ByAction[queue.ActionCompleted])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	s := rep.Stream
	_, err := fmt.Fprintf(w, "\nstream %s: %d events, %d bytes (%.1f%% full), replicas %d; nats %s connected=%v\n",
		s.Name, s.Messages, s.Bytes, s.FullPercent, s.Replicas, rep.NATS.URL, rep.NATS.Connected)
	return err
}
