// Package logkey names the structured-log keys every component uses, so that one
// delivery, job or runner can be followed across processes with a single filter.
//
// It holds constants only.
package logkey

const (
	DeliveryID = "delivery_id"
	JobID      = "job_id"
	RunID      = "run_id"
	Runner     = "runner"
	Flavor     = "flavor"
	Backend    = "backend"
	Instance   = "instance"
	Attempt    = "attempt"
	Error      = "error"
	Action     = "action"
	Event      = "event"
	Repo       = "repo"
	Component  = "component"
	Mode       = "mode"
)
