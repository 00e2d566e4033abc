package consumer

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// handleEvent applies waiting, in_progress and completed events to the records.
func (c *Consumer) handleEvent(ctx context.Context, f *Flavor, msg jetstream.Msg) {
	ev, err := queue.UnmarshalJobEvent(msg.Data())
	if err != nil {
		c.deadLetterRaw(ctx, f, msg, err.Error())
		return
	}
	logger := c.logger.With(logkey.JobID, ev.JobID, logkey.Flavor, f.Name, logkey.Action, ev.Action, logkey.DeliveryID, ev.DeliveryID)
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch ev.Action {
	case queue.ActionWaiting:
		_, err = c.opts.State.UpdateJob(octx, ev.JobID, func(j *queue.JobRecord) error {
			if j.Flavor != "" {
				return queue.ErrSkip
			}
			initJob(j, ev)
			return nil
		})
	case queue.ActionInProgress:
		err = c.onInProgress(octx, ev, logger)
	case queue.ActionCompleted:
		err = c.onCompleted(octx, ev, logger)
	}
	if err != nil && !errors.Is(err, queue.ErrSkip) {
		logger.Warn("job event not applied; retrying", logkey.Error, err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	c.metrics.events.WithLabelValues(f.Name, ev.Action, "applied").Inc()
	_ = msg.Ack()
}

// ours reports whether a runner name carries this deployment's prefix.
func (c *Consumer) ours(name string) bool {
	return name != "" && strings.HasPrefix(name, c.opts.DeploymentID+"-")
}

func (c *Consumer) onInProgress(ctx context.Context, ev *queue.JobEvent, logger *slog.Logger) error {
	now := c.opts.Now().UTC()
	return c.onRunning(ctx, ev, false, logger, func(j *queue.JobRecord) bool {
		changed := j.State.Advance(queue.JobInProgress)
		if ev.RunnerName != "" && j.TakenBy != ev.RunnerName {
			j.TakenBy = ev.RunnerName
			changed = true
		}
		if j.StartedAt.IsZero() {
			j.StartedAt = now
			changed = true
		}
		return changed
	})
}

func (c *Consumer) onCompleted(ctx context.Context, ev *queue.JobEvent, logger *slog.Logger) error {
	now := c.opts.Now().UTC()
	return c.onRunning(ctx, ev, true, logger, func(j *queue.JobRecord) bool {
		changed := j.State.Advance(queue.JobCompleted)
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
		return changed
	})
}

// onRunning applies an in_progress or completed event: the job record (edit says
// whether it changed), then the job's other runners, now spare (a job taken by
// another runner, or cancelled, no longer needs them; marked before any replacement
// is asked for below, so a replacement can adopt one), then the runner that took it.
func (c *Consumer) onRunning(ctx context.Context, ev *queue.JobEvent, finished bool, logger *slog.Logger, edit func(*queue.JobRecord) bool) error {
	job, err := c.opts.State.UpdateJob(ctx, ev.JobID, func(j *queue.JobRecord) error {
		if j.Flavor == "" {
			initJob(j, ev)
		}
		if !edit(j) {
			return queue.ErrSkip
		}
		return nil
	})
	if err != nil && !errors.Is(err, queue.ErrSkip) {
		return err
	}
	if job != nil {
		for _, name := range job.Runners {
			if name != ev.RunnerName {
				c.makeSpare(ctx, name, ev.JobID, logger)
			}
		}
	}
	if c.ours(ev.RunnerName) {
		return c.runnerTookJob(ctx, ev.RunnerName, ev.JobID, finished, logger)
	}
	return nil
}

// runnerTookJob records that our runner took jobID (and, when finished, that the job
// is done, which deletes its instance). If the runner was meant for another job,
// that job lost its runner and asks for another.
func (c *Consumer) runnerTookJob(ctx context.Context, name string, jobID int64, finished bool, logger *slog.Logger) error {
	now := c.opts.Now().UTC()
	wasSpare := false
	rec, err := c.opts.State.UpdateRunner(ctx, name, func(r *queue.RunnerRecord) error {
		changed := false
		wasSpare = r.Spare
		if r.TookJob == 0 {
			r.TookJob = jobID
			r.Spare = false
			changed = true
		}
		if r.State.Advance(queue.RunnerBusy) {
			r.BusyAt = now
			changed = true
		}
		if finished && r.State.Advance(queue.RunnerFinished) {
			r.FinishedAt = now
			changed = true
		}
		if !changed {
			return queue.ErrSkip
		}
		return nil
	})
	if errors.Is(err, queue.ErrNoRecord) {
		return nil // a runner of ours whose record expired or was reaped
	}
	if errors.Is(err, queue.ErrSkip) {
		rec, err = c.opts.State.Runner(ctx, name)
	}
	if err != nil {
		return err
	}
	if wasSpare {
		if err := c.opts.State.RemoveSpare(ctx, rec.Flavor, name); err != nil {
			logger.Debug("spare index not updated", logkey.Error, err)
		}
	}
	if rec.ForJob != 0 && rec.ForJob != jobID {
		// A job of ours took it: an exchange within the fleet (that job's own runner
		// is spare now, or was never spawned). A job we do not know: a real loss.
		reason := queue.ReplaceStolen
		if taker, err := c.opts.State.Job(ctx, jobID); err == nil && taker.Flavor == rec.Flavor {
			reason = queue.ReplaceSwap
		}
		logger.Info("runner taken by another job; its own job needs another runner", logkey.Runner, name, "meant_for", rec.ForJob, "reason", reason)
		c.needsRunner(ctx, rec.ForJob, reason, logger)
	}
	if finished {
		c.Finished(name)
	}
	return nil
}

// makeSpare marks a runner meant for jobID, untaken, as spare: the next job of its
// flavor adopts it instead of spawning a new one.
func (c *Consumer) makeSpare(ctx context.Context, name string, jobID int64, logger *slog.Logger) {
	rec, err := c.opts.State.UpdateRunner(ctx, name, func(r *queue.RunnerRecord) error {
		if r.ForJob != jobID || !r.Untaken() || r.Spare {
			return queue.ErrSkip
		}
		r.Spare = true
		return nil
	})
	if err != nil {
		return
	}
	if err := c.opts.State.AddSpare(ctx, rec.Flavor, name, jobID); err != nil {
		logger.Warn("spare not indexed: the next job spawns instead of adopting it", logkey.Runner, name, logkey.Error, err)
	}
	logger.Info("runner is spare: its job no longer needs it", logkey.Runner, name)
}

// needsRunner asks for another runner for a still-queued job whose runner went to
// another job, by publishing a replacement event: the spawn path then adopts a spare
// or spawns, within the job's replacement limit.
func (c *Consumer) needsRunner(ctx context.Context, jobID int64, reason string, logger *slog.Logger) {
	ev, _, err := c.opts.Conn.RequestReplacement(ctx, c.opts.State, jobID, reason, c.opts.Now())
	switch {
	case err != nil:
		logger.Warn("replacement request not stored; the janitor will notice the job", "for_job", jobID, logkey.Error, err)
	case ev != nil:
		logger.Info("replacement runner requested", "for_job", jobID, "replacement", ev.Replacement, "reason", reason)
	}
}
