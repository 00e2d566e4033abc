package janitor_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/fleet/fleettest"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
	"github.com/runner-spawner/runner-spawner/janitor"
	"github.com/runner-spawner/runner-spawner/queue"
)

// faultyBackend shows one instance in the error state, as a cloud does with a VM that
// found no host.
type faultyBackend struct {
	backends.Backend
	errored string
}

func (b faultyBackend) List(ctx context.Context) ([]backends.Instance, error) {
	list, err := b.Backend.List(ctx)
	for i := range list {
		if list[i].Name == b.errored {
			list[i].State, list[i].Fault = backends.StateError, "No valid host was found"
		}
	}
	return list, err
}

// planter puts leftovers in place the way crashes and lost webhooks leave them.
type planter struct {
	t *testing.T
	s *systemtest.System
}

func (p planter) instance(flavor, name string) {
	p.t.Helper()
	// No bootstrap environment: the instance comes up and runs no runner.
	if _, err := p.s.Backends[flavor].Create(p.t.Context(), backends.InstanceSpec{Name: name, Flavor: flavor, JobID: 1}); err != nil {
		p.t.Fatal(err)
	}
}

func (p planter) runner(rec fleet.RunnerRecord) {
	p.t.Helper()
	if rec.Backend == "" {
		rec.Backend = "sim"
	}
	fleettest.PutRunner(p.t, p.s.Conn, rec)
}

func (p planter) slot(flavor, name string, job int64) {
	p.t.Helper()
	if ok, err := p.s.Fleet.Claim(p.t.Context(), flavor, name, job, 10); err != nil || !ok {
		p.t.Fatalf("claim %s: %v %v", name, ok, err)
	}
}

// oldSlot writes a slot claimed an hour ago straight into the capacity record.
func (p planter) oldSlot(flavor, name string) {
	p.t.Helper()
	rec, err := p.s.Fleet.Capacity(p.t.Context(), flavor)
	if err != nil {
		p.t.Fatal(err)
	}
	rec.Slots[name] = fleet.Slot{Job: 1, Since: time.Now().Add(-time.Hour)}
	fleettest.PutCapacity(p.t, p.s.Conn, flavor, *rec)
}

// job stores the record of a job whose queued webhook we "received" and spawned
// runners for.
func (p planter) job(gj fakegithub.Job, flavor string, state fleet.JobState, runners ...string) {
	p.t.Helper()
	fleettest.EditJob(p.t, p.s.Conn, gj.ID, func(j *fleet.JobRecord) {
		j.Flavor, j.Repo, j.RunID, j.RunAttempt, j.Labels = flavor, gj.Repo, gj.RunID, gj.RunAttempt, gj.Labels
		j.State, j.Runners, j.ReceivedAt = state, runners, time.Now().UTC()
	})
}

// TestReconcileCleansLeftovers plants every kind of leftover and checks that the
// janitor cleans each, resumes the jobs that still wait, and touches nothing foreign
// or protected.
func TestReconcileCleansLeftovers(t *testing.T) {
	s := system(t, fakegithub.Options{JobDuration: 100 * time.Millisecond})
	p := planter{t, s}
	ctx := t.Context()
	hour := time.Now().Add(-time.Hour)
	name := func(flavor string, job int64) string { return fmt.Sprintf("spawner-%s-%d-0", flavor, job) }

	// Two jobs whose queued webhooks were lost, so only the planted records know them.
	s.GH.SetWebhookFaults(fakegithub.WebhookFaults{DropNext: 2})
	stuckJob := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"big"}})
	crashedJob := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"big"}})
	// A runner stuck booting for an hour: its job needs another.
	stuck := name("big", stuckJob.ID)
	p.job(stuckJob, "big", fleet.JobQueued, stuck)
	p.runner(fleet.RunnerRecord{Name: stuck, Flavor: "big", State: fleet.RunnerBooting, ForJob: stuckJob.ID, CreatedAt: hour, BootingAt: hour})
	p.instance("big", stuck)
	p.slot("big", stuck, stuckJob.ID)
	// A create whose process crashed: its lease ran out, its job still waits.
	crashed := name("big", crashedJob.ID)
	p.job(crashedJob, "big", fleet.JobQueued, crashed)
	p.runner(fleet.RunnerRecord{Name: crashed, Flavor: "big", State: fleet.RunnerCreating, ForJob: crashedJob.ID, CreatedAt: hour, CreatingUntil: time.Now().Add(-time.Minute)})
	p.slot("big", crashed, crashedJob.ID)

	// A finished runner whose instance was not deleted.
	finished := name("small", 900001)
	p.runner(fleet.RunnerRecord{Name: finished, Flavor: "small", State: fleet.RunnerFinished, ForJob: 900001, TookJob: 900001, BusyAt: hour, FinishedAt: hour})
	p.instance("small", finished)
	p.slot("small", finished, 900001)
	// An instance with no record.
	orphan := name("small", 900003)
	p.instance("small", orphan)
	// A GitHub registration with our prefix, offline, with no instance and no record.
	orphanReg := name("small", 900004)
	if _, err := s.Client.GenerateJITConfig(ctx, github.JITConfigRequest{Name: orphanReg, Labels: s.RunnerLabels["small"]}); err != nil {
		t.Fatal(err)
	}
	// A create that crashed after making its instance, for a job that is done.
	abandoned := name("small", 900006)
	fleettest.EditJob(t, s.Conn, 900006, func(j *fleet.JobRecord) {
		j.Flavor, j.State, j.Runners = "small", fleet.JobCompleted, []string{abandoned}
	})
	p.runner(fleet.RunnerRecord{Name: abandoned, Flavor: "small", State: fleet.RunnerCreating, ForJob: 900006, CreatedAt: hour, CreatingUntil: time.Now().Add(-time.Minute)})
	p.instance("small", abandoned)
	p.slot("small", abandoned, 900006)
	// Leaked slots: one with no record at all, one of a runner long gone.
	leaked, dead := name("small", 900007), name("small", 900008)
	p.oldSlot("small", leaked)
	p.runner(fleet.RunnerRecord{Name: dead, Flavor: "small", State: fleet.RunnerFailed, ForJob: 900008, FinishedAt: hour, InstanceDeleted: true})
	p.slot("small", dead, 900008)
	// An instance the cloud gave up on.
	errored := name("small", 900009)
	p.runner(fleet.RunnerRecord{Name: errored, Flavor: "small", State: fleet.RunnerBooting, ForJob: 900009, BootingAt: time.Now()})
	p.instance("small", errored)
	p.slot("small", errored, 900009)

	// What must survive: a foreign instance, and protected ones (tag, record, config).
	s.Cloud.PlantForeign("foreign-vm-1")
	protTag, protRec, protName := name("small", 900011), name("small", 900012), name("small", 900013)
	p.instance("small", protTag)
	s.Cloud.Protect(protTag, true)
	p.runner(fleet.RunnerRecord{Name: protRec, Flavor: "small", State: fleet.RunnerFinished, ForJob: 900012, FinishedAt: hour, Protected: true})
	p.instance("small", protRec)
	p.instance("small", protName)

	// A spare whose job was cancelled, idle past the idle TTL once the janitor runs.
	spareRunner := spare(t, s)

	reg := prometheus.NewRegistry()
	startJanitor(t, s, func(o *janitor.Options) {
		o.Registerer = reg
		o.ProtectedRunners = []string{protName}
		for i := range o.Flavors {
			if o.Flavors[i].Name == "small" {
				o.Flavors[i].Backend = faultyBackend{Backend: o.Flavors[i].Backend, errored: errored}
			}
		}
	})

	cleaned := []string{stuck, finished, orphan, abandoned, errored, spareRunner}
	gone(t, s, cleaned...)
	systemtest.Eventually(t, 15*time.Second, func() error {
		if registered(s, orphanReg) || registered(s, spareRunner) {
			return fmt.Errorf("registrations left: %+v", s.GH.Runners())
		}
		for _, f := range []string{"small", "big"} {
			c, err := s.Fleet.Capacity(ctx, f)
			if err != nil {
				return err
			}
			for _, n := range []string{stuck, finished, abandoned, leaked, dead, errored, spareRunner} {
				if _, held := c.Slots[n]; held {
					return fmt.Errorf("slot %s of %s still held", n, f)
				}
			}
		}
		return nil
	})
	for _, n := range []string{stuck, finished, abandoned, errored, dead} {
		r, err := s.Fleet.Runner(ctx, n)
		if err != nil || !r.State.Terminal() || !r.InstanceDeleted {
			t.Errorf("runner %s after reconcile: %+v, %v", n, r, err)
		}
	}
	// The jobs that waited run: the stuck boot got a replacement, the crashed create
	// was resumed.
	jobDone(t, s, stuckJob.ID, "success", 30*time.Second)
	jobDone(t, s, crashedJob.ID, "success", 30*time.Second)

	// Nothing else is touched, however many passes run.
	mark := time.Now()
	systemtest.Eventually(t, 10*time.Second, func() error {
		var last control.PassSummary
		if err := s.State.Meta(ctx, queue.MetaLastReconcile, &last); err != nil {
			return err
		}
		if !last.StartedAt.After(mark.Add(time.Second)) {
			return fmt.Errorf("last pass started %s", last.StartedAt)
		}
		return nil
	})
	for _, n := range []string{"foreign-vm-1", protTag, protRec, protName} {
		if !s.Cloud.Exists(n) {
			t.Errorf("instance %s was deleted", n)
		}
	}

	for _, reason := range []string{"finished", "boot_timeout", "orphan", "crashed_create", "instance_error", "idle_ttl"} {
		if n := counter(t, reg, "spawner_janitor_deleted_total", "reason", reason); n < 1 {
			t.Errorf("spawner_janitor_deleted_total{reason=%q} = %v", reason, n)
		}
	}
	for metric, want := range map[string]float64{
		"spawner_janitor_registrations_removed_total": 1,
		"spawner_janitor_resumed_creates_total":       1,
		"spawner_janitor_replacements_total":          1,
		"spawner_janitor_active":                      1,
	} {
		if n := counter(t, reg, metric, "", ""); n < want {
			t.Errorf("%s = %v, want at least %v", metric, n, want)
		}
	}
	if n := counter(t, reg, "spawner_janitor_slots_released_total", "", ""); n < 2 {
		t.Errorf("slots released: %v, want at least 2 (the leaked ones)", n)
	}

	snap, err := control.Snapshot(ctx, s.State, s.Fleet, "small", "big", "slow")
	if err != nil {
		t.Fatal(err)
	}
	if snap.Janitor.Active != "janitor-1" || snap.Janitor.LastReconcile == nil || !snap.Janitor.LastReconcile.GitHubChecked {
		t.Errorf("status janitor: %+v", snap.Janitor)
	}
	if len(snap.Flavors) != 3 || snap.Flavors[0].Name != "big" {
		t.Errorf("status flavors: %+v", snap.Flavors)
	}
}

// counter sums a metric's samples, over those whose label has value ("" for all).
func counter(t *testing.T, reg *prometheus.Registry, metric, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != metric {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// TestReconcileIdleRunnersThatLostGitHub: an idle runner whose registration vanished,
// or whose registration stays offline long after it came up, is removed, and the job
// it was meant for gets another runner.
func TestReconcileIdleRunnersThatLostGitHub(t *testing.T) {
	tests := []struct {
		name       string
		register   bool // the runner has a (never connected, so offline) registration
		wantReason string
	}{
		{"registration gone", false, "runner_gone"},
		{"registration offline", true, "runner_offline"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := system(t, fakegithub.Options{})
			p := planter{t, s}
			jobID := int64(910001 + i)
			runner := fmt.Sprintf("spawner-slow-%d-0", jobID)
			fleettest.EditJob(t, s.Conn, jobID, func(j *fleet.JobRecord) {
				j.Flavor, j.Repo, j.RunAttempt, j.State, j.Runners = "slow", "octo-org/octo-repo", 1, fleet.JobQueued, []string{runner}
			})
			ghID := int64(424242) // no such registration
			if tc.register {
				cfg, err := s.Client.GenerateJITConfig(t.Context(), github.JITConfigRequest{Name: runner, Labels: s.RunnerLabels["slow"]})
				if err != nil {
					t.Fatal(err)
				}
				ghID = cfg.RunnerID
			}
			long := time.Now().Add(-time.Hour)
			p.runner(fleet.RunnerRecord{Name: runner, Flavor: "slow", State: fleet.RunnerIdle, ForJob: jobID, GitHubRunnerID: ghID,
				ConfigFetched: true, CreatedAt: long, BootingAt: long, IdleAt: long})
			p.instance("slow", runner)
			p.slot("slow", runner, jobID)

			reg := prometheus.NewRegistry()
			startJanitor(t, s, func(o *janitor.Options) {
				o.Registerer = reg
				// A minute from now: the record was written (UpdatedAt) just now.
				o.Now = func() time.Time { return time.Now().Add(time.Minute) }
			})
			gone(t, s, runner)
			systemtest.Eventually(t, 10*time.Second, func() error {
				j, err := s.Fleet.Job(t.Context(), jobID)
				if err != nil || len(j.Runners) != 2 {
					return fmt.Errorf("job %d has no replacement runner: %+v %v", jobID, j, err)
				}
				return nil
			})
			if registered(s, runner) {
				t.Error("the offline registration was not removed")
			}
			if n := counter(t, reg, "spawner_janitor_deleted_total", "reason", tc.wantReason); n != 1 {
				t.Errorf("deleted for %s: %v, want 1", tc.wantReason, n)
			}
		})
	}
}

// passLog collects the "deleted" count of every reconcile pass's summary line.
type passLog struct {
	mu      sync.Mutex
	deleted []int64
}

func (l *passLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *passLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *passLog) WithGroup(string) slog.Handler            { return l }
func (l *passLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "reconcile pass" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "deleted" {
			l.mu.Lock()
			l.deleted = append(l.deleted, a.Value.Int64())
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

// TestReconcileIsBounded: no pass deletes more than MaxDeletesPerPass; the rest waits
// for the next passes.
func TestReconcileIsBounded(t *testing.T) {
	s := system(t, fakegithub.Options{})
	p := planter{t, s}
	var orphans []string
	for i := range 5 {
		n := fmt.Sprintf("spawner-small-%d-0", 920000+i)
		p.instance("small", n)
		orphans = append(orphans, n)
	}
	var log passLog
	startJanitor(t, s, func(o *janitor.Options) {
		o.MaxDeletesPerPass = 2
		o.Logger = slog.New(&log)
	})
	gone(t, s, orphans...)
	// A pass logs its summary after its deletes: the last one may still be writing it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		log.mu.Lock()
		total := 0
		for _, n := range log.deleted {
			total += int(n)
		}
		if total >= len(orphans) || time.Now().After(deadline) {
			break // holding the lock for the checks below
		}
		log.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	defer log.mu.Unlock()
	busy := 0
	for _, n := range log.deleted {
		if n > 2 {
			t.Errorf("a pass deleted %d instances, bound 2: %v", n, log.deleted)
		}
		if n > 0 {
			busy++
		}
	}
	if busy < 3 {
		t.Errorf("5 orphans deleted in %d passes with a bound of 2: %v", busy, log.deleted)
	}
}

// msgLog collects every log line's message with its runner.
type msgLog struct {
	mu    sync.Mutex
	lines map[string][]string // runner → messages
}

func (l *msgLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *msgLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *msgLog) WithGroup(string) slog.Handler            { return l }
func (l *msgLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "runner" {
			l.mu.Lock()
			l.lines[a.Value.String()] = append(l.lines[a.Value.String()], r.Message)
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

func (l *msgLog) of(runner string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines[runner])
}

// TestOverdueRetryIsNotACrash: a create whose lease ran out while its retry was due
// (a full quota: the lease is kept until the retry) is handed back like a crashed
// one, but the log says what happened, not that a process crashed. A crash mid-way
// through a retry (a new token written) is still a crash.
func TestOverdueRetryIsNotACrash(t *testing.T) {
	s := system(t, fakegithub.Options{JobDuration: 100 * time.Millisecond})
	p := planter{t, s}
	hour := time.Now().Add(-time.Hour)
	s.GH.SetWebhookFaults(fakegithub.WebhookFaults{DropNext: 3})
	var jobs []fakegithub.Job
	var names []string
	for range 3 {
		j := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"big"}})
		n := fmt.Sprintf("spawner-big-%d-0", j.ID)
		p.job(j, "big", fleet.JobQueued, n)
		p.slot("big", n, j.ID)
		jobs, names = append(jobs, j), append(names, n)
	}
	lapsed := time.Now().Add(-time.Minute)
	quota := "instance quota exceeded"
	// Waiting for its retry after a full quota: no token, the last error kept.
	p.runner(fleet.RunnerRecord{Name: names[0], Flavor: "big", State: fleet.RunnerCreating, ForJob: jobs[0].ID, CreatedAt: hour, CreatingUntil: lapsed, Attempts: 1, LastError: quota})
	// Its process died mid-create, first attempt.
	p.runner(fleet.RunnerRecord{Name: names[1], Flavor: "big", State: fleet.RunnerCreating, ForJob: jobs[1].ID, CreatedAt: hour, CreatingUntil: lapsed, TokenHash: "h1"})
	// Its process died mid-way through a retry: a new token was written.
	p.runner(fleet.RunnerRecord{Name: names[2], Flavor: "big", State: fleet.RunnerCreating, ForJob: jobs[2].ID, CreatedAt: hour, CreatingUntil: lapsed, Attempts: 1, LastError: quota, TokenHash: "h2"})

	log := msgLog{lines: map[string][]string{}}
	startJanitor(t, s, func(o *janitor.Options) { o.Logger = slog.New(&log) })
	for _, j := range jobs {
		jobDone(t, s, j.ID, "success", 30*time.Second)
	}
	says := func(runner, text string) bool {
		return slices.ContainsFunc(log.of(runner), func(m string) bool { return strings.Contains(m, text) })
	}
	if !says(names[0], "create retry overdue") || says(names[0], "crashed") {
		t.Errorf("overdue retry logged as %q, want a retry overdue and no crash", log.of(names[0]))
	}
	for _, n := range names[1:] {
		if !says(n, "crashed process") {
			t.Errorf("crashed create %s logged as %q, want a crash", n, log.of(n))
		}
	}
}

// TestJobWithNoRunnerLeftGetsOne: a queued job whose only runner was taken by a job
// not ours a while ago, and whose replacement request was never stored (its webhook
// lost too, so nothing else brings it back), gets a runner from the janitor's pass
// and runs. A job that still has an untaken runner, and one whose loss is recent,
// get no request.
func TestJobWithNoRunnerLeftGetsOne(t *testing.T) {
	s := system(t, fakegithub.Options{JobDuration: 100 * time.Millisecond})
	s.GH.SetWebhookFaults(fakegithub.WebhookFaults{DropNext: 1})
	j := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"big"}})
	long := time.Now().Add(-10 * time.Minute)
	lost := fmt.Sprintf("spawner-big-%d-0", j.ID)
	fleettest.PutJob(t, s.Conn, fleet.JobRecord{
		ID: j.ID, Flavor: "big", Repo: j.Repo, RunID: j.RunID, RunAttempt: j.RunAttempt, Labels: j.Labels,
		State: fleet.JobQueued, Runners: []string{lost}, ReceivedAt: long, UpdatedAt: long,
	})
	p := planter{t, s}
	p.runner(fleet.RunnerRecord{Name: lost, Flavor: "big", State: fleet.RunnerFinished, ForJob: j.ID, TookJob: 987654321,
		InstanceID: lost, InstanceDeleted: true, CreatedAt: long, UpdatedAt: long})

	// Not orphans: a job whose loss is a moment old (its request may be on its way),
	// and one that has an untaken runner of its own besides the one it lost.
	fresh, other := int64(880001), int64(880002)
	for _, id := range []int64{fresh, other} {
		fleettest.PutJob(t, s.Conn, fleet.JobRecord{ID: id, Flavor: "big", Repo: "octo-org/octo-repo", Labels: []string{"big"},
			State: fleet.JobQueued, Runners: []string{fmt.Sprintf("spawner-big-%d-0", id)}, UpdatedAt: long})
	}
	p.runner(fleet.RunnerRecord{Name: fmt.Sprintf("spawner-big-%d-0", fresh), Flavor: "big", State: fleet.RunnerFinished,
		ForJob: fresh, TookJob: 987654322, InstanceID: "x", InstanceDeleted: true})
	p.runner(fleet.RunnerRecord{Name: fmt.Sprintf("spawner-big-%d-0", other), Flavor: "big", State: fleet.RunnerFinished,
		ForJob: other, TookJob: 987654323, InstanceID: "y", InstanceDeleted: true, UpdatedAt: long})
	p.runner(fleet.RunnerRecord{Name: fmt.Sprintf("spawner-big-%d-1", other), Flavor: "big", State: fleet.RunnerCreating,
		ForJob: other, CreatingUntil: time.Now().Add(time.Hour), UpdatedAt: long})

	log := msgLog{lines: map[string][]string{}}
	startJanitor(t, s, func(o *janitor.Options) { o.Logger = slog.New(&log) })
	jobDone(t, s, j.ID, "success", 30*time.Second)
	rescued := func(runner string) bool {
		return slices.ContainsFunc(log.of(runner), func(m string) bool { return strings.Contains(m, "no runner of its own") })
	}
	if !rescued(lost) {
		t.Errorf("the rescue is not logged for %s: %q", lost, log.of(lost))
	}
	// Passes run every 200 ms: let several more judge the other two.
	time.Sleep(time.Second)
	for _, id := range []int64{fresh, other} {
		if name := fmt.Sprintf("spawner-big-%d-0", id); rescued(name) {
			t.Errorf("job %d was asked a runner for its loss of %s: %q", id, name, log.of(name))
		}
	}
}
