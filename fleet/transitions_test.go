package fleet

import (
	"fmt"
	"testing"
)

// TestRunnerMovesExhaustively checks every (from, to) pair of runner states, the
// unwritten "" included, against the lifecycle written out here once more in words.
func TestRunnerMovesExhaustively(t *testing.T) {
	order := map[RunnerState]int{"": 0, RunnerCreating: 1, RunnerBooting: 2, RunnerIdle: 3, RunnerBusy: 4, RunnerFinished: 5, RunnerFailed: 5}
	states := append([]RunnerState{""}, RunnerStates...)
	want := func(from, to RunnerState) bool {
		switch {
		case from.Terminal(): // a life that is over stays over
			return false
		case to == "": // nothing goes back to unwritten
			return false
		case from == RunnerBusy && to == RunnerFailed: // it ran a job: finished
			return false
		}
		return order[to] > order[from]
	}
	allowed := 0
	for _, from := range states {
		for _, to := range states {
			got := RunnerMayMove(from, to)
			if got != want(from, to) {
				t.Errorf("RunnerMayMove(%q, %q) = %v, want %v", from, to, got, want(from, to))
			}
			s := from
			if changed := s.Advance(to); changed != got || (got && s != to) || (!got && s != from) {
				t.Errorf("Advance %q → %q: changed %v, state %q", from, to, changed, s)
			}
			if got {
				allowed++
			}
		}
	}
	// 6 from "", 5 from creating, 4 from booting, 3 from idle, 1 from busy.
	if allowed != 19 {
		t.Errorf("%d runner moves allowed, want 19", allowed)
	}
	if len(runnerMoves) != len(states) {
		t.Errorf("the runner table has %d states, the lifecycle %d", len(runnerMoves), len(states))
	}
}

// TestJobMovesExhaustively does the same for jobs: only forward.
func TestJobMovesExhaustively(t *testing.T) {
	states := []JobState{"", JobQueued, JobInProgress, JobCompleted}
	for i, from := range states {
		for j, to := range states {
			want := j > i
			t.Run(fmt.Sprintf("%s→%s", from, to), func(t *testing.T) {
				if got := JobMayMove(from, to); got != want {
					t.Errorf("JobMayMove = %v, want %v", got, want)
				}
				s := from
				if s.Advance(to) != want {
					t.Errorf("Advance disagrees with the table")
				}
			})
		}
	}
	if !JobCompleted.After(JobQueued) || JobQueued.After(JobInProgress) {
		t.Error("After does not follow the job order")
	}
}
