package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
	"github.com/runner-spawner/runner-spawner/internal/ghname"
	"github.com/runner-spawner/runner-spawner/internal/secret"
)

func TestGenerateJITConfig(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		group   string // Options.RunnerGroup
		req     JITConfigRequest
		wantErr error
	}{
		{"org, default group", "octo-org", "", JITConfigRequest{Name: "r-1", Labels: []string{"self-hosted", "linux"}}, nil},
		{"org, named group", "octo-org", "", JITConfigRequest{Name: "r-2", Labels: []string{"self-hosted"}, RunnerGroup: "big"}, nil},
		{"org, group from options", "octo-org", "BIG", JITConfigRequest{Name: "r-3", Labels: []string{"self-hosted"}}, nil},
		{"org, unknown group", "octo-org", "", JITConfigRequest{Name: "r-4", Labels: []string{"x"}, RunnerGroup: "nope"}, ErrNotFound},
		{"repo", "octo-org/octo-repo", "", JITConfigRequest{Name: "r-5", Labels: []string{"self-hosted"}}, nil},
		{"unknown repo", "octo-org/nope", "", JITConfigRequest{Name: "r-6", Labels: []string{"self-hosted"}}, ErrNotFound},
		{"name taken", "octo-org", "", JITConfigRequest{Name: "taken", Labels: []string{"self-hosted"}}, ErrConflict},
	}
	srv := newFake(t, fakegithub.Options{Token: "pat", RunnerGroups: []string{"big"}})
	first := newClient(t, srv, nil)
	if _, err := first.GenerateJITConfig(t.Context(), JITConfigRequest{Name: "taken", Labels: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, srv, func(o *Options) { o.Path, o.RunnerGroup = tt.path, tt.group })
			got, err := c.GenerateJITConfig(t.Context(), tt.req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.RunnerName != tt.req.Name || got.RunnerID == 0 {
				t.Errorf("got %+v", got)
			}
			if s := fmt.Sprint(got.EncodedJITConfig); strings.Contains(s, got.EncodedJITConfig.Reveal()) {
				t.Errorf("JIT config printed in clear: %s", s)
			}
			cfg, err := fakerunner.DecodeJITConfig(got.EncodedJITConfig.Reveal())
			if err != nil || cfg.RunnerID != got.RunnerID || !slices.Equal(cfg.Labels, tt.req.Labels) {
				t.Errorf("encoded config = %+v, %v", cfg, err)
			}
			var r fakegithub.Runner
			for _, x := range srv.Runners() {
				if x.ID == got.RunnerID {
					r = x
				}
			}
			wantRepo := ""
			if strings.Contains(tt.path, "/") {
				wantRepo = tt.path
			}
			wantGroup := int64(1)
			if strings.EqualFold(tt.req.RunnerGroup, "big") || strings.EqualFold(tt.group, "big") {
				wantGroup = 2
			}
			if r.Repo != wantRepo || r.GroupID != wantGroup {
				t.Errorf("registered runner repo/group = %q/%d, want %q/%d", r.Repo, r.GroupID, wantRepo, wantGroup)
			}
		})
	}
	// The group listing is cached: minting again does not list groups again.
	c := newClient(t, srv, nil)
	for i := range 3 {
		if _, err := c.GenerateJITConfig(t.Context(), JITConfigRequest{Name: fmt.Sprintf("cached-%d", i), Labels: []string{"a"}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.metric(t, "spawner_github_requests_total", map[string]string{"operation": "list_runner_groups"}); n != 1 {
		t.Errorf("listed groups %v times for 3 mints, want 1", n)
	}
}

func TestRunnerOperations(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat", JobDuration: time.Hour})
	c := newClient(t, srv, nil)
	ctx := t.Context()
	var ids []int64
	for _, name := range []string{"spawner-a", "spawner-b", "other-c"} {
		j, err := c.GenerateJITConfig(ctx, JITConfigRequest{Name: name, Labels: []string{"self-hosted", "linux"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.RunnerID)
	}
	got, err := c.ListRunners(ctx, "spawner-")
	if err != nil {
		t.Fatal(err)
	}
	want := []Runner{
		{ID: ids[0], Name: "spawner-a", Status: "offline", Labels: []string{"self-hosted", "linux"}, Ephemeral: true},
		{ID: ids[1], Name: "spawner-b", Status: "offline", Labels: []string{"self-hosted", "linux"}, Ephemeral: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListRunners (-want +got):\n%s", diff)
	}

	r, err := c.GetRunner(ctx, ids[2])
	if err != nil || r.Name != "other-c" {
		t.Errorf("GetRunner = %+v, %v", r, err)
	}
	if _, err := c.GetRunner(ctx, 424242); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRunner(unknown) err = %v, want ErrNotFound", err)
	}

	// A runner running a job cannot be deleted; an idle or gone one can.
	srv.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted"}})
	jit, err := c.GenerateJITConfig(ctx, JITConfigRequest{Name: "spawner-busy", Labels: []string{"self-hosted"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	defer func() { stop(); <-done }()
	go func() { done <- fakerunner.Run(rctx, fakerunner.Options{JITConfig: jit.EncodedJITConfig.Reveal()}) }()
	eventually(t, 30*time.Second, "runner busy", func() bool {
		r, err := c.GetRunner(ctx, jit.RunnerID)
		return err == nil && r.Busy && r.Status == "online"
	})
	tests := []struct {
		name    string
		id      int64
		wantErr error
	}{
		{"busy", jit.RunnerID, ErrRunnerBusy},
		{"idle", ids[0], nil},
		{"already gone", ids[0], nil},
		{"never existed", 999999, nil},
	}
	for _, tt := range tests {
		t.Run("delete "+tt.name, func(t *testing.T) {
			if err := c.DeleteRunner(ctx, tt.id); !errors.Is(err, tt.wantErr) {
				t.Errorf("DeleteRunner = %v, want %v", err, tt.wantErr)
			}
		})
	}
	var apiErr *APIError
	if err := c.DeleteRunner(ctx, jit.RunnerID); !errors.As(err, &apiErr) || apiErr.StatusCode != 422 || apiErr.RequestID == "" || apiErr.Op != "delete_runner" {
		t.Errorf("busy delete error = %#v, want *APIError 422 with request id", err)
	}
}

func TestJobOperations(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat", JobDuration: time.Hour})
	c := newClient(t, srv, nil)
	ctx := t.Context()
	first := srv.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux"}, Name: "build"})
	second := srv.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux"}, Name: "test", RunID: first.RunID})
	other := srv.CreateJob(fakegithub.JobSpec{Labels: []string{"gpu"}, Name: "train"})

	// A runner takes the first job: its run is in progress and still has a queued job.
	jit, err := c.GenerateJITConfig(ctx, JITConfigRequest{Name: "r1", Labels: []string{"self-hosted", "linux"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	defer func() { stop(); <-done }()
	go func() { done <- fakerunner.Run(rctx, fakerunner.Options{JITConfig: jit.EncodedJITConfig.Reveal()}) }()
	eventually(t, 30*time.Second, "first job in progress", func() bool {
		j, err := c.GetJob(ctx, "octo-org/octo-repo", first.ID)
		return err == nil && j.Status == "in_progress"
	})

	j, err := c.GetJob(ctx, "octo-org/octo-repo", first.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := Job{ID: first.ID, RunID: first.RunID, RunAttempt: 1, Name: "build", Status: "in_progress", RunnerName: "r1", RunnerID: jit.RunnerID,
		Labels: []string{"self-hosted", "linux"}, Repo: "octo-org/octo-repo"}
	if diff := cmp.Diff(want, j, cmpopts.IgnoreFields(Job{}, "HTMLURL", "CreatedAt", "StartedAt", "CompletedAt")); diff != "" {
		t.Errorf("GetJob (-want +got):\n%s", diff)
	}
	if j.CreatedAt.IsZero() || j.StartedAt.IsZero() || !j.CompletedAt.IsZero() || j.HTMLURL == "" {
		t.Errorf("times/url of running job: %+v", j)
	}
	if _, err := c.GetJob(ctx, "octo-org/octo-repo", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetJob(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := c.GetJob(ctx, "not-a-repo", 1); err == nil {
		t.Error("GetJob with a bad repo succeeded")
	}

	jobs, err := c.ListRunJobs(ctx, "octo-org/octo-repo", first.RunID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range jobs {
		names = append(names, j.Name+":"+j.Status)
	}
	if diff := cmp.Diff([]string{"build:in_progress", "test:queued"}, names); diff != "" {
		t.Errorf("ListRunJobs (-want +got):\n%s", diff)
	}

	queued, err := c.ListQueuedJobs(ctx, "octo-org/octo-repo")
	if err != nil {
		t.Fatal(err)
	}
	var qids []int64
	for _, j := range queued {
		qids = append(qids, j.ID)
	}
	slices.Sort(qids)
	if diff := cmp.Diff([]int64{second.ID, other.ID}, qids); diff != "" {
		t.Errorf("ListQueuedJobs ids (-want +got):\n%s", diff)
	}
}

func TestDeliveries(t *testing.T) {
	key, err := fakegithub.GenerateAppKey()
	if err != nil {
		t.Fatal(err)
	}
	rcv := newHookTarget(t)
	srv := newFake(t, fakegithub.Options{AppID: 77, AppPublicKey: key.PublicKey, WebhookURL: rcv, WebhookSecret: "s", Webhooks: fakegithub.WebhookOptions{Workers: 1, Faults: fakegithub.WebhookFaults{DropNext: 1}}})
	c := newClient(t, srv, func(o *Options) {
		o.Token = secret.Value{}
		o.AppID, o.AppPrivateKey, o.InstallationID = 77, key.PrivateKeyPEM, 1
	})
	start := time.Now().Add(-time.Second)
	for range 3 {
		srv.CreateJob(fakegithub.JobSpec{})
	}
	eventually(t, 30*time.Second, "deliveries done", func() bool {
		n := 0
		for _, d := range srv.Deliveries() {
			if d.Done {
				n++
			}
		}
		return n == 3
	})
	for _, kind := range []HookRef{
		{Kind: HookRepo, Repo: "octo-org/octo-repo", HookID: 1},
		{Kind: HookOrg, HookID: 1},
		{Kind: HookApp},
	} {
		t.Run(kind.Kind, func(t *testing.T) {
			ds, err := c.ListDeliveries(t.Context(), kind, start)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 3 {
				t.Fatalf("got %d deliveries, want 3", len(ds))
			}
			failed := slices.IndexFunc(ds, Delivery.Failed)
			if failed < 0 || ds[failed].Event != "workflow_job" || ds[failed].Action != "queued" || ds[failed].GUID == "" {
				t.Fatalf("no failed delivery in %+v", ds)
			}
			if later, err := c.ListDeliveries(t.Context(), kind, time.Now().Add(time.Hour)); err != nil || len(later) != 0 {
				t.Errorf("deliveries since the future = %v, %v", later, err)
			}
		})
	}
	ds, _ := c.ListDeliveries(t.Context(), HookRef{Kind: HookApp}, start)
	failed := ds[slices.IndexFunc(ds, Delivery.Failed)]
	for i, ref := range []HookRef{{Kind: HookRepo, Repo: "octo-org/octo-repo", HookID: 1}, {Kind: HookOrg, HookID: 1}, {Kind: HookApp}} {
		if err := c.Redeliver(t.Context(), ref, failed.ID); err != nil {
			t.Fatalf("redeliver via %s: %v", ref.Kind, err)
		}
		eventually(t, 30*time.Second, "redelivery recorded", func() bool {
			n := 0
			for _, d := range srv.Deliveries() {
				if d.Redelivery && d.GUID == failed.GUID && d.Done && d.OK() {
					n++
				}
			}
			return n == i+1
		})
	}
	if err := c.Redeliver(t.Context(), HookRef{Kind: HookOrg, HookID: 1}, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("redeliver unknown = %v, want ErrNotFound", err)
	}
	if _, err := c.ListDeliveries(t.Context(), HookRef{Kind: HookOrg, HookID: 99}, start); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown hook = %v, want ErrNotFound", err)
	}
	if _, err := c.ListDeliveries(t.Context(), HookRef{Kind: "nope"}, start); err == nil {
		t.Error("bad hook kind accepted")
	}
	// App hook calls use the App JWT, the others the installation token.
	for _, call := range srv.Calls() {
		wantApp := strings.HasPrefix(call.Op, "apps/")
		if isApp := call.Credential == "app:77"; isApp != wantApp {
			t.Errorf("%s authenticated as %q", call.Op, call.Credential)
		}
	}
}

func TestAppHookNeedsApp(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat"})
	c := newClient(t, srv, nil)
	if _, err := c.ListDeliveries(t.Context(), HookRef{Kind: HookApp}, time.Time{}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("app hook with a PAT = %v, want ErrUnauthorized", err)
	}
}

func TestRateLimitInfo(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat", RateLimit: 100})
	c := newClient(t, srv, nil)
	if got := c.RateLimit(); !got.Updated.IsZero() {
		t.Errorf("before any call: %+v", got)
	}
	if _, err := c.ListRunners(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	got := c.RateLimit()
	if got.Limit != 100 || got.Remaining != 99 || got.Reset.Before(time.Now()) || got.Updated.IsZero() {
		t.Errorf("RateLimit() = %+v", got)
	}
	if v := c.metric(t, "spawner_github_rate_limit_remaining", map[string]string{"credential": "api"}); v != 99 {
		t.Errorf("remaining gauge = %v", v)
	}
	if v := c.metric(t, "spawner_github_requests_total", map[string]string{"operation": "list_runners", "code": "200"}); v != 1 {
		t.Errorf("requests counter = %v", v)
	}
	if v := c.metric(t, "spawner_github_request_duration_seconds", map[string]string{"operation": "list_runners"}); v != 1 {
		t.Errorf("latency samples = %v", v)
	}
}

// newHookTarget is a webhook receiver that accepts everything.
func newHookTarget(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(s.Close)
	return s.URL
}

// TestRepoNamesAreCheckedBeforeAPIPaths: go-github puts owner and name into the URL
// path unescaped, so a repository name from a webhook payload such as "../.." must be
// refused before any request is made.
func TestRepoNamesAreCheckedBeforeAPIPaths(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat"})
	c := newClient(t, srv, nil)
	for _, repo := range []string{"../..", "octo-org/..", "../octo-repo", "octo-org/octo-repo/../x", "octo-org/r\nX", "octo org/r"} {
		_, err := c.GetJob(t.Context(), repo, 1)
		if !errors.Is(err, ghname.ErrBadRepo) {
			t.Errorf("GetJob(%q) = %v, want ghname.ErrBadRepo", repo, err)
		}
		if _, err := c.ListQueuedJobs(t.Context(), repo); !errors.Is(err, ghname.ErrBadRepo) {
			t.Errorf("ListQueuedJobs(%q) = %v, want ghname.ErrBadRepo", repo, err)
		}
	}
	if n := c.tr.requests.Load(); n != 0 {
		t.Errorf("%d requests reached GitHub for bad repository names", n)
	}
}
