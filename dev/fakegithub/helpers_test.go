package fakegithub_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// eventually polls f until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receiver is a webhook target that checks signatures and keeps what arrived.
type receiver struct {
	t      *testing.T
	secret string
	srv    *httptest.Server
	status int // answer (default 200)

	mu  sync.Mutex
	got []received
}

type received struct {
	Event, Delivery, Action string
	JobID                   int64
	Status                  string
	RunnerName              string
	SigOK                   bool
	Header                  http.Header
	Body                    []byte
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{t: t, secret: secret, status: http.StatusOK}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var p struct {
			Action      string `json:"action"`
			WorkflowJob struct {
				ID         int64  `json:"id"`
				Status     string `json:"status"`
				RunnerName string `json:"runner_name"`
			} `json:"workflow_job"`
		}
		_ = json.Unmarshal(body, &p)
		r.mu.Lock()
		r.got = append(r.got, received{
			Event: req.Header.Get("X-GitHub-Event"), Delivery: req.Header.Get("X-GitHub-Delivery"),
			Action: p.Action, JobID: p.WorkflowJob.ID, Status: p.WorkflowJob.Status, RunnerName: p.WorkflowJob.RunnerName,
			SigOK:  req.Header.Get("X-Hub-Signature-256") == hmacSHA256(r.secret, body),
			Header: req.Header.Clone(), Body: body,
		})
		status := r.status
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) all() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func (r *receiver) setStatus(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = code
}

// actions returns "action" per delivery for one job, in arrival order.
func (r *receiver) actions(jobID int64) []string {
	var out []string
	for _, g := range r.all() {
		if g.JobID == jobID {
			out = append(out, g.Action)
		}
	}
	return out
}

// newServer starts a fake with a receiver and cleans both up.
func newServer(t *testing.T, opts fakegithub.Options) (*fakegithub.Server, *receiver) {
	t.Helper()
	rcv := newReceiver(t, "s3cret")
	opts.WebhookURL = rcv.srv.URL
	opts.WebhookSecret = "s3cret"
	srv := fakegithub.NewServer(opts)
	t.Cleanup(srv.Close)
	return srv, rcv
}

// api sends a REST request to the fake and decodes a JSON answer into out (if non-nil).
func api(t *testing.T, srv *fakegithub.Server, method, path, token string, in, out any) *http.Response {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(data))
	if out != nil && len(data) > 0 && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp
}

type jitAnswer struct {
	Runner struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	} `json:"runner"`
	EncodedJITConfig string `json:"encoded_jit_config"`
}

// mintJIT registers an org runner and returns its encoded config.
func mintJIT(t *testing.T, srv *fakegithub.Server, name string, labels ...string) jitAnswer {
	t.Helper()
	var a jitAnswer
	resp := api(t, srv, "POST", "orgs/octo-org/actions/runners/generate-jitconfig", "", map[string]any{
		"name": name, "runner_group_id": 1, "labels": labels,
	}, &a)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("generate-jitconfig %s: status %d", name, resp.StatusCode)
	}
	return a
}

// startRunner runs fakerunner.Run in the background; the returned func waits for its result.
func startRunner(t *testing.T, ctx context.Context, opts fakerunner.Options) func() error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fakerunner.Run(ctx, opts) }()
	var once sync.Once
	var err error
	wait := func() error {
		once.Do(func() {
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("runner did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = wait() })
	return wait
}

func jobState(t *testing.T, srv *fakegithub.Server, id int64) fakegithub.Job {
	t.Helper()
	j, ok := srv.Job(id)
	if !ok {
		t.Fatalf("job %d not found", id)
	}
	return j
}

// hmacSHA256 computes the signature independently of the fake's Signature.
func hmacSHA256(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

var errCanceled = context.Canceled

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return ctx, cancel
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
