package queue

import (
	"context"
	"time"
)

// RequestReplacement asks for another runner for a job that still waits and has no
// runner of its own left (its runner was taken by another job, died, or was flushed):
// it publishes a replacement queued event, numbered by the job's runner count so that
// two triggers for the same loss are stored once. The consumer then adopts a spare
// or spawns. It returns the event it published, or nil when the job needs none (no
// longer queued, gone, dead-lettered, or it still has an untaken runner).
func (c *Conn) RequestReplacement(ctx context.Context, st *State, jobID int64, reason string, now time.Time) (*JobEvent, PublishResult, error) {
	job, err := st.Job(ctx, jobID)
	if err != nil || job.State != JobQueued || job.Gone || job.DeadLettered {
		return nil, PublishResult{}, nil
	}
	for _, name := range job.Runners {
		r, err := st.Runner(ctx, name)
		if err == nil && r.ForJob == jobID && r.Untaken() && !r.Spare {
			return nil, PublishResult{}, nil // it still has one
		}
	}
	ev := &JobEvent{
		ReceivedAt: now.UTC(), Source: SourceReplacement, Action: ActionQueued,
		JobID: job.ID, RunID: job.RunID, RunAttempt: job.RunAttempt, Repo: job.Repo,
		Labels: job.Labels, Flavor: job.Flavor, Replacement: len(job.Runners), ReplacementReason: reason,
	}
	res, err := c.PublishJobEvent(ctx, ev)
	if err != nil {
		return nil, res, err
	}
	return ev, res, nil
}
