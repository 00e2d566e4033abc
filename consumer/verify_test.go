package consumer_test

import (
	"errors"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/consumer"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
)

const getJobOp = "actions/get-job-for-workflow-run"

// Jobs that wait in our own queue past verify_age (a full flavor: put back and
// delivered again and again) are not checked with GitHub: waiting here tells nothing
// about the job.
func TestQueuedWaitIsNoReasonToAskGitHub(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 1}},
		GitHub:  fakegithub.Options{JobDuration: time.Second},
		Consumer: func(o *consumer.Options) {
			// GitHub's created_at has whole seconds: a fresh event may look a second old.
			o.VerifyAge = 2 * time.Second
			o.CapacityWait, o.CapacityRetry = 50*time.Millisecond, 50*time.Millisecond
		},
	})
	// The fourth waits about 3 s behind the others.
	for range 4 {
		s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	}
	s.AllJobsDone(t, 60*time.Second)
	if n := s.GH.CallCount(getJobOp); n != 0 {
		t.Errorf("%d job GETs for jobs that only waited in our queue, want 0", n)
	}
	sum := s.GH.Summary()
	t.Logf("4 jobs through a flavor of 1: GitHub calls %d (%.2f per job): %v", sum.CallsTotal, sum.CallsPerJob, sum.Calls)
}

// A retry of our own failed create is not a reason to ask GitHub again.
func TestCreateRetriesDoNotAskGitHub(t *testing.T) {
	const fails = 4
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 2}},
		Consumer: func(o *consumer.Options) {
			o.VerifyAge = 2 * time.Second
			o.MaxAttempts = fails + 2
			o.BackoffInitial, o.BackoffMax = 100*time.Millisecond, 200*time.Millisecond
		},
	})
	s.Cloud.FailNext("small", errors.New("connection refused"), fails)
	s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	s.AllJobsDone(t, 30*time.Second)
	if n := s.Cloud.Stats().Created; n < 1 {
		t.Fatalf("%d instances created", n)
	}
	if n := s.GH.CallCount(getJobOp); n > 1 {
		t.Errorf("%d job GETs for a job whose create was retried %d times, want at most 1", n, fails)
	}
}
