package composerun

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// ghJob is a job as the fake GitHub's control API lists it.
type ghJob struct {
	ID          int64     `json:"id"`
	Labels      []string  `json:"labels"`
	Status      string    `json:"status"`
	Conclusion  string    `json:"conclusion"`
	RunnerName  string    `json:"runner_name"`
	CreatedAt   time.Time `json:"created_at"`
	StartedAt   time.Time `json:"started_at"`
	CompletedAt time.Time `json:"completed_at"`
}

// simStats is the sim-cloud's GET /_sim/stats.
type simStats struct {
	Created   int            `json:"created"`
	Deleted   int            `json:"deleted"`
	Live      map[string]int `json:"live"`
	MaxLive   map[string]int `json:"max_live"`
	Instances []simInstance  `json:"instances"`
}

type simInstance struct {
	Name   string `json:"name"`
	Flavor string `json:"flavor"`
	State  string `json:"state"`
}

// spawnerStatus is the part of `spawner status --json` the test reads.
type spawnerStatus struct {
	Flavors []flavorStatus `json:"flavors"`
	Janitor struct {
		Active string `json:"active"`
	} `json:"janitor"`
	DeadLetters uint64 `json:"dead_letters"`
}

type flavorStatus struct {
	Name       string         `json:"name"`
	Pending    uint64         `json:"pending"`
	Queued     int            `json:"queued"`
	Runners    map[string]int `json:"runners"`
	MaxRunners int            `json:"max_runners"`
	SlotsInUse int            `json:"slots_in_use"`
}

// outcome is what a run ended with.
type outcome struct {
	deployment string           // deployment_id: runner names start with it
	want       map[int64]string // job → the flavor it asked for
	jobs       []ghJob          // the fake GitHub's jobs at the end
	sim        simStats         // the cloud's counters at the end
	status     spawnerStatus    // the spawner's at the end
	runners    int              // runners still registered with the fake GitHub
}

// verdict counts what a run did and lists every way it failed: a job that did not
// succeed (lost), ran on another flavor's runner, a flavor over max_runners at any
// moment, and anything left behind.
type verdict struct {
	ran, lost, wrongFlavor int
	problems               []string
}

func check(o outcome) verdict {
	var v verdict
	byID := map[int64]ghJob{}
	for _, j := range o.jobs {
		byID[j.ID] = j
	}
	ids := make([]int64, 0, len(o.want))
	for id := range o.want {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		flavor := o.want[id]
		j, ok := byID[id]
		switch {
		case !ok:
			v.lost++
			v.problems = append(v.problems, fmt.Sprintf("job %d (%s): unknown to the fake GitHub", id, flavor))
		case j.Status != "completed" || j.Conclusion != "success":
			v.lost++
			v.problems = append(v.problems, fmt.Sprintf("job %d (%s): %s/%s, runner %q", id, flavor, j.Status, j.Conclusion, j.RunnerName))
		case !strings.HasPrefix(j.RunnerName, o.deployment+"-"+flavor+"-"):
			v.wrongFlavor++
			v.problems = append(v.problems, fmt.Sprintf("job %d (%s) ran on %q", id, flavor, j.RunnerName))
		default:
			v.ran++
		}
	}
	if len(o.status.Flavors) == 0 {
		v.problems = append(v.problems, "spawner status lists no flavor")
	}
	for _, f := range o.status.Flavors {
		if peak := o.sim.MaxLive[f.Name]; peak > f.MaxRunners {
			v.problems = append(v.problems, fmt.Sprintf("flavor %s: %d instances at once, max_runners %d", f.Name, peak, f.MaxRunners))
		}
		if f.SlotsInUse != 0 || f.Queued != 0 || f.Pending != 0 {
			v.problems = append(v.problems, fmt.Sprintf("flavor %s left: %d slots in use, %d jobs queued, %d events pending", f.Name, f.SlotsInUse, f.Queued, f.Pending))
		}
	}
	if n := len(o.sim.Instances); n > 0 {
		v.problems = append(v.problems, fmt.Sprintf("%d instances left in the cloud (%s, ...)", n, o.sim.Instances[0].Name))
	}
	if o.runners > 0 {
		v.problems = append(v.problems, fmt.Sprintf("%d runners left registered with GitHub", o.runners))
	}
	if o.status.DeadLetters > 0 {
		v.problems = append(v.problems, fmt.Sprintf("%d dead letters", o.status.DeadLetters))
	}
	return v
}

// TestCheck: each way a run can fail is caught (the stack test would otherwise pass
// whatever happened).
func TestCheck(t *testing.T) {
	good := func() outcome {
		o := outcome{
			deployment: "compose",
			want:       map[int64]string{1: "small", 2: "large"},
			jobs: []ghJob{
				{ID: 1, Status: "completed", Conclusion: "success", RunnerName: "compose-small-1-0"},
				{ID: 2, Status: "completed", Conclusion: "success", RunnerName: "compose-large-2-0"},
			},
			sim: simStats{MaxLive: map[string]int{"small": 10, "large": 4}},
		}
		o.status.Flavors = []flavorStatus{{Name: "small", MaxRunners: 10}, {Name: "large", MaxRunners: 4}}
		return o
	}
	if v := check(good()); len(v.problems) > 0 || v.ran != 2 {
		t.Fatalf("a clean run: %+v", v)
	}
	for name, tc := range map[string]struct {
		spoil func(*outcome)
		want  string
	}{
		"lost":           {func(o *outcome) { o.jobs = o.jobs[:1] }, "unknown to the fake GitHub"},
		"failed":         {func(o *outcome) { o.jobs[0].Conclusion = "failure" }, "completed/failure"},
		"queued":         {func(o *outcome) { o.jobs[1].Status, o.jobs[1].Conclusion = "queued", "" }, "queued/"},
		"wrong flavor":   {func(o *outcome) { o.jobs[0].RunnerName = "compose-large-1-0" }, `ran on "compose-large-1-0"`},
		"over capacity":  {func(o *outcome) { o.sim.MaxLive["large"] = 5 }, "5 instances at once, max_runners 4"},
		"slots held":     {func(o *outcome) { o.status.Flavors[0].SlotsInUse = 1 }, "1 slots in use"},
		"events pending": {func(o *outcome) { o.status.Flavors[1].Pending = 3 }, "3 events pending"},
		"instance left": {func(o *outcome) {
			o.sim.Instances = append(o.sim.Instances, simInstance{Name: "compose-small-9-0"})
		}, "1 instances left"},
		"runner left":  {func(o *outcome) { o.runners = 2 }, "2 runners left"},
		"dead letters": {func(o *outcome) { o.status.DeadLetters = 1 }, "1 dead letters"},
		"no status":    {func(o *outcome) { o.status.Flavors = nil }, "no flavor"},
	} {
		o := good()
		tc.spoil(&o)
		v := check(o)
		if !slices.ContainsFunc(v.problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
			t.Errorf("%s: problems %q, want one saying %q", name, v.problems, tc.want)
		}
	}
}
