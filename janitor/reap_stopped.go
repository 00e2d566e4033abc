package janitor

import (
	"errors"
	"fmt"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// Reasons for runners whose instance powered off before they took a job.
const (
	reasonStoppedBooting = "stopped_while_booting" // stopped before its runner came up
	reasonStoppedIdle    = "stopped_while_idle"    // stopped while registered and waiting for a job
)

// stoppedGrace: an instance listed stopped is judged powered off for good only once
// its runner record has not changed for this long. A record moves to booting only
// after the backend's Create returned, and Create starts the instance (LXD reports a
// created instance that was never started as pending, Nova a new server as BUILD),
// so a stopped instance behind a settled record has really powered off. The grace
// covers what is left: a listing taken a moment before the record was written, the
// clock skew between the process that wrote the record and the janitor, and an
// instance caught between the stop and the start of a reboot. It is short next to
// the boot timeout (minutes), which is the point: the runner's job stops waiting
// for an instance that will never come up. Not configurable: no setting fits, and
// nothing is gained by tuning it.
const stoppedGrace = 30 * time.Second

// stoppedUntaken reports whether a runner that has not taken a job (booting, or idle
// and registered but not given a job) has an instance that is powered off: its
// runner program is not running and never will, so no job may count on it.
// The typical case: the process serving the instance's config request died after
// claiming it, so the instance's retry is answered 410 Gone and it powers off.
func stoppedUntaken(in *instance, rec *fleet.RunnerRecord) bool {
	if in.State != backends.StateStopped || rec.TookJob != 0 || !rec.BusyAt.IsZero() {
		return false
	}
	return rec.State == fleet.RunnerBooting || rec.State == fleet.RunnerIdle
}

// stopped removes a runner whose instance powered off before it took a job: the
// record is marked failed first (so no job adopts it and its job stops counting on
// it), the instance is deleted, the slot released, and its job, if still queued, gets
// a replacement request (see reap). A GitHub registration the runner left (minted,
// whether or not its record says so) is removed in the same pass when the listing has
// it and it is not busy; otherwise the orphan registration rule removes it later.
func (p *pass) stopped(in *instance, rec *fleet.RunnerRecord, ghByID map[int64]github.Runner, ghByName map[string]github.Runner) {
	j, f, name := p.j, in.flavor, in.Name
	reason, text := reasonStoppedBooting, "instance stopped while booting: its runner never came up"
	if rec.State == fleet.RunnerIdle {
		reason, text = reasonStoppedIdle, "instance stopped while idle: its runner is not running"
	}
	j.logger.Warn("instance stopped before its runner took a job; removing it", logkey.Runner, name, logkey.Flavor, f.Name,
		"state", rec.State, "config_fetched", rec.ConfigFetched, "for_job", rec.ForJob)
	judged := rec.UpdatedAt
	still := func(r *fleet.RunnerRecord) bool {
		// Unchanged since it was judged: a record that moved on (it took a job, was
		// adopted, or was rewritten by a create) is judged again at the next pass.
		return r.State == rec.State && r.TookJob == 0 && r.UpdatedAt.Equal(judged)
	}
	if !p.reap(f, name, true, removal{reason: reason, text: text, still: still}) {
		return
	}
	if !p.sum.GitHubChecked {
		return
	}
	gh, registered := ghByID[rec.GitHubRunnerID]
	if !registered {
		gh, registered = ghByName[name]
	}
	if !registered || gh.Busy || !p.canDelete() || !p.call() {
		return
	}
	err := j.opts.GitHub.DeleteRunner(p.ctx, gh.ID)
	switch {
	case errors.Is(err, github.ErrNotFound):
	case errors.Is(err, github.ErrRunnerBusy):
		p.keep("busy")
	case err != nil:
		p.fail(fmt.Errorf("remove the registration of stopped runner %s: %w", name, err))
	default:
		p.deletes--
		p.sum.RegistrationsRemoved++
		j.metrics.registrations.WithLabelValues(reason).Inc()
		j.logger.Info("janitor removed the registration of a stopped runner", logkey.Runner, name, "github_runner_id", gh.ID)
	}
}
