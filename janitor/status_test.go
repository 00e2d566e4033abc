package janitor_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runner-spawner/runner-spawner/janitor"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

func TestStatusReads(t *testing.T) {
	st, err := queuetest.Start(t).Connect(t, queue.Options{}).State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour)
	for i, r := range []queue.RunnerRecord{
		{Name: "r-a", Flavor: "small", State: queue.RunnerIdle},
		{Name: "r-b", Flavor: "small", State: queue.RunnerFinished},
		{Name: "r-c", Flavor: "big", State: queue.RunnerBusy},
	} {
		r.CreatedAt = t0.Add(time.Duration(i) * time.Minute)
		if err := st.CreateRunner(ctx, &r); err != nil {
			t.Fatal(err)
		}
	}
	for id, s := range map[int64]queue.JobState{1: queue.JobQueued, 2: queue.JobQueued, 3: queue.JobCompleted} {
		if _, err := st.UpdateJob(ctx, id, func(j *queue.JobRecord) error {
			j.Flavor, j.Repo, j.State, j.ReceivedAt = "small", "o/r", s, t0.Add(time.Duration(id)*time.Second)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.ClaimSlot(ctx, "small", "r-a", 1, 5); err != nil {
		t.Fatal(err)
	}
	if err := st.PauseFlavor(ctx, "big", "flush:x", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	runnerTests := []struct {
		name   string
		filter janitor.RunnerFilter
		want   []string
	}{
		{"all, oldest first", janitor.RunnerFilter{}, []string{"r-a", "r-b", "r-c"}},
		{"flavor", janitor.RunnerFilter{Flavor: "small"}, []string{"r-a", "r-b"}},
		{"live", janitor.RunnerFilter{Live: true}, []string{"r-a", "r-c"}},
		{"states", janitor.RunnerFilter{States: []queue.RunnerState{queue.RunnerFinished}}, []string{"r-b"}},
	}
	for _, tc := range runnerTests {
		t.Run("runners "+tc.name, func(t *testing.T) {
			got, err := janitor.ListRunners(ctx, st, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range got {
				names = append(names, r.Name)
			}
			if d := cmp.Diff(tc.want, names); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	jobs, err := janitor.ListJobs(ctx, st, janitor.JobFilter{States: []queue.JobState{queue.JobQueued}, Repo: "O/R"})
	if err != nil || len(jobs) != 2 || jobs[0].ID != 1 {
		t.Errorf("queued jobs: %+v, %v", jobs, err)
	}

	snap, err := janitor.Snapshot(ctx, st, "slow")
	if err != nil {
		t.Fatal(err)
	}
	want := []janitor.FlavorStatus{
		{Name: "big", Runners: map[queue.RunnerState]int{queue.RunnerBusy: 1}, Paused: true, PausedBy: "flush:x"},
		{Name: "slow", Runners: map[queue.RunnerState]int{}},
		{Name: "small", Runners: map[queue.RunnerState]int{queue.RunnerIdle: 1, queue.RunnerFinished: 1}, SlotsInUse: 1, QueuedJobs: 2},
	}
	snap.Flavors[0].PausedUntil = time.Time{}
	if d := cmp.Diff(want, snap.Flavors); d != "" {
		t.Errorf("flavors (-want +got):\n%s", d)
	}
	if snap.Janitor.Active != "" || snap.Janitor.LastReconcile != nil {
		t.Errorf("janitor status with no janitor: %+v", snap.Janitor)
	}
}
