package janitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// LeaseName is the lease the active janitor holds: the one control's requests reach.
const LeaseName = control.JanitorLease

// Lease timing, against the bucket's TTL (queue.LeaseTTL, 15 s): renew every 3 s,
// give each renewal at most 3 s, and stop acting at the first failure. The last
// successful renewal then dates from at most 6 s before stopping, so this janitor
// has stopped at least 9 s before anyone else could take the lease.
var (
	renewEvery   = queue.LeaseTTL() / 5
	renewTimeout = queue.LeaseTTL() / 5
	// standbyRetry is how often a standby tries to take a lease that expired
	// silently (a released lease wakes it at once through the watch).
	standbyRetry = time.Second
)

// Janitor reconciles, flushes and recovers lost webhooks while it holds the lease.
type Janitor struct {
	opts      Options
	fleet     *fleet.Fleet
	logger    *slog.Logger
	flavors   map[string]*Flavor
	names     []string // flavor names, sorted
	protected map[string]bool
	metrics   *metrics
	active    atomic.Bool

	// workMu keeps a reconcile pass and a flush's removals from interleaving.
	workMu sync.Mutex
	// marks remembers suspects (orphans and the like) from earlier passes of this
	// term: key → the pass that first saw it and when. Guarded by workMu.
	marks map[string]mark
	pass  int
}

// mark is when a suspect was first seen.
type mark struct {
	pass int
	at   time.Time
}

// New builds a Janitor. It panics on a wiring mistake (nil Conn, State or GitHub) and
// returns Validate's problems.
func New(opts Options) (*Janitor, error) {
	if opts.Conn == nil || opts.State == nil || opts.Fleet == nil || opts.GitHub == nil {
		panic("janitor: New needs Conn, State, Fleet and GitHub")
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("janitor options: %w", err)
	}
	opts.Flavors = slices.Clone(opts.Flavors)
	opts.defaults()
	j := &Janitor{
		opts:      opts,
		fleet:     opts.Fleet.WithClock(opts.Now),
		logger:    opts.Logger.With(logkey.Component, "janitor", "janitor", opts.ID),
		flavors:   map[string]*Flavor{},
		protected: map[string]bool{},
		metrics:   newMetrics(opts.Registerer),
		marks:     map[string]mark{},
	}
	for i := range j.opts.Flavors {
		f := &j.opts.Flavors[i]
		j.flavors[f.Name] = f
		j.names = append(j.names, f.Name)
	}
	slices.Sort(j.names)
	for _, n := range opts.ProtectedRunners {
		j.protected[n] = true
	}
	return j, nil
}

// ID is this janitor's lease holder id.
func (j *Janitor) ID() string { return j.opts.ID }

// Active reports whether this janitor holds the lease and acts now.
func (j *Janitor) Active() bool { return j.active.Load() }

// Run stands by, takes the lease when it is free and acts while it holds it, until
// ctx ends. On return every goroutine it started has stopped and, if it was active,
// the lease is released so a standby takes over at once.
func (j *Janitor) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wake := make(chan struct{}, 1)
	wg.Go(func() { j.watchLease(ctx, wake) })
	logged := ""
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, renewTimeout)
		lease, err := j.opts.State.AcquireLease(actx, LeaseName, j.opts.ID)
		cancel()
		switch {
		case err == nil:
			logged = ""
			j.lead(ctx, lease)
			continue // try again at once: a lost lease may still be ours to retake
		case errors.Is(err, queue.ErrLeaseHeld):
			if holder, _ := j.opts.State.LeaseHolder(ctx, LeaseName); holder != logged {
				logged = holder
				j.logger.Info("janitor standing by", "active", holder)
			}
		case ctx.Err() == nil:
			j.logger.Warn("cannot read the janitor lease; retrying", logkey.Error, err)
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-time.After(standbyRetry + rand.N(standbyRetry/4)):
		}
	}
	return nil
}

// watchLease wakes a standby as soon as the lease is written or released.
func (j *Janitor) watchLease(ctx context.Context, wake chan<- struct{}) {
	for ctx.Err() == nil {
		err := j.opts.State.WatchLease(ctx, LeaseName, func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
		if ctx.Err() != nil {
			return
		}
		j.logger.Debug("lease watch ended; restarting", logkey.Error, err)
		sleep(ctx, time.Second)
	}
}

// lead acts while the lease holds: it starts the reconcile loop, the control
// subscription, the sweeper and the poller under one context, renews the lease, and
// cancels that context at the first failed renewal (before the lease could expire
// and let another janitor in). It returns once everything it started has stopped.
func (j *Janitor) lead(ctx context.Context, lease *queue.Lease) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctl, err := control.Listen(j.opts.Conn, renewTimeout, j.logger)
	if err != nil {
		// A janitor that cannot take commands must not be the one that gets them.
		j.logger.Warn("cannot subscribe to control commands; giving up the lease", logkey.Error, err)
		j.release(ctx, lease)
		sleep(ctx, standbyRetry)
		return
	}
	j.metrics.lease.WithLabelValues("acquired").Inc()
	j.workMu.Lock()
	j.marks = map[string]mark{} // a new term judges from its own passes
	j.workMu.Unlock()
	j.active.Store(true)
	j.metrics.active.Set(1)
	if f := j.opts.hooks.activeChanged; f != nil {
		f(true)
	}
	j.logger.Info("janitor active")

	var wg sync.WaitGroup
	wg.Go(func() { j.reconcileLoop(actx) })
	wg.Go(func() { ctl.Serve(actx, responder{j}) })
	if j.opts.Hook != nil {
		wg.Go(func() { j.sweepLoop(actx) })
	}
	if len(j.opts.PollRepos) > 0 {
		wg.Go(func() { j.pollLoop(actx) })
	}

	lost := false
	renew := time.NewTicker(renewEvery)
	for actx.Err() == nil {
		select {
		case <-actx.Done():
		case <-renew.C:
			rctx, rcancel := context.WithTimeout(actx, renewTimeout)
			err := j.opts.State.RenewLease(rctx, lease)
			rcancel()
			if err != nil && ctx.Err() == nil {
				lost = true
				j.metrics.lease.WithLabelValues("lost").Inc()
				j.logger.Warn("janitor lease not renewed; standing down", logkey.Error, err)
				cancel()
			}
		}
	}
	renew.Stop()
	cancel()
	wg.Wait()
	j.active.Store(false)
	j.metrics.active.Set(0)
	if f := j.opts.hooks.activeChanged; f != nil {
		f(false)
	}
	if !lost {
		j.release(ctx, lease)
	}
	j.logger.Info("janitor stopped acting", "lease_lost", lost)
}

// release gives the lease back after a clean stop. It must run although ctx ended.
func (j *Janitor) release(ctx context.Context, lease *queue.Lease) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), renewTimeout)
	defer cancel()
	if err := j.opts.State.ReleaseLease(rctx, lease); err != nil {
		j.logger.Warn("janitor lease not released; it expires on its own", logkey.Error, err)
		return
	}
	j.metrics.lease.WithLabelValues("released").Inc()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
