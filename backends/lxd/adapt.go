package lxd

import (
	"time"
)

// climber chooses the operation limit from the observed latency of creates and
// starts, by hill climbing on throughput. While operations wait for a slot (the
// limit binds), each window of completions gives the throughput at the current
// limit by Little's law (limit ÷ mean latency). A step up that raised the
// throughput by more than climbGain is followed by another; a step down is followed
// by another unless it lost more than climbGain. So the limit settles, oscillating
// by a step, where more concurrency stops buying throughput: an idle host (latency flat as concurrency grows) climbs
// to the ceiling, a saturated one (latency growing with concurrency) stays low.
// Windows in which nothing waited say nothing about the limit and are dropped.
type climber struct {
	floor, ceiling int
	limit          int
	dir            int // +1 or -1: the direction of the last step

	window    int           // completions in this window
	sum       time.Duration // their latencies
	saturated bool          // something waited during the window
	last      float64       // throughput of the previous window (ops per second); 0: none yet
}

const (
	climbGain  = 0.05 // a step must raise throughput by 5% to be worth another
	climbFloor = 2
)

func newClimber(start, ceiling int) *climber {
	return &climber{floor: min(climbFloor, ceiling), ceiling: ceiling, limit: max(min(start, ceiling), 1), dir: +1}
}

// windowSize is how many completions a window holds: enough for a mean that is not
// one operation's noise, and at least the limit, so every slot contributes.
func (c *climber) windowSize() int { return max(2*c.limit, 8) }

// observe adds one completed operation's latency; saturated says whether operations
// were waiting for a slot. It returns the new limit and whether it changed.
func (c *climber) observe(lat time.Duration, saturated bool) (int, bool) {
	c.window++
	c.sum += lat
	c.saturated = c.saturated || saturated
	if c.window < c.windowSize() {
		return c.limit, false
	}
	mean := c.sum / time.Duration(c.window)
	wasSaturated := c.saturated
	c.window, c.sum, c.saturated = 0, 0, false
	if !wasSaturated || mean <= 0 {
		c.last = 0 // the limit did not bind: start afresh when it does
		return c.limit, false
	}
	tput := float64(c.limit) / mean.Seconds()
	if c.last > 0 {
		// Up is worth it only for a clear gain; down goes on while nothing clear is
		// lost. So on a plateau the limit sinks to where the plateau begins.
		gained, lost := tput > c.last*(1+climbGain), tput < c.last*(1-climbGain)
		if (c.dir > 0 && !gained) || (c.dir < 0 && lost) {
			c.dir = -c.dir
		}
	}
	c.last = tput
	// Steps of an eighth: a step up then changes the throughput by more than
	// climbGain wherever it still grows, whatever the limit.
	step := max(1, c.limit/8)
	next := min(max(c.limit+c.dir*step, c.floor), c.ceiling)
	if next == c.limit {
		c.dir = -c.dir // at a bound: the next step goes back
		return c.limit, false
	}
	c.limit = next
	return c.limit, true
}
