package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/consumer"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/httpserve"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/mint"
	"github.com/runner-spawner/runner-spawner/queue"
)

// roleFlags override, per process, the listeners of a config file shared by many.
type roleFlags struct {
	bootstrapListen string
	metricsListen   string
	webhookListen   string
}

func (r *roleFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.bootstrapListen, "bootstrap-listen", "", "serve the bootstrap endpoint on this address (overrides bootstrap.listen; \"off\" serves none)")
	cmd.Flags().StringVar(&r.metricsListen, "metrics-listen", "", "serve /healthz, /readyz and /metrics on this address (overrides metrics.listen)")
	cmd.Flags().StringVar(&r.webhookListen, "webhook-listen", "", "serve the webhook receiver on this address (overrides webhook.listen)")
}

func (r *roleFlags) apply(a *app) {
	switch r.bootstrapListen {
	case "":
	case "off":
		a.cfg.Bootstrap.Listen = ""
	default:
		a.cfg.Bootstrap.Listen = r.bootstrapListen
	}
	if r.metricsListen != "" {
		a.cfg.Metrics.Listen = r.metricsListen
	}
	if r.webhookListen != "" {
		a.cfg.Webhook.Listen = r.webhookListen
	}
}

func consumerCommand(g *globalFlags) *cobra.Command {
	return roleCommand(g, "consumer", "Run consumer workers and the bootstrap endpoint (run as many replicas as you like)",
		func(ctx context.Context, a *app, conn *queue.Conn) ([]runFunc, func(), error) {
			parts, closeParts, err := a.consumerParts(ctx, conn)
			if err == nil {
				a.logger.Info("consumer running", "flavors", flavorNames(a.servedFlavors()), "workers", a.cfg.Consumer.Workers, "bootstrap", a.cfg.Bootstrap.Listen)
			}
			return parts, closeParts, err
		})
}

// roleCommand is a role that connects to an existing NATS (consumer, janitor): it
// builds the role's parts, adds the metrics listener and the admin endpoint when
// configured, and runs them until a signal.
func roleCommand(g *globalFlags, name, short string, build func(ctx context.Context, a *app, conn *queue.Conn) ([]runFunc, func(), error)) *cobra.Command {
	var rf roleFlags
	cmd := &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			need, err := config.PartsFor(name)
			if err != nil {
				return err
			}
			a, err := loadApp(g, cmd.ErrOrStderr(), need)
			if err != nil {
				return err
			}
			rf.apply(a)
			ctx := cmd.Context()
			conn, err := a.connect(ctx, name, nil, 2*time.Minute)
			if err != nil {
				return err
			}
			defer conn.Close()
			parts, closeParts, err := build(ctx, a, conn)
			if err != nil {
				return err
			}
			defer closeParts()
			extra, err := a.opsParts(conn, a.metricsListener(false))
			if err != nil {
				return err
			}
			err = runAll(ctx, append(parts, extra...)...)
			a.logger.Info(name+" stopped", logkey.Error, err)
			return err
		},
	}
	rf.register(cmd)
	return cmd
}

// opsParts are the metrics listener (when wanted) and the admin endpoint (when
// admin.listen is set).
func (a *app) opsParts(conn *queue.Conn, metrics bool) ([]runFunc, error) {
	var parts []runFunc
	if metrics {
		ops, err := a.opsServer(conn)
		if err != nil {
			return nil, err
		}
		parts = append(parts, ops.Run)
	}
	admin, err := a.adminServer(conn)
	if err != nil {
		return nil, err
	}
	if admin != nil {
		parts = append(parts, admin.Run)
	}
	return parts, nil
}

// consumerParts builds the bootstrap endpoint and the consumer of this process.
func (a *app) consumerParts(ctx context.Context, conn *queue.Conn) ([]runFunc, func(), error) {
	st, err := fleet.Open(ctx, conn, a.logger)
	if err != nil {
		return nil, nil, err
	}
	d, err := a.deps(ctx)
	if err != nil {
		return nil, nil, err
	}
	gh, set := d.gh, d.set
	var parts []runFunc
	fin := &finisher{}
	bound := ""
	if a.cfg.Bootstrap.Listen != "" {
		srv, err := a.bootstrapServer(st, mint.Minter{Client: gh}, fin.finished)
		if err != nil {
			return nil, nil, err
		}
		bound = srv.Addr()
		parts = append(parts, srv.Run)
	}
	url, err := a.bootstrapURL(bound)
	if err != nil {
		return nil, nil, err
	}
	opts, err := a.consumerOptions(conn, st, gh, set, url)
	if err != nil {
		return nil, nil, err
	}
	cons, err := consumer.New(opts)
	if err != nil {
		return nil, nil, err
	}
	fin.set(cons)
	parts = append(parts, cons.Run)
	return parts, a.closeDeps, nil
}

// bootstrapServer serves the bootstrap endpoint on bootstrap.listen.
func (a *app) bootstrapServer(st *fleet.Fleet, minter bootstrap.Minter, finished func(string)) (*httpserve.Server, error) {
	labels := map[string][]string{}
	for _, f := range a.cfg.Flavors {
		labels[f.Name] = a.runnerLabels(f)
	}
	opts := bootstrap.Options{
		Fleet: st, Minter: minter, Finished: finished,
		Labels:     func(f string) ([]string, bool) { l, ok := labels[f]; return l, ok },
		Logger:     a.logger.With(logkey.Component, "bootstrap"),
		Registerer: a.reg,
	}
	if a.cfg.Bootstrap.ServeBinary {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bootstrap.serve_binary: %w", err)
		}
		opts.SpawnerBinary = exe
	}
	bs := bootstrap.NewServer(opts)
	r := chi.NewRouter()
	r.Mount(bootstrap.PathPrefix, bs.Routes())
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	logger := a.logger.With(logkey.Component, "http")
	if t := a.cfg.Bootstrap.TLS; t.CertFile != "" {
		return httpserve.ListenTLS("bootstrap", a.cfg.Bootstrap.Listen, r, t.CertFile, t.KeyFile, logger)
	}
	return httpserve.Listen("bootstrap", a.cfg.Bootstrap.Listen, r, logger)
}

// opsServer serves /healthz, /readyz and /metrics on metrics.listen.
func (a *app) opsServer(conn *queue.Conn) (*httpserve.Server, error) {
	r := chi.NewRouter()
	httpserve.MountOps(r, conn.Ready, a.reg)
	return httpserve.Listen("metrics", a.cfg.Metrics.Listen, r, a.logger.With(logkey.Component, "http"))
}
