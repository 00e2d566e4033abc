package janitor_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
	"github.com/runner-spawner/runner-spawner/janitor"
)

// The poller does not list the jobs of runs the spawner already knows: in a burst
// those are nearly all of them, and each costs a call per poll.
func TestPollerSkipsKnownRuns(t *testing.T) {
	s := system(t, fakegithub.Options{JobDuration: 5 * time.Second})
	var ids []int64
	for range 3 {
		ids = append(ids, s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"slow"}}).ID)
	}
	// Every job known (its webhook arrived): records exist, the runs still active.
	systemtest.Eventually(t, 10*time.Second, func() error {
		for _, id := range ids {
			if _, err := s.Fleet.Job(t.Context(), id); err != nil {
				return fmt.Errorf("job %d: %w", id, err)
			}
		}
		return nil
	})
	s.GH.ResetCalls()
	startJanitor(t, s, func(o *janitor.Options) {
		o.PollRepos = []string{"octo-org/octo-repo"}
		o.PollInterval, o.PollMinAge = 100*time.Millisecond, time.Millisecond
		o.Route = func(labels []string) (string, bool) {
			if slices.Contains(labels, "slow") {
				return "slow", true
			}
			return "", false
		}
	})
	// Several polls: each lists runs twice (queued, in progress).
	systemtest.Eventually(t, 10*time.Second, func() error {
		if n := s.GH.CallCount("actions/list-workflow-runs-for-repo"); n < 6 {
			return fmt.Errorf("%d run listings", n)
		}
		return nil
	})
	if n := s.GH.CallCount("actions/list-jobs-for-workflow-run"); n != 0 {
		t.Errorf("%d listings of known runs' jobs, want 0", n)
	}
}
