package realservice

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// DeferEnv lists, space-separated, the Readiness that scripts/test.sh is still
// preparing when its first pass of the tests starts: on a fresh machine the OpenStack
// packages and the deb12 image take minutes, and the tests that do not need them need
// not wait. The tests that do are skipped with DeferredMark, and a second pass runs
// exactly those once everything is ready.
const DeferEnv = "SPAWNER_TEST_DEFER"

// DeferredMark starts the skip message of a deferred test: testreport finds the tests
// to run in the second pass by it, and fails the run if one of them never ran.
const DeferredMark = "deferred until ready:"

// Readiness is something a test needs that scripts/test.sh prepares in the background.
type Readiness string

// What scripts/test.sh may still be preparing when the first tests start.
const (
	OpenStackCloud Readiness = "openstack" // scripts/openstack-setup.sh up
	ImageDeb12     Readiness = "deb12"     // scripts/lxd-setup.sh image deb12
)

// Await ends the test with a skip marked DeferredMark when DeferEnv says r is not
// ready yet, so that the second pass runs it; otherwise it returns and the test goes
// on (and finds the service there, or reports it missing as Unavailable says). Call
// it before the test builds anything: a deferred test's first pass is wasted time.
func (r Readiness) Await(tb testing.TB) {
	tb.Helper()
	if slices.Contains(strings.Fields(os.Getenv(DeferEnv)), string(r)) {
		tb.Skipf("%s %s (%s=%q): scripts/test.sh runs this test again once it is", DeferredMark, r, DeferEnv, os.Getenv(DeferEnv))
	}
}
