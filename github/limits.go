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
// paces calls by it.
//
// GitHub's primary limit is an hourly quota that resets at X-RateLimit-Reset, not a
// smoothed rate, so calls are spent freely while the budget lasts: above the reserve
// (ReserveThreshold) every call goes at once. Below it optional calls wait for the
// reset, and essential ones are spread over the time left to the reset, so that the
// reserve lasts until then and is never spent down to zero (the last few calls are
// kept for what is in flight). Each call sent is counted against the remaining budget
// at once, before its answer, so that a burst of concurrent calls cannot overshoot
// while the headers lag.
//
// While GitHub says the budget is exhausted or a secondary limit was hit, no call is
// sent. After that, one call (the probe) goes first and the others wait for its answer:
// if GitHub is still limiting, only that one request was spent. That is what makes a
// retry storm impossible however many callers wait.
type budget struct {
	name string // metric label: "api" or "app"

	mu            sync.Mutex
	limit         int
	remaining     int // GitHub's last word, less the calls sent since
	used          int
	reset         time.Time
	updated       time.Time
	known         bool
	blockedUntil  time.Time
	needProbe     bool
	probe         chan struct{} // non-nil while the probe is in flight; closed when it ends
	nextEssential time.Time     // below the reserve: when the next essential call may go
	secondaryHits int           // secondary limits hit in a row (exponential wait)
}

// observe records an answer's X-RateLimit-* headers, read at now.
func (b *budget) observe(limit, remaining, used int, reset, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !b.known || reset.After(b.reset):
		// A new window (or the first word): GitHub's numbers as they are.
		b.remaining = remaining
	case reset.Equal(b.reset):
		// The same window: answers come back out of order, and calls sent since this
		// one were counted already; the budget only shrinks within a window.
		b.remaining = min(b.remaining, remaining)
	default:
		return // an answer from the window before; stale
	}
	b.limit, b.used, b.reset = limit, used, reset
	b.updated = now
	b.known = true
	if remaining == 0 && reset.After(now) {
		b.blockLocked(reset)
	}
}

// free gives back the count of a call GitHub did not charge (a 304 to a conditional
// request).
func (b *budget) free(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.known && now.Before(b.reset) {
		b.remaining++
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

// secondaryHit records a secondary-limit answer at now and returns how many there
// were in a row; a success resets the count. Answers that arrive while the wait of an
// earlier one still runs are the same episode (calls that were in flight together),
// not a repeat: only a call sent after the wait that is limited again counts.
func (b *budget) secondaryHit(now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.secondaryHits == 0 || !now.Before(b.blockedUntil) {
		b.secondaryHits++
	}
	return b.secondaryHits
}

func (b *budget) secondaryOK() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.secondaryHits = 0
}

func (b *budget) info() RateLimitInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	return RateLimitInfo{Limit: b.limit, Remaining: b.remaining, Used: b.used, Reset: b.reset, Updated: b.updated}
}

// waitReason says why a call cannot go yet; until is when to look again (zero: when the
// probe ends).
type waitReason struct {
	reason string // "exhausted", "probe", "reserve" or "paced"; "" = go
	until  time.Time
	probe  chan struct{}
}

// check decides, under the lock, whether a call of priority p may be sent at now.
// threshold is the reserve; floor the budget essential calls never spend (what may be
// in flight at once). With commit, a call that may go is counted against the budget
// and, when a probe is due, becomes the probe; without, check only looks.
func (b *budget) check(p priority, now time.Time, threshold, floor int, commit bool) (w waitReason, isProbe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	live := b.known && now.Before(b.reset)
	switch {
	case now.Before(b.blockedUntil):
		return waitReason{reason: "exhausted", until: b.blockedUntil}, false
	case b.probe != nil:
		return waitReason{reason: "probe", probe: b.probe}, false
	case p == optional && live && b.remaining < threshold:
		return waitReason{reason: "reserve", until: b.reset}, false
	case p == essential && live && b.remaining < threshold:
		// Spread what is left above the floor evenly to the reset.
		left := b.remaining - floor
		if left <= 0 {
			return waitReason{reason: "reserve", until: b.reset}, false
		}
		if now.Before(b.nextEssential) {
			return waitReason{reason: "paced", until: b.nextEssential}, false
		}
		if commit {
			b.nextEssential = now.Add(b.reset.Sub(now) / time.Duration(left))
		}
	}
	if !commit {
		return waitReason{}, false
	}
	if live {
		b.remaining--
	}
	if b.needProbe {
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
