package consumer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// poolRecheck is how often a pool keeper looks again without a capacity change: the
// capacity watch wakes it on every claim and release, this catches a missed one.
const poolRecheck = 5 * time.Second

// keepPool keeps flavor f's warm pool at f.MinIdle's size (fleet/pool.go), within
// max_runners, until ctx ends: a min_idle_schedule window that opens is seen within
// poolRecheck. Every consumer process runs a keeper for each of its
// flavors: the pool's size is claimed in the capacity record's compare-and-set, so
// several keepers never make the pool larger than min_idle. Creates use work, so a
// create under way at shutdown finishes within StopGrace.
func (c *Consumer) keepPool(ctx, work context.Context, f *Flavor) {
	logger := c.logger.With(logkey.Flavor, f.Name)
	failures := 0
	for ctx.Err() == nil {
		changed := c.freed[f.Name].wait()
		made, failed := c.fillPool(ctx, work, f, logger)
		wait := poolRecheck
		switch {
		case failed > 0:
			// A backend that fails every create must not be hammered: back off as a
			// job's create would, and try again.
			failures++
			wait = c.backoff(failures)
			changed = nil
		case made > 0:
			failures = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(wait):
		}
	}
}

// fillPool starts the pool runners the flavor lacks, at most Workers at a time,
// and waits for their creates. It returns how many were made and how many failed.
func (c *Consumer) fillPool(ctx, work context.Context, f *Flavor, logger *slog.Logger) (made, failed int) {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	capRec, err := c.fleet.Capacity(octx, f.Name)
	cancel()
	if err != nil {
		logger.Debug("capacity unreadable; the pool is looked at again soon", logkey.Error, err)
		return 0, 0
	}
	size, target := capRec.PoolSize(), f.MinIdle.At(c.opts.Now())
	c.metrics.poolRunners.WithLabelValues(f.Name).Set(float64(size))
	c.metrics.poolTarget.WithLabelValues(f.Name).Set(float64(target))
	if size >= target || c.opts.Now().Before(capRec.PausedUntil) {
		// A pool larger than its target (a window closed) is the janitor's to
		// reap, after idle_ttl.
		return 0, 0
	}
	// A spare (a runner whose job was served by another) is up already: it joins the
	// pool before any new runner is made for it.
	for range target - size {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		name, err := c.fleet.SpareIntoPool(octx, f.Name, target)
		cancel()
		if err != nil || name == "" {
			break
		}
		size++
		logger.Info("spare runner taken into the pool", logkey.Runner, name)
	}
	want := min(target-size, f.MaxRunners-len(capRec.Slots), c.opts.Workers)
	if want <= 0 {
		return 0, 0
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range want {
		wg.Go(func() {
			ok, err := c.warmRunner(ctx, work, f, target, logger)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				failed++
			case ok:
				made++
			}
		})
	}
	wg.Wait()
	return made, failed
}

// poolRunnerName is a new pool runner's name: deployment, flavor, "pool" and a
// random suffix (a pool runner has no job to name it by; the name is never reused).
func poolRunnerName(deploymentID, flavor string) string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics if it could)
	return deploymentID + "-" + flavor + "-pool-" + hex.EncodeToString(b[:])
}

// warmRunner claims a pool slot, within a pool of target, and creates one pool
// runner. ok false with a nil error: the pool or the flavor was full by the time it
// claimed.
func (c *Consumer) warmRunner(ctx, work context.Context, f *Flavor, target int, logger *slog.Logger) (ok bool, err error) {
	name := poolRunnerName(c.opts.DeploymentID, f.Name)
	logger = logger.With(logkey.Runner, name)
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	claimed, err := c.fleet.ClaimPool(octx, f.Name, name, target, f.MaxRunners)
	if errors.Is(err, fleet.ErrFlavorPaused) || (err == nil && !claimed) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim a pool slot: %w", err)
	}
	token, hash := bootstrap.NewToken()
	now := c.opts.Now()
	err = c.fleet.StartPoolCreate(octx, &fleet.RunnerRecord{
		Name: name, Flavor: f.Name, Backend: f.BackendName,
		TokenHash: hash, TokenExpires: now.Add(f.BootTimeout), CreatingUntil: now.Add(CreateLease),
	})
	if err != nil {
		if uerr := c.fleet.Unclaim(octx, f.Name, name); uerr != nil {
			logger.Warn("pool slot not released; the janitor will", logkey.Error, uerr)
		}
		return false, err
	}
	rendered, err := bootstrap.Render(bootstrap.Spec{URL: c.opts.BootstrapURL, CACert: c.opts.BootstrapCA, RunnerName: name, Flavor: f.Name, Token: token, Runner: f.Runner})
	if err != nil {
		return false, c.poolCreateFailed(work, f, name, fmt.Errorf("%w: %v", backends.ErrBadSpec, err), logger)
	}
	spec := backends.InstanceSpec{Name: name, Flavor: f.Name, UserData: rendered.UserData, Script: rendered.Script, Env: rendered.Env}
	inst, _, err := c.createInstance(work, f, spec, false, logger)
	if err != nil {
		c.metrics.poolCreates.WithLabelValues(f.Name, "error").Inc()
		return false, c.poolCreateFailed(work, f, name, err, logger)
	}
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(work), 10*time.Second)
	defer wcancel()
	if err := c.fleet.Created(wctx, name, inst.ID); err != nil {
		logger.Warn("pool instance created but its record was not updated", logkey.Error, err)
	}
	c.metrics.poolCreates.WithLabelValues(f.Name, "ok").Inc()
	logger.Info("pool runner created", logkey.Instance, inst.ID, logkey.Backend, f.BackendName)
	return true, nil
}

// poolCreateFailed ends a pool runner whose create failed: a pool runner is not
// retried under its name (the keeper makes another), so the record fails at once,
// its slot is released when nothing of it is left, and a job that adopted it while
// it was being created asks for another runner. It returns cerr, wrapped.
func (c *Consumer) poolCreateFailed(ctx context.Context, f *Flavor, name string, cerr error, logger *slog.Logger) error {
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	c.settleFailedCreate(ctx, octx, f, name, fleet.CreateFailure{Attempts: 1, Err: cerr, GiveUp: true}, logger)
	if rec, err := c.fleet.Runner(octx, name); err == nil && rec.ForJob != 0 && rec.TookJob == 0 {
		c.needsRunner(octx, rec.ForJob, name, queue.ReplaceLost, logger)
	}
	logger.Warn("pool runner create failed; the pool keeper backs off and tries another", logkey.Error, cerr)
	return fmt.Errorf("create pool runner %s: %w", name, cerr)
}
