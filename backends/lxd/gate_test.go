package lxd

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A freed slot goes to a waiting delete before a start, and to a start before a
// create, whatever order they came in; within a priority, first come first served.
func TestGateServesFreeingOperationsFirst(t *testing.T) {
	g := newOpGate(1)
	hold, err := g.acquire(t.Context(), prioNew)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	queue := func(name string, p opPriority) {
		wg.Go(func() {
			release, err := g.acquire(t.Context(), p)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			release()
		})
		// Wait until it is queued, so that the arrival order is the one written.
		for {
			g.mu.Lock()
			n := len(g.waiting[p])
			g.mu.Unlock()
			if n > 0 && (name != "create-2" || n > 1) {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	queue("create-1", prioNew)
	queue("create-2", prioNew)
	queue("start", prioFinish)
	queue("delete", prioFree)
	hold()
	wg.Wait()
	want := []string{"delete", "start", "create-1", "create-2"}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
}

// However many ask, at most limit hold a slot at once, and a waiter that gives up
// leaves the queue without taking a slot from anyone.
func TestGateBoundsAndCancels(t *testing.T) {
	g := newOpGate(3)
	var inFlight, most atomic.Int32
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			release, err := g.acquire(t.Context(), opPriority(i%int(numPrios)))
			if err != nil {
				t.Error(err)
				return
			}
			n := inFlight.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			inFlight.Add(-1)
			release()
		})
	}
	wg.Wait()
	if most.Load() > 3 || most.Load() == 0 {
		t.Fatalf("%d operations at once with a limit of 3", most.Load())
	}

	g = newOpGate(1)
	hold, _ := g.acquire(t.Context(), prioNew)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := g.acquire(ctx, prioFree); err == nil {
		t.Fatal("acquire on a full gate returned before its context ended")
	}
	hold()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.inUse != 0 || len(g.waiting[prioFree]) != 0 {
		t.Fatalf("after the give-up and the release: %d in use, %d waiting", g.inUse, len(g.waiting[prioFree]))
	}
}

// An adaptive gate whose climber raises the limit hands the new slots to the
// waiters at once, without waiting for a release.
func TestAdaptiveGateGrowsForWaiters(t *testing.T) {
	c := newClimber(2, 8)
	g := newAdaptiveOpGate(c, nil)
	for range 2 {
		if _, err := g.acquire(t.Context(), prioNew); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan func(), 6)
	// The waiters left when the test ends give up with ctx; that is not a failure.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 6 {
		go func() {
			if r, err := g.acquire(ctx, prioNew); err == nil {
				got <- r
			}
		}()
	}
	for {
		g.mu.Lock()
		n := len(g.waiting[prioNew])
		g.mu.Unlock()
		if n == 6 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// Flat latency under saturation: each window's throughput grows with the limit,
	// so the climber raises it; the first window (8 completions) only sets the
	// baseline, the second raises it to 3.
	// Completions measured without a slot of their own (release is a no-op): only
	// the climber's view moves.
	for range 16 {
		g.done(func() {}, prioNew, 100*time.Millisecond)
	}
	select {
	case r := <-got:
		r()
	case <-time.After(5 * time.Second):
		t.Fatalf("no waiter got a slot after the limit rose to %d", g.limit)
	}
	if g.limit <= 2 {
		t.Fatalf("limit %d after saturated windows of flat latency, want raised", g.limit)
	}
}
