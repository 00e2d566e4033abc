package realservice

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// recorder stands in for the test's testing.TB: it records how the test ended and
// stops the goroutine as the real Fatalf and Skipf do.
type recorder struct {
	testing.TB
	ended, msg string
	deadline   time.Time // what Deadline reports; zero: none
}

func (r *recorder) Deadline() (time.Time, bool) { return r.deadline, !r.deadline.IsZero() }

func (r *recorder) Logf(format string, args ...any) {}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.ended, r.msg = "fail", fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Skipf(format string, args ...any) {
	r.ended, r.msg = "skip", fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		svc      Service
		env      string
		want     string
		contains []string
	}{
		{LXD, "", "skip", []string{"skipping real-LXD test: no socket", "scripts/lxd-setup.sh up", "SPAWNER_REQUIRE_LXD=1"}},
		{LXD, "0", "skip", []string{"real-LXD"}},
		{LXD, "1", "fail", []string{"SPAWNER_REQUIRE_LXD=1 but no socket"}},
		{OpenStack, "", "skip", []string{"skipping real-OpenStack test: no socket", "scripts/openstack-setup.sh up"}},
		{OpenStack, "1", "fail", []string{"SPAWNER_REQUIRE_OPENSTACK=1 but no socket"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.svc)+"="+tt.env, func(t *testing.T) {
			t.Setenv(tt.svc.RequireEnv(), tt.env)
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				tt.svc.Unavailable(r, "no %s", "socket")
			}()
			<-done
			if r.ended != tt.want {
				t.Fatalf("ended with %q (%q), want %q", r.ended, r.msg, tt.want)
			}
			for _, c := range tt.contains {
				if !strings.Contains(r.msg, c) {
					t.Errorf("message %q does not say %q", r.msg, c)
				}
			}
		})
	}
}

// await runs r.Await with AwaitEnv set to env, and says how it ended and how long it took.
func await(t *testing.T, r Readiness, env string) (*recorder, time.Duration) {
	t.Helper()
	t.Setenv(AwaitEnv, env)
	// A deadline, so that an Await that never returns ends the test all the same.
	rec := &recorder{TB: t, ended: "go on", deadline: time.Now().Add(awaitMargin + 10*time.Second)}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Await(rec)
	}()
	<-done
	return rec, time.Since(start)
}

func TestAwaitNotNamedGoesOn(t *testing.T) {
	dir := t.TempDir()
	for _, env := range []string{"", "deb12=" + dir + "/deb12.rc", "openstackx=" + dir + "/x.rc", "openstack", "openstack="} {
		rec, took := await(t, OpenStackCloud, env)
		if rec.ended != "go on" || took > awaitPoll/2 {
			t.Errorf("%s=%q: ended with %q (%q) after %s, want to go on at once", AwaitEnv, env, rec.ended, rec.msg, took)
		}
	}
}

func TestAwaitWaitsForTheSetup(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "openstack.rc")
	// As the shell writes it: the file exists, empty, before the status is in it.
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(2 * awaitPoll)
		if err := os.WriteFile(file, []byte("0\n"), 0o644); err != nil {
			t.Error(err)
		}
	}()
	rec, took := await(t, OpenStackCloud, "deb12="+dir+"/deb12.rc openstack="+file)
	if rec.ended != "go on" {
		t.Fatalf("ended with %q (%q), want to go on", rec.ended, rec.msg)
	}
	if took < 2*awaitPoll {
		t.Errorf("went on after %s, before the setup wrote its status", took)
	}
}

func TestAwaitFailedSetupFails(t *testing.T) {
	file := filepath.Join(t.TempDir(), "deb12.rc")
	if err := os.WriteFile(file, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec, _ := await(t, ImageDeb12, "deb12="+file)
	if rec.ended != "fail" || !strings.Contains(rec.msg, "deb12: its setup failed (exit status 1") {
		t.Errorf("ended with %q (%q), want a failure that names the setup", rec.ended, rec.msg)
	}
}

func TestAwaitGivesUpBeforeTheDeadline(t *testing.T) {
	file := filepath.Join(t.TempDir(), "openstack.rc") // never written
	t.Setenv(AwaitEnv, "openstack="+file)
	rec := &recorder{TB: t, ended: "go on", deadline: time.Now().Add(awaitMargin + 2*awaitPoll)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		OpenStackCloud.Await(rec)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("still waiting 30 s after the deadline's margin")
	}
	if rec.ended != "fail" || !strings.Contains(rec.msg, "not ready after") {
		t.Errorf("ended with %q (%q), want a failure before the deadline", rec.ended, rec.msg)
	}
}
