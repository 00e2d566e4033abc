package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/queue"
)

// The tests of this file take each middleware alone, with a hand-made delivery record
// in the request context, then the chain New builds as a whole.

const mwSecret = "middleware-secret-0123456789"

// withDelivery returns r carrying d, as recordOutcome would have left it.
func withDelivery(r *http.Request, d *delivery) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), deliveryKey{}, d))
}

// serve runs r through mw around next and returns the answer and its decoded reply.
func serve(t *testing.T, mw func(http.Handler) http.Handler, next http.HandlerFunc, r *http.Request) (*httptest.ResponseRecorder, reply) {
	t.Helper()
	rec := httptest.NewRecorder()
	mw(next).ServeHTTP(rec, r)
	var rep reply
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
			t.Fatalf("reply %q: %v", rec.Body, err)
		}
	}
	return rec, rep
}

// mustNotRun is a next handler for the cases that must be answered before it.
func mustNotRun(t *testing.T) http.HandlerFunc {
	return func(http.ResponseWriter, *http.Request) { t.Error("the next handler ran") }
}

func TestRecordOutcome(t *testing.T) {
	received := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, event, action string
		answer              bool
		want                []string // event, action, outcome labels
	}{
		{"stored", "workflow_job", "queued", true, []string{"workflow_job", "queued", outcomeStored}},
		{"ping", "ping", "", true, []string{"ping", "", outcomeStored}},
		{"unknown event and action", strings.Repeat("x", 1000), "requeued", true, []string{"other", "other", outcomeStored}},
		{"no event header", "", "", true, []string{"", "", outcomeStored}},
		{"not answered", "workflow_job", "", false, []string{"workflow_job", "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "r"}, []string{"event", "action", "outcome"})
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.Header.Set("X-GitHub-Event", tc.event)
			r.Header.Set("X-GitHub-Delivery", "d-1")
			serve(t, recordOutcome(requests, func() time.Time { return received }), func(w http.ResponseWriter, r *http.Request) {
				d := deliveryOf(r)
				if d.event != tc.event || d.id != "d-1" || !d.received.Equal(received) {
					t.Errorf("the record holds event %.20q id %q received %v", d.event, d.id, d.received)
				}
				d.action = tc.action
				if tc.answer {
					answer(w, d, http.StatusOK, reply{Result: outcomeStored})
				}
			}, r)
			if n := testutil.CollectAndCount(requests); n != 1 {
				t.Fatalf("%d series, want 1", n)
			}
			if got := testutil.ToFloat64(requests.WithLabelValues(tc.want...)); got != 1 {
				t.Errorf("requests%v = %v, want 1", tc.want, got)
			}
		})
	}
}

// TestRecordOutcomeCountsAPanic: a request whose handler panics is still counted.
func TestRecordOutcomeCountsAPanic(t *testing.T) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "r"}, []string{"event", "action", "outcome"})
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("X-GitHub-Event", "workflow_job")
	func() {
		defer func() { _ = recover() }()
		recordOutcome(requests, time.Now)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })).ServeHTTP(httptest.NewRecorder(), r)
	}()
	if got := testutil.ToFloat64(requests.WithLabelValues("workflow_job", "", "")); got != 1 {
		t.Errorf("a panicking request counted %v times, want 1", got)
	}
}

func TestRequireHeaders(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		var logs bytes.Buffer
		d := &delivery{event: "workflow_job", id: "x\n\x1b[2J" + strings.Repeat("A", 1<<20)}
		r := withDelivery(httptest.NewRequest(http.MethodPost, "/", nil), d)
		rec, rep := serve(t, requireHeaders(slog.New(slog.NewJSONHandler(&logs, nil))), mustNotRun(t), r)
		if rec.Code != http.StatusBadRequest || rep.Result != outcomeBadHeader || !strings.Contains(rep.Reason, "X-GitHub-Delivery") {
			t.Errorf("answer %d %+v, want 400 bad_header naming the header", rec.Code, rep)
		}
		if d.outcome != outcomeBadHeader {
			t.Errorf("outcome %q, want %q", d.outcome, outcomeBadHeader)
		}
		if logs.Len() > 2<<10 || strings.Contains(logs.String(), "\x1b") {
			t.Errorf("the log line is %d bytes or carries the escape: the header was not cut", logs.Len())
		}
	})
	t.Run("passed", func(t *testing.T) {
		var logs bytes.Buffer
		d := &delivery{event: "workflow_job", id: "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
		r := withDelivery(httptest.NewRequest(http.MethodPost, "/", nil), d)
		ran := false
		serve(t, requireHeaders(slog.New(slog.NewJSONHandler(&logs, nil))), func(http.ResponseWriter, *http.Request) {
			ran = true
			d.logger.Info("next")
		}, r)
		if !ran {
			t.Fatal("the next handler did not run")
		}
		if !strings.Contains(logs.String(), `"delivery_id":"72d3162e-cc78-11e3-81ab-4c9367dc0958"`) || !strings.Contains(logs.String(), `"event":"workflow_job"`) {
			t.Errorf("the logger passed down lacks the delivery: %s", logs.String())
		}
	})
}

// readerFunc is a request body that fails as the test tells it to.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestReadBody(t *testing.T) {
	const limit = 16
	unread := readerFunc(func([]byte) (int, error) { return 0, errors.New("the body was read") })
	for _, tc := range []struct {
		name           string
		body           io.Reader
		declared       int64
		code           int
		result, reason string
	}{
		{"declared over the limit, not read", unread, limit + 1, 413, outcomeTooLarge, "body exceeds 16 bytes"},
		{"over the limit, undeclared", strings.NewReader(strings.Repeat("x", limit+1)), -1, 413, outcomeTooLarge, "body exceeds 16 bytes"},
		{"read timeout", io.MultiReader(strings.NewReader("{"), readerFunc(func([]byte) (int, error) { return 0, os.ErrDeadlineExceeded })), -1, 408, outcomeTimeout, "body not received in time"},
		{"unreadable", readerFunc(func([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }), -1, 400, outcomeBadRequest, "unreadable body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", tc.body)
			r.ContentLength = tc.declared
			d := &delivery{logger: slog.New(slog.DiscardHandler)}
			rec, rep := serve(t, readBody(limit, &bufferPool{}), mustNotRun(t), withDelivery(r, d))
			if rec.Code != tc.code || rep.Result != tc.result || rep.Reason != tc.reason || d.outcome != tc.result {
				t.Errorf("answer %d %+v outcome %q, want %d %s %q", rec.Code, rep, d.outcome, tc.code, tc.result, tc.reason)
			}
		})
	}
	t.Run("read", func(t *testing.T) {
		body := strings.Repeat("y", limit)
		d := &delivery{logger: slog.New(slog.DiscardHandler)}
		var got string
		serve(t, readBody(limit, &bufferPool{}), func(http.ResponseWriter, *http.Request) { got = string(d.body) }, withDelivery(httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body)), d))
		if got != body {
			t.Errorf("the next handler got body %q, want %q", got, body)
		}
		if d.body != nil {
			t.Error("the record still holds the pooled body after the chain returned")
		}
	})
}

// TestBufferPoolDropsLargeBuffers: a buffer grown past maxPooledBuf is not kept.
func TestBufferPoolDropsLargeBuffers(t *testing.T) {
	var p bufferPool
	big := bytes.NewBuffer(make([]byte, 0, maxPooledBuf+1))
	p.put(big)
	if got := p.get(); got == big || got.Cap() > maxPooledBuf {
		t.Errorf("the pool kept a buffer of %d bytes", got.Cap())
	}
}

func TestRequireSignature(t *testing.T) {
	body := []byte(`{"action":"queued"}`)
	secrets := []secret.Value{secret.New("new-" + mwSecret), secret.New(mwSecret)}
	for _, tc := range []struct {
		name, header, reason string
	}{
		{"missing", "", "missing"},
		{"malformed", "sha1=abc", "malformed"},
		{"mismatch", Sign(body, "other-"+mwSecret), "mismatch"},
		{"valid under the old secret", Sign(body, mwSecret), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failures := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"reason"})
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			if tc.header != "" {
				r.Header.Set("X-Hub-Signature-256", tc.header)
			}
			d := &delivery{logger: slog.New(slog.DiscardHandler), body: body}
			ran := false
			rec, rep := serve(t, requireSignature(secrets, failures), func(http.ResponseWriter, *http.Request) { ran = true }, withDelivery(r, d))
			if tc.reason == "" {
				if !ran || testutil.CollectAndCount(failures) != 0 {
					t.Errorf("a valid signature: next ran %v, answer %d %+v", ran, rec.Code, rep)
				}
				return
			}
			if ran || rec.Code != http.StatusUnauthorized || rep.Result != outcomeUnauthorized || rep.Reason == "" {
				t.Errorf("next ran %v, answer %d %+v, want 401 unauthorized with a reason", ran, rec.Code, rep)
			}
			if got := testutil.ToFloat64(failures.WithLabelValues(tc.reason)); got != 1 {
				t.Errorf("failures{reason=%q} = %v, want 1", tc.reason, got)
			}
		})
	}
}

type discardPublisher struct{}

func (discardPublisher) PublishJobEvent(context.Context, *queue.JobEvent) (queue.PublishResult, error) {
	return queue.PublishResult{}, nil
}

// TestChainOrder: the chain New builds checks the headers before the body is read,
// reads the body before the signature is checked, checks the signature before the
// payload is parsed, and leaves the signature check out only with no secret at all.
func TestChainOrder(t *testing.T) {
	ping := []byte(`{"zen":"x"}`)
	for _, tc := range []struct {
		name           string
		secrets        []secret.Value
		event, id, sig string
		body           io.Reader
		declared       int64
		wantCode       int
		wantResult     string
	}{
		{"bad header, body unread", []secret.Value{secret.New(mwSecret)}, "workflow_job", "../x", "", readerFunc(func([]byte) (int, error) { return 0, errors.New("read") }), -1, 400, outcomeBadHeader},
		{"declared too large, signature unchecked", []secret.Value{secret.New(mwSecret)}, "workflow_job", "d-1", "", strings.NewReader("{}"), 1 << 30, 413, outcomeTooLarge},
		{"unsigned, payload unparsed", []secret.Value{secret.New(mwSecret)}, "workflow_job", "d-1", "", strings.NewReader("{"), -1, 401, outcomeUnauthorized},
		{"signed ping", []secret.Value{secret.New(mwSecret)}, "ping", "d-1", Sign(ping, mwSecret), bytes.NewReader(ping), -1, 200, outcomePong},
		{"no secret: unsigned ping accepted", nil, "ping", "d-1", "", bytes.NewReader(ping), -1, 200, outcomePong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			h, err := New(Options{
				Secrets: tc.secrets, InsecureSkipSignature: true, MaxBodyBytes: 1 << 10,
				Router: NewRouter(nil, "", nil, MatchSubset), Publisher: discardPublisher{}, Registerer: reg,
			})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodPost, "/", tc.body)
			r.ContentLength = tc.declared
			r.Header.Set("X-GitHub-Event", tc.event)
			r.Header.Set("X-GitHub-Delivery", tc.id)
			if tc.sig != "" {
				r.Header.Set("X-Hub-Signature-256", tc.sig)
			}
			rec, rep := serve(t, func(http.Handler) http.Handler { return h }, nil, r)
			if rec.Code != tc.wantCode || rep.Result != tc.wantResult {
				t.Errorf("answer %d %+v, want %d %s", rec.Code, rep, tc.wantCode, tc.wantResult)
			}
			if got := testutil.ToFloat64(h.metrics.requests.WithLabelValues(eventLabel(tc.event), "", tc.wantResult)); got != 1 {
				t.Errorf("the outcome was counted %v times, want 1", got)
			}
		})
	}
}
