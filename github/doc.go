// Package github is runner-spawner's GitHub REST client: it mints single-use (JIT)
// runner configs, lists, reads and deletes runners, reads workflow jobs, and lists and
// redelivers webhook deliveries, authenticated with a token or as a GitHub App.
//
// It is hardened against GitHub's failure modes: every request has a timeout, at most
// Options.MaxInFlight are in flight, and rate limits are obeyed rather than retried
// into: while GitHub says the budget is exhausted no request is sent, a single probe
// goes first after the reset, a token bucket keeps the steady rate under
// Options.RatePerHour, and below Options.ReserveThreshold optional calls wait so that
// essential ones (minting and deleting runners) still get through.
//
// It is the only package that reads GitHub status codes: callers use errors.Is with
// ErrNotFound, ErrRunnerBusy, ErrUnauthorized, ErrConflict and ErrRateLimited, or
// errors.As with *RateLimitError and *APIError. It must not import other packages of
// ours except internal/secret and internal/logkey, and it never logs credentials or JIT
// configs.
package github
