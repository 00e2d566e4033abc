package control_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/fleet/fleettest"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

func TestStatusReads(t *testing.T) {
	conn := queuetest.Start(t).Connect(t, queue.Options{})
	st, err := conn.State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fl, err := fleet.Open(t.Context(), conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	t0 := time.Now().Add(-time.Hour)
	for i, r := range []fleet.RunnerRecord{
		{Name: "r-a", Flavor: "small", State: fleet.RunnerIdle},
		{Name: "r-b", Flavor: "small", State: fleet.RunnerFinished},
		{Name: "r-c", Flavor: "big", State: fleet.RunnerBusy},
	} {
		r.CreatedAt = t0.Add(time.Duration(i) * time.Minute)
		fleettest.PutRunner(t, conn, r)
	}
	for id, s := range map[int64]fleet.JobState{1: fleet.JobQueued, 2: fleet.JobQueued, 3: fleet.JobCompleted} {
		fleettest.PutJob(t, conn, fleet.JobRecord{ID: id, Flavor: "small", Repo: "o/r", State: s, ReceivedAt: t0.Add(time.Duration(id) * time.Second)})
	}
	if _, err := fl.Claim(ctx, "small", "r-a", 1, 5); err != nil {
		t.Fatal(err)
	}
	if err := fl.Pause(ctx, "big", "flush:x", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	runnerTests := []struct {
		name   string
		filter control.RunnerFilter
		want   []string
	}{
		{"all, oldest first", control.RunnerFilter{}, []string{"r-a", "r-b", "r-c"}},
		{"flavor", control.RunnerFilter{Flavor: "small"}, []string{"r-a", "r-b"}},
		{"live", control.RunnerFilter{Live: true}, []string{"r-a", "r-c"}},
		{"states", control.RunnerFilter{States: []fleet.RunnerState{fleet.RunnerFinished}}, []string{"r-b"}},
	}
	for _, tc := range runnerTests {
		t.Run("runners "+tc.name, func(t *testing.T) {
			got, err := control.ListRunners(ctx, fl, tc.filter)
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
	jobs, err := control.ListJobs(ctx, fl, control.JobFilter{States: []fleet.JobState{fleet.JobQueued}, Repo: "O/R"})
	if err != nil || len(jobs) != 2 || jobs[0].ID != 1 {
		t.Errorf("queued jobs: %+v, %v", jobs, err)
	}

	snap, err := control.Snapshot(ctx, st, fl, "slow")
	if err != nil {
		t.Fatal(err)
	}
	want := []control.FlavorStatus{
		{Name: "big", Runners: map[fleet.RunnerState]int{fleet.RunnerBusy: 1}, Paused: true, PausedBy: "flush:x"},
		{Name: "slow", Runners: map[fleet.RunnerState]int{}},
		{Name: "small", Runners: map[fleet.RunnerState]int{fleet.RunnerIdle: 1, fleet.RunnerFinished: 1}, SlotsInUse: 1, QueuedJobs: 2},
	}
	snap.Flavors[0].PausedUntil = time.Time{}
	if d := cmp.Diff(want, snap.Flavors); d != "" {
		t.Errorf("flavors (-want +got):\n%s", d)
	}
	if snap.Janitor.Active != "" || snap.Janitor.LastReconcile != nil {
		t.Errorf("janitor status with no janitor: %+v", snap.Janitor)
	}
}
