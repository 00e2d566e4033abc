package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// The runner verbs, in the order of a runner's life. Each is one compare-and-set on
// the runner's record; the state moves only as the transition table allows.

// StartCreate begins (or resumes) the create of runner rec.Name: it stores rec, a
// record in state creating holding the create lease until rec.CreatingUntil, or,
// when the name has a record already (a create whose worker crashed, or a retry that
// is due), takes that record's create lease with rec's token and job. resumed says
// an earlier attempt may have left an instance; attempts is the count of its failed
// attempts. ErrCreateLeased: another worker holds the lease.
func (f *Fleet) StartCreate(ctx context.Context, rec *RunnerRecord) (resumed bool, attempts int, err error) {
	now := f.now().UTC()
	rec.State = RunnerCreating
	rec.CreatedAt, rec.UpdatedAt = now, now
	err = f.runners.Create(ctx, rec.Name, rec)
	if err == nil {
		return false, rec.Attempts, nil
	}
	if !errors.Is(err, ErrExists) {
		return false, 0, fmt.Errorf("create runner %s: %w", rec.Name, err)
	}
	_, err = f.updateRunner(ctx, rec.Name, func(r *RunnerRecord) error {
		if r.State != RunnerCreating || now.Before(r.CreatingUntil) {
			return ErrCreateLeased
		}
		r.TokenHash, r.TokenExpires, r.CreatingUntil = rec.TokenHash, rec.TokenExpires, rec.CreatingUntil
		r.ForJob = rec.ForJob
		attempts = r.Attempts
		return nil
	})
	if err != nil {
		return false, 0, err
	}
	return true, attempts, nil
}

// TakeCreateLease takes the create lease of a runner still in creating whose lease
// has run out (its creator died, or its retry is due), until until.
// ErrCreateLeased: someone holds it, or the runner left creating.
func (f *Fleet) TakeCreateLease(ctx context.Context, name string, until time.Time) error {
	now := f.now()
	_, err := f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		if r.State != RunnerCreating || now.Before(r.CreatingUntil) {
			return ErrCreateLeased
		}
		r.CreatingUntil = until.UTC()
		return nil
	})
	return err
}

// RenewCreateLease extends the create lease of a runner still in creating to until.
// A runner that left creating needs no lease (nil).
func (f *Fleet) RenewCreateLease(ctx context.Context, name string, until time.Time) error {
	_, err := ignoreUnchanged(f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		if r.State != RunnerCreating {
			return ErrUnchanged
		}
		r.CreatingUntil = until.UTC()
		return nil
	}))
	return err
}

// Created records that the runner's instance exists: it boots.
func (f *Fleet) Created(ctx context.Context, name, instanceID string) error {
	now := f.now().UTC()
	_, err := f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		if r.State.Advance(RunnerBooting) {
			r.BootingAt = now
		}
		r.InstanceID = instanceID
		r.CreatingUntil = time.Time{}
		r.Attempts, r.LastError = 0, ""
		return nil
	})
	return err
}

// CreateFailure is what a failed create attempt leaves on its runner.
type CreateFailure struct {
	// Attempts counts the runner's failed attempts, this one included.
	Attempts int
	Err      error
	// GiveUp ends the runner: no attempt follows under this name.
	GiveUp bool
	// InstanceGone says the create's name was deleted after the failure and its
	// outcome is known: nothing of it exists.
	InstanceGone bool
	// HoldSlotUntil: the create's outcome is unknown, and an instance may still
	// appear under the name until then.
	HoldSlotUntil time.Time
	// RetryAt is when the next attempt is due (a runner not given up).
	RetryAt time.Time
}

// FailCreate records a failed create attempt. The attempt's bootstrap token dies
// with it: an instance the attempt left behind (or one that appears late) must not
// fetch a runner config with it, and a retry renders a fresh one. A runner given up
// moves to failed; one that is not keeps its create lease until the retry is due,
// so that other events for its job leave it alone.
func (f *Fleet) FailCreate(ctx context.Context, name string, fl CreateFailure) error {
	now := f.now().UTC()
	_, err := f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		r.Attempts = fl.Attempts
		r.LastError = fl.Err.Error()
		r.TokenHash, r.TokenExpires = "", time.Time{}
		if !fl.GiveUp {
			r.CreatingUntil = fl.RetryAt.UTC()
			return nil
		}
		if r.State.Advance(RunnerFailed) {
			r.FinishedAt = now
		}
		r.FailReason = "create failed: " + fl.Err.Error()
		r.InstanceDeleted = fl.InstanceGone
		r.HoldSlotUntil = fl.HoldSlotUntil.UTC()
		r.CreatingUntil = time.Time{}
		return nil
	})
	return err
}

// Abandon ends a runner whose job no longer needs it before it ran, once its
// instance is confirmed gone (the caller deleted it): failed, with reason.
func (f *Fleet) Abandon(ctx context.Context, name, reason string) error {
	now := f.now().UTC()
	_, err := f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		if r.State.Advance(RunnerFailed) {
			r.FinishedAt = now
		}
		r.FailReason = reason
		r.CreatingUntil, r.InstanceDeleted = time.Time{}, true
		return nil
	})
	return err
}

// ClaimConfig hands the runner's one-time config out once: check (the caller's
// token check, which reads the record and edits nothing) must pass, the config must
// not have been fetched and the runner must be alive; then the config is marked
// fetched and the hashes of its two callback tokens stored. Two concurrent fetches
// cannot both pass. It returns the record.
func (f *Fleet) ClaimConfig(ctx context.Context, name string, check func(*RunnerRecord) error, callbackHash, hookHash string, gone error) (*RunnerRecord, error) {
	return f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		if err := check(r); err != nil {
			return err
		}
		if r.ConfigFetched || r.State.Terminal() {
			return gone
		}
		r.ConfigFetched = true
		r.CallbackHash, r.HookHash = callbackHash, hookHash
		return nil
	})
}

// UnclaimConfig lets the instance fetch its config again after a failed mint.
func (f *Fleet) UnclaimConfig(ctx context.Context, name string) error {
	_, err := f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		r.ConfigFetched = false
		r.CallbackHash, r.HookHash = "", ""
		return nil
	})
	return err
}

// Registered records the runner's GitHub registration, minted for its config: it is
// online and idle until it takes a job.
func (f *Fleet) Registered(ctx context.Context, name string, githubRunnerID int64) error {
	now := f.now().UTC()
	_, err := f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		r.GitHubRunnerID = githubRunnerID
		if r.State.Advance(RunnerIdle) {
			r.IdleAt = now
		}
		return nil
	})
	return err
}

// InstanceEvent is what a runner's instance reports about itself.
type InstanceEvent int

const (
	// EventBooted: the instance is up and its bootstrap runs.
	EventBooted InstanceEvent = iota + 1
	// EventJobStarted: the runner took a job; its pre-job hook runs.
	EventJobStarted
	// EventPreJobDone: the pre-job hook (the repository check) finished.
	EventPreJobDone
	// EventJobFinished: the runner program exited; the instance can go.
	EventJobFinished
)

// Report applies an event the runner's instance reported, once authorize (the
// caller's token check, which reads the record and edits nothing) passed.
// ErrUnchanged: the event was reported before.
func (f *Fleet) Report(ctx context.Context, name string, ev InstanceEvent, exitCode int, authorize func(*RunnerRecord) error) error {
	_, err := f.ReportWith(ctx, name, ev, exitCode, nil, authorize)
	return err
}

// ReportWith is Report with the verdict of a pre-job check that refused the job
// (check, with EventPreJobDone only; nil: none). The verdict counts only with the
// first pre_job_done: job code runs after it and can read the hook token, so it must
// not be able to rewrite how its run ended. It returns the record as stored.
func (f *Fleet) ReportWith(ctx context.Context, name string, ev InstanceEvent, exitCode int, check *CheckFailure, authorize func(*RunnerRecord) error) (*RunnerRecord, error) {
	if check != nil && (ev != EventPreJobDone || !check.Outcome.IsCheckFailure()) {
		return nil, fmt.Errorf("runner %s: a check verdict %q comes with pre_job_done only", name, check.Outcome)
	}
	now := f.now().UTC()
	return f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		if err := authorize(r); err != nil {
			return err
		}
		switch ev {
		case EventBooted:
			if !r.BootedAt.IsZero() {
				return ErrUnchanged
			}
			r.BootedAt = now
		case EventJobStarted:
			if r.State.Advance(RunnerBusy) {
				r.BusyAt = now
			}
			if r.PreJobStartedAt.IsZero() {
				r.PreJobStartedAt = now
			}
		case EventPreJobDone:
			if !r.PreJobDoneAt.IsZero() {
				return ErrUnchanged
			}
			r.PreJobDoneAt = now
			if check != nil && r.Outcome.Settle(check.Outcome) {
				r.CheckHTTPCode, r.CheckReason = check.HTTPCode, check.Reason
			}
		case EventJobFinished:
			if r.ExitCode != nil {
				// Said before (a retried callback): the run ended once, and is
				// counted once.
				return ErrUnchanged
			}
			code := exitCode
			r.ExitCode = &code
			if r.State == RunnerFailed && r.TookJob == 0 && r.BusyAt.IsZero() {
				// The spawner ended this runner before it took a job (Retire: idle
				// past idle_ttl, flushed, not up in time), and its runner program
				// exits non-zero as its registration goes. No run ended, so there
				// is no outcome to count; a runner that ends by itself before a job
				// is still abnormal below.
				return nil
			}
			if r.State.Advance(RunnerFinished) {
				r.FinishedAt = now
			}
			if code == 0 {
				r.Outcome.Settle(OutcomeNormal)
			} else {
				r.Outcome.Settle(OutcomeAbnormal)
			}
		default:
			return fmt.Errorf("unknown instance event %d", ev)
		}
		return nil
	})
}

// Busy records that GitHub gave the runner job jobID (an in_progress event, or a
// completed one when finished is set: then its life is over and its instance can
// go). It returns the record as stored and whether the runner was spare: a spare
// that took a job is out of the spare index. ErrNoRecord: a runner of ours whose
// record expired or was reaped.
func (f *Fleet) Busy(ctx context.Context, name string, jobID int64, finished bool) (*RunnerRecord, error) {
	now := f.now().UTC()
	wasSpare := false
	rec, err := ignoreUnchanged(f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		changed := false
		wasSpare = r.Spare
		if r.TookJob == 0 {
			r.TookJob = jobID
			r.Spare = false
			changed = true
		}
		if r.State.Advance(RunnerBusy) {
			r.BusyAt = now
			changed = true
		}
		if finished && r.State.Advance(RunnerFinished) {
			r.FinishedAt = now
			changed = true
		}
		return unchangedUnless(changed)
	}))
	if err != nil {
		return nil, err
	}
	if rec.Pool && rec.TookJob == jobID {
		f.leftPool(ctx, rec.Flavor, name, jobID)
	}
	if wasSpare {
		// The index is a hint: an entry whose runner is no longer spare is dropped by
		// the next Adopt that finds it.
		if err := f.removeSpare(ctx, rec.Flavor, name); err != nil {
			f.logger.Debug("spare index not updated; the next adoption drops the entry", logkey.Runner, name, logkey.Error, err)
		}
	}
	return rec, nil
}

// Spare marks a runner meant for jobID, alive and untaken, as spare: the next job of
// its flavor adopts it instead of spawning another. It reports whether it marked it.
func (f *Fleet) Spare(ctx context.Context, name string, jobID int64) (bool, error) {
	rec, err := f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		if r.ForJob != jobID || !r.Untaken() || r.Spare {
			return ErrUnchanged
		}
		r.Spare = true
		return nil
	})
	if errors.Is(err, ErrUnchanged) || errors.Is(err, ErrNoRecord) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := f.addSpare(ctx, rec.Flavor, name, jobID); err != nil {
		// Spare on its record all the same: the janitor reaps it after idle_ttl.
		f.logger.Warn("spare not indexed: the next job spawns instead of adopting it", logkey.Runner, name, logkey.Error, err)
	}
	return true, nil
}

// Adopt gives job jobID an untaken spare of the flavor, if there is one, and returns
// its name. counted says whether it counts against the job's replacement limit.
func (f *Fleet) Adopt(ctx context.Context, flavor string, jobID int64, counted bool) (name string, from int64, ok bool) {
	spares, err := f.Spares(ctx, flavor)
	if err != nil || len(spares) == 0 {
		return "", 0, false // no spare to be had now: the job spawns
	}
	for name := range spares {
		var prev int64
		_, err := f.updateRunner(ctx, name, func(r *RunnerRecord) error {
			if !r.Spare || !r.Untaken() {
				return ErrUnchanged
			}
			prev = r.ForJob
			r.ForJob, r.Spare = jobID, false
			return nil
		})
		// Adopted, or not spare any more (taken, gone): either way out of the index.
		if rerr := f.removeSpare(ctx, flavor, name); rerr != nil {
			f.logger.Debug("spare index not updated; the next adoption drops the entry", logkey.Runner, name, logkey.Error, rerr)
		}
		if err != nil {
			continue
		}
		if _, err := f.AttachRunner(ctx, jobID, name, counted); err != nil {
			// The runner is the job's (its record says so); the job's list misses it,
			// so a later event for the job may spawn one runner more than needed.
			f.logger.Warn("adopted runner not listed on its job", logkey.Runner, name, logkey.JobID, jobID, logkey.Error, err)
		}
		return name, prev, true
	}
	return "", 0, false
}

// Retire marks a runner the janitor is about to delete as over (failed, or finished
// if it ran a job), with text as its fail reason, so that the bootstrap endpoint
// refuses its config and no job adopts it while it goes. still re-checks, under the
// compare-and-set, that the runner is as it was judged (nil: whatever its state).
// It returns the record as it was. ErrProtected: the runner is protected.
// ErrChanged: it changed since it was judged (it took a job, came up).
func (f *Fleet) Retire(ctx context.Context, name, text string, still func(*RunnerRecord) bool) (*RunnerRecord, error) {
	now := f.now().UTC()
	var before *RunnerRecord
	_, err := f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		if r.Protected {
			return ErrProtected
		}
		if still != nil && !still(r) {
			return ErrChanged
		}
		cp := *r
		before = &cp
		if r.State.Terminal() && r.CreatingUntil.IsZero() {
			return ErrUnchanged // nothing to write; the instance still goes
		}
		next := RunnerFailed
		if r.TookJob != 0 || r.State == RunnerBusy {
			next = RunnerFinished
		}
		if r.State.Advance(next) {
			r.FinishedAt = now
			if r.FailReason == "" {
				r.FailReason = text
			}
			if next == RunnerFinished {
				// It held a job and is removed before its instance said how the
				// job ended.
				r.Outcome.Settle(OutcomeAbnormal)
			}
		}
		r.CreatingUntil = time.Time{}
		return nil
	})
	if err != nil && !errors.Is(err, ErrUnchanged) {
		return nil, err
	}
	return before, nil
}

// ErrChanged means a runner changed since the janitor judged it: it is left alone.
var ErrChanged = errors.New("runner changed since it was judged")

// InstanceGone settles a runner whose instance is confirmed gone (a delete by its
// name returned, or the janitor's listing no longer has it): the record says so (a
// live runner's life is over without its instance), its capacity slot is freed, and
// it leaves the spare index. deletedNow says the caller has just deleted the
// instance by its name, so that nothing can appear under it any more (the hold of a
// create of unknown outcome ends). The runner's record may be missing (an orphan
// instance). It returns the record as it was before (nil when missing).
//
// The slot is freed even when the record write fails: the instance is gone, which
// is what the slot stands for, and the janitor settles the record on a later pass.
func (f *Fleet) InstanceGone(ctx context.Context, flavor, name string, deletedNow bool) (*RunnerRecord, error) {
	now := f.now().UTC()
	var before *RunnerRecord
	_, err := f.updateRunner(ctx, name, func(r *RunnerRecord) error {
		cp := *r
		before = &cp
		clearHold := deletedNow && !r.HoldSlotUntil.IsZero()
		if r.InstanceDeleted && !clearHold && !r.State.Live() {
			return ErrUnchanged
		}
		r.InstanceDeleted = true
		if clearHold {
			r.HoldSlotUntil = time.Time{}
		}
		tookJob := r.State == RunnerBusy || r.TookJob != 0
		switch {
		case r.State.Live() && r.State.Advance(RunnerFinished):
			r.FinishedAt = now
			if tookJob {
				// Its instance went while it held a job, without reporting the end.
				r.Outcome.Settle(OutcomeAbnormal)
			}
		case r.State == RunnerFinished && tookJob:
			// GitHub said its job completed and its instance was deleted before the
			// instance itself reported the end: the run ended as runs do. (A
			// report that came first, or a check's verdict, has settled it.)
			r.Outcome.Settle(OutcomeNormal)
		}
		return nil
	})
	var errs []error
	if err != nil && !errors.Is(err, ErrUnchanged) && !errors.Is(err, ErrNoRecord) {
		errs = append(errs, fmt.Errorf("record: %w", err))
	}
	if err := f.release(ctx, flavor, name); err != nil {
		errs = append(errs, fmt.Errorf("slot: %w", err))
	}
	if before != nil && before.Spare {
		if err := f.removeSpare(ctx, flavor, name); err != nil {
			f.logger.Debug("spare index not updated; the next adoption drops the entry", logkey.Runner, name, logkey.Error, err)
		}
	}
	return before, errors.Join(errs...)
}
