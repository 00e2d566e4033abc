package janitor_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/janitor"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

// clock is a test clock the janitor reads through Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestReconcileOnDemand: `spawner reconcile` runs a pass now and answers with its
// summary. An orphan seen by the periodic pass a moment ago is only marked by a pass
// on demand, never deleted: an instance must be suspect in two passes at least half an
// interval apart. Once that much time has passed, the pass on demand deletes it.
func TestReconcileOnDemand(t *testing.T) {
	s := system(t, fakegithub.Options{})
	p := planter{t, s}
	orphan := fmt.Sprintf("spawner-small-%d-0", 930001)
	p.instance("small", orphan)
	clk := &clock{t: time.Now()}
	startJanitor(t, s, func(o *janitor.Options) {
		o.Interval = time.Hour // only the pass right after becoming active runs by itself
		o.Now = clk.now
	})

	sum, err := control.Reconcile(t.Context(), s.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Deleted["orphan"] != 0 || !s.Cloud.Exists(orphan) {
		t.Fatalf("a pass on demand right after the periodic one deleted the orphan: %+v", sum)
	}
	if sum.Instances != 1 || sum.Janitor != "janitor-1" {
		t.Errorf("summary: %+v, want 1 instance seen by janitor-1", sum)
	}

	clk.add(31 * time.Minute) // half the interval since the orphan was first seen
	sum, err = control.Reconcile(t.Context(), s.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Deleted["orphan"] != 1 {
		t.Errorf("orphan not deleted half an interval later: %+v", sum)
	}
	gone(t, s, orphan)

	// The summary is also what status shows as the last pass.
	var last control.PassSummary
	if err := s.State.Meta(t.Context(), queue.MetaLastReconcile, &last); err != nil {
		t.Fatal(err)
	}
	if !last.StartedAt.Equal(sum.StartedAt) {
		t.Errorf("last_reconcile started %s, the answered pass %s", last.StartedAt, sum.StartedAt)
	}
}

// With no janitor active, a reconcile request fails at once with control.ErrNoJanitor.
func TestReconcileWithoutJanitor(t *testing.T) {
	conn := queuetest.Start(t).Connect(t, queue.Options{})
	start := time.Now()
	_, err := control.Reconcile(t.Context(), conn)
	if !errors.Is(err, control.ErrNoJanitor) {
		t.Fatalf("RequestReconcile with no janitor = %v, want control.ErrNoJanitor", err)
	}
	t.Logf("answered in %s", time.Since(start).Round(time.Millisecond))
}
