package repopolicy_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/repopolicy"
	"github.com/runner-spawner/runner-spawner/internal/secret"
)

// TestOneTimeTokenRetriesServiceErrors: 5xx answers are retried, a 4xx is final, a
// token is checked against its alphabet, and the service token goes as a bearer.
func TestOneTimeTokenRetriesServiceErrors(t *testing.T) {
	var calls atomic.Int32
	var fail atomic.Int32 // answers 503 this many times
	var answer atomic.Value
	answer.Store("0123456789abcdef0123456789abcdef")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path != "/base/one-time-token" || r.Header.Get("Authorization") != "Bearer service-token" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if fail.Add(-1) >= 0 {
			http.Error(w, "database down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(answer.Load().(string) + "\n"))
	}))
	t.Cleanup(srv.Close)
	c := &repopolicy.Client{URL: srv.URL + "/base/", Token: secret.New("service-token"), Backoff: time.Millisecond}

	fail.Store(2)
	tok, err := c.OneTimeToken(t.Context())
	if err != nil || tok != "0123456789abcdef0123456789abcdef" || calls.Load() != 3 {
		t.Errorf("after two 503: %q, %v, %d calls", tok, err, calls.Load())
	}

	calls.Store(0)
	fail.Store(5)
	var se *repopolicy.ServiceError
	if _, err := c.OneTimeToken(t.Context()); !errors.As(err, &se) || se.Code != 503 || calls.Load() != 3 {
		t.Errorf("always 503: %v after %d calls", err, calls.Load())
	}

	calls.Store(0)
	fail.Store(0)
	bad := &repopolicy.Client{URL: srv.URL + "/base", Token: secret.New("wrong"), Backoff: time.Millisecond}
	if _, err := bad.OneTimeToken(t.Context()); !errors.As(err, &se) || se.Code != 401 || calls.Load() != 1 {
		t.Errorf("wrong service token: %v after %d calls (want one)", err, calls.Load())
	}

	answer.Store("'; rm -rf / #")
	if _, err := c.OneTimeToken(t.Context()); err == nil || strings.Contains(err.Error(), "rm -rf") {
		t.Errorf("a token outside the alphabet: %v", err)
	}

	unreachable := &repopolicy.Client{URL: "http://127.0.0.1:1", Token: secret.New("x"), Backoff: time.Millisecond, Attempts: 2}
	if _, err := unreachable.OneTimeToken(t.Context()); !errors.As(err, &se) || se.Code != 0 {
		t.Errorf("unreachable: %v", err)
	}
}
