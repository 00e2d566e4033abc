package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/internal/httpserve"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// The parts a process runs, built from its assembly: listeners, the consumer with
// its bootstrap endpoint, the janitor. The role commands (serve, webhook, consumer,
// janitor) compose them.

// runFunc is a long-lived part: it returns once ctx is cancelled and its goroutines
// have exited.
type runFunc func(ctx context.Context) error

// runAll runs parts until ctx is cancelled or one fails; then it cancels the rest and
// waits for them, but only as long as the stop's bound (shutdown_timeout) allows: a
// part still stopping then is left to the process's exit, and what it had not done
// to the janitor, logged once with a count. A clean shutdown returns nil.
func (a *app) runAll(ctx context.Context, parts ...runFunc) error {
	g, gctx := errgroup.WithContext(ctx)
	var running atomic.Int64
	for _, p := range parts {
		running.Add(1)
		g.Go(func() error { defer running.Add(-1); return p(gctx) })
	}
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-gctx.Done():
		t := time.NewTimer(a.stop.partsBound())
		select {
		case err = <-done:
		case <-t.C:
			a.logger.Warn("shutdown_timeout reached; exiting without the parts still stopping, their work left for the janitor",
				"count", running.Load(), "shutdown_timeout", a.cfg.ShutdownTimeout.String())
		}
		t.Stop()
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("stopped: %w", err)
	}
	return nil
}

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
		// Only this process's listener goes: bootstrap.listen stays in the config,
		// since the URL its instances are told is derived from it.
		a.bootstrapListen = ""
	default:
		a.bootstrapListen = r.bootstrapListen
	}
	if r.metricsListen != "" {
		a.cfg.Metrics.Listen = r.metricsListen
	}
	if r.webhookListen != "" {
		a.cfg.Webhook.Listen = r.webhookListen
	}
}

// roleCommand is a role that connects to an existing NATS (consumer, janitor): it
// builds the role's parts, adds the metrics listener and the admin endpoint when
// configured, and runs them until a signal.
func roleCommand(g *globalFlags, name, short string, build func(ctx context.Context, a *app, conn *queue.Conn) ([]runFunc, error)) *cobra.Command {
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
			defer a.asm.Close()
			ctx := cmd.Context()
			conn, err := a.connect(ctx, name, nil, 2*time.Minute)
			if err != nil {
				return err
			}
			defer a.stop.closeWithin("nats connection", conn.Close)
			parts, err := build(ctx, a, conn)
			if err != nil {
				return err
			}
			extra, err := a.opsParts(ctx, conn, a.metricsListener(false), true)
			if err != nil {
				return err
			}
			err = a.runAll(ctx, append(parts, extra...)...)
			a.logger.Info(name+" stopped", logkey.Error, err)
			return err
		},
	}
	rf.register(cmd)
	return cmd
}

// metricsListener says whether this process runs the metrics.listen listener: a
// process without a receiver whenever it is set, a receiver only when its own
// listener does not serve /metrics (metrics.on_webhook_listener false).
func (a *app) metricsListener(receiver bool) bool {
	return a.cfg.Metrics.Listen != "" && (!receiver || !a.cfg.Metrics.OnWebhookListener)
}

// webhookServer is the receiver's HTTP server: the webhook path plus /healthz,
// /readyz and, unless metrics.on_webhook_listener is false, /metrics.
func (a *app) webhookServer(conn *queue.Conn) (*httpserve.Server, error) {
	h, err := a.asm.Webhook(conn)
	if err != nil {
		return nil, err
	}
	r := chi.NewRouter()
	r.Post(a.cfg.Webhook.Path, h.ServeHTTP)
	var gatherer prometheus.Gatherer
	if a.cfg.Metrics.OnWebhookListener {
		gatherer = a.reg
	}
	httpserve.MountOps(r, conn.Ready, gatherer)
	// webhook.read_timeout bounds how long a client may take to send a delivery, headers
	// and body: a slow or stalled client holds its connection and buffer no longer, and
	// is answered 408. With the handler's own nats.publish_timeout that bounds every
	// request, so no http.TimeoutHandler wraps the router: it answered a stalled body
	// 503 (the connection's context ends when the read fails) instead of the handler's 408.
	return httpserve.ListenOptions("webhook", a.cfg.Webhook.Listen, r,
		a.logger.With(logkey.Component, "http"), httpserve.Options{ReadTimeout: a.cfg.Webhook.ReadTimeout})
}

// consumerParts are the consumer of this process and, unless its bootstrap listener
// is off (bootstrap.listen empty, or --bootstrap-listen off), the bootstrap endpoint. The endpoint's listener is bound first: its address gives
// the URL instances are told, the consumer is built with it, and the endpoint's
// routes, which report finished jobs to that consumer, are mounted before it serves.
func (a *app) consumerParts(ctx context.Context, conn *queue.Conn) ([]runFunc, error) {
	fl, err := a.asm.Fleet(ctx, conn)
	if err != nil {
		return nil, err
	}
	var parts []runFunc
	var router chi.Router
	bound := ""
	if a.bootstrapListen != "" {
		router = chi.NewRouter()
		srv, err := a.bootstrapListener(router)
		if err != nil {
			return nil, err
		}
		bound = srv.Addr()
		parts = append(parts, srv.Run)
	}
	url, err := a.asm.BootstrapURL(bound)
	if err != nil {
		return nil, err
	}
	served := bound
	if served == "" {
		served = "off"
	}
	a.logger.Info("bootstrap endpoint", "listen", served, "url", url)
	cons, err := a.asm.Consumer(ctx, conn, fl, url)
	if err != nil {
		return nil, err
	}
	if router != nil {
		routes, err := a.asm.Bootstrap(fl, cons.Finished)
		if err != nil {
			return nil, err
		}
		router.Mount(bootstrap.PathPrefix, routes)
		router.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	}
	return append(parts, cons.Run), nil
}

// bootstrapListener binds this process's bootstrap address (TLS with bootstrap.tls)
// to serve router.
func (a *app) bootstrapListener(router chi.Router) (*httpserve.Server, error) {
	logger := a.logger.With(logkey.Component, "http")
	if t := a.cfg.Bootstrap.TLS; t.CertFile != "" {
		return httpserve.ListenTLS("bootstrap", a.bootstrapListen, router, t.CertFile, t.KeyFile, logger)
	}
	return httpserve.Listen("bootstrap", a.bootstrapListen, router, logger)
}

// janitorParts is this process's janitor over every flavor.
func (a *app) janitorParts(ctx context.Context, conn *queue.Conn) ([]runFunc, error) {
	j, err := a.asm.Janitor(ctx, conn, "")
	if err != nil {
		return nil, err
	}
	return []runFunc{j.Run}, nil
}

// opsParts are the metrics listener (when wanted) and, for every role but the bare
// receiver (admin), the admin endpoint when admin.listen is set.
func (a *app) opsParts(ctx context.Context, conn *queue.Conn, metrics, admin bool) ([]runFunc, error) {
	var parts []runFunc
	if metrics {
		r := chi.NewRouter()
		httpserve.MountOps(r, conn.Ready, a.reg)
		ops, err := httpserve.Listen("metrics", a.cfg.Metrics.Listen, r, a.logger.With(logkey.Component, "http"))
		if err != nil {
			return nil, err
		}
		parts = append(parts, ops.Run)
	}
	if admin && a.cfg.Admin.Listen != "" {
		h, err := a.asm.Admin(ctx, conn)
		if err != nil {
			return nil, err
		}
		r := chi.NewRouter()
		r.Mount("/admin", h)
		httpserve.MountOps(r, conn.Ready, a.reg)
		srv, err := httpserve.Listen("admin", a.cfg.Admin.Listen, r, a.logger.With(logkey.Component, "http"))
		if err != nil {
			return nil, err
		}
		parts = append(parts, srv.Run)
	}
	return parts, nil
}
