package fakerunner_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
	"github.com/runner-spawner/runner-spawner/internal/syncbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDecodeJITConfig(t *testing.T) {
	good := fakerunner.EncodeJITConfig(fakerunner.JITConfig{Fake: fakerunner.Marker, URL: "http://x/", RunnerID: 1, RunnerName: "r", Credential: "c"})
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"minted by the fake", good, false},
		{"not base64", "%%%", true},
		{"real runner config", base64.StdEncoding.EncodeToString([]byte(`{".runner":"x"}`)), true},
		{"missing credential", fakerunner.EncodeJITConfig(fakerunner.JITConfig{Fake: fakerunner.Marker, URL: "http://x/", RunnerID: 1}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fakerunner.DecodeJITConfig(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, fakerunner.ErrNotFakeConfig) {
				t.Errorf("err = %v, want ErrNotFakeConfig", err)
			}
		})
	}
}

func TestHooks(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	marker := filepath.Join(dir, "completed-ran")
	ok := script("ok.sh", "echo started for $GITHUB_REPOSITORY job $GITHUB_JOB on $RUNNER_NAME\n")
	fail := script("fail.sh", "echo repo check failed; exit 3\n")
	completed := script("completed.sh", "touch "+marker+"\n")

	tests := []struct {
		name           string
		env            map[string]string
		wantErr        error
		wantConclusion string
		wantOut        string
		wantCompleted  bool
	}{
		{"no hooks", nil, nil, "success", "Succeeded", false},
		{"started hook ok", map[string]string{fakerunner.EnvJobStartedHook: ok}, nil, "success", "started for octo-org/octo-repo job build on r1", false},
		{"started hook fails the job", map[string]string{fakerunner.EnvJobStartedHook: fail, fakerunner.EnvJobCompletedHook: completed}, fakerunner.ErrJobFailed, "failure", "repo check failed", true},
		{"completed hook runs", map[string]string{fakerunner.EnvJobCompletedHook: completed}, nil, "success", "Succeeded", true},
		{"missing hook script fails", map[string]string{fakerunner.EnvJobStartedHook: filepath.Join(dir, "nope.sh")}, fakerunner.ErrJobFailed, "failure", "hook failed", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(marker)
			srv := fakegithub.NewServer(fakegithub.Options{})
			t.Cleanup(srv.Close)
			job := srv.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted"}})
			cfg := mint(t, srv, "r1")
			var out syncbuf.Buffer
			env := func(k string) string {
				if k == "PATH" {
					return os.Getenv("PATH")
				}
				return tt.env[k]
			}
			err := fakerunner.Run(t.Context(), fakerunner.Options{JITConfig: cfg, Stdout: &out, Env: env})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Run = %v, want %v\n%s", err, tt.wantErr, out.String())
			}
			j, _ := srv.Job(job.ID)
			if j.Conclusion != tt.wantConclusion {
				t.Errorf("conclusion = %q, want %q", j.Conclusion, tt.wantConclusion)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out.String())
			}
			if _, err := os.Stat(marker); (err == nil) != tt.wantCompleted {
				t.Errorf("completed hook ran = %v, want %v", err == nil, tt.wantCompleted)
			}
		})
	}
}

// A runner whose job outlives the lost-runner timeout stays alive by heartbeating, even
// while a long hook keeps it from polling.
func TestHeartbeatKeepsLongHookAlive(t *testing.T) {
	srv := fakegithub.NewServer(fakegithub.Options{RunnerLostAfter: 300 * time.Millisecond})
	t.Cleanup(srv.Close)
	job := srv.CreateJob(fakegithub.JobSpec{})
	dir := t.TempDir()
	slow := filepath.Join(dir, "slow.sh")
	if err := os.WriteFile(slow, []byte("sleep 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		switch k {
		case fakerunner.EnvJobStartedHook:
			return slow
		case "PATH":
			return os.Getenv("PATH")
		}
		return ""
	}
	if err := fakerunner.Run(t.Context(), fakerunner.Options{JITConfig: mint(t, srv, "r1"), Env: env}); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if j, _ := srv.Job(job.ID); j.Conclusion != "success" {
		t.Errorf("conclusion = %q, want success (the runner was alive)", j.Conclusion)
	}
}

func mint(t *testing.T, srv *fakegithub.Server, name string) string {
	t.Helper()
	body := strings.NewReader(`{"name":"` + name + `","runner_group_id":1,"labels":["self-hosted"]}`)
	req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL()+"orgs/octo-org/actions/runners/generate-jitconfig", body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		EncodedJITConfig string `json:"encoded_jit_config"`
	}
	if err := jsonDecode(resp, &a); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("mint: %d %v", resp.StatusCode, err)
	}
	return a.EncodedJITConfig
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

// TestHookReadsTheEvent: the job-started hook gets the workflow's event as the real
// runner gives it: GITHUB_EVENT_NAME, and the payload in the file GITHUB_EVENT_PATH
// names, which is gone after the job.
func TestHookReadsTheEvent(t *testing.T) {
	dir := t.TempDir()
	seen := filepath.Join(dir, "seen")
	hook := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(hook, []byte("echo \"$GITHUB_EVENT_NAME $GITHUB_EVENT_PATH\" >"+seen+"\ncat \"$GITHUB_EVENT_PATH\" >>"+seen+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	payload, err := os.ReadFile("../../bootstrap/testdata/events/pull_request.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := fakegithub.NewServer(fakegithub.Options{})
	t.Cleanup(srv.Close)
	srv.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted"}, Event: "pull_request", EventPayload: payload})
	env := func(k string) string {
		switch k {
		case "PATH":
			return os.Getenv("PATH")
		case fakerunner.EnvJobStartedHook:
			return hook
		}
		return ""
	}
	if err := fakerunner.Run(t.Context(), fakerunner.Options{JITConfig: mint(t, srv, "r1"), Env: env}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	first, rest, _ := strings.Cut(string(got), "\n")
	name, path, _ := strings.Cut(first, " ")
	// The payload travels compacted through the fake's JSON; the same JSON all the same.
	var want bytes.Buffer
	if err := json.Compact(&want, payload); err != nil {
		t.Fatal(err)
	}
	if name != "pull_request" || rest != want.String() {
		t.Errorf("the hook saw event %q and %d bytes of payload", name, len(rest))
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the event file %s outlived the job: %v", path, err)
	}
}
