package fleet

import (
	"context"
	"errors"
	"fmt"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// A flavor's warm pool is the runners started before any job asked for them
// (flavors[].min_idle), so that the next jobs find one registered and idle. A pool
// runner is a spare from birth: its record has Pool and Spare set and no job, it is
// in the spare index, and the next job of its flavor adopts it (Adopt) or GitHub
// gives it a job directly. Its capacity slot is marked Pool until it takes a job
// (Busy), so that the count of pool slots, read and claimed in the same
// compare-and-set as the flavor's max_runners, is what keeps the pool at its size
// across every consumer process, with no leader.

// PoolSize is the number of the flavor's runners that were started for the pool and
// have not taken a job yet (idle, booting, or still being created).
func (r *CapacityRecord) PoolSize() int {
	n := 0
	for _, s := range r.Slots {
		if s.Pool {
			n++
		}
	}
	return n
}

// ClaimPool takes a slot for a new pool runner name if the flavor's pool has fewer
// than minIdle runners and the flavor fewer than max. false: the pool is full, or
// the flavor is (jobs' runners come first: the pool never waits for a slot);
// ErrFlavorPaused: a flush holds new runners back.
func (f *Fleet) ClaimPool(ctx context.Context, flavor, name string, minIdle, max int) (bool, error) {
	claimed, paused := false, false
	err := f.updateCapacity(ctx, flavor, func(rec *CapacityRecord) error {
		claimed, paused = false, false
		if f.now().Before(rec.PausedUntil) {
			paused = true
			return ErrUnchanged
		}
		if len(rec.Slots) >= max || rec.PoolSize() >= minIdle {
			return ErrUnchanged
		}
		rec.Slots[name] = Slot{Pool: true, Since: f.now().UTC()}
		claimed = true
		return nil
	})
	if err != nil {
		return false, err
	}
	if paused {
		return false, fmt.Errorf("claim pool runner %s for %s: %w by a flush", name, flavor, ErrFlavorPaused)
	}
	return claimed, nil
}

// StartPoolCreate stores the record of a new pool runner (state creating, holding
// the create lease until rec.CreatingUntil) and puts it in the spare index, so that
// a job arriving while it is created adopts it rather than spawning another. rec's
// Pool, Spare and ForJob are set here.
func (f *Fleet) StartPoolCreate(ctx context.Context, rec *RunnerRecord) error {
	now := f.now().UTC()
	rec.State, rec.Pool, rec.Spare, rec.ForJob = RunnerCreating, true, true, 0
	rec.CreatedAt, rec.UpdatedAt = now, now
	if err := f.runners.Create(ctx, rec.Name, rec); err != nil {
		return fmt.Errorf("create pool runner %s: %w", rec.Name, err)
	}
	if err := f.addSpare(ctx, rec.Flavor, rec.Name, 0); err != nil {
		// Spare on its record all the same: GitHub may still give it a job, and the
		// janitor keeps the pool's count.
		f.logger.Warn("pool runner not indexed: jobs spawn instead of adopting it", logkey.Runner, rec.Name, logkey.Error, err)
	}
	return nil
}

// leftPool marks the capacity slot of a pool runner that took a job as an ordinary
// one, so that the pool is refilled. A failure leaves the pool counted one too
// large until the runner's slot is released when its instance goes.
func (f *Fleet) leftPool(ctx context.Context, flavor, name string, job int64) {
	err := f.updateCapacity(ctx, flavor, func(rec *CapacityRecord) error {
		s, held := rec.Slots[name]
		if !held || !s.Pool {
			return ErrUnchanged
		}
		rec.Slots[name] = Slot{Job: job, Since: s.Since}
		return nil
	})
	if err != nil {
		f.logger.Warn("pool slot not released to the job: the pool refills when the runner goes", logkey.Runner, name, logkey.Error, err)
	}
}

// SpareIntoPool takes one of the flavor's spares (a runner whose job no longer needs
// it) into the warm pool when the pool has fewer than minIdle runners, so that the
// pool is refilled by a runner already up rather than by a new one. It returns the
// runner's name, or "" when there was no spare to take or the pool is full.
func (f *Fleet) SpareIntoPool(ctx context.Context, flavor string, minIdle int) (string, error) {
	spares, err := f.Spares(ctx, flavor)
	if err != nil {
		return "", err
	}
	for name := range spares {
		_, err := f.updateRunner(ctx, name, func(r *RunnerRecord) error {
			if !r.Spare || !r.Untaken() || r.Pool {
				return ErrUnchanged
			}
			r.Pool, r.ForJob = true, 0
			return nil
		})
		if err != nil {
			continue // not a spare any more, or a pool runner already
		}
		full := false
		err = f.updateCapacity(ctx, flavor, func(c *CapacityRecord) error {
			full = false
			s, held := c.Slots[name]
			if !held || s.Pool {
				return ErrUnchanged
			}
			if c.PoolSize() >= minIdle {
				full = true
				return ErrUnchanged
			}
			c.Slots[name] = Slot{Pool: true, Since: s.Since}
			return nil
		})
		if err != nil || full {
			// Back to an ordinary spare: its slot does not count in the pool.
			if _, uerr := f.updateRunner(ctx, name, func(r *RunnerRecord) error {
				if !r.Pool {
					return ErrUnchanged
				}
				r.Pool = false
				return nil
			}); uerr != nil && !errors.Is(uerr, ErrUnchanged) {
				f.logger.Warn("runner left marked as in the pool; the janitor reaps it after idle_ttl beyond min_idle", logkey.Runner, name, logkey.Error, uerr)
			}
			return "", err
		}
		// It may have taken a job between the two writes: then it leaves the pool
		// again (Busy saw it marked, but not yet its slot).
		if now, err := f.Runner(ctx, name); err == nil && now.TookJob != 0 {
			f.leftPool(ctx, flavor, name, now.TookJob)
			continue
		}
		return name, nil
	}
	return "", nil
}
