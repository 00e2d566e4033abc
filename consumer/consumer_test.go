package consumer_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
)

func twoFlavors() []systemtest.FlavorSpec {
	return []systemtest.FlavorSpec{
		{Name: "small", Labels: []string{"small"}, MaxRunners: 3},
		{Name: "large", Labels: []string{"large"}, MaxRunners: 2},
	}
}

func TestEveryJobRunsOnItsFlavor(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{Flavors: twoFlavors(), Workers: 4,
		GitHub: fakegithub.Options{JobDuration: 50 * time.Millisecond}})
	want := map[int64]string{}
	for i := range 20 {
		flavor := []string{"small", "large"}[i%2]
		j := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", flavor}})
		want[j.ID] = flavor
	}
	s.AllJobsDone(t, 60*time.Second)
	spares := s.OnlySparesLeft(t, 20*time.Second)
	for _, j := range s.GH.Jobs() {
		if j.Conclusion != "success" {
			t.Errorf("job %d: %s", j.ID, j.Conclusion)
		}
		prefix := fmt.Sprintf("%s-%s-", systemtest.Deployment, want[j.ID])
		if len(j.RunnerName) < len(prefix) || j.RunnerName[:len(prefix)] != prefix {
			t.Errorf("job %d for %s ran on %q", j.ID, want[j.ID], j.RunnerName)
		}
	}
	st := s.Cloud.Stats()
	if st.MaxLive["small"] > 3 || st.MaxLive["large"] > 2 {
		t.Errorf("capacity exceeded: max live %v", st.MaxLive)
	}
	sum := s.GH.Summary()
	t.Logf("20 jobs: %d instances created, GitHub calls %d (%.2f per job): %v", st.Created, sum.CallsTotal, sum.CallsPerJob, sum.Calls)
	if sum.CallsPerJob > 2 {
		t.Errorf("%.2f GitHub calls per job, want at most 2", sum.CallsPerJob)
	}
	// Every slot is free again but the spares' (which the janitor reaps). A slot is
	// released just after its instance is deleted, and a replacement requested just
	// before its job was taken may still be coming up: wait for the two to agree.
	systemtest.Eventually(t, 10*time.Second, func() error {
		spares = s.OnlySparesLeft(t, 5*time.Second)
		held := 0
		for _, f := range []string{"small", "large"} {
			capRec, err := s.Fleet.Capacity(t.Context(), f)
			if err != nil {
				return err
			}
			held += len(capRec.Slots)
		}
		if held != spares {
			return fmt.Errorf("%d slots held with %d spares left", held, spares)
		}
		return nil
	})
	runners, _ := s.Fleet.Runners(t.Context())
	finished := 0
	for _, r := range runners {
		if r.State == fleet.RunnerFinished && r.InstanceDeleted {
			finished++
		} else if !r.Spare {
			t.Logf("runner neither finished nor spare: %+v", r)
		}
	}
	if finished+spares != len(runners) {
		t.Errorf("%d runners: %d finished and deleted, %d spares", len(runners), finished, spares)
	}
}
