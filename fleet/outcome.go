package fleet

// Outcome is how a runner's run ended, as the operator reads it in `runners list`,
// `jobs list`, the logs and the runner-stop metric. It is not a state: a finished
// runner ended normally, abnormally, or because a pre-job check refused its job.
type Outcome string

const (
	// OutcomeNone: the runner has not ended a run (or never ran a job).
	OutcomeNone Outcome = ""
	// OutcomeNormal: the runner program exited 0 after its job and said so.
	OutcomeNormal Outcome = "normal"
	// OutcomeAbnormal: the runner program exited non-zero, or the runner's life
	// ended while it held a job without its instance reporting the end (deleted,
	// lost, flushed while busy).
	OutcomeAbnormal Outcome = "abnormal"
	// OutcomeRepoPolicyFailure: the repo-policy-compliance service refused the job
	// (or could not be asked and fail_open is off) before any step ran.
	OutcomeRepoPolicyFailure Outcome = "repo-policy-check-failure"
	// OutcomeExternalContributorFailure: the built-in fork check refused the job: a
	// fork's pull request by an author who is not a member of the repository.
	OutcomeExternalContributorFailure Outcome = "external-contributor-check-failure"
)

// Outcomes lists every outcome a run can end with, for metrics and flags.
var Outcomes = []Outcome{OutcomeNormal, OutcomeAbnormal, OutcomeRepoPolicyFailure, OutcomeExternalContributorFailure}

// CheckFailures are the outcomes the pre-job hook may report (with pre_job_done).
var CheckFailures = []Outcome{OutcomeRepoPolicyFailure, OutcomeExternalContributorFailure}

// outcomeMoves is the outcome table: an outcome is set once. The pre-job hook's
// verdict comes first (pre_job_done); the runner exits afterwards with a non-zero
// code, which must not turn a refused job into a merely abnormal one, and nothing
// reported later (a second job_finished, the janitor finding the instance gone)
// rewrites how the run ended.
var outcomeMoves = map[Outcome][]Outcome{
	OutcomeNone:                       Outcomes,
	OutcomeNormal:                     nil,
	OutcomeAbnormal:                   nil,
	OutcomeRepoPolicyFailure:          nil,
	OutcomeExternalContributorFailure: nil,
}

// OutcomeMayMove reports whether a runner whose outcome is from may take outcome to.
func OutcomeMayMove(from, to Outcome) bool {
	for _, o := range outcomeMoves[from] {
		if o == to {
			return true
		}
	}
	return false
}

// Settle sets the outcome to next when the outcome table allows it, and reports
// whether it changed.
func (o *Outcome) Settle(next Outcome) bool {
	if !OutcomeMayMove(*o, next) {
		return false
	}
	*o = next
	return true
}

// IsCheckFailure reports whether o is an outcome the pre-job hook may report.
func (o Outcome) IsCheckFailure() bool {
	return o == OutcomeRepoPolicyFailure || o == OutcomeExternalContributorFailure
}

// CheckFailure is what the pre-job hook reports when a check refused the job: the
// outcome, the HTTP status of the policy service's answer (0 for the built-in fork
// check, or when the service was not reached) and its reason, already validated
// and cut by the caller (it comes from the instance).
type CheckFailure struct {
	Outcome  Outcome
	HTTPCode int
	Reason   string
}
