package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// errStopSignal is the cause of the context every command runs under once SIGTERM or
// SIGINT arrived.
var errStopSignal = errors.New("stop signal")

// stopper turns the first SIGTERM or SIGINT into a cancelled context and a bounded
// shutdown, and a second into an exit at once. The bound, shutdown_timeout, holds
// whatever the parts do: a watchdog exits the process when it has passed, so a
// call stuck on NATS, the cloud or GitHub cannot keep it alive (issue 17: a consumer
// still running 15 minutes after SIGTERM, a second SIGTERM ignored).
type stopper struct {
	cancel context.CancelCauseFunc
	exit   func(code int)

	mu      sync.Mutex
	logger  *slog.Logger
	timeout time.Duration
	// at is when the first signal arrived (zero: none yet).
	at time.Time
}

func newStopper(cancel context.CancelCauseFunc, stderr io.Writer, exit func(int)) *stopper {
	return &stopper{
		cancel: cancel, exit: exit,
		// Until the config is read: its format is not known yet, nor its timeout.
		logger:  slog.New(slog.NewTextHandler(stderr, nil)),
		timeout: config.Defaults().ShutdownTimeout,
	}
}

// arm gives the stopper the process's logger and shutdown_timeout, once the config
// is loaded.
func (s *stopper) arm(logger *slog.Logger, timeout time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logger, s.timeout = logger, timeout
}

// deadline is when the process must have exited: shutdown_timeout after the first
// signal, or, with none yet (a part failed, the process stops on its own),
// shutdown_timeout from now.
func (s *stopper) deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at.IsZero() {
		return time.Now().Add(s.timeout)
	}
	return s.at.Add(s.timeout)
}

// watch waits for signals: the first cancels the commands' context and starts the
// watchdog, the second (or the watchdog) exits at once.
func (s *stopper) watch(sigs <-chan os.Signal) {
	first := <-sigs
	s.mu.Lock()
	s.at = time.Now()
	logger, timeout := s.logger, s.timeout
	s.mu.Unlock()
	logger.Info("stopping", "signal", first.String(), "shutdown_timeout", timeout.String())
	s.cancel(fmt.Errorf("%w: %s", errStopSignal, first))
	watchdog := time.NewTimer(timeout)
	defer watchdog.Stop()
	select {
	case second := <-sigs:
		s.logger0().Error("second signal: exiting at once; what was not finished is left for the janitor", "signal", second.String())
		s.exit(signalExitCode(second))
	case <-watchdog.C:
		s.logger0().Error("shutdown_timeout passed: exiting; what was not finished is left for the janitor", "shutdown_timeout", timeout.String())
		s.exit(1)
	}
}

func (s *stopper) logger0() *slog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logger
}

// signalExitCode is the shell's code for a process ended by sig: 128 + its number.
func signalExitCode(sig os.Signal) int {
	if n, ok := sig.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 1
}

// partsBound is how long runAll waits for the parts once the process stops: until
// four fifths of shutdown_timeout after the stop began, leaving the rest for closing
// connections (and the embedded NATS server) before the watchdog.
func (s *stopper) partsBound() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.timeout * 4 / 5
	if !s.at.IsZero() {
		d -= time.Since(s.at)
	}
	return max(d, 0)
}

// closeWithin runs closeFn (closing a connection, shutting the embedded NATS server
// down) but returns by the stop's deadline, leaving it to the process's exit if it
// has not finished: nats-server's shutdown waits for its clients and its store.
func (s *stopper) closeWithin(what string, closeFn func()) {
	done := make(chan struct{})
	go func() { defer close(done); closeFn() }()
	wait := time.Until(s.deadline()) - 200*time.Millisecond
	t := time.NewTimer(max(wait, 0))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.logger0().Warn(what+" did not finish closing within shutdown_timeout; exiting without it", logkey.Component, what)
	}
}
