package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
	"github.com/runner-spawner/runner-spawner/webhook"
)

const testSecret = "test-webhook-secret-0123456789"

type harness struct {
	srv  *httptest.Server
	nats *queuetest.Server
	conn *queue.Conn
	reg  *prometheus.Registry
	ids  atomic.Int64
}

func newHarness(t *testing.T, edit func(*webhook.Options)) *harness {
	t.Helper()
	ns := queuetest.Start(t)
	conn := ns.Connect(t, queue.Options{})
	reg := prometheus.NewRegistry()
	opts := webhook.Options{
		Secrets: []secret.Value{secret.New(testSecret)},
		Router: webhook.NewRouter([]webhook.FlavorLabels{
			{Name: "ubuntu", Labels: []string{"ubuntu-latest"}},
			{Name: "k8s", Labels: []string{"k8s"}},
		}, "", []string{"self-hosted", "linux"}, webhook.MatchSubset),
		Publisher:      conn,
		PublishTimeout: 500 * time.Millisecond,
		Registerer:     reg,
	}
	if edit != nil {
		edit(&opts)
	}
	h, err := webhook.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &harness{srv: srv, nats: ns, conn: conn, reg: reg}
}

func fixture(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "webhooks", rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type delivery struct {
	event, id, contentType, signature string
	body                              []byte
}

func (h *harness) post(t *testing.T, d delivery) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, h.srv.URL, bytes.NewReader(d.body))
	if d.contentType == "" {
		d.contentType = "application/json"
	}
	req.Header.Set("Content-Type", d.contentType)
	if d.event != "" {
		req.Header.Set("X-GitHub-Event", d.event)
	}
	switch d.id {
	case "-":
	case "":
		// GitHub sends a delivery id with every delivery; the tests that do not care get
		// a fresh GUID-shaped one.
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("00000000-0000-4000-8000-%012d", h.ids.Add(1)))
	default:
		req.Header.Set("X-GitHub-Delivery", d.id)
	}
	if d.signature == "" {
		d.signature = webhook.Sign(d.body, testSecret)
	} else if d.signature == "-" {
		d.signature = ""
	}
	if d.signature != "" {
		req.Header.Set("X-Hub-Signature-256", d.signature)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body, resp.Header
}

func (h *harness) stored(t *testing.T) []*queue.JobEvent {
	t.Helper()
	ctx := t.Context()
	st, err := h.nats.JetStream(t).Stream(ctx, queue.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*queue.JobEvent
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		ev, err := queue.UnmarshalJobEvent(m.Data)
		if err != nil {
			t.Fatalf("stored event %d: %v", seq, err)
		}
		if f, a, _ := queue.ParseJobSubject(m.Subject); f != ev.Flavor || a != ev.Action {
			t.Errorf("event stored on %s has flavor %s action %s", m.Subject, ev.Flavor, ev.Action)
		}
		out = append(out, ev)
	}
	return out
}

func TestEveryFixtureAction(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		file, wantAction, wantFlavor string
	}{
		{"workflow_job/queued.payload.json", "queued", "ubuntu"},
		{"workflow_job/queued.with-deployment.payload.json", "queued", "k8s"},
		{"workflow_job/waiting.payload.json", "waiting", "k8s"},
		{"workflow_job/in_progress.payload.json", "in_progress", "ubuntu"},
		{"workflow_job/in_progress.with-queued-steps.payload.json", "in_progress", "ubuntu"},
		{"workflow_job/completed.success.with-organization.payload.json", "completed", "ubuntu"},
		{"workflow_job/completed.failure.with-organization.payload.json", "completed", "ubuntu"},
	}
	for i, tt := range tests {
		code, body, _ := h.post(t, delivery{event: "workflow_job", id: fmt.Sprintf("fixture-%d", i), body: fixture(t, tt.file)})
		if code != http.StatusOK || body["result"] != "stored" || body["flavor"] != tt.wantFlavor {
			t.Errorf("%s: %d %v, want 200 stored to %s", tt.file, code, body, tt.wantFlavor)
		}
	}
	evs := h.stored(t)
	if len(evs) != len(tests) {
		t.Fatalf("stored %d events, want %d", len(evs), len(tests))
	}
	for i, ev := range evs {
		if ev.Action != tests[i].wantAction || ev.Flavor != tests[i].wantFlavor {
			t.Errorf("event %d: action %s flavor %s", i, ev.Action, ev.Flavor)
		}
		if ev.DeliveryID != fmt.Sprintf("fixture-%d", i) || ev.Repo == "" || ev.RunID == 0 || ev.ReceivedAt.IsZero() || ev.Source != queue.SourceWebhook {
			t.Errorf("event %d incomplete: %+v", i, ev)
		}
	}
	if evs[0].InstallationID == 0 || evs[0].RunnerName != "GitHub Actions 5" {
		t.Errorf("queued fixture: installation/runner not carried: %+v", evs[0])
	}
	if evs[5].Org != "Octocoders" || evs[5].Conclusion != "success" || evs[6].Conclusion != "failure" {
		t.Errorf("completed fixtures: org/conclusion not carried: %+v %+v", evs[5], evs[6])
	}
}

func TestOtherEvents(t *testing.T) {
	h := newHarness(t, nil)
	for _, f := range []string{"ping/payload.json", "ping/with-app_id.payload.json", "ping/with-organization.payload.json"} {
		code, body, _ := h.post(t, delivery{event: "ping", body: fixture(t, f)})
		if code != http.StatusOK || body["result"] != "pong" {
			t.Errorf("ping %s: %d %v", f, code, body)
		}
	}
	code, body, _ := h.post(t, delivery{event: "workflow_run", body: fixture(t, "workflow_run/completed.payload.json")})
	if code != http.StatusAccepted || body["result"] != "ignored" {
		t.Errorf("workflow_run: %d %v", code, body)
	}
	unknownAction := bytes.Replace(fixture(t, "workflow_job/queued.payload.json"), []byte(`"action": "queued"`), []byte(`"action": "requeued"`), 1)
	code, body, _ = h.post(t, delivery{event: "workflow_job", body: unknownAction})
	if code != http.StatusAccepted || body["result"] != "ignored" {
		t.Errorf("unknown action: %d %v", code, body)
	}
	if n := len(h.stored(t)); n != 0 {
		t.Errorf("stored %d events for events that are not handled", n)
	}
	if got := testutil.ToFloat64(counter(t, h.reg, "spawner_webhook_requests_total", map[string]string{"event": "other", "outcome": "ignored"})); got != 1 {
		t.Errorf("ignored events counted %v, want 1", got)
	}
}

func TestNotForwarded(t *testing.T) {
	h := newHarness(t, nil)
	body := bytes.Replace(fixture(t, "workflow_job/queued.payload.json"), []byte(`"ubuntu-latest"`), []byte(`"gpu"`), 1)
	code, reply, _ := h.post(t, delivery{event: "workflow_job", id: "nf-1", body: body})
	if code != http.StatusOK || reply["result"] != "not_forwarded" || reply["reason"] != webhook.ReasonNoFlavor {
		t.Errorf("no flavor: %d %v", code, reply)
	}
	if len(h.stored(t)) != 0 {
		t.Error("a job for no flavor was stored")
	}
}

func TestBadRequests(t *testing.T) {
	h := newHarness(t, func(o *webhook.Options) { o.MaxBodyBytes = 16 << 10 })
	queued := fixture(t, "workflow_job/queued.payload.json")
	big := append(bytes.Repeat([]byte(" "), 20<<10), queued...)
	tests := []struct {
		name string
		d    delivery
		code int
	}{
		{"no signature", delivery{event: "workflow_job", body: queued, signature: "-"}, 401},
		{"wrong signature", delivery{event: "workflow_job", body: queued, signature: webhook.Sign(queued, "nope-nope-nope-nope")}, 401},
		{"body too large", delivery{event: "workflow_job", body: big}, 413},
		{"no event header", delivery{body: queued}, 400},
		{"malformed JSON", delivery{event: "workflow_job", body: []byte(`{"action": "queued",`)}, 400},
		{"missing job id", delivery{event: "workflow_job", body: []byte(`{"action":"queued","workflow_job":{"run_id":1,"labels":[]},"repository":{"full_name":"o/r"}}`)}, 400},
		{"missing labels", delivery{event: "workflow_job", body: []byte(`{"action":"queued","workflow_job":{"id":1,"run_id":1},"repository":{"full_name":"o/r"}}`)}, 400},
		{"missing repository", delivery{event: "workflow_job", body: []byte(`{"action":"queued","workflow_job":{"id":1,"run_id":1,"labels":[]}}`)}, 400},
		{"unsupported content type", delivery{event: "workflow_job", body: queued, contentType: "text/plain"}, 400},
		{"form without payload", delivery{event: "workflow_job", body: []byte("x=1"), contentType: "application/x-www-form-urlencoded"}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, _ := h.post(t, tt.d)
			if code != tt.code {
				t.Fatalf("status %d (%v), want %d", code, body, tt.code)
			}
			if r, _ := body["reason"].(string); r == "" && code != 413 {
				t.Errorf("no reason in %v", body)
			} else if strings.Contains(r, "octo") {
				t.Errorf("reason echoes the body: %q", r)
			}
		})
	}
	if n := len(h.stored(t)); n != 0 {
		t.Errorf("bad requests stored %d events", n)
	}
}

func TestFormEncodedDelivery(t *testing.T) {
	h := newHarness(t, nil)
	form := []byte("payload=" + url.QueryEscape(string(fixture(t, "workflow_job/queued.with-deployment.payload.json"))))
	code, body, _ := h.post(t, delivery{event: "workflow_job", id: "form-1", body: form, contentType: "application/x-www-form-urlencoded"})
	if code != 200 || body["flavor"] != "k8s" {
		t.Fatalf("form delivery: %d %v", code, body)
	}
	if evs := h.stored(t); len(evs) != 1 || evs[0].JobID != 12877621891 {
		t.Fatalf("stored %+v", evs)
	}
}

func TestDuplicateDeliveryStoredOnce(t *testing.T) {
	h := newHarness(t, nil)
	d := delivery{event: "workflow_job", id: "72d3162e-cc78-11e3-81ab-4c9367dc0958", body: fixture(t, "workflow_job/queued.payload.json")}
	for i := range 3 {
		code, body, _ := h.post(t, d)
		want := "stored"
		if i > 0 {
			want = "duplicate"
		}
		if code != 200 || body["result"] != want {
			t.Fatalf("post %d: %d %v, want 200 %s", i, code, body, want)
		}
	}
	if n := len(h.stored(t)); n != 1 {
		t.Fatalf("stored %d messages for one delivery posted three times", n)
	}
}

func TestNATSDownThenBack(t *testing.T) {
	h := newHarness(t, nil)
	body := fixture(t, "workflow_job/queued.payload.json")
	h.nats.Stop()
	code, reply, hdr := h.post(t, delivery{event: "workflow_job", id: "while-down", body: body})
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || reply["result"] != "unavailable" {
		t.Fatalf("NATS down: %d %v Retry-After=%q, want 503 with Retry-After", code, reply, hdr.Get("Retry-After"))
	}
	h.nats.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, reply, _ = h.post(t, delivery{event: "workflow_job", id: "after-restart", body: body})
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("NATS back: still %d %v", code, reply)
		}
		time.Sleep(100 * time.Millisecond)
	}
	evs := h.stored(t)
	if len(evs) != 1 || evs[0].DeliveryID != "after-restart" {
		t.Fatalf("after restart the stream holds %d events (%v); want only the delivery answered 200", len(evs), evs)
	}
}

func TestStreamFullIs503(t *testing.T) {
	ns := queuetest.Start(t)
	conn := ns.Connect(t, queue.Options{Streams: queue.StreamOptions{MaxMsgs: 1}})
	h, err := webhook.New(webhook.Options{
		Secrets:   []secret.Value{secret.New(testSecret)},
		Router:    webhook.NewRouter([]webhook.FlavorLabels{{Name: "ubuntu", Labels: []string{"ubuntu-latest"}}}, "", nil, webhook.MatchSubset),
		Publisher: conn,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	hh := &harness{srv: srv, nats: ns, conn: conn}
	body := fixture(t, "workflow_job/queued.payload.json")
	if code, _, _ := hh.post(t, delivery{event: "workflow_job", id: "a", body: body}); code != 200 {
		t.Fatalf("first: %d", code)
	}
	if code, reply, _ := hh.post(t, delivery{event: "workflow_job", id: "b", body: body}); code != 503 {
		t.Fatalf("stream full: %d %v, want 503", code, reply)
	}
}

func TestNewRefusesWithoutSecret(t *testing.T) {
	_, err := webhook.New(webhook.Options{Router: webhook.NewRouter(nil, "", nil, ""), Publisher: nopPublisher{}})
	if err == nil {
		t.Fatal("New accepted no secret without InsecureSkipSignature")
	}
	if _, err := webhook.New(webhook.Options{InsecureSkipSignature: true, Router: webhook.NewRouter(nil, "", nil, ""), Publisher: nopPublisher{}}); err != nil {
		t.Fatalf("InsecureSkipSignature: %v", err)
	}
}

type nopPublisher struct{}

func (nopPublisher) PublishJobEvent(context.Context, *queue.JobEvent) (queue.PublishResult, error) {
	return queue.PublishResult{}, nil
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	c.Add(total)
	return c
}

var _ = jetstream.ErrStreamNotFound

func TestWrongFieldTypesAre400(t *testing.T) {
	h := newHarness(t, nil)
	for name, body := range map[string]string{
		"string id":        `{"action":"queued","workflow_job":{"id":"12","run_id":1,"labels":[]},"repository":{"full_name":"o/r"}}`,
		"labels not array": `{"action":"queued","workflow_job":{"id":12,"run_id":1,"labels":"x"},"repository":{"full_name":"o/r"}}`,
		"numeric label":    `{"action":"queued","workflow_job":{"id":12,"run_id":1,"labels":[1]},"repository":{"full_name":"o/r"}}`,
		"float id":         `{"action":"queued","workflow_job":{"id":1.5,"run_id":1,"labels":[]},"repository":{"full_name":"o/r"}}`,
		"trailing garbage": `{"action":"queued","workflow_job":{"id":12,"run_id":1,"labels":[]},"repository":{"full_name":"o/r"}} x`,
		"array document":   `[1,2]`,
	} {
		if code, reply, _ := h.post(t, delivery{event: "workflow_job", body: []byte(body)}); code != 400 {
			t.Errorf("%s: %d %v, want 400", name, code, reply)
		}
	}
}
