package queue

// Control commands for the janitor travel as core NATS request/reply (not through a
// stream): a command only makes sense while someone is there to carry it out, and
// "no responders" tells the sender at once that no janitor is active.

// SubjectFlush carries flush commands (FlushRequest, answered with a FlushResult).
// Only the active janitor subscribes, in the ControlQueueGroup.
const SubjectFlush = controlPrefix + ".flush"

// SubjectReconcile asks for a reconcile pass now (an empty request, answered with the
// pass's summary as JSON, the same document as the last_reconcile meta record).
const SubjectReconcile = controlPrefix + ".reconcile"

// ControlQueueGroup is the queue group of control subscribers: should two janitors
// ever overlap for a moment, a command is still carried out once.
const ControlQueueGroup = "janitor"

// FlushRequest asks the active janitor to flush runners.
type FlushRequest struct {
	// Mode is a flush mode's operator string (FLUSH_IDLE, …).
	Mode string `json:"mode"`
	// Flavor limits the flush to one flavor ("": every flavor).
	Flavor string `json:"flavor,omitempty"`
}

// FlushResult is the janitor's answer to a FlushRequest.
type FlushResult struct {
	Mode string `json:"mode"`
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
