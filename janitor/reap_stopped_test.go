package janitor_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
	"github.com/runner-spawner/runner-spawner/janitor"
)

// stoppedGrace mirrors the janitor's grace for a stopped instance (30 s).
const stoppedGrace = 30 * time.Second

// waitStopped waits until the backend lists the instances as stopped.
func waitStopped(t *testing.T, s *systemtest.System, flavor string, names ...string) {
	t.Helper()
	systemtest.Eventually(t, 15*time.Second, func() error {
		list, err := s.Backends[flavor].List(t.Context())
		if err != nil {
			return err
		}
		state := map[string]backends.State{}
		for _, in := range list {
			state[in.Name] = in.State
		}
		for _, n := range names {
			if state[n] != backends.StateStopped {
				return fmt.Errorf("instance %s is %q, not stopped", n, state[n])
			}
		}
		return nil
	})
}

// TestReconcileReapsRunnersWhoseInstanceStopped: an instance that powered off before
// its runner took a job (the process serving its config request died after claiming
// it, so its retry got 410 Gone) is removed at the first pass once its record has
// been still for the grace, long before the boot timeout: its record fails (so no
// job adopts it), its instance, slot and GitHub registration go, and its job, still
// queued, gets a runner that runs it. A stopped instance whose record has just been
// written is left alone.
func TestReconcileReapsRunnersWhoseInstanceStopped(t *testing.T) {
	s := system(t, fakegithub.Options{JobDuration: 100 * time.Millisecond})
	p := planter{t, s}
	ctx := t.Context()
	name := func(flavor string, job int64) string { return fmt.Sprintf("spawner-%s-%d-0", flavor, job) }

	// A runner booting for a job whose queued webhook was lost (so only the planted
	// records know it): its config was claimed, and its instance powered off.
	s.GH.SetWebhookFaults(fakegithub.WebhookFaults{DropNext: 1})
	bootJob := s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"big"}})
	booting := name("big", bootJob.ID)
	p.job(bootJob, "big", fleet.JobQueued, booting)
	p.runner(fleet.RunnerRecord{Name: booting, Flavor: "big", State: fleet.RunnerBooting, ForJob: bootJob.ID, ConfigFetched: true, BootingAt: time.Now()})
	p.instance("big", booting) // no bootstrap: it powers off at once
	p.slot("big", booting, bootJob.ID)

	// A spare whose config was recorded as handed out (registered on GitHub, idle)
	// but whose instance never got it and powered off.
	const spareJob = 940002
	idle := name("small", spareJob)
	jit, err := s.Client.GenerateJITConfig(ctx, github.JITConfigRequest{Name: idle, Labels: s.RunnerLabels["small"]})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p.runner(fleet.RunnerRecord{Name: idle, Flavor: "small", State: fleet.RunnerIdle, ForJob: spareJob, ConfigFetched: true,
		GitHubRunnerID: jit.RunnerID, BootingAt: now, IdleAt: now})
	if ok, err := s.Fleet.Spare(ctx, idle, spareJob); !ok || err != nil {
		t.Fatalf("spare %s: %v %v", idle, ok, err)
	}
	p.instance("small", idle)
	p.slot("small", idle, spareJob)
	waitStopped(t, s, "big", booting)
	waitStopped(t, s, "small", idle)

	clk := &clock{t: time.Now()}
	startJanitor(t, s, func(o *janitor.Options) {
		o.Interval = time.Hour // passes on demand only (and the one on becoming active)
		o.Now = clk.now
		for i := range o.Flavors {
			o.Flavors[i].BootTimeout, o.Flavors[i].IdleTTL = time.Hour, time.Hour
		}
	})

	// Within the grace: nothing goes.
	sum, err := control.Reconcile(ctx, s.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if sum.DeletedTotal() != 0 || !s.Cloud.Exists(booting) || !s.Cloud.Exists(idle) {
		t.Fatalf("a pass within the grace removed a runner whose record just changed: %+v", sum)
	}

	// Past the grace. A runner written just now, whose instance is already listed
	// stopped, is still within its grace.
	clk.add(stoppedGrace + time.Second)
	fresh := name("big", 940003)
	p.runner(fleet.RunnerRecord{Name: fresh, Flavor: "big", State: fleet.RunnerBooting, ForJob: 940003, BootingAt: clk.now(), CreatedAt: clk.now(), UpdatedAt: clk.now()})
	p.instance("big", fresh)
	p.slot("big", fresh, 940003)
	waitStopped(t, s, "big", fresh)

	sum, err = control.Reconcile(ctx, s.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Deleted["stopped_while_booting"] != 1 || sum.Deleted["stopped_while_idle"] != 1 || sum.RegistrationsRemoved != 1 {
		t.Errorf("pass past the grace: %+v, want one stopped_while_booting, one stopped_while_idle, one registration removed", sum)
	}
	gone(t, s, booting, idle)
	if !s.Cloud.Exists(fresh) {
		t.Errorf("the stopped instance of a runner written just now was deleted")
	}
	for n, want := range map[string]string{
		booting: "instance stopped while booting: its runner never came up",
		idle:    "instance stopped while idle: its runner is not running",
	} {
		r, err := s.Fleet.Runner(ctx, n)
		if err != nil || r.State != fleet.RunnerFailed || !r.InstanceDeleted || r.FailReason != want {
			t.Errorf("runner %s after the pass: %+v, %v; want failed, instance deleted, %q", n, r, err, want)
		}
	}
	if r, err := s.Fleet.Runner(ctx, fresh); err != nil || r.State != fleet.RunnerBooting {
		t.Errorf("runner %s within its grace: %+v, %v; want still booting", fresh, r, err)
	}
	for flavor, n := range map[string]string{"big": booting, "small": idle} {
		if heldSlot(t, s, flavor, n) {
			t.Errorf("slot of %s still held", n)
		}
	}
	if registered(s, idle) {
		t.Errorf("the stopped spare's GitHub registration survived")
	}
	// No job adopts the stopped spare.
	if n, _, ok := s.Fleet.Adopt(ctx, "small", 940099, false); ok {
		t.Errorf("job 940099 adopted %s", n)
	}
	// The job that counted on the stopped runner gets another, which runs it.
	jobDone(t, s, bootJob.ID, "success", 30*time.Second)
}
