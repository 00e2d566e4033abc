package janitor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// pollLoop polls right away and then every PollInterval (four times that while the
// GitHub budget runs low), until ctx ends.
func (j *Janitor) pollLoop(ctx context.Context) {
	repeat(ctx, func() time.Duration { j.poll(ctx); return j.pollInterval() })
}

// pollInterval slows the poller down while less than a fifth of the GitHub budget
// is left: listing runs and jobs is optional work, minting runners is not.
func (j *Janitor) pollInterval() time.Duration {
	rl, ok := j.opts.GitHub.(rateLimiter)
	if !ok {
		return j.opts.PollInterval
	}
	info := rl.RateLimit()
	if info.Limit > 0 && info.Remaining*5 < info.Limit && j.opts.Now().Before(info.Reset) {
		j.logger.Info("github budget low; polling less often", "remaining", info.Remaining, "limit", info.Limit)
		return 4 * j.opts.PollInterval
	}
	return j.opts.PollInterval
}

// runLister is what a GitHub client offers to poll run by run, so that runs whose
// jobs the spawner already knows are not listed (*github.Client satisfies it). A
// client without it is polled through ListQueuedJobs, every run listed.
type runLister interface {
	ListActiveRuns(ctx context.Context, repo string) ([]int64, error)
	ListRunJobs(ctx context.Context, repo string, runID int64) ([]github.Job, error)
}

// queuedJobs lists repo's queued jobs, skipping the runs in known (a job record names
// them): their webhooks came, and a job record exists for what they announced.
// Listing a run's jobs is a call per run, most of a poll's cost in a burst. A sibling
// job whose webhook alone was lost is left to the sweeper, which redelivers the
// deliveries GitHub recorded as failed.
func (j *Janitor) queuedJobs(ctx context.Context, repo string, known map[int64]bool) ([]github.Job, error) {
	rl, ok := j.opts.GitHub.(runLister)
	if !ok {
		return j.opts.GitHub.ListQueuedJobs(ctx, repo)
	}
	runs, err := rl.ListActiveRuns(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("list active runs: %w", err)
	}
	var out []github.Job
	for _, id := range runs {
		if known[id] {
			continue
		}
		jobs, err := rl.ListRunJobs(ctx, repo, id)
		if err != nil {
			return nil, fmt.Errorf("list jobs of run %d: %w", id, err)
		}
		for _, gj := range jobs {
			if gj.Status == "queued" {
				out = append(out, gj)
			}
		}
	}
	return out, nil
}

// knownRuns returns the runs of repo that job records name; nil (poll every run)
// when the records cannot be read.
func (j *Janitor) knownRuns(ctx context.Context) map[string]map[int64]bool {
	recs, err := j.fleet.Jobs(ctx)
	if err != nil {
		j.logger.Warn("job records unavailable; polling every run", logkey.Error, err)
		return nil
	}
	known := map[string]map[int64]bool{}
	for _, r := range recs {
		if known[r.Repo] == nil {
			known[r.Repo] = map[int64]bool{}
		}
		known[r.Repo][r.RunID] = true
	}
	return known
}

// poll finds the queued jobs of the listed repositories that no webhook announced
// (no job record), old enough that their webhook had its chance, and enqueues them
// as poller events. The intake's de-duplication (the event id names the job) and the
// consumer's job records make a second find harmless.
func (j *Janitor) poll(ctx context.Context) int {
	n := 0
	now := j.opts.Now()
	known := j.knownRuns(ctx)
	for _, repo := range j.opts.PollRepos {
		jobs, err := j.queuedJobs(ctx, repo, known[repo])
		if err != nil {
			if ctx.Err() == nil {
				j.logger.Warn("cannot list queued jobs; polling again later", logkey.Repo, repo, logkey.Error, err)
			}
			continue
		}
		for _, gj := range jobs {
			if ctx.Err() != nil {
				return n
			}
			if now.Sub(gj.CreatedAt) < j.opts.PollMinAge {
				continue
			}
			if _, err := j.fleet.Job(ctx, gj.ID); !errors.Is(err, fleet.ErrNoRecord) {
				continue // known (or unreadable: try next time)
			}
			flavor, ok := j.opts.Route(gj.Labels)
			if !ok || j.flavors[flavor] == nil {
				continue // not for our runners
			}
			created := gj.CreatedAt
			ev := &queue.JobEvent{
				ReceivedAt: now.UTC(), Source: queue.SourcePoller, Action: queue.ActionQueued,
				JobID: gj.ID, RunID: gj.RunID, RunAttempt: max(gj.RunAttempt, 1), JobName: gj.Name,
				Repo: gj.Repo, Org: strings.SplitN(gj.Repo, "/", 2)[0], Labels: gj.Labels, Flavor: flavor,
				HTMLURL: gj.HTMLURL, Status: gj.Status, CreatedAt: &created,
			}
			res, err := j.opts.Conn.PublishJobEvent(ctx, ev)
			if err != nil {
				j.logger.Warn("polled job not enqueued", logkey.JobID, gj.ID, logkey.Error, err)
				continue
			}
			if !res.Duplicate {
				n++
				j.metrics.polled.WithLabelValues(flavor).Inc()
				j.logger.Info("queued job no webhook announced enqueued", logkey.JobID, gj.ID, logkey.Repo, gj.Repo, logkey.Flavor, flavor)
			}
		}
	}
	return n
}
