package janitor

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// maxRedeliveries caps the redeliveries of one delivery: a redelivery that failed
// too (the receiver still down) is tried again at a later sweep, but a delivery the
// receiver keeps refusing is not asked for forever.
const maxRedeliveries = 3

// sweepLoop sweeps right away and then every SweepInterval, until ctx ends.
func (j *Janitor) sweepLoop(ctx context.Context) {
	repeat(ctx, func() time.Duration { j.sweep(ctx); return j.opts.SweepInterval })
}

// sweep redelivers the workflow_job deliveries of the lookback window whose attempts
// all failed. GitHub never redelivers on its own, so a webhook our receiver did not
// take (down, overloaded, stream full) is otherwise lost. Each GUID is redelivered
// once per failed attempt, remembered in KV so that a restart or failover does not
// ask twice; a delivery with any successful attempt is never redelivered.
func (j *Janitor) sweep(ctx context.Context) int {
	hook := *j.opts.Hook
	since := j.opts.Now().Add(-j.opts.SweepLookback)
	calls := j.opts.MaxGitHubCallsPerPass - 1
	list, err := j.opts.GitHub.ListDeliveries(ctx, hook, since)
	if err != nil {
		if ctx.Err() == nil {
			j.logger.Warn("cannot list webhook deliveries; sweeping again later", logkey.Error, err)
		}
		return 0
	}
	byGUID := map[string][]github.Delivery{}
	for _, d := range list {
		if d.Event == "workflow_job" && d.GUID != "" {
			byGUID[d.GUID] = append(byGUID[d.GUID], d)
		}
	}
	type failed struct {
		guid   string
		newest github.Delivery
	}
	var todo []failed
	for guid, attempts := range byGUID {
		if slices.ContainsFunc(attempts, func(d github.Delivery) bool { return !d.Failed() }) {
			continue // it reached us once: never again
		}
		newest := slices.MaxFunc(attempts, func(a, b github.Delivery) int { return compareInt64(a.ID, b.ID) })
		todo = append(todo, failed{guid, newest})
	}
	// Oldest first: their jobs have waited longest.
	slices.SortFunc(todo, func(a, b failed) int { return compareInt64(a.newest.ID, b.newest.ID) })
	n := 0
	for _, f := range todo {
		if ctx.Err() != nil {
			break
		}
		if calls <= 0 {
			j.logger.Info("sweep bound reached; the rest waits for the next sweep", "left", len(todo)-n)
			break
		}
		asked, ok := j.redeliver(ctx, hook, f.guid, f.newest)
		if asked {
			calls--
		}
		if ok {
			n++
		}
	}
	if n > 0 || len(todo) > 0 {
		j.logger.Info("webhook sweep", "deliveries", len(list), "failed_guids", len(todo), "redelivered", n)
	}
	return n
}

// redeliver asks GitHub to redeliver one failed delivery, unless this GUID's last
// redelivery followed the same attempt (not back yet) or the cap is reached. asked
// says whether GitHub was called, ok whether it accepted.
func (j *Janitor) redeliver(ctx context.Context, hook github.HookRef, guid string, newest github.Delivery) (asked, ok bool) {
	logger := j.logger.With(logkey.DeliveryID, guid, logkey.Action, newest.Action)
	var prev queue.RedeliveryRecord
	_, err := j.opts.State.UpdateRedelivery(ctx, guid, func(r *queue.RedeliveryRecord) error {
		if r.AfterAttempt >= newest.ID || r.Count >= maxRedeliveries {
			return queue.ErrSkip
		}
		prev = *r
		r.Count++
		r.AfterAttempt = newest.ID
		r.At = j.opts.Now().UTC()
		return nil
	})
	if errors.Is(err, queue.ErrSkip) {
		return false, false
	}
	if err != nil {
		logger.Warn("cannot record the redelivery; not redelivering", logkey.Error, err)
		return false, false
	}
	if err := j.opts.GitHub.Redeliver(ctx, hook, newest.ID); err != nil {
		// Not redelivered: forget the attempt so the next sweep asks again.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancel()
		_, _ = j.opts.State.UpdateRedelivery(rctx, guid, func(r *queue.RedeliveryRecord) error {
			if r.AfterAttempt != newest.ID {
				return queue.ErrSkip
			}
			*r = prev
			r.GUID = guid
			return nil
		})
		logger.Warn("redelivery refused; sweeping again later", logkey.Error, err)
		return true, false
	}
	j.metrics.redelivered.Inc()
	logger.Info("failed webhook delivery redelivered", "attempt", newest.ID, "status_code", newest.StatusCode, "status", newest.Status)
	return true, true
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
