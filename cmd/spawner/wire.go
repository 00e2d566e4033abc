package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/backends/sim"
	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/consumer"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/github/githubtest/fakerunner"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// githubClient builds the GitHub API client from the github section.
func (a *app) githubClient() (*github.Client, error) {
	g := a.cfg.GitHub
	opts := github.Options{
		BaseURL:          g.URL,
		Path:             g.Path,
		RunnerGroup:      g.RunnerGroup,
		Token:            g.Token,
		AppID:            g.App.ID,
		InstallationID:   g.App.InstallationID,
		Timeout:          g.Timeout,
		MaxInFlight:      g.MaxInFlight,
		RatePerHour:      g.RatePerHour,
		ReserveThreshold: g.ReserveThreshold,
		Logger:           a.logger.With(logkey.Component, "github"),
		Registerer:       a.reg,
	}
	if g.App.PrivateKeyFile != "" {
		key, err := os.ReadFile(g.App.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("github.app.private_key_file: %w", err)
		}
		opts.AppPrivateKey = key
	}
	return github.New(opts)
}

// sharedDeps are built once per process and shared by its roles.
type sharedDeps struct {
	gh  *github.Client
	set *backendSet
}

// deps returns the process's GitHub client and backends, building them once. Closing
// the backends is the caller of the first deps' job (closeDeps).
func (a *app) deps(ctx context.Context) (*sharedDeps, error) {
	if a.shared != nil {
		return a.shared, nil
	}
	gh, err := a.githubClient()
	if err != nil {
		return nil, err
	}
	set, err := a.backends(ctx)
	if err != nil {
		return nil, err
	}
	a.shared = &sharedDeps{gh: gh, set: set}
	return a.shared, nil
}

// closeDeps closes what deps built.
func (a *app) closeDeps() {
	if a.shared != nil {
		a.shared.set.Close()
	}
}

// servedFlavors are the flavors this process's consumers serve (consumer.flavors, or
// all).
func (a *app) servedFlavors() []config.Flavor {
	if len(a.cfg.Consumer.Flavors) == 0 {
		return a.cfg.Flavors
	}
	var out []config.Flavor
	for _, f := range a.cfg.Flavors {
		if slices.Contains(a.cfg.Consumer.Flavors, f.Name) {
			out = append(out, f)
		}
	}
	return out
}

// backendSet holds the backends of every flavor and what must be closed with them.
type backendSet struct {
	byFlavor map[string]backends.Backend
	simCloud *sim.Cloud // the in-process simulated cloud, if any flavor uses one
}

func (b *backendSet) Close() {
	if b.simCloud != nil {
		b.simCloud.Close()
	}
}

// backends builds one backend per flavor.
func (a *app) backends(ctx context.Context) (*backendSet, error) {
	set := &backendSet{byFlavor: map[string]backends.Backend{}}
	for _, f := range a.cfg.Flavors {
		if f.Backend != config.BackendSim {
			continue
		}
		opts := sim.BackendOptions{DeploymentID: a.cfg.DeploymentID, Flavor: f.Name, BootTime: f.Sim.BootTime, BootJitter: f.Sim.BootJitter}
		if f.Sim.URL != "" {
			set.byFlavor[f.Name] = sim.NewRemote(f.Sim.URL, opts)
			continue
		}
		if set.simCloud == nil {
			set.simCloud = sim.NewCloud(sim.CloudOptions{Runner: fakerunner.SimRunner(a.logger), Logger: a.logger.With(logkey.Component, "sim")})
		}
		set.byFlavor[f.Name] = set.simCloud.Backend(opts)
	}
	lxdSet, err := newLXDBackends(a.cfg, a.logger)
	if err != nil {
		set.Close()
		return nil, err
	}
	osSet, err := newOpenStackBackends(ctx, a.cfg, a.logger)
	if err != nil {
		set.Close()
		return nil, err
	}
	for _, m := range []map[string]backends.Backend{lxdSet, osSet} {
		for k, v := range m {
			set.byFlavor[k] = v
		}
	}
	return set, nil
}

// runnerLabels are the labels a flavor's runners register with: the ignored labels
// (self-hosted, linux: what GitHub gives every self-hosted runner), the flavor's
// labels and its extra labels.
func (a *app) runnerLabels(f config.Flavor) []string {
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

func runnerSettings(r config.Runner) bootstrap.RunnerSettings {
	format := bootstrap.FormatCloudConfig
	if r.UserData == config.UserDataScript {
		format = bootstrap.FormatScript
	}
	return bootstrap.RunnerSettings{
		Command: r.Command, User: r.User, Env: r.Env, DockerhubMirror: r.DockerhubMirror,
		PreJobScript: r.PreJobScript, UserDataFormat: format, FetchBinary: r.FetchSpawnerBinary,
		PowerOff: r.PowerOff == nil || *r.PowerOff,
	}
}

// bootstrapURL is the endpoint's URL as instances reach it.
func (a *app) bootstrapURL(boundAddr string) (string, error) {
	if a.cfg.Bootstrap.URL != "" {
		return strings.TrimRight(a.cfg.Bootstrap.URL, "/"), nil
	}
	addr := boundAddr
	if addr == "" {
		addr = a.cfg.Bootstrap.Listen
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", fmt.Errorf("bootstrap.url is not set and bootstrap.listen %q gives no address", a.cfg.Bootstrap.Listen)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		// Simulated instances run in this process: loopback reaches the listener.
		host = "127.0.0.1"
	}
	scheme := "http://"
	if a.cfg.Bootstrap.TLS.CertFile != "" {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port), nil
}

// finisher connects the bootstrap endpoint (built first, it owns the listener) to the
// consumer (built once the URL is known).
type finisher struct {
	mu sync.Mutex
	c  *consumer.Consumer
}

func (f *finisher) set(c *consumer.Consumer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c = c
}

func (f *finisher) finished(name string) {
	f.mu.Lock()
	c := f.c
	f.mu.Unlock()
	if c != nil {
		c.Finished(name)
	}
}

// consumerOptions turns the config into the consumer's options for the served flavors.
func (a *app) consumerOptions(conn *queue.Conn, st *fleet.Fleet, gh consumer.GitHub, set *backendSet, bootstrapURL string) (consumer.Options, error) {
	c := a.cfg.Consumer
	opts := consumer.Options{
		Conn: conn, Fleet: st, GitHub: gh, DeploymentID: a.cfg.DeploymentID, BootstrapURL: bootstrapURL,
		Workers: c.Workers, VerifyAge: c.VerifyAge, MaxAttempts: c.MaxAttempts,
		BackoffInitial: c.BackoffInitial, BackoffMax: c.BackoffMax,
		CapacityWait: c.CapacityWait, CapacityRetry: c.CapacityRetry,
		MaxReplacements: c.MaxReplacements, CreateTimeout: c.CreateTimeout, AckWait: c.AckWait,
		Logger: a.logger.With(logkey.Component, "consumer"), Registerer: a.reg,
	}
	if c.MaxReplacements == 0 {
		opts.MaxReplacements = -1 // the consumer's 0 means "default"
	}
	if pin := a.cfg.Bootstrap.PinFile(); pin != "" {
		// Read once: every runner's bootstrap carries it (consumer.New checks it).
		data, err := os.ReadFile(pin)
		if err != nil {
			return opts, fmt.Errorf("bootstrap.tls: read the certificate instances pin: %w", err)
		}
		opts.BootstrapCA = data
	}
	for _, f := range a.servedFlavors() {
		b := set.byFlavor[f.Name]
		if b == nil {
			return opts, fmt.Errorf("flavor %s: no backend", f.Name)
		}
		opts.Flavors = append(opts.Flavors, consumer.Flavor{
			Name: f.Name, MaxRunners: f.MaxRunners, Backend: b, BackendName: f.Backend,
			Runner: runnerSettings(f.Runner), BootTimeout: f.Runner.BootTimeout,
		})
	}
	return opts, nil
}

func flavorNames(fs []config.Flavor) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Name
	}
	return out
}
