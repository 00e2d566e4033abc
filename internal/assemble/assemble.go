// Package assemble builds the spawner's components from the config: the NATS
// connection and embedded server, the GitHub client, one backend per flavor, the
// webhook receiver, the consumer, the bootstrap endpoint, the janitor and the admin
// endpoint. It is the one place where config meets the packages' Options, used by
// every command of cmd/spawner and by internal/systemtest, so that what the tests
// assemble is what runs.
//
// It builds; it does not listen or run: cmd/spawner binds the listeners and runs the
// parts. It must not import dev/ (the test tools reach it only through Options).
package assemble

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/backends/sim"
	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/consumer"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/janitor"
	"github.com/runner-spawner/runner-spawner/queue"
)

// Options shape an Assembly.
type Options struct {
	// Config is the validated config file.
	Config *config.File
	Logger *slog.Logger
	// Registry receives every component's metrics.
	Registry *prometheus.Registry
	// SimRunner plays the runner in simulated instances (flavors with backend sim):
	// the dev tree's fake runner. nil: they boot, fetch their config and stop.
	SimRunner sim.RunnerFunc
	// SimCloud, when set, is the simulated cloud of the sim flavors whose sim.url is
	// empty (a test shares its own); nil: one is made in-process.
	SimCloud *sim.Cloud
	// EditConsumer and EditJanitor adjust the built options last (tests set knobs the
	// config does not have, such as a janitor flavor's shorter boot timeout).
	EditConsumer func(*consumer.Options)
	EditJanitor  func(*janitor.Options)
}

// Assembly builds the components of one process. What several roles share (the
// GitHub client, the backends, the in-process simulated cloud) is built once, on
// first use; Close closes it.
type Assembly struct {
	opts   Options
	cfg    *config.File
	logger *slog.Logger

	mu        sync.Mutex
	gh        *github.Client
	backends  map[string]backends.Backend
	ownsCloud *sim.Cloud // the simulated cloud made here, closed by Close
	stops     *prometheus.CounterVec
}

// New starts an assembly; it builds nothing yet.
func New(opts Options) *Assembly {
	if opts.Config == nil {
		panic("assemble: New needs a Config")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	return &Assembly{opts: opts, cfg: opts.Config, logger: opts.Logger}
}

// Config is the config the assembly builds from.
func (a *Assembly) Config() *config.File { return a.cfg }

// Logger is the process logger.
func (a *Assembly) Logger() *slog.Logger { return a.logger }

// Registry is where the components register their metrics.
func (a *Assembly) Registry() *prometheus.Registry { return a.opts.Registry }

// Close closes what the assembly built and shares.
func (a *Assembly) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ownsCloud != nil {
		a.ownsCloud.Close()
		a.ownsCloud = nil
	}
}

// GitHub is the GitHub client of the github section, built once.
func (a *Assembly) GitHub() (*github.Client, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gh != nil {
		return a.gh, nil
	}
	g := a.cfg.GitHub
	opts := github.Options{
		BaseURL: g.URL, Path: g.Path, RunnerGroup: g.RunnerGroup, Token: g.Token,
		AppID: g.App.ID, InstallationID: g.App.InstallationID, Timeout: g.Timeout,
		MaxInFlight: g.MaxInFlight, RatePerHour: g.RatePerHour, ReserveThreshold: g.ReserveThreshold,
		SecondaryPointsPerMinute: g.SecondaryPointsPerMinute, MaxMutatingInFlight: g.MaxMutatingInFlight,
		Logger: a.logger.With(logkey.Component, "github"), Registerer: a.opts.Registry,
	}
	if g.SecondaryPointsPerMinute == 0 {
		// The file's 0 is "off"; the client's zero value is its default.
		opts.SecondaryPointsPerMinute = github.SecondaryPacingOff
	}
	if g.App.PrivateKeyFile != "" {
		key, err := os.ReadFile(g.App.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("github.app.private_key_file: %w", err)
		}
		opts.AppPrivateKey = key
	}
	gh, err := github.New(opts)
	if err != nil {
		return nil, err
	}
	a.gh = gh
	return gh, nil
}

// Backends is one backend per flavor, keyed by flavor name, built once.
func (a *Assembly) Backends(ctx context.Context) (map[string]backends.Backend, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.backends != nil {
		return a.backends, nil
	}
	out := map[string]backends.Backend{}
	for _, f := range a.cfg.Flavors {
		if f.Backend != config.BackendSim {
			continue
		}
		opts := sim.BackendOptions{DeploymentID: a.cfg.DeploymentID, Flavor: f.Name, BootTime: f.Sim.BootTime, BootJitter: f.Sim.BootJitter}
		if f.Sim.URL != "" {
			out[f.Name] = sim.NewRemote(f.Sim.URL, opts)
			continue
		}
		out[f.Name] = a.simCloudLocked().Backend(opts)
	}
	lxdSet, err := newLXDBackends(a.cfg, a.logger)
	if err != nil {
		return nil, err
	}
	osSet, err := newOpenStackBackends(ctx, a.cfg, a.logger)
	if err != nil {
		return nil, err
	}
	for _, m := range []map[string]backends.Backend{lxdSet, osSet} {
		for k, v := range m {
			out[k] = v
		}
	}
	a.backends = out
	return out, nil
}

func (a *Assembly) simCloudLocked() *sim.Cloud {
	if a.opts.SimCloud != nil {
		return a.opts.SimCloud
	}
	if a.ownsCloud == nil {
		a.ownsCloud = sim.NewCloud(sim.CloudOptions{Runner: a.opts.SimRunner, Logger: a.logger.With(logkey.Component, "sim")})
	}
	return a.ownsCloud
}

// Fleet opens the job and runner records over conn; the outcomes its verbs settle
// count in spawner_runner_stops_total.
func (a *Assembly) Fleet(ctx context.Context, conn *queue.Conn) (*fleet.Fleet, error) {
	fl, err := fleet.Open(ctx, conn, a.logger)
	if err != nil {
		return nil, err
	}
	return fl.WithStops(a.runnerStops()), nil
}

// ServedFlavors are the flavors this process's consumers serve (consumer.flavors, or
// all).
func (a *Assembly) ServedFlavors() []config.Flavor {
	if len(a.cfg.Consumer.Flavors) == 0 {
		return a.cfg.Flavors
	}
	return slices.DeleteFunc(slices.Clone(a.cfg.Flavors), func(f config.Flavor) bool {
		return !slices.Contains(a.cfg.Consumer.Flavors, f.Name)
	})
}

// RunnerLabels are the labels a flavor's runners register with: the ignored labels
// (self-hosted, linux: what GitHub gives every self-hosted runner), the flavor's
// labels and its extra labels.
func (a *Assembly) RunnerLabels(f config.Flavor) []string {
	var out []string
	for _, group := range [][]string{a.cfg.Routing.IgnoredLabels, f.Labels, f.Runner.ExtraLabels} {
		for _, l := range group {
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	return out
}
