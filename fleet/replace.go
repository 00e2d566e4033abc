package fleet

import (
	"context"

	"github.com/runner-spawner/runner-spawner/queue"
)

// Replace asks for another runner for a job that still waits and has no runner of
// its own left: its runner lost was taken by another job, died, or was flushed. It
// publishes a replacement queued event keyed by the job and lost, so that two
// triggers for the same loss are stored once and two losses never are. The consumer
// then adopts a spare or spawns. It returns the event it published, or nil when the
// job needs none (no longer queued, gone, dead-lettered, or it still has an untaken
// runner).
func (f *Fleet) Replace(ctx context.Context, jobID int64, lost, reason string) (*queue.JobEvent, queue.PublishResult, error) {
	return f.replace(ctx, jobID, lost, reason, false)
}

// Rescue is Replace for a job found waiting long after its loss (by the janitor, for
// a request that was never stored): the event carries when the job was queued, so
// that the consumer checks with GitHub, as for any event old on arrival, before it
// spends a runner on a job whose end we may have missed.
func (f *Fleet) Rescue(ctx context.Context, jobID int64, lost, reason string) (*queue.JobEvent, queue.PublishResult, error) {
	return f.replace(ctx, jobID, lost, reason, true)
}

func (f *Fleet) replace(ctx context.Context, jobID int64, lost, reason string, old bool) (*queue.JobEvent, queue.PublishResult, error) {
	job, err := f.Job(ctx, jobID)
	if err != nil || job.State != JobQueued || job.Gone || job.DeadLettered {
		// No record (or none readable now): nothing to replace. The janitor's pass
		// finds a job that waits without a runner (janitor/orphans.go).
		return nil, queue.PublishResult{}, nil
	}
	for _, name := range job.Runners {
		r, err := f.Runner(ctx, name)
		if err == nil && r.ForJob == jobID && r.Untaken() && !r.Spare {
			return nil, queue.PublishResult{}, nil // it still has one
		}
	}
	ev := &queue.JobEvent{
		ReceivedAt: f.now().UTC(), Source: queue.SourceReplacement, Action: queue.ActionQueued,
		JobID: job.ID, RunID: job.RunID, RunAttempt: job.RunAttempt, Repo: job.Repo,
		Labels: job.Labels, Flavor: job.Flavor, Replacement: len(job.Runners), ReplacesRunner: lost, ReplacementReason: reason,
	}
	if old {
		queued := job.QueuedAt
		if queued.IsZero() {
			queued = job.ReceivedAt
		}
		if !queued.IsZero() {
			ev.CreatedAt = &queued
		}
	}
	res, err := f.conn.PublishJobEvent(ctx, ev)
	if err != nil {
		return nil, res, err
	}
	return ev, res, nil
}
