// Package bootstrap is how a runner instance gets its one-time GitHub runner config
// without any secret in its instance config: the templates (cloud-init user-data and a
// plain script) carry only the spawner's URL and a one-time token, and the HTTP
// endpoints here hand out the JIT config once, minted at that moment, and take the
// runner's status callbacks (booted, job started, pre-job done, job finished).
//
// State lives in the queue's KV records, so any spawner process can serve any
// instance. It must not import a backend or the GitHub client: minting and instance
// cleanup are passed in.
package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// Minter mints a single-use runner config on GitHub.
type Minter interface {
	MintJITConfig(ctx context.Context, runnerName string, labels []string) (runnerID int64, encodedJITConfig string, err error)
}

// BusyError tells the instance to come back later (GitHub rate limit, outage): the
// endpoint answers 503 with Retry-After.
type BusyError struct {
	RetryAfter time.Duration
	Err        error
}

func (e *BusyError) Error() string { return "busy: " + e.Err.Error() }
func (e *BusyError) Unwrap() error { return e.Err }

// Options configures the Server.
type Options struct {
	State  *queue.State
	Minter Minter
	// Labels returns the runner labels of a flavor (false: unknown flavor).
	Labels func(flavor string) ([]string, bool)
	// Finished is told, without blocking, that a runner's job finished so its
	// instance can be deleted at once (the janitor is the backstop).
	Finished func(runnerName string)
	// SpawnerBinary, when set, is served at /files/spawner for test images that run
	// the fake runner program.
	SpawnerBinary string
	// MintTimeout bounds one GitHub call (default 20 s).
	MintTimeout time.Duration
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
	Now         func() time.Time
}

// Server serves the bootstrap endpoints under /bootstrap/v1.
type Server struct {
	opts     Options
	logger   *slog.Logger
	requests *prometheus.CounterVec
	mintSecs prometheus.Histogram
}

// PathPrefix is where Routes expects to be mounted.
const PathPrefix = "/bootstrap/v1"

// NewServer builds a Server.
func NewServer(opts Options) *Server {
	if opts.State == nil || opts.Minter == nil || opts.Labels == nil {
		panic("bootstrap: NewServer needs State, Minter and Labels")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Finished == nil {
		opts.Finished = func(string) {}
	}
	if opts.MintTimeout == 0 {
		opts.MintTimeout = 20 * time.Second
	}
	s := &Server{
		opts:   opts,
		logger: opts.Logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_bootstrap_requests_total",
			Help: "Bootstrap requests from instances, by endpoint and outcome.",
		}, []string{"endpoint", "outcome"}),
		mintSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spawner_bootstrap_mint_seconds",
			Help:    "Time to mint a runner's JIT config on GitHub.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(s.requests, s.mintSecs)
	}
	return s
}

// Routes returns the handler to mount at PathPrefix.
func (s *Server) Routes() http.Handler {
	r := chi.NewRouter()
	r.Post("/runners/{name}/config", s.config)
	r.Post("/runners/{name}/status", s.status)
	if s.opts.SpawnerBinary != "" {
		r.Get("/files/spawner", func(w http.ResponseWriter, req *http.Request) {
			s.requests.WithLabelValues("files", "ok").Inc()
			http.ServeFile(w, req, s.opts.SpawnerBinary)
		})
	}
	return r
}

// ConfigResponse is the JSON form of the config answer (Accept: application/json);
// the default text form is the same as shell assignments.
type ConfigResponse struct {
	RunnerName    string `json:"runner_name"`
	JITConfig     string `json:"jit_config"`
	CallbackToken string `json:"callback_token"`
}

func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	logger := s.logger.With(logkey.Runner, name)
	token := bearer(r)
	now := s.opts.Now()
	callback, callbackHash := NewToken()
	var flavor string
	// Claim the one-time config first, so two concurrent fetches cannot both mint.
	rec, err := s.opts.State.UpdateRunner(r.Context(), name, func(rec *queue.RunnerRecord) error {
		switch {
		case !tokenMatches(token, rec.TokenHash):
			return errUnauthorized
		case now.After(rec.TokenExpires):
			return errExpired
		case rec.ConfigFetched || rec.State.Terminal():
			return errGone
		}
		rec.ConfigFetched = true
		rec.CallbackHash = callbackHash
		flavor = rec.Flavor
		return nil
	})
	if err != nil {
		s.fail(w, logger, "config", err)
		return
	}
	labels, ok := s.opts.Labels(flavor)
	if !ok {
		s.unclaim(r.Context(), name)
		s.fail(w, logger, "config", fmt.Errorf("flavor %q of runner %s is not configured here", rec.Flavor, name))
		return
	}
	mctx, cancel := context.WithTimeout(r.Context(), s.opts.MintTimeout)
	start := time.Now()
	runnerID, jit, err := s.opts.Minter.MintJITConfig(mctx, name, labels)
	cancel()
	s.mintSecs.Observe(time.Since(start).Seconds())
	if err != nil {
		s.unclaim(r.Context(), name)
		s.fail(w, logger, "config", fmt.Errorf("mint runner config: %w", err))
		return
	}
	// The config is out: record it even if the instance's request was cancelled,
	// since GitHub now has the registration.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer wcancel()
	if _, err := s.opts.State.UpdateRunner(wctx, name, func(rec *queue.RunnerRecord) error {
		rec.GitHubRunnerID = runnerID
		if rec.State.Advance(queue.RunnerIdle) {
			rec.IdleAt = s.opts.Now().UTC()
		}
		return nil
	}); err != nil {
		logger.Warn("runner config handed out but its record was not updated", logkey.Error, err)
	}
	s.requests.WithLabelValues("config", "ok").Inc()
	logger.Info("runner config handed out", "github_runner_id", runnerID)
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ConfigResponse{RunnerName: name, JITConfig: jit, CallbackToken: callback})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = fmt.Fprintf(w, "SPAWNER_JITCONFIG=%s\nSPAWNER_CALLBACK_TOKEN=%s\n", shellQuote(jit), shellQuote(callback))
}

// unclaim lets the instance try again after a failed mint.
func (s *Server) unclaim(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, _ = s.opts.State.UpdateRunner(ctx, name, func(rec *queue.RunnerRecord) error {
		rec.ConfigFetched = false
		rec.CallbackHash = ""
		return nil
	})
}

// Status events an instance reports.
const (
	EventBooted      = "booted"
	EventJobStarted  = "job_started"
	EventPreJobDone  = "pre_job_done"
	EventJobFinished = "job_finished"
)

// StatusRequest is the body of a status callback.
type StatusRequest struct {
	Event    string `json:"event"`
	ExitCode int    `json:"exit_code"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	logger := s.logger.With(logkey.Runner, name)
	var req StatusRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		s.fail(w, logger, "status", fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	token := bearer(r)
	now := s.opts.Now().UTC()
	finished := false
	_, err := s.opts.State.UpdateRunner(r.Context(), name, func(rec *queue.RunnerRecord) error {
		// The callback token works for every event; the bootstrap token only says
		// "booted", before the config is fetched.
		okCallback := tokenMatches(token, rec.CallbackHash)
		okBoot := req.Event == EventBooted && tokenMatches(token, rec.TokenHash) && now.Before(rec.TokenExpires)
		if !okCallback && !okBoot {
			return errUnauthorized
		}
		switch req.Event {
		case EventBooted:
			if !rec.BootedAt.IsZero() {
				return queue.ErrSkip
			}
			rec.BootedAt = now
		case EventJobStarted:
			if rec.State.Advance(queue.RunnerBusy) {
				rec.BusyAt = now
			}
			if rec.PreJobStartedAt.IsZero() {
				rec.PreJobStartedAt = now
			}
		case EventPreJobDone:
			if rec.PreJobDoneAt.IsZero() {
				rec.PreJobDoneAt = now
			}
		case EventJobFinished:
			code := req.ExitCode
			rec.ExitCode = &code
			if rec.State.Advance(queue.RunnerFinished) {
				rec.FinishedAt = now
			}
			finished = true
		default:
			return fmt.Errorf("%w: unknown event %q", errBadRequest, req.Event)
		}
		return nil
	})
	if err != nil && !errors.Is(err, queue.ErrSkip) {
		s.fail(w, logger, "status", err)
		return
	}
	if finished {
		s.opts.Finished(name)
	}
	s.requests.WithLabelValues("status", req.Event).Inc()
	logger.Info("runner status", "event", req.Event, "exit_code", req.ExitCode)
	w.WriteHeader(http.StatusNoContent)
}

var (
	errUnauthorized = errors.New("token not valid for this runner")
	errExpired      = errors.New("bootstrap token expired")
	errGone         = errors.New("runner config already handed out")
	errBadRequest   = errors.New("bad request")
)

// fail answers with a short fixed reason: never internal text or anything secret.
func (s *Server) fail(w http.ResponseWriter, logger *slog.Logger, endpoint string, err error) {
	code, reason := http.StatusInternalServerError, "internal error"
	var busy *BusyError
	switch {
	case errors.Is(err, queue.ErrNoRecord), errors.Is(err, errUnauthorized):
		// An unknown runner and a wrong token look the same from outside.
		code, reason = http.StatusUnauthorized, "unauthorized"
	case errors.Is(err, errExpired):
		code, reason = http.StatusUnauthorized, "token expired"
	case errors.Is(err, errGone):
		code, reason = http.StatusGone, "config already handed out"
	case errors.Is(err, errBadRequest):
		code, reason = http.StatusBadRequest, "bad request"
	case errors.As(err, &busy):
		code, reason = http.StatusServiceUnavailable, "busy, retry later"
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(busy.RetryAfter.Seconds()))))
	default:
		code, reason = http.StatusServiceUnavailable, "unavailable, retry later"
		w.Header().Set("Retry-After", "5")
	}
	s.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
	if code >= 500 {
		logger.Warn("bootstrap request failed", "endpoint", endpoint, logkey.Error, err)
	} else {
		logger.Info("bootstrap request refused", "endpoint", endpoint, "status", code, logkey.Error, err)
	}
	http.Error(w, reason, code)
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}
