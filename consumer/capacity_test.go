package consumer_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/consumer"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
)

// TestFailedCreateKeepsItsSlotUntilItsInstanceIsGone: a create fails after making
// its instance, and neither the backend's cleanup nor the consumer's delete can
// remove it. The instance still exists, so its capacity slot stays held: with
// max_runners 1 the next job waits for capacity instead of starting a second
// instance. Once deletes work again the janitor deletes the leftover, frees the
// slot, and the waiting job runs. At no time do more instances exist than
// max_runners. The runner is given up at its first failure, or after retries that
// each find they cannot remove what the first attempt left (and so create nothing).
func TestFailedCreateKeepsItsSlotUntilItsInstanceIsGone(t *testing.T) {
	for _, attempts := range []int{1, 3} {
		t.Run(fmt.Sprintf("max_attempts %d", attempts), func(t *testing.T) {
			failedCreateKeepsItsSlot(t, attempts)
		})
	}
}

func failedCreateKeepsItsSlot(t *testing.T, attempts int) {
	reg := prometheus.NewRegistry()
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 1}},
		Consumer: func(o *consumer.Options) {
			o.Registerer = reg
			o.MaxAttempts = attempts
		},
	})
	ctx := t.Context()
	s.Cloud.FailNextLeaving("small", errors.New("start failed; half-made instance not deleted"), 1)
	s.Cloud.SetDeleteFault("small", errors.New("storage busy"))

	first := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	var leftover string
	systemtest.Eventually(t, 15*time.Second, func() error {
		j, err := s.Fleet.Job(ctx, first.ID)
		if err != nil || len(j.Runners) == 0 {
			return fmt.Errorf("job %d has no runner yet (%v)", first.ID, err)
		}
		leftover = j.Runners[0]
		r, err := s.Fleet.Runner(ctx, leftover)
		if err != nil {
			return err
		}
		if r.State != fleet.RunnerFailed {
			return fmt.Errorf("runner %s not failed yet: %s, instance %q, %d attempts", leftover, r.State, r.InstanceID, r.Attempts)
		}
		if r.Attempts != attempts {
			return fmt.Errorf("runner %s failed after %d attempts, want %d", leftover, r.Attempts, attempts)
		}
		return nil
	})
	if !s.Cloud.Exists(leftover) {
		t.Fatalf("the failed create left no instance: the case did not happen")
	}
	r, err := s.Fleet.Runner(ctx, leftover)
	if err != nil {
		t.Fatal(err)
	}
	if r.InstanceDeleted {
		t.Errorf("runner %s (%s) says its instance is deleted while it exists", leftover, r.State)
	}
	// The leftover may still boot: the failed attempt's bootstrap token must not get
	// it a runner config.
	if r.TokenHash != "" || !r.TokenExpires.IsZero() {
		t.Errorf("runner %s of a failed create keeps a live bootstrap token (hash %q, expires %v)", leftover, r.TokenHash, r.TokenExpires)
	}
	if held := slots(t, s, "small"); len(held) != 1 || !held[leftover] {
		t.Fatalf("slots held %v, want only the leftover %s's: its instance still exists", held, leftover)
	}

	// The next job finds the flavor full (the metric counts that it waited for
	// capacity) and starts nothing while the leftover exists.
	second := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	systemtest.Eventually(t, 15*time.Second, func() error {
		if n := metricSum(t, reg, "spawner_consumer_capacity_full_total"); n < 1 {
			return fmt.Errorf("job %d never waited for capacity; instances created %d, max at once %v",
				second.ID, s.Cloud.Stats().Created, s.Cloud.Stats().MaxLive)
		}
		return nil
	})
	if st := s.Cloud.Stats(); st.Created != 1 || st.MaxLive["small"] > 1 {
		t.Fatalf("while the leftover exists: %d instances created, %v at once; want 1 and at most max_runners 1", st.Created, st.MaxLive)
	}

	// Deletes work again: the janitor deletes the leftover, then frees its slot.
	s.Cloud.SetDeleteFault("small", nil)
	systemtest.StartJanitor(t, s.JanitorOptions(t, "janitor-1"))
	jobDone(t, s, second.ID, 30*time.Second)
	systemtest.Eventually(t, 15*time.Second, func() error {
		if s.Cloud.Exists(leftover) {
			return fmt.Errorf("leftover %s still exists", leftover)
		}
		if slots(t, s, "small")[leftover] {
			return fmt.Errorf("leftover %s's slot still held after its instance is gone", leftover)
		}
		r, err := s.Fleet.Runner(ctx, leftover)
		if err != nil || !r.InstanceDeleted {
			return fmt.Errorf("runner %s not settled: %+v %v", leftover, r, err)
		}
		return nil
	})
	if st := s.Cloud.Stats(); st.MaxLive["small"] > 1 {
		t.Errorf("%d instances of small at once (%v), max_runners 1", st.MaxLive["small"], st.PeakNames["small"])
	}
}

// TestUnknownCreateOutcomeGivesUpTheName: a create whose answer was lost may still
// make its instance. Its runner's name is given up with its slot held (an instance
// may appear under it for backends.LateInstanceWindow), and the job is served by a
// runner of a new name, in a slot of its own.
func TestUnknownCreateOutcomeGivesUpTheName(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 2}},
	})
	ctx := t.Context()
	s.Cloud.FailNext("small", fmt.Errorf("%w: nova-api timed out", backends.ErrOutcomeUnknown), 1)
	job := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	before := time.Now()
	jobDone(t, s, job.ID, 30*time.Second)

	j, err := s.Fleet.Job(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Runners) != 2 {
		t.Fatalf("job runners %v, want the given-up name and a new one", j.Runners)
	}
	given := j.Runners[0]
	r, err := s.Fleet.Runner(ctx, given)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != fleet.RunnerFailed || r.InstanceDeleted {
		t.Errorf("given-up runner %s: state %s, instance deleted %v; want failed with its instance unconfirmed", given, r.State, r.InstanceDeleted)
	}
	if min := before.Add(backends.LateInstanceWindow - time.Minute); r.HoldSlotUntil.Before(min) {
		t.Errorf("given-up runner %s holds its slot until %s, want about %s from the failure", given, r.HoldSlotUntil, backends.LateInstanceWindow)
	}
	// No janitor runs here: nothing may free the slot before the window ends.
	if !slots(t, s, "small")[given] {
		t.Errorf("the given-up name %s's slot was freed while an instance may still appear", given)
	}
	if j.CreateAttempts != 0 {
		t.Errorf("job create attempts %d after its runner came up, want 0", j.CreateAttempts)
	}
}

// slots returns the runners holding a slot of flavor.
func slots(t *testing.T, s *systemtest.System, flavor string) map[string]bool {
	t.Helper()
	c, err := s.Fleet.Capacity(t.Context(), flavor)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for name := range c.Slots {
		out[name] = true
	}
	return out
}

// jobDone waits until the fake completed the job successfully.
func jobDone(t *testing.T, s *systemtest.System, id int64, timeout time.Duration) {
	t.Helper()
	systemtest.Eventually(t, timeout, func() error {
		j, _ := s.GH.Job(id)
		if j.Status != "completed" || j.Conclusion != "success" {
			return fmt.Errorf("job %d: %s %s", id, j.Status, j.Conclusion)
		}
		return nil
	})
}

// metricSum sums every sample of a counter.
func metricSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
