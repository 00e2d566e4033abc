package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

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
