package consumer_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
)

// TestRunLeavesNothingRunning: once Run returned, no goroutine runs consumer code:
// workers, pullers, capacity and lease watches, renewals and deletes all stopped. The
// rest of the system (NATS, the fake GitHub, the simulated cloud) runs on, so the check
// is on the consumer's own frames rather than on every goroutine.
func TestRunLeavesNothingRunning(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{Flavors: twoFlavors(), Workers: 4,
		GitHub: fakegithub.Options{JobDuration: 50 * time.Millisecond}})
	for i := range 12 {
		s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", []string{"small", "large"}[i%2]}})
	}
	s.AllJobsDone(t, 60*time.Second)
	// Some jobs in flight as it stops, too: creates, capacity waits.
	for i := range 8 {
		s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", []string{"small", "large"}[i%2]}})
	}
	time.Sleep(100 * time.Millisecond)
	s.Stop(t)

	// A goroutine that was finishing its last line when Run returned may take a moment.
	systemtest.Eventually(t, 5*time.Second, func() error {
		if g := consumerGoroutines(); len(g) > 0 {
			return fmt.Errorf("%d goroutines still run consumer code after Run returned; the first:\n%s", len(g), g[0])
		}
		return nil
	})
}

// consumerGoroutines returns the stacks of goroutines with a frame in package consumer
// (not consumer_test: the test's own).
func consumerGoroutines() []string {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "runner-spawner/runner-spawner/consumer.") {
			out = append(out, g)
		}
	}
	return out
}
