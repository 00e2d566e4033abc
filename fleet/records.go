package fleet

import (
	"time"
)

// JobState is a job's state as far as the spawner knows. It only moves forward,
// whatever order GitHub's events arrive in.
type JobState string

const (
	JobQueued     JobState = "queued"
	JobInProgress JobState = "in_progress"
	JobCompleted  JobState = "completed"
)

// Advance moves the state to next when the job transition table allows it (only
// forward: GitHub's events come in any order); a step back is ignored. It reports
// whether the state changed.
func (s *JobState) Advance(next JobState) bool {
	if !JobMayMove(*s, next) {
		return false
	}
	*s = next
	return true
}

// After reports whether s is later than other.
func (s JobState) After(other JobState) bool { return jobRank[s] > jobRank[other] }

// JobRecord is the spawner's record of one GitHub job (KV bucket spawner_jobs, key
// the job id).
type JobRecord struct {
	ID         int64    `json:"id"`
	Flavor     string   `json:"flavor"`
	Repo       string   `json:"repo"`
	RunID      int64    `json:"run_id"`
	RunAttempt int      `json:"run_attempt"`
	Labels     []string `json:"labels,omitempty"`
	State      JobState `json:"state"`
	Conclusion string   `json:"conclusion,omitempty"`
	// Runners are the runners spawned for (or adopted by) this job, oldest first.
	Runners []string `json:"runners,omitempty"`
	// Replacements counts runners given to the job after one of its runners was
	// taken by another job.
	Replacements int `json:"replacements"`
	// TakenBy is the runner that runs (or ran) the job, from the in_progress event;
	// it may be a runner spawned for another job, or not ours at all.
	TakenBy string `json:"taken_by,omitempty"`
	// Gone is set when GitHub answered 404 for the job: it will never run.
	Gone bool `json:"gone,omitempty"`
	// DeadLettered is set when the job's spawn was given up and dead-lettered.
	DeadLettered bool   `json:"dead_lettered,omitempty"`
	LastError    string `json:"last_error,omitempty"`
	// CreateAttempts counts the failed instance creates of runners whose names the
	// job gave up (a create whose outcome was unknown), so that its next runner
	// starts from there and max_attempts still bounds the job.
	CreateAttempts int `json:"create_attempts,omitempty"`
	// VerifiedAt is when GitHub last said the job was queued (a consumer's check):
	// for a while after, events for the job need not ask again.
	VerifiedAt time.Time `json:"verified_at,omitzero"`

	QueuedAt    time.Time `json:"queued_at,omitzero"`
	ReceivedAt  time.Time `json:"received_at,omitzero"` // when the queued webhook reached us
	StartedAt   time.Time `json:"started_at,omitzero"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// RunnerState is where a runner is in its single life.
type RunnerState string

const (
	// RunnerCreating: a capacity slot is held and the instance is being created.
	RunnerCreating RunnerState = "creating"
	// RunnerBooting: the instance exists; the runner has not fetched its config yet.
	RunnerBooting RunnerState = "booting"
	// RunnerIdle: the runner fetched its config and is online, waiting for a job.
	RunnerIdle RunnerState = "idle"
	// RunnerBusy: the runner took a job (pre-job hook or job running).
	RunnerBusy RunnerState = "busy"
	// RunnerFinished: the job ended; the instance is deleted or being deleted.
	RunnerFinished RunnerState = "finished"
	// RunnerFailed: the runner never ran a job (create failed for good, boot timed
	// out, flushed before it took a job).
	RunnerFailed RunnerState = "failed"
)

// RunnerStates lists every state in lifecycle order.
var RunnerStates = []RunnerState{RunnerCreating, RunnerBooting, RunnerIdle, RunnerBusy, RunnerFinished, RunnerFailed}

// Live reports whether the runner counts against its flavor's capacity.
func (s RunnerState) Live() bool {
	return s == RunnerCreating || s == RunnerBooting || s == RunnerIdle || s == RunnerBusy
}

// Terminal reports whether the runner's life is over.
func (s RunnerState) Terminal() bool { return s == RunnerFinished || s == RunnerFailed }

// Advance moves the state to next when the runner transition table allows it; it
// reports whether the state changed. A move the table refuses (back, or out of a
// terminal state) leaves the state as it is: the events that drive it arrive late and
// out of order, so a refused move is the normal case of an event already overtaken.
func (s *RunnerState) Advance(next RunnerState) bool {
	if !RunnerMayMove(*s, next) {
		return false
	}
	*s = next
	return true
}

// RunnerRecord is the spawner's record of one runner: its GitHub registration and
// its instance (KV bucket spawner_runners, key the runner name).
type RunnerRecord struct {
	Name    string      `json:"name"`
	Flavor  string      `json:"flavor"`
	Backend string      `json:"backend"`
	State   RunnerState `json:"state"`
	// InstanceID is the backend's id of the instance, once created.
	InstanceID string `json:"instance_id,omitempty"`
	// ForJob is the job the runner is meant for: the one it was spawned for, or the
	// one that adopted it when its own job no longer needed it.
	ForJob int64 `json:"for_job"`
	// TookJob is the job GitHub gave it (from in_progress); 0 until then.
	TookJob int64 `json:"took_job,omitempty"`
	// Spare is set when ForJob no longer needs this runner (cancelled, or served by
	// another runner); a spare is adopted by the next job of its flavor.
	Spare bool `json:"spare,omitempty"`
	// Pool is set on a runner of its flavor's warm pool (min_idle, pool.go): one
	// started before any job asked for it, or a spare taken into the pool. It stays
	// set once the runner takes a job (then its slot is no longer the pool's).
	Pool bool `json:"pool,omitempty"`
	// GitHubRunnerID is the id of the runner's GitHub registration, once minted.
	GitHubRunnerID int64 `json:"github_runner_id,omitempty"`

	// TokenHash is the SHA-256 of the one-time bootstrap token; TokenExpires ends it.
	TokenHash    string    `json:"token_hash,omitempty"`
	TokenExpires time.Time `json:"token_expires,omitzero"`
	// CallbackHash is the SHA-256 of the instance's root callback token, handed out
	// with the config and kept in a root-only file: it may report every event,
	// job_finished (which deletes the instance) included. A record written before
	// HookHash existed has only this one, and its instance uses it for every event.
	CallbackHash string `json:"callback_hash,omitempty"`
	// HookHash is the SHA-256 of the hook token, handed out with the config for the
	// pre-job hook, which runs as the runner user (so job code can read it too): it
	// may report job_started and pre_job_done only.
	HookHash      string `json:"hook_hash,omitempty"`
	ConfigFetched bool   `json:"config_fetched,omitempty"`

	// CreatingUntil is the lease of the worker creating the instance: until then,
	// nobody else creates it. A crashed worker's lease runs out and the create is
	// resumed.
	CreatingUntil time.Time `json:"creating_until,omitzero"`
	Attempts      int       `json:"attempts,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	FailReason    string    `json:"fail_reason,omitempty"`
	ExitCode      *int      `json:"exit_code,omitempty"`
	// Outcome is how the runner's run ended (outcome.go): set once, by the pre-job
	// hook's refusal, the runner's exit, or the end of a runner that held a job
	// without reporting. Empty for a runner that never ran a job.
	Outcome Outcome `json:"outcome,omitempty"`
	// CheckHTTPCode and CheckReason come with a check failure: the policy service's
	// HTTP status (0: not reached, or the built-in fork check) and its reason, as
	// the instance reported them (validated and cut when they arrived).
	CheckHTTPCode int    `json:"check_http_code,omitempty"`
	CheckReason   string `json:"check_reason,omitempty"`
	// InstanceDeleted is set once the backend confirmed the instance is gone.
	InstanceDeleted bool `json:"instance_deleted,omitempty"`
	// HoldSlotUntil is set when a create of this runner failed with an unknown
	// outcome: an instance may still appear under its name until then, so its
	// absence from a listing proves nothing before then, and the capacity slot stays
	// held. Zero otherwise.
	HoldSlotUntil time.Time `json:"hold_slot_until,omitzero"`
	// Protected runners are never deleted by the janitor (debugging).
	Protected bool `json:"protected,omitempty"`

	CreatedAt       time.Time `json:"created_at"`
	BootingAt       time.Time `json:"booting_at,omitzero"`
	BootedAt        time.Time `json:"booted_at,omitzero"`
	IdleAt          time.Time `json:"idle_at,omitzero"`
	BusyAt          time.Time `json:"busy_at,omitzero"`
	PreJobStartedAt time.Time `json:"pre_job_started_at,omitzero"`
	PreJobDoneAt    time.Time `json:"pre_job_done_at,omitzero"`
	FinishedAt      time.Time `json:"finished_at,omitzero"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// InPreJob reports whether the runner is in its pre-job phase: its job started and
// the pre-job hook (the repository check) has not finished.
func (r *RunnerRecord) InPreJob() bool {
	return r.State == RunnerBusy && !r.PreJobStartedAt.IsZero() && r.PreJobDoneAt.IsZero()
}

// Untaken reports whether the runner is alive and has not been given a job yet.
func (r *RunnerRecord) Untaken() bool {
	return r.State.Live() && r.State != RunnerBusy && r.TookJob == 0
}

// Slot is one held unit of a flavor's capacity. It is kept small: a burst of a
// thousand jobs rewrites the record holding every slot twice per job.
type Slot struct {
	Job   int64     `json:"job"`
	Since time.Time `json:"since"`
	// Pool: held by a pool runner that has not taken a job yet (Job is 0).
	Pool bool `json:"pool,omitempty"`
}

// SparesRecord indexes a flavor's spare runners (runner name → the job it was meant
// for), so a new job finds one without reading every runner record (KV bucket
// spawner_capacity, key "spares.<flavor>"). The runner records stay the truth: an
// entry whose runner is no longer spare is dropped when found.
type SparesRecord struct {
	Runners map[string]int64 `json:"runners"`
}

// CapacityRecord holds a flavor's capacity slots (KV bucket spawner_capacity, key the
// flavor). One key per flavor makes "count and claim" a single compare-and-set, so
// max_runners holds across every replica and worker.
type CapacityRecord struct {
	Slots map[string]Slot `json:"slots"`
	// PausedUntil stops new claims (no new runner for the flavor) until then: a
	// flush sets it so that no runner from before the flush survives it.
	PausedUntil time.Time `json:"paused_until,omitzero"`
	PausedBy    string    `json:"paused_by,omitempty"`
}
