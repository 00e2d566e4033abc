package github

import (
	"context"
	"fmt"
	"time"

	gh "github.com/google/go-github/v62/github"
)

// Job is a workflow job as the REST API shows it.
type Job struct {
	ID, RunID   int64
	RunAttempt  int
	Name        string // the job's name in the workflow
	Status      string // queued | in_progress | completed | waiting
	Conclusion  string // "" until completed
	RunnerName  string
	RunnerID    int64
	Labels      []string
	Repo        string // owner/name
	HTMLURL     string
	CreatedAt   time.Time
	StartedAt   time.Time
	CompletedAt time.Time
}

func jobOf(repo string, j *gh.WorkflowJob) Job {
	return Job{
		ID: j.GetID(), RunID: j.GetRunID(), RunAttempt: int(j.GetRunAttempt()), Name: j.GetName(),
		Status: j.GetStatus(), Conclusion: j.GetConclusion(),
		RunnerName: j.GetRunnerName(), RunnerID: j.GetRunnerID(),
		Labels: labelsOf(j.Labels), Repo: repo, HTMLURL: j.GetHTMLURL(),
		CreatedAt: j.GetCreatedAt().Time, StartedAt: j.GetStartedAt().Time, CompletedAt: j.GetCompletedAt().Time,
	}
}

// GetJob returns a workflow job of repo ("owner/name"); ErrNotFound when it does not
// exist. Optional priority.
func (c *Client) GetJob(ctx context.Context, repo string, jobID int64) (Job, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return Job{}, fmt.Errorf("get job %d: %w", jobID, err)
	}
	var j *gh.WorkflowJob
	err = c.do(ctx, call{op: "get_job", prio: optional, idempotent: true}, func(ctx context.Context, api *gh.Client) (resp *gh.Response, err error) {
		j, resp, err = api.Actions.GetWorkflowJobByID(ctx, owner, name, jobID)
		return resp, err
	})
	if err != nil {
		return Job{}, fmt.Errorf("get job %d of %s: %w", jobID, repo, err)
	}
	return jobOf(repo, j), nil
}

// ListRunJobs returns the jobs of a workflow run's latest attempt, over all pages.
// Optional priority.
func (c *Client) ListRunJobs(ctx context.Context, repo string, runID int64) ([]Job, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return nil, fmt.Errorf("list jobs of run %d: %w", runID, err)
	}
	var out []Job
	for page := 1; page != 0; {
		var jobs *gh.Jobs
		var next int
		err := c.do(ctx, call{op: "list_run_jobs", prio: optional, idempotent: true}, func(ctx context.Context, api *gh.Client) (*gh.Response, error) {
			j, resp, err := api.Actions.ListWorkflowJobs(ctx, owner, name, runID, &gh.ListWorkflowJobsOptions{Filter: "latest", ListOptions: gh.ListOptions{Page: page, PerPage: 100}})
			jobs = j
			if resp != nil {
				next = resp.NextPage
			}
			return resp, err
		})
		if err != nil {
			return nil, fmt.Errorf("list jobs of run %d of %s: %w", runID, repo, err)
		}
		for _, j := range jobs.Jobs {
			out = append(out, jobOf(repo, j))
		}
		page = next
	}
	return out, nil
}

// ListQueuedJobs finds the queued jobs of repo: the jobs with status queued of the
// workflow runs that are queued or in progress (a run in progress may still have queued
// jobs). It is how a poller finds jobs whose webhooks never arrived. Optional priority.
func (c *Client) ListQueuedJobs(ctx context.Context, repo string) ([]Job, error) {
	runIDs, err := c.ListActiveRuns(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("list queued jobs: %w", err)
	}
	var out []Job
	for _, id := range runIDs {
		jobs, err := c.ListRunJobs(ctx, repo, id)
		if err != nil {
			return nil, fmt.Errorf("list queued jobs: %w", err)
		}
		for _, j := range jobs {
			if j.Status == "queued" {
				out = append(out, j)
			}
		}
	}
	return out, nil
}

// ListActiveRuns returns the ids of repo's workflow runs that are queued or in
// progress (a run in progress may still have queued jobs). Optional priority.
func (c *Client) ListActiveRuns(ctx context.Context, repo string) ([]int64, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return nil, fmt.Errorf("list active runs: %w", err)
	}
	seen := map[int64]bool{}
	var runIDs []int64
	for _, status := range []string{"queued", "in_progress"} {
		for page := 1; page != 0; {
			var runs *gh.WorkflowRuns
			var next int
			err := c.do(ctx, call{op: "list_workflow_runs", prio: optional, idempotent: true}, func(ctx context.Context, api *gh.Client) (*gh.Response, error) {
				r, resp, err := api.Actions.ListRepositoryWorkflowRuns(ctx, owner, name, &gh.ListWorkflowRunsOptions{Status: status, ListOptions: gh.ListOptions{Page: page, PerPage: 100}})
				runs = r
				if resp != nil {
					next = resp.NextPage
				}
				return resp, err
			})
			if err != nil {
				return nil, fmt.Errorf("list %s runs of %s: %w", status, repo, err)
			}
			for _, r := range runs.WorkflowRuns {
				if !seen[r.GetID()] {
					seen[r.GetID()] = true
					runIDs = append(runIDs, r.GetID())
				}
			}
			page = next
		}
	}
	return runIDs, nil
}
