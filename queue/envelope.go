package queue

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// EnvelopeVersion is the version of JobEvent written by this build. Readers accept
// this version and reject newer ones (so an old consumer never misreads a new event).
const EnvelopeVersion = 1

// Job actions, as GitHub names them in workflow_job webhooks.
const (
	ActionQueued     = "queued"
	ActionWaiting    = "waiting"
	ActionInProgress = "in_progress"
	ActionCompleted  = "completed"
)

// Actions lists the actions the receiver publishes.
var Actions = []string{ActionQueued, ActionWaiting, ActionInProgress, ActionCompleted}

// Event sources.
const (
	SourceWebhook     = "webhook"     // a GitHub delivery
	SourcePoller      = "poller"      // the janitor found a queued job we never heard of
	SourceReplacement = "replacement" // the job's runner was taken by another job
)

// JobEvent is the envelope published for every workflow_job webhook that routes to a
// flavor. It is compact (a few hundred bytes instead of GitHub's 8-13 KB payload) and
// self-contained: consumers never need the original payload. docs/messages.md
// documents every field; add fields, never rename them.
type JobEvent struct {
	V          int       `json:"v"`
	DeliveryID string    `json:"delivery_id,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	Source     string    `json:"source"`
	Action     string    `json:"action"`

	JobID          int64  `json:"job_id"`
	RunID          int64  `json:"run_id"`
	RunAttempt     int    `json:"run_attempt"`
	JobName        string `json:"job_name,omitempty"`
	WorkflowName   string `json:"workflow_name,omitempty"`
	Repo           string `json:"repo"` // owner/name
	Org            string `json:"org,omitempty"`
	InstallationID int64  `json:"installation_id,omitempty"`

	// Labels are the job's labels as GitHub sent them; NormLabels are lower-cased,
	// without routing.ignored_labels, sorted: what routing matched on.
	Labels     []string `json:"labels"`
	NormLabels []string `json:"norm_labels"`
	Flavor     string   `json:"flavor"`

	JobURL  string `json:"job_url,omitempty"`
	HTMLURL string `json:"html_url,omitempty"`

	Status      string     `json:"status,omitempty"`
	Conclusion  string     `json:"conclusion,omitempty"`
	RunnerID    int64      `json:"runner_id,omitempty"`
	RunnerName  string     `json:"runner_name,omitempty"`
	CreatedAt   *time.Time `json:"created_at,omitempty"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`

	// Replacement numbers a replacement request (Source "replacement"): the n-th
	// runner the job asks for, for operators and logs.
	Replacement int `json:"replacement,omitempty"`
	// ReplacesRunner names the runner whose loss a replacement request answers (taken
	// by another job, removed by the janitor or a flush). It keys the request, so that
	// two triggers for the same loss are stored once and two losses never are.
	ReplacesRunner string `json:"replaces_runner,omitempty"`
	// ReplacementReason says why the job asks for another runner; only losses that
	// could repeat without end (stolen by a job not ours, lost) count against the
	// job's max_replacements.
	ReplacementReason string `json:"replacement_reason,omitempty"`
}

// Replacement reasons.
const (
	// ReplaceStolen: the job's runner took a job that is not ours (another fleet's,
	// or one we never heard of). Counts.
	ReplaceStolen = "stolen"
	// ReplaceSwap: the job's runner took another job of ours, whose own runner (if
	// any) is now spare: an exchange within the fleet. Does not count.
	ReplaceSwap = "swap"
	// ReplaceLost: the runner died or never came up (boot timeout, exited without a
	// job). Counts, so a broken image does not loop forever.
	ReplaceLost = "lost"
	// ReplaceFlush: an operator's flush removed the runner. Does not count.
	ReplaceFlush = "flush"
)

// CountsAsReplacement reports whether the event uses up one of the job's
// max_replacements.
func (e *JobEvent) CountsAsReplacement() bool {
	if e.Source != SourceReplacement {
		return false
	}
	return e.ReplacementReason != ReplaceSwap && e.ReplacementReason != ReplaceFlush
}

// MsgID is the JetStream de-duplication id for the event: the delivery id when there
// is one (a redelivered webhook carries the same id, so it is stored once); for a
// replacement request, the job and the runner it lost (the job's runner count alone
// is not enough: a spare the job adopts can be taken before it is listed on the job,
// and that second loss, keyed by the same count, was dropped as a duplicate of the
// first, leaving the job without a runner or an event); else the job, action and run
// attempt.
func (e *JobEvent) MsgID() string {
	if e.DeliveryID != "" {
		return e.DeliveryID
	}
	if e.Source == SourceReplacement {
		if e.ReplacesRunner != "" {
			return fmt.Sprintf("repl-%d-%s", e.JobID, e.ReplacesRunner)
		}
		return fmt.Sprintf("repl-%d-%d", e.JobID, e.Replacement)
	}
	return fmt.Sprintf("job-%d-%s-%d-%s", e.JobID, e.Action, e.RunAttempt, e.Source)
}

// Marshal encodes the event, stamping the version.
func (e *JobEvent) Marshal() ([]byte, error) {
	e.V = EnvelopeVersion
	return json.Marshal(e)
}

// UnmarshalJobEvent decodes and checks an envelope.
func UnmarshalJobEvent(data []byte) (*JobEvent, error) {
	var e JobEvent
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("decode job event: %w", err)
	}
	switch {
	case e.V < 1 || e.V > EnvelopeVersion:
		return nil, fmt.Errorf("decode job event: unsupported envelope version %d (this build reads 1..%d)", e.V, EnvelopeVersion)
	case e.JobID <= 0:
		return nil, fmt.Errorf("decode job event: missing job_id")
	case e.Flavor == "":
		return nil, fmt.Errorf("decode job event: missing flavor")
	}
	return &e, nil
}

// Subjects. Every job event goes to spawner.jobs.<flavor>.<action>; package control's
// commands use spawner.control.*, outside every stream.
const (
	jobsPrefix = "spawner.jobs"
	deadPrefix = "spawner.dead"
)

// JobSubject is the subject of a job event.
func JobSubject(flavor, action string) string {
	return jobsPrefix + "." + flavor + "." + action
}

// ParseJobSubject splits a job subject into flavor and action.
func ParseJobSubject(subject string) (flavor, action string, ok bool) {
	rest, found := strings.CutPrefix(subject, jobsPrefix+".")
	if !found {
		return "", "", false
	}
	flavor, action, ok = strings.Cut(rest, ".")
	return flavor, action, ok && flavor != "" && action != "" && !strings.Contains(action, ".")
}

// DeadSubject is where a flavor's dead-lettered events go.
func DeadSubject(flavor string) string { return deadPrefix + "." + flavor }

// jobKey is the KV key of a job record.
func jobKey(jobID int64) string { return strconv.FormatInt(jobID, 10) }
