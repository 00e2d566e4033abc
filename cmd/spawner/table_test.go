package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/runner-spawner/runner-spawner/control"
)

// hostile is what a webhook payload, an instance or an older record could hold: a
// newline that forges a row, a tab that shifts columns, ANSI and OSC escapes that
// clear the screen or retitle the terminal, a bidi override, a megabyte.
var hostile = []string{
	"octo-org/octo-repo\n9999  ubuntu  octo/forged  queued",
	"a\tb\tc",
	"\x1b[2J\x1b[Hcleared",
	"\x1b]0;owned\x07title",
	"\u202eevil",
	strings.Repeat("x", 1<<20),
}

func checkPrinted(t *testing.T, out string, wantLines int) {
	t.Helper()
	if n := strings.Count(out, "\n"); n != wantLines {
		t.Errorf("printed %d lines, want %d:\n%s", n, wantLines, out)
	}
	if i := strings.IndexAny(out, "\x1b\x07\t\u202e"); i >= 0 {
		t.Errorf("a control or format character reached the terminal at byte %d: %q", i, out[max(0, i-20):min(len(out), i+20)])
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 4*cellMax {
			t.Errorf("a line of %d bytes", len(line))
		}
	}
}

// TestTableCellsAreEscaped: `jobs list` printed repository names with newlines and
// ANSI escapes raw. Every table cell now goes through untrusted.Cell.
func TestTableCellsAreEscaped(t *testing.T) {
	for _, s := range hostile {
		var buf bytes.Buffer
		tw := newTable(&buf, "JOB", "FLAVOR", "REPO", "NOTE")
		tw.row(int64(42), "ubuntu", s, s)
		if err := tw.flush(); err != nil {
			t.Fatal(err)
		}
		checkPrinted(t, buf.String(), 2)
	}
}

// TestStatusEscapesTheJanitorName: status prints its flavor table and the name the
// active janitor announced through the same escaping.
func TestStatusEscapesTheJanitorName(t *testing.T) {
	for _, s := range hostile {
		var buf bytes.Buffer
		rep := &control.Report{
			Flavors: []control.FlavorReport{{Name: "ubuntu", Runners: map[string]int{}}},
			Janitor: control.JanitorStatus{Active: s},
		}
		if err := printStatus(&buf, rep); err != nil {
			t.Fatal(err)
		}
		// The flavor table (2 lines), a blank line, janitor, dead letters, stream.
		checkPrinted(t, buf.String(), 6)
	}
}
