package control

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"
)

// StatusSnapshot is the fleet as the KV state shows it: what `spawner status` and the
// admin endpoint report. Fields are added, never renamed.
type StatusSnapshot struct {
	Janitor JanitorStatus  `json:"janitor"`
	Flavors []FlavorStatus `json:"flavors"`
}

// JanitorStatus names the active janitor and its last reconcile pass.
type JanitorStatus struct {
	// Active is the lease holder's id ("" when no janitor is active).
	Active        string       `json:"active"`
	LastReconcile *PassSummary `json:"last_reconcile,omitempty"`
}

// FlavorStatus is one flavor's runners, capacity and waiting jobs.
type FlavorStatus struct {
	Name string `json:"name"`
	// Runners counts runner records by state (terminal ones are kept for a week).
	Runners    map[fleet.RunnerState]int `json:"runners"`
	SlotsInUse int                       `json:"slots_in_use"`
	// QueuedJobs counts job records still waiting for a runner.
	QueuedJobs  int       `json:"queued_jobs"`
	Paused      bool      `json:"paused"`
	PausedUntil time.Time `json:"paused_until,omitzero"`
	PausedBy    string    `json:"paused_by,omitempty"`
}

// Snapshot reads the status of the given flavors and of every flavor the records
// mention. It only reads.
func Snapshot(ctx context.Context, state *queue.State, fl *fleet.Fleet, flavors ...string) (*StatusSnapshot, error) {
	snap := &StatusSnapshot{}
	active, err := state.LeaseHolder(ctx, JanitorLease)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	snap.Janitor.Active = active
	var last PassSummary
	switch err := state.Meta(ctx, queue.MetaLastReconcile, &last); {
	case err == nil:
		snap.Janitor.LastReconcile = &last
	case !errors.Is(err, queue.ErrNoRecord):
		return nil, fmt.Errorf("status: %w", err)
	}
	runners, err := fl.Runners(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	jobs, err := fl.Jobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	byName := map[string]*FlavorStatus{}
	get := func(name string) *FlavorStatus {
		f := byName[name]
		if f == nil {
			f = &FlavorStatus{Name: name, Runners: map[fleet.RunnerState]int{}}
			byName[name] = f
		}
		return f
	}
	for _, f := range flavors {
		get(f)
	}
	for _, r := range runners {
		get(r.Flavor).Runners[r.State]++
	}
	for _, j := range jobs {
		if j.Flavor != "" && j.State == fleet.JobQueued && !j.Gone && !j.DeadLettered {
			get(j.Flavor).QueuedJobs++
		}
	}
	now := time.Now()
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		f := byName[name]
		capRec, err := fl.Capacity(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
		f.SlotsInUse = len(capRec.Slots)
		if now.Before(capRec.PausedUntil) {
			f.Paused, f.PausedUntil, f.PausedBy = true, capRec.PausedUntil, capRec.PausedBy
		}
		snap.Flavors = append(snap.Flavors, *f)
	}
	return snap, nil
}

// RunnerFilter selects runner records; zero fields match all.
type RunnerFilter struct {
	Flavor string
	States []fleet.RunnerState
	// Live keeps only runners that are not over.
	Live bool
}

// ListRunners returns the runner records that match, oldest first.
func ListRunners(ctx context.Context, fl *fleet.Fleet, f RunnerFilter) ([]*fleet.RunnerRecord, error) {
	all, err := fl.Runners(ctx)
	if err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	out := slices.DeleteFunc(all, func(r *fleet.RunnerRecord) bool {
		return (f.Flavor != "" && r.Flavor != f.Flavor) ||
			(len(f.States) > 0 && !slices.Contains(f.States, r.State)) ||
			(f.Live && !r.State.Live())
	})
	slices.SortStableFunc(out, func(a, b *fleet.RunnerRecord) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// JobFilter selects job records; zero fields match all.
type JobFilter struct {
	Flavor string
	Repo   string
	States []fleet.JobState
}

// ListJobs returns the job records that match, oldest first.
func ListJobs(ctx context.Context, fl *fleet.Fleet, f JobFilter) ([]*fleet.JobRecord, error) {
	all, err := fl.Jobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	out := slices.DeleteFunc(all, func(j *fleet.JobRecord) bool {
		return (f.Flavor != "" && j.Flavor != f.Flavor) ||
			(f.Repo != "" && !strings.EqualFold(j.Repo, f.Repo)) ||
			(len(f.States) > 0 && !slices.Contains(f.States, j.State))
	})
	slices.SortStableFunc(out, func(a, b *fleet.JobRecord) int {
		ta, tb := a.ReceivedAt, b.ReceivedAt
		if c := ta.Compare(tb); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// JobView is a job record with how the run of the runner that took it ended (`jobs
// list`): the outcome, and a refused job's check code and reason.
type JobView struct {
	*fleet.JobRecord
	Outcome       fleet.Outcome `json:"outcome,omitempty"`
	CheckHTTPCode int           `json:"check_http_code,omitempty"`
	CheckReason   string        `json:"check_reason,omitempty"`
}

// ListJobViews is ListJobs with each job's outcome, from the runner that took it.
func ListJobViews(ctx context.Context, fl *fleet.Fleet, f JobFilter) ([]JobView, error) {
	jobs, err := ListJobs(ctx, fl, f)
	if err != nil {
		return nil, err
	}
	runners, err := fl.Runners(ctx)
	if err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	byJob := map[int64]*fleet.RunnerRecord{}
	for _, r := range runners {
		if r.TookJob != 0 && r.Outcome != fleet.OutcomeNone {
			byJob[r.TookJob] = r
		}
	}
	out := make([]JobView, len(jobs))
	for i, j := range jobs {
		out[i] = JobView{JobRecord: j}
		if r := byJob[j.ID]; r != nil {
			out[i].Outcome, out[i].CheckHTTPCode, out[i].CheckReason = r.Outcome, r.CheckHTTPCode, r.CheckReason
		}
	}
	return out, nil
}
