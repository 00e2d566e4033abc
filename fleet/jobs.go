package fleet

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/runner-spawner/runner-spawner/queue"
)

// The job verbs. A job record is created by the first event that names the job,
// whichever it is, and only moves forward (transitions.go).

// initJob fills a new record from the event that first named the job.
func initJob(j *JobRecord, ev *queue.JobEvent) {
	j.Flavor, j.Repo, j.RunID, j.RunAttempt = ev.Flavor, ev.Repo, ev.RunID, ev.RunAttempt
	j.Labels = ev.Labels
	j.State = JobQueued
	j.ReceivedAt = ev.ReceivedAt
	if ev.CreatedAt != nil {
		j.QueuedAt = *ev.CreatedAt
	}
}

// SeeJob records the job an event names, if it has no record yet, and returns the
// record as it is.
func (f *Fleet) SeeJob(ctx context.Context, ev *queue.JobEvent) (*JobRecord, error) {
	return ignoreUnchanged(f.updateJob(ctx, ev.JobID, func(j *JobRecord) error {
		if j.Flavor != "" {
			return ErrUnchanged
		}
		initJob(j, ev)
		return nil
	}))
}

// JobStarted applies an in_progress event: the job runs, on ev.RunnerName. It returns
// the record, and ErrUnchanged when the event told nothing new.
func (f *Fleet) JobStarted(ctx context.Context, ev *queue.JobEvent) (*JobRecord, error) {
	now := f.now().UTC()
	return f.updateJob(ctx, ev.JobID, func(j *JobRecord) error {
		if j.Flavor == "" {
			initJob(j, ev)
		}
		changed := j.State.Advance(JobInProgress)
		if ev.RunnerName != "" && j.TakenBy != ev.RunnerName {
			j.TakenBy = ev.RunnerName
			changed = true
		}
		if j.StartedAt.IsZero() {
			j.StartedAt = now
			changed = true
		}
		return unchangedUnless(changed)
	})
}

// JobCompleted applies a completed event (a job that ran, or was cancelled). It
// returns the record, and ErrUnchanged when the event told nothing new.
func (f *Fleet) JobCompleted(ctx context.Context, ev *queue.JobEvent) (*JobRecord, error) {
	now := f.now().UTC()
	return f.updateJob(ctx, ev.JobID, func(j *JobRecord) error {
		if j.Flavor == "" {
			initJob(j, ev)
		}
		changed := j.State.Advance(JobCompleted)
		if ev.Conclusion != "" && j.Conclusion != ev.Conclusion {
			j.Conclusion = ev.Conclusion
			changed = true
		}
		if ev.RunnerName != "" && j.TakenBy == "" {
			j.TakenBy = ev.RunnerName
			changed = true
		}
		if j.CompletedAt.IsZero() {
			j.CompletedAt = now
			changed = true
		}
		return unchangedUnless(changed)
	})
}

// JobObserved records what GitHub said of a job asked about (status in_progress or
// completed; a queued job is not recorded).
func (f *Fleet) JobObserved(ctx context.Context, id int64, state JobState, conclusion, runnerName string) error {
	_, err := ignoreUnchanged(f.updateJob(ctx, id, func(j *JobRecord) error {
		j.State.Advance(state)
		j.Conclusion = conclusion
		if j.TakenBy == "" {
			j.TakenBy = runnerName
		}
		return nil
	}))
	return err
}

// JobVerified records that GitHub said, at at, that the job is still queued.
func (f *Fleet) JobVerified(ctx context.Context, id int64, at time.Time) error {
	_, err := ignoreUnchanged(f.updateJob(ctx, id, func(j *JobRecord) error {
		if !at.After(j.VerifiedAt) {
			return ErrUnchanged
		}
		j.VerifiedAt = at.UTC()
		return nil
	}))
	return err
}

// JobGone records that GitHub answered 404 for the job: it will never run.
func (f *Fleet) JobGone(ctx context.Context, id int64) error {
	_, err := ignoreUnchanged(f.updateJob(ctx, id, func(j *JobRecord) error {
		if j.Gone {
			return ErrUnchanged
		}
		j.Gone = true
		return nil
	}))
	return err
}

// JobDeadLettered records that the job's spawn was given up, and why.
func (f *Fleet) JobDeadLettered(ctx context.Context, id int64, reason string) error {
	_, err := ignoreUnchanged(f.updateJob(ctx, id, func(j *JobRecord) error {
		j.DeadLettered, j.LastError = true, reason
		return nil
	}))
	return err
}

// JobRetried starts a dead-lettered job afresh: its replacement and attempt counts
// restart, so that the event queued again is not given up at once.
func (f *Fleet) JobRetried(ctx context.Context, id int64) error {
	_, err := ignoreUnchanged(f.updateJob(ctx, id, func(j *JobRecord) error {
		j.DeadLettered, j.Replacements, j.CreateAttempts, j.LastError = false, 0, 0, ""
		return nil
	}))
	return err
}

// AttachRunner adds runner name to the job's runners (idempotent). counted says
// whether it counts against the job's replacement limit when the job had runners
// before. It reports whether the runner was added to a job that had runners before
// (a replacement).
func (f *Fleet) AttachRunner(ctx context.Context, id int64, name string, counted bool) (replacement bool, err error) {
	_, err = ignoreUnchanged(f.updateJob(ctx, id, func(j *JobRecord) error {
		replacement = false
		if slices.Contains(j.Runners, name) {
			return ErrUnchanged
		}
		if len(j.Runners) > 0 {
			replacement = true
			if counted {
				j.Replacements++
			}
		}
		j.Runners = append(j.Runners, name)
		return nil
	}))
	return replacement, err
}

// CarryCreateAttempts keeps on the job the failed creates of runners whose names it
// gave up, so that the next name's attempts count on from there (0 resets).
func (f *Fleet) CarryCreateAttempts(ctx context.Context, id int64, attempts int) error {
	_, err := ignoreUnchanged(f.updateJob(ctx, id, func(j *JobRecord) error {
		if j.CreateAttempts == attempts {
			return ErrUnchanged
		}
		j.CreateAttempts = attempts
		return nil
	}))
	return err
}

// unchangedUnless is ErrUnchanged unless changed.
func unchangedUnless(changed bool) error {
	if changed {
		return nil
	}
	return ErrUnchanged
}

// ignoreUnchanged drops ErrUnchanged: for verbs whose callers only care that the
// record now says what the verb says.
func ignoreUnchanged[T any](v T, err error) (T, error) {
	if errors.Is(err, ErrUnchanged) {
		return v, nil
	}
	return v, err
}
