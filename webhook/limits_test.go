package webhook_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/httpserve"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/webhook"
)

// The tests of this file are the receiver's answers to hostile input: each one fails
// when the check it covers is taken out.

// queuedWith returns the queued fixture with edit applied to its decoded document.
func queuedWith(t *testing.T, edit func(doc map[string]any)) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(fixture(t, "workflow_job/queued.payload.json"), &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func setLabels(labels []string) func(map[string]any) {
	return func(doc map[string]any) { doc["workflow_job"].(map[string]any)["labels"] = labels }
}

func setRepo(fullName string) func(map[string]any) {
	return func(doc map[string]any) { doc["repository"].(map[string]any)["full_name"] = fullName }
}

// TestHeaderFloodIsCutAndRefused: a megabyte of X-GitHub-Delivery or X-GitHub-Event,
// unsigned, used to be written to the log in full before any check (one request added
// 1,000,167 bytes). Now the headers are checked first, refused with 400, and what is
// logged of them is cut short.
func TestHeaderFloodIsCutAndRefused(t *testing.T) {
	var logBuf bytes.Buffer // ServeHTTP is called in this goroutine
	h, err := webhook.New(webhook.Options{
		Secrets:   []secret.Value{secret.New(testSecret)},
		Router:    webhook.NewRouter([]webhook.FlavorLabels{{Name: "ubuntu", Labels: []string{"ubuntu-latest"}}}, "", nil, webhook.MatchSubset),
		Publisher: nopPublisher{},
		Logger:    slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("A", 1<<20)
	guid := "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	body := fixture(t, "workflow_job/queued.payload.json")
	for _, tc := range []struct {
		name, event, delivery string
		signed                bool
	}{
		{"huge delivery id, unsigned", "workflow_job", huge, false},
		{"huge delivery id, signed", "workflow_job", huge, true},
		{"huge event, unsigned", huge, guid, false},
		{"both huge", huge, huge, false},
		{"delivery id with a newline and ANSI escapes", "workflow_job", "x\n\x1b[2Jforged " + strings.Repeat("-", 1000), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := logBuf.Len()
			req := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", tc.event)
			req.Header.Set("X-GitHub-Delivery", tc.delivery)
			if tc.signed {
				req.Header.Set("X-Hub-Signature-256", webhook.Sign(body, testSecret))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			grew := logBuf.Len() - before
			t.Logf("log grew by %d bytes, answer %d", grew, rec.Code)
			if rec.Code != http.StatusBadRequest {
				t.Errorf("status %d (%s), want 400", rec.Code, rec.Body)
			}
			if grew > 2<<10 {
				t.Errorf("the log grew by %d bytes for one request, want under 2 KiB", grew)
			}
			if rec.Body.Len() > 512 {
				t.Errorf("the answer is %d bytes: it repeats the header", rec.Body.Len())
			}
		})
	}
}

// TestHeaderRules: GUIDs and the ids the project's own tools send pass; anything longer
// than 64 characters or outside letters, digits and '-' is refused, as is an event name
// outside a-z, 0-9 and '_'.
func TestHeaderRules(t *testing.T) {
	h := newHarness(t, nil)
	ping := fixture(t, "ping/payload.json")
	for _, tc := range []struct {
		event, delivery string
		want            int
	}{
		{"ping", "72d3162e-cc78-11e3-81ab-4c9367dc0958", 200},
		{"ping", "72D3162E-CC78-11E3-81AB-4C9367DC0958", 200},
		{"ping", "bench-1700000000000000000-17", 200},
		{"ping", strings.Repeat("a", webhook.MaxDeliveryIDLen), 200},
		{"projects_v2_item", "d-1", 202},
		{"ping", "-", 400}, // the harness sends no header for "-"
		{"ping", strings.Repeat("a", webhook.MaxDeliveryIDLen+1), 400},
		{"ping", "72d3162e cc78", 400},
		{"ping", "../../x", 400},
		{"ping", "id_with_underscore", 400},
		{"ping", "é", 400},
		{"Ping", "d-2", 400},
		{"work flow", "d-3", 400},
		{strings.Repeat("x", 65), "d-4", 400},
	} {
		code, reply, _ := h.post(t, delivery{event: tc.event, id: tc.delivery, body: ping})
		if code != tc.want {
			t.Errorf("event %.20q delivery %.20q: %d %v, want %d", tc.event, tc.delivery, code, reply, tc.want)
		}
		if code == 400 && (reply["result"] != "bad_header" || reply["reason"] == "") {
			t.Errorf("event %.20q delivery %.20q: reply %v, want bad_header with a reason", tc.event, tc.delivery, reply)
		}
	}
}

// TestLabelLimits: more than 100 labels, or one over 256 bytes, is refused with 400
// before routing; 20,000 labels took 2.9 s of CPU to route.
func TestLabelLimits(t *testing.T) {
	h := newHarness(t, nil)
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("label-%d", i)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   int
	}{
		{"20,000 labels", many(20000), 400},
		{"101 labels", many(webhook.MaxLabels + 1), 400},
		{"a label of 257 bytes", []string{"ubuntu-latest", strings.Repeat("x", webhook.MaxLabelLen+1)}, 400},
		{"100 labels", many(webhook.MaxLabels), 200},
		{"a label of 256 bytes", []string{strings.Repeat("x", webhook.MaxLabelLen)}, 200},
	} {
		code, reply, _ := h.post(t, delivery{event: "workflow_job", body: queuedWith(t, setLabels(tc.labels))})
		if code != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, code, reply, tc.want)
		}
		if r, _ := reply["reason"].(string); code == 400 && !strings.Contains(r, "workflow_job.labels") {
			t.Errorf("%s: reason %q does not name the field", tc.name, r)
		}
	}
	if n := len(h.stored(t)); n != 0 {
		t.Errorf("stored %d events for jobs no flavor takes", n)
	}
}

// TestRepositoryNameIsValidated: repository.full_name goes into GitHub API paths and
// operator tables; "../.." reached API paths, and newlines and ANSI escapes were
// printed raw by `jobs list`.
func TestRepositoryNameIsValidated(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		repo string
		want int
	}{
		{"../..", 400},
		{"octo-org/..", 400},
		{"octo-org/octo-repo/../../orgs/x", 400},
		{"octo-org/octo-repo\n9999 ubuntu octo/forged queued", 400},
		{"octo-org/\x1b[2Jrepo", 400},
		{"octo-org/" + strings.Repeat("r", 101), 400},
		{"octo-org", 400},
		{"octo-org/octo-repo", 200},
		{"Octocoders/hello.world_v2", 200},
	} {
		code, reply, _ := h.post(t, delivery{event: "workflow_job", body: queuedWith(t, setRepo(tc.repo))})
		if code != tc.want {
			t.Errorf("full_name %q: %d %v, want %d", tc.repo, code, reply, tc.want)
		}
		r, _ := reply["reason"].(string)
		if code == 400 && (!strings.Contains(r, "repository.full_name") || strings.ContainsAny(r, "\n\x1b")) {
			t.Errorf("full_name %q: reason %q", tc.repo, r)
		}
	}
	for _, ev := range h.stored(t) {
		if ev.Repo != "octo-org/octo-repo" && ev.Repo != "Octocoders/hello.world_v2" {
			t.Errorf("stored an event for %q", ev.Repo)
		}
	}
}

// TestEventTooLargeIs413: a job event that can never be stored (here over the stream's
// message size, from a long job name) is answered 413 at once, not retried for the
// publish timeout and answered 503 as if the queue were down.
func TestEventTooLargeIs413(t *testing.T) {
	h := newHarness(t, func(o *webhook.Options) { o.PublishTimeout = 30 * time.Second })
	body := queuedWith(t, func(doc map[string]any) { doc["workflow_job"].(map[string]any)["name"] = strings.Repeat("n", 200<<10) })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.srv.URL, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "workflow_job")
	req.Header.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	req.Header.Set("X-Hub-Signature-256", webhook.Sign(body, testSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("no answer within 10 s (the publish was retried?): %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(raw), `"too_large"`) {
		t.Fatalf("event too large to store: %d %s, want 413 too_large", resp.StatusCode, raw)
	}
	if resp.Header.Get("Retry-After") != "" {
		t.Error("a permanent refusal carries Retry-After")
	}
}

// TestStalledBodiesDoNotHoldDeclaredLength: the body buffer used to be sized from the
// declared Content-Length, so 100 connections that each declared 1 MiB and sent a few
// bytes held 100 MiB until the read timeout. The buffer now grows with what arrives,
// and the read timeout (webhook.read_timeout, passed to httpserve) ends them.
func TestStalledBodiesDoNotHoldDeclaredLength(t *testing.T) {
	const (
		conns    = 100
		declared = 1 << 20
		timeout  = 3 * time.Second
	)
	h, err := webhook.New(webhook.Options{
		Secrets:      []secret.Value{secret.New(testSecret)},
		MaxBodyBytes: declared,
		Router:       webhook.NewRouter([]webhook.FlavorLabels{{Name: "ubuntu", Labels: []string{"ubuntu-latest"}}}, "", nil, webhook.MatchSubset),
		Publisher:    nopPublisher{},
	})
	if err != nil {
		t.Fatal(err)
	}
	// reading counts the handlers that have started to read their body: by then any
	// allocation sized from Content-Length has been made.
	var reading atomic.Int64
	wrapped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = &firstReadCounter{ReadCloser: r.Body, n: &reading}
		h.ServeHTTP(w, r)
	})
	srv, err := httpserve.ListenOptions("webhook", "127.0.0.1:0", wrapped, nil, httpserve.Options{ReadTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	before := heapInUse()
	head := fmt.Sprintf("POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"X-GitHub-Event: workflow_job\r\nX-GitHub-Delivery: %%d\r\nContent-Length: %d\r\n\r\n{\"action\":", declared)
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := fmt.Fprintf(c, head, i); err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	start := time.Now()
	for reading.Load() < conns {
		if time.Since(start) > timeout {
			t.Fatalf("only %d of %d handlers read their body before the read timeout", reading.Load(), conns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	grew := heapInUse() - before
	t.Logf("%d stalled requests declaring %d bytes each: heap grew by %.1f MB", conns, declared, float64(grew)/1e6)
	if limit := int64(20 << 20); grew > limit {
		t.Errorf("heap grew by %d bytes with %d stalled requests, want under %d: buffers follow the declared length", grew, conns, limit)
	}

	// The read timeout ends every one of them with 408 and closes the connection.
	for i, c := range cs {
		_ = c.SetReadDeadline(time.Now().Add(timeout + 10*time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: no answer after the read timeout: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("connection %d: status %d, want 408", i, resp.StatusCode)
		}
	}
}

type firstReadCounter struct {
	io.ReadCloser
	n    *atomic.Int64
	once sync.Once
}

func (f *firstReadCounter) Read(p []byte) (int, error) {
	f.once.Do(func() { f.n.Add(1) })
	return f.ReadCloser.Read(p)
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}
