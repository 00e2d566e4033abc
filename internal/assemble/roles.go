package assemble

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/consumer"
	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/mint"
	"github.com/runner-spawner/runner-spawner/janitor"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/webhook"
)

// Router routes job labels to flavors as the routing section says.
func (a *Assembly) Router() *webhook.Router {
	flavors := make([]webhook.FlavorLabels, len(a.cfg.Flavors))
	for i, f := range a.cfg.Flavors {
		flavors[i] = webhook.FlavorLabels{Name: f.Name, Labels: f.Labels}
	}
	return webhook.NewRouter(flavors, a.cfg.Routing.DefaultFlavor, a.cfg.Routing.IgnoredLabels, a.cfg.Routing.Match)
}

// Webhook is the receiver, publishing through conn.
func (a *Assembly) Webhook(conn *queue.Conn) (*webhook.Handler, error) {
	w := a.cfg.Webhook
	return webhook.New(webhook.Options{
		Secrets: w.Secrets, InsecureSkipSignature: w.InsecureSkipSignature,
		MaxBodyBytes: int64(w.MaxBodyBytes), Router: a.Router(), Publisher: conn,
		PublishTimeout: a.cfg.NATS.PublishTimeout,
		Logger:         a.logger.With(logkey.Component, "webhook"), Registerer: a.opts.Registry,
	})
}

// BootstrapURL is the bootstrap endpoint's URL as instances reach it: bootstrap.url,
// or the address this process's listener was bound to (boundAddr), or the configured
// bootstrap.listen (a process that serves no endpoint, --bootstrap-listen off, tells
// its instances the one another process serves there).
func (a *Assembly) BootstrapURL(boundAddr string) (string, error) {
	if a.cfg.Bootstrap.URL != "" {
		return strings.TrimRight(a.cfg.Bootstrap.URL, "/"), nil
	}
	addr := boundAddr
	if addr == "" {
		addr = a.cfg.Bootstrap.Listen
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", fmt.Errorf("bootstrap.url is not set and bootstrap.listen %q gives no address: set bootstrap.url to the endpoint instances reach, or bootstrap.listen to host:port (--bootstrap-listen off keeps it for the URL)", a.cfg.Bootstrap.Listen)
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

// Consumer is the consumer of the served flavors; its instances call the bootstrap
// endpoint at bootstrapURL.
func (a *Assembly) Consumer(ctx context.Context, conn *queue.Conn, fl *fleet.Fleet, bootstrapURL string) (*consumer.Consumer, error) {
	gh, err := a.GitHub()
	if err != nil {
		return nil, err
	}
	set, err := a.Backends(ctx)
	if err != nil {
		return nil, err
	}
	c := a.cfg.Consumer
	opts := consumer.Options{
		Conn: conn, Fleet: fl, GitHub: gh, DeploymentID: a.cfg.DeploymentID, BootstrapURL: bootstrapURL,
		Workers: c.Workers, VerifyAge: c.VerifyAge, MaxAttempts: c.MaxAttempts,
		BackoffInitial: c.BackoffInitial, BackoffMax: c.BackoffMax,
		CapacityWait: c.CapacityWait, CapacityRetry: c.CapacityRetry,
		MaxReplacements: c.MaxReplacements, CreateTimeout: c.CreateTimeout, AckWait: c.AckWait,
		StopGrace: ConsumerStopGrace(a.cfg.ShutdownTimeout),
		Logger:    a.logger.With(logkey.Component, "consumer"), Registerer: a.opts.Registry,
	}
	if c.MaxReplacements == 0 {
		opts.MaxReplacements = -1 // the consumer's 0 means "default"
	}
	if pin := a.cfg.Bootstrap.PinFile(); pin != "" {
		// Read once: every runner's bootstrap carries it (consumer.New checks it).
		data, err := os.ReadFile(pin)
		if err != nil {
			return nil, fmt.Errorf("bootstrap.tls: read the certificate instances pin: %w", err)
		}
		opts.BootstrapCA = data
	}
	for _, f := range a.ServedFlavors() {
		b := set[f.Name]
		if b == nil {
			return nil, fmt.Errorf("flavor %s: no backend", f.Name)
		}
		pool, err := f.PoolSchedule()
		if err != nil {
			return nil, fmt.Errorf("flavor %s: min_idle_schedule: %w", f.Name, err)
		}
		opts.Flavors = append(opts.Flavors, consumer.Flavor{
			Name: f.Name, MaxRunners: f.MaxRunners, MinIdle: pool, Backend: b, BackendName: f.Backend,
			Runner: a.withChecks(f, runnerSettings(f.Runner)), BootTimeout: f.Runner.BootTimeout,
		})
	}
	if a.opts.EditConsumer != nil {
		a.opts.EditConsumer(&opts)
	}
	return consumer.New(opts)
}

// ConsumerStopGrace is the part of shutdown_timeout a stopping consumer spends
// finishing its work: three fifths, so that the process still has time to close its
// listeners and connections, and cmd/spawner's watchdog (at shutdown_timeout) stays
// a last resort.
func ConsumerStopGrace(shutdownTimeout time.Duration) time.Duration {
	return shutdownTimeout * 3 / 5
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

// Bootstrap is the bootstrap endpoint's routes (mounted at bootstrap.PathPrefix);
// finished is told when a runner's job finished (the consumer's Finished), so its
// instance goes at once.
func (a *Assembly) Bootstrap(fl *fleet.Fleet, finished func(runnerName string)) (http.Handler, error) {
	gh, err := a.GitHub()
	if err != nil {
		return nil, err
	}
	labels := map[string][]string{}
	for _, f := range a.cfg.Flavors {
		labels[f.Name] = a.RunnerLabels(f)
	}
	opts := bootstrap.Options{
		Fleet: fl, Minter: mint.Minter{Client: gh}, Finished: finished, Policy: a.policyMinter(),
		Labels:     func(f string) ([]string, bool) { l, ok := labels[f]; return l, ok },
		Logger:     a.logger.With(logkey.Component, "bootstrap"),
		Registerer: a.opts.Registry,
	}
	if a.cfg.Bootstrap.ServeBinary {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bootstrap.serve_binary: %w", err)
		}
		opts.SpawnerBinary = exe
	}
	return bootstrap.NewServer(opts).Routes(), nil
}

// Janitor is a janitor over every flavor, with conn for its lease and commands.
func (a *Assembly) Janitor(ctx context.Context, conn *queue.Conn, id string) (*janitor.Janitor, error) {
	opts, err := a.JanitorOptions(ctx, conn, id)
	if err != nil {
		return nil, err
	}
	return janitor.New(opts)
}

// JanitorOptions are the janitor's options (id "": the janitor's default, host and
// pid).
func (a *Assembly) JanitorOptions(ctx context.Context, conn *queue.Conn, id string) (janitor.Options, error) {
	st, err := conn.State(ctx)
	if err != nil {
		return janitor.Options{}, err
	}
	fl, err := a.Fleet(ctx, conn)
	if err != nil {
		return janitor.Options{}, err
	}
	gh, err := a.GitHub()
	if err != nil {
		return janitor.Options{}, err
	}
	set, err := a.Backends(ctx)
	if err != nil {
		return janitor.Options{}, err
	}
	jc := a.cfg.Janitor
	opts := janitor.Options{
		Conn: conn, State: st, Fleet: fl, GitHub: gh, DeploymentID: a.cfg.DeploymentID, ID: id,
		Interval: jc.Interval, MaxDeletesPerPass: jc.MaxDeletesPerPass, MaxGitHubCallsPerPass: jc.MaxGitHubCallsPerPass,
		FlushWait: jc.FlushWait, FlushWaitAttempts: jc.FlushWaitAttempts, ProtectedRunners: jc.ProtectedRunners,
		SweepInterval: jc.SweepInterval, SweepLookback: jc.SweepLookback,
		PollRepos: jc.PollRepos, PollInterval: jc.PollInterval,
		Logger: a.logger, Registerer: a.opts.Registry, // the janitor adds its own component key
	}
	for _, f := range a.cfg.Flavors {
		pool, err := f.PoolSchedule()
		if err != nil {
			return janitor.Options{}, fmt.Errorf("flavor %s: min_idle_schedule: %w", f.Name, err)
		}
		opts.Flavors = append(opts.Flavors, janitor.Flavor{
			Name: f.Name, Backend: set[f.Name], BackendName: f.Backend,
			BootTimeout: f.Runner.BootTimeout, IdleTTL: f.Runner.IdleTTL, MinIdle: pool,
		})
	}
	if h := a.cfg.GitHub.Hook; h.Kind != "" {
		org, _, _ := strings.Cut(a.cfg.GitHub.Path, "/")
		opts.Hook = &github.HookRef{Kind: h.Kind, Repo: h.Repo, Org: org, HookID: h.ID}
	}
	if len(jc.PollRepos) > 0 {
		router := a.Router()
		opts.Route = func(labels []string) (string, bool) {
			f, _, reason := router.Route(labels)
			return f, reason == ""
		}
	}
	if a.opts.EditJanitor != nil {
		a.opts.EditJanitor(&opts)
	}
	return opts, nil
}

// Admin is the admin endpoint's handler (mounted at /admin), or an error when no
// admin.token is set.
func (a *Assembly) Admin(ctx context.Context, conn *queue.Conn) (http.Handler, error) {
	st, err := conn.State(ctx)
	if err != nil {
		return nil, err
	}
	fl, err := a.Fleet(ctx, conn)
	if err != nil {
		return nil, err
	}
	h, err := control.AdminHandler(control.AdminOptions{
		Conn: conn, State: st, Fleet: fl, Token: a.cfg.Admin.Token, Flavors: a.cfg.FlavorNames(),
		Logger: a.logger.With(logkey.Component, "admin"),
	})
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	return h, nil
}
