package lxd

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/runner-spawner/runner-spawner/backends"
)

// Kinds of failure, for errors.Is. Every error the Client returns for an answer from
// LXD is an *Error, which keeps LXD's own message and matches at most one of these.
var (
	// ErrNotFound: the instance, image, profile, pool, network or project does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: something by that name already exists.
	ErrExists = errors.New("already exists")
	// ErrQuota: the server or project has no room (storage full, project limits). It is
	// backends.ErrQuota itself, so callers of a Backend need not know this package.
	ErrQuota = backends.ErrQuota
	// ErrInvalid: LXD refused the request as malformed (bad name, unknown config key,
	// bad value, image type that does not match the instance type).
	ErrInvalid = errors.New("invalid request")
	// ErrForbidden: the server does not trust this client (certificate not added).
	ErrForbidden = errors.New("forbidden")
	// ErrUnreachable: no answer at all (socket missing, connection refused, TLS failure).
	ErrUnreachable = errors.New("unreachable")
	// ErrBusy: another operation holds the instance (a stop LXD runs because the
	// instance powered itself off, say); the same call soon after will work.
	ErrBusy = errors.New("busy")
	// ErrTimeout: a background operation did not finish before the deadline. The
	// operation may still finish on the server.
	ErrTimeout = errors.New("operation timed out")
)

// Error is a failed call: an error answer, a failed background operation, or no
// answer at all.
type Error struct {
	// Call is what was asked: "POST /1.0/instances", "operation Creating instance".
	Call string
	// Code is the HTTP status or LXD's error_code / status_code; 0 without an answer.
	Code int
	// Message is LXD's own error text, kept as it was given.
	Message string
	kind    error
	err     error // the transport or context error, if any
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" && e.err != nil {
		msg = e.err.Error()
	}
	if e.Code != 0 {
		return fmt.Sprintf("lxd %s: %s (%d)", e.Call, msg, e.Code)
	}
	return fmt.Sprintf("lxd %s: %s", e.Call, msg)
}

// Is matches the kind of failure (ErrNotFound, ErrQuota, …).
func (e *Error) Is(target error) bool { return e.kind != nil && target == e.kind }

// Unwrap returns the transport or context error underneath, if any.
func (e *Error) Unwrap() error { return e.err }

// Kind returns the sentinel this error matches, or nil for an unclassified failure
// (a server error that may well pass on a retry).
func (e *Error) Kind() error { return e.kind }

// LXD gives most failures as text only: background operations always fail with status
// code 400 whatever the cause, and some lookups of missing things answer 500. These
// fragments of LXD's messages tell the kinds apart; the first match wins.
var messageKinds = []struct {
	kind      error
	fragments []string
}{
	// Quota first: "no space left" inside an otherwise invalid-looking message is still full.
	{ErrQuota, []string{"no space left on device", "disk quota exceeded", "quota exceeded", "reached maximum number", "exceeds the allowed", "would exceed"}},
	// "A matching non-reusable operation has now succeeded": another delete (ours from
	// another process, or LXD's own for an ephemeral instance) got there first;
	// retrying finds the instance gone.
	{ErrBusy, []string{"is busy running", "matching non-reusable operation", "instance is busy"}},
	{ErrExists, []string{"already exists"}},
	{ErrNotFound, []string{"not found", "doesn't exist", "does not exist", "no such file"}},
	{ErrInvalid, []string{"invalid", "unknown configuration key", "doesn't match", "not provided", "not supported", "unsupported", "bad value"}},
}

// classify picks the kind of a failure from its code and LXD's message. A quota
// message wins over any code; then codes that say it plainly; then the message. A
// background operation's code (always 400 on failure) says nothing, so opFailure
// skips the codes there.
func classify(code int, message string, opFailure bool) error {
	msg := strings.ToLower(message)
	byMessage := func() error {
		for _, mk := range messageKinds {
			for _, f := range mk.fragments {
				if strings.Contains(msg, f) {
					return mk.kind
				}
			}
		}
		return nil
	}
	kind := byMessage()
	if kind == ErrQuota || opFailure {
		return kind
	}
	switch code {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrExists
	case http.StatusForbidden, http.StatusUnauthorized:
		return ErrForbidden
	case http.StatusBadRequest:
		if kind == nil {
			return ErrInvalid
		}
	}
	return kind
}
