package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// verdict is what happens to a message once handled.
type verdict struct {
	kind   verdictKind
	delay  time.Duration
	label  string // dead-letter metric label
	reason string // dead-letter reason, for operators
}

type verdictKind int

const (
	vAck verdictKind = iota
	vNak
	vDead
)

// Dead-letter labels.
const (
	deadReplacementLimit = "replacement_limit"
	deadBadSpec          = "bad_spec"
	deadCreateFailed     = "create_failed"
)

func ack() verdict                    { return verdict{kind: vAck} }
func retryIn(d time.Duration) verdict { return verdict{kind: vNak, delay: d} }
func deadLetter(label, reason string) verdict {
	return verdict{kind: vDead, label: label, reason: reason}
}

// handleQueued turns one queued event into (at most) one runner.
func (c *Consumer) handleQueued(ctx context.Context, f *Flavor, msg jetstream.Msg) {
	meta, _ := msg.Metadata()
	ev, err := queue.UnmarshalJobEvent(msg.Data())
	if err != nil {
		c.deadLetterRaw(ctx, f, msg, err.Error())
		return
	}
	logger := c.logger.With(logkey.JobID, ev.JobID, logkey.Flavor, f.Name, logkey.DeliveryID, ev.DeliveryID)
	d := delivery{n: 1}
	if meta != nil {
		d.n = meta.NumDelivered
		d.ownRetry = c.naks.take(meta.Sequence.Stream, meta.NumDelivered)
	}
	// Keep the event ours while a create takes long (an LXD VM, a slow cloud).
	stop := keepInProgress(msg, c.opts.AckWait/3)
	v := c.spawn(ctx, f, ev, d, logger)
	stop()
	if v.kind == vNak && meta != nil {
		c.naks.add(meta.Sequence.Stream, meta.NumDelivered, c.opts.Now())
	}
	c.settle(ctx, f, msg, ev, v, logger)
}

// delivery is how JetStream handed over an event: the how-many-th time, and whether
// the time before ended in our own nak (a retry we asked for, not a crash).
type delivery struct {
	n        uint64
	ownRetry bool
}

// ownNaks remembers the events this process naked (stream sequence → the delivery
// that was naked), so that the next delivery of one is known as our own retry. It is
// memory only, on purpose: after a crash it is empty, and a redelivery then counts as
// one after a crash, which is what it is. A retry that another replica picks up is
// checked with GitHub once (its job's VerifiedAt spares the ones after). The zero
// value is ready.
type ownNaks struct {
	mu     sync.Mutex
	m      map[uint64]ownNak
	pruned time.Time
}

type ownNak struct {
	delivered uint64
	at        time.Time
}

// ownNaksKept bounds what ownNaks holds: an entry older than this is forgotten (its
// event went to another replica, or was settled by something else).
const ownNaksKept = time.Hour

func (o *ownNaks) add(seq, delivered uint64, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[uint64]ownNak{}
	}
	if len(o.m) >= 1024 && now.Sub(o.pruned) > time.Minute {
		o.pruned = now
		for k, v := range o.m {
			if now.Sub(v.at) > ownNaksKept {
				delete(o.m, k)
			}
		}
	}
	o.m[seq] = ownNak{delivered: delivered, at: now}
}

// take reports whether delivery delivered of seq follows our own nak of the one
// before, and forgets the nak.
func (o *ownNaks) take(seq, delivered uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, ok := o.m[seq]
	delete(o.m, seq)
	return ok && n.delivered+1 == delivered
}

// settle acks, naks or dead-letters the message.
func (c *Consumer) settle(ctx context.Context, f *Flavor, msg jetstream.Msg, ev *queue.JobEvent, v verdict, logger *slog.Logger) {
	switch v.kind {
	case vAck:
		settled(logger, "ack", msg.Ack())
	case vNak:
		settled(logger, "nak", msg.NakWithDelay(v.delay))
	case vDead:
		c.metrics.deadLetters.WithLabelValues(f.Name, v.label).Inc()
		logger.Error("job dead-lettered: no runner will be spawned for it", "reason", v.reason)
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		meta, _ := msg.Metadata()
		id := fmt.Sprintf("dead-%d-%d", ev.JobID, 0)
		if meta != nil {
			id = fmt.Sprintf("dead-%d-%d", ev.JobID, meta.Sequence.Stream)
		}
		err := c.opts.Conn.PublishDeadLetter(octx, f.Name, id, &queue.DeadLetter{
			Event: ev, Subject: msg.Subject(), Reason: v.reason, At: c.opts.Now().UTC(),
		})
		if err != nil {
			// Not stored as a dead letter: keep the event and try again later.
			logger.Warn("dead letter not stored; retrying later", logkey.Error, err)
			settled(logger, "nak", msg.NakWithDelay(5*time.Second))
			return
		}
		if err := c.fleet.JobDeadLettered(octx, ev.JobID, v.reason); err != nil {
			// The dead letter is stored; only `jobs list` misses the mark.
			logger.Warn("job record not marked dead-lettered", logkey.Error, err)
		}
		settled(logger, "term", msg.Term())
	}
}

func (c *Consumer) deadLetterRaw(ctx context.Context, f *Flavor, msg jetstream.Msg, reason string) {
	c.metrics.deadLetters.WithLabelValues(f.Name, "malformed").Inc()
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	meta, _ := msg.Metadata()
	id := "dead-raw"
	if meta != nil {
		id = fmt.Sprintf("dead-raw-%d", meta.Sequence.Stream)
	}
	logger := c.logger.With(logkey.Flavor, f.Name)
	if err := c.opts.Conn.PublishDeadLetter(octx, f.Name, id, &queue.DeadLetter{Raw: msg.Data(), Subject: msg.Subject(), Reason: reason, At: c.opts.Now().UTC()}); err != nil {
		logger.Warn("dead letter not stored; retrying later", logkey.Error, err)
		settled(logger, "nak", msg.NakWithDelay(5*time.Second))
		return
	}
	logger.Error("undecodable job event dead-lettered", "reason", reason)
	settled(logger, "term", msg.Term())
}

func (c *Consumer) spawn(ctx context.Context, f *Flavor, ev *queue.JobEvent, d delivery, logger *slog.Logger) verdict {
	now := c.opts.Now()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	job, err := c.fleet.SeeJob(octx, ev)
	if err != nil {
		logger.Warn("job record unavailable; retrying", logkey.Error, err)
		return retryIn(time.Second)
	}
	if job.State != fleet.JobQueued || job.Gone || job.DeadLettered {
		c.metrics.events.WithLabelValues(f.Name, ev.Action, "not_queued").Inc()
		logger.Debug("job no longer waits for a runner", "state", job.State, "gone", job.Gone)
		return ack()
	}
	resume, v, done := c.ownRunner(octx, f, ev, job, now, logger)
	if done {
		return v
	}
	counted := ev.CountsAsReplacement()
	if resume == "" {
		if counted && job.Replacements >= c.opts.MaxReplacements {
			return deadLetter(deadReplacementLimit, fmt.Sprintf("replacement limit: the job's %d runners were all taken or lost (max_replacements %d)", len(job.Runners), c.opts.MaxReplacements))
		}
		if name, from, ok := c.fleet.Adopt(octx, f.Name, job.ID, counted); ok {
			c.metrics.adopted.WithLabelValues(f.Name).Inc()
			logger.Info("spare runner adopted", logkey.Runner, name, "from_job", from)
			return ack()
		}
	}

	name := resume
	if name == "" {
		name = RunnerName(c.opts.DeploymentID, f.Name, job.ID, len(job.Runners))
	}
	logger = logger.With(logkey.Runner, name)
	if v, ok := c.claim(ctx, f, name, job.ID, logger); !ok {
		return v
	}

	// Events we cannot trust (redelivered after a crash, polled, old on arrival) are
	// checked with GitHub before a runner is spent on them; fresh ones are not, to
	// save the API budget.
	if why := c.untrusted(ev, job, d, now); c.opts.GitHub != nil && why != "" {
		logger.Debug("checking the job with GitHub", "why", why)
		if v, done := c.verify(octx, f, job, name, resume != "", logger); done {
			return v
		}
	}
	return c.create(ctx, f, ev, job, name, resume != "", counted, logger)
}

// ownRunner looks for a runner already meant for the job. done: the verdict is final
// (the job has a runner, or one is being created under a lease someone holds). resume
// names a runner whose create is to be resumed (its creator crashed, or its retry is
// due).
func (c *Consumer) ownRunner(ctx context.Context, f *Flavor, ev *queue.JobEvent, job *fleet.JobRecord, now time.Time, logger *slog.Logger) (resume string, v verdict, done bool) {
	for _, name := range job.Runners {
		r, err := c.fleet.Runner(ctx, name)
		if errors.Is(err, fleet.ErrNoRecord) {
			continue
		}
		if err != nil {
			return "", retryIn(time.Second), true
		}
		if r.ForJob != job.ID || !r.Untaken() || r.Spare {
			continue
		}
		if r.State == fleet.RunnerCreating {
			if now.After(r.CreatingUntil) {
				resume = name // its creator crashed, or its retry is due
				continue
			}
			// Someone holds the create lease (a worker creating it now, or a retry
			// waiting for its backoff). Come back when the lease ends rather than ack:
			// if that worker died, this event is what resumes the create.
			return "", retryIn(r.CreatingUntil.Sub(now) + time.Second), true
		}
		c.metrics.events.WithLabelValues(f.Name, ev.Action, "has_runner").Inc()
		logger.Debug("job already has a runner", logkey.Runner, name, "state", r.State)
		return "", ack(), true
	}
	return resume, verdict{}, false
}

// claim takes a capacity slot for the runner, waiting up to CapacityWait for one to
// free (woken by the capacity watch, not by polling). When the flavor stays full the
// job goes back to the queue.
func (c *Consumer) claim(ctx context.Context, f *Flavor, name string, jobID int64, logger *slog.Logger) (verdict, bool) {
	deadline := time.NewTimer(c.opts.CapacityWait)
	defer deadline.Stop()
	counted := false
	for {
		changed := c.freed[f.Name].wait()
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		claimed, err := c.fleet.Claim(octx, f.Name, name, jobID, f.MaxRunners)
		cancel()
		if errors.Is(err, fleet.ErrFlavorPaused) {
			logger.Info("flavor paused by a flush; the job waits")
			return retryIn(c.opts.CapacityRetry), false
		}
		if err != nil {
			logger.Warn("capacity unavailable; retrying", logkey.Error, err)
			return retryIn(time.Second), false
		}
		if claimed {
			return verdict{}, true
		}
		if !counted {
			counted = true
			c.metrics.capacityFull.WithLabelValues(f.Name).Inc()
			logger.Info("flavor full; the job waits", "max_runners", f.MaxRunners)
		}
		select {
		case <-changed:
		case <-deadline.C:
			return retryIn(c.opts.CapacityRetry), false
		}
	}
}

// untrusted says why an event must be checked with GitHub before a runner is spent
// on it, or "" when it need not be. What decides is what the event is, not how long
// we held it: an event that waited in our own queue (a burst, a full flavor) or that
// we put back ourselves for a retry (a failed create, a full flavor) says nothing new
// about the job, and the events that change a job (in_progress, completed) update
// its record, which spawn reads first. Checked are:
//   - polled events: the janitor found the job by listing, not by a webhook;
//   - events delivered again after a crash (JetStream's redelivery without our nak);
//   - events already old when they arrived (a webhook redelivered or delayed by
//     GitHub, a replacement for a job that waited long): received more than
//     VerifyAge after the job was created.
//
// A job GitHub said was queued less than VerifyAge ago is not checked again.
func (c *Consumer) untrusted(ev *queue.JobEvent, job *fleet.JobRecord, d delivery, now time.Time) string {
	if !job.VerifiedAt.IsZero() && now.Sub(job.VerifiedAt) < c.opts.VerifyAge {
		return ""
	}
	switch {
	case ev.Source == queue.SourcePoller:
		return "polled"
	case d.n > 1 && !d.ownRetry:
		return "redelivered"
	case ev.CreatedAt != nil && ev.ReceivedAt.Sub(*ev.CreatedAt) > c.opts.VerifyAge:
		return "old on arrival"
	}
	return ""
}

// verify asks GitHub whether the job still waits. done means the verdict is final.
// slot is the runner the capacity slot was claimed for; resumed says whether an
// earlier attempt of it may have left an instance.
func (c *Consumer) verify(ctx context.Context, f *Flavor, job *fleet.JobRecord, slot string, resumed bool, logger *slog.Logger) (verdict, bool) {
	gj, err := c.opts.GitHub.GetJob(ctx, job.Repo, job.ID)
	switch {
	case errors.Is(err, github.ErrNotFound):
		c.metrics.githubChecks.WithLabelValues("gone").Inc()
		if err := c.fleet.JobGone(ctx, job.ID); err != nil {
			logger.Warn("job record not marked gone", logkey.Error, err)
		}
		c.unclaim(ctx, f, slot, resumed, logger)
		logger.Info("job is gone on GitHub; dropped")
		return ack(), true
	case err != nil:
		// GitHub unavailable or budget exhausted: spawning is better than letting a
		// job wait for GitHub; the runner is spare if the job turns out done.
		c.metrics.githubChecks.WithLabelValues("error").Inc()
		logger.Warn("cannot check the job with GitHub; spawning anyway", logkey.Error, err)
		return verdict{}, false
	}
	c.metrics.githubChecks.WithLabelValues(gj.Status).Inc()
	if gj.Status == "queued" || gj.Status == "waiting" || gj.Status == "" {
		if err := c.fleet.JobVerified(ctx, job.ID, c.opts.Now()); err != nil {
			// Only a later event for the job asks GitHub again.
			logger.Warn("job's check not recorded", logkey.Error, err)
		}
		return verdict{}, false
	}
	next := fleet.JobInProgress
	if gj.Status == "completed" {
		next = fleet.JobCompleted
	}
	if err := c.fleet.JobObserved(ctx, job.ID, next, gj.Conclusion, gj.RunnerName); err != nil {
		logger.Warn("job record not updated from GitHub", logkey.Error, err)
	}
	c.unclaim(ctx, f, slot, resumed, logger)
	logger.Info("job no longer queued on GitHub; no runner spawned", "status", gj.Status)
	return ack(), true
}

// unclaim gives back the capacity slot claimed for a runner that will not be created
// after all. A fresh runner has made nothing yet. A resumed one may have an instance
// from its earlier attempt: its slot is freed only once that is confirmed gone, and
// otherwise stays held, with the record's expired create lease telling the janitor
// to delete the instance and free it.
func (c *Consumer) unclaim(ctx context.Context, f *Flavor, name string, resumed bool, logger *slog.Logger) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if resumed {
		// Take the create lease first, so that no other worker creates the instance
		// while this one deletes what is left of it.
		err := c.fleet.TakeCreateLease(wctx, name, c.opts.Now().Add(CreateLease))
		if err != nil {
			// ErrCreateLeased: another worker took the create over, and the slot is its.
			if !errors.Is(err, fleet.ErrCreateLeased) {
				logger.Warn("runner record unavailable; its capacity slot stays held for the janitor", logkey.Error, err)
			}
			return
		}
		if err := c.confirmGone(ctx, f, name); err != nil {
			// The lease runs out and the janitor, finding the job no longer queued,
			// deletes the instance and frees the slot.
			logger.Warn("an earlier attempt's instance may be left; its capacity slot stays held for the janitor", logkey.Error, err)
			return
		}
		if err := c.fleet.Abandon(wctx, name, "its job no longer needs a runner"); err != nil {
			// Slot freed all the same: the instance is gone, and the janitor settles a
			// record whose instance is not listed.
			logger.Warn("runner record not settled; the janitor will", logkey.Error, err)
		}
	}
	if err := c.fleet.Unclaim(wctx, f.Name, name); err != nil {
		logger.Warn("capacity slot not released; the janitor will", logkey.Error, err)
	}
}

// confirmGone deletes whatever is left under name and returns nil once nothing of
// ours is: Delete returned nil, or ErrNotFound (what exists by that name is not
// ours, and holds none of our capacity). The delete runs to its end even when ctx
// ends (a shutdown): the slot is freed on its answer. The caller holds the runner's
// create lease, which is kept while the delete waits, so that no other worker
// resumes the create meanwhile.
func (c *Consumer) confirmGone(ctx context.Context, f *Flavor, name string) error {
	stop := c.renewCreateLease(context.WithoutCancel(ctx), name, c.logger.With(logkey.Runner, name))
	defer stop()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	if err := f.Backend.Delete(dctx, name); err != nil && !errors.Is(err, backends.ErrNotFound) {
		return fmt.Errorf("delete instance %s: %w", name, err)
	}
	return nil
}

// deleteTimeout bounds one backend delete, including the wait for a cloud that
// deletes in the background.
const deleteTimeout = 2 * time.Minute

// create makes the runner's record and instance. The capacity slot is held.
func (c *Consumer) create(ctx context.Context, f *Flavor, ev *queue.JobEvent, job *fleet.JobRecord, name string, resume, counted bool, logger *slog.Logger) verdict {
	token, hash := bootstrap.NewToken()
	attempts, resume, v, ok := c.startRecord(ctx, f, job, name, hash, resume, counted, logger)
	if !ok {
		return v
	}
	rendered, err := bootstrap.Render(bootstrap.Spec{URL: c.opts.BootstrapURL, CACert: c.opts.BootstrapCA, RunnerName: name, Flavor: f.Name, Token: token, Runner: f.Runner})
	if err != nil {
		return c.createFailed(ctx, f, name, job, fmt.Errorf("%w: %v", backends.ErrBadSpec, err), attempts, logger)
	}
	spec := backends.InstanceSpec{Name: name, Flavor: f.Name, JobID: job.ID, UserData: rendered.UserData, Script: rendered.Script, Env: rendered.Env}
	inst, start, err := c.createInstance(ctx, f, spec, resume, logger)
	if err != nil {
		return c.createFailed(ctx, f, name, job, err, attempts, logger)
	}
	c.recordCreated(ctx, f, job, name, inst.ID, logger)
	c.metrics.events.WithLabelValues(f.Name, ev.Action, "spawned").Inc()
	c.metrics.spawnLatency.WithLabelValues(f.Name).Observe(start.Sub(ev.ReceivedAt).Seconds())
	logger.Info("runner created", logkey.Instance, inst.ID, logkey.Backend, f.BackendName, "since_webhook", start.Sub(ev.ReceivedAt).Round(time.Millisecond))
	return ack()
}

// startRecord writes the runner's record with the create lease (or takes the lease
// of the record an earlier attempt left: then resumed) and lists the runner on its
// job. ok false: the verdict says when to come back.
func (c *Consumer) startRecord(ctx context.Context, f *Flavor, job *fleet.JobRecord, name, tokenHash string, resume, counted bool, logger *slog.Logger) (attempts int, resumed bool, v verdict, ok bool) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	now := c.opts.Now()
	again, attempts, err := c.fleet.StartCreate(octx, &fleet.RunnerRecord{
		Name: name, Flavor: f.Name, Backend: f.BackendName, ForJob: job.ID,
		TokenHash: tokenHash, TokenExpires: now.Add(f.BootTimeout), CreatingUntil: now.Add(CreateLease),
		// The attempts of runners whose names the job gave up count on.
		Attempts: job.CreateAttempts,
	})
	resume = resume || again
	if errors.Is(err, fleet.ErrCreateLeased) {
		// Someone else is creating it; come back after their lease in case they die.
		return 0, resume, retryIn(CreateLease), false
	}
	if err != nil {
		logger.Warn("runner record unavailable; retrying", logkey.Error, err)
		// A fresh runner has made nothing yet. A resumed one may have an instance from
		// its earlier attempt: its slot stays held, and its expired create lease
		// brings it back (to a consumer, or to the janitor, which deletes it first).
		if !resume {
			if err := c.fleet.Unclaim(octx, f.Name, name); err != nil {
				logger.Warn("capacity slot not released; the janitor will", logkey.Error, err)
			}
		}
		return 0, resume, retryIn(time.Second), false
	}
	replacement, err := c.fleet.AttachRunner(octx, job.ID, name, counted)
	if err != nil {
		logger.Warn("job record unavailable; retrying", logkey.Error, err)
		return 0, resume, retryIn(time.Second), false
	}
	if replacement {
		c.metrics.replacements.WithLabelValues(f.Name).Inc()
	}
	return attempts, resume, verdict{}, true
}

// createInstance asks the backend for the instance, first removing what an earlier
// attempt left (resume), while renewing the create lease. It returns when the create
// started, for the latency metrics.
func (c *Consumer) createInstance(ctx context.Context, f *Flavor, spec backends.InstanceSpec, resume bool, logger *slog.Logger) (backends.Instance, time.Time, error) {
	cctx, ccancel := context.WithTimeout(ctx, c.opts.CreateTimeout)
	defer ccancel()
	// Renewed from here: the delete of what an earlier attempt left may take a while
	// (a cloud that deletes in the background is waited for).
	stopRenew := c.renewCreateLease(ctx, spec.Name, logger)
	defer stopRenew()
	if resume {
		// What a crashed or failed create left carries a token we no longer know:
		// remove it and start clean (Delete of nothing is success). Never create on
		// top of what could not be removed: this counts as a failed attempt, and the
		// slot stays held while it may still be there.
		if err := f.Backend.Delete(cctx, spec.Name); err != nil && !errors.Is(err, backends.ErrNotFound) {
			return backends.Instance{}, c.opts.Now(), fmt.Errorf("remove what the earlier attempt left: %w", err)
		}
	}
	start := c.opts.Now()
	inst, err := f.Backend.Create(cctx, spec)
	c.metrics.createSeconds.WithLabelValues(f.Name, f.BackendName, resultLabel(err)).Observe(time.Since(start).Seconds())
	return inst, start, err
}

// recordCreated says on the records that the instance exists. The writes run to
// their end even if ctx ends: the instance is there.
func (c *Consumer) recordCreated(ctx context.Context, f *Flavor, job *fleet.JobRecord, name, instanceID string, logger *slog.Logger) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.fleet.Created(wctx, name, instanceID); err != nil {
		// The instance exists and will call in; its record catches up then, and the
		// janitor keeps watch.
		logger.Warn("instance created but its record was not updated", logkey.Error, err)
	}
	if job.CreateAttempts != 0 {
		if err := c.fleet.CarryCreateAttempts(wctx, job.ID, 0); err != nil {
			logger.Warn("job's create attempts not reset", logkey.Error, err)
		}
	}
	// The job may have been taken by another runner (or cancelled) while this one was
	// being created, after its in_progress or completed event marked the job's other
	// runners spare: mark this one too, so the next job adopts it.
	if j, err := c.fleet.Job(wctx, job.ID); err == nil && j.State != fleet.JobQueued {
		c.makeSpare(wctx, name, job.ID, logger)
	}
}

// CreateLease is how long a create may go without renewing its lease before another
// worker takes it over (its creator presumably died). Renewed every third of it. A
// create abandoned by a killed consumer is thus picked up (by a consumer, or by the
// janitor two passes after the lease ran out) no sooner than this after the kill.
const CreateLease = 30 * time.Second

// renewCreateLease keeps the runner's create lease while the backend works (an LXD
// VM or a cloud server can take minutes), until stop is called.
func (c *Consumer) renewCreateLease(ctx context.Context, name string, logger *slog.Logger) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(CreateLease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				octx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := c.fleet.RenewCreateLease(octx, name, c.opts.Now().Add(CreateLease))
				cancel()
				if err != nil {
					logger.Warn("create lease not renewed", logkey.Error, err)
				}
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// createFailed decides between retrying later and giving up. Either way the runner's
// capacity slot is freed only once its instance is confirmed gone: a Delete of the
// name returned nil (a failed Create may leave its instance when its own cleanup
// failed), and the create's outcome is known. Otherwise the slot stays held: for a
// retry of the same name, until that retry has removed what is left; for a runner
// given up, until the janitor, which deletes what a failed record says may be left,
// has seen it gone.
//
// A create whose outcome is unknown (backends.ErrOutcomeUnknown) may still make its
// instance for backends.LateInstanceWindow, so its name is given up (never created
// again, which would risk two instances under one name and one slot) and held that
// long; the job's retry gets a runner of a new name, carrying the attempts on.
func (c *Consumer) createFailed(ctx context.Context, f *Flavor, name string, job *fleet.JobRecord, cerr error, attempts int, logger *slog.Logger) verdict {
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	permanent := errors.Is(cerr, backends.ErrBadSpec)
	// A full quota is like a full flavor: the job waits for room, however long,
	// without using up its attempts (which are for failures that may not pass).
	quota := errors.Is(cerr, backends.ErrQuota)
	if !quota {
		attempts++
	}
	giveUp := permanent || (!quota && attempts >= c.opts.MaxAttempts)
	delay := c.backoff(max(attempts, 1))
	if quota {
		delay = max(delay, c.opts.CapacityRetry)
	}
	unknown := c.settleFailedCreate(ctx, octx, f, name, fleet.CreateFailure{
		Attempts: attempts, Err: cerr, GiveUp: giveUp, RetryAt: c.opts.Now().Add(delay),
	}, logger)
	if unknown && !giveUp {
		if err := c.fleet.CarryCreateAttempts(octx, job.ID, attempts); err != nil {
			logger.Warn("job's create attempts not carried to its next runner", logkey.Error, err)
		}
	}
	if giveUp {
		if permanent {
			return deadLetter(deadBadSpec, "instance create failed permanently: "+cerr.Error())
		}
		return deadLetter(deadCreateFailed, fmt.Sprintf("instance create failed %d times; last: %v", attempts, cerr))
	}
	logger.Warn("instance create failed; retrying", logkey.Attempt, attempts, "retry_in", delay.Round(time.Millisecond), logkey.Error, cerr)
	return retryIn(delay)
}

// settleFailedCreate records a failed create attempt (fl without its instance
// fields, which are found here) and frees the runner's capacity slot when nothing
// of the attempt is left; an attempt whose outcome is unknown ends the runner, and
// its slot stays held while an instance may still appear. It reports whether the
// outcome was unknown. octx bounds the record writes, ctx the delete.
func (c *Consumer) settleFailedCreate(ctx, octx context.Context, f *Flavor, name string, fl fleet.CreateFailure, logger *slog.Logger) (unknown bool) {
	unknown = errors.Is(fl.Err, backends.ErrOutcomeUnknown)
	derr := c.confirmGone(ctx, f, name)
	fl.InstanceGone = derr == nil && !unknown
	if unknown {
		fl.HoldSlotUntil = c.opts.Now().Add(backends.LateInstanceWindow).UTC()
	}
	fl.GiveUp = fl.GiveUp || unknown // the record ends here; the instance, if any, is the janitor's
	if err := c.fleet.FailCreate(octx, name, fl); err != nil {
		logger.Warn("runner record not updated after a failed create", logkey.Error, err)
	}
	switch {
	case fl.InstanceGone:
		// The slot is free: other jobs may use the capacity.
		if err := c.fleet.Unclaim(octx, f.Name, name); err != nil {
			logger.Warn("capacity slot not released; the janitor will", logkey.Error, err)
		}
	case unknown:
		logger.Warn("create outcome unknown: an instance may still appear; its capacity slot stays held until the janitor sees none",
			"hold_until", fl.HoldSlotUntil, logkey.Error, derr)
	default:
		logger.Warn("the failed create's instance may be left; its capacity slot stays held until it is deleted", logkey.Error, derr)
	}
	return unknown
}

// backoff is exponential with jitter: initial·2^(n-1), capped, times 0.5-1.0.
func (c *Consumer) backoff(attempt int) time.Duration {
	d := c.opts.BackoffInitial
	for i := 1; i < attempt && d < c.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, c.opts.BackoffMax)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// keepInProgress tells JetStream every interval that the message is still being
// worked on, until the returned stop is called.
func keepInProgress(msg jetstream.Msg, every time.Duration) func() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				// A missed one is harmless: the next comes a third of AckWait later,
				// and at worst the event is delivered again and handled idempotently.
				_ = msg.InProgress() // decided: see above
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func resultLabel(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, backends.ErrQuota):
		return "quota"
	case errors.Is(err, backends.ErrBadSpec):
		return "bad_spec"
	}
	return "error"
}
