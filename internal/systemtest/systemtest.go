// Package systemtest assembles the whole spawner in one test process from its real
// parts: the embedded NATS server, the fake GitHub (which sends real signed webhooks
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
	"github.com/runner-spawner/runner-spawner/consumer"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/github/githubtest"
	"github.com/runner-spawner/runner-spawner/github/githubtest/fakerunner"
	"github.com/runner-spawner/runner-spawner/internal/mint"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
	"github.com/runner-spawner/runner-spawner/webhook"
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
}

// Options shape the system.
type Options struct {
	Flavors       []FlavorSpec
	DefaultFlavor string
	Workers       int
	// GitHub tunes the fake.
	GitHub githubtest.Options
	// Consumer edits the consumer options before it starts.
	Consumer func(*consumer.Options)
	// Logger for every part (nil: errors only, to the test log on failure).
	Logger *slog.Logger
}

// System is the running spawner.
type System struct {
	GH     *githubtest.Server
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
	s := &System{done: make(chan error, 1), Backends: map[string]backends.Backend{}}
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
	s.GH = githubtest.NewServer(ghOpts)
	t.Cleanup(s.GH.Close)
	s.Client, err = github.New(github.Options{BaseURL: s.GH.URL(), Path: "octo-org", Token: secret.New("ghp_systemtest"), RatePerHour: 1_000_000, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}

	s.Cloud = sim.NewCloud(sim.CloudOptions{Runner: fakerunner.SimRunner(logger), Logger: logger})

	var flavors []consumer.Flavor
	var rows []webhook.FlavorLabels
	labels := map[string][]string{}
	for _, f := range opts.Flavors {
		rows = append(rows, webhook.FlavorLabels{Name: f.Name, Labels: f.Labels})
		labels[f.Name] = append([]string{"self-hosted", "linux"}, f.Labels...)
		b := s.Cloud.Backend(sim.BackendOptions{DeploymentID: Deployment, Flavor: f.Name, BootTime: f.BootTime, BootJitter: f.BootJitter})
		s.Backends[f.Name] = b
		flavors = append(flavors, consumer.Flavor{
			Name: f.Name, MaxRunners: f.MaxRunners, BackendName: "sim", BootTimeout: time.Minute, Backend: b,
			Runner: bootstrap.RunnerSettings{Command: "run.sh", PowerOff: true},
		})
	}
	s.RunnerLabels = labels

	// The HTTP side: webhook receiver and bootstrap endpoint on one test server.
	wh, err := webhook.New(webhook.Options{
		Secrets: []secret.Value{secret.New(Secret)}, Publisher: s.Conn, Logger: logger,
		Router: webhook.NewRouter(rows, opts.DefaultFlavor, []string{"self-hosted", "linux"}, webhook.MatchSubset),
	})
	if err != nil {
		t.Fatal(err)
	}
	var cons *consumer.Consumer
	bs := bootstrap.NewServer(bootstrap.Options{
		Fleet: s.Fleet, Minter: mint.Minter{Client: s.Client}, Logger: logger,
		Labels:   func(f string) ([]string, bool) { l, ok := labels[f]; return l, ok },
		Finished: func(name string) { cons.Finished(name) },
	})
	r := chi.NewRouter()
	r.Post("/webhook", wh.ServeHTTP)
	r.Mount(bootstrap.PathPrefix, bs.Routes())
	hs := httptest.NewServer(r)
	t.Cleanup(hs.Close)
	s.Webhook, s.Bootstrap = hs.URL+"/webhook", hs.URL
	s.GH.SetWebhookTarget(s.Webhook, Secret)

	copts := consumer.Options{
		Conn: s.Conn, Fleet: s.Fleet, GitHub: s.Client, Flavors: flavors, DeploymentID: Deployment,
		BootstrapURL: s.Bootstrap, Workers: opts.Workers, Logger: logger,
		CapacityRetry: 500 * time.Millisecond, CapacityWait: 2 * time.Second,
		BackoffInitial: 100 * time.Millisecond, BackoffMax: time.Second, AckWait: 10 * time.Second,
	}
	if opts.Consumer != nil {
		opts.Consumer(&copts)
	}
	cons, err = consumer.New(copts)
	if err != nil {
		t.Fatal(err)
	}
	s.Consumer = cons
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- cons.Run(ctx) }()
	t.Cleanup(func() {
		s.Stop(t)
		s.Cloud.Close()
	})
	return s
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
