package fleet

// The state machines of a runner and of a job, as tables: every move the spawner
// makes goes through RunnerMayMove or JobMayMove (State.Advance), and a move that is
// not listed is refused. Events reach the spawner late, twice and out of order
// (webhooks, instance callbacks, the janitor's listings), so a refused move is not an
// error: it is an event that something newer has already overtaken.

// runnerMoves lists, for each runner state, the states it may move to. The empty
// state is a record not yet written.
//
//	creating → booting → idle → busy → finished
//	    └─────────┴────────┴──────────→ failed (never ran a job)
//
// A step may be skipped (an instance can fetch its config, or take its job, before
// the worker that created it has written "booting"), but never taken back, and a
// runner that was busy ran a job: it ends finished, not failed.
var runnerMoves = map[RunnerState][]RunnerState{
	"":             {RunnerCreating, RunnerBooting, RunnerIdle, RunnerBusy, RunnerFinished, RunnerFailed},
	RunnerCreating: {RunnerBooting, RunnerIdle, RunnerBusy, RunnerFinished, RunnerFailed},
	RunnerBooting:  {RunnerIdle, RunnerBusy, RunnerFinished, RunnerFailed},
	RunnerIdle:     {RunnerBusy, RunnerFinished, RunnerFailed},
	RunnerBusy:     {RunnerFinished},
	RunnerFinished: nil,
	RunnerFailed:   nil,
}

// jobMoves lists, for each job state, the states it may move to: only forward, and a
// step may be skipped (a job cancelled while queued completes without running).
var jobMoves = map[JobState][]JobState{
	"":            {JobQueued, JobInProgress, JobCompleted},
	JobQueued:     {JobInProgress, JobCompleted},
	JobInProgress: {JobCompleted},
	JobCompleted:  nil,
}

// jobRank orders job states for JobState.After.
var jobRank = map[JobState]int{JobQueued: 1, JobInProgress: 2, JobCompleted: 3}

// RunnerMayMove reports whether a runner in state from may move to state to.
func RunnerMayMove(from, to RunnerState) bool {
	for _, s := range runnerMoves[from] {
		if s == to {
			return true
		}
	}
	return false
}

// JobMayMove reports whether a job in state from may move to state to.
func JobMayMove(from, to JobState) bool {
	for _, s := range jobMoves[from] {
		if s == to {
			return true
		}
	}
	return false
}
