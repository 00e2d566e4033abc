package consumer_test

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/consumer"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/fleet/fleettest"
	"github.com/runner-spawner/runner-spawner/internal/syncbuf"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
)

// TestStopWithNATSGoneIsBoundedAndLeftForTheJanitor is issue 17's hang: a consumer
// told to stop with NATS gone and a backlog of finished runners to delete. Each
// delete's record read would wait for its own 2-minute timeout, four at a time, so
// Run used to take many minutes. It must return within StopGrace (plus a little),
// log what it leaves once, with the count, and leave the records as the janitor
// reaps them: once NATS is back, a janitor deletes every instance.
func TestStopWithNATSGoneIsBoundedAndLeftForTheJanitor(t *testing.T) {
	const grace, backlog = time.Second, 40
	var logs syncbuf.Buffer
	s := systemtest.Start(t, systemtest.Options{
		Flavors:  []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: backlog}},
		Logger:   slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Consumer: func(o *consumer.Options) { o.StopGrace = grace },
	})
	b := s.Backends["small"]
	var names []string
	for i := range backlog {
		name := consumer.RunnerName(systemtest.Deployment, "small", int64(1000+i), 0)
		if _, err := b.Create(t.Context(), backends.InstanceSpec{Name: name, Flavor: "small", JobID: int64(1000 + i), UserData: "#!/bin/sh\n"}); err != nil {
			t.Fatal(err)
		}
		code := 0
		fleettest.PutRunner(t, s.Conn, fleet.RunnerRecord{Name: name, Flavor: "small", Backend: "sim", State: fleet.RunnerFinished,
			InstanceID: "sim-" + name, ForJob: int64(1000 + i), TookJob: int64(1000 + i), ExitCode: &code})
		names = append(names, name)
	}

	s.NATS.Stop()
	for _, n := range names {
		s.Consumer.Finished(n)
	}
	start := time.Now()
	s.Stop(t)
	took := time.Since(start)
	if bound := grace + 2*time.Second; took > bound {
		t.Errorf("Run returned %s after the stop with NATS gone, want within StopGrace %s (+ slack: %s)", took.Round(time.Millisecond), grace, bound)
	}
	left := regexp.MustCompile(`msg="shutdown_timeout reached; left for the janitor".* count=(\d+) finished_runners=(\d+)`).FindAllStringSubmatch(logs.String(), -1)
	if len(left) != 1 || left[0][2] != fmt.Sprint(backlog) {
		t.Errorf("want one line leaving %d finished runners for the janitor, got %q", backlog, left)
	}
	if n := len(regexp.MustCompile(`cannot read the finished runner`).FindAllString(logs.String(), -1)); n > 0 {
		t.Errorf("%d warnings per runner; what is left is reported once", n)
	}
	t.Logf("Run returned %s after the stop; %v", took.Round(time.Millisecond), left)
	if t.Failed() {
		t.Log(logs.String())
	}

	// What the consumer left is the janitor's: once NATS is back, a janitor
	// deletes every instance and marks the records.
	s.NATS.Restart()
	systemtest.StartJanitor(t, s.JanitorOptions(t, "handoff"))
	systemtest.Eventually(t, 30*time.Second, func() error {
		list, err := b.List(t.Context())
		if err != nil {
			return err
		}
		if len(list) > 0 {
			return fmt.Errorf("%d of %d instances left", len(list), backlog)
		}
		for _, n := range names {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			rec, err := s.Fleet.Runner(ctx, n)
			cancel()
			if err != nil {
				return err
			}
			if !rec.InstanceDeleted {
				return fmt.Errorf("runner %s: instance not marked deleted", n)
			}
		}
		return nil
	})
}
