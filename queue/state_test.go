package queue_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

func TestClaimSlotIsAtomicAcrossConnections(t *testing.T) {
	srv := queuetest.Start(t)
	// Three connections stand for three consumer processes.
	var states []*queue.State
	for range 3 {
		st, err := srv.Connect(t, queue.Options{}).State(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, st)
	}
	const max = 5
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			ok, err := states[i%3].ClaimSlot(t.Context(), "small", fmt.Sprintf("r-%d", i), int64(i), max)
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
	rec, err := states[0].Capacity(t.Context(), "small")
	if err != nil || len(rec.Slots) != max {
		t.Fatalf("capacity holds %d slots (%v), want %d", len(rec.Slots), err, max)
	}
	// Claiming again for a holder is idempotent; releasing frees exactly one.
	var holder string
	for name := range rec.Slots {
		holder = name
		break
	}
	if ok, _ := states[1].ClaimSlot(t.Context(), "small", holder, 0, max); !ok {
		t.Error("a holder's second claim was refused")
	}
	if err := states[2].ReleaseSlot(t.Context(), "small", holder); err != nil {
		t.Fatal(err)
	}
	if err := states[2].ReleaseSlot(t.Context(), "small", holder); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if ok, _ := states[0].ClaimSlot(t.Context(), "small", "newcomer", 1, max); !ok {
		t.Error("a freed slot could not be claimed")
	}
	if ok, _ := states[0].ClaimSlot(t.Context(), "small", "one-too-many", 1, max); ok {
		t.Error("claimed past max")
	}
}

func TestJobStateOnlyMovesForward(t *testing.T) {
	srv := queuetest.Start(t)
	st, err := srv.Connect(t, queue.Options{}).State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, s := range []queue.JobState{queue.JobCompleted, queue.JobQueued, queue.JobInProgress} {
		if _, err := st.UpdateJob(ctx, 42, func(j *queue.JobRecord) error {
			j.Flavor = "small"
			j.State.Advance(s)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	j, err := st.Job(ctx, 42)
	if err != nil || j.State != queue.JobCompleted {
		t.Fatalf("job after completed, queued, in_progress: %+v %v", j, err)
	}
	if _, err := st.UpdateJob(ctx, 43, func(*queue.JobRecord) error { return queue.ErrSkip }); !errors.Is(err, queue.ErrSkip) {
		t.Errorf("skip on a missing job: %v", err)
	}
	if _, err := st.Job(ctx, 43); !errors.Is(err, queue.ErrNoRecord) {
		t.Errorf("skipped job was created: %v", err)
	}
}

func TestConcurrentJobUpdatesLoseNothing(t *testing.T) {
	srv := queuetest.Start(t)
	st, err := srv.Connect(t, queue.Options{}).State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			if _, err := st.UpdateJob(t.Context(), 7, func(j *queue.JobRecord) error {
				j.Runners = append(j.Runners, fmt.Sprintf("r-%d", i))
				return nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	j, err := st.Job(t.Context(), 7)
	if err != nil || len(j.Runners) != 40 {
		t.Fatalf("job has %d runners after 40 concurrent appends (%v)", len(j.Runners), err)
	}
}

func TestRunnerRecordsAndScan(t *testing.T) {
	srv := queuetest.Start(t)
	st, err := srv.Connect(t, queue.Options{}).State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for i := range 25 {
		if err := st.CreateRunner(ctx, &queue.RunnerRecord{Name: fmt.Sprintf("r-%d", i), Flavor: "small", State: queue.RunnerCreating}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateRunner(ctx, &queue.RunnerRecord{Name: "r-3"}); !errors.Is(err, queue.ErrExists) {
		t.Errorf("duplicate create: %v", err)
	}
	if _, err := st.UpdateRunner(ctx, "r-3", func(r *queue.RunnerRecord) error {
		r.State.Advance(queue.RunnerFinished)
		r.State.Advance(queue.RunnerIdle) // never leaves a terminal state
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateRunner(ctx, "nope", func(*queue.RunnerRecord) error { return nil }); !errors.Is(err, queue.ErrNoRecord) {
		t.Errorf("update of a missing runner: %v", err)
	}
	all, err := st.Runners(ctx)
	if err != nil || len(all) != 25 {
		t.Fatalf("scan found %d runners (%v)", len(all), err)
	}
	for _, r := range all {
		if r.Name == "r-3" && r.State != queue.RunnerFinished {
			t.Errorf("r-3 state %s", r.State)
		}
	}
}
