package janitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
	"github.com/runner-spawner/runner-spawner/queue"
)

// flushRemoveBound is how long a flush's removals may take, on top of its waits,
// before its pause of new spawns lapses on its own (a crashed janitor must not
// leave a flavor paused for long).
const flushRemoveBound = 5 * time.Minute

// registrationWait bounds the wait for a runner whose config is being minted right
// now, so that its registration can be removed before its instance.
const registrationWait = 5 * time.Second

// flush carries out one flush command. It pauses new spawns for the flavors in
// scope, lets creates in flight finish, waits (in the *_WAIT_REPO_CHECK modes) while
// a runner is in its pre-job phase, removes the runners the mode names, asks fresh
// runners for the queued jobs that lost theirs, and lifts the pause. req.Mode was
// parsed where the command entered (control.Mode).
func (j *Janitor) flush(ctx context.Context, req control.FlushRequest) (res control.FlushResult) {
	res.Mode = req.Mode
	scope, err := j.flushScope(req.Flavor)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	logger := j.logger.With(logkey.Mode, string(req.Mode), logkey.Flavor, req.Flavor)
	logger.Info("flush started")
	start := j.opts.Now()
	defer func() {
		result := "ok"
		if res.Error != "" {
			result = "incomplete"
		}
		j.metrics.flushes.WithLabelValues(string(req.Mode), result).Inc()
		logger.Info("flush done", "removed", res.Removed, "skipped_busy", res.SkippedBusy, "failed", res.Failed,
			"waited_seconds", round(res.WaitedSeconds), "seconds", round(j.opts.Now().Sub(start).Seconds()), logkey.Error, res.Error)
	}()

	// No new runner while the flush runs, so none from before it survives it. The
	// pause is bounded: should this janitor die, it lapses on its own.
	resume, err := j.pause(ctx, scope, start.Add(2*j.waitBound()+flushRemoveBound), logger)
	defer resume()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	waited := j.waitWhile(ctx, logger, "creates in flight", func(ctx context.Context) (bool, error) { return j.createsInFlight(ctx, scope) })
	if req.Mode.WaitRepoCheck() {
		waited += j.waitWhile(ctx, logger, "runners in their pre-job phase", func(ctx context.Context) (bool, error) { return j.inPreJob(ctx, scope) })
	}
	res.WaitedSeconds = waited.Seconds()
	if ctx.Err() != nil {
		res.Error = "the janitor stopped acting during the flush (lease lost or shutting down)"
		return res
	}
	j.flushRemove(ctx, req.Mode, scope, &res, logger)
	return res
}

// flushScope is the flavors a flush covers: one, or all.
func (j *Janitor) flushScope(flavor string) ([]string, error) {
	if flavor == "" {
		return j.names, nil
	}
	if j.flavors[flavor] == nil {
		return nil, fmt.Errorf("unknown flavor %q", untrusted.Log(flavor))
	}
	return []string{flavor}, nil
}

// pause holds new runners of the flavors in scope back until until, and returns what
// lifts the pause again: it runs to its end whatever happened to ctx.
func (j *Janitor) pause(ctx context.Context, scope []string, until time.Time, logger *slog.Logger) (resume func(), err error) {
	by := "flush:" + j.opts.ID
	var paused []string
	resume = func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancel()
		for _, f := range paused {
			if err := j.fleet.Resume(rctx, f, by); err != nil {
				logger.Warn("flavor not resumed after the flush; its pause lapses on its own", logkey.Flavor, f, "paused_until", until, logkey.Error, err)
			}
		}
	}
	for _, f := range scope {
		if err := j.fleet.Pause(ctx, f, by, until); err != nil {
			return resume, fmt.Errorf("pause flavor %s: %v", f, err)
		}
		paused = append(paused, f)
	}
	return resume, nil
}

// flushRemove removes the runners the mode names, then asks fresh runners for the
// queued jobs that lost theirs.
func (j *Janitor) flushRemove(ctx context.Context, mode control.Mode, scope []string, res *control.FlushResult, logger *slog.Logger) {
	j.workMu.Lock()
	defer j.workMu.Unlock()
	targets, err := j.flushTargets(ctx, scope)
	if err != nil {
		res.Error = err.Error()
		return
	}
	if f := j.opts.hooks.beforeFlushRemove; f != nil {
		f()
	}
	fl := &flushRun{j: j, ctx: ctx, mode: mode, res: res, replace: map[int64]lostRunner{}, logger: logger}
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		fl.remove(t, 0)
	}
	// Replacements go out after every removal, while new spawns are still paused:
	// none of them can adopt a runner about to be flushed, and the consumers
	// spawn them as soon as the pause is lifted.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	for _, job := range slices.Sorted(maps.Keys(fl.replace)) {
		lost := fl.replace[job]
		j.requestRunner(wctx, lost.flavor, job, lost.name, queue.ReplaceFlush)
	}
	switch {
	case ctx.Err() != nil:
		res.Error = "the janitor stopped acting during the flush (lease lost or shutting down)"
	case res.Failed > 0:
		res.Error = fmt.Sprintf("%d runners not removed; first: %s", res.Failed, fl.firstErr)
	}
}

func (j *Janitor) waitBound() time.Duration {
	return j.opts.FlushWait * time.Duration(j.opts.FlushWaitAttempts)
}

// waitWhile waits while busy says so, up to FlushWait × FlushWaitAttempts, and
// returns how long it waited. It looks again often (not only every FlushWait), so
// the flush goes on as soon as the condition ends.
func (j *Janitor) waitWhile(ctx context.Context, logger *slog.Logger, what string, busy func(context.Context) (bool, error)) time.Duration {
	start := j.opts.Now()
	deadline := start.Add(j.waitBound())
	step := min(j.opts.FlushWait, 250*time.Millisecond)
	logged := false
	for ctx.Err() == nil {
		b, err := busy(ctx)
		if err != nil {
			logger.Warn("flush cannot tell whether to wait; going on", "for", what, logkey.Error, err)
			break
		}
		if !b {
			break
		}
		if !j.opts.Now().Before(deadline) {
			logger.Warn("flush wait bound reached; going on", "for", what, "bound", j.waitBound())
			break
		}
		if !logged {
			logged = true
			logger.Info("flush waiting", "for", what, "bound", j.waitBound())
		}
		sleep(ctx, step)
	}
	return j.opts.Now().Sub(start)
}

// createsInFlight reports whether a create is under way in scope: a slot claimed
// whose record is not written yet, or a record being created that holds its slot
// (a create waiting for its retry holds none, and is not waited for).
func (j *Janitor) createsInFlight(ctx context.Context, scope []string) (bool, error) {
	recs, err := j.fleet.Runners(ctx)
	if err != nil {
		return false, err
	}
	byName := map[string]*fleet.RunnerRecord{}
	for _, r := range recs {
		byName[r.Name] = r
	}
	now := j.opts.Now()
	for _, f := range scope {
		capRec, err := j.fleet.Capacity(ctx, f)
		if err != nil {
			return false, err
		}
		for name, slot := range capRec.Slots {
			r := byName[name]
			switch {
			case r == nil && now.Sub(slot.Since) < SlotGrace:
				return true, nil
			case r != nil && r.State == fleet.RunnerCreating && now.Before(r.CreatingUntil):
				return true, nil
			}
		}
	}
	return false, nil
}

// inPreJob reports whether a runner in scope is in its pre-job phase.
func (j *Janitor) inPreJob(ctx context.Context, scope []string) (bool, error) {
	recs, err := j.fleet.Runners(ctx)
	if err != nil {
		return false, err
	}
	for _, r := range recs {
		if slices.Contains(scope, r.Flavor) && r.InPreJob() && !r.Protected && !j.protected[r.Name] {
			return true, nil
		}
	}
	return false, nil
}

// flushTarget is one runner (or bare instance) a flush looks at.
type flushTarget struct {
	f    *Flavor
	name string
	rec  *fleet.RunnerRecord // nil: an instance with no record
	inst bool                // an instance exists
	prot bool                // the instance carries the protected tag
}

// flushTargets lists the runners in scope: every live record, and every instance
// (with or without a record).
func (j *Janitor) flushTargets(ctx context.Context, scope []string) ([]flushTarget, error) {
	byName := map[string]*flushTarget{}
	for _, name := range scope {
		f := j.flavors[name]
		lctx, cancel := context.WithTimeout(ctx, listTimeout)
		list, err := f.Backend.List(lctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list instances of %s: %w", name, err)
		}
		for _, in := range list {
			byName[in.Name] = &flushTarget{f: f, name: in.Name, inst: true, prot: in.Protected}
		}
	}
	recs, err := j.fleet.Runners(ctx)
	if err != nil {
		return nil, fmt.Errorf("read runner records: %w", err)
	}
	for _, r := range recs {
		f := j.flavors[r.Flavor]
		if f == nil || !slices.Contains(scope, f.Name) {
			continue
		}
		t := byName[r.Name]
		if t == nil {
			if !r.State.Live() {
				continue
			}
			t = &flushTarget{f: f, name: r.Name}
			byName[r.Name] = t
		}
		t.rec = r
	}
	out := make([]flushTarget, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, *byName[name])
	}
	return out, nil
}

// flushRun is one flush's removals in progress.
type flushRun struct {
	j        *Janitor
	ctx      context.Context
	mode     control.Mode
	res      *control.FlushResult
	replace  map[int64]lostRunner // queued jobs that lost their runner → that runner
	firstErr string
	logger   *slog.Logger
}

func (fl *flushRun) failed(err error) {
	fl.res.Failed++
	if fl.firstErr == "" {
		fl.firstErr = err.Error()
	}
	fl.logger.Warn("flush could not remove a runner", logkey.Error, err)
}

// remove removes one runner as the mode says. try counts re-judgements of a runner
// that changed while it was being removed.
func (fl *flushRun) remove(t flushTarget, try int) {
	j, rec, name := fl.j, t.rec, t.name
	if t.prot || j.protected[name] || (rec != nil && rec.Protected) {
		fl.logger.Info("flush leaves a protected runner", logkey.Runner, name)
		return
	}
	if rec == nil || rec.State.Terminal() {
		// Nothing registered runs here: an instance without a record, or one whose
		// runner is over.
		fl.reap(t, rec, nil)
		return
	}
	busy := rec.State == fleet.RunnerBusy || rec.TookJob != 0
	if busy && !fl.mode.Busy() {
		fl.res.SkippedBusy++
		return
	}
	id := rec.GitHubRunnerID
	if id == 0 && rec.ConfigFetched {
		// Its config is being minted this moment: wait for the registration so it
		// can be removed first.
		rec = fl.awaitRegistration(name)
		if rec == nil {
			fl.failed(fmt.Errorf("runner %s: record unreadable", name))
			return
		}
		id = rec.GitHubRunnerID
		if id == 0 && !fl.mode.Busy() {
			fl.failed(fmt.Errorf("runner %s: its registration is still being made", name))
			return
		}
	}
	if id == 0 {
		// Never registered: no job can reach it. Mark it over only if it still has
		// not fetched its config (then the bootstrap endpoint refuses it).
		var still func(*fleet.RunnerRecord) bool
		if !fl.mode.Busy() {
			still = func(r *fleet.RunnerRecord) bool { return !r.ConfigFetched && r.GitHubRunnerID == 0 && r.TookJob == 0 }
		}
		if fl.reap(t, rec, still) == changed && try < 2 {
			if fresh, err := j.fleet.Runner(fl.ctx, name); err == nil {
				t.rec = fresh
				fl.remove(t, try+1)
			}
		}
		return
	}
	err := j.opts.GitHub.DeleteRunner(fl.ctx, id)
	switch {
	case err == nil:
	case errors.Is(err, github.ErrRunnerBusy) && !fl.mode.Busy():
		// It took a job after we looked: it keeps it.
		fl.res.SkippedBusy++
		fl.logger.Info("flush skips a runner that took a job", logkey.Runner, name)
		return
	case errors.Is(err, github.ErrRunnerBusy):
		// Busy modes remove it anyway: its job fails, and its registration goes
		// with the job (or with a later reconcile pass).
	case fl.mode.Force():
		fl.logger.Warn("github refused removing the runner; FORCE deletes its instance anyway (reconcile removes the registration later)", logkey.Runner, name, logkey.Error, err)
	default:
		fl.failed(fmt.Errorf("remove runner %s from github: %w", name, err))
		return
	}
	// Its registration is gone (or removal is forced): nothing can start on it now.
	fl.reap(t, rec, nil)
}

// awaitRegistration re-reads a runner until its registration id is known, briefly.
func (fl *flushRun) awaitRegistration(name string) *fleet.RunnerRecord {
	deadline := fl.j.opts.Now().Add(registrationWait)
	for {
		rec, err := fl.j.fleet.Runner(fl.ctx, name)
		if err != nil {
			return nil
		}
		if rec.GitHubRunnerID != 0 || !rec.ConfigFetched || !fl.j.opts.Now().Before(deadline) || fl.ctx.Err() != nil {
			return rec
		}
		sleep(fl.ctx, 100*time.Millisecond)
	}
}

func (fl *flushRun) reap(t flushTarget, rec *fleet.RunnerRecord, still func(*fleet.RunnerRecord) bool) reapOutcome {
	text := "flushed (" + string(fl.mode) + ")"
	outcome, job, err := fl.j.reap(fl.ctx, t.f, t.name, rec != nil, removal{reason: reasonFlush, text: text, still: still, deferReplacement: true})
	if err != nil {
		fl.failed(err)
		return outcome
	}
	if outcome != reaped {
		return outcome
	}
	fl.res.Removed++
	// The record as the flush first read it counts too: a runner told its
	// registration is gone may report itself finished before it is marked here.
	if rec != nil && neverTookJob(rec) && job == 0 {
		job = rec.ForJob
	}
	if job != 0 {
		fl.replace[job] = lostRunner{flavor: t.f.Name, name: t.name}
	}
	return outcome
}

// lostRunner is a runner a queued job counted on, removed by a flush.
type lostRunner struct{ flavor, name string }
