package fakegithub_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
)

func TestRunnerTakesOldestQueuedJobWithItsLabels(t *testing.T) {
	tests := []struct {
		name    string
		jobs    [][]string // in creation order
		runner  []string
		wantJob int // index into jobs; -1: none
	}{
		{"oldest of equals", [][]string{{"self-hosted"}, {"self-hosted"}}, []string{"self-hosted"}, 0},
		{"skips jobs needing labels it lacks", [][]string{{"self-hosted", "gpu"}, {"self-hosted"}}, []string{"self-hosted", "linux"}, 1},
		{"superset of labels matches", [][]string{{"linux"}, {"gpu"}}, []string{"self-hosted", "linux", "gpu"}, 0},
		{"labels are case-insensitive", [][]string{{"Self-Hosted", "X64"}}, []string{"self-hosted", "x64"}, 0},
		{"self-hosted is just a label", [][]string{{"self-hosted", "small"}}, []string{"small"}, -1},
		{"no match stays idle", [][]string{{"big"}}, []string{"small"}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newServer(t, fakegithub.Options{JobDuration: time.Hour})
			var ids []int64
			for _, l := range tt.jobs {
				ids = append(ids, srv.CreateJob(fakegithub.JobSpec{Labels: l}).ID)
			}
			jit := mintJIT(t, srv, "r1", tt.runner...)
			_ = startRunner(t, t.Context(), fakerunner.Options{JITConfig: jit.EncodedJITConfig})
			if tt.wantJob < 0 {
				eventually(t, 5*time.Second, "runner online", func() bool {
					rs := srv.Runners()
					return len(rs) == 1 && rs[0].Status == "online"
				})
				for _, id := range ids {
					if j := jobState(t, srv, id); j.Status != "queued" {
						t.Errorf("job %d: status %s, want queued", id, j.Status)
					}
				}
				return
			}
			want := ids[tt.wantJob]
			eventually(t, 5*time.Second, "job in progress", func() bool { return jobState(t, srv, want).Status == "in_progress" })
			if got := jobState(t, srv, want); got.RunnerName != "r1" || got.RunnerID != jit.Runner.ID {
				t.Errorf("job %d runner = %q/%d, want r1/%d", want, got.RunnerName, got.RunnerID, jit.Runner.ID)
			}
			for i, id := range ids {
				if i != tt.wantJob && jobState(t, srv, id).Status != "queued" {
					t.Errorf("job %d (index %d) not queued", id, i)
				}
			}
		})
	}
}

// The runner minted for job B takes the older job A; B waits for the next runner.
func TestStolenRunner(t *testing.T) {
	srv, rcv := newServer(t, fakegithub.Options{JobDuration: time.Hour, Webhooks: fakegithub.WebhookOptions{Workers: 1}})
	a := srv.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux"}})
	b := srv.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux"}})

	forB := mintJIT(t, srv, "runner-for-b", "self-hosted", "linux")
	_ = startRunner(t, t.Context(), fakerunner.Options{JITConfig: forB.EncodedJITConfig})
	eventually(t, 5*time.Second, "job A in progress", func() bool { return jobState(t, srv, a.ID).Status == "in_progress" })
	if got := jobState(t, srv, a.ID).RunnerName; got != "runner-for-b" {
		t.Fatalf("job A runner = %q, want runner-for-b (stolen)", got)
	}
	if got := jobState(t, srv, b.ID).Status; got != "queued" {
		t.Fatalf("job B status = %q, want queued", got)
	}
	// The in_progress webhook says which runner took which job.
	eventually(t, 5*time.Second, "in_progress webhook for A", func() bool {
		for _, g := range rcv.all() {
			if g.JobID == a.ID && g.Action == "in_progress" && g.RunnerName == "runner-for-b" {
				return true
			}
		}
		return false
	})

	forA := mintJIT(t, srv, "runner-for-a", "self-hosted", "linux")
	_ = startRunner(t, t.Context(), fakerunner.Options{JITConfig: forA.EncodedJITConfig})
	eventually(t, 5*time.Second, "job B in progress", func() bool { return jobState(t, srv, b.ID).Status == "in_progress" })
	if got := jobState(t, srv, b.ID).RunnerName; got != "runner-for-a" {
		t.Errorf("job B runner = %q, want runner-for-a", got)
	}
}

func TestJobLifecycle(t *testing.T) {
	tests := []struct {
		name           string
		spec           fakegithub.JobSpec
		wantConclusion string
		wantErr        error
	}{
		{"success", fakegithub.JobSpec{Labels: []string{"self-hosted"}}, "success", nil},
		{"failing steps", fakegithub.JobSpec{Labels: []string{"self-hosted"}, Fail: true}, "failure", fakerunner.ErrJobFailed},
		{"with duration", fakegithub.JobSpec{Labels: []string{"self-hosted"}, Duration: 50 * time.Millisecond}, "success", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, rcv := newServer(t, fakegithub.Options{Webhooks: fakegithub.WebhookOptions{Workers: 1}})
			j := srv.CreateJob(tt.spec)
			jit := mintJIT(t, srv, "r1", "self-hosted")
			wait := startRunner(t, t.Context(), fakerunner.Options{JITConfig: jit.EncodedJITConfig})
			if err := wait(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("runner returned %v, want %v", err, tt.wantErr)
			}
			got := jobState(t, srv, j.ID)
			if got.Status != "completed" || got.Conclusion != tt.wantConclusion {
				t.Errorf("job = %s/%s, want completed/%s", got.Status, got.Conclusion, tt.wantConclusion)
			}
			eventually(t, 5*time.Second, "three webhooks", func() bool { return len(rcv.actions(j.ID)) == 3 })
			if diff := cmp.Diff([]string{"queued", "in_progress", "completed"}, rcv.actions(j.ID)); diff != "" {
				t.Errorf("webhook actions (-want +got):\n%s", diff)
			}
			if n := len(srv.Runners()); n != 0 {
				t.Errorf("%d runners left; the ephemeral runner must be removed", n)
			}
		})
	}
}

func TestLostRunnerFailsJob(t *testing.T) {
	srv, rcv := newServer(t, fakegithub.Options{JobDuration: time.Hour, RunnerLostAfter: 200 * time.Millisecond})
	j := srv.CreateJob(fakegithub.JobSpec{})
	jit := mintJIT(t, srv, "doomed", "self-hosted")
	ctx, kill := contextWithCancel(t)
	wait := startRunner(t, ctx, fakerunner.Options{JITConfig: jit.EncodedJITConfig, PollWait: 50 * time.Millisecond})
	eventually(t, 5*time.Second, "job in progress", func() bool { return jobState(t, srv, j.ID).Status == "in_progress" })
	kill() // the machine dies
	if err := wait(); !errors.Is(err, errCanceled) {
		t.Fatalf("runner returned %v, want context canceled", err)
	}
	eventually(t, 5*time.Second, "job failed", func() bool { return jobState(t, srv, j.ID).Status == "completed" })
	if got := jobState(t, srv, j.ID).Conclusion; got != "failure" {
		t.Errorf("conclusion = %q, want failure", got)
	}
	eventually(t, 5*time.Second, "completed webhook", func() bool {
		for _, g := range rcv.all() {
			if g.JobID == j.ID && g.Action == "completed" {
				return true
			}
		}
		return false
	})
	if n := len(srv.Runners()); n != 0 {
		t.Errorf("%d runners left after loss", n)
	}
}

func TestCancelJob(t *testing.T) {
	t.Run("queued", func(t *testing.T) {
		srv, rcv := newServer(t, fakegithub.Options{})
		j := srv.CreateJob(fakegithub.JobSpec{})
		if err := srv.CancelJob(j.ID); err != nil {
			t.Fatal(err)
		}
		got := jobState(t, srv, j.ID)
		if got.Status != "completed" || got.Conclusion != "cancelled" || got.RunnerName != "" {
			t.Errorf("job = %+v, want completed/cancelled without runner", got)
		}
		eventually(t, 5*time.Second, "completed webhook", func() bool { return len(rcv.actions(j.ID)) == 2 })
		if err := srv.CancelJob(j.ID); err == nil {
			t.Error("cancelling a completed job succeeded")
		}
	})
	t.Run("running", func(t *testing.T) {
		srv, _ := newServer(t, fakegithub.Options{JobDuration: time.Hour})
		j := srv.CreateJob(fakegithub.JobSpec{})
		jit := mintJIT(t, srv, "r1", "self-hosted")
		wait := startRunner(t, t.Context(), fakerunner.Options{JITConfig: jit.EncodedJITConfig})
		eventually(t, 5*time.Second, "job in progress", func() bool { return jobState(t, srv, j.ID).Status == "in_progress" })
		if err := srv.CancelJob(j.ID); err != nil {
			t.Fatal(err)
		}
		if err := wait(); !errors.Is(err, fakerunner.ErrJobCancelled) {
			t.Fatalf("runner returned %v, want ErrJobCancelled", err)
		}
		if got := jobState(t, srv, j.ID); got.Conclusion != "cancelled" {
			t.Errorf("conclusion = %q, want cancelled", got.Conclusion)
		}
	})
}

func TestDeleteRunner(t *testing.T) {
	srv, _ := newServer(t, fakegithub.Options{JobDuration: time.Hour})
	busy := mintJIT(t, srv, "busy", "self-hosted")
	idle := mintJIT(t, srv, "idle", "gpu")
	offline := mintJIT(t, srv, "offline", "self-hosted")
	srv.CreateJob(fakegithub.JobSpec{})
	_ = startRunner(t, t.Context(), fakerunner.Options{JITConfig: busy.EncodedJITConfig})
	waitIdle := startRunner(t, t.Context(), fakerunner.Options{JITConfig: idle.EncodedJITConfig})
	eventually(t, 5*time.Second, "runners settled", func() bool {
		n := 0
		for _, r := range srv.Runners() {
			if (r.Name == "busy" && r.Busy) || (r.Name == "idle" && r.State == fakerunner.StateIdle) {
				n++
			}
		}
		return n == 2
	})
	path := func(id int64) string { return "orgs/octo-org/actions/runners/" + itoa(id) }
	tests := []struct {
		name string
		id   int64
		want int
	}{
		{"busy runner", busy.Runner.ID, http.StatusUnprocessableEntity},
		{"idle runner", idle.Runner.ID, http.StatusNoContent},
		{"never connected", offline.Runner.ID, http.StatusNoContent},
		{"already gone", offline.Runner.ID, http.StatusNotFound},
		{"unknown", 999999, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := api(t, srv, "DELETE", path(tt.id), "", nil, nil).StatusCode; got != tt.want {
				t.Errorf("DELETE = %d, want %d", got, tt.want)
			}
		})
	}
	if err := waitIdle(); !errors.Is(err, fakerunner.ErrRemoved) {
		t.Errorf("idle runner returned %v, want ErrRemoved", err)
	}
}

func TestRepoRunnerOnlyTakesItsRepo(t *testing.T) {
	srv, _ := newServer(t, fakegithub.Options{Repos: []string{"a", "b"}, JobDuration: time.Hour})
	ja := srv.CreateJob(fakegithub.JobSpec{Repo: "a"})
	jb := srv.CreateJob(fakegithub.JobSpec{Repo: "b"})
	var a jitAnswer
	if resp := api(t, srv, "POST", "repos/octo-org/b/actions/runners/generate-jitconfig", "", map[string]any{
		"name": "rb", "runner_group_id": 1, "labels": []string{"self-hosted"},
	}, &a); resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", resp.StatusCode)
	}
	_ = startRunner(t, t.Context(), fakerunner.Options{JITConfig: a.EncodedJITConfig})
	eventually(t, 5*time.Second, "job b in progress", func() bool { return jobState(t, srv, jb.ID).Status == "in_progress" })
	if got := jobState(t, srv, ja.ID).Status; got != "queued" {
		t.Errorf("job of repo a = %s, want queued", got)
	}
}
