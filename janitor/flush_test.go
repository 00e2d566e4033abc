package janitor_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/fleet/fleettest"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
	"github.com/runner-spawner/runner-spawner/janitor"
)

func startJanitor(t *testing.T, s *systemtest.System, edit func(*janitor.Options)) *systemtest.RunningJanitor {
	t.Helper()
	opts := s.JanitorOptions(t, "janitor-1")
	if edit != nil {
		edit(&opts)
	}
	j := systemtest.StartJanitor(t, opts)
	j.WaitActive(t, 10*time.Second)
	return j
}

// noIdleTTL keeps spares until the flush, not the idle TTL, removes them.
func noIdleTTL(o *janitor.Options) {
	for i := range o.Flavors {
		o.Flavors[i].IdleTTL = time.Hour
	}
}

// TestFlushIdle: an idle flush removes the idle spare (its GitHub registration first)
// and the runner still booting, keeps the busy one, and the queued job whose runner
// was flushed gets a fresh one once the pause is lifted.
func TestFlushIdle(t *testing.T) {
	s := system(t, fakegithub.Options{})
	startJanitor(t, s, noIdleTTL)
	busyJob, busyRunner := busy(t, s, 10*time.Minute)
	spareRunner := spare(t, s)
	slowJob, bootRunner := booting(t, s)

	res, err := flush(t, s, control.FlushIdle, "")
	if err != nil {
		t.Fatal(err)
	}
	res.WaitedSeconds = 0
	if d := cmp.Diff(control.FlushResult{Mode: "FLUSH_IDLE", Removed: 2, SkippedBusy: 1}, res); d != "" {
		t.Errorf("flush result (-want +got):\n%s", d)
	}
	gone(t, s, spareRunner, bootRunner)
	if registered(s, spareRunner) {
		t.Errorf("the spare's GitHub registration survived the flush")
	}
	if !s.Cloud.Exists(busyRunner) {
		t.Errorf("the busy runner's instance was deleted")
	}
	if j, _ := s.GH.Job(busyJob.ID); j.Status != "in_progress" {
		t.Errorf("the busy runner's job is %s", j.Status)
	}
	for _, name := range []string{spareRunner, bootRunner} {
		if r, err := s.Fleet.Runner(t.Context(), name); err != nil || !r.State.Terminal() || !r.InstanceDeleted {
			t.Errorf("flushed runner %s: %+v, %v", name, r, err)
		}
	}
	notPaused(t, s, "small", "slow")
	// The slow job still waits: it gets a new runner after the flush.
	systemtest.Eventually(t, 15*time.Second, func() error {
		j, err := s.Fleet.Job(t.Context(), slowJob.ID)
		if err != nil || len(j.Runners) < 2 || !s.Cloud.Exists(j.Runners[1]) {
			return fmt.Errorf("no replacement runner for job %d yet", slowJob.ID)
		}
		return nil
	})
}

// TestFlushIdleSparesARunnerThatTakesAJob: GitHub gives the idle runner a job after
// the flush judged it idle; removing it answers 422, and it keeps its job.
func TestFlushIdleSparesARunnerThatTakesAJob(t *testing.T) {
	s := system(t, fakegithub.Options{JobDuration: 300 * time.Millisecond})
	jobs := make(chan fakegithub.Job, 1)
	var name string
	startJanitor(t, s, func(o *janitor.Options) {
		noIdleTTL(o)
		janitor.SetTestHooks(o, janitor.TestHooks{BeforeFlushRemove: func() {
			job := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
			jobs <- job
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if g, _ := s.GH.Job(job.ID); g.RunnerName == name {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Errorf("GitHub did not give job %d to the idle runner %s", job.ID, name)
		}})
	})
	name = spare(t, s)

	res, err := flush(t, s, control.FlushIdle, "small")
	if err != nil {
		t.Fatal(err)
	}
	res.WaitedSeconds = 0
	if d := cmp.Diff(control.FlushResult{Mode: "FLUSH_IDLE", SkippedBusy: 1}, res); d != "" {
		t.Errorf("flush result (-want +got):\n%s", d)
	}
	job := <-jobs
	jobDone(t, s, job.ID, "success", 20*time.Second)
	gone(t, s, name) // deleted once its job finished, as always
}

// TestFlushBusyDuringALongJob: a busy flush removes a runner in the middle of its
// job; GitHub then fails the job (its runner vanished).
func TestFlushBusyDuringALongJob(t *testing.T) {
	s := system(t, fakegithub.Options{})
	startJanitor(t, s, nil)
	job, name := busy(t, s, 10*time.Minute)

	res, err := flush(t, s, control.FlushBusy, "")
	if err != nil {
		t.Fatal(err)
	}
	res.WaitedSeconds = 0
	if d := cmp.Diff(control.FlushResult{Mode: "FLUSH_BUSY", Removed: 1}, res); d != "" {
		t.Errorf("flush result (-want +got):\n%s", d)
	}
	gone(t, s, name)
	jobDone(t, s, job.ID, "failure", 20*time.Second)
	notPaused(t, s, "small", "slow")
}

// TestFlushWaitRepoCheck: the *_WAIT_REPO_CHECK modes wait while a runner is in its
// pre-job phase, no longer than FlushWait × FlushWaitAttempts.
func TestFlushWaitRepoCheck(t *testing.T) {
	tests := []struct {
		name     string
		mode     control.Mode
		wait     time.Duration // FlushWait (× 4 attempts)
		endAfter time.Duration // the pre-job phase ends this long after the flush starts (0: never)
		minWait  float64
		maxWait  float64
		want     control.FlushResult
	}{
		{"idle mode waits out its bound", control.FlushIdleWaitRepoCheck, 200 * time.Millisecond, 0, 0.8, 1.8,
			control.FlushResult{Mode: "FLUSH_IDLE_WAIT_REPO_CHECK", SkippedBusy: 1}},
		{"busy mode goes on when the pre-job phase ends", control.FlushBusyWaitRepoCheck, 750 * time.Millisecond, 500 * time.Millisecond, 0.3, 2.5,
			control.FlushResult{Mode: "FLUSH_BUSY_WAIT_REPO_CHECK", Removed: 1}},
		{"a mode without the check does not wait", control.FlushBusy, 500 * time.Millisecond, 0, 0, 0.3,
			control.FlushResult{Mode: "FLUSH_BUSY", Removed: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := system(t, fakegithub.Options{})
			startJanitor(t, s, func(o *janitor.Options) { o.FlushWait, o.FlushWaitAttempts = tc.wait, 4 })
			_, name := busy(t, s, 10*time.Minute)
			setPreJobDone := func(done bool) {
				fleettest.EditRunner(t, s.Conn, name, func(r *fleet.RunnerRecord) {
					r.PreJobDoneAt = time.Time{}
					if done {
						r.PreJobDoneAt = time.Now()
					}
				})
			}
			// Back into the pre-job phase: job started, the repository check not done.
			setPreJobDone(false)
			if tc.endAfter > 0 {
				go func() {
					time.Sleep(tc.endAfter) // drives the scenario; the assertion is on the result
					setPreJobDone(true)
				}()
			}
			res, err := flush(t, s, tc.mode, "small")
			if err != nil {
				t.Fatal(err)
			}
			if res.WaitedSeconds < tc.minWait || res.WaitedSeconds > tc.maxWait {
				t.Errorf("waited %.2fs, want between %.2fs and %.2fs", res.WaitedSeconds, tc.minWait, tc.maxWait)
			}
			res.WaitedSeconds = 0
			if d := cmp.Diff(tc.want, res); d != "" {
				t.Errorf("flush result (-want +got):\n%s", d)
			}
		})
	}
}

// TestFlushWithGitHubDown: with GitHub refusing (an expired token, 401) only FORCE
// removes the runners; the other modes report the refusal. The registrations FORCE
// left behind are removed by reconcile once GitHub answers again.
func TestFlushWithGitHubDown(t *testing.T) {
	tests := []struct {
		name    string
		mode    control.Mode
		want    control.FlushResult
		wantErr error
	}{
		{"FORCE deletes every instance", control.ForceFlushWaitRepoCheck, control.FlushResult{Mode: "FORCE_FLUSH_WAIT_REPO_CHECK", Removed: 2}, nil},
		{"BUSY reports the refusal", control.FlushBusy, control.FlushResult{Mode: "FLUSH_BUSY", Failed: 2}, control.ErrFlushIncomplete},
		{"IDLE reports the refusal", control.FlushIdle, control.FlushResult{Mode: "FLUSH_IDLE", SkippedBusy: 1, Failed: 1}, control.ErrFlushIncomplete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := system(t, fakegithub.Options{})
			startJanitor(t, s, noIdleTTL)
			job, busyRunner := busy(t, s, 10*time.Minute)
			spareRunner := spare(t, s)
			fault := s.GH.SetFault(fakegithub.Fault{Op: "actions/delete-self-hosted-runner-from-org", Status: 401})

			res, err := flush(t, s, tc.mode, "")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("flush: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && res.Error == "" {
				t.Error("an incomplete flush has no error text")
			}
			res.WaitedSeconds, res.Error = 0, ""
			if d := cmp.Diff(tc.want, res); d != "" {
				t.Errorf("flush result (-want +got):\n%s", d)
			}
			if tc.wantErr != nil {
				for _, n := range []string{busyRunner, spareRunner} {
					if !s.Cloud.Exists(n) {
						t.Errorf("instance %s deleted although GitHub refused removing its runner", n)
					}
				}
				return
			}
			s.NoInstancesLeft(t, 10*time.Second)
			jobDone(t, s, job.ID, "failure", 20*time.Second)
			// GitHub is back: reconcile removes the spare's registration left behind.
			s.GH.ClearFault(fault)
			systemtest.Eventually(t, 20*time.Second, func() error {
				if registered(s, spareRunner) || registered(s, busyRunner) {
					return fmt.Errorf("registrations left: %+v", s.GH.Runners())
				}
				return nil
			})
		})
	}
}

// TestFlushNeedsAnActiveJanitor: without an active janitor a flush fails at once.
func TestFlushNeedsAnActiveJanitor(t *testing.T) {
	s := system(t, fakegithub.Options{})
	start := time.Now()
	_, err := flush(t, s, control.FlushIdle, "")
	if !errors.Is(err, control.ErrNoJanitor) {
		t.Fatalf("flush without a janitor: %v, want control.ErrNoJanitor", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %s to notice no janitor answers", time.Since(start))
	}
	startJanitor(t, s, nil)
	res, err := flush(t, s, "flush-idle", "nosuch")
	if !errors.Is(err, control.ErrFlushIncomplete) || res.Error != `unknown flavor "nosuch"` {
		t.Fatalf("flush of an unknown flavor: %+v, %v", res, err)
	}
}
