package github

import (
	"context"
	"sync"
	"time"
)

// clock is the time the pacing reads and waits on. Production uses the wall clock;
// tests pass a compressed one (fakegithub.ScaledClock) so that an hour of GitHub's
// budget passes in seconds. Real converts a duration of the clock into wall time.
type clock interface {
	Now() time.Time
	Real(d time.Duration) time.Duration
}

type wallClock struct{}

func (wallClock) Now() time.Time                     { return time.Now() }
func (wallClock) Real(d time.Duration) time.Duration { return d }

// sleepUntil waits until t on clk, or until ctx ends.
func sleepUntil(ctx context.Context, clk clock, t time.Time) error {
	d := clk.Real(t.Sub(clk.Now()))
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ceiling is the operator's cap on calls (RatePerHour): at most per calls in any hour,
// spent as they come. It is not a smoothed rate: a burst may spend the whole hour's
// cap at once, which is what GitHub's own hourly budget allows too. Optional calls
// leave the last reserve of it to essential ones.
type ceiling struct {
	mu   sync.Mutex
	per  int
	sent []time.Time // the last hour's calls, oldest first
}

const ceilingWindow = time.Hour

// take counts a call at now, or says until when it must wait.
func (c *ceiling) take(now time.Time, p priority, reserve int) (wait time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := 0
	for i < len(c.sent) && now.Sub(c.sent[i]) >= ceilingWindow {
		i++
	}
	c.sent = c.sent[i:]
	limit := c.per
	if p == optional {
		limit = c.per - min(reserve, c.per/10)
	}
	if len(c.sent) >= limit {
		// The call may go once enough of the hour's calls have aged out.
		return c.sent[len(c.sent)-limit].Add(ceilingWindow), false
	}
	c.sent = append(c.sent, now)
	return time.Time{}, true
}

// pointsPacer keeps the calls under GitHub's secondary limit on points: a GET costs 1
// point and a mutating call 5, and GitHub allows 900 points a minute per credential.
// It is a token bucket refilled at 5/6 of perMinute a minute with a burst of 1/6 of
// it, so that no 60 s window holds more than perMinute points.
type pointsPacer struct {
	mu     sync.Mutex
	rate   float64 // points per second
	burst  float64
	tokens float64
	last   time.Time
}

func newPointsPacer(perMinute int) *pointsPacer {
	burst := float64(perMinute) / 6
	return &pointsPacer{rate: (float64(perMinute) - burst) / 60, burst: burst, tokens: burst}
}

// reserve takes n points at now and returns when the call may go. A caller that
// then gives up unsent hands them back (refund), or the calls behind it would wait
// for points nobody spent.
func (p *pointsPacer) reserve(now time.Time, n int) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.last.IsZero() && now.After(p.last) {
		p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	}
	if now.After(p.last) {
		p.last = now
	}
	p.tokens -= float64(n)
	if p.tokens >= 0 {
		return now
	}
	return p.last.Add(time.Duration(-p.tokens / p.rate * float64(time.Second)))
}

// callPoints is what a call costs against the secondary limit.
func callPoints(cl call) int {
	if cl.mutating {
		return 5
	}
	return 1
}

// refund gives back the points of a call that was not sent.
func (p *pointsPacer) refund(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens = min(p.burst, p.tokens+float64(n))
}
