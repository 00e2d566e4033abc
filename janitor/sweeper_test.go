package janitor_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
	"github.com/runner-spawner/runner-spawner/janitor"
)

// attempts groups the fake's delivery attempts by GUID.
func attempts(s *systemtest.System) map[string][]fakegithub.Delivery {
	out := map[string][]fakegithub.Delivery{}
	for _, d := range s.GH.Deliveries() {
		out[d.GUID] = append(out[d.GUID], d)
	}
	return out
}

func redeliveries(ds []fakegithub.Delivery) int {
	n := 0
	for _, d := range ds {
		if d.Redelivery {
			n++
		}
	}
	return n
}

// waitSweeps waits until the sweeper listed deliveries n more times.
func waitSweeps(t *testing.T, s *systemtest.System, n int) {
	t.Helper()
	const op = "orgs/list-webhook-deliveries"
	from := s.GH.CallCount(op)
	systemtest.Eventually(t, 10*time.Second, func() error {
		if got := s.GH.CallCount(op) - from; got < n {
			return fmt.Errorf("%d sweeps so far", got)
		}
		return nil
	})
}

// TestSweeperRedeliversFailedDeliveries: deliveries GitHub failed to make are
// redelivered once and their jobs run; successful ones are never redelivered, and a
// restarted janitor does not redeliver again.
func TestSweeperRedeliversFailedDeliveries(t *testing.T) {
	s := system(t, fakegithub.Options{JobDuration: 100 * time.Millisecond})
	s.GH.SetWebhookFaults(fakegithub.WebhookFaults{DropNext: 2})
	lost := []fakegithub.Job{
		s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"big"}}),
		s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"big"}}),
	}
	// Another flavor's labels: its runner must not take one of the lost jobs.
	heard := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	jobDone(t, s, heard.ID, "success", 20*time.Second)
	for _, j := range lost {
		if g, _ := s.GH.Job(j.ID); g.Status != "queued" {
			t.Fatalf("job %d is %s before the sweep: its webhook was not lost", j.ID, g.Status)
		}
	}

	withHook := func(o *janitor.Options) { o.Hook = s.Hook() }
	j := startJanitor(t, s, withHook)
	for _, job := range lost {
		jobDone(t, s, job.ID, "success", 20*time.Second)
	}
	s.AllJobsDone(t, 10*time.Second)
	waitSweeps(t, s, 3)
	j.Stop(t)
	j2 := systemtest.StartJanitor(t, func() janitor.Options { o := s.JanitorOptions(t, "janitor-2"); withHook(&o); return o }())
	j2.WaitActive(t, 10*time.Second)
	waitSweeps(t, s, 3)

	for guid, ds := range attempts(s) {
		failedFirst := !ds[0].OK()
		switch n := redeliveries(ds); {
		case failedFirst && n != 1:
			t.Errorf("failed delivery %s (%s) redelivered %d times, want once", guid, ds[0].Action, n)
		case failedFirst && !ds[len(ds)-1].OK():
			t.Errorf("redelivery of %s failed: %+v", guid, ds[len(ds)-1])
		case !failedFirst && n != 0:
			t.Errorf("successful delivery %s (%s) redelivered %d times", guid, ds[0].Action, n)
		}
	}
}

// TestSweeperGivesUpOnARefusingReceiver: while the receiver keeps failing, a delivery
// is redelivered after each failed redelivery, at most three times in all, across
// janitor restarts.
func TestSweeperGivesUpOnARefusingReceiver(t *testing.T) {
	s := system(t, fakegithub.Options{})
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	s.GH.SetWebhookTarget(down.URL, systemtest.Secret)
	job := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"slow"}})

	withHook := func(o *janitor.Options) { o.Hook = s.Hook() }
	count := func() int {
		for _, ds := range attempts(s) {
			if slices.ContainsFunc(ds, func(d fakegithub.Delivery) bool { return d.JobID == job.ID }) {
				return redeliveries(ds)
			}
		}
		return 0
	}
	j := startJanitor(t, s, withHook)
	systemtest.Eventually(t, 15*time.Second, func() error {
		if n := count(); n != 3 {
			return fmt.Errorf("%d redeliveries", n)
		}
		return nil
	})
	waitSweeps(t, s, 3)
	j.Stop(t)
	j2 := systemtest.StartJanitor(t, func() janitor.Options { o := s.JanitorOptions(t, "janitor-2"); withHook(&o); return o }())
	j2.WaitActive(t, 10*time.Second)
	waitSweeps(t, s, 3)
	if n := count(); n != 3 {
		t.Errorf("%d redeliveries after a restart, want 3", n)
	}
}

// TestPollerFindsJobsNoWebhookAnnounced: with the webhook lost and no sweeper, the
// poller finds the queued job and it runs.
func TestPollerFindsJobsNoWebhookAnnounced(t *testing.T) {
	s := system(t, fakegithub.Options{JobDuration: 100 * time.Millisecond})
	s.GH.SetWebhookFaults(fakegithub.WebhookFaults{DropNext: 1})
	job := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"big"}})
	startJanitor(t, s, func(o *janitor.Options) {
		o.PollRepos = []string{job.Repo}
		o.PollInterval, o.PollMinAge = 200*time.Millisecond, 300*time.Millisecond
		o.Route = func(labels []string) (string, bool) {
			if slices.Contains(labels, "big") {
				return "big", true
			}
			return "", false
		}
	})
	jobDone(t, s, job.ID, "success", 20*time.Second)
	rec, err := s.Fleet.Job(t.Context(), job.ID)
	if err != nil || len(rec.Runners) != 1 {
		t.Errorf("job record %+v, %v: want one runner", rec, err)
	}
}
