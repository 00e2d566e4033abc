package github

import (
	"context"
	"slices"
	"sync"
	"time"
)

// priority orders calls when budget or request slots are short.
type priority int

const (
	optional  priority = iota // listings and checks: wait when the budget runs low
	essential                 // minting runner configs, deleting runners: go first
)

func (p priority) String() string {
	if p == essential {
		return "essential"
	}
	return "optional"
}

// budget is what GitHub last said about one credential's rate limit, and the gate that
// keeps calls from being sent while GitHub says it is exhausted.
//
// After an exhausted budget resets, one call (the probe) goes first and the others wait
// for its answer: if GitHub is still limiting, only that one request was spent. That is
// what makes a retry storm impossible however many callers wait.
type budget struct {
	name string // metric label: "api" or "app"

	mu           sync.Mutex
	limit        int
	remaining    int
	reset        time.Time
	updated      time.Time
	known        bool
	blockedUntil time.Time
	needProbe    bool
	probe        chan struct{} // non-nil while the probe is in flight; closed when it ends
}

// observe records an answer's X-RateLimit-* headers.
func (b *budget) observe(limit, remaining int, reset time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.limit, b.remaining, b.reset = limit, remaining, reset
	b.updated = time.Now()
	b.known = true
	if remaining == 0 && reset.After(b.updated) {
		b.blockLocked(reset)
	}
}

// block stops every call until t (GitHub said: rate limited until then).
func (b *budget) block(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.blockLocked(t)
}

func (b *budget) blockLocked(t time.Time) {
	if t.After(b.blockedUntil) {
		b.blockedUntil = t
	}
	b.needProbe = true
}

func (b *budget) info() RateLimitInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	return RateLimitInfo{Limit: b.limit, Remaining: b.remaining, Reset: b.reset, Updated: b.updated}
}

// waitReason says why a call cannot go yet; until is when to look again (zero: when the
// probe ends).
type waitReason struct {
	reason string // "exhausted", "probe" or "reserve"; "" = go
	until  time.Time
	probe  chan struct{}
}

// check decides, under the lock, whether a call of priority p may be sent now. When it
// may and a probe is due, the caller becomes the probe.
func (b *budget) check(p priority, threshold int) (w waitReason, isProbe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	switch {
	case now.Before(b.blockedUntil):
		return waitReason{reason: "exhausted", until: b.blockedUntil}, false
	case b.probe != nil:
		return waitReason{reason: "probe", probe: b.probe}, false
	case p == optional && b.known && b.remaining < threshold && now.Before(b.reset):
		return waitReason{reason: "reserve", until: b.reset}, false
	case b.needProbe:
		b.needProbe = false
		b.probe = make(chan struct{})
		return waitReason{}, true
	}
	return waitReason{}, false
}

// endProbe lets the waiting calls go (or wait again, if the probe was limited: its
// answer has already moved blockedUntil and set needProbe).
func (b *budget) endProbe() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.probe != nil {
		close(b.probe)
		b.probe = nil
	}
}

// prioritySem bounds requests in flight; essential waiters are served before optional.
type prioritySem struct {
	mu      sync.Mutex
	free    int
	waiters [2][]chan struct{} // by priority
}

func newPrioritySem(n int) *prioritySem { return &prioritySem{free: n} }

func (s *prioritySem) acquire(ctx context.Context, p priority) error {
	s.mu.Lock()
	if s.free > 0 && len(s.waiters[essential]) == 0 && (p == essential || len(s.waiters[optional]) == 0) {
		s.free--
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	s.waiters[p] = append(s.waiters[p], ch)
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		if i := slices.Index(s.waiters[p], ch); i >= 0 {
			s.waiters[p] = slices.Delete(s.waiters[p], i, i+1)
			s.mu.Unlock()
			return ctx.Err()
		}
		s.mu.Unlock()
		// The slot was handed over as ctx ended: pass it on.
		s.release()
		return ctx.Err()
	}
}

func (s *prioritySem) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range []priority{essential, optional} {
		if len(s.waiters[p]) > 0 {
			ch := s.waiters[p][0]
			s.waiters[p] = s.waiters[p][1:]
			close(ch) // hand the slot over
			return
		}
	}
	s.free++
}

// sleepUntil waits until t or ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
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
