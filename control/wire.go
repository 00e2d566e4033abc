package control

import (
	"time"
)

// Control commands travel as core NATS request/reply (queue.Conn.Request and
// Listen), not through a stream: a command only makes sense while someone is there to
// carry it out, and "no responders" tells the sender at once that no janitor is
// active.

const (
	controlPrefix = "spawner.control"
	// SubjectFlush carries flush commands (FlushRequest, answered with a FlushResult).
	SubjectFlush = controlPrefix + ".flush"
	// SubjectReconcile asks for a reconcile pass now (an empty request, answered with
	// the pass's summary, the same document as the last_reconcile meta record).
	SubjectReconcile = controlPrefix + ".reconcile"
	// QueueGroup is the queue group of the control listeners: should two janitors
	// ever overlap for a moment, a command is still carried out once.
	QueueGroup = "janitor"
	// JanitorLease is the lease the active janitor holds, and so the one that answers
	// control requests.
	JanitorLease = "janitor"
)

// FlushRequest asks the active janitor to flush runners.
type FlushRequest struct {
	Mode Mode `json:"mode"`
	// Flavor limits the flush to one flavor ("": every flavor).
	Flavor string `json:"flavor,omitempty"`
}

// FlushResult is the janitor's answer to a FlushRequest.
type FlushResult struct {
	Mode Mode `json:"mode"`
	// Removed counts runners whose instance was deleted.
	Removed int `json:"removed"`
	// SkippedBusy counts runners left alone because they run a job (idle modes).
	SkippedBusy int `json:"skipped_busy"`
	// Failed counts runners that could not be removed (GitHub refused, the backend
	// failed).
	Failed int `json:"failed"`
	// WaitedSeconds is how long the flush waited before removing: for creates in
	// flight and, in *_WAIT_REPO_CHECK modes, for runners in their pre-job phase.
	WaitedSeconds float64 `json:"waited_seconds"`
	// Error says why the flush was not carried out in full ("" when it was).
	Error string `json:"error,omitempty"`
}

// PassSummary is what one reconcile pass saw and did. The last one is stored under
// queue.MetaLastReconcile for `spawner status`.
type PassSummary struct {
	Janitor       string    `json:"janitor"`
	StartedAt     time.Time `json:"started_at"`
	Seconds       float64   `json:"seconds"`
	Instances     int       `json:"instances"`
	GitHubRunners int       `json:"github_runners"`
	Records       int       `json:"records"`
	// GitHubChecked is false when GitHub could not be listed: the rules that need
	// it (vanished registrations, idle runners, orphan registrations) were skipped.
	GitHubChecked bool `json:"github_checked"`
	// Deleted counts instances deleted, by reason.
	Deleted              map[string]int `json:"deleted,omitempty"`
	RegistrationsRemoved int            `json:"registrations_removed"`
	// Settled counts runners whose instance had vanished: record, slot and job
	// settled.
	Settled       int `json:"settled"`
	SlotsReleased int `json:"slots_released"`
	// Resumed counts creates abandoned by a crashed process, handed back.
	Resumed      int `json:"resumed"`
	Replacements int `json:"replacements"`
	// GitHubBudget is GitHub's rate-limit budget as last seen (nil: not known).
	GitHubBudget *Budget `json:"github_budget,omitempty"`
	// Marked counts suspects seen for the first time: acted on at the next pass if
	// they are still suspect.
	Marked int `json:"marked"`
	// Kept counts leftovers not touched, by reason (protected, busy).
	Kept map[string]int `json:"kept,omitempty"`
	// Deferred counts actions left for the next pass by the per-pass bounds.
	Deferred   int    `json:"deferred"`
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

// DeletedTotal counts the instances the pass deleted, whatever the reason.
func (s *PassSummary) DeletedTotal() int {
	n := 0
	for _, v := range s.Deleted {
		n += v
	}
	return n
}

// Budget is GitHub's rate-limit budget.
type Budget struct {
	Remaining int       `json:"remaining"`
	Limit     int       `json:"limit"`
	Reset     time.Time `json:"reset,omitzero"`
}

// reconcileResult is the answer on SubjectReconcile: a summary, or why there is none.
type reconcileResult struct {
	PassSummary
	Error string `json:"error,omitempty"`
}
