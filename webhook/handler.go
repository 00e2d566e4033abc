// Package webhook is the HTTP receiver GitHub posts workflow_job deliveries to. It
// checks the delivery headers and the signature, parses the payload, routes the job's
// labels to a flavor and publishes a compact job event to JetStream, answering 2xx only
// once JetStream has stored it. Everything a delivery carries is validated before use
// and cut short (internal/untrusted) before it reaches a log line.
//
// A delivery goes through a chain of middleware (middleware.go: count the outcome,
// check the headers, read the body, check the signature) before the receiver's own
// steps (receive.go: ping, event filter, parse, route, publish, answer).
//
// It is stateless (any number of replicas can run behind a load balancer) and must
// not talk to GitHub, a backend or the KV state: its only side effect is a publish.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/queue"
)

// Publisher stores a job event durably and says whether it was a duplicate.
type Publisher interface {
	PublishJobEvent(ctx context.Context, ev *queue.JobEvent) (queue.PublishResult, error)
}

// Options configures a Handler.
type Options struct {
	Secrets []secret.Value
	// InsecureSkipSignature accepts unsigned deliveries; New refuses to build a
	// handler with no secret unless it is set.
	InsecureSkipSignature bool
	MaxBodyBytes          int64
	Router                *Router
	Publisher             Publisher
	// PublishTimeout bounds the wait for JetStream's ack (default 4 s), inside
	// GitHub's 10 s delivery timeout.
	PublishTimeout time.Duration
	Logger         *slog.Logger
	// Registerer receives the metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Validate reports what is missing or wrong.
func (o *Options) Validate() error {
	var errs []error
	if len(o.Secrets) == 0 && !o.InsecureSkipSignature {
		errs = append(errs, errors.New("no webhook secret: refusing to accept unsigned deliveries (set a secret, or InsecureSkipSignature for a test bed)"))
	}
	if o.Router == nil {
		errs = append(errs, errors.New("no router"))
	}
	if o.Publisher == nil {
		errs = append(errs, errors.New("no publisher"))
	}
	return errors.Join(errs...)
}

// Handler serves POST deliveries.
type Handler struct {
	opts    Options
	logger  *slog.Logger
	metrics *metrics
	// bodies recycles the request bodies of this handler alone: a pool per handler,
	// not per process, so handlers (and the tests that build many) share no state.
	bodies bufferPool
	// chain is the middleware around receive, built once by New.
	chain http.Handler
}

// New builds a Handler.
func New(opts Options) (*Handler, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = 4 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.InsecureSkipSignature && len(opts.Secrets) == 0 {
		logger.Warn("webhook signatures are not checked (webhook.insecure_skip_signature): anyone who can reach this endpoint can enqueue jobs")
	}
	h := &Handler{opts: opts, logger: logger, metrics: newMetrics(opts.Registerer)}
	h.chain = h.middleware().HandlerFunc(h.receive)
	return h, nil
}

// middleware is the chain every delivery passes before receive, outermost first. The
// order is part of the receiver's contract: the outcome is counted whatever happens
// inside; the headers are checked before a byte of the body is read, since checking
// them costs nothing; and the signature is checked on the whole body before any of it
// is parsed.
func (h *Handler) middleware() chi.Middlewares {
	mws := chi.Chain(
		recordOutcome(h.metrics.requests, h.opts.Now),
		requireHeaders(h.logger),
		readBody(h.opts.MaxBodyBytes, &h.bodies),
	)
	if !h.opts.InsecureSkipSignature || len(h.opts.Secrets) > 0 {
		mws = append(mws, requireSignature(h.opts.Secrets, h.metrics.signatureFailures))
	}
	return mws
}

// ServeHTTP runs a delivery through the whole chain: callers mount the Handler as it
// is.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.chain.ServeHTTP(w, r)
}

// reply is the JSON body of every answer: short, fixed reasons, never internal text.
type reply struct {
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
	Flavor string `json:"flavor,omitempty"`
	JobID  int64  `json:"job_id,omitempty"`
}

// Outcomes (the metric label and the reply's result).
const (
	outcomeStored       = "stored"
	outcomeDuplicate    = "duplicate"
	outcomeNotForwarded = "not_forwarded"
	outcomeIgnored      = "ignored"
	outcomePong         = "pong"
	outcomeBadRequest   = "bad_request"
	outcomeUnauthorized = "unauthorized"
	outcomeTooLarge     = "too_large"
	outcomeUnavailable  = "unavailable"
	outcomeBadHeader    = "bad_header"
	outcomeTimeout      = "timeout"
)

// answer writes the reply and records its result as the delivery's outcome: every
// step answers through here, so the counted outcome and the reply's result cannot
// drift apart.
func answer(w http.ResponseWriter, d *delivery, code int, body reply) {
	d.outcome = body.Result
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	// A failed write means the client has gone: there is no one left to tell, and
	// the outcome is already recorded.
	_ = json.NewEncoder(w).Encode(body)
}
