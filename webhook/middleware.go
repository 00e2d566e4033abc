package webhook

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
)

// delivery is the record of one request, opened by recordOutcome and filled in by the
// steps after it, each field by the one step that establishes it. It travels in the
// request context as one pointer rather than as a context value per field because
// the outcome and action must travel back up to recordOutcome, which a context value
// cannot do without a mutable holder anyway; and one value costs one allocation and
// one request copy per delivery, not one per step.
type delivery struct {
	received time.Time // when the request arrived: the job event's ReceivedAt
	// event and id are the X-GitHub-Event and X-GitHub-Delivery headers: anyone's
	// bytes, printed only through untrusted.Log, until requireHeaders passes them.
	event, id string
	// logger carries the delivery id and event once requireHeaders has passed them,
	// then what the later steps learn (job, action, flavor).
	logger *slog.Logger
	// body is the raw body read by readBody; it is the pool's memory and is valid
	// only until readBody's next handler returns.
	body    []byte
	action  string // the payload's action, once parsed (a metric label)
	outcome string // the reply's result, set by answer (a metric label)
}

type deliveryKey struct{}

// deliveryOf returns the record recordOutcome put in the request context.
func deliveryOf(r *http.Request) *delivery {
	d, ok := r.Context().Value(deliveryKey{}).(*delivery)
	if !ok {
		panic("webhook: no delivery in the request context: the chain must start with recordOutcome")
	}
	return d
}

// recordOutcome opens the delivery's record and, once the chain has answered (or
// panicked), counts the request by event, action and outcome. The labels are bounded
// whatever is posted: an unknown event or action counts as "other".
func recordOutcome(requests *prometheus.CounterVec, now func() time.Time) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := &delivery{
				received: now(),
				event:    r.Header.Get("X-GitHub-Event"),
				id:       r.Header.Get("X-GitHub-Delivery"),
			}
			defer func() { requests.WithLabelValues(eventLabel(d.event), actionLabel(d.action), d.outcome).Inc() }()
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), deliveryKey{}, d)))
		})
	}
}

// requireHeaders answers 400 bad_header when the event or delivery id header is
// missing or malformed. It comes before the body is read: checking headers costs
// nothing, and until they pass they are anyone's bytes, printed only cut short.
func requireHeaders(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := deliveryOf(r)
			if reason := checkHeaders(d.event, d.id); reason != "" {
				logger.Warn("delivery rejected: bad header", "reason", reason,
					logkey.DeliveryID, untrusted.Log(d.id), logkey.Event, untrusted.Log(d.event), "remote", r.RemoteAddr)
				answer(w, d, http.StatusBadRequest, reply{Result: outcomeBadHeader, Reason: reason})
				return
			}
			d.logger = logger.With(logkey.DeliveryID, d.id, logkey.Event, d.event)
			next.ServeHTTP(w, r)
		})
	}
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

// readBody reads the whole body into a pooled buffer for the steps after it. A body
// declared or found to be over maxBytes is answered 413, one not received within the
// server's read timeout 408, and one that cannot be read otherwise 400.
func readBody(maxBytes int64, pool *bufferPool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := deliveryOf(r)
			if r.ContentLength > maxBytes {
				answerTooLarge(w, r, d, maxBytes)
				return
			}
			buf := pool.get()
			defer func() {
				d.body = nil // the buffer is about to be reused by another request
				pool.put(buf)
			}()
			// The buffer grows with the bytes that arrive, never from the declared
			// Content-Length: a client that declares a megabyte and sends ten bytes
			// costs ten bytes' worth, for at most the server's read timeout.
			if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBytes)); err != nil {
				answerReadError(w, r, d, err, buf.Len(), maxBytes)
				return
			}
			d.body = buf.Bytes()
			next.ServeHTTP(w, r)
		})
	}
}

func answerTooLarge(w http.ResponseWriter, r *http.Request, d *delivery, maxBytes int64) {
	d.logger.Warn("delivery rejected: body too large", "limit", maxBytes, "remote", r.RemoteAddr)
	answer(w, d, http.StatusRequestEntityTooLarge, reply{Result: outcomeTooLarge, Reason: "body exceeds " + strconv.FormatInt(maxBytes, 10) + " bytes"})
}

// answerReadError answers a body that could not be read in full; received is how
// much of it arrived.
func answerReadError(w http.ResponseWriter, r *http.Request, d *delivery, err error, received int, maxBytes int64) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		answerTooLarge(w, r, d, maxBytes)
	case errors.Is(err, os.ErrDeadlineExceeded):
		d.logger.Warn("delivery rejected: body not received within the read timeout", "received", received, "remote", r.RemoteAddr)
		answer(w, d, http.StatusRequestTimeout, reply{Result: outcomeTimeout, Reason: "body not received in time"})
	default:
		answer(w, d, http.StatusBadRequest, reply{Result: outcomeBadRequest, Reason: "unreadable body"})
	}
}

// bufferPool recycles request bodies (8-13 KB each): nothing keeps a reference to a
// body once readBody's next handler returns, since parsing copies what it keeps. The
// zero value is ready to use.
type bufferPool struct{ pool sync.Pool }

// maxPooledBuf is the largest buffer put back in the pool: a rare large body must not
// leave a megabyte per pooled buffer behind.
const maxPooledBuf = 64 << 10

func (p *bufferPool) get() *bytes.Buffer {
	if b, ok := p.pool.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

func (p *bufferPool) put(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuf {
		p.pool.Put(b)
	}
}

// requireSignature answers 401 unless the X-Hub-Signature-256 header is the HMAC of
// the body under one of secrets, and counts the failures by reason.
func requireSignature(secrets []secret.Value, failures *prometheus.CounterVec) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := deliveryOf(r)
			if err := VerifySignature(d.body, r.Header.Get("X-Hub-Signature-256"), secrets); err != nil {
				failures.WithLabelValues(signatureReason(err)).Inc()
				d.logger.Warn("delivery rejected: bad signature", logkey.Error, err, "remote", r.RemoteAddr)
				answer(w, d, http.StatusUnauthorized, reply{Result: outcomeUnauthorized, Reason: err.Error()})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
