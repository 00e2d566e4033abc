package janitor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// Deletion reasons (metric labels, summary keys).
const (
	reasonFinished      = "finished"       // the runner's life is over; its instance was left
	reasonRunnerGone    = "runner_gone"    // its GitHub registration vanished after it registered
	reasonBootTimeout   = "boot_timeout"   // not up within the boot timeout
	reasonInstanceError = "instance_error" // the infrastructure gave up on it
	reasonIdleTTL       = "idle_ttl"       // a spare (or a runner whose job no longer waits) idle too long
	reasonOffline       = "runner_offline" // idle past idle_ttl and offline on GitHub: its runner program died
	reasonOrphan        = "orphan"         // an instance of ours with no record
	reasonCrashedCreate = "crashed_create" // made by a create whose process crashed
	reasonFlush         = "flush"
)

// deleteTimeout bounds one backend delete; recordTimeout one record write after it.
const (
	deleteTimeout = 2 * time.Minute
	recordTimeout = 10 * time.Second
)

// removal is how one runner is removed.
type removal struct {
	reason string // metric label
	text   string // the record's FailReason
	// still re-checks the record, under compare-and-set, just before it is marked
	// terminal: false means it changed since it was judged (it took a job, came
	// up), and it is left alone. nil: remove whatever its state.
	still func(*fleet.RunnerRecord) bool
	// deferReplacement leaves the replacement request to the caller (a flush asks
	// once its removals are done, so that no replacement adopts a runner about to
	// be flushed).
	deferReplacement bool
	// gone: the instance is known to be gone already; only the record, the slot and
	// the job are settled (the delete is still sent: it is idempotent, and catches a
	// stray).
	gone bool
}

// reapOutcome says what reap did.
type reapOutcome int

const (
	reaped    reapOutcome = iota // instance deleted, record and slot settled
	changed                      // the runner changed since it was judged: left alone
	protected                    // protected: left alone
)

// reap deletes a runner's instance and settles the rest: the record is marked
// terminal first (so the bootstrap endpoint refuses its config and no job adopts it
// while it goes), then the instance is deleted, then the record says so, then the
// capacity slot is released (only after the delete returned nil, which means the
// instance is gone, so instances stay within max_runners; a failed delete keeps the
// slot held until a later pass deletes it). A queued job that counted on the runner gets a replacement request
// (returned instead when removal.deferReplacement is set). hasRecord is false for
// an orphan instance.
func (j *Janitor) reap(ctx context.Context, f *Flavor, name string, hasRecord bool, rm removal) (reapOutcome, int64, error) {
	if j.protected[name] {
		return protected, 0, nil
	}
	logger := j.logger.With(logkey.Runner, name, logkey.Flavor, f.Name, "reason", rm.reason)
	var before *fleet.RunnerRecord
	if hasRecord {
		rec, outcome, err := j.retire(ctx, name, rm)
		if outcome != reaped || err != nil {
			return outcome, 0, err
		}
		before = rec // nil: gone meanwhile; the instance is deleted all the same
	}
	dctx, cancel := context.WithTimeout(ctx, deleteTimeout)
	err := f.Backend.Delete(dctx, name)
	cancel()
	if err != nil {
		// The record is terminal now: the next pass deletes the instance as finished.
		return reaped, 0, fmt.Errorf("delete instance %s: %w", name, err)
	}
	// The instance is gone: the record and the slot must say so even if the lease
	// ends this moment.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer wcancel()
	// A listed instance deleted (not rm.gone) is the one a create of unknown outcome
	// may have made: nothing more can appear under the name.
	if _, err := j.fleet.InstanceGone(wctx, f.Name, name, !rm.gone); err != nil {
		logger.Warn("instance deleted but its runner not fully settled; the next pass will", logkey.Error, err)
	}
	if rm.gone {
		j.metrics.released.WithLabelValues(f.Name).Inc()
		logger.Info("janitor settled a runner whose instance is gone", "state", stateOf(before))
	} else {
		j.metrics.deleted.WithLabelValues(f.Name, rm.reason).Inc()
		logger.Info("janitor deleted instance", "state", stateOf(before))
	}
	var job int64
	if before != nil && neverTookJob(before) {
		job = before.ForJob
		if !rm.deferReplacement {
			j.requestRunner(wctx, f.Name, job, name, queue.ReplaceLost)
		}
	}
	return reaped, job, nil
}

// retire marks the runner over before its instance goes (fleet.Retire) and says
// what to do: reaped (go on; rec is the record as it was, nil when it vanished
// meanwhile), protected or changed (leave it).
func (j *Janitor) retire(ctx context.Context, name string, rm removal) (*fleet.RunnerRecord, reapOutcome, error) {
	rec, err := j.fleet.Retire(ctx, name, rm.text, rm.still)
	switch {
	case errors.Is(err, fleet.ErrProtected):
		return nil, protected, nil
	case errors.Is(err, fleet.ErrChanged):
		return nil, changed, nil
	case errors.Is(err, fleet.ErrNoRecord):
		return nil, reaped, nil
	case err != nil:
		return nil, reaped, fmt.Errorf("mark runner %s: %w", name, err)
	}
	return rec, reaped, nil
}

// neverTookJob reports whether a runner was meant for a job and never ran one, so the
// job may still count on it. A terminal runner qualifies too: one that exited
// without a job (its registration removed, its boot failed) leaves its job waiting.
func neverTookJob(r *fleet.RunnerRecord) bool {
	return r.ForJob != 0 && r.TookJob == 0 && r.State != fleet.RunnerBusy && r.BusyAt.IsZero() && !r.Spare
}

func stateOf(r *fleet.RunnerRecord) string {
	if r == nil {
		return "no record"
	}
	return string(r.State)
}

// requestRunner asks for a fresh runner for a job that still waits and has no other
// untaken runner, the way the consumer does when a job's runner is stolen: a
// replacement event keyed by the job and the runner lost, so that two triggers for
// the same loss are stored once.
func (j *Janitor) requestRunner(ctx context.Context, flavor string, jobID int64, lost, reason string) bool {
	logger := j.logger.With(logkey.JobID, jobID, logkey.Flavor, flavor)
	ev, res, err := j.fleet.Replace(ctx, jobID, lost, reason)
	if err != nil {
		logger.Warn("replacement request not stored", logkey.Error, err)
		return false
	}
	if ev == nil {
		return false
	}
	if !res.Duplicate {
		j.metrics.replacements.WithLabelValues(flavor).Inc()
		logger.Info("replacement runner requested for a job whose runner the janitor removed", "replacement", ev.Replacement)
	}
	return true
}
