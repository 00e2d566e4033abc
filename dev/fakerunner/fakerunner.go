// Package fakerunner plays the part of the GitHub Actions runner (run.sh --jitconfig …)
// against the fake GitHub of package fakegithub. It is a test tool: it only understands JIT
// configs minted by the fake and never talks to real GitHub.
//
// Run connects with the JIT config, waits for the job the fake gives it (not necessarily the
// one it was started for, as on GitHub), runs the pre-job hook named by
// ACTIONS_RUNNER_HOOK_JOB_STARTED with sh (a failing hook fails the job), "runs" the job
// until the fake says its steps are done (heartbeating all along), runs the post-job hook
// named by ACTIONS_RUNNER_HOOK_JOB_COMPLETED, reports the exit status and returns. The wire
// protocol is in protocol.go and documented in package fakegithub.
//
// It must not read the process environment itself: hook lookups go through Options.Env so
// an in-process simulated instance runs it without touching the environment.
package fakerunner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// Hook environment variables, as the real runner reads them.
const (
	EnvJobStartedHook   = "ACTIONS_RUNNER_HOOK_JOB_STARTED"
	EnvJobCompletedHook = "ACTIONS_RUNNER_HOOK_JOB_COMPLETED"
)

// Errors Run returns besides transport and context errors.
var (
	ErrJobFailed    = errors.New("job failed")
	ErrJobCancelled = errors.New("job cancelled")
	// ErrRemoved: the registration was removed before or while the job ran (deleted
	// through the API, or declared lost by the fake).
	ErrRemoved = errors.New("runner removed")
)

// Options configure Run.
type Options struct {
	// JITConfig is the encoded_jit_config the fake minted. Required.
	JITConfig string
	// BaseURL overrides the fake's URL carried in the config (optional).
	BaseURL string
	// Stdout receives the runner's progress lines and the hooks' output (nil: discarded).
	Stdout io.Writer
	// Env looks up the hook variables (EnvJobStartedHook, EnvJobCompletedHook) and, when
	// HookEnv is nil, PATH and HOME for the hooks. nil: no hooks.
	Env func(key string) string
	// HookEnv is the environment of hook processes (nil: PATH and HOME from Env). The
	// runner adds GITHUB_REPOSITORY, GITHUB_RUN_ID, GITHUB_RUN_ATTEMPT, GITHUB_JOB and
	// RUNNER_NAME, as the real runner does.
	HookEnv []string
	// OnJobStarted, when set, runs when the runner gets its job, before the
	// ACTIONS_RUNNER_HOOK_JOB_STARTED script: an in-process instance reports its
	// pre-job phase with it. An error fails the job, as a failing hook does.
	OnJobStarted func(ctx context.Context) error
	// HTTPClient talks to the fake (nil: a client without timeout; every request has its own).
	HTTPClient *http.Client
	// PollWait is how long one long poll may wait (default 20s).
	PollWait time.Duration
	Logger   *slog.Logger
}

// Run plays one single-use runner. It returns nil when its job succeeded,
// ErrJobFailed or ErrJobCancelled for the other outcomes, ErrRemoved when the
// registration went away, and ctx's error when cancelled (the fake then sees a runner
// that stopped heartbeating, like a machine that died).
func Run(ctx context.Context, opts Options) error {
	cfg, err := DecodeJITConfig(opts.JITConfig)
	if err != nil {
		return err
	}
	base := cfg.URL
	if opts.BaseURL != "" {
		base = opts.BaseURL
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	r := &runner{
		opts:   opts,
		cfg:    cfg,
		base:   base,
		client: opts.HTTPClient,
		out:    opts.Stdout,
		log:    opts.Logger,
		wait:   opts.PollWait,
	}
	if r.client == nil {
		r.client = &http.Client{}
	}
	if r.out == nil {
		r.out = io.Discard
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.wait <= 0 {
		r.wait = 20 * time.Second
	}
	return r.run(ctx)
}

type runner struct {
	opts   Options
	cfg    JITConfig
	base   string
	client *http.Client
	out    io.Writer
	log    *slog.Logger
	wait   time.Duration
}

func (r *runner) run(ctx context.Context) error {
	var conn ConnectResponse
	if err := r.call(ctx, http.MethodPost, PathConnect, nil, &conn); err != nil {
		return fmt.Errorf("connect runner %s: %w", r.cfg.RunnerName, err)
	}
	r.printf("√ Connected to GitHub\n\nCurrent runner version: 'fake'\n%s: Listening for Jobs\n", time.Now().UTC().Format(time.DateTime))

	st, err := r.pollUntil(ctx, StateIdle, func(s string) bool { return s != StateIdle })
	if err != nil {
		return err
	}
	if st.State == StateRemoved || st.Job == nil {
		r.printf("Runner registration was removed\n")
		return ErrRemoved
	}
	job := *st.Job
	r.log.Info("runner got job", logkey.Runner, r.cfg.RunnerName, logkey.JobID, job.JobID, logkey.Repo, job.Repo)
	r.printf("%s: Running job: %s\n", time.Now().UTC().Format(time.DateTime), job.Name)

	// Heartbeat while holding the job: hooks may take longer than the fake's lost-runner
	// timeout, and a poll is not in flight while they run.
	hbCtx, stopHeartbeat := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.heartbeat(hbCtx, time.Duration(conn.HeartbeatMS)*time.Millisecond) })
	defer func() {
		stopHeartbeat()
		wg.Wait()
	}()

	hookOK := r.runHook(ctx, EnvJobStartedHook, "job started", job)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.call(ctx, http.MethodPost, PathStarted, StartedRequest{JobID: job.JobID, OK: hookOK}, nil); err != nil {
		return fmt.Errorf("report job %d started: %w", job.JobID, err)
	}

	exit, cancelled := 0, false
	if !hookOK {
		exit = 1
	} else {
		st, err = r.pollUntil(ctx, StateRunning, func(s string) bool {
			return s == StateFinish || s == StateCancelled || s == StateRemoved
		})
		if err != nil {
			return err
		}
		switch st.State {
		case StateRemoved:
			r.printf("Runner registration was removed while running job %s\n", job.Name)
			return ErrRemoved
		case StateCancelled:
			cancelled = true
			exit = 1
		case StateFinish:
			if st.Result != "success" {
				exit = 1
			}
		}
	}
	if !r.runHook(ctx, EnvJobCompletedHook, "job completed", job) && exit == 0 {
		exit = 1
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.call(ctx, http.MethodPost, PathComplete, CompleteRequest{JobID: job.JobID, ExitCode: exit}, nil); err != nil {
		return fmt.Errorf("report job %d complete: %w", job.JobID, err)
	}
	switch {
	case cancelled:
		r.printf("%s: Job %s completed with result: Canceled\n", time.Now().UTC().Format(time.DateTime), job.Name)
		return ErrJobCancelled
	case exit != 0:
		r.printf("%s: Job %s completed with result: Failed\n", time.Now().UTC().Format(time.DateTime), job.Name)
		return ErrJobFailed
	}
	r.printf("%s: Job %s completed with result: Succeeded\n", time.Now().UTC().Format(time.DateTime), job.Name)
	return nil
}

// pollUntil long-polls until done(state) holds, starting from the state the runner knows.
func (r *runner) pollUntil(ctx context.Context, known string, done func(string) bool) (PollResponse, error) {
	for {
		q := url.Values{"state": {known}, "wait": {r.wait.String()}}
		var st PollResponse
		if err := r.call(ctx, http.MethodGet, PathPoll+"?"+q.Encode(), nil, &st); err != nil {
			if errors.Is(err, errGone) {
				return PollResponse{State: StateRemoved}, nil
			}
			return PollResponse{}, fmt.Errorf("poll runner %s: %w", r.cfg.RunnerName, err)
		}
		if done(st.State) {
			return st, nil
		}
		known = st.State
	}
}

func (r *runner) heartbeat(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// A missed heartbeat is not fatal: the next one or the next poll counts too.
			_ = r.call(ctx, http.MethodPost, PathHeartbeat, nil, nil)
		}
	}
}

// runHook runs the script named by env var name with sh, as the real runner runs its job
// hooks, and reports whether it succeeded (no hook configured counts as success).
func (r *runner) runHook(ctx context.Context, name, what string, job Assignment) bool {
	if name == EnvJobStartedHook && r.opts.OnJobStarted != nil {
		if err := r.opts.OnJobStarted(ctx); err != nil {
			r.printf("%s hook failed: %v\n", what, err)
			return false
		}
	}
	if r.opts.Env == nil {
		return true
	}
	script := r.opts.Env(name)
	if script == "" {
		return true
	}
	r.printf("A %s hook has been configured by the self-hosted runner administrator\nRun '%s'\n", what, script)
	env := r.opts.HookEnv
	if env == nil {
		env = []string{"PATH=" + r.opts.Env("PATH"), "HOME=" + r.opts.Env("HOME")}
	}
	event := job.Event
	if event == "" {
		event = "push"
	}
	env = append(env[:len(env):len(env)],
		"GITHUB_EVENT_NAME="+event,
		"GITHUB_REPOSITORY="+job.Repo,
		"GITHUB_RUN_ID="+strconv.FormatInt(job.RunID, 10),
		"GITHUB_RUN_ATTEMPT="+strconv.Itoa(job.RunAttempt),
		"GITHUB_JOB="+job.Name,
		"RUNNER_NAME="+r.cfg.RunnerName,
	)
	if len(job.EventPayload) > 0 {
		// The real runner writes the event to a file for the job and its hooks.
		path, err := writeEvent(job.EventPayload)
		if err != nil {
			r.printf("%s hook failed: %v\n", what, err)
			return false
		}
		defer os.Remove(path)
		env = append(env, "GITHUB_EVENT_PATH="+path)
	}
	cmd := exec.CommandContext(ctx, "sh", script)
	cmd.Env = env
	cmd.Stdout = r.out
	cmd.Stderr = r.out
	if err := cmd.Run(); err != nil {
		r.printf("%s hook failed: %v\n", what, err)
		r.log.Warn("runner hook failed", logkey.Runner, r.cfg.RunnerName, "hook", name, logkey.Error, err)
		return false
	}
	return true
}

// writeEvent writes an event payload to a file the hooks can read.
func writeEvent(payload []byte) (string, error) {
	f, err := os.CreateTemp("", "event-*.json")
	if err != nil {
		return "", fmt.Errorf("write the event file: %w", err)
	}
	_, err = f.Write(payload)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write the event file: %w", err)
	}
	return f.Name(), nil
}

func (r *runner) printf(format string, args ...any) {
	fmt.Fprintf(r.out, format, args...)
}

// errGone: the fake answered 410, the registration no longer exists.
var errGone = errors.New("runner registration gone")

// call sends one protocol request, retrying transport errors and 5xx answers a few times
// with backoff so a briefly unreachable fake does not kill the runner.
func (r *runner) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
	}
	backoff := 100 * time.Millisecond
	var lastErr error
	for attempt := 1; attempt <= 8; attempt++ {
		retry, err := r.callOnce(ctx, method, path, body, out)
		if err == nil || !retry {
			return err
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	return lastErr
}

func (r *runner) callOnce(ctx context.Context, method, path string, body []byte, out any) (retry bool, err error) {
	// A poll waits up to r.wait on the server; allow for that plus slack.
	cctx, cancel := context.WithTimeout(ctx, r.wait+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, method, r.base+path, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+r.cfg.Credential)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return true, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return true, err
	}
	switch {
	case resp.StatusCode == http.StatusGone:
		return false, errGone
	case resp.StatusCode >= 500:
		return true, fmt.Errorf("%s %s: status %d", method, path, resp.StatusCode)
	case resp.StatusCode >= 300:
		return false, fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return false, fmt.Errorf("decode %s answer: %w", path, err)
		}
	}
	return false, nil
}
