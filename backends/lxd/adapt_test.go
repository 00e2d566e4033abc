package lxd

import (
	"testing"
	"time"
)

// simulate drives a climber against a server whose throughput grows with
// concurrency up to best and no further (each operation's latency is base while
// at most best run, and grows in proportion beyond), always saturated, and returns
// the limits of the last rounds.
func simulate(c *climber, best int, rounds int) []int {
	const base = 400 * time.Millisecond
	var limits []int
	for range rounds {
		l := c.limit
		lat := base
		if l > best {
			lat = base * time.Duration(l) / time.Duration(best)
		}
		for range c.windowSize() {
			c.observe(lat, true)
		}
		limits = append(limits, c.limit)
	}
	return limits[len(limits)-20:]
}

// The limit settles around the concurrency beyond which the server gains nothing,
// from above and from below, and stays within its floor and ceiling.
func TestClimberSettlesWhereThroughputStopsGrowing(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		start, ceiling, best int
		lo, hi               int // where the last limits must lie
	}{
		{"from below", 2, 64, 12, 10, 14},
		{"from above", 40, 64, 6, 4, 8},
		{"flat: up to the ceiling (probing down by a step)", 4, 24, 1000, 20, 24},
		{"saturated: down to the floor", 16, 64, 1, 2, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := simulate(newClimber(tt.start, tt.ceiling), tt.best, 200)
			for _, l := range got {
				if l < tt.lo || l > tt.hi {
					t.Fatalf("limits %v, want all within [%d, %d]", got, tt.lo, tt.hi)
				}
			}
		})
	}
}

// A window in which nothing waited leaves the limit alone: an idle host is no
// evidence for or against more concurrency.
func TestClimberIgnoresUnsaturatedWindows(t *testing.T) {
	c := newClimber(8, 64)
	for range 1000 {
		if l, changed := c.observe(time.Second, false); changed || l != 8 {
			t.Fatalf("limit moved to %d without saturation", l)
		}
	}
}
