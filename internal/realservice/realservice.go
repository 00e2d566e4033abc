// Package realservice decides what a test does when a real service it needs (the
// LXD daemon, the OpenStack cloud) is not there: on a developer's machine it skips
// and says why; in CI, where SPAWNER_REQUIRE_LXD=1 or SPAWNER_REQUIRE_OPENSTACK=1 say
// the setup ran, it fails, so a broken setup can never pass as a skip. It is a test
// tool: only tests import it.
package realservice

import (
	"fmt"
	"os"
	"testing"
)

// Service is a real service some tests need.
type Service string

// The services scripts/test.sh sets up.
const (
	LXD       Service = "LXD"
	OpenStack Service = "OpenStack"
)

// RequireEnv is the variable that, set to 1, makes the service's absence a failure.
func (s Service) RequireEnv() string {
	switch s {
	case LXD:
		return "SPAWNER_REQUIRE_LXD"
	case OpenStack:
		return "SPAWNER_REQUIRE_OPENSTACK"
	}
	panic("realservice: unknown service " + string(s))
}

// setup is the command that brings the service up on this machine.
func (s Service) setup() string {
	switch s {
	case LXD:
		return "scripts/lxd-setup.sh up"
	case OpenStack:
		return "scripts/openstack-setup.sh up"
	}
	panic("realservice: unknown service " + string(s))
}

// Required reports whether the service's absence must fail the tests.
func (s Service) Required() bool { return os.Getenv(s.RequireEnv()) == "1" }

// Unavailable ends the test because the service cannot serve it, saying why: a
// failure when the service is required, a skip otherwise. The skip names the
// service ("real-LXD"), which CI's report looks for.
func (s Service) Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if s.Required() {
		tb.Fatalf("%s=1 but %s", s.RequireEnv(), msg)
	}
	tb.Skipf("skipping real-%s test: %s (run %s; set %s=1 to make this a failure)", s, msg, s.setup(), s.RequireEnv())
}
