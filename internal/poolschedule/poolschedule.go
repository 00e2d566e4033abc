// Package poolschedule says how many idle runners a flavor's warm pool should hold at
// a given moment: flavors[].min_idle, replaced while one of the flavor's
// min_idle_schedule windows is open by that window's min_idle. The consumers fill the
// pool to that size and the janitor reaps beyond it, so both ask the same Schedule.
package poolschedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Window is one min_idle_schedule entry as configured.
type Window struct {
	// Start is a standard 5-field cron expression (or a descriptor such as @daily),
	// optionally prefixed with "CRON_TZ=<zone> "; without it, UTC.
	Start string
	// Duration is how long the window stays open after each start.
	Duration time.Duration
	// MinIdle is the pool's size while the window is open.
	MinIdle int
}

type window struct {
	Window
	start cron.Schedule
}

// Schedule is a flavor's warm pool size over time. The zero value is no pool.
type Schedule struct {
	base    int
	windows []window
}

// parser reads what cron.ParseStandard reads (5 fields, descriptors, CRON_TZ=),
// but in UTC, not the machine's local zone: a config means the same on every host.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseStart checks a window's start expression.
func ParseStart(spec string) (cron.Schedule, error) {
	s, err := parser.Parse(withZone(spec))
	if err != nil {
		return nil, fmt.Errorf("cron expression %q: %w", spec, err)
	}
	// A schedule that never fires (30 February) would be a window that never opens:
	// cron's Next says so with a zero time.
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("cron expression %q never fires", spec)
	}
	return s, nil
}

// withZone makes UTC explicit when the expression names no zone (cron's parser
// would take the machine's local zone).
func withZone(spec string) string {
	if strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") {
		return spec
	}
	return "CRON_TZ=UTC " + spec
}

// Problem is what is wrong with one field of a Window.
type Problem struct {
	Field string // start, duration or min_idle
	Err   error
}

func (p Problem) Error() string { return p.Field + ": " + p.Err.Error() }

// Check lists what is wrong with w, field by field. New refuses a window with any
// problem; the config's validation reports each under its own key.
func (w Window) Check() []Problem {
	var out []Problem
	if _, err := ParseStart(w.Start); err != nil {
		out = append(out, Problem{"start", err})
	}
	if w.Duration <= 0 {
		out = append(out, Problem{"duration", fmt.Errorf("must be positive (got %s)", w.Duration)})
	}
	if w.MinIdle < 0 {
		out = append(out, Problem{"min_idle", fmt.Errorf("must not be negative (got %d)", w.MinIdle)})
	}
	return out
}

// New is the schedule of a pool of base runners, with windows.
func New(base int, windows []Window) (Schedule, error) {
	if base < 0 {
		return Schedule{}, fmt.Errorf("min_idle must not be negative (got %d)", base)
	}
	s := Schedule{base: base}
	for i, w := range windows {
		if problems := w.Check(); len(problems) > 0 {
			return Schedule{}, fmt.Errorf("window %d: %w", i, problems[0])
		}
		start, err := ParseStart(w.Start)
		if err != nil { // Check parsed it already
			return Schedule{}, fmt.Errorf("window %d: %w", i, err)
		}
		s.windows = append(s.windows, window{Window: w, start: start})
	}
	return s, nil
}

// At is the pool's size at now: the largest min_idle of the windows open at now, or
// the base size when none is. A window is open from each start for its duration
// (so a window is open at now when its first start after now-duration is not after
// now).
func (s Schedule) At(now time.Time) int {
	size, open := 0, false
	for _, w := range s.windows {
		next := w.start.Next(now.Add(-w.Duration))
		if !next.IsZero() && !next.After(now) {
			size, open = max(size, w.MinIdle), true
		}
	}
	if !open {
		return s.base
	}
	return size
}

// Max is the largest size the schedule ever asks for: with none above zero, the
// flavor needs no pool keeper.
func (s Schedule) Max() int {
	m := s.base
	for _, w := range s.windows {
		m = max(m, w.MinIdle)
	}
	return m
}

// Windows reports whether the schedule has any window (its size changes with time).
func (s Schedule) Windows() bool { return len(s.windows) > 0 }

// Constant is a schedule without windows: always n.
func Constant(n int) Schedule { return Schedule{base: max(n, 0)} }
