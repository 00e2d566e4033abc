//go:build !nodev

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/backends/sim"
	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
	"github.com/runner-spawner/runner-spawner/dev/sandbox"
	"github.com/runner-spawner/runner-spawner/internal/assemble"
	"github.com/runner-spawner/runner-spawner/internal/httpserve"
)

// The dev tools in the binary: "spawner dev …", "serve --sandbox", and the fake runner
// that simulated instances run. They live in dev/; a binary built with -tags nodev
// leaves them out (nodev.go).

// devCommand is "spawner dev": test tools for manual and load runs. Nothing here talks to
// real GitHub.
func devCommand() *cobra.Command {
	dev := &cobra.Command{
		Use:   "dev",
		Short: "Test tools: a fake GitHub and a fake runner (never for production)",
		Long: `Test tools for running runner-spawner end to end without the internet.

  spawner dev github   serves a fake GitHub (REST, signed webhooks, runner simulation)
  spawner dev runner   plays the Actions runner against that fake GitHub
  spawner dev sim-cloud serves a simulated cloud that several spawner processes share
  spawner dev repo-policy serves a fake repo-policy-compliance service

These are test tools: the fake accepts anything it is told to, and the runner only
understands JIT configs minted by the fake.`,
	}
	dev.AddCommand(devGitHubCommand(), devRunnerCommand(), devSimCloudCommand(), devRepoPolicyCommand())
	return dev
}

type devGitHubFlags struct {
	listen, publicURL, webhookURL, webhookSecret string
	owner                                        string
	repos, labels                                []string
	token, appKeyFile                            string
	appID, installationID                        int64
	jobs                                         int
	jobInterval, jobDuration, runnerLostAfter    time.Duration
	rateLimit                                    int
	rateWindow                                   time.Duration
	workers                                      int
	seed                                         int64
	dropRate, duplicateRate, redeliverRate       float64
	reorderRate                                  float64
	exitWhenDone                                 bool
	verbose                                      bool
}

func devGitHubCommand() *cobra.Command {
	f := &devGitHubFlags{}
	cmd := &cobra.Command{
		Use:   "github",
		Short: "Serve a fake GitHub for tests and load runs (a test tool)",
		Long: `Serve a fake GitHub: the REST endpoints runner-spawner uses, signed workflow_job
webhooks to --webhook-url, and simulated runners (start them with "spawner dev runner").
It is controlled over /_fake/control/ (see github/README.md). With --jobs N it queues N
jobs at start and prints a summary once they have all completed (or on exit).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDevGitHub(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8090", "address to serve on")
	fl.StringVar(&f.publicURL, "public-url", "", "base URL runners are given, as they reach the fake (default: the listen URL)")
	fl.StringVar(&f.webhookURL, "webhook-url", "", "where to deliver signed webhooks")
	fl.StringVar(&f.webhookSecret, "webhook-secret", "", "webhook HMAC secret")
	fl.StringVar(&f.owner, "owner", "octo-org", "organisation")
	fl.StringSliceVar(&f.repos, "repo", []string{"octo-org/octo-repo"}, "repositories (owner/name), repeatable; jobs go to the first")
	fl.StringVar(&f.token, "token", "", "accepted personal access token (none and no --app-id: any request is accepted)")
	fl.Int64Var(&f.appID, "app-id", 0, "GitHub App id whose JWTs are accepted")
	fl.StringVar(&f.appKeyFile, "app-key", "", "PEM file with the App's public key (or its private key)")
	fl.Int64Var(&f.installationID, "installation-id", 1, "the App's installation id")
	fl.IntVar(&f.jobs, "jobs", 0, "jobs to queue at start")
	fl.StringSliceVar(&f.labels, "labels", []string{"self-hosted"}, "labels of the queued jobs")
	fl.DurationVar(&f.jobInterval, "job-interval", 0, "pause between queued jobs")
	fl.DurationVar(&f.jobDuration, "job-duration", 0, "how long each job runs once started")
	fl.DurationVar(&f.runnerLostAfter, "runner-lost-after", 5*time.Second, "silence after which a busy runner is lost and its job fails")
	fl.IntVar(&f.rateLimit, "rate-limit", 5000, "REST budget per credential and window")
	fl.DurationVar(&f.rateWindow, "rate-window", time.Hour, "rate-limit window")
	fl.IntVar(&f.workers, "webhook-workers", 4, "concurrent webhook deliveries")
	fl.Int64Var(&f.seed, "seed", 0, "seed for webhook faults")
	fl.Float64Var(&f.dropRate, "drop-rate", 0, "fraction of webhook deliveries dropped (recorded as failed)")
	fl.Float64Var(&f.duplicateRate, "duplicate-rate", 0, "fraction of deliveries sent twice")
	fl.Float64Var(&f.redeliverRate, "redeliver-rate", 0, "fraction of deliveries followed by a manual redelivery")
	fl.Float64Var(&f.reorderRate, "reorder-rate", 0, "fraction of deliveries held back behind the next one")
	fl.BoolVar(&f.exitWhenDone, "exit-when-done", false, "with --jobs: exit once all jobs completed")
	fl.BoolVar(&f.verbose, "verbose", false, "log every job, runner and delivery")
	return cmd
}

func runDevGitHub(cmd *cobra.Command, f *devGitHubFlags) error {
	ctx, stop := devSignalContext(cmd)
	defer stop()
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelInfo
	}
	opts := fakegithub.Options{
		Addr: f.listen, PublicURL: f.publicURL, Owner: f.owner, Repos: f.repos,
		Token: f.token, AppID: f.appID, InstallationID: f.installationID,
		WebhookURL: f.webhookURL, WebhookSecret: f.webhookSecret,
		JobDuration: f.jobDuration, RunnerLostAfter: f.runnerLostAfter,
		RateLimit: f.rateLimit, RateLimitWindow: f.rateWindow,
		Webhooks: fakegithub.WebhookOptions{Workers: f.workers, Faults: fakegithub.WebhookFaults{
			Seed: f.seed, DropRate: f.dropRate, DuplicateRate: f.duplicateRate,
			RedeliverRate: f.redeliverRate, ReorderRate: f.reorderRate,
		}},
		Logger: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})),
	}
	if f.appKeyFile != "" {
		b, err := os.ReadFile(f.appKeyFile)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("read --app-key: %w", err)}
		}
		if opts.AppPublicKey, err = fakegithub.ParsePublicKeyPEM(b); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	if f.appID != 0 && opts.AppPublicKey == nil {
		return &exitError{code: 2, err: errors.New("--app-id needs --app-key")}
	}
	srv, err := devNewServer(opts)
	if err != nil {
		return err
	}
	defer srv.Close()
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "fake GitHub (a test tool) listening on %s (runners reach it at %s)\n", srv.URL(), srv.PublicURL())

	var ids []int64
	for i := range f.jobs {
		if i > 0 && f.jobInterval > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(f.jobInterval):
			}
		}
		if ctx.Err() != nil {
			break
		}
		ids = append(ids, srv.CreateJob(fakegithub.JobSpec{Labels: f.labels}).ID)
	}
	if len(ids) > 0 {
		fmt.Fprintf(out, "queued %d jobs with labels %s\n", len(ids), strings.Join(f.labels, ","))
	}
	if len(ids) > 0 && f.exitWhenDone {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for !devAllCompleted(srv, ids) {
			select {
			case <-ctx.Done():
				devPrintSummary(out, srv, ids)
				return nil
			case <-t.C:
			}
		}
		devPrintSummary(out, srv, ids)
		return nil
	}
	<-ctx.Done()
	if len(ids) > 0 {
		devPrintSummary(out, srv, ids)
	}
	return nil
}

// devNewServer turns NewServer's panic on a busy address into an error.
func devNewServer(opts fakegithub.Options) (srv *fakegithub.Server, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &exitError{code: 1, err: fmt.Errorf("start fake github: %v", r)}
		}
	}()
	return fakegithub.NewServer(opts), nil
}

func devAllCompleted(srv *fakegithub.Server, ids []int64) bool {
	for _, id := range ids {
		if j, ok := srv.Job(id); !ok || j.Status != "completed" {
			return false
		}
	}
	return true
}

// devPrintSummary reports what a load run wants to know: outcomes, time from queued to
// started, webhook deliveries and GitHub API calls per job.
func devPrintSummary(w io.Writer, srv *fakegithub.Server, ids []int64) {
	sum := srv.Summary()
	var waits []time.Duration
	byStatus := map[string]int{}
	for _, id := range ids {
		j, _ := srv.Job(id)
		key := j.Status
		if j.Conclusion != "" {
			key += "/" + j.Conclusion
		}
		byStatus[key]++
		if !j.StartedAt.IsZero() && j.RunnerID != 0 {
			waits = append(waits, j.StartedAt.Sub(j.CreatedAt))
		}
	}
	fmt.Fprintf(w, "summary: %d jobs", len(ids))
	for _, k := range devSortedKeys(byStatus) {
		fmt.Fprintf(w, ", %s %d", k, byStatus[k])
	}
	fmt.Fprintln(w)
	if len(waits) > 0 {
		slices.Sort(waits)
		pct := func(p float64) time.Duration { return waits[min(len(waits)-1, int(p*float64(len(waits))))] }
		fmt.Fprintf(w, "queued→started: p50 %s, p95 %s, max %s (%d started by a runner)\n",
			pct(0.5).Round(time.Millisecond), pct(0.95).Round(time.Millisecond), waits[len(waits)-1].Round(time.Millisecond), len(waits))
	}
	fmt.Fprintf(w, "webhook deliveries: %d, failed %d\n", sum.Deliveries, sum.DeliveriesBad)
	fmt.Fprintf(w, "GitHub API calls: %d (%.1f per job)\n", sum.CallsTotal, float64(sum.CallsTotal)/float64(max(1, len(ids))))
	for _, op := range devSortedKeys(sum.Calls) {
		fmt.Fprintf(w, "  %-50s %d\n", op, sum.Calls[op])
	}
}

func devSortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Exit codes of "spawner dev runner".
const (
	devExitJobFailed    = 1
	devExitJobCancelled = 2
	devExitRemoved      = 3
	devExitError        = 4
)

func devRunnerCommand() *cobra.Command {
	var jitConfig, baseURL string
	var pollWait time.Duration
	cmd := &cobra.Command{
		Use:   "runner",
		Short: "Play the Actions runner against the fake GitHub (a test tool)",
		Long: `Play the GitHub Actions runner against "spawner dev github": connect with a JIT
config minted by the fake, take a job, run the hooks named by
ACTIONS_RUNNER_HOOK_JOB_STARTED and ACTIONS_RUNNER_HOOK_JOB_COMPLETED (with sh),
wait until the fake says the job is done, and exit.

Exit status: 0 job succeeded, 1 job failed, 2 job cancelled, 3 runner removed before
or while running, 4 any other error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := devSignalContext(cmd)
			defer stop()
			if jitConfig == "" {
				return &exitError{code: devExitError, err: errors.New("--jitconfig is required")}
			}
			err := fakerunner.Run(ctx, fakerunner.Options{
				JITConfig: jitConfig,
				BaseURL:   baseURL,
				Stdout:    cmd.OutOrStdout(),
				Env:       os.Getenv,
				HookEnv:   os.Environ(),
				PollWait:  pollWait,
			})
			switch {
			case err == nil:
				return nil
			case errors.Is(err, fakerunner.ErrJobFailed):
				return &exitError{code: devExitJobFailed, err: err}
			case errors.Is(err, fakerunner.ErrJobCancelled):
				return &exitError{code: devExitJobCancelled, err: err}
			case errors.Is(err, fakerunner.ErrRemoved):
				return &exitError{code: devExitRemoved, err: err}
			}
			return &exitError{code: devExitError, err: err}
		},
	}
	cmd.Flags().StringVar(&jitConfig, "jitconfig", "", "encoded_jit_config minted by the fake GitHub")
	cmd.Flags().StringVar(&baseURL, "url", "", "override the fake's URL carried in the config")
	cmd.Flags().DurationVar(&pollWait, "poll-wait", 20*time.Second, "longest long poll")
	return cmd
}

// devSignalContext is the command's context, also ended by SIGINT/SIGTERM when the
// command runs without main's signal handling (tests, or before main wires it).
func devSignalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// devSimCloudCommand is "spawner dev sim-cloud": a simulated cloud shared over HTTP,
// so that several spawner processes (flavors with sim.url set) create their simulated
// instances in one place, and instances outlive a consumer that dies, as real ones do.
func devSimCloudCommand() *cobra.Command {
	var listen string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "sim-cloud",
		Short: "Serve a simulated cloud for sim flavors with sim.url (test tool)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			cloud := sim.NewCloud(sim.CloudOptions{Runner: fakerunner.SimRunner(logger), Logger: logger})
			defer cloud.Close()
			mux := http.NewServeMux()
			mux.Handle("/", cloud.Handler())
			mux.Handle("GET /_sim/stats", simStatsHandler(cloud))
			srv, err := httpserve.Listen("sim-cloud", listen, mux, logger)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8090", "address to serve the simulated cloud on")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "log every instance")
	return cmd
}

// simRunner is what simulated instances run: the fake runner, against the fake GitHub.
func simRunner(logger *slog.Logger) sim.RunnerFunc { return fakerunner.SimRunner(logger) }

// runSandbox is serve --sandbox.
func runSandbox(ctx context.Context, sf *sandboxFlags, stdout, stderr io.Writer) error {
	return sandbox.Run(ctx, sandbox.Options{
		Jobs: sf.jobs, Backend: sf.backend, ExitWhenDone: sf.exitWhenDone, Dir: sf.dir,
		Stdout: stdout, Stderr: stderr, LXDReachable: assemble.LXDReachable,
		Serve: func(ctx context.Context, cfg *config.File) error {
			return newApp(cfg, stderr).serve(ctx, map[string]bool{"webhook": true, "consumer": true, "janitor": true})
		},
	})
}

// simStats is what GET /_sim/stats answers: the counters a load test of a deployment
// checks capacity and leftovers with, as the cloud itself counted them.
type simStats struct {
	Created int `json:"created"`
	Deleted int `json:"deleted"`
	// Live and MaxLive count instances per flavor: now, and at most at one moment.
	Live    map[string]int `json:"live"`
	MaxLive map[string]int `json:"max_live"`
	// Instances are those that exist now, of every deployment.
	Instances []simInstance `json:"instances"`
}

type simInstance struct {
	Name   string `json:"name"`
	Flavor string `json:"flavor"`
	State  string `json:"state"`
}

func simStatsHandler(cloud *sim.Cloud) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		st := cloud.Stats()
		out := simStats{Created: st.Created, Deleted: st.Deleted, Live: st.Live, MaxLive: st.MaxLive, Instances: []simInstance{}}
		for _, in := range cloud.All() {
			out.Instances = append(out.Instances, simInstance{Name: in.Name, Flavor: in.Flavor, State: string(in.State)})
		}
		w.Header().Set("Content-Type", "application/json")
		// An encode error is a client gone away: nothing left to answer.
		_ = json.NewEncoder(w).Encode(out)
	}
}
