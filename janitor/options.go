package janitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/poolschedule"
	"github.com/runner-spawner/runner-spawner/queue"
)

// GitHub is what the janitor asks GitHub. *github.Client satisfies it.
type GitHub interface {
	// ListRunners lists the registrations whose names start with prefix.
	ListRunners(ctx context.Context, prefix string) ([]github.Runner, error)
	// GetRunner reads one registration; github.ErrNotFound when it is gone.
	GetRunner(ctx context.Context, id int64) (github.Runner, error)
	// DeleteRunner removes a registration: nil when gone (also already),
	// github.ErrRunnerBusy when it runs a job.
	DeleteRunner(ctx context.Context, id int64) error
	ListDeliveries(ctx context.Context, hook github.HookRef, since time.Time) ([]github.Delivery, error)
	Redeliver(ctx context.Context, hook github.HookRef, deliveryID int64) error
	ListQueuedJobs(ctx context.Context, repo string) ([]github.Job, error)
}

// rateLimiter is implemented by clients that know their remaining budget
// (*github.Client); the poller slows down when it runs low.
type rateLimiter interface {
	RateLimit() github.RateLimitInfo
}

// Flavor is one flavor the janitor looks after.
type Flavor struct {
	Name        string
	Backend     backends.Backend
	BackendName string
	// BootTimeout: a runner not up this long after its instance was created is
	// deleted (default 10 min).
	BootTimeout time.Duration
	// IdleTTL: a spare runner (or one whose job no longer waits) idle this long is
	// deleted (default 5 min).
	IdleTTL time.Duration
	// MinIdle is the flavor's warm pool size over time: that many idle pool runners
	// are kept past IdleTTL; only those beyond it are reaped (a pool made smaller,
	// or a min_idle_schedule window closed).
	MinIdle poolschedule.Schedule
}

// Options configures a Janitor. Zero values take the defaults noted.
type Options struct {
	Conn *queue.Conn
	// State is the janitor's own bookkeeping (its lease, the status documents, the
	// sweeper's memory).
	State *queue.State
	// Fleet is the job and runner records; the janitor uses it with its own clock.
	Fleet   *fleet.Fleet
	GitHub  GitHub
	Flavors []Flavor
	// DeploymentID is the runner-name prefix (names are "<id>-<flavor>-<job>-<n>").
	DeploymentID string
	// ID names this janitor in the lease (default hostname-pid); unique per process.
	ID string
	// Interval between reconcile passes (default 60 s).
	Interval time.Duration
	// MaxDeletesPerPass and MaxGitHubCallsPerPass bound one pass (defaults 50, 100);
	// what is left waits for the next pass.
	MaxDeletesPerPass     int
	MaxGitHubCallsPerPass int
	// FlushWait × FlushWaitAttempts bounds each wait of a flush (defaults 30 s × 5):
	// for creates in flight, and for runners in their pre-job phase.
	FlushWait         time.Duration
	FlushWaitAttempts int
	// ProtectedRunners are runner (instance) names never deleted.
	ProtectedRunners []string
	// Hook is the webhook whose failed deliveries are redelivered (nil: no sweeper).
	Hook *github.HookRef
	// SweepInterval between sweeps (default 5 min); SweepLookback how far back to
	// look (default 1 h, at most 72 h: GitHub keeps deliveries 3 days).
	SweepInterval time.Duration
	SweepLookback time.Duration
	// PollRepos ("owner/name") are polled for queued jobs we never heard of, every
	// PollInterval (default 5 min; four times longer while the GitHub budget is
	// below a fifth). Jobs younger than PollMinAge (default 1 min) are left to their
	// webhook. Route maps a job's labels to a flavor; required with PollRepos.
	PollRepos    []string
	PollInterval time.Duration
	PollMinAge   time.Duration
	Route        func(labels []string) (flavor string, ok bool)
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
	Now          func() time.Time

	// hooks are test seams (export_test.go).
	hooks testHooks
}

// testHooks let tests observe and interleave with the janitor; nil funcs do nothing.
type testHooks struct {
	// activeChanged is called when this janitor starts and after it stopped acting.
	activeChanged func(active bool)
	// beforeFlushRemove runs after a flush chose its runners, before it removes them.
	beforeFlushRemove func()
}

// Defaults.
const (
	DefaultInterval              = time.Minute
	DefaultMaxDeletesPerPass     = 50
	DefaultMaxGitHubCallsPerPass = 100
	DefaultFlushWait             = 30 * time.Second
	DefaultFlushWaitAttempts     = 5
	DefaultSweepInterval         = 5 * time.Minute
	DefaultSweepLookback         = time.Hour
	MaxSweepLookback             = 72 * time.Hour
	DefaultPollInterval          = 5 * time.Minute
	DefaultPollMinAge            = time.Minute
	DefaultBootTimeout           = 10 * time.Minute
	DefaultIdleTTL               = 5 * time.Minute
)

// Validate returns every problem at once, keyed like the config file's janitor
// section. The nil dependencies (Conn, State, GitHub) are wiring mistakes New panics
// on, not listed here.
func (o *Options) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if o.DeploymentID == "" {
		add("deployment_id", "must not be empty")
	}
	if len(o.Flavors) == 0 {
		add("flavors", "at least one flavor is needed")
	}
	seen := map[string]bool{}
	for i, f := range o.Flavors {
		key := fmt.Sprintf("flavors[%d]", i)
		switch {
		case f.Name == "":
			add(key+".name", "must not be empty")
		case seen[f.Name]:
			add(key+".name", "duplicate flavor %q", f.Name)
		}
		seen[f.Name] = true
		if f.Backend == nil {
			add(key+".backend", "flavor %q has no backend", f.Name)
		}
		nonNegative(add, key+".boot_timeout", f.BootTimeout)
		nonNegative(add, key+".idle_ttl", f.IdleTTL)
	}
	nonNegative(add, "interval", o.Interval)
	nonNegative(add, "flush_wait", o.FlushWait)
	nonNegative(add, "sweep_interval", o.SweepInterval)
	nonNegative(add, "poll_interval", o.PollInterval)
	nonNegative(add, "poll_min_age", o.PollMinAge)
	if o.MaxDeletesPerPass < 0 {
		add("max_deletes_per_pass", "must not be negative (got %d)", o.MaxDeletesPerPass)
	}
	if o.MaxGitHubCallsPerPass < 0 {
		add("max_github_calls_per_pass", "must not be negative (got %d)", o.MaxGitHubCallsPerPass)
	}
	if o.FlushWaitAttempts < 0 {
		add("flush_wait_attempts", "must not be negative (got %d)", o.FlushWaitAttempts)
	}
	if o.SweepLookback < 0 || o.SweepLookback > MaxSweepLookback {
		add("sweep_lookback", "must be between 0 and 72h, GitHub's delivery retention (got %s)", o.SweepLookback)
	}
	if h := o.Hook; h != nil {
		switch h.Kind {
		case github.HookRepo, github.HookOrg:
			if h.HookID <= 0 {
				add("hook.id", "a %s hook needs its id", h.Kind)
			}
		case github.HookApp:
		default:
			add("hook.kind", "must be repo, org or app (got %q)", h.Kind)
		}
	}
	for i, r := range o.PollRepos {
		if owner, name, ok := strings.Cut(r, "/"); !ok || owner == "" || name == "" || strings.Contains(name, "/") {
			add(fmt.Sprintf("poll_repos[%d]", i), "must be owner/name (got %q)", r)
		}
	}
	if len(o.PollRepos) > 0 && o.Route == nil {
		add("route", "polling repositories needs a label router")
	}
	return errors.Join(errs...)
}

func nonNegative(add func(string, string, ...any), key string, d time.Duration) {
	if d < 0 {
		add(key, "must not be negative (got %s)", d)
	}
}

func (o *Options) defaults() {
	if o.ID == "" {
		host, _ := os.Hostname()
		o.ID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.MaxDeletesPerPass == 0 {
		o.MaxDeletesPerPass = DefaultMaxDeletesPerPass
	}
	if o.MaxGitHubCallsPerPass == 0 {
		o.MaxGitHubCallsPerPass = DefaultMaxGitHubCallsPerPass
	}
	if o.FlushWait == 0 {
		o.FlushWait = DefaultFlushWait
	}
	if o.FlushWaitAttempts == 0 {
		o.FlushWaitAttempts = DefaultFlushWaitAttempts
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.SweepLookback == 0 {
		o.SweepLookback = DefaultSweepLookback
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.PollMinAge == 0 {
		o.PollMinAge = DefaultPollMinAge
	}
	for i := range o.Flavors {
		f := &o.Flavors[i]
		if f.BootTimeout == 0 {
			f.BootTimeout = DefaultBootTimeout
		}
		if f.IdleTTL == 0 {
			f.IdleTTL = DefaultIdleTTL
		}
		if f.BackendName == "" {
			f.BackendName = "unknown"
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}
