// Package consumer turns queued jobs into single-use runners: for each flavor it
// serves, it takes job events from a durable JetStream consumer shared by every
// replica, keeps the job and runner records, respects the flavor's capacity across
// all replicas, spawns one instance per job through the flavor's backend, replaces
// runners that GitHub gave to another job, and deletes an instance as soon as its
// job is done.
//
// It must not serve HTTP or talk to GitHub beyond checking a job's status: minting
// runner configs is the bootstrap endpoint's work, reconciling leftovers the
// janitor's.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/poolschedule"
	"github.com/runner-spawner/runner-spawner/queue"
)

// GitHub is what the consumer asks GitHub: whether a job is still queued.
type GitHub interface {
	GetJob(ctx context.Context, repo string, jobID int64) (github.Job, error)
}

// Flavor is one flavor this consumer serves.
type Flavor struct {
	Name        string
	MaxRunners  int
	Backend     backends.Backend
	BackendName string
	Runner      bootstrap.RunnerSettings
	// BootTimeout bounds how long a runner may take to fetch its config; the
	// bootstrap token expires with it.
	BootTimeout time.Duration
	// MinIdle is the warm pool's size over time: runners kept started, registered
	// and idle before any job asks for them, within MaxRunners (zero value: no pool).
	MinIdle poolschedule.Schedule
}

// Options configures a Consumer.
type Options struct {
	Conn *queue.Conn
	// Fleet is the job and runner records and their verbs; the consumer uses it
	// with its own clock (Now).
	Fleet        *fleet.Fleet
	GitHub       GitHub // nil: jobs are never checked with GitHub
	Flavors      []Flavor
	DeploymentID string
	// BootstrapURL is the spawner's bootstrap endpoint as instances reach it.
	BootstrapURL string
	// BootstrapCA, with an https BootstrapURL, is the PEM every instance pins the
	// endpoint to (bootstrap.PinPEM's input); empty: the image's own CAs.
	BootstrapCA []byte
	// Workers per flavor in this process.
	Workers int
	// VerifyAge: a job event older than this (or redelivered) is checked with GitHub
	// before a runner is spawned for it.
	VerifyAge time.Duration
	// MaxAttempts of a failing instance create before the job is dead-lettered.
	MaxAttempts    int
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	// CapacityWait is how long a worker holds a job while its flavor is full,
	// claiming the first slot that frees; after that the job goes back to the queue
	// for CapacityRetry, so a worker is never blocked for long.
	CapacityWait  time.Duration
	CapacityRetry time.Duration
	// MaxReplacements is how many more runners a job gets after its runner was taken
	// by another job (0: the default, 3; negative: none).
	MaxReplacements int
	// CreateTimeout bounds one backend create.
	CreateTimeout time.Duration
	// AckWait is JetStream's redelivery timeout for an unacknowledged event.
	AckWait time.Duration
	// StopGrace bounds how long Run keeps finishing work once ctx ends: the events
	// being handled and the instances of finished runners queued for deletion. What
	// is not done by then stays as the records say (a finished runner whose instance
	// is not deleted, a create under its lease, an event not acked), which the
	// janitor reaps and JetStream redelivers; Run logs it once, with a count, and
	// returns without waiting for NATS, the cloud or GitHub. 0: 20 s.
	StopGrace  time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

func (o *Options) defaults() {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.VerifyAge <= 0 {
		o.VerifyAge = 2 * time.Minute
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.BackoffInitial <= 0 {
		o.BackoffInitial = 2 * time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 2 * time.Minute
	}
	if o.CapacityWait <= 0 {
		o.CapacityWait = 5 * time.Second
	}
	if o.CapacityRetry <= 0 {
		o.CapacityRetry = 5 * time.Second
	}
	switch {
	case o.MaxReplacements == 0:
		o.MaxReplacements = 3
	case o.MaxReplacements < 0:
		o.MaxReplacements = 0
	}
	if o.CreateTimeout <= 0 {
		o.CreateTimeout = 5 * time.Minute
	}
	if o.AckWait <= 0 {
		o.AckWait = time.Minute
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 20 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Consumer runs the workers of every flavor it serves.
type Consumer struct {
	opts    Options
	fleet   *fleet.Fleet
	logger  *slog.Logger
	flavors map[string]*Flavor
	metrics *metrics
	cleanup chan string
	freed   map[string]*notifier // per flavor: a capacity slot changed
	// deleting holds the runners whose instance this process is deleting now: the
	// job_finished callback and the completed event both ask for it.
	deleting sync.Map
	// handling counts the events being handled now, and abandoned the finished
	// runners whose delete a shutdown cut short: what Run reports left for the
	// janitor when StopGrace ends.
	handling  atomic.Int64
	abandoned atomic.Int64
	// naks remembers the queued events this process put back for a later retry, so
	// that their redelivery is not taken for a crash's (spawn.go, untrusted).
	naks ownNaks
}

// New builds a Consumer; it panics on a wiring mistake (a nil dependency).
func New(opts Options) (*Consumer, error) {
	if opts.Conn == nil || opts.Fleet == nil {
		panic("consumer: New needs Conn and Fleet")
	}
	opts.defaults()
	c := &Consumer{
		opts:    opts,
		fleet:   opts.Fleet.WithClock(opts.Now),
		logger:  opts.Logger,
		flavors: map[string]*Flavor{},
		metrics: newMetrics(opts.Registerer),
		// Deletions run in the background; a full queue only delays them to the
		// janitor's next pass.
		cleanup: make(chan string, 4096),
		freed:   map[string]*notifier{},
	}
	for i := range opts.Flavors {
		f := &opts.Flavors[i]
		if f.Backend == nil || f.MaxRunners < 1 || f.Name == "" {
			return nil, fmt.Errorf("consumer: flavor %q needs a backend and max_runners ≥ 1", f.Name)
		}
		if f.MinIdle.Max() > f.MaxRunners {
			return nil, fmt.Errorf("consumer: flavor %q: min_idle %d (at most, over its schedule) must not exceed max_runners %d", f.Name, f.MinIdle.Max(), f.MaxRunners)
		}
		if f.BootTimeout <= 0 {
			f.BootTimeout = 10 * time.Minute
		}
		c.flavors[f.Name] = f
		c.freed[f.Name] = newNotifier()
	}
	if opts.BootstrapURL == "" {
		return nil, errors.New("consumer: no bootstrap URL")
	}
	if err := bootstrap.CheckEndpoint(opts.BootstrapURL, opts.BootstrapCA); err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	return c, nil
}

// Finished tells the consumer that a runner's job finished, so its instance is
// deleted now. It never blocks.
func (c *Consumer) Finished(runnerName string) {
	select {
	case c.cleanup <- runnerName:
	default:
		c.logger.Warn("cleanup queue full; the janitor will delete the instance", logkey.Runner, runnerName)
	}
}

// cleanupWorkers is how many finished runners' instances are deleted at once.
const cleanupWorkers = 16

// errStopGrace ends the work a shutdown lets finish: StopGrace has passed.
var errStopGrace = errors.New("consumer: stop grace over")

// stopSlack is how long Run still waits, after StopGrace, for its goroutines to see
// their context end: long enough for calls that obey it, too short to matter.
const stopSlack = 500 * time.Millisecond

// Run consumes until ctx is cancelled, then stops fetching, finishes (or hands back)
// the events it holds and the deletes queued, within StopGrace, and returns.
func (c *Consumer) Run(ctx context.Context) error {
	// Work started before the shutdown may finish, but no longer than StopGrace:
	// with NATS or the cloud gone every call would otherwise run to its own timeout,
	// one after another.
	work, stopWork := afterGrace(ctx, c.opts.StopGrace)
	defer stopWork()
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(c.flavors)+1)
	for _, f := range c.flavors {
		wg.Go(func() { errs <- c.consume(ctx, work, spawnConsumer(f.Name), f, c.opts.Workers, c.handleQueued) })
		wg.Go(func() { errs <- c.consume(ctx, work, eventsConsumer(f.Name), f, c.opts.Workers, c.handleEvent) })
	}
	for name, n := range c.freed {
		wg.Go(func() { c.watchCapacity(ctx, name, n) })
	}
	for _, f := range c.flavors {
		if f.MinIdle.Max() > 0 {
			wg.Go(func() { c.keepPool(ctx, work, f) })
		}
	}
	// Cleanup workers finish what is queued before they stop, within StopGrace. A
	// delete is mostly waiting (for an ephemeral instance to go by itself, for a
	// cloud to remove a server) and each backend bounds its own calls in flight, so
	// there are enough workers that finished runners never queue behind the waits.
	for range cleanupWorkers {
		wg.Go(func() { c.cleanupLoop(ctx, work) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-work.Done():
		select {
		case <-done:
		case <-time.After(stopSlack):
		}
	}
	if ctx.Err() != nil {
		c.reportLeft()
	}
	var all []error
	for {
		select {
		case err := <-errs:
			if err != nil && !errors.Is(err, context.Canceled) {
				all = append(all, err)
			}
			continue
		default:
		}
		break
	}
	return errors.Join(all...)
}

// reportLeft logs, once, what this stopping consumer leaves for the janitor (and for
// JetStream's redelivery): finished runners whose instance it did not delete, and
// events still being handled. One line with counts, however many there are: with
// NATS gone, a line per runner would be the whole log.
func (c *Consumer) reportLeft() {
	finished := c.abandoned.Load() + int64(len(c.cleanup))
	c.deleting.Range(func(any, any) bool { finished++; return true })
	events := c.handling.Load()
	if finished+events == 0 {
		return
	}
	c.logger.Warn("shutdown_timeout reached; left for the janitor", "count", finished+events,
		"finished_runners", finished, "events_in_flight", events)
}

// afterGrace is a context that ends grace after ctx ends (or when stop is called),
// so that work started before a shutdown may finish, within a bound.
func afterGrace(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	work, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel(errStopGrace)
		case <-work.Done():
		}
	})
	return work, func() { stop(); cancel(context.Canceled) }
}

type consumerSpec struct {
	name    string
	filters []string
}

func spawnConsumer(flavor string) consumerSpec {
	return consumerSpec{name: "spawn_" + flavor, filters: []string{queue.JobSubject(flavor, queue.ActionQueued)}}
}

func eventsConsumer(flavor string) consumerSpec {
	return consumerSpec{name: "events_" + flavor, filters: []string{
		queue.JobSubject(flavor, queue.ActionWaiting),
		queue.JobSubject(flavor, queue.ActionInProgress),
		queue.JobSubject(flavor, queue.ActionCompleted),
	}}
}

type handler func(ctx context.Context, f *Flavor, msg jetstream.Msg)

// consume feeds one durable consumer's messages to workers. On shutdown it stops
// pulling, hands back what it fetched but did not start (nak, so another replica
// takes it at once) and waits for the workers to finish what they started, as long as
// workCtx lasts.
func (c *Consumer) consume(ctx, workCtx context.Context, spec consumerSpec, f *Flavor, workers int, handle handler) error {
	logger := c.logger.With(logkey.Flavor, f.Name, "consumer", spec.name)
	// Work started before shutdown should finish: handlers get workCtx, which is not
	// cancelled with ctx but StopGrace after it (each operation inside has its own
	// timeout too).
	backoff := time.Second
	for ctx.Err() == nil {
		cons, err := c.opts.Conn.JobConsumer(ctx, queue.JobConsumerSpec{
			Name: spec.name, Description: "runner-spawner consumer of " + f.Name,
			Filters: spec.filters, AckWait: c.opts.AckWait,
		})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			logger.Warn("cannot create the JetStream consumer; retrying", logkey.Error, err)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		if err := c.pump(ctx, workCtx, cons, f, workers, handle, logger); err != nil && ctx.Err() == nil {
			logger.Warn("message loop stopped; restarting", logkey.Error, err)
			sleep(ctx, time.Second)
		}
	}
	return ctx.Err()
}

func (c *Consumer) pump(ctx, workCtx context.Context, cons jetstream.Consumer, f *Flavor, workers int, handle handler, logger *slog.Logger) error {
	iter, err := cons.Messages(jetstream.PullMaxMessages(workers))
	if err != nil {
		return fmt.Errorf("pull messages: %w", err)
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			iter.Drain()
		case <-stopped:
			return
		}
		// A drain waits for the pull in flight, which NATS may never answer.
		select {
		case <-workCtx.Done():
			iter.Stop()
		case <-stopped:
		}
	}()
	msgs := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for m := range msgs {
				c.handling.Add(1)
				handle(workCtx, f, m)
				c.handling.Add(-1)
			}
		})
	}
	var loopErr error
	for {
		m, err := iter.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			break
		}
		if err != nil {
			// Missed heartbeats and the like: the iterator recovers on its own.
			logger.Debug("message iterator", logkey.Error, err)
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				loopErr = err
				iter.Stop()
				break
			}
			continue
		}
		if ctx.Err() != nil {
			_ = m.Nak()
			continue
		}
		select {
		case msgs <- m:
		case <-ctx.Done():
			_ = m.Nak()
		}
	}
	close(stopped)
	close(msgs)
	wg.Wait()
	return loopErr
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// RunnerName is the deterministic name of a job's n-th runner: deployment, flavor,
// job, index. The same job and index always give the same name, so a resumed create
// finds what a crashed one made.
func RunnerName(deploymentID, flavor string, jobID int64, n int) string {
	return deploymentID + "-" + flavor + "-" + strconv.FormatInt(jobID, 10) + "-" + strconv.Itoa(n)
}

// settled logs a failed ack, nak or term once, at debug: nothing is lost by it. An
// event not acked comes back after AckWait and is handled again, idempotently; a nak
// or term that did not reach the server is the same as no answer.
func settled(logger *slog.Logger, what string, err error) {
	if err != nil {
		logger.Debug(what+" not delivered; the event comes back after ack_wait", logkey.Error, err)
	}
}
