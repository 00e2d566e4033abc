package systemtest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/janitor"
	"github.com/runner-spawner/runner-spawner/queue"
)

// Hook is the fake GitHub's webhook as the janitor's sweeper names it (the org hook).
func (s *System) Hook() *github.HookRef {
	return &github.HookRef{Kind: github.HookOrg, Org: "octo-org", HookID: 1}
}

// JanitorOptions returns options for a janitor over the system, on a NATS connection
// of its own (as a separate process would have), with the short timings tests need:
// a pass every 200 ms, boot timeout 10 s, idle TTL 1 s, flush waits of 3 × 200 ms. No
// sweeper and no poller unless the test sets Hook or PollRepos.
func (s *System) JanitorOptions(t testing.TB, id string) janitor.Options {
	t.Helper()
	// Not queuetest's Connect: it ensures the streams again, and a stream update
	// racing the consumers' consumer creates trips a data race inside nats-server
	// (2.15.2) under -race. The system's own connection made them already.
	conn, err := queue.Connect(t.Context(), queue.Options{URL: s.NATS.URL(), Name: "janitor " + id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	Eventually(t, 10*time.Second, func() error {
		if !conn.Connected() {
			return errNotConnected
		}
		return nil
	})
	opts, err := s.asm.JanitorOptions(t.Context(), conn, id)
	if err != nil {
		t.Fatal(err)
	}
	opts.Interval, opts.FlushWait, opts.FlushWaitAttempts = 200*time.Millisecond, 200*time.Millisecond, 3
	opts.SweepInterval, opts.SweepLookback = 300*time.Millisecond, time.Hour
	for i := range opts.Flavors {
		opts.Flavors[i].BootTimeout, opts.Flavors[i].IdleTTL = 10*time.Second, time.Second
	}
	// Several janitors of one system register no metrics: their names would clash.
	opts.Logger, opts.Registerer = testLogger(t), nil
	return opts
}

// RunningJanitor is a janitor running in the test; it stops in t.Cleanup.
type RunningJanitor struct {
	*janitor.Janitor
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// StartJanitor builds a janitor from opts and runs it until Stop or the test's end.
func StartJanitor(t testing.TB, opts janitor.Options) *RunningJanitor {
	t.Helper()
	j, err := janitor.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &RunningJanitor{Janitor: j, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- j.Run(ctx) }()
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Stop cancels the janitor and waits for Run to return (idempotent), as a SIGTERM
// would: it releases its lease.
func (r *RunningJanitor) Stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("janitor %s: Run: %v", r.ID(), err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("janitor %s did not stop within 30s", r.ID())
		}
	})
}

// WaitActive waits until r is the active janitor.
func (r *RunningJanitor) WaitActive(t testing.TB, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		if !r.Active() {
			return errNotActive(r.ID())
		}
		return nil
	})
}

var errNotConnected = errors.New("not connected to NATS yet")

type errNotActive string

func (e errNotActive) Error() string { return "janitor " + string(e) + " is not active" }

// testLogger logs warnings and errors (everything with SYSTEMTEST_DEBUG set) to the test
// log, which shows them only when the test fails.
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("SYSTEMTEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}
