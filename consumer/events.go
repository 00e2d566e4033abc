package consumer

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/runner-spawner/runner-spawner/fleet"
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
		_, err = c.fleet.SeeJob(octx, ev)
	case queue.ActionInProgress:
		err = c.onRunning(octx, ev, false, logger)
	case queue.ActionCompleted:
		err = c.onRunning(octx, ev, true, logger)
	}
	if err != nil {
		logger.Warn("job event not applied; retrying", logkey.Error, err)
		settled(logger, "nak", msg.NakWithDelay(time.Second))
		return
	}
	c.metrics.events.WithLabelValues(f.Name, ev.Action, "applied").Inc()
	settled(logger, "ack", msg.Ack())
}

// ours reports whether a runner name carries this deployment's prefix.
func (c *Consumer) ours(name string) bool {
	return name != "" && strings.HasPrefix(name, c.opts.DeploymentID+"-")
}

// onRunning applies an in_progress or completed (finished) event: the job record,
// then the job's other runners, now spare (a job taken by
// another runner, or cancelled, no longer needs them; marked before any replacement
// is asked for below, so a replacement can adopt one), then the runner that took it.
func (c *Consumer) onRunning(ctx context.Context, ev *queue.JobEvent, finished bool, logger *slog.Logger) error {
	apply := c.fleet.JobStarted
	if finished {
		apply = c.fleet.JobCompleted
	}
	job, err := apply(ctx, ev)
	if err != nil && !errors.Is(err, fleet.ErrUnchanged) {
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
	rec, err := c.fleet.Busy(ctx, name, jobID, finished)
	if errors.Is(err, fleet.ErrNoRecord) {
		return nil // a runner of ours whose record expired or was reaped
	}
	if err != nil {
		return err
	}
	if rec.ForJob != 0 && rec.ForJob != jobID {
		// A job of ours took it: an exchange within the fleet (that job's own runner
		// is spare now, or was never spawned). A job we do not know: a real loss.
		reason := queue.ReplaceStolen
		if taker, err := c.fleet.Job(ctx, jobID); err == nil && taker.Flavor == rec.Flavor {
			reason = queue.ReplaceSwap
		}
		logger.Info("runner taken by another job; its own job needs another runner", logkey.Runner, name, "meant_for", rec.ForJob, "reason", reason)
		c.needsRunner(ctx, rec.ForJob, name, reason, logger)
	}
	if finished {
		c.Finished(name)
	}
	return nil
}

// makeSpare marks a runner meant for jobID, untaken, as spare: the next job of its
// flavor adopts it instead of spawning a new one.
func (c *Consumer) makeSpare(ctx context.Context, name string, jobID int64, logger *slog.Logger) {
	marked, err := c.fleet.Spare(ctx, name, jobID)
	if err != nil {
		// Not spare: it stays meant for its job, and is reaped after idle_ttl.
		logger.Warn("runner not marked spare", logkey.Runner, name, logkey.Error, err)
		return
	}
	if marked {
		logger.Info("runner is spare: its job no longer needs it", logkey.Runner, name)
	}
}

// needsRunner asks for another runner for a still-queued job whose runner lost went
// to another job, by publishing a replacement event: the spawn path then adopts a
// spare or spawns, within the job's replacement limit.
func (c *Consumer) needsRunner(ctx context.Context, jobID int64, lost, reason string, logger *slog.Logger) {
	ev, _, err := c.fleet.Replace(ctx, jobID, lost, reason)
	switch {
	case err != nil:
		logger.Warn("replacement request not stored; the janitor will notice the job", "for_job", jobID, logkey.Error, err)
	case ev != nil:
		logger.Info("replacement runner requested", "for_job", jobID, "replacement", ev.Replacement, "reason", reason)
	}
}
