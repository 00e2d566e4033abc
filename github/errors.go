package github

import (
	"errors"
	"fmt"
	"time"
)

// Errors callers match with errors.Is. Every error status GitHub answers is an *APIError
// (or a *RateLimitError), and these say what it means.
var (
	// ErrNotFound: 404 (the runner, job, delivery or org is gone or invisible).
	ErrNotFound = errors.New("not found")
	// ErrRunnerBusy: 422 on deleting a runner that is running a job.
	ErrRunnerBusy = errors.New("runner busy")
	// ErrUnauthorized: 401, or 403 that is not a rate limit (bad or expired
	// credentials, missing permission).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrConflict: 409 (for example a runner with that name already exists).
	ErrConflict = errors.New("conflict")
	// ErrRateLimited: GitHub's rate limit (403/429), or a wait for budget that would
	// outlast ctx or Options.MaxWait. The error is a *RateLimitError.
	ErrRateLimited = errors.New("rate limited")
)

// RateLimitError says when to try again. It Is ErrRateLimited.
type RateLimitError struct {
	// Reset is when the budget is expected back.
	Reset time.Time
	// RetryAfter is how long that was from when the error was made.
	RetryAfter time.Duration
	// StatusCode is GitHub's answer (403 or 429), 0 when the client refused to send
	// (GitHub's budget known to be exhausted, the reserve guard, the ceiling or the
	// secondary limit's pacing would have had it wait past its deadline).
	StatusCode int
	// Secondary says GitHub answered with a secondary rate limit (too many points a
	// minute or requests at once), not the hourly budget.
	Secondary bool
	// RequestID is GitHub's X-GitHub-Request-Id, when there was an answer.
	RequestID string
}

func (e *RateLimitError) Error() string {
	s := fmt.Sprintf("rate limited until %s (retry after %s)", e.Reset.UTC().Format(time.TimeOnly), e.RetryAfter.Round(time.Millisecond))
	if e.StatusCode != 0 {
		s += fmt.Sprintf(": status %d", e.StatusCode)
	}
	if e.RequestID != "" {
		s += " [request " + e.RequestID + "]"
	}
	return s
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// APIError is an error answer from GitHub. errors.Is maps it to ErrNotFound,
// ErrRunnerBusy, ErrUnauthorized or ErrConflict where the status means that.
type APIError struct {
	Op         string // the client operation, as in metrics (e.g. "get_runner")
	StatusCode int
	RequestID  string // X-GitHub-Request-Id, for GitHub support
	Message    string // GitHub's message
	kind       error
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("status %d", e.StatusCode)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RequestID != "" {
		s += " [request " + e.RequestID + "]"
	}
	return s
}

// Is reports whether the status means target.
func (e *APIError) Is(target error) bool { return e.kind != nil && target == e.kind }
