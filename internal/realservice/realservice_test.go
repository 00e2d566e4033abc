package realservice

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// recorder stands in for the test's testing.TB: it records how the test ended and
// stops the goroutine as the real Fatalf and Skipf do.
type recorder struct {
	testing.TB
	ended, msg string
}

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

func TestAwait(t *testing.T) {
	tests := []struct {
		env  string
		r    Readiness
		want string
	}{
		{"", OpenStackCloud, "go on"},
		{"deb12", OpenStackCloud, "go on"},
		{"openstack", OpenStackCloud, "skip"},
		{"deb12 openstack", OpenStackCloud, "skip"},
		{"deb12 openstack", ImageDeb12, "skip"},
		{"openstackx", OpenStackCloud, "go on"},
	}
	for _, tt := range tests {
		t.Run(string(tt.r)+"="+tt.env, func(t *testing.T) {
			t.Setenv(DeferEnv, tt.env)
			r := &recorder{TB: t, ended: "go on"}
			done := make(chan struct{})
			go func() {
				defer close(done)
				tt.r.Await(r)
			}()
			<-done
			if r.ended != tt.want {
				t.Fatalf("ended with %q (%q), want %q", r.ended, r.msg, tt.want)
			}
			if tt.want == "skip" && !strings.HasPrefix(r.msg, DeferredMark+" "+string(tt.r)) {
				t.Errorf("skip message %q does not start with %q", r.msg, DeferredMark)
			}
		})
	}
}
