package janitor

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// orphanGrace is how long a queued job may be left without a runner of its own after
// it lost its last one before the janitor asks for another. The consumer or the
// janitor asks at the moment of the loss; this catches a request that was never
// stored (NATS unavailable then) or never made, so that no job waits for good.
const orphanGrace = time.Minute

// orphanLookback bounds which losses a pass looks at: each costs a read of the job's
// record per pass, and a job that lost its runner an hour ago has had a request at
// every pass since the grace ran out.
const orphanLookback = time.Hour

// orphans asks for a runner for every queued job whose runners are all lost (taken by
// other jobs, or over without a job) since at least orphanGrace, with nothing of its
// own untaken. Failed creates are not losses here: the consumer retries them. The
// request is keyed by the job's most recent loss, the same key the request made at
// the loss had: while that one is stored (the duplicate window), this
// one is dropped as its duplicate, and a job that merely waits for capacity gets no
// second event. It goes out as a rescue: the consumer checks with GitHub that the
// job still waits before it spends a runner on it.
func (p *pass) orphans(records map[string]*fleet.RunnerRecord) {
	untaken := map[int64]bool{}
	lastLoss := map[int64]*fleet.RunnerRecord{}
	for _, r := range records {
		switch {
		case r.ForJob == 0 || r.Spare || r.TookJob == r.ForJob:
		case r.InstanceID == "" && r.TookJob == 0 && !r.Untaken():
			// A create given up: the consumer's retry (under another name) or its
			// dead letter owns the job.
		case r.Untaken():
			untaken[r.ForJob] = true
		case lastLoss[r.ForJob] == nil || r.UpdatedAt.After(lastLoss[r.ForJob].UpdatedAt):
			lastLoss[r.ForJob] = r
		}
	}
	for _, id := range slices.Sorted(maps.Keys(lastLoss)) {
		if p.ctx.Err() != nil {
			return
		}
		lost := lastLoss[id]
		f := p.j.flavors[lost.Flavor]
		if age := p.now.Sub(lost.UpdatedAt); untaken[id] || f == nil || age < orphanGrace || age > orphanLookback {
			continue
		}
		job := p.job(id)
		if job == nil || job.State != fleet.JobQueued || job.Gone || job.DeadLettered || p.now.Sub(job.UpdatedAt) < orphanGrace {
			continue
		}
		reason := queue.ReplaceLost
		if lost.TookJob != 0 {
			reason = queue.ReplaceStolen
			if p.job(lost.TookJob) != nil {
				reason = queue.ReplaceSwap
			}
		}
		if p.rescue(f.Name, job.ID, lost.Name, reason) {
			p.sum.Replacements++
		}
	}
}

// rescue publishes the request for a job found without a runner (fleet.Rescue) and
// reports whether it was stored now, not as a duplicate.
func (p *pass) rescue(flavor string, jobID int64, lost, reason string) bool {
	j := p.j
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), recordTimeout)
	defer cancel()
	logger := j.logger.With(logkey.JobID, jobID, logkey.Flavor, flavor)
	ev, res, err := j.fleet.Rescue(ctx, jobID, lost, reason)
	switch {
	case err != nil:
		p.fail(err)
		return false
	case ev == nil || res.Duplicate:
		return false
	}
	j.metrics.replacements.WithLabelValues(flavor).Inc()
	logger.Warn("queued job found with no runner of its own: replacement requested", logkey.Runner, lost, "reason", reason, "replacement", ev.Replacement)
	return true
}
