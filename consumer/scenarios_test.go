package consumer_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/consumer"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
	"github.com/runner-spawner/runner-spawner/queue"
)

// TestStolenRunners: runners boot out of order and GitHub gives each to the oldest
// waiting job, so most runners run a job they were not spawned for. Every job still
// runs, each gets a replacement only when its runner was taken, and no instance is
// left.
func TestStolenRunners(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 40, BootJitter: 400 * time.Millisecond}},
		Workers: 4,
		GitHub:  fakegithub.Options{JobDuration: 100 * time.Millisecond},
	})
	for range 30 {
		s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "small"}})
	}
	s.AllJobsDone(t, 60*time.Second)
	s.RecordsSettled(t, 10*time.Second)
	spares := s.OnlySparesLeft(t, 30*time.Second)
	stolen, replaced := 0, 0
	jobs, err := s.Fleet.Jobs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Conclusion != "success" {
			t.Errorf("job %d: %s", j.ID, j.Conclusion)
		}
		if len(j.Runners) > 0 && j.TakenBy != j.Runners[0] {
			stolen++
		}
		replaced += j.Replacements
		if j.Replacements > 3 {
			t.Errorf("job %d got %d replacements", j.ID, j.Replacements)
		}
	}
	st := s.Cloud.Stats()
	t.Logf("30 jobs: %d ran on a runner spawned for another job; %d replacements; %d instances created; %d spares left for the janitor", stolen, replaced, st.Created, spares)
	if stolen == 0 {
		t.Error("no runner was stolen: the scenario did not happen")
	}
	// Converging on one runner per job: every instance ran a job or is an idle spare
	// (exchanges of runners between jobs are not replacements: they cost nothing).
	if st.Created > 30+spares {
		t.Errorf("%d instances for 30 jobs with %d spares left", st.Created, spares)
	}
}

// TestCancelledJobsRunnerIsAdopted: a job cancelled before a runner took it leaves its
// runner spare, and the next job adopts it instead of spawning another.
func TestCancelledJobsRunnerIsAdopted(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 5, BootTime: time.Second}},
	})
	j1 := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	systemtest.Eventually(t, 10*time.Second, func() error {
		j, err := s.Fleet.Job(t.Context(), j1.ID)
		if err != nil || len(j.Runners) == 0 {
			return fmt.Errorf("no runner yet")
		}
		return nil
	})
	if err := s.GH.CancelJob(j1.ID); err != nil {
		t.Fatal(err)
	}
	systemtest.Eventually(t, 10*time.Second, func() error {
		j, _ := s.Fleet.Job(t.Context(), j1.ID)
		r, err := s.Fleet.Runner(t.Context(), j.Runners[0])
		if err != nil || !r.Spare {
			return fmt.Errorf("runner not spare yet: %+v %v", r, err)
		}
		return nil
	})
	j2 := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	s.AllJobsDone(t, 20*time.Second)
	s.NoInstancesLeft(t, 20*time.Second)
	if got, _ := s.GH.Job(j2.ID); got.Conclusion != "success" {
		t.Errorf("second job: %+v", got)
	}
	if n := s.Cloud.Stats().Created; n != 1 {
		t.Errorf("%d instances created for a cancelled job and one more; want 1 (the spare adopted)", n)
	}
}

func TestDuplicateAndOutOfOrderDeliveries(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 10, BootJitter: 100 * time.Millisecond}},
		GitHub: fakegithub.Options{JobDuration: 50 * time.Millisecond, Webhooks: fakegithub.WebhookOptions{
			Workers: 4, Faults: fakegithub.WebhookFaults{DuplicateRate: 0.3, RedeliverRate: 0.2, ReorderRate: 0.3, Seed: 7},
		}},
	})
	for range 25 {
		s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	}
	s.AllJobsDone(t, 60*time.Second)
	s.RecordsSettled(t, 10*time.Second)
	spares := s.OnlySparesLeft(t, 20*time.Second)
	jobs, _ := s.Fleet.Jobs(t.Context())
	for _, j := range jobs {
		if j.State != fleet.JobCompleted {
			t.Errorf("job %d record: %s", j.ID, j.State)
		}
	}
	// Duplicates and redeliveries spawn nothing: every instance ran a job or is a spare.
	if created := s.Cloud.Stats().Created; created > 25+spares {
		t.Errorf("%d instances for 25 jobs with %d spares: duplicates spawned runners", created, spares)
	}
}

func TestCapacityFullThenFreed(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 2}},
		GitHub:  fakegithub.Options{JobDuration: 300 * time.Millisecond},
	})
	for range 8 {
		s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	}
	// While the first two run, the rest wait, queued.
	systemtest.Eventually(t, 10*time.Second, func() error {
		c, err := s.Fleet.Capacity(t.Context(), "small")
		if err != nil || len(c.Slots) != 2 {
			return fmt.Errorf("slots %v", c)
		}
		return nil
	})
	s.AllJobsDone(t, 60*time.Second)
	s.OnlySparesLeft(t, 10*time.Second)
	if m := s.Cloud.Stats().MaxLive["small"]; m != 2 {
		t.Errorf("max live instances %d, want exactly max_runners 2", m)
	}
}

func TestTransientCreateFailuresBackOffThenSucceed(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 2}},
	})
	s.Cloud.FailNext("small", errors.New("connection refused"), 2)
	s.Cloud.FailNext("small", backends.ErrQuota, 1)
	j := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	s.AllJobsDone(t, 30*time.Second)
	s.NoInstancesLeft(t, 10*time.Second)
	rec, _ := s.Fleet.Job(t.Context(), j.ID)
	if len(rec.Runners) != 1 || rec.DeadLettered {
		t.Errorf("job after transient failures: %+v", rec)
	}
}

func TestDeadLetters(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{
		Flavors:  []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 2}},
		Consumer: func(o *consumer.Options) { o.MaxAttempts = 3 },
	})
	// A permanent error dead-letters at once; a transient one after MaxAttempts.
	s.Cloud.FailNext("small", fmt.Errorf("image: %w", backends.ErrBadSpec), 1)
	bad := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	systemtest.Eventually(t, 10*time.Second, func() error { return deadLettered(t, s, bad.ID) })
	s.Cloud.FailNext("small", errors.New("503 from the cloud"), 3)
	flaky := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	systemtest.Eventually(t, 20*time.Second, func() error { return deadLettered(t, s, flaky.ID) })

	dls, err := s.Conn.DeadLetters(t.Context(), 10)
	if err != nil || len(dls) != 2 {
		t.Fatalf("dead letters: %d (%v)", len(dls), err)
	}
	for _, dl := range dls {
		if dl.Reason == "" || dl.Event == nil {
			t.Errorf("dead letter without reason or event: %+v", dl)
		}
		t.Logf("dead letter for job %d: %s", dl.Event.JobID, dl.Reason)
	}
	// Nothing held: no slot, no instance, and the stream has nothing left to deliver.
	c, _ := s.Fleet.Capacity(t.Context(), "small")
	if len(c.Slots) != 0 || len(s.Cloud.All()) != 0 {
		t.Errorf("after dead letters: slots %v, instances %v", c.Slots, s.Cloud.All())
	}
}

func deadLettered(t *testing.T, s *systemtest.System, id int64) error {
	j, err := s.Fleet.Job(t.Context(), id)
	if err != nil || !j.DeadLettered {
		return fmt.Errorf("job %d not dead-lettered: %+v %v", id, j, err)
	}
	return nil
}

// TestGoneJobIsDropped: an event already old when it arrived (its job created long
// before), for a job GitHub no longer has (404), spawns nothing.
func TestGoneJobIsDropped(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{
		Flavors:  []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 2}},
		Consumer: func(o *consumer.Options) { o.VerifyAge = time.Millisecond },
	})
	created := time.Now().Add(-time.Hour)
	_, err := s.Conn.PublishJobEvent(t.Context(), &queue.JobEvent{
		Source: queue.SourceWebhook, Action: queue.ActionQueued, ReceivedAt: time.Now(), CreatedAt: &created,
		JobID: 987654321, RunID: 1, RunAttempt: 1, Repo: "octo-org/octo-repo", Labels: []string{"small"}, Flavor: "small",
	})
	if err != nil {
		t.Fatal(err)
	}
	systemtest.Eventually(t, 10*time.Second, func() error {
		j, err := s.Fleet.Job(t.Context(), 987654321)
		if err != nil || !j.Gone {
			return fmt.Errorf("job not marked gone: %+v %v", j, err)
		}
		return nil
	})
	if n := s.Cloud.Stats().Created; n != 0 {
		t.Errorf("%d instances created for a job GitHub does not have", n)
	}
	if n := s.GH.CallCount("actions/get-job-for-workflow-run"); n != 1 {
		t.Errorf("%d job checks, want 1", n)
	}
}
