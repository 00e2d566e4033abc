package github

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
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
	mutating   bool     // POST/DELETE: 5 points of the secondary limit, and few at once
	on422      error    // what a 422 means for this operation (nil: a plain *APIError)
	on404      error    // what a 404 means (nil: ErrNotFound)
}

const (
	maxErrorRetries     = 2 // 5xx, timeouts and transport errors: 3 attempts in all
	maxRateLimitRetries = 2 // answers that said "rate limited": wait for the reset, then again
)

// do runs fn through the pipeline: wait for budget (GitHub's, the reserve guard, the
// operator's ceiling, the secondary limit's points) and a request slot, send with a
// per-request timeout, read the rate-limit headers, map the answer to our errors, and
// retry what may be retried. fn gets the go-github client to use and a ctx carrying
// the per-request timeout.
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
	// call waits without bound even when ctx has no deadline. (ctx's deadline is wall
	// time; it is read as a duration on the pacing clock, exact for the wall clock.)
	now := c.clock.Now()
	bound := now.Add(c.opts.MaxWait)
	if dl, ok := ctx.Deadline(); ok && now.Add(time.Until(dl)).Before(bound) {
		bound = now.Add(time.Until(dl))
	}
	errRetries, rlRetries := 0, 0
	for attempt := 1; ; attempt++ {
		adm, err := c.admit(ctx, cl, b, bound)
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
		start := time.Now()
		resp, err := fn(actx, api)
		cancel()
		out := c.classify(ctx, cl, b, resp, err)
		c.observe(cl, b, out, time.Since(start))
		c.release(adm, b)
		switch {
		case out.err == nil:
			return nil
		case out.rateLimited && rlRetries < maxRateLimitRetries && !out.reset.After(bound):
			// The next admit waits for the reset; others already wait behind the budget.
			rlRetries++
			c.metrics.retries.WithLabelValues(cl.op, "rate_limited").Inc()
			c.log.Warn("github rate limited, waiting", "op", cl.op, logkey.Attempt, attempt, "until", out.reset, "secondary", out.secondary)
		case out.retryable && errRetries < maxErrorRetries:
			errRetries++
			c.metrics.retries.WithLabelValues(cl.op, out.retryReason).Inc()
			wait := c.backoff(errRetries)
			c.log.Warn("github call failed, retrying", "op", cl.op, logkey.Attempt, attempt, "wait", wait, logkey.Error, out.err)
			until := c.clock.Now().Add(wait)
			if until.After(bound) {
				return out.err
			}
			if err := sleepUntil(ctx, c.clock, until); err != nil {
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

// admission is what an admitted call holds until its answer.
type admission struct {
	probe    bool // the call is its budget's probe
	mutating bool // holds a mutating slot
}

// release gives back what admit took.
func (c *Client) release(a admission, b *budget) {
	c.sem.release()
	if a.mutating {
		<-c.mutating
	}
	if a.probe {
		b.endProbe()
	}
}

// admit waits until the call may be sent and holds a request slot for it (and a
// mutating slot for a mutating call).
func (c *Client) admit(ctx context.Context, cl call, b *budget, bound time.Time) (adm admission, err error) {
	deferred := map[string]bool{}
	deferOnce := func(reason string) {
		if !deferred[reason] {
			deferred[reason] = true
			c.metrics.deferred.WithLabelValues(cl.op, reason).Inc()
		}
	}
	wait := func(reason string, until time.Time) error {
		deferOnce(reason)
		if until.After(bound) {
			return &RateLimitError{Reset: until, RetryAfter: max(0, until.Sub(c.clock.Now()))}
		}
		return sleepUntil(ctx, c.clock, until)
	}
	// The operator's ceiling: calls in the last hour, spent as they come.
	if c.ceiling != nil {
		for {
			until, ok := c.ceiling.take(c.clock.Now(), cl.prio, c.opts.ReserveThreshold)
			if ok {
				break
			}
			if err := wait("ceiling", until); err != nil {
				return adm, err
			}
		}
	}
	// The secondary limit's points: a call waits its turn, and hands its points back
	// if it gives up unsent.
	pts := callPoints(cl)
	if c.points != nil {
		if until := c.points.reserve(c.clock.Now(), pts); until.After(c.clock.Now()) {
			if err := wait("secondary", until); err != nil {
				c.points.refund(pts)
				return adm, err
			}
		}
	}
	giveUp := func(err error) (admission, error) {
		if c.points != nil {
			c.points.refund(pts)
		}
		return admission{}, err
	}
	// GitHub asks for few concurrent mutating calls (its secondary limits).
	if cl.mutating {
		sctx, cancel := context.WithTimeout(ctx, c.clock.Real(bound.Sub(c.clock.Now())))
		select {
		case c.mutating <- struct{}{}:
			cancel()
		case <-sctx.Done():
			cancel()
			if ctx.Err() == nil {
				return giveUp(fmt.Errorf("no mutating request slot free within %s: %w", c.opts.MaxWait, context.DeadlineExceeded))
			}
			return giveUp(ctx.Err())
		}
		adm.mutating = true
	}
	giveUpHeld := func(err error) (admission, error) {
		if adm.mutating {
			<-c.mutating
		}
		return giveUp(err)
	}
	floor := c.opts.MaxInFlight
	for {
		w, _ := b.check(cl.prio, c.clock.Now(), c.opts.ReserveThreshold, floor, false)
		if w.reason == "" {
			// Queueing for a slot is a wait like the others: bounded even when ctx is not.
			sctx, cancel := context.WithTimeout(ctx, c.clock.Real(bound.Sub(c.clock.Now())))
			err := c.sem.acquire(sctx, cl.prio)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					return giveUpHeld(fmt.Errorf("no request slot free within %s: %w", c.opts.MaxWait, context.DeadlineExceeded))
				}
				return giveUpHeld(ctx.Err())
			}
			// Look again with the slot held, and count the call: the budget may have
			// run out while this call queued for it, and then it must not be sent.
			w2, probe := b.check(cl.prio, c.clock.Now(), c.opts.ReserveThreshold, floor, true)
			if w2.reason == "" {
				adm.probe = probe
				return adm, nil
			}
			c.sem.release()
			w = w2
		}
		switch w.reason {
		case "probe":
			select {
			case <-w.probe:
			case <-ctx.Done():
				return giveUpHeld(ctx.Err())
			}
		default:
			if err := wait(w.reason, w.until); err != nil {
				return giveUpHeld(err)
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
	secondary   bool // a secondary limit, not the hourly budget
	reset       time.Time
	retryable   bool
	retryReason string
}

func (c *Client) classify(ctx context.Context, cl call, b *budget, resp *gh.Response, err error) outcome {
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
		out.rateLimited = true
		out.secondary, out.reset = c.limitedUntil(b, hr, err, ghRate, ghAbuse)
		out.err = &RateLimitError{Reset: out.reset, RetryAfter: max(0, out.reset.Sub(c.clock.Now())), StatusCode: hr.StatusCode, RequestID: reqID, Secondary: out.secondary}
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

// limitedUntil says, for a rate-limited answer, whether a secondary limit was hit and
// how long to wait, as GitHub documents it: Retry-After when given; else, with
// X-RateLimit-Remaining 0, the reset (the hourly budget is spent); else (a secondary
// limit) at least a minute. Secondary limits hit again in a row wait exponentially
// longer (up to an hour), since GitHub may lengthen them for clients that come back
// too soon.
func (c *Client) limitedUntil(b *budget, hr *http.Response, err error, ghRate *gh.RateLimitError, ghAbuse *gh.AbuseRateLimitError) (secondary bool, until time.Time) {
	now := c.clock.Now()
	var msg string
	var er *gh.ErrorResponse
	if errors.As(err, &er) {
		msg = er.Message
	}
	h := hr.Header
	exhausted := h.Get("X-RateLimit-Remaining") == "0" || ghRate != nil
	secondary = ghAbuse != nil || strings.Contains(strings.ToLower(msg), "secondary rate limit") ||
		(h.Get("Retry-After") != "" && !exhausted)
	until = now
	later := func(t time.Time) {
		if t.After(until) {
			until = t
		}
	}
	named := false // GitHub said how long
	if s, perr := strconv.Atoi(h.Get("Retry-After")); perr == nil && s >= 0 {
		later(now.Add(time.Duration(s) * time.Second))
		named = true
	}
	if ghAbuse != nil && ghAbuse.RetryAfter != nil {
		later(now.Add(*ghAbuse.RetryAfter))
		named = true
	}
	if exhausted {
		if s, perr := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); perr == nil {
			later(time.Unix(s, 0))
			named = true
		}
		if ghRate != nil && !ghRate.Rate.Reset.IsZero() {
			later(ghRate.Rate.Reset.Time) // go-github refused to send: budget known exhausted
			named = true
		}
	}
	if !named || (secondary && !until.After(now)) {
		later(now.Add(time.Minute)) // GitHub's advice when it names no time
	}
	if secondary {
		if hits := b.secondaryHit(now); hits > 1 {
			wait := until.Sub(now)
			until = now.Add(min(wait<<min(hits-1, 6), max(wait, time.Hour)))
		}
	}
	return secondary, until
}

// observe records metrics and what the answer said about the rate budget.
func (c *Client) observe(cl call, b *budget, out outcome, took time.Duration) {
	code := "error"
	if out.status != 0 {
		code = strconv.Itoa(out.status)
	}
	c.metrics.requests.WithLabelValues(cl.op, code).Inc()
	c.metrics.latency.WithLabelValues(cl.op).Observe(took.Seconds())
	if out.status == http.StatusNotModified {
		b.free(c.clock.Now())
	}
	if h := out.header; h != nil && h.Get("X-RateLimit-Remaining") != "" {
		// A header GitHub garbles reads as 0: the conservative side for remaining.
		limit, _ := strconv.Atoi(h.Get("X-RateLimit-Limit"))
		remaining, _ := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
		used, _ := strconv.Atoi(h.Get("X-RateLimit-Used"))
		resetSec, _ := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
		reset := time.Unix(resetSec, 0)
		b.observe(limit, remaining, used, reset, c.clock.Now())
		c.metrics.remaining.WithLabelValues(b.name).Set(float64(remaining))
		c.metrics.reset.WithLabelValues(b.name).Set(float64(resetSec))
	}
	if out.rateLimited {
		b.block(out.reset)
	} else if out.status != 0 {
		b.secondaryOK()
	}
}
