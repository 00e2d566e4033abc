package janitor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

const (
	reasonInstanceGone = "instance_gone"
	// goneGrace: a registration missing from GitHub's list is judged gone only this
	// long after the runner came up (or last changed): listings lag behind a new
	// registration, and a runner that ran a short job is removed by GitHub moments
	// before its job's events reach us.
	goneGrace = 30 * time.Second
	// SlotGrace: a slot is claimed a moment before its runner record is written (the
	// job may be checked with GitHub in between), so a slot without a record is a
	// leak only once it is older than this.
	SlotGrace = time.Minute
	// listTimeout bounds one listing (a backend's instances, GitHub's runners).
	listTimeout = time.Minute
)

// reconcileLoop runs a pass right away and then every Interval, until ctx ends.
func (j *Janitor) reconcileLoop(ctx context.Context) {
	repeat(ctx, func() time.Duration { j.reconcile(ctx); return j.opts.Interval })
}

// repeat runs work right away and again after the pause it returns each time (counted
// from the end of a run, so slow runs never pile up), until ctx ends.
func repeat(ctx context.Context, work func() (pause time.Duration)) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(work())
	}
}

// pass is one reconcile pass in progress.
type pass struct {
	j       *Janitor
	ctx     context.Context
	now     time.Time
	sum     *control.PassSummary
	deletes int // left in this pass
	calls   int // GitHub calls left in this pass
	next    map[string]mark
	jobs    map[int64]*fleet.JobRecord
	// poolExcess is, per flavor, how many idle pool runners may still be reaped in
	// this pass: the pool's size beyond min_idle (read once per pass).
	poolExcess map[string]int
}

// reconcile compares the backends' instances, GitHub's registrations and the runner
// records, and removes what is left over, within the pass's bounds.
func (j *Janitor) reconcile(ctx context.Context) *control.PassSummary {
	j.workMu.Lock()
	defer j.workMu.Unlock()
	j.pass++
	start := j.opts.Now()
	p := &pass{
		j: j, ctx: ctx, now: start,
		sum:     &control.PassSummary{Janitor: j.opts.ID, StartedAt: start.UTC(), Deleted: map[string]int{}, Kept: map[string]int{}},
		deletes: j.opts.MaxDeletesPerPass, calls: j.opts.MaxGitHubCallsPerPass,
		next: map[string]mark{}, jobs: map[int64]*fleet.JobRecord{}, poolExcess: map[string]int{},
	}
	result := "ok"
	if err := p.run(); err != nil {
		p.fail(err)
		result = "error"
	} else if p.sum.Errors > 0 {
		result = "partial"
	}
	if ctx.Err() != nil {
		return p.sum // the lease ended mid-pass: the next holder starts afresh
	}
	j.marks = p.next
	end := j.opts.Now()
	p.sum.Seconds = end.Sub(start).Seconds()
	j.metrics.passSeconds.Observe(p.sum.Seconds)
	j.metrics.passes.WithLabelValues(result).Inc()
	j.metrics.lastReconcile.Set(float64(end.Unix()))
	if rl, ok := j.opts.GitHub.(rateLimiter); ok {
		if info := rl.RateLimit(); info.Limit > 0 {
			p.sum.GitHubBudget = &control.Budget{Remaining: info.Remaining, Limit: info.Limit, Reset: info.Reset}
		}
	}
	s := p.sum
	j.logger.Info("reconcile pass", "result", result, "seconds", round(s.Seconds),
		"instances", s.Instances, "github_runners", s.GitHubRunners, "records", s.Records, "github_checked", s.GitHubChecked,
		"deleted", s.DeletedTotal(), "deleted_by_reason", counts(s.Deleted), "registrations_removed", s.RegistrationsRemoved,
		"settled", s.Settled, "slots_released", s.SlotsReleased, "resumed", s.Resumed, "replacements", s.Replacements,
		"marked", s.Marked, "kept", counts(s.Kept), "deferred", s.Deferred, "errors", s.Errors)
	wctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	if err := j.opts.State.PutMeta(wctx, queue.MetaLastReconcile, s); err != nil {
		j.logger.Warn("reconcile summary not stored", logkey.Error, err)
	}
	return s
}

// deletedGrace is how long an instance whose delete was accepted may still be listed
// before the janitor deletes it again.
const deletedGrace = 2 * time.Minute

type instance struct {
	backends.Instance
	flavor *Flavor
}

func (p *pass) run() error {
	j, ctx := p.j, p.ctx
	// Instances first: every record is written before its instance is created, so an
	// instance listed here whose record is missing below has none (it is not one
	// whose record is being written right now).
	instances := map[string]*instance{}
	listed := map[string]bool{}
	for _, name := range j.names {
		f := j.flavors[name]
		lctx, cancel := context.WithTimeout(ctx, listTimeout)
		list, err := f.Backend.List(lctx)
		cancel()
		if err != nil {
			p.fail(fmt.Errorf("list instances of %s: %w", name, err))
			continue
		}
		listed[name] = true
		for _, in := range list {
			instances[in.Name] = &instance{Instance: in, flavor: f}
		}
	}
	recList, err := j.fleet.Runners(ctx)
	if err != nil {
		return fmt.Errorf("read runner records: %w", err)
	}
	records := map[string]*fleet.RunnerRecord{}
	for _, r := range recList {
		records[r.Name] = r
	}
	// GitHub after the records: a registration a record names that is missing here
	// really is gone, not registered after the listing.
	var ghList []github.Runner
	ghByID := map[int64]github.Runner{}
	ghByName := map[string]github.Runner{}
	if p.call() {
		lctx, cancel := context.WithTimeout(ctx, listTimeout)
		ghList, err = j.opts.GitHub.ListRunners(lctx, j.opts.DeploymentID+"-")
		cancel()
		if err != nil {
			p.fail(fmt.Errorf("list github runners: %w", err))
		} else {
			p.sum.GitHubChecked = true
			for _, r := range ghList {
				ghByID[r.ID], ghByName[r.Name] = r, r
			}
		}
	}
	p.sum.Instances, p.sum.Records, p.sum.GitHubRunners = len(instances), len(records), len(ghList)

	for _, name := range slices.Sorted(maps.Keys(instances)) {
		if ctx.Err() != nil {
			return nil
		}
		p.instance(instances[name], records[name], ghByID, ghByName)
	}
	for _, name := range slices.Sorted(maps.Keys(records)) {
		if ctx.Err() != nil {
			return nil
		}
		rec := records[name]
		f := j.flavors[rec.Flavor]
		if f == nil || !listed[f.Name] {
			continue // not ours to judge: this janitor cannot see its instances
		}
		_, hasInstance := instances[name]
		p.record(f, rec, hasInstance)
	}
	if ctx.Err() == nil {
		p.orphans(records)
	}
	if p.sum.GitHubChecked {
		slices.SortFunc(ghList, func(a, b github.Runner) int { return strings.Compare(a.Name, b.Name) })
		for _, r := range ghList {
			if ctx.Err() != nil {
				return nil
			}
			p.registration(r, instances, records, listed)
		}
	}
	for _, name := range j.names {
		if listed[name] && ctx.Err() == nil {
			p.slots(j.flavors[name], instances, records)
		}
	}
	return nil
}

// instance judges one instance of ours.
func (p *pass) instance(in *instance, rec *fleet.RunnerRecord, ghByID map[int64]github.Runner, ghByName map[string]github.Runner) {
	j, f, name := p.j, in.flavor, in.Name
	if in.Protected || j.protected[name] || (rec != nil && rec.Protected) {
		p.keep("protected")
		return
	}
	switch {
	case in.State == backends.StateError && (rec == nil || rec.State != fleet.RunnerBusy || p.marked("error/"+name)):
		// At once, unless the runner is busy: LXD reports Error for a moment while an
		// instance stops or is being deleted, and deleting a busy runner fails its
		// job, so a busy one goes only if the error is still there at the next pass.
		j.logger.Warn("instance in error; deleting it", logkey.Runner, name, logkey.Flavor, f.Name, "fault", in.Fault)
		p.reap(f, name, rec != nil, removal{reason: reasonInstanceError, text: "instance error: " + in.Fault})
	case in.State == backends.StateError:
		// Marked above; acted on at the next pass if still in error.
	case rec == nil:
		if p.marked("orphan/" + name) {
			// Confirm with the leader: a lagging scan must not make a live runner's
			// instance look like an orphan.
			if _, err := j.fleet.Runner(p.ctx, name); !errors.Is(err, fleet.ErrNoRecord) {
				return
			}
			p.reap(f, name, false, removal{reason: reasonOrphan})
		}
	case rec.State.Terminal() && rec.InstanceDeleted && p.now.Sub(rec.UpdatedAt) < deletedGrace:
		// Its delete was accepted moments ago; the cloud still lists it while it goes
		// (a Nova server in task_state deleting). Only a server still there after the
		// grace is deleted again.
	case rec.State.Terminal():
		p.reap(f, name, true, removal{reason: reasonFinished, still: func(r *fleet.RunnerRecord) bool { return r.State.Terminal() }})
	case rec.State == fleet.RunnerBooting && p.now.Sub(bootStart(rec)) > f.BootTimeout:
		p.reap(f, name, true, removal{
			reason: reasonBootTimeout,
			text:   fmt.Sprintf("boot timeout: not up within %s", f.BootTimeout),
			still:  func(r *fleet.RunnerRecord) bool { return r.State == fleet.RunnerBooting },
		})
	case stoppedUntaken(in, rec) && p.now.Sub(rec.UpdatedAt) >= stoppedGrace:
		// Powered off before it took a job (its bootstrap gave up: a 410 for a
		// config claimed by a process that died): it will never come up, and its
		// job must not wait for the boot timeout.
		p.stopped(in, rec, ghByID, ghByName)
	case rec.State == fleet.RunnerIdle:
		p.idle(in, rec, ghByID, ghByName)
	}
}

func bootStart(r *fleet.RunnerRecord) time.Time {
	if !r.BootingAt.IsZero() {
		return r.BootingAt
	}
	return r.CreatedAt
}

// idle judges an idle runner: gone from GitHub after it registered, or idle too long
// with no job that needs it.
func (p *pass) idle(in *instance, rec *fleet.RunnerRecord, ghByID map[int64]github.Runner, ghByName map[string]github.Runner) {
	j, f, name := p.j, in.flavor, in.Name
	if !p.sum.GitHubChecked {
		return
	}
	gh, registered := ghByID[rec.GitHubRunnerID]
	if !registered {
		gh, registered = ghByName[name]
	}
	stillIdle := func(r *fleet.RunnerRecord) bool { return r.State == fleet.RunnerIdle && r.TookJob == 0 }
	idleSince := rec.IdleAt
	if rec.UpdatedAt.After(idleSince) {
		idleSince = rec.UpdatedAt // became spare (or was adopted) later: its TTL starts then
	}
	idleFor := p.now.Sub(idleSince)
	if rec.GitHubRunnerID != 0 && !registered {
		if idleFor < goneGrace {
			return // just registered (listings lag), or its job's events are on their way
		}
		// A listing may lag behind; ask for this one before deleting a live instance.
		if !p.canDelete() || !p.call() {
			return
		}
		_, err := j.opts.GitHub.GetRunner(p.ctx, rec.GitHubRunnerID)
		switch {
		case errors.Is(err, github.ErrNotFound):
			p.reap(f, name, true, removal{reason: reasonRunnerGone, text: "github registration gone", still: stillIdle})
		case err != nil:
			p.fail(fmt.Errorf("check runner %s on github: %w", name, err))
		}
		return
	}
	if idleFor <= f.IdleTTL || rec.TookJob != 0 {
		return
	}
	// An idle runner offline on GitHub long after it came up has lost its runner
	// program: its job waits for nothing, so it goes even if the job still waits
	// (and gets another). Until the boot timeout, offline may just mean its program
	// is still starting.
	offline := registered && gh.Status == "offline" && idleFor > max(f.IdleTTL, f.BootTimeout)
	if !rec.Spare && !offline && p.jobQueued(rec.ForJob) {
		return // its job still waits for it
	}
	if rec.Pool && rec.Spare && !offline && !p.poolBeyondMin(f) {
		p.keep("pool")
		return // the warm pool keeps min_idle of them however long they idle
	}
	reason, text := reasonIdleTTL, "idle past idle_ttl"
	if offline {
		reason, text = reasonOffline, "runner offline while idle"
	}
	if registered && gh.Busy {
		p.keep("busy")
		return
	}
	if !p.canDelete() {
		return
	}
	if registered {
		// GitHub decides atomically whether the runner is idle: removing a busy one
		// answers 422, and then it keeps running its job.
		if !p.call() {
			return
		}
		err := j.opts.GitHub.DeleteRunner(p.ctx, gh.ID)
		switch {
		case errors.Is(err, github.ErrRunnerBusy):
			p.keep("busy")
			return
		case err != nil:
			p.fail(fmt.Errorf("remove idle runner %s from github: %w", name, err))
			return
		}
		// The registration is gone: nothing can give it a job any more.
		p.reap(f, name, true, removal{reason: reason, text: text})
		return
	}
	p.reap(f, name, true, removal{reason: reason, text: text, still: stillIdle})
}

// poolBeyondMin reports whether the flavor's warm pool is larger than its min_idle
// now (a pool made smaller, a min_idle_schedule window closed, or filled while a
// job's runner went spare into it), and
// counts one reaped pool runner against the excess when it is.
func (p *pass) poolBeyondMin(f *Flavor) bool {
	excess, read := p.poolExcess[f.Name]
	if !read {
		capRec, err := p.j.fleet.Capacity(p.ctx, f.Name)
		if err != nil {
			p.fail(fmt.Errorf("read the pool of %s: %w", f.Name, err))
			excess = 0 // keep them: the next pass reads again
		} else {
			excess = capRec.PoolSize() - f.MinIdle.At(p.now)
		}
	}
	if excess <= 0 {
		p.poolExcess[f.Name] = excess
		return false
	}
	p.poolExcess[f.Name] = excess - 1
	return true
}

// record judges a runner record by itself: creates abandoned by a crashed process,
// and runners whose instance vanished.
func (p *pass) record(f *Flavor, rec *fleet.RunnerRecord, hasInstance bool) {
	j := p.j
	if rec.Protected || j.protected[rec.Name] {
		return
	}
	switch {
	case rec.State == fleet.RunnerCreating && p.now.After(rec.CreatingUntil):
		// The create lease ran out (its process crashed, or a retry is due: then the
		// consumer resumes it itself). Judge it at the next pass if it is still so.
		if p.marked(fmt.Sprintf("create/%s/%d", rec.Name, rec.CreatingUntil.UnixNano())) {
			p.crashedCreate(f, rec, hasInstance)
		}
	case rec.State.Live() && rec.State != fleet.RunnerCreating && !hasInstance:
		// Marked first: an instance created after the listing is seen next time.
		if p.marked("vanished/" + rec.Name) {
			p.reap(f, rec.Name, true, removal{
				reason: reasonInstanceGone, text: "instance vanished", gone: true,
				still: func(r *fleet.RunnerRecord) bool { return r.State.Live() && r.State != fleet.RunnerCreating },
			})
		}
	case rec.State.Terminal() && !rec.InstanceDeleted && !hasInstance:
		// A delete whose record write was lost, or a failed create whose instance
		// could not be deleted. Not listed is gone, unless the create's outcome was
		// unknown: its instance may still appear until HoldSlotUntil, and its slot
		// stays held until then.
		if p.now.Before(rec.HoldSlotUntil) {
			p.keep(keptOutcomeUnknown)
			return
		}
		p.reap(f, rec.Name, true, removal{reason: reasonInstanceGone, gone: true})
	}
}

// keptOutcomeUnknown counts runners whose create's outcome was unknown and whose
// instance may still appear: their slots stay held.
const keptOutcomeUnknown = "outcome_unknown"

// crashedCreate hands an abandoned create back to the consumers when its job still
// waits (a queued event for the job makes a consumer take over the expired create
// lease), or else removes it.
func (p *pass) crashedCreate(f *Flavor, rec *fleet.RunnerRecord, hasInstance bool) {
	j := p.j
	job := p.job(rec.ForJob)
	if job != nil && rec.TookJob == 0 && !rec.Spare && p.jobQueued(rec.ForJob) {
		ev := &queue.JobEvent{
			// One request per abandoned create: the id names the create lease that
			// ran out, so repeated passes store it once.
			DeliveryID: fmt.Sprintf("janitor-resume-%s-%d", rec.Name, rec.CreatingUntil.UnixMilli()),
			ReceivedAt: p.now.UTC(), Source: queue.SourceReplacement, Action: queue.ActionQueued,
			JobID: job.ID, RunID: job.RunID, RunAttempt: job.RunAttempt, Repo: job.Repo,
			Labels: job.Labels, Flavor: job.Flavor, Replacement: len(job.Runners), ReplacementReason: queue.ReplaceSwap,
		}
		res, err := j.opts.Conn.PublishJobEvent(p.ctx, ev)
		if err != nil {
			p.fail(fmt.Errorf("hand back the create of %s: %w", rec.Name, err))
			return
		}
		if !res.Duplicate {
			p.sum.Resumed++
			j.metrics.resumed.WithLabelValues(f.Name).Inc()
			if retryPending(rec) {
				j.logger.Info("create retry overdue (no consumer took it up by its due time) handed back to the consumers",
					logkey.Runner, rec.Name, logkey.JobID, job.ID, logkey.Attempt, rec.Attempts, "retry_due", rec.CreatingUntil, "last_error", rec.LastError)
			} else {
				j.logger.Info("create abandoned by a crashed process handed back to the consumers", logkey.Runner, rec.Name, logkey.JobID, job.ID)
			}
		}
		return
	}
	abandoned := func(r *fleet.RunnerRecord) bool {
		return r.State == fleet.RunnerCreating && p.now.After(r.CreatingUntil)
	}
	text := "create abandoned by a crashed process"
	if retryPending(rec) {
		text = "create retry abandoned: its job no longer waits"
	}
	p.reap(f, rec.Name, true, removal{reason: reasonCrashedCreate, text: text, still: abandoned, gone: !hasInstance})
}

// retryPending tells a create whose lease ran out while a retry was due (a failed
// attempt, a full quota: the lease is kept until the retry, fleet.FailCreate) from
// one whose process died mid-create. Both are handed back the same way; only what
// the log says differs, so that a late retry is not reported as a crash. A failed
// attempt clears the bootstrap token and the next attempt writes a new one, so a
// retry that was taken up and then died mid-create counts as a crash.
func retryPending(rec *fleet.RunnerRecord) bool {
	return rec.LastError != "" && rec.TokenHash == ""
}

// registration judges one GitHub registration with our prefix: offline, with no
// instance, and no runner still coming up → removed.
func (p *pass) registration(r github.Runner, instances map[string]*instance, records map[string]*fleet.RunnerRecord, listed map[string]bool) {
	j := p.j
	if j.protected[r.Name] {
		return
	}
	rec := records[r.Name]
	f := j.flavorOf(r.Name, rec)
	if f == nil || !listed[f.Name] {
		return
	}
	if _, ok := instances[r.Name]; ok {
		return
	}
	if rec != nil && (!rec.State.Terminal() || rec.Protected) {
		return // still coming up, or kept on purpose
	}
	if r.Status != "offline" || r.Busy {
		return
	}
	if !p.canDelete() || !p.call() {
		return
	}
	err := j.opts.GitHub.DeleteRunner(p.ctx, r.ID)
	switch {
	case errors.Is(err, github.ErrRunnerBusy):
		p.keep("busy")
	case err != nil:
		p.fail(fmt.Errorf("remove orphan registration %s: %w", r.Name, err))
	default:
		p.deletes--
		p.sum.RegistrationsRemoved++
		j.metrics.registrations.WithLabelValues(reasonOrphan).Inc()
		j.logger.Info("janitor removed an orphan github registration", logkey.Runner, r.Name, "github_runner_id", r.ID)
	}
}

// flavorOf finds a runner's flavor from its record, else from its name
// ("<deployment>-<flavor>-<job>-<n>"; the longest matching flavor wins).
func (j *Janitor) flavorOf(name string, rec *fleet.RunnerRecord) *Flavor {
	if rec != nil {
		return j.flavors[rec.Flavor]
	}
	var best *Flavor
	for _, n := range j.names {
		if strings.HasPrefix(name, j.opts.DeploymentID+"-"+n+"-") && (best == nil || len(n) > len(best.Name)) {
			best = j.flavors[n]
		}
	}
	return best
}

// slots releases capacity slots nobody else will, once their instance is confirmed
// gone: a slot whose runner has no record and no instance listed (past a grace, and
// on a second pass), or whose runner is over and its instance deleted or no longer
// listed (for a create of unknown outcome, only once the instance can no longer
// appear). A slot whose instance is still listed is freed by the rule that deletes
// the instance (orphan, finished), after the delete.
//
// The listing was taken before the records were read: a record is written before
// its instance is created, so an instance made after the listing has a record, and
// no slot without a record belongs to an instance missing from the listing.
func (p *pass) slots(f *Flavor, instances map[string]*instance, records map[string]*fleet.RunnerRecord) {
	j := p.j
	capRec, err := j.fleet.Capacity(p.ctx, f.Name)
	if err != nil {
		p.fail(err)
		return
	}
	for _, name := range slices.Sorted(maps.Keys(capRec.Slots)) {
		slot := capRec.Slots[name]
		rec := records[name]
		_, hasInstance := instances[name]
		switch {
		case rec == nil:
			if hasInstance || p.now.Sub(slot.Since) < SlotGrace || !p.marked("slot/"+f.Name+"/"+name) {
				continue
			}
			// The records came from a scan, which a replica catching up may serve a
			// moment behind: ask the leader before freeing the slot of a live runner.
			if _, err := j.fleet.Runner(p.ctx, name); !errors.Is(err, fleet.ErrNoRecord) {
				continue
			}
		case rec.State.Terminal() && (rec.InstanceDeleted || !hasInstance) && !p.now.Before(rec.HoldSlotUntil):
		default:
			continue
		}
		if err := j.fleet.FreeSlot(p.ctx, f.Name, name); err != nil {
			p.fail(err)
			continue
		}
		p.sum.SlotsReleased++
		j.metrics.released.WithLabelValues(f.Name).Inc()
		j.logger.Info("janitor released a leaked capacity slot", logkey.Flavor, f.Name, logkey.Runner, name, "held_since", slot.Since)
	}
}

// reap removes a runner within the pass's delete bound and counts what happened. It
// reports whether the runner was removed (false: deferred, failed, protected or
// changed since it was judged).
func (p *pass) reap(f *Flavor, name string, hasRecord bool, rm removal) bool {
	if !p.canDelete() {
		return false
	}
	outcome, job, err := p.j.reap(p.ctx, f, name, hasRecord, removal{
		reason: rm.reason, text: rm.text, still: rm.still, gone: rm.gone, deferReplacement: true,
	})
	switch {
	case err != nil:
		p.fail(err)
		return false
	case outcome == protected:
		p.keep("protected")
		return false
	case outcome == changed:
		return false
	}
	p.deletes--
	if rm.gone {
		p.sum.Settled++
	} else {
		p.sum.Deleted[rm.reason]++
	}
	if job != 0 && p.j.requestRunner(context.WithoutCancel(p.ctx), f.Name, job, name, queue.ReplaceLost) {
		p.sum.Replacements++
	}
	return true
}

// marked reports whether key was already suspect in an earlier pass of this term, at
// least half an interval ago, and keeps it for the next pass. Periodic passes are an
// interval apart anyway; the age matters for a pass run on demand (`spawner
// reconcile`) right after a periodic one, which must not take an instance whose
// create is still being recorded for an orphan.
func (p *pass) marked(key string) bool {
	first, ok := p.j.marks[key]
	if !ok {
		first = mark{pass: p.j.pass, at: p.now}
		p.sum.Marked++
	}
	p.next[key] = first
	return first.pass < p.j.pass && p.now.Sub(first.at) >= p.j.opts.Interval/2
}

func (p *pass) canDelete() bool {
	if p.deletes > 0 {
		return true
	}
	p.sum.Deferred++
	p.j.metrics.kept.WithLabelValues("bound").Inc()
	return false
}

func (p *pass) call() bool {
	if p.calls > 0 {
		p.calls--
		return true
	}
	p.sum.Deferred++
	p.j.metrics.kept.WithLabelValues("bound").Inc()
	return false
}

func (p *pass) keep(reason string) {
	p.sum.Kept[reason]++
	p.j.metrics.kept.WithLabelValues(reason).Inc()
}

func (p *pass) fail(err error) {
	if p.ctx.Err() != nil {
		return
	}
	p.sum.Errors++
	if p.sum.FirstError == "" {
		p.sum.FirstError = err.Error()
	}
	p.j.logger.Warn("reconcile step failed; retried next pass", logkey.Error, err)
}

// job reads a job record once per pass (nil when missing or unreadable).
func (p *pass) job(id int64) *fleet.JobRecord {
	if id == 0 {
		return nil
	}
	if j, ok := p.jobs[id]; ok {
		return j
	}
	j, err := p.j.fleet.Job(p.ctx, id)
	if err != nil {
		j = nil
	}
	p.jobs[id] = j
	return j
}

// jobQueued reports whether the job still waits for a runner.
func (p *pass) jobQueued(id int64) bool {
	j := p.job(id)
	return j != nil && j.State == fleet.JobQueued && !j.Gone && !j.DeadLettered
}

func counts(m map[string]int) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

func round(s float64) float64 { return float64(int64(s*1000)) / 1000 }
