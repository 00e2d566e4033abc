package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// cleanupLoop deletes the instances of finished runners as they are reported. When
// ctx ends it drains what is queued while work lasts (StopGrace): with NATS or the
// cloud gone each delete would wait for its own timeout, and a backlog of them would
// hold the process for as long. What it could not do stays for the janitor, which
// deletes the instances of finished runners; Run counts it.
func (c *Consumer) cleanupLoop(ctx, work context.Context) {
	for {
		select {
		case name := <-c.cleanup:
			c.deleteFinished(work, name)
		case <-ctx.Done():
			for work.Err() == nil {
				select {
				case name := <-c.cleanup:
					c.deleteFinished(work, name)
				default:
					return
				}
			}
			return
		}
	}
}

// deleteFinished deletes a finished runner's instance, then frees its capacity slot:
// releasing only after the delete keeps instances, not just runners, within
// max_runners.
func (c *Consumer) deleteFinished(ctx context.Context, name string) {
	if _, busy := c.deleting.LoadOrStore(name, true); busy {
		return
	}
	defer c.deleting.Delete(name)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	logger := c.logger.With(logkey.Runner, name)
	rec, err := c.fleet.Runner(ctx, name)
	if err != nil {
		if c.cutShort(ctx) {
			return
		}
		if !errors.Is(err, fleet.ErrNoRecord) {
			logger.Warn("cannot read the finished runner; the janitor will delete it", logkey.Error, err)
		}
		return
	}
	if rec.InstanceDeleted || rec.Protected {
		return
	}
	f := c.flavors[rec.Flavor]
	if f == nil {
		return // another process serves that flavor; it or the janitor deletes it
	}
	// The runner is done and powers its instance off: a backend whose instances go
	// by themselves then (LXD's ephemeral ones) waits for that instead of doing it.
	if err := backends.DeleteFinished(ctx, f.Backend, name); err != nil {
		if c.cutShort(ctx) {
			return
		}
		logger.Warn("instance not deleted; the janitor will retry", logkey.Backend, f.BackendName, logkey.Error, err)
		return
	}
	if _, err := c.fleet.InstanceGone(ctx, rec.Flavor, name, true); err != nil {
		// What is left (the record, the slot) is settled by the janitor, which finds a
		// finished runner whose instance is not listed.
		logger.Warn("instance deleted but not all of its runner settled; the janitor will", logkey.Error, err)
	}
	c.metrics.deleted.WithLabelValues(rec.Flavor).Inc()
	logger.Info("runner finished; instance deleted", "job", rec.TookJob, "exit_code", exitCode(rec))
	if rec.TookJob == 0 && !rec.Spare && rec.BusyAt.IsZero() && rec.ForJob != 0 {
		// It ended without running a job (its registration was removed, the runner
		// crashed): its job still needs one.
		c.needsRunner(ctx, rec.ForJob, name, queue.ReplaceLost, logger)
	}
}

// cutShort reports whether a delete failed because the shutdown's grace ended, and
// counts it for Run's one report instead of a warning per runner.
func (c *Consumer) cutShort(ctx context.Context) bool {
	if !errors.Is(context.Cause(ctx), errStopGrace) {
		return false
	}
	c.abandoned.Add(1)
	return true
}

func exitCode(r *fleet.RunnerRecord) any {
	if r.ExitCode == nil {
		return nil
	}
	return *r.ExitCode
}
