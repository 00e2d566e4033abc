package control

import (
	"context"
	"time"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"
)

// Report is what `spawner status --json` prints: per flavor the events and jobs
// waiting and the capacity in use, the janitor, GitHub's budget as it last saw it,
// the dead letters and the stream's health. Fields are added, never renamed: scripts
// and monitoring parse it.
type Report struct {
	Flavors     []FlavorReport     `json:"flavors"`
	Janitor     JanitorStatus      `json:"janitor"`
	GitHub      *Budget            `json:"github_budget,omitempty"`
	DeadLetters uint64             `json:"dead_letters"`
	Stream      queue.StreamHealth `json:"stream"`
	NATS        NATSReport         `json:"nats"`
}

// FlavorReport is one flavor's line of the report.
type FlavorReport struct {
	Name string `json:"name"`
	// Pending is the number of job events stored and not yet consumed.
	Pending  uint64            `json:"pending"`
	ByAction map[string]uint64 `json:"pending_by_action"`
	// Queued is the number of jobs waiting for a runner to take them.
	Queued int `json:"queued"`
	// Runners counts runner records by state.
	Runners    map[string]int `json:"runners"`
	MaxRunners int            `json:"max_runners"`
	// SlotsInUse is the capacity held now (live runners and instances being deleted).
	SlotsInUse int  `json:"slots_in_use"`
	Paused     bool `json:"paused,omitempty"`
	// Pool is the warm pool: runners started for it that have not taken a job yet,
	// and its size now (min_idle, or an open min_idle_schedule window's; 0: no
	// pool).
	Pool    int `json:"pool"`
	MinIdle int `json:"min_idle"`
}

// NATSReport says where the report was read from.
type NATSReport struct {
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
}

// FlavorLimit names a configured flavor, its max_runners and its warm pool's size
// now.
type FlavorLimit struct {
	Name       string
	MaxRunners int
	MinIdle    int
}

// BuildReport reads the report of the given flavors; natsURL (redacted) is printed
// as where it was read from.
func BuildReport(ctx context.Context, conn *queue.Conn, st *queue.State, fl *fleet.Fleet, flavors []FlavorLimit, natsURL string) (*Report, error) {
	backlog, health, err := conn.JobBacklog(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{Stream: health, NATS: NATSReport{URL: natsURL, Connected: conn.Connected()}}
	jobs, err := fl.Jobs(ctx)
	if err != nil {
		return nil, err
	}
	runners, err := fl.Runners(ctx)
	if err != nil {
		return nil, err
	}
	if rep.DeadLetters, err = conn.DeadLetterCount(ctx); err != nil {
		return nil, err
	}
	snap, err := Snapshot(ctx, st, fl)
	if err != nil {
		return nil, err
	}
	rep.Janitor = snap.Janitor
	if lr := snap.Janitor.LastReconcile; lr != nil {
		rep.GitHub = lr.GitHubBudget
	}
	for _, f := range flavors {
		fr := FlavorReport{Name: f.Name, ByAction: map[string]uint64{}, Runners: map[string]int{}, MaxRunners: f.MaxRunners}
		if b := backlog[f.Name]; b != nil {
			fr.Pending, fr.ByAction = b.Pending, b.ByAction
		}
		for _, j := range jobs {
			if j.Flavor == f.Name && j.State == fleet.JobQueued && !j.Gone && !j.DeadLettered {
				fr.Queued++
			}
		}
		for _, r := range runners {
			if r.Flavor == f.Name {
				fr.Runners[string(r.State)]++
			}
		}
		capRec, err := fl.Capacity(ctx, f.Name)
		if err != nil {
			return nil, err
		}
		fr.SlotsInUse = len(capRec.Slots)
		fr.Pool, fr.MinIdle = capRec.PoolSize(), f.MinIdle
		fr.Paused = time.Now().Before(capRec.PausedUntil)
		rep.Flavors = append(rep.Flavors, fr)
	}
	return rep, nil
}
