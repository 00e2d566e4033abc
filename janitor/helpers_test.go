package janitor_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
)

// system starts the spawner with the flavors "small" (runners boot in 500 ms, so a
// job can be cancelled before its runner comes up), "slow" (runners never come up
// within a test) and "big" (runners boot at once).
func system(t *testing.T, gh fakegithub.Options) *systemtest.System {
	t.Helper()
	return systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{
			{Name: "small", Labels: []string{"small"}, MaxRunners: 10, BootTime: 500 * time.Millisecond},
			{Name: "slow", Labels: []string{"slow"}, MaxRunners: 10, BootTime: time.Hour},
			{Name: "big", Labels: []string{"big"}, MaxRunners: 10},
		},
		GitHub: gh,
	})
}

// runnerOf waits until job has a runner and returns its name.
func runnerOf(t *testing.T, s *systemtest.System, jobID int64) string {
	t.Helper()
	var name string
	systemtest.Eventually(t, 15*time.Second, func() error {
		j, err := s.Fleet.Job(t.Context(), jobID)
		if err != nil || len(j.Runners) == 0 {
			return fmt.Errorf("job %d has no runner yet", jobID)
		}
		name = j.Runners[len(j.Runners)-1]
		return nil
	})
	return name
}

// spare makes an idle spare runner of flavor small: its job is cancelled while the
// runner boots, so it comes up with nothing to do.
func spare(t *testing.T, s *systemtest.System) string {
	t.Helper()
	job := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	name := runnerOf(t, s, job.ID)
	if err := s.GH.CancelJob(job.ID); err != nil {
		t.Fatal(err)
	}
	waitRunner(t, s, name, "idle spare, online on GitHub", func(r *fleet.RunnerRecord) bool {
		return r.State == fleet.RunnerIdle && r.Spare && online(s, name)
	})
	return name
}

// busy starts a job that runs for d and returns it and its runner once the runner
// is busy and past its pre-job phase.
func busy(t *testing.T, s *systemtest.System, d time.Duration) (fakegithub.Job, string) {
	t.Helper()
	job := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}, Duration: d})
	var name string
	systemtest.Eventually(t, 15*time.Second, func() error {
		j, err := s.Fleet.Job(t.Context(), job.ID)
		if err != nil || j.TakenBy == "" {
			return fmt.Errorf("job %d not taken yet", job.ID)
		}
		name = j.TakenBy
		return nil
	})
	waitRunner(t, s, name, "busy after its pre-job phase", func(r *fleet.RunnerRecord) bool {
		return r.State == fleet.RunnerBusy && !r.PreJobDoneAt.IsZero()
	})
	return job, name
}

// booting makes a runner of flavor slow that never comes up, for a job that stays
// queued.
func booting(t *testing.T, s *systemtest.System) (fakegithub.Job, string) {
	t.Helper()
	job := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"slow"}})
	name := runnerOf(t, s, job.ID)
	waitRunner(t, s, name, "booting", func(r *fleet.RunnerRecord) bool { return r.State == fleet.RunnerBooting })
	return job, name
}

func waitRunner(t *testing.T, s *systemtest.System, name, what string, ok func(*fleet.RunnerRecord) bool) *fleet.RunnerRecord {
	t.Helper()
	var rec *fleet.RunnerRecord
	systemtest.Eventually(t, 20*time.Second, func() error {
		r, err := s.Fleet.Runner(t.Context(), name)
		if err != nil {
			return err
		}
		if !ok(r) {
			return fmt.Errorf("runner %s is not %s: %s spare=%v", name, what, r.State, r.Spare)
		}
		rec = r
		return nil
	})
	return rec
}

func online(s *systemtest.System, name string) bool {
	return slices.ContainsFunc(s.GH.Runners(), func(r fakegithub.Runner) bool { return r.Name == name && r.Status == "online" })
}

func registered(s *systemtest.System, name string) bool {
	return slices.ContainsFunc(s.GH.Runners(), func(r fakegithub.Runner) bool { return r.Name == name })
}

// flush asks the active janitor for a flush, bounded.
func flush(t *testing.T, s *systemtest.System, mode control.Mode, flavor string) (control.FlushResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	return control.Flush(ctx, s.Conn, control.FlushRequest{Mode: mode, Flavor: flavor})
}

// jobDone waits until the fake completed job with the conclusion want.
func jobDone(t *testing.T, s *systemtest.System, id int64, want string, timeout time.Duration) {
	t.Helper()
	systemtest.Eventually(t, timeout, func() error {
		j, _ := s.GH.Job(id)
		if j.Status != "completed" {
			return fmt.Errorf("job %d is %s", id, j.Status)
		}
		if j.Conclusion != want {
			return fmt.Errorf("job %d concluded %s, want %s", id, j.Conclusion, want)
		}
		return nil
	})
}

func gone(t *testing.T, s *systemtest.System, names ...string) {
	t.Helper()
	systemtest.Eventually(t, 15*time.Second, func() error {
		for _, n := range names {
			if s.Cloud.Exists(n) {
				return fmt.Errorf("instance %s still exists", n)
			}
		}
		return nil
	})
}

func notPaused(t *testing.T, s *systemtest.System, flavors ...string) {
	t.Helper()
	for _, f := range flavors {
		c, err := s.Fleet.Capacity(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		if !c.PausedUntil.IsZero() {
			t.Errorf("flavor %s still paused until %s by %s", f, c.PausedUntil, c.PausedBy)
		}
	}
}
