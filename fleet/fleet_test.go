package fleet_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

func open(t *testing.T, conn *queue.Conn) *fleet.Fleet {
	t.Helper()
	f, err := fleet.Open(t.Context(), conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestClaimIsAtomicAcrossConnections(t *testing.T) {
	srv := queuetest.Start(t)
	// Three connections stand for three consumer processes.
	var fleets []*fleet.Fleet
	for range 3 {
		fleets = append(fleets, open(t, srv.Connect(t, queue.Options{})))
	}
	const max = 5
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			ok, err := fleets[i%3].Claim(t.Context(), "small", fmt.Sprintf("r-%d", i), int64(i), max)
			if err != nil {
				t.Errorf("claim %d: %v", i, err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != max {
		t.Fatalf("%d claims won with max %d", won.Load(), max)
	}
	rec, err := fleets[0].Capacity(t.Context(), "small")
	if err != nil || len(rec.Slots) != max {
		t.Fatalf("capacity holds %d slots (%v), want %d", len(rec.Slots), err, max)
	}
	var holder string
	for name := range rec.Slots {
		holder = name
		break
	}
	// Claiming again for a holder is idempotent; freeing frees exactly one.
	if ok, _ := fleets[1].Claim(t.Context(), "small", holder, 0, max); !ok {
		t.Error("a holder's second claim was refused")
	}
	for range 2 {
		if err := fleets[2].FreeSlot(t.Context(), "small", holder); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := fleets[0].Claim(t.Context(), "small", "newcomer", 1, max); !ok {
		t.Error("a freed slot could not be claimed")
	}
	if ok, _ := fleets[0].Claim(t.Context(), "small", "one-too-many", 1, max); ok {
		t.Error("claimed past max")
	}
	// A paused flavor refuses claims until its pause is lifted by who set it.
	if err := fleets[0].Pause(t.Context(), "big", "flush:j1", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := fleets[1].Claim(t.Context(), "big", "r-big", 1, max); !errors.Is(err, fleet.ErrFlavorPaused) {
		t.Errorf("claim while paused: %v", err)
	}
	if err := fleets[1].Resume(t.Context(), "big", "flush:other"); err != nil {
		t.Fatal(err)
	}
	if _, err := fleets[1].Claim(t.Context(), "big", "r-big", 1, max); !errors.Is(err, fleet.ErrFlavorPaused) {
		t.Errorf("another's resume lifted the pause: %v", err)
	}
	if err := fleets[1].Resume(t.Context(), "big", "flush:j1"); err != nil {
		t.Fatal(err)
	}
	if ok, err := fleets[1].Claim(t.Context(), "big", "r-big", 1, max); !ok || err != nil {
		t.Errorf("claim after resume: %v %v", ok, err)
	}
}

// TestJobOnlyMovesForward: GitHub's events arrive in any order; the record keeps the
// latest state.
func TestJobOnlyMovesForward(t *testing.T) {
	f := open(t, queuetest.Start(t).Connect(t, queue.Options{}))
	ctx := t.Context()
	ev := &queue.JobEvent{JobID: 42, Flavor: "small", Repo: "o/r", ReceivedAt: time.Now()}
	if _, err := f.JobCompleted(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if j, err := f.SeeJob(ctx, ev); err != nil || j.State != fleet.JobCompleted {
		t.Fatalf("a queued event after completed: %+v %v", j, err)
	}
	if _, err := f.JobStarted(ctx, ev); err != nil && !errors.Is(err, fleet.ErrUnchanged) {
		t.Fatal(err)
	}
	j, err := f.Job(ctx, 42)
	if err != nil || j.State != fleet.JobCompleted || j.Flavor != "small" {
		t.Fatalf("job after completed, queued, in_progress: %+v %v", j, err)
	}
	if _, err := f.Job(ctx, 43); !errors.Is(err, fleet.ErrNoRecord) {
		t.Errorf("an unknown job has a record: %v", err)
	}
}

// TestRunnerLife walks one runner through the verbs and checks what each leaves,
// down to the freed slot.
func TestRunnerLife(t *testing.T) {
	conn := queuetest.Start(t).Connect(t, queue.Options{})
	f := open(t, conn)
	ctx := t.Context()
	if ok, err := f.Claim(ctx, "small", "r-1", 7, 1); !ok || err != nil {
		t.Fatalf("claim: %v %v", ok, err)
	}
	rec := &fleet.RunnerRecord{Name: "r-1", Flavor: "small", Backend: "sim", ForJob: 7, TokenHash: "h", CreatingUntil: time.Now().Add(time.Minute)}
	if resumed, _, err := f.StartCreate(ctx, rec); resumed || err != nil {
		t.Fatalf("start create: %v %v", resumed, err)
	}
	// A second worker finds the create leased.
	if _, _, err := f.StartCreate(ctx, &fleet.RunnerRecord{Name: "r-1", Flavor: "small", ForJob: 7}); !errors.Is(err, fleet.ErrCreateLeased) {
		t.Errorf("second start while leased: %v", err)
	}
	if err := f.Created(ctx, "r-1", "inst-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Registered(ctx, "r-1", 1001); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Busy(ctx, "r-1", 7, false); err != nil {
		t.Fatal(err)
	}
	allow := func(*fleet.RunnerRecord) error { return nil }
	if err := f.Report(ctx, "r-1", fleet.EventJobFinished, 0, allow); err != nil {
		t.Fatal(err)
	}
	r, _ := f.Runner(ctx, "r-1")
	if r.State != fleet.RunnerFinished || r.InstanceID != "inst-1" || r.GitHubRunnerID != 1001 || r.TookJob != 7 || r.ExitCode == nil {
		t.Fatalf("after finished: %+v", r)
	}
	// A late "booted" cannot take it back; a finished runner never fails.
	if err := f.Report(ctx, "r-1", fleet.EventJobStarted, 0, allow); err != nil {
		t.Fatal(err)
	}
	if r, _ := f.Runner(ctx, "r-1"); r.State != fleet.RunnerFinished {
		t.Errorf("a late job_started moved a finished runner to %s", r.State)
	}
	if held, _ := f.Capacity(ctx, "small"); len(held.Slots) != 1 {
		t.Fatalf("the slot was freed before the instance was gone: %v", held.Slots)
	}
	if _, err := f.InstanceGone(ctx, "small", "r-1", true); err != nil {
		t.Fatal(err)
	}
	if held, _ := f.Capacity(ctx, "small"); len(held.Slots) != 0 {
		t.Errorf("slot still held after the instance is gone: %v", held.Slots)
	}
	if r, _ := f.Runner(ctx, "r-1"); !r.InstanceDeleted {
		t.Errorf("record does not say the instance is gone: %+v", r)
	}
}

// TestEveryLossOfAJobGetsItsReplacement: each runner a queued job loses gets its own
// replacement request, even when the job's runner list did not change between two
// losses, while two triggers for one loss are stored once. The list lags when a
// spare the job adopted is taken before the adoption lists it on the job (here: a
// record meant for the job, not yet attached). Keyed by the job's runner count, the
// second loss was dropped as a duplicate of the first, and the job waited with no
// runner and no event (CI, TestLXDSplitProcesses: 99 of 100 jobs completed).
func TestEveryLossOfAJobGetsItsReplacement(t *testing.T) {
	f := open(t, queuetest.Start(t).Connect(t, queue.Options{}))
	ctx := t.Context()
	if _, err := f.SeeJob(ctx, &queue.JobEvent{JobID: 7, Flavor: "small", Repo: "o/r", Action: queue.ActionQueued, ReceivedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	online := func(name string, id int64) {
		t.Helper()
		rec := &fleet.RunnerRecord{Name: name, Flavor: "small", Backend: "sim", ForJob: 7, TokenHash: "h", CreatingUntil: time.Now().Add(time.Minute)}
		if _, _, err := f.StartCreate(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if err := f.Created(ctx, name, name); err != nil {
			t.Fatal(err)
		}
		if err := f.Registered(ctx, name, id); err != nil {
			t.Fatal(err)
		}
	}
	replace := func(lost string) (*queue.JobEvent, bool) {
		t.Helper()
		ev, res, err := f.Replace(ctx, 7, lost, queue.ReplaceSwap)
		if err != nil {
			t.Fatal(err)
		}
		return ev, res.Duplicate
	}

	online("r-a", 1)
	if _, err := f.AttachRunner(ctx, 7, "r-a", false); err != nil {
		t.Fatal(err)
	}
	if ev, _ := replace("r-a"); ev != nil {
		t.Fatalf("a job with an untaken runner asked for another: %+v", ev)
	}
	// Another job takes r-a: the job's first loss, triggered twice (the taker's
	// in_progress and completed events), stored once.
	if _, err := f.Busy(ctx, "r-a", 9, false); err != nil {
		t.Fatal(err)
	}
	if ev, dup := replace("r-a"); ev == nil || dup {
		t.Fatalf("first loss: event %+v, duplicate %v", ev, dup)
	}
	if ev, dup := replace("r-a"); ev == nil || !dup {
		t.Fatalf("the first loss's second trigger: event %+v, duplicate %v; want stored once", ev, dup)
	}
	// r-b, meant for the job but not yet on its list, is taken too: a second loss
	// while the list still holds one runner.
	online("r-b", 2)
	if _, err := f.Busy(ctx, "r-b", 10, false); err != nil {
		t.Fatal(err)
	}
	ev, dup := replace("r-b")
	if ev == nil || dup {
		t.Fatalf("second loss, same runner count: event %+v, duplicate %v; want a new request", ev, dup)
	}
	if ev.ReplacesRunner != "r-b" || ev.Replacement != 1 {
		t.Errorf("second request names %q, number %d", ev.ReplacesRunner, ev.Replacement)
	}
}
