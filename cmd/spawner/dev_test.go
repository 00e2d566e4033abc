package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/backends/sim"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/internal/syncbuf"
)

func devRun(ctx context.Context, out *syncbuf.Buffer, args ...string) error {
	cmd := devCommand()
	cmd.SetArgs(args)
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	return cmd.ExecuteContext(ctx)
}

func devMint(t *testing.T, base, name string) string {
	t.Helper()
	body := strings.NewReader(`{"name":"` + name + `","runner_group_id":1,"labels":["self-hosted","linux"]}`)
	req, _ := http.NewRequestWithContext(t.Context(), "POST", base+"orgs/octo-org/actions/runners/generate-jitconfig", body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		EncodedJITConfig string `json:"encoded_jit_config"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("mint %s: %d %v", name, resp.StatusCode, err)
	}
	return a.EncodedJITConfig
}

// "dev github" queues jobs, "dev runner" runs them, and the fake prints a summary.
func TestDevGitHubAndRunner(t *testing.T) {
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- devRun(t.Context(), &out, "github", "--listen", "127.0.0.1:0", "--jobs", "2", "--labels", "self-hosted,linux", "--exit-when-done")
	}()
	urlRE := regexp.MustCompile(`listening on (http://\S+/)`)
	var base string
	deadline := time.Now().Add(10 * time.Second)
	for base == "" {
		if m := urlRE.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no URL printed:\n%s", out.String())
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, name := range []string{"r1", "r2"} {
		var rout syncbuf.Buffer
		if err := devRun(t.Context(), &rout, "runner", "--jitconfig", devMint(t, base, name)); err != nil {
			t.Fatalf("dev runner %s: %v\n%s", name, err, rout.String())
		}
		if !strings.Contains(rout.String(), "completed with result: Succeeded") {
			t.Errorf("runner output:\n%s", rout.String())
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev github: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dev github did not exit when its jobs were done")
	}
	for _, want := range []string{"summary: 2 jobs, completed/success 2", "queued→started", "actions/generate-runner-jitconfig-for-org"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDevRunnerExitCodes(t *testing.T) {
	srv := fakegithub.NewServer(fakegithub.Options{})
	t.Cleanup(srv.Close)
	tests := []struct {
		name     string
		spec     *fakegithub.JobSpec
		jit      func() string
		wantCode int
	}{
		{"success", &fakegithub.JobSpec{Labels: []string{"self-hosted"}}, nil, 0},
		{"failed job", &fakegithub.JobSpec{Labels: []string{"self-hosted"}, Fail: true}, nil, devExitJobFailed},
		{"not a fake config", nil, func() string { return "bm90IGEgY29uZmln" }, devExitError},
		{"no config", nil, func() string { return "" }, devExitError},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.spec != nil {
				srv.CreateJob(*tt.spec)
			}
			jit := ""
			if tt.jit != nil {
				jit = tt.jit()
			} else {
				jit = devMint(t, srv.URL(), "exit-"+string(rune('a'+i)))
			}
			var out syncbuf.Buffer
			err := devRun(t.Context(), &out, "runner", "--jitconfig", jit)
			code := 0
			var ee *exitError
			if errors.As(err, &ee) {
				code = ee.code
			} else if err != nil {
				t.Fatalf("err %v is not an exitError", err)
			}
			if code != tt.wantCode {
				t.Errorf("exit code %d (%v), want %d\n%s", code, err, tt.wantCode, out.String())
			}
		})
	}
}

// TestSimStats: the sim-cloud's counters, as a load test of the compose stack reads them.
func TestSimStats(t *testing.T) {
	cloud := sim.NewCloud(sim.CloudOptions{})
	t.Cleanup(cloud.Close)
	b := cloud.Backend(sim.BackendOptions{DeploymentID: "d", Flavor: "small"})
	if _, err := b.Create(t.Context(), backends.InstanceSpec{Name: "d-small-1-0", Flavor: "small"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(t.Context(), backends.InstanceSpec{Name: "d-small-2-0", Flavor: "small"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(t.Context(), "d-small-1-0"); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	simStatsHandler(cloud).ServeHTTP(rec, httptest.NewRequest("GET", "/_sim/stats", nil))
	var got simStats
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if got.Created != 2 || got.Deleted != 1 || got.Live["small"] != 1 || got.MaxLive["small"] != 2 ||
		len(got.Instances) != 1 || got.Instances[0].Name != "d-small-2-0" || got.Instances[0].Flavor != "small" {
		t.Errorf("stats %+v", got)
	}
}

// "dev repo-policy" mints single-use tokens with the service token and refuses the
// repositories it is told to.
func TestDevRepoPolicy(t *testing.T) {
	var out syncbuf.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- devRun(ctx, &out, "repo-policy", "--listen", "127.0.0.1:0", "--service-token", "svc", "--refuse-repo", "bad/repo")
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	urlRE := regexp.MustCompile(`listening on (http://\S+)`)
	var base string
	for deadline := time.Now().Add(10 * time.Second); base == ""; time.Sleep(20 * time.Millisecond) {
		if m := urlRE.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no address:\n%s", out.String())
		}
	}
	call := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := call("GET", "/one-time-token", "wrong", ""); code != http.StatusUnauthorized {
		t.Errorf("mint with a wrong service token: %d", code)
	}
	for _, tc := range []struct {
		repo string
		want int
	}{{"good/repo", http.StatusNoContent}, {"bad/repo", http.StatusForbidden}} {
		_, tok := call("GET", "/one-time-token", "svc", "")
		body := `{"repository_name":"` + tc.repo + `"}`
		if code, reason := call("POST", "/push/check-run", tok, body); code != tc.want {
			t.Errorf("%s: %d %s", tc.repo, code, reason)
		}
		if code, _ := call("POST", "/push/check-run", tok, body); code != http.StatusUnauthorized {
			t.Errorf("%s: a spent token answered %d", tc.repo, code)
		}
	}
}
