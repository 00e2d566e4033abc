package control

import (
	"fmt"
	"strings"
)

// Mode is a flush mode; its value is the operator-facing string. It is parsed once,
// where it enters (a flag, a JSON body, a control message): a Mode value is always
// one of Modes.
type Mode string

// The flush modes of the system this one replaces.
const (
	// FlushIdle removes runners not running a job; an instance is deleted only after
	// GitHub accepted removing its runner (a busy runner is skipped).
	FlushIdle Mode = "FLUSH_IDLE"
	// FlushIdleWaitRepoCheck first waits while a runner is in its pre-job phase.
	FlushIdleWaitRepoCheck Mode = "FLUSH_IDLE_WAIT_REPO_CHECK"
	// FlushBusy removes every runner, busy ones too (their jobs fail).
	FlushBusy Mode = "FLUSH_BUSY"
	// FlushBusyWaitRepoCheck first waits while a runner is in its pre-job phase.
	FlushBusyWaitRepoCheck Mode = "FLUSH_BUSY_WAIT_REPO_CHECK"
	// ForceFlushWaitRepoCheck waits, then removes everything even when the GitHub
	// API fails; leftover registrations are removed by reconcile later.
	ForceFlushWaitRepoCheck Mode = "FORCE_FLUSH_WAIT_REPO_CHECK"
)

// Modes lists every flush mode.
var Modes = []Mode{FlushIdle, FlushIdleWaitRepoCheck, FlushBusy, FlushBusyWaitRepoCheck, ForceFlushWaitRepoCheck}

// ParseMode accepts a mode's operator string or its lower-case, hyphenated form
// (flush-idle, force-flush-wait-repo-check).
func ParseMode(s string) (Mode, error) {
	m := Mode(strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_")))
	for _, known := range Modes {
		if m == known {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown flush mode %q (want one of FLUSH_IDLE, FLUSH_IDLE_WAIT_REPO_CHECK, FLUSH_BUSY, FLUSH_BUSY_WAIT_REPO_CHECK, FORCE_FLUSH_WAIT_REPO_CHECK)", s)
}

// UnmarshalText parses a mode as ParseMode does: JSON bodies and control messages
// carry modes as strings, and a bad one fails their decoding.
func (m *Mode) UnmarshalText(text []byte) error {
	parsed, err := ParseMode(string(text))
	if err != nil {
		return err
	}
	*m = parsed
	return nil
}

// MarshalText writes the operator string.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m), nil }

// String is the operator string.
func (m Mode) String() string { return string(m) }

// Set parses a command-line flag's value (pflag.Value).
func (m *Mode) Set(s string) error { return m.UnmarshalText([]byte(s)) }

// Type names the flag's value in help text (pflag.Value).
func (m *Mode) Type() string { return "mode" }

// WaitRepoCheck reports whether the mode first waits while runners are in their
// pre-job phase (the repository check).
func (m Mode) WaitRepoCheck() bool { return strings.HasSuffix(string(m), "_WAIT_REPO_CHECK") }

// Busy reports whether the mode removes busy runners too.
func (m Mode) Busy() bool { return m != FlushIdle && m != FlushIdleWaitRepoCheck }

// Force reports whether the mode goes on when the GitHub API fails.
func (m Mode) Force() bool { return m == ForceFlushWaitRepoCheck }
