// Package fakerepopolicy is a repo-policy-compliance service for tests and the
// sandbox (`spawner dev repo-policy`). It follows the service's public API
// (docs/repo-policy.md): GET /one-time-token with the service token answers a
// one-time token as text; POST /<check>/check-run with a one-time token and a JSON
// body answers 204 (allowed), 403 with the reason (not compliant), 401 (a token that
// is unknown or spent) or 400 (a body the check cannot read).
//
// It refuses by repository, by branch (either side of a pull request) or at random,
// can hold every check open for a while (to test flushes that wait for checks), can
// fail with a 5xx (to test fail_open), and records every check it answered.
package fakerepopolicy

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options configure the fake.
type Options struct {
	// ServiceToken is what GET /one-time-token must present (the CHARM_TOKEN).
	ServiceToken string
	// RefuseRepos are repositories (owner/name) whose checks answer 403.
	RefuseRepos []string
	// RefuseBranches are branch names that answer 403 as source or target branch.
	RefuseBranches []string
	// RefuseRate refuses this fraction (0..1) of the other checks at random.
	RefuseRate float64
	// Hold keeps each check open this long before it is answered.
	Hold time.Duration
	// FailWith answers every check with this status (a 5xx) instead of judging.
	FailWith int
	Logger   *slog.Logger
}

// Check is one check-run the fake answered.
type Check struct {
	// Path is the request path, e.g. /pull_request/check-run.
	Path string `json:"path"`
	// Body is the request body as sent.
	Body json.RawMessage `json:"body"`
	Code int             `json:"code"`
	// Reason is the body of a refusal.
	Reason     string    `json:"reason,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	AnsweredAt time.Time `json:"answered_at"`
}

// Server is the fake service.
type Server struct {
	mu       sync.Mutex
	opts     Options
	tokens   map[string]bool // one-time token → spent
	checks   []Check
	inFlight int
}

// New returns a fake service with opts.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{opts: opts, tokens: map[string]bool{}}
}

// Checks the fake answered, oldest first.
func (s *Server) Checks() []Check {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.checks)
}

// InFlight is how many checks are being held open now.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// Minted is how many one-time tokens the fake handed out, and how many were spent.
func (s *Server) Minted() (minted, spent int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, used := range s.tokens {
		minted++
		if used {
			spent++
		}
	}
	return minted, spent
}

// Tokens are the one-time tokens handed out, so that tests can look for them where
// they must not be (instance config, logs).
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for t := range s.tokens {
		out = append(out, t)
	}
	return out
}

// SetHold changes how long the next checks are held open.
func (s *Server) SetHold(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Hold = d
}

// SetFailWith makes the next checks answer code (0: judge them again).
func (s *Server) SetFailWith(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.FailWith = code
}

// Handler serves the API, and GET /_fake/checks (the checks answered, as JSON) for
// a standalone fake.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /one-time-token", s.oneTimeToken)
	// The service's legacy /check-run is its pull request check.
	mux.HandleFunc("POST /check-run", func(w http.ResponseWriter, r *http.Request) { s.checkRun(w, r, "pull_request") })
	mux.HandleFunc("POST /{check}/check-run", func(w http.ResponseWriter, r *http.Request) { s.checkRun(w, r, r.PathValue("check")) })
	mux.HandleFunc("GET /_fake/checks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(s.Checks()); err != nil {
			s.opts.Logger.Warn("checks not written", "error", err)
		}
	})
	return mux
}

func bearer(r *http.Request) string {
	t, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return strings.TrimSpace(t)
}

func (s *Server) oneTimeToken(w http.ResponseWriter, r *http.Request) {
	if s.opts.ServiceToken == "" || bearer(r) != s.opts.ServiceToken {
		http.Error(w, "Unauthorized Access", http.StatusUnauthorized)
		return
	}
	b := make([]byte, 32)
	if _, err := crand.Read(b); err != nil {
		http.Error(w, "no randomness", http.StatusInternalServerError)
		return
	}
	tok := hex.EncodeToString(b)
	s.mu.Lock()
	s.tokens[tok] = false
	s.mu.Unlock()
	io.WriteString(w, tok)
}

// checkInput is every field the checks read.
type checkInput struct {
	RepositoryName       string `json:"repository_name"`
	SourceRepositoryName string `json:"source_repository_name"`
	TargetBranchName     string `json:"target_branch_name"`
	SourceBranchName     string `json:"source_branch_name"`
	CommitSHA            string `json:"commit_sha"`
}

func (s *Server) checkRun(w http.ResponseWriter, r *http.Request, check string) {
	started := time.Now()
	// The token is spent when presented, as the service does: a second use is 401.
	s.mu.Lock()
	spent, known := s.tokens[bearer(r)]
	if known && !spent {
		s.tokens[bearer(r)] = true
	}
	opts := s.opts
	s.mu.Unlock()
	if !known || spent {
		http.Error(w, "Unauthorized Access", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	var in checkInput
	if err := json.Unmarshal(body, &in); err != nil || in.RepositoryName == "" {
		http.Error(w, "bad body: repository_name is required", http.StatusBadRequest)
		return
	}
	switch check {
	case "pull_request":
		if in.SourceRepositoryName == "" || in.TargetBranchName == "" || in.SourceBranchName == "" || in.CommitSHA == "" {
			http.Error(w, "bad body: a pull request check needs source_repository_name, target_branch_name, source_branch_name and commit_sha", http.StatusBadRequest)
			return
		}
	case "workflow_dispatch", "push", "schedule", "default":
	default:
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.inFlight++
	s.mu.Unlock()
	if opts.Hold > 0 {
		s.hold(r.Context(), opts.Hold)
	}
	code, reason := s.judge(opts, in)
	s.mu.Lock()
	s.inFlight--
	s.checks = append(s.checks, Check{Path: r.URL.Path, Body: body, Code: code, Reason: reason, StartedAt: started, AnsweredAt: time.Now()})
	s.mu.Unlock()
	s.opts.Logger.Info("check-run", "path", r.URL.Path, "repository", in.RepositoryName, "code", code, "reason", reason)
	if code == http.StatusNoContent {
		w.WriteHeader(code)
		return
	}
	http.Error(w, reason, code)
}

func (s *Server) hold(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (s *Server) judge(opts Options, in checkInput) (int, string) {
	switch {
	case opts.FailWith != 0:
		return opts.FailWith, "the fake repo-policy service fails on purpose"
	case slices.Contains(opts.RefuseRepos, in.RepositoryName):
		return http.StatusForbidden, fmt.Sprintf("repository %s is not compliant: branch protection is off", in.RepositoryName)
	case in.SourceBranchName != "" && slices.Contains(opts.RefuseBranches, in.SourceBranchName):
		return http.StatusForbidden, fmt.Sprintf("branch %s is not compliant", in.SourceBranchName)
	case in.TargetBranchName != "" && slices.Contains(opts.RefuseBranches, in.TargetBranchName):
		return http.StatusForbidden, fmt.Sprintf("branch %s is not compliant", in.TargetBranchName)
	case opts.RefuseRate > 0 && mrand.Float64() < opts.RefuseRate:
		return http.StatusForbidden, "refused at random by the fake repo-policy service"
	}
	return http.StatusNoContent, ""
}
