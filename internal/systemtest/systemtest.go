// Package systemtest assembles the whole spawner in one test process from its real
// parts, through the same assembler (internal/assemble) and config parser as the
// binary: the embedded NATS server, the fake GitHub (which sends real signed webhooks
// and plays the runners), the GitHub client, the webhook receiver, the bootstrap
// endpoint, the simulated backend and the consumers. Tests drive it through the fake
// GitHub and check the records, the fake's jobs and the simulated cloud.
//
// It is a test tool: only tests import it.
package systemtest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/backends/sim"
	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/consumer"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/assemble"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

// Secret is the webhook secret between the fake GitHub and the receiver.
const Secret = "systemtest-webhook-secret-0123456789"

// Deployment is the deployment id (runner-name prefix).
const Deployment = "spawner"

// FlavorSpec is one flavor of the system under test.
type FlavorSpec struct {
	Name       string
	Labels     []string
	MaxRunners int
	BootTime   time.Duration
	BootJitter time.Duration
	// MinIdle is the flavor's warm pool (0: none).
	MinIdle int
	// MinIdleSchedule is the flavor's min_idle_schedule in YAML flow style
	// ("[{start: '0 8 * * *', duration: 10h, min_idle: 4}]"; empty: none).
	MinIdleSchedule string
}

// Options shape the system.
type Options struct {
	Flavors       []FlavorSpec
	DefaultFlavor string
	Workers       int
	// GitHub tunes the fake.
	GitHub fakegithub.Options
	// Consumer edits the consumer options before it starts.
	Consumer func(*consumer.Options)
	// Logger for every part (nil: errors only, to the test log on failure).
	Logger *slog.Logger
}

// System is the running spawner.
type System struct {
	GH     *fakegithub.Server
	Client *github.Client
	NATS   *queuetest.Server
	Conn   *queue.Conn
	State  *queue.State // the janitor's bookkeeping (leases, meta)
	Fleet  *fleet.Fleet // the job and runner records
	Cloud  *sim.Cloud
	// Backends are the flavors' simulated backends, by flavor.
	Backends map[string]backends.Backend
	// RunnerLabels are the labels each flavor's runners register with.
	RunnerLabels map[string][]string
	Consumer     *consumer.Consumer
	Bootstrap    string // bootstrap base URL
	Webhook      string // webhook URL
	asm          *assemble.Assembly
	cancel       context.CancelFunc
	done         chan error
}

// Start assembles and runs the system; everything stops in t.Cleanup.
func Start(t testing.TB, opts Options) *System {
	t.Helper()
	logger := opts.Logger
	if logger == nil {
		level := slog.LevelError
		if os.Getenv("SYSTEMTEST_DEBUG") != "" {
			level = slog.LevelDebug
		}
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	}
	s := &System{done: make(chan error, 1)}
	s.NATS = queuetest.Start(t)
	s.Conn = s.NATS.Connect(t, queue.Options{Name: "systemtest"})
	st, err := s.Conn.State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s.State = st
	if s.Fleet, err = fleet.Open(t.Context(), s.Conn, logger); err != nil {
		t.Fatal(err)
	}

	ghOpts := opts.GitHub
	ghOpts.WebhookSecret = Secret
	if ghOpts.Logger == nil {
		ghOpts.Logger = logger.With("component", "fake-github")
	}
	if ghOpts.RunnerLostAfter == 0 {
		ghOpts.RunnerLostAfter = 3 * time.Second
	}
	s.GH = fakegithub.NewServer(ghOpts)
	t.Cleanup(s.GH.Close)
	s.Cloud = sim.NewCloud(sim.CloudOptions{Runner: fakerunner.SimRunner(logger), Logger: logger})

	// The webhook receiver and the bootstrap endpoint share one test server. Its
	// address is known before it serves: the consumer is built with the bootstrap URL,
	// then the endpoint with the consumer's Finished.
	hs := httptest.NewUnstartedServer(nil)
	t.Cleanup(hs.Close)
	s.Bootstrap = "http://" + hs.Listener.Addr().String()
	s.Webhook = s.Bootstrap + "/webhook"
	cfg, err := config.Parse([]byte(s.config(t, opts)), nil)
	if err != nil {
		t.Fatalf("systemtest config: %v", err)
	}
	s.asm = assemble.New(assemble.Options{
		Config: cfg, Logger: logger, SimCloud: s.Cloud, EditConsumer: opts.Consumer,
	})
	t.Cleanup(s.asm.Close)
	if s.Client, err = s.asm.GitHub(); err != nil {
		t.Fatal(err)
	}
	if s.Backends, err = s.asm.Backends(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.RunnerLabels = map[string][]string{}
	for _, f := range cfg.Flavors {
		s.RunnerLabels[f.Name] = s.asm.RunnerLabels(f)
	}
	wh, err := s.asm.Webhook(s.Conn)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.asm.Consumer(t.Context(), s.Conn, s.Fleet, s.Bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	s.Consumer = cons
	bs, err := s.asm.Bootstrap(s.Fleet, cons.Finished)
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Post("/webhook", wh.ServeHTTP)
	r.Mount(bootstrap.PathPrefix, bs)
	hs.Config.Handler = r
	hs.Start()
	s.GH.SetWebhookTarget(s.Webhook, Secret)

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- cons.Run(ctx) }()
	t.Cleanup(func() {
		s.Stop(t)
		s.Cloud.Close()
	})
	return s
}

// config is the system's config file: what an operator would write for it, with
// the short timings tests need. It goes through config.Parse and the assembler like
// any other.
func (s *System) config(t testing.TB, opts Options) string {
	workers := opts.Workers
	if workers == 0 {
		workers = 4
	}
	var b strings.Builder
	fmt.Fprintf(&b, `deployment_id: %s
state_dir: %s
nats: {url: %q}
github: {url: %q, path: octo-org, token: ghp_systemtest, rate_per_hour: 1000000, secondary_points_per_minute: 0}
webhook: {secrets: [%q]}
routing: {default_flavor: %q, ignored_labels: [self-hosted, linux], match: subset}
consumer: {workers: %d, capacity_retry: 500ms, capacity_wait: 2s, backoff_initial: 100ms, backoff_max: 1s, ack_wait: 10s}
bootstrap: {url: %q}
flavors:
`, Deployment, t.TempDir(), s.NATS.URL(), s.GH.URL(), Secret, opts.DefaultFlavor, workers, s.Bootstrap)
	for _, f := range opts.Flavors {
		schedule := ""
		if f.MinIdleSchedule != "" {
			schedule = ", min_idle_schedule: " + f.MinIdleSchedule
		}
		fmt.Fprintf(&b, "  - {name: %s, labels: [%s], max_runners: %d, min_idle: %d%s, backend: sim, sim: {boot_time: %s, boot_jitter: %s}, runner: {command: run.sh, boot_timeout: 1m}}\n",
			f.Name, strings.Join(f.Labels, ", "), f.MaxRunners, f.MinIdle, schedule, f.BootTime, f.BootJitter)
	}
	return b.String()
}

// Stop stops the consumer (idempotent) and fails the test if it returned an error.
func (s *System) Stop(t testing.TB) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("consumer.Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("consumer did not stop within 30s")
	}
}

// Eventually polls f until it returns nil or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// AllJobsDone waits until every fake job completed.
func (s *System) AllJobsDone(t testing.TB, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		var waiting []string
		for _, j := range s.GH.Jobs() {
			if j.Status != "completed" {
				waiting = append(waiting, fmt.Sprintf("%d:%s", j.ID, j.Status))
			}
		}
		if len(waiting) > 0 {
			return fmt.Errorf("%d jobs not completed: %s", len(waiting), strings.Join(first(waiting, 10), " "))
		}
		return nil
	})
}

// RecordsSettled waits until every job record is completed (the spawner has seen
// every completed event), after AllJobsDone.
func (s *System) RecordsSettled(t testing.TB, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		jobs, err := s.Fleet.Jobs(t.Context())
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if j.State != fleet.JobCompleted && !j.Gone {
				return fmt.Errorf("job %d record is %s", j.ID, j.State)
			}
		}
		return nil
	})
}

// OnlySparesLeft waits until every instance left is a spare (an idle runner whose
// job no longer needs it: the janitor reaps those after their idle TTL) and returns
// how many there are.
func (s *System) OnlySparesLeft(t testing.TB, timeout time.Duration) int {
	t.Helper()
	spares := 0
	Eventually(t, timeout, func() error {
		spares = 0
		for _, in := range s.Cloud.All() {
			r, err := s.Fleet.Runner(t.Context(), in.Name)
			if err != nil {
				return fmt.Errorf("instance %s: %v", in.Name, err)
			}
			j, err := s.Fleet.Job(t.Context(), r.ForJob)
			if err != nil {
				return fmt.Errorf("instance %s job %d: %v", in.Name, r.ForJob, err)
			}
			if !r.Untaken() || j.State == fleet.JobQueued {
				return fmt.Errorf("instance %s is not a spare: runner %s for job %d (%s)", in.Name, r.State, r.ForJob, j.State)
			}
			spares++
		}
		return nil
	})
	return spares
}

// NoInstancesLeft waits until the simulated cloud is empty.
func (s *System) NoInstancesLeft(t testing.TB, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		if all := s.Cloud.All(); len(all) > 0 {
			names := make([]string, 0, len(all))
			for _, in := range all {
				names = append(names, in.Name+":"+string(in.State))
			}
			return fmt.Errorf("%d instances left: %s", len(all), strings.Join(first(names, 10), " "))
		}
		return nil
	})
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "…")
	}
	return s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ http.Handler = chi.NewRouter()
