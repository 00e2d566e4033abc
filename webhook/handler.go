// Package webhook is the HTTP receiver GitHub posts workflow_job deliveries to. It
// checks the delivery headers and the signature, parses the payload, routes the job's
// labels to a flavor and publishes a compact job event to JetStream, answering 2xx only
// once JetStream has stored it. Everything a delivery carries is validated before use
// and cut short (internal/untrusted) before it reaches a log line.
//
// It is stateless (any number of replicas can run behind a load balancer) and must
// not talk to GitHub, a backend or the KV state: its only side effect is a publish.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
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
	return &Handler{opts: opts, logger: logger, metrics: newMetrics(opts.Registerer)}, nil
}

// bufPool recycles request bodies (8-13 KB each): nothing keeps a reference to the
// body once ServeHTTP returns, since parsing copies what it keeps.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuf is the largest buffer put back in bufPool: a rare large body must not
// leave a megabyte per pooled buffer behind.
const maxPooledBuf = 64 << 10

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

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.opts.Now()
	event := r.Header.Get("X-GitHub-Event")
	deliveryID := r.Header.Get("X-GitHub-Delivery")
	action := ""
	outcome := ""
	defer func() { h.metrics.requests.WithLabelValues(eventLabel(event), actionLabel(action), outcome).Inc() }()

	// The headers first: checking them costs nothing, and until they pass they are
	// anyone's bytes, printed only cut short.
	if reason := checkHeaders(event, deliveryID); reason != "" {
		outcome = outcomeBadHeader
		h.logger.Warn("delivery rejected: bad header", "reason", reason,
			logkey.DeliveryID, untrusted.Log(deliveryID), logkey.Event, untrusted.Log(event), "remote", r.RemoteAddr)
		h.write(w, http.StatusBadRequest, reply{Result: outcome, Reason: reason})
		return
	}
	logger := h.logger.With(logkey.DeliveryID, deliveryID, logkey.Event, event)

	tooLarge := func() {
		outcome = outcomeTooLarge
		logger.Warn("delivery rejected: body too large", "limit", h.opts.MaxBodyBytes, "remote", r.RemoteAddr)
		h.write(w, http.StatusRequestEntityTooLarge, reply{Result: outcome, Reason: "body exceeds " + strconv.FormatInt(h.opts.MaxBodyBytes, 10) + " bytes"})
	}
	if r.ContentLength > h.opts.MaxBodyBytes {
		tooLarge()
		return
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBuf {
			bufPool.Put(buf)
		}
	}()
	// The buffer grows with the bytes that arrive, never from the declared
	// Content-Length: a client that declares a megabyte and sends ten bytes costs ten
	// bytes' worth, for at most the server's read timeout.
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	body := buf.Bytes()
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			tooLarge()
		case errors.Is(err, os.ErrDeadlineExceeded):
			outcome = outcomeTimeout
			logger.Warn("delivery rejected: body not received within the read timeout", "received", len(body), "remote", r.RemoteAddr)
			h.write(w, http.StatusRequestTimeout, reply{Result: outcome, Reason: "body not received in time"})
		default:
			outcome = outcomeBadRequest
			h.write(w, http.StatusBadRequest, reply{Result: outcome, Reason: "unreadable body"})
		}
		return
	}

	if !h.opts.InsecureSkipSignature || len(h.opts.Secrets) > 0 {
		if err := VerifySignature(body, r.Header.Get("X-Hub-Signature-256"), h.opts.Secrets); err != nil {
			outcome = outcomeUnauthorized
			h.metrics.signatureFailures.WithLabelValues(signatureReason(err)).Inc()
			logger.Warn("delivery rejected: bad signature", logkey.Error, err, "remote", r.RemoteAddr)
			h.write(w, http.StatusUnauthorized, reply{Result: outcome, Reason: err.Error()})
			return
		}
	}

	switch event {
	case "ping":
		outcome = outcomePong
		h.write(w, http.StatusOK, reply{Result: outcome})
		return
	case "workflow_job":
	default:
		outcome = outcomeIgnored
		h.write(w, http.StatusAccepted, reply{Result: outcome, Reason: "event not handled"})
		return
	}

	doc, err := jsonBody(r.Header.Get("Content-Type"), body)
	var p *workflowJobPayload
	if err == nil {
		p, err = parseWorkflowJob(doc)
	}
	if err != nil {
		outcome = outcomeBadRequest
		logger.Warn("delivery rejected: bad payload", logkey.Error, err)
		h.write(w, http.StatusBadRequest, reply{Result: outcome, Reason: err.Error()})
		return
	}
	action = *p.Action
	job := p.WorkflowJob
	logger = logger.With(logkey.JobID, *job.ID, logkey.Action, untrusted.Log(action))
	if !knownAction(action) {
		outcome = outcomeIgnored
		h.write(w, http.StatusAccepted, reply{Result: outcome, Reason: "action not handled", JobID: *job.ID})
		return
	}

	flavor, norm, reason := h.opts.Router.Route(*job.Labels)
	if flavor == "" {
		// Jobs for other runners (GitHub-hosted, another fleet): answer 2xx so GitHub
		// does not list the delivery as failed, and count why.
		outcome = outcomeNotForwarded
		h.metrics.notForwarded.WithLabelValues(reason).Inc()
		logger.Debug("job not forwarded", "reason", reason, "labels", untrusted.Log(strings.Join(*job.Labels, ",")))
		h.write(w, http.StatusOK, reply{Result: outcome, Reason: reason, JobID: *job.ID})
		return
	}
	logger = logger.With(logkey.Flavor, flavor)

	ev := buildEvent(p, deliveryID, start, flavor, norm)
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.PublishTimeout)
	defer cancel()
	pubStart := time.Now()
	res, err := h.opts.Publisher.PublishJobEvent(ctx, ev)
	h.metrics.publishSeconds.Observe(time.Since(pubStart).Seconds())
	if errors.Is(err, queue.ErrEventTooLarge) {
		// It will never fit: no retry, and GitHub is told it was our refusal, not an
		// outage worth redelivering.
		outcome = outcomeTooLarge
		logger.Warn("delivery rejected: job event too large to store", logkey.Error, err)
		h.write(w, http.StatusRequestEntityTooLarge, reply{Result: outcome, Reason: "job event too large to store"})
		return
	}
	if err != nil {
		outcome = outcomeUnavailable
		logger.Error("job event not stored; GitHub will list the delivery as failed", logkey.Error, err)
		w.Header().Set("Retry-After", "5")
		h.write(w, http.StatusServiceUnavailable, reply{Result: outcome, Reason: "queue unavailable"})
		return
	}
	h.metrics.routed.WithLabelValues(flavor, action).Inc()
	outcome = outcomeStored
	if res.Duplicate {
		outcome = outcomeDuplicate
	}
	logger.Info("job event stored", "duplicate", res.Duplicate, "seq", res.Sequence)
	h.write(w, http.StatusOK, reply{Result: outcome, Flavor: flavor, JobID: *job.ID})
}

func buildEvent(p *workflowJobPayload, deliveryID string, received time.Time, flavor string, norm []string) *queue.JobEvent {
	job := p.WorkflowJob
	ev := &queue.JobEvent{
		DeliveryID:   deliveryID,
		ReceivedAt:   received.UTC(),
		Source:       queue.SourceWebhook,
		Action:       *p.Action,
		JobID:        *job.ID,
		RunID:        *job.RunID,
		RunAttempt:   max(job.RunAttempt, 1),
		JobName:      job.Name,
		WorkflowName: job.WorkflowName,
		Repo:         p.Repository.FullName,
		Labels:       *job.Labels,
		NormLabels:   norm,
		Flavor:       flavor,
		JobURL:       job.URL,
		HTMLURL:      job.HTMLURL,
		Status:       job.Status,
		CreatedAt:    job.CreatedAt,
		StartedAt:    job.StartedAt,
		CompletedAt:  job.CompletedAt,
	}
	if p.Organization != nil {
		ev.Org = p.Organization.Login
	}
	if p.Installation != nil {
		ev.InstallationID = p.Installation.ID
	}
	if job.Conclusion != nil {
		ev.Conclusion = *job.Conclusion
	}
	if job.RunnerID != nil {
		ev.RunnerID = *job.RunnerID
	}
	if job.RunnerName != nil {
		ev.RunnerName = *job.RunnerName
	}
	return ev
}

func (h *Handler) write(w http.ResponseWriter, code int, body reply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// Header limits. GitHub's delivery id is a GUID (36 characters of hex and dashes);
// letters beyond hex are let in because the project's own load tools and tests send
// ids such as "bench-3-17". Event names are snake_case words ("workflow_job",
// "projects_v2_item"), the longest about 40 characters.
const (
	MaxDeliveryIDLen = 64
	maxEventLen      = 64
)

// checkHeaders returns why the delivery id or event header is refused, or "". The
// reason is fixed text: it never repeats the header.
func checkHeaders(event, deliveryID string) string {
	switch {
	case event == "":
		return "missing X-GitHub-Event header"
	case len(event) > maxEventLen || !onlyBytes(event, isEventByte):
		return "X-GitHub-Event must be 1-" + strconv.Itoa(maxEventLen) + " characters of a-z, 0-9 and '_'"
	case deliveryID == "":
		return "missing X-GitHub-Delivery header"
	case len(deliveryID) > MaxDeliveryIDLen || !onlyBytes(deliveryID, isDeliveryIDByte):
		return "X-GitHub-Delivery must be a GUID: 1-" + strconv.Itoa(MaxDeliveryIDLen) + " characters of letters, digits and '-'"
	}
	return ""
}

func onlyBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isEventByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_'
}

func isDeliveryIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-'
}

func knownAction(a string) bool {
	for _, k := range queue.Actions {
		if a == k {
			return true
		}
	}
	return false
}

func signatureReason(err error) string {
	switch {
	case errors.Is(err, ErrSignatureMissing):
		return "missing"
	case errors.Is(err, ErrSignatureMalformed):
		return "malformed"
	default:
		return "mismatch"
	}
}

// eventLabel and actionLabel keep metric cardinality bounded whatever is posted.
func eventLabel(e string) string {
	switch e {
	case "workflow_job", "ping", "":
		return e
	}
	return "other"
}

func actionLabel(a string) string {
	if a == "" || knownAction(a) {
		return a
	}
	return "other"
}
