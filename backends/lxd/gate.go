package lxd

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// opPriority orders the waiters for the server's operation slots. In a burst the
// slots are the bottleneck, and not every operation is worth the same: a capacity
// slot of the spawner is freed only once its instance is deleted, so a stop or a
// delete is what lets the next job in, and a start finishes a runner whose create has
// been paid for already. New creates wait behind both.
type opPriority int

const (
	prioFree   opPriority = iota // stop, delete: frees capacity
	prioFinish                   // start: finishes a created instance
	prioNew                      // create, and everything else
	numPrios
)

// priorityOf classifies a mutating request.
func priorityOf(rq request) opPriority {
	switch {
	case rq.method == "DELETE":
		return prioFree
	case rq.state == "stop":
		return prioFree
	case rq.state == "start":
		return prioFinish
	}
	return prioNew
}

// opGate bounds the operations in flight at once, and hands a freed slot to the
// most urgent waiter (FIFO within a priority).
type opGate struct {
	mu      sync.Mutex
	limit   int
	inUse   int
	waiting [numPrios][]chan struct{}
	// climb, when set, moves limit by the latency of creates and starts; changed is
	// told each new limit.
	climb   *climber
	changed func(limit int)
}

func newOpGate(limit int) *opGate { return &opGate{limit: limit} }

// newAdaptiveOpGate is a gate whose limit c chooses.
func newAdaptiveOpGate(c *climber, changed func(int)) *opGate {
	return &opGate{limit: c.limit, climb: c, changed: changed}
}

// done releases an operation's slot and, for an adaptive gate, tells the climber
// how long a create or start took and whether others waited meanwhile. Stops and
// deletes are not measured: the limit is for what a burst does most.
func (g *opGate) done(release func(), p opPriority, took time.Duration) {
	if g.climb == nil || p == prioFree {
		release()
		return
	}
	g.mu.Lock()
	limit, changed := g.climb.observe(took, g.anyWaiting(prioNew))
	if changed {
		g.limit = limit
	}
	g.mu.Unlock()
	release()
	if changed {
		g.grow()
		if g.changed != nil {
			g.changed(limit)
		}
	}
}

// grow hands out the slots a raised limit made free to whoever waits.
func (g *opGate) grow() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.inUse < g.limit && g.wakeFirstLocked() {
		g.inUse++
	}
}

// acquire takes a slot for an operation of priority p, or gives up with ctx.
func (g *opGate) acquire(ctx context.Context, p opPriority) (release func(), err error) {
	g.mu.Lock()
	if g.inUse < g.limit && !g.anyWaiting(p) {
		g.inUse++
		g.mu.Unlock()
		return g.release, nil
	}
	ch := make(chan struct{})
	g.waiting[p] = append(g.waiting[p], ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return g.release, nil
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		if i := slices.Index(g.waiting[p], ch); i >= 0 {
			g.waiting[p] = slices.Delete(g.waiting[p], i, i+1)
		} else {
			// The slot was handed over as ctx ended: pass it on.
			g.releaseLocked()
		}
		return nil, fmt.Errorf("wait for an lxd operation slot: %w", ctx.Err())
	}
}

// anyWaiting reports whether someone of priority p or more urgent waits: they go
// first. Called with mu held.
func (g *opGate) anyWaiting(p opPriority) bool {
	for q := prioFree; q <= p; q++ {
		if len(g.waiting[q]) > 0 {
			return true
		}
	}
	return false
}

func (g *opGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.releaseLocked()
}

// releaseLocked hands the slot to the most urgent waiter, or frees it.
func (g *opGate) releaseLocked() {
	// A lowered limit takes effect as slots come back: they are not handed on
	// while more are in use than it allows.
	if g.inUse <= g.limit && g.wakeFirstLocked() {
		return
	}
	g.inUse--
}

// wakeFirstLocked hands a slot to the most urgent waiter (FIFO within a priority)
// and reports whether there was one. Called with mu held.
func (g *opGate) wakeFirstLocked() bool {
	for p := range g.waiting {
		if len(g.waiting[p]) > 0 {
			ch := g.waiting[p][0]
			g.waiting[p] = g.waiting[p][1:]
			close(ch)
			return true
		}
	}
	return false
}
