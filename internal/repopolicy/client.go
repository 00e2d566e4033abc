// Package repopolicy is the spawner's side of the repo-policy-compliance service
// (docs/repo-policy.md): minting the one-time token that a runner's pre-job hook
// spends on its check. The check itself runs in the instance (bootstrap's
// repo-check.sh); the service token never leaves the spawner.
//
// It is a leaf: internal/assemble builds a Client per flavor from the config and
// hands bootstrap the Minter.
package repopolicy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
)

// TokenChars is the alphabet a one-time token must have before the spawner hands it
// to an instance (the service answers 64 hex digits; the pre-job hook checks the same
// alphabet before it writes the token into a header).
const TokenChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"

// maxTokenLen bounds a token: anything longer is not one.
const maxTokenLen = 512

// ValidToken reports whether s can be a one-time token.
func ValidToken(s string) bool {
	if len(s) < 8 || len(s) > maxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(TokenChars, s[i]) < 0 {
			return false
		}
	}
	return true
}

// Client mints one-time tokens from one service.
type Client struct {
	// URL is the service's base URL (no trailing slash needed).
	URL string
	// Token is the service token (the service's CHARM_TOKEN).
	Token secret.Value
	// Timeout bounds one call (default 30 s).
	Timeout time.Duration
	// Attempts is how many calls a mint may make when the service answers 5xx or
	// cannot be reached (default 3).
	Attempts int
	// Backoff is the wait before the second attempt, doubled for each next one
	// (default 300 ms).
	Backoff time.Duration
	// HTTP is the client (default: one that ignores proxies, as the instances do:
	// the service sits next to the spawner).
	HTTP *http.Client
}

// ServiceError is a mint the service refused or failed; Code is its HTTP status (0:
// not reached).
type ServiceError struct {
	Code   int
	Reason string
	Err    error
}

func (e *ServiceError) Error() string {
	switch {
	case e.Err != nil:
		return "repo-policy service not reached: " + e.Err.Error()
	case e.Reason != "":
		return fmt.Sprintf("repo-policy service answered %d: %s", e.Code, e.Reason)
	}
	return fmt.Sprintf("repo-policy service answered %d", e.Code)
}

func (e *ServiceError) Unwrap() error { return e.Err }

// retriable: the service failed, not refused.
func (e *ServiceError) retriable() bool { return e.Err != nil || e.Code >= 500 }

var noProxy = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second}}

// OneTimeToken asks the service for a one-time token (GET <url>/one-time-token with
// the service token), retrying 5xx answers and unreachable services a few times
// with backoff. A 4xx is final: the service token is wrong, and retrying cannot help.
func (c *Client) OneTimeToken(ctx context.Context) (string, error) {
	attempts, backoff := c.Attempts, c.Backoff
	if attempts <= 0 {
		attempts = 3
	}
	if backoff <= 0 {
		backoff = 300 * time.Millisecond
	}
	var last error
	for i := range attempts {
		if i > 0 {
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("mint one-time token: %w (last: %v)", ctx.Err(), last)
			case <-time.After(backoff):
			}
			backoff *= 2
		}
		tok, err := c.once(ctx)
		if err == nil {
			return tok, nil
		}
		last = err
		var se *ServiceError
		if !errors.As(err, &se) || !se.retriable() || ctx.Err() != nil {
			break
		}
	}
	return "", fmt.Errorf("mint one-time token: %w", last)
}

func (c *Client) once(ctx context.Context) (string, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.URL, "/")+"/one-time-token", nil)
	if err != nil {
		return "", fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token.Reveal())
	hc := c.HTTP
	if hc == nil {
		hc = noProxy
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", &ServiceError{Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", &ServiceError{Err: fmt.Errorf("read the answer: %w", err)}
	}
	text := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		// The reason is the service's text: cut for the log it ends in.
		return "", &ServiceError{Code: resp.StatusCode, Reason: untrusted.Log(text)}
	}
	if !ValidToken(text) {
		return "", &ServiceError{Code: resp.StatusCode, Reason: fmt.Sprintf("the answer is not a token (%d bytes)", len(text))}
	}
	return text, nil
}
