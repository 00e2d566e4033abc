package realservice

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"
)

// AwaitEnv lists, space-separated as NAME=FILE, the Readiness that scripts/test.sh is
// still preparing when the tests start, each with the file its setup's exit status
// will be written to. On a fresh machine the OpenStack packages and the deb12 image
// take minutes, and the tests that do not need them need not wait for them: the tests
// start once the compile and LXD are ready, and only a test that needs what is not
// ready yet waits, in Await.
const AwaitEnv = "SPAWNER_TEST_AWAIT"

// Readiness is something a test needs that scripts/test.sh prepares in the background.
type Readiness string

// What scripts/test.sh may still be preparing when the first tests start.
const (
	OpenStackCloud Readiness = "openstack" // scripts/openstack-setup.sh up
	ImageDeb12     Readiness = "deb12"     // scripts/lxd-setup.sh image deb12
)

// awaitPoll is how often Await looks at the status file: a setup takes minutes.
const awaitPoll = time.Second

// awaitMargin is how long before the test binary's deadline (go test -timeout) Await
// gives up, so that the test fails with a message rather than the binary panicking.
const awaitMargin = time.Minute

// deadliner is the part of *testing.T that tells go test's -timeout.
type deadliner interface {
	Deadline() (time.Time, bool)
}

// Await returns once r is ready, waiting while AwaitEnv says that its setup is still
// running; it returns at once when AwaitEnv does not name r (a developer's machine, or
// a setup that was done before the tests started). A setup that ended with a non-zero
// status fails the test: scripts/test.sh prints its log. Call it before the test
// builds anything, and after t.Parallel, so that the wait holds up no other test.
func (r Readiness) Await(tb testing.TB) {
	tb.Helper()
	file, ok := r.statusFile(os.Getenv(AwaitEnv))
	if !ok {
		return
	}
	start := time.Now()
	var deadline time.Time
	if d, ok := tb.(deadliner); ok {
		if dl, ok := d.Deadline(); ok {
			deadline = dl.Add(-awaitMargin)
		}
	}
	for {
		b, err := os.ReadFile(file)
		switch status := strings.TrimSpace(string(b)); {
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			tb.Fatalf("%s: reading its setup's status (%s=%q): %v", r, AwaitEnv, os.Getenv(AwaitEnv), err)
		case status == "0":
			if waited := time.Since(start); waited >= awaitPoll {
				tb.Logf("waited %s for %s to be ready", waited.Round(time.Second), r)
			}
			return
		case status != "":
			tb.Fatalf("%s: its setup failed (exit status %s; scripts/test.sh prints its log)", r, status)
		}
		// Not written yet, or written but still empty (the shell opens the file first).
		if !deadline.IsZero() && time.Now().After(deadline) {
			tb.Fatalf("%s not ready after %s: its setup is still running at the test deadline (go test -timeout)", r, time.Since(start).Round(time.Second))
		}
		time.Sleep(awaitPoll)
	}
}

// statusFile finds r's file in an AwaitEnv value.
func (r Readiness) statusFile(env string) (string, bool) {
	for _, f := range strings.Fields(env) {
		if name, file, ok := strings.Cut(f, "="); ok && name == string(r) && file != "" {
			return file, true
		}
	}
	return "", false
}
