package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"

	"github.com/runner-spawner/runner-spawner/internal/untrusted"
)

// cellMax is how many bytes of one cell a table prints; --json prints every value in
// full.
const cellMax = 200

// lineMax is how many bytes of a free-text value (an error a janitor reports) a
// command prints on one line.
const lineMax = 1000

// table prints aligned columns for the operator commands. Every cell goes through
// untrusted.Cell: repository names, runner names, conclusions and error notes come
// from webhooks, instances and GitHub, and a newline, a tab or an ANSI escape in one
// must not forge a row, shift the columns or repaint the operator's terminal.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	fmt.Fprintln(t.tw, strings.Join(headers, "\t"))
	return t
}

func (t *table) row(cells ...any) {
	parts := make([]string, len(cells))
	for i, c := range cells {
		parts[i] = untrusted.Cell(fmt.Sprint(c), cellMax)
	}
	fmt.Fprintln(t.tw, strings.Join(parts, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// withState connects an operator command to NATS and the KV state.
func withState(cmd *cobra.Command, g *globalFlags, fn func(ctx context.Context, a *app, conn *queue.Conn, fl *fleet.Fleet) error) error {
	a, err := loadCLI(g, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	return a.operate(cmd.Context(), cmd.CommandPath(), time.Minute, 15*time.Second, func(ctx context.Context, conn *queue.Conn) error {
		fl, err := a.asm.Fleet(ctx, conn)
		if err != nil {
			return err
		}
		return fn(ctx, a, conn, fl)
	})
}

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
