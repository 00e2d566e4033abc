package janitor_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
	"github.com/runner-spawner/runner-spawner/janitor"
)

// TestSlotWithoutRecordWaitsForItsInstance: a slot whose runner has no record is a
// leak only if its instance is gone too. While the instance is still listed (here its
// delete keeps failing), reconcile leaves the slot held, however often it has seen
// it; once the instance is deleted, the slot is freed.
func TestSlotWithoutRecordWaitsForItsInstance(t *testing.T) {
	s := system(t, fakegithub.Options{})
	p := planter{t, s}
	name := fmt.Sprintf("spawner-small-%d-0", 940001)
	p.instance("small", name)
	p.oldSlot("small", name)
	s.Cloud.SetDeleteFault("small", errors.New("storage busy"))
	clk := &clock{t: time.Now()}
	startJanitor(t, s, func(o *janitor.Options) {
		o.Interval = time.Hour // passes run on request only (after the first)
		o.Now = clk.now
	})

	pass := func() control.PassSummary {
		t.Helper()
		sum, err := control.Reconcile(t.Context(), s.Conn)
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	pass()
	for range 2 { // suspect on both counts (orphan instance, slot without record) since long ago
		clk.add(31 * time.Minute)
		sum := pass()
		if !s.Cloud.Exists(name) {
			t.Fatalf("the instance was deleted under a delete fault: the case did not happen (%+v)", sum)
		}
		if !heldSlot(t, s, "small", name) {
			t.Fatalf("slot of %s freed while its instance exists (released %d, errors %d: %s)", name, sum.SlotsReleased, sum.Errors, sum.FirstError)
		}
	}

	s.Cloud.SetDeleteFault("small", nil)
	clk.add(31 * time.Minute)
	sum := pass()
	if s.Cloud.Exists(name) || heldSlot(t, s, "small", name) {
		t.Errorf("after the delete works: exists %v, slot held %v; want neither (%+v)", s.Cloud.Exists(name), heldSlot(t, s, "small", name), sum)
	}
}

// TestUnknownCreateHoldsItsSlot: a runner whose create's outcome was unknown keeps
// its slot while an instance may still appear under its name, even though none is
// listed. An instance that does appear is deleted and its slot freed at once; if
// none appears, the slot is freed once the window has passed.
func TestUnknownCreateHoldsItsSlot(t *testing.T) {
	s := system(t, fakegithub.Options{})
	p := planter{t, s}
	clk := &clock{t: time.Now()}
	hold := clk.now().Add(backends.LateInstanceWindow)
	failed := func(job int64) string {
		name := fmt.Sprintf("spawner-small-%d-0", job)
		p.runner(fleet.RunnerRecord{Name: name, Flavor: "small", State: fleet.RunnerFailed, ForJob: job,
			FinishedAt: clk.now(), HoldSlotUntil: hold, FailReason: "create failed: outcome unknown"})
		p.slot("small", name, job)
		return name
	}
	late, never := failed(950001), failed(950002)
	startJanitor(t, s, func(o *janitor.Options) {
		o.Interval = time.Hour
		o.Now = clk.now
	})
	pass := func() {
		t.Helper()
		if _, err := control.Reconcile(t.Context(), s.Conn); err != nil {
			t.Fatal(err)
		}
	}

	clk.add(time.Minute)
	pass()
	for _, n := range []string{late, never} {
		if !heldSlot(t, s, "small", n) {
			t.Fatalf("slot of %s freed with no instance listed while one may still appear", n)
		}
	}

	// The late instance appears: deleted, and its slot freed, without waiting.
	p.instance("small", late)
	clk.add(time.Minute)
	pass()
	if s.Cloud.Exists(late) || heldSlot(t, s, "small", late) {
		t.Errorf("late instance %s: exists %v, slot held %v; want deleted and freed", late, s.Cloud.Exists(late), heldSlot(t, s, "small", late))
	}
	if r, err := s.Fleet.Runner(t.Context(), late); err != nil || !r.InstanceDeleted || !r.HoldSlotUntil.IsZero() {
		t.Errorf("runner %s after its late instance was deleted: %+v, %v", late, r, err)
	}
	if !heldSlot(t, s, "small", never) {
		t.Errorf("slot of %s freed before the window ended", never)
	}

	// None came for the other within the window: freed.
	clk.add(backends.LateInstanceWindow)
	pass()
	if heldSlot(t, s, "small", never) {
		t.Errorf("slot of %s still held after the window", never)
	}
}

// heldSlot reports whether runner name holds a slot of flavor.
func heldSlot(t *testing.T, s *systemtest.System, flavor, name string) bool {
	t.Helper()
	c, err := s.Fleet.Capacity(t.Context(), flavor)
	if err != nil {
		t.Fatal(err)
	}
	_, held := c.Slots[name]
	return held
}
