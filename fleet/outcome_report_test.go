package fleet_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

// TestOutcomeOfARun follows the outcome through a run's reports: a check's verdict
// comes with the first pre_job_done only (job code, which holds the hook token,
// cannot rewrite it later), survives the runner's non-zero exit, and a run without
// a verdict ends normal or abnormal by the runner's exit code.
func TestOutcomeOfARun(t *testing.T) {
	stops := map[fleet.Outcome]int{}
	f := open(t, queuetest.Start(t).Connect(t, queue.Options{})).WithStops(func(flavor string, o fleet.Outcome) {
		if flavor != "small" {
			t.Errorf("a stop of flavor %q", flavor)
		}
		stops[o]++
	})
	ctx := t.Context()
	ok := func(*fleet.RunnerRecord) error { return nil }
	start := func(name string) {
		t.Helper()
		if _, _, err := f.StartCreate(ctx, &fleet.RunnerRecord{Name: name, Flavor: "small", ForJob: 1}); err != nil {
			t.Fatal(err)
		}
		if err := f.Report(ctx, name, fleet.EventJobStarted, 0, ok); err != nil {
			t.Fatal(err)
		}
	}
	refused := &fleet.CheckFailure{Outcome: fleet.OutcomeRepoPolicyFailure, HTTPCode: 403, Reason: "not compliant"}

	start("r-refused")
	if _, err := f.ReportWith(ctx, "r-refused", fleet.EventPreJobDone, 1, refused, ok); err != nil {
		t.Fatal(err)
	}
	// A second pre_job_done (job code with the hook token) changes nothing.
	later := &fleet.CheckFailure{Outcome: fleet.OutcomeExternalContributorFailure, Reason: "rewritten"}
	if _, err := f.ReportWith(ctx, "r-refused", fleet.EventPreJobDone, 1, later, ok); !errors.Is(err, fleet.ErrUnchanged) {
		t.Fatalf("a second pre_job_done: %v", err)
	}
	if err := f.Report(ctx, "r-refused", fleet.EventJobFinished, 1, ok); err != nil {
		t.Fatal(err)
	}
	rec, err := f.Runner(ctx, "r-refused")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Outcome != fleet.OutcomeRepoPolicyFailure || rec.CheckHTTPCode != 403 || rec.CheckReason != "not compliant" || rec.State != fleet.RunnerFinished {
		t.Errorf("refused run: outcome %q code %d reason %q state %s", rec.Outcome, rec.CheckHTTPCode, rec.CheckReason, rec.State)
	}

	for name, tc := range map[string]struct {
		exit int
		want fleet.Outcome
	}{"r-ok": {0, fleet.OutcomeNormal}, "r-crash": {2, fleet.OutcomeAbnormal}} {
		start(name)
		if err := f.Report(ctx, name, fleet.EventPreJobDone, 0, ok); err != nil {
			t.Fatal(err)
		}
		// Job code, which holds the hook token, cannot pin a verdict on an allowed run.
		if _, err := f.ReportWith(ctx, name, fleet.EventPreJobDone, 1, later, ok); !errors.Is(err, fleet.ErrUnchanged) {
			t.Fatalf("%s: a verdict after pre_job_done: %v", name, err)
		}
		if err := f.Report(ctx, name, fleet.EventJobFinished, tc.exit, ok); err != nil {
			t.Fatal(err)
		}
		if rec, err := f.Runner(ctx, name); err != nil || rec.Outcome != tc.want {
			t.Errorf("%s: outcome %q (%v), want %q", name, rec.Outcome, err, tc.want)
		}
	}

	// A busy runner whose instance goes without a report ended abnormally.
	start("r-lost")
	if _, err := f.InstanceGone(ctx, "small", "r-lost", true); err != nil {
		t.Fatal(err)
	}
	if rec, err := f.Runner(ctx, "r-lost"); err != nil || rec.Outcome != fleet.OutcomeAbnormal {
		t.Errorf("lost runner: outcome %q (%v)", rec.Outcome, err)
	}

	// GitHub says the job completed and the instance goes before it reports: the
	// run ended normally.
	start("r-webhook")
	if _, err := f.Busy(ctx, "r-webhook", 7, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.InstanceGone(ctx, "small", "r-webhook", true); err != nil {
		t.Fatal(err)
	}
	if rec, err := f.Runner(ctx, "r-webhook"); err != nil || rec.Outcome != fleet.OutcomeNormal {
		t.Errorf("webhook-completed runner: outcome %q (%v)", rec.Outcome, err)
	}
	// A runner the spawner retired before it took a job (a spare past idle_ttl, an
	// idle runner flushed) exits non-zero as its registration goes: no run ended,
	// nothing is counted. One that ends by itself before a job is abnormal.
	for name, retired := range map[string]bool{"r-reaped": true, "r-died": false} {
		if _, _, err := f.StartCreate(ctx, &fleet.RunnerRecord{Name: name, Flavor: "small", ForJob: 1}); err != nil {
			t.Fatal(err)
		}
		if retired {
			if _, err := f.Retire(ctx, name, "idle past idle_ttl", nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Report(ctx, name, fleet.EventJobFinished, 3, ok); err != nil {
			t.Fatal(err)
		}
		want := fleet.OutcomeAbnormal
		if retired {
			want = fleet.OutcomeNone
		}
		if rec, err := f.Runner(ctx, name); err != nil || rec.Outcome != want || rec.ExitCode == nil || *rec.ExitCode != 3 {
			t.Errorf("%s: outcome %q, exit code %v (%v), want %q and 3", name, rec.Outcome, rec.ExitCode, err, want)
		}
	}
	// A retried job_finished changes nothing and counts nothing.
	if err := f.Report(ctx, "r-ok", fleet.EventJobFinished, 3, ok); !errors.Is(err, fleet.ErrUnchanged) {
		t.Errorf("a second job_finished: %v", err)
	}
	want := map[fleet.Outcome]int{fleet.OutcomeRepoPolicyFailure: 1, fleet.OutcomeNormal: 2, fleet.OutcomeAbnormal: 3}
	if fmt.Sprint(stops) != fmt.Sprint(want) {
		t.Errorf("stops counted %v, want %v (each run once)", stops, want)
	}

	// A verdict with any other event, or a verdict that is no check failure, is refused.
	if _, err := f.ReportWith(ctx, "r-ok", fleet.EventJobFinished, 0, refused, ok); err == nil {
		t.Error("a verdict with job_finished was taken")
	}
	if _, err := f.ReportWith(ctx, "r-ok", fleet.EventPreJobDone, 0, &fleet.CheckFailure{Outcome: fleet.OutcomeNormal}, ok); err == nil {
		t.Error("a verdict of normal was taken")
	}
}
