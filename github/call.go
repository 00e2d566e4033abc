package github

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	gh "github.com/google/go-github/v62/github"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// call describes one operation for the request pipeline.
type call struct {
	op         string   // metric label, e.g. "get_runner"
	prio       priority // optional calls yield when the budget is low
	app        bool     // authenticate with the App JWT (app hook, installation lookup)
	idempotent bool     // safe to resend after a timeout or a transport error
	on422      error    // what a 422 means for this operation (nil: a plain *APIError)
	on404      error    // what a 404 means (nil: ErrNotFound)
}

const (
	maxErrorRetries     = 2 // 5xx, timeouts and transport errors: 3 attempts in all
	maxRateLimitRetries = 2 // answers that said "rate limited": wait for the reset, then again
)

// do runs fn through the pipeline: wait for budget (GitHub's, the reserve guard, the
// token bucket) and a request slot, send with a per-request timeout, read the rate-limit
// headers, map the answer to our errors, and retry what may be retried. fn gets the
// go-github client to use and a ctx carrying the per-request timeout.
func (c *Client) do(ctx context.Context, cl call, fn func(ctx context.Context, api *gh.Client) (*gh.Response, error)) error {
	api, b := c.app, c.appBudget
	if !cl.app {
		var err error
		if api, err = c.apiClient(ctx); err != nil {
			return err
		}
		b = c.apiBudget
	} else if api == nil {
		return fmt.Errorf("%s needs GitHub App credentials (AppID, AppPrivateKey): %w", cl.op, ErrUnauthorized)
	}
	// Waiting for budget ends at ctx's deadline or MaxWait, whichever is first, so no
	// call waits without bound even when ctx has no deadline.
	bound := time.Now().Add(c.opts.MaxWait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(bound) {
		bound = dl
	}
	errRetries, rlRetries := 0, 0
	for attempt := 1; ; attempt++ {
		isProbe, err := c.admit(ctx, cl, b, bound)
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
		start := time.Now()
		resp, err := fn(actx, api)
		cancel()
		out := c.classify(ctx, cl, resp, err)
		c.observe(cl, b, out, time.Since(start))
		c.sem.release()
		if isProbe {
			b.endProbe()
		}
		switch {
		case out.err == nil:
			return nil
		case out.rateLimited && rlRetries < maxRateLimitRetries && !out.reset.After(bound):
			// The next admit waits for the reset; others already wait behind the budget.
			rlRetries++
			c.metrics.retries.WithLabelValues(cl.op, "rate_limited").Inc()
			c.log.Warn("github rate limited, waiting for reset", "op", cl.op, logkey.Attempt, attempt, "reset", out.reset)
		case out.retryable && errRetries < maxErrorRetries:
			errRetries++
			c.metrics.retries.WithLabelValues(cl.op, out.retryReason).Inc()
			wait := c.backoff(errRetries)
			c.log.Warn("github call failed, retrying", "op", cl.op, logkey.Attempt, attempt, "wait", wait, logkey.Error, out.err)
			if time.Now().Add(wait).After(bound) {
				return out.err
			}
			if err := sleepUntil(ctx, time.Now().Add(wait)); err != nil {
				return err
			}
		default:
			return out.err
		}
	}
}

// backoff is exponential with full jitter on top of half: 0.5–1× of base·2^(n-1).
func (c *Client) backoff(n int) time.Duration {
	d := c.retryBase << (n - 1)
	return d/2 + rand.N(d/2+1)
}

// admit waits until the call may be sent and holds a request slot for it.
func (c *Client) admit(ctx context.Context, cl call, b *budget, bound time.Time) (isProbe bool, err error) {
	deferred := map[string]bool{}
	deferOnce := func(reason string) {
		if !deferred[reason] {
			deferred[reason] = true
			c.metrics.deferred.WithLabelValues(cl.op, reason).Inc()
		}
	}
	// The client-side bucket keeps the steady rate under RatePerHour.
	if r := c.bucket.Reserve(); r.OK() {
		if d := r.Delay(); d > 0 {
			deferOnce("bucket")
			until := time.Now().Add(d)
			if until.After(bound) {
				r.Cancel()
				return false, &RateLimitError{Reset: until, RetryAfter: d}
			}
			if err := sleepUntil(ctx, until); err != nil {
				r.Cancel()
				return false, err
			}
		}
	}
	for {
		w, probe := b.check(cl.prio, c.opts.ReserveThreshold)
		if w.reason == "" {
			// Queueing for a slot is a wait like the others: bounded even when ctx is not.
			sctx, cancel := context.WithDeadline(ctx, bound)
			err := c.sem.acquire(sctx, cl.prio)
			cancel()
			if err != nil {
				if probe {
					b.endProbe()
				}
				if ctx.Err() == nil {
					return false, fmt.Errorf("no request slot free within %s: %w", c.opts.MaxWait, context.DeadlineExceeded)
				}
				return false, ctx.Err()
			}
			// Look again with the slot held: the budget may have run out while this
			// call queued for it, and then it must not be sent.
			if probe {
				return true, nil
			}
			w2, probe2 := b.check(cl.prio, c.opts.ReserveThreshold)
			if w2.reason == "" {
				return probe2, nil
			}
			c.sem.release()
			w = w2
		}
		switch w.reason {
		case "probe":
			select {
			case <-w.probe:
			case <-ctx.Done():
				return false, ctx.Err()
			}
		default:
			deferOnce(w.reason)
			if w.until.After(bound) {
				return false, &RateLimitError{Reset: w.until, RetryAfter: time.Until(w.until)}
			}
			if err := sleepUntil(ctx, w.until); err != nil {
				return false, err
			}
		}
	}
}

// outcome is an answer, classified.
type outcome struct {
	err         error // what the caller gets; nil on success
	status      int   // HTTP status, 0 without an answer
	header      http.Header
	rateLimited bool
	reset       time.Time
	retryable   bool
	retryReason string
}

func (c *Client) classify(ctx context.Context, cl call, resp *gh.Response, err error) outcome {
	var hr *http.Response
	if resp != nil {
		hr = resp.Response
	}
	var ie *ghinstallation.HTTPError
	tokenFailed := errors.As(err, &ie)
	if hr == nil && tokenFailed && ie.Response != nil {
		hr = ie.Response // minting the installation token failed
	}
	out := outcome{}
	if hr != nil {
		out.status, out.header = hr.StatusCode, hr.Header
	}
	var accepted *gh.AcceptedError
	if err == nil || errors.As(err, &accepted) {
		return out
	}
	if hr == nil {
		switch {
		case ctx.Err() != nil:
			out.err = ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			out.err = fmt.Errorf("no answer within %s: %w", c.opts.Timeout, context.DeadlineExceeded)
			out.retryable, out.retryReason = cl.idempotent, "timeout"
		default:
			out.err = err
			out.retryable, out.retryReason = cl.idempotent, "transport"
		}
		return out
	}

	reqID := hr.Header.Get("X-GitHub-Request-Id")
	var ghRate *gh.RateLimitError
	var ghAbuse *gh.AbuseRateLimitError
	limited := hr.StatusCode == http.StatusTooManyRequests ||
		(hr.StatusCode == http.StatusForbidden && (hr.Header.Get("Retry-After") != "" || hr.Header.Get("X-RateLimit-Remaining") == "0")) ||
		errors.As(err, &ghRate) || errors.As(err, &ghAbuse)
	if limited {
		now := time.Now()
		reset := now.Add(time.Minute) // GitHub's advice when it names no time
		switch {
		case hr.Header.Get("Retry-After") != "":
			if s, perr := strconv.Atoi(hr.Header.Get("Retry-After")); perr == nil {
				reset = now.Add(time.Duration(s) * time.Second)
			}
		case hr.Header.Get("X-RateLimit-Reset") != "":
			if s, perr := strconv.ParseInt(hr.Header.Get("X-RateLimit-Reset"), 10, 64); perr == nil {
				reset = time.Unix(s, 0)
			}
		case ghRate != nil && !ghRate.Rate.Reset.IsZero():
			reset = ghRate.Rate.Reset.Time // go-github refused to send: budget known exhausted
		case ghAbuse != nil && ghAbuse.RetryAfter != nil:
			reset = now.Add(*ghAbuse.RetryAfter)
		}
		out.rateLimited, out.reset = true, reset
		out.err = &RateLimitError{Reset: reset, RetryAfter: max(0, time.Until(reset)), StatusCode: hr.StatusCode, RequestID: reqID}
		return out
	}

	ae := &APIError{Op: cl.op, StatusCode: hr.StatusCode, RequestID: reqID}
	var er *gh.ErrorResponse
	if errors.As(err, &er) {
		ae.Message = er.Message
	}
	switch code := hr.StatusCode; {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		ae.kind = ErrUnauthorized
	case tokenFailed && code >= 400 && code < 500:
		// No installation token (unknown installation, bad key): a credentials
		// problem, not a missing runner or job.
		ae.kind = ErrUnauthorized
	case code == http.StatusNotFound && cl.on404 != nil:
		ae.kind = cl.on404
	case code == http.StatusNotFound:
		ae.kind = ErrNotFound
	case code == http.StatusConflict:
		ae.kind = ErrConflict
	case code == http.StatusUnprocessableEntity:
		ae.kind = cl.on422
	case code >= 500:
		out.retryable, out.retryReason = true, "server_error"
	}
	out.err = ae
	return out
}

// observe records metrics and what the answer said about the rate budget.
func (c *Client) observe(cl call, b *budget, out outcome, took time.Duration) {
	code := "error"
	if out.status != 0 {
		code = strconv.Itoa(out.status)
	}
	c.metrics.requests.WithLabelValues(cl.op, code).Inc()
	c.metrics.latency.WithLabelValues(cl.op).Observe(took.Seconds())
	if h := out.header; h != nil && h.Get("X-RateLimit-Remaining") != "" {
		limit, _ := strconv.Atoi(h.Get("X-RateLimit-Limit"))
		remaining, _ := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
		resetSec, _ := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
		reset := time.Unix(resetSec, 0)
		b.observe(limit, remaining, reset)
		c.metrics.remaining.WithLabelValues(b.name).Set(float64(remaining))
		c.metrics.reset.WithLabelValues(b.name).Set(float64(resetSec))
	}
	if out.rateLimited {
		b.block(out.reset)
	}
}
