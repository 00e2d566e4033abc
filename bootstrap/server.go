// Package bootstrap is how a runner instance gets its one-time GitHub runner config
// without any secret in its instance config: the templates (cloud-init user-data and a
// plain script) carry only the spawner's URL, the certificate to pin when it is https,
// and a one-time token, and the HTTP endpoints here hand out the JIT config once,
// minted at that moment, and take the runner's status callbacks (booted, job started,
// pre-job done, job finished).
//
// The config answer is JSON whose values all come from small alphabets, which the
// script checks before it uses them; it never evaluates the answer. It carries two
// callback tokens with different powers: the root token (every event, job_finished
// included, which deletes the instance) stays in a root-only file, and the hook token
// (job_started and pre_job_done) is all the pre-job hook, running as the runner user,
// can read.
//
// With a repo-policy check, the config answer also carries the check's one-time
// token, minted then (never in user-data), and pre_job_done may carry a refused
// job's verdict (templates/repo-check.sh, docs/repo-policy.md).
//
// State lives in the fleet's KV records, so any spawner process can serve any
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

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/runnername"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
)

// Minter mints a single-use runner config on GitHub.
type Minter interface {
	MintJITConfig(ctx context.Context, runnerName string, labels []string) (runnerID int64, encodedJITConfig string, err error)
}

// PolicyMinter mints the one-time token a runner of flavor spends on its
// repo-policy-compliance check (internal/repopolicy); ok is false when the flavor
// has no check.
type PolicyMinter interface {
	PolicyToken(ctx context.Context, flavor string) (token string, ok bool, err error)
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
	// Fleet holds the runner records; the server moves them with its verbs.
	Fleet  *fleet.Fleet
	Minter Minter
	// Policy mints the repo-policy check's one-time tokens (nil: no flavor has the
	// check).
	Policy PolicyMinter
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
	fleet    *fleet.Fleet
	logger   *slog.Logger
	requests *prometheus.CounterVec
	mintSecs prometheus.Histogram
}

// PathPrefix is where Routes expects to be mounted.
const PathPrefix = "/bootstrap/v1"

// NewServer builds a Server.
func NewServer(opts Options) *Server {
	if opts.Fleet == nil || opts.Minter == nil || opts.Labels == nil {
		panic("bootstrap: NewServer needs Fleet, Minter and Labels")
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
		fleet:  opts.Fleet.WithClock(opts.Now),
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

// ConfigResponse is the config answer (JSON: the request must accept
// application/json). Every value is from an alphabet the script checks: the runner
// name (runnername), the JIT config (base64) and the tokens (base64url).
type ConfigResponse struct {
	RunnerName string `json:"runner_name"`
	JITConfig  string `json:"jit_config"`
	// CallbackToken is the root token: it may report every event.
	CallbackToken string `json:"callback_token"`
	// HookToken may report job_started and pre_job_done only.
	HookToken string `json:"hook_token"`
	// RepoPolicyToken is the one-time token of the repo-policy check (alphabet
	// repopolicy.TokenChars); empty when the flavor has no check or none could be
	// minted (the hook then fails the job, or lets it run with fail_open).
	RepoPolicyToken string `json:"repo_policy_token,omitempty"`
}

// base64Chars is the alphabet of a JIT config (standard base64 with padding), as the
// script checks it.
const base64Chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="

func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	name, logger, ok := s.runner(w, r, "config")
	if !ok {
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "application/json") {
		// A script rendered before the answer became JSON asks for a shell answer to
		// source. Refuse it before anything is claimed or minted: it gives up on the
		// 4xx and its runner is replaced once its boot timeout passes.
		s.fail(w, logger, "config", errNotAcceptable)
		return
	}
	token := bearer(r)
	now := s.opts.Now()
	callback, callbackHash := NewToken()
	hook, hookHash := NewToken()
	var flavor string
	// Claim the one-time config first, so two concurrent fetches cannot both mint.
	rec, err := s.fleet.ClaimConfig(r.Context(), name, func(rec *fleet.RunnerRecord) error {
		switch {
		case !tokenMatches(token, rec.TokenHash):
			return errUnauthorized
		case now.After(rec.TokenExpires):
			return errExpired
		}
		return nil
	}, callbackHash, hookHash, errGone)
	if err == nil {
		flavor = rec.Flavor
	}
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
	// The policy token is minted alongside the JIT config, so that the instance's
	// request (30 s) is not held for both calls in a row.
	policy := make(chan string, 1)
	go func() { policy <- s.policyToken(r.Context(), rec.Flavor, logger) }()
	mctx, cancel := context.WithTimeout(r.Context(), s.opts.MintTimeout)
	start := time.Now()
	runnerID, jit, err := s.opts.Minter.MintJITConfig(mctx, name, labels)
	cancel()
	s.mintSecs.Observe(time.Since(start).Seconds())
	if err == nil && !inAlphabet(jit, base64Chars) {
		// The script would refuse it; say why here, where someone reads the logs.
		err = fmt.Errorf("GitHub's JIT config is not base64 (%d bytes)", len(jit))
	}
	policyToken := <-policy
	if err != nil {
		s.unclaim(r.Context(), name)
		s.fail(w, logger, "config", fmt.Errorf("mint runner config: %w", err))
		return
	}
	// The config is out: record it even if the instance's request was cancelled,
	// since GitHub now has the registration.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer wcancel()
	if err := s.fleet.Registered(wctx, name, runnerID); err != nil {
		logger.Warn("runner config handed out but its record was not updated", logkey.Error, err)
	}
	s.requests.WithLabelValues("config", "ok").Inc()
	logger.Info("runner config handed out", "github_runner_id", runnerID)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	answer := ConfigResponse{RunnerName: name, JITConfig: jit, CallbackToken: callback, HookToken: hook, RepoPolicyToken: policyToken}
	if err := json.NewEncoder(w).Encode(answer); err != nil {
		// The registration is minted but the instance may not have it: it is reaped
		// as a runner that never took its job.
		logger.Warn("runner config not delivered", logkey.Error, err)
	}
}

// policyMintTimeout bounds minting a policy token, retries included: the instance
// waits for its config answer meanwhile (its request gives up after 30 s).
const policyMintTimeout = 15 * time.Second

// policyToken mints the flavor's repo-policy one-time token; "" when the flavor has
// no check, or when minting failed: the check then fails closed in the instance (or
// lets the job run with fail_open), which is where the job's log says why.
func (s *Server) policyToken(ctx context.Context, flavor string, logger *slog.Logger) string {
	if s.opts.Policy == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, policyMintTimeout)
	defer cancel()
	tok, ok, err := s.opts.Policy.PolicyToken(ctx, flavor)
	switch {
	case !ok:
		return ""
	case err == nil && !inAlphabet(tok, policyTokenChars):
		err = fmt.Errorf("the one-time token is not of the expected alphabet (%d bytes)", len(tok))
	}
	if err != nil {
		s.requests.WithLabelValues("policy_token", "error").Inc()
		logger.Warn("no repo-policy one-time token for the runner: its check fails closed unless fail_open", logkey.Error, err)
		return ""
	}
	s.requests.WithLabelValues("policy_token", "ok").Inc()
	return tok
}

// policyTokenChars is the one-time token's alphabet, as the script checks it
// (repopolicy.TokenChars).
const policyTokenChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"

// runner reads the {name} segment. A name no runner can have is refused before the
// store is read; the logger it returns carries the name cut for logs.
func (s *Server) runner(w http.ResponseWriter, r *http.Request, endpoint string) (string, *slog.Logger, bool) {
	name := chi.URLParam(r, "name")
	logger := s.logger.With(logkey.Runner, untrusted.Log(name))
	if !runnername.Valid(name) {
		s.fail(w, logger, endpoint, fmt.Errorf("%w: the runner name is not %s", errBadRequest, runnername.Rule))
		return "", nil, false
	}
	return name, logger, true
}

// inAlphabet reports whether s is not empty and has only bytes of alphabet.
func inAlphabet(s, alphabet string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

// unclaim lets the instance try again after a failed mint.
func (s *Server) unclaim(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.fleet.UnclaimConfig(ctx, name); err != nil {
		// The instance's next fetch finds the config handed out (410) and gives up;
		// its runner never registers and is replaced after its boot timeout.
		s.logger.Warn("runner config not unclaimed after a failed mint", logkey.Runner, name, logkey.Error, err)
	}
}

// Status events an instance reports.
const (
	EventBooted      = "booted"
	EventJobStarted  = "job_started"
	EventPreJobDone  = "pre_job_done"
	EventJobFinished = "job_finished"
)

// instanceEvents maps the wire names of the status events to the lifecycle's.
var instanceEvents = map[string]fleet.InstanceEvent{
	EventBooted: fleet.EventBooted, EventJobStarted: fleet.EventJobStarted,
	EventPreJobDone: fleet.EventPreJobDone, EventJobFinished: fleet.EventJobFinished,
}

// StatusRequest is the body of a status callback.
type StatusRequest struct {
	Event    string `json:"event"`
	ExitCode int    `json:"exit_code"`
	// Outcome, HTTPCode and Reason come with pre_job_done when a pre-job check
	// refused the job (repo-check.sh): a fleet.CheckFailures outcome, the policy
	// service's status (0: not reached, or the fork check) and the reason.
	Outcome  string `json:"outcome,omitempty"`
	HTTPCode int    `json:"http_code,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// maxReasonLen bounds a check's reason as stored on the runner record.
const maxReasonLen = 200

// verdict is the check failure a status request carries (nil: none). Everything in
// it comes from the instance, and the reason from the policy service through it:
// the outcome must be one of ours, the code an HTTP status, and the reason is cut
// to printable text.
func (req *StatusRequest) verdict() (*fleet.CheckFailure, error) {
	if req.Outcome == "" {
		if req.HTTPCode != 0 || req.Reason != "" {
			return nil, fmt.Errorf("%w: http_code and reason come with an outcome", errBadRequest)
		}
		return nil, nil
	}
	o := fleet.Outcome(req.Outcome)
	switch {
	case req.Event != EventPreJobDone:
		return nil, fmt.Errorf("%w: an outcome comes with %s only", errBadRequest, EventPreJobDone)
	case !o.IsCheckFailure():
		return nil, fmt.Errorf("%w: unknown outcome %q", errBadRequest, untrusted.Log(req.Outcome))
	case req.HTTPCode < 0 || req.HTTPCode > 599:
		return nil, fmt.Errorf("%w: http_code %d", errBadRequest, req.HTTPCode)
	}
	return &fleet.CheckFailure{Outcome: o, HTTPCode: req.HTTPCode, Reason: untrusted.Cell(req.Reason, maxReasonLen)}, nil
}

// scope is what a presented token may report.
type scope uint8

const (
	scopeBoot scope = 1 << iota // the one-time bootstrap token, until it expires
	scopeHook                   // the hook token: the pre-job hook, as the runner user
	scopeRoot                   // the root callback token: the bootstrap script, as root
)

// eventScopes says which tokens may report an event (0: no such event).
func eventScopes(event string) scope {
	switch event {
	case EventBooted:
		return scopeBoot | scopeRoot
	case EventJobStarted, EventPreJobDone:
		return scopeHook | scopeRoot
	case EventJobFinished:
		// It deletes the instance: job code, which can read the hook token, must not
		// be able to say it.
		return scopeRoot
	}
	return 0
}

// tokenScope is what token may report for rec. A record written before HookHash
// existed has only CallbackHash, which keeps its full scope.
func tokenScope(rec *fleet.RunnerRecord, token string, now time.Time) scope {
	var s scope
	if tokenMatches(token, rec.TokenHash) && now.Before(rec.TokenExpires) {
		s |= scopeBoot
	}
	if tokenMatches(token, rec.HookHash) {
		s |= scopeHook
	}
	if tokenMatches(token, rec.CallbackHash) {
		s |= scopeRoot
	}
	return s
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	name, logger, ok := s.runner(w, r, "status")
	if !ok {
		return
	}
	var req StatusRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		s.fail(w, logger, "status", fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	allowed := eventScopes(req.Event)
	if allowed == 0 {
		s.fail(w, logger, "status", fmt.Errorf("%w: unknown event %q", errBadRequest, untrusted.Log(req.Event)))
		return
	}
	check, err := req.verdict()
	if err != nil {
		s.fail(w, logger, "status", err)
		return
	}
	token := bearer(r)
	now := s.opts.Now().UTC()
	rec, err := s.fleet.ReportWith(r.Context(), name, instanceEvents[req.Event], req.ExitCode, check, func(rec *fleet.RunnerRecord) error {
		granted := tokenScope(rec, token, now)
		switch {
		case granted == 0:
			return errUnauthorized
		case granted&allowed == 0:
			return fmt.Errorf("%w: %s", errForbidden, req.Event)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fleet.ErrUnchanged) {
		s.fail(w, logger, "status", err)
		return
	}
	finished := req.Event == EventJobFinished
	if finished {
		s.opts.Finished(name)
	}
	s.requests.WithLabelValues("status", req.Event).Inc()
	switch {
	case rec == nil: // said before: nothing new to log or count
		logger.Info("runner status", "event", req.Event, "exit_code", req.ExitCode)
	case check != nil:
		logger.Warn("pre-job check refused the job", logkey.Flavor, rec.Flavor, logkey.JobID, rec.TookJob,
			"outcome", string(rec.Outcome), "http_code", rec.CheckHTTPCode, "reason", rec.CheckReason)
	case finished:
		logger.Info("runner status", "event", req.Event, "exit_code", req.ExitCode, "outcome", string(rec.Outcome))
	default:
		logger.Info("runner status", "event", req.Event, "exit_code", req.ExitCode)
	}
	w.WriteHeader(http.StatusNoContent)
}

var (
	errUnauthorized = errors.New("token not valid for this runner")
	errForbidden    = errors.New("token may not report this event")
	errExpired      = errors.New("bootstrap token expired")
	errGone         = errors.New("runner config already handed out")
	errBadRequest   = errors.New("bad request")
	// errNotAcceptable: the client cannot take the JSON config answer.
	errNotAcceptable = errors.New("config answer is JSON only")
)

// fail answers with a short fixed reason: never internal text or anything secret.
func (s *Server) fail(w http.ResponseWriter, logger *slog.Logger, endpoint string, err error) {
	code, reason := http.StatusInternalServerError, "internal error"
	var busy *BusyError
	switch {
	case errors.Is(err, fleet.ErrNoRecord), errors.Is(err, errUnauthorized):
		// An unknown runner and a wrong token look the same from outside.
		code, reason = http.StatusUnauthorized, "unauthorized"
	case errors.Is(err, errExpired):
		code, reason = http.StatusUnauthorized, "token expired"
	case errors.Is(err, errGone):
		code, reason = http.StatusGone, "config already handed out"
	case errors.Is(err, errForbidden):
		code, reason = http.StatusForbidden, "forbidden"
	case errors.Is(err, errBadRequest):
		code, reason = http.StatusBadRequest, "bad request"
	case errors.Is(err, errNotAcceptable):
		code, reason = http.StatusNotAcceptable, "the config answer is JSON: send Accept: application/json"
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
