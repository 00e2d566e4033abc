package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/internal/httpserve"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/webhook"
)

// runFunc is a long-lived part: it returns once ctx is cancelled and its goroutines
// have exited.
type runFunc func(ctx context.Context) error

func serveCommand(g *globalFlags) *cobra.Command {
	var rf roleFlags
	var roles []string
	var sf sandboxFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run everything in one process (receiver, consumers, janitor) on an embedded NATS server by default",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sf.enabled {
				return runSandbox(cmd.Context(), &sf, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			parts, err := config.PartsFor(roles...)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--roles: %w", err)}
			}
			a, err := loadApp(g, cmd.ErrOrStderr(), parts)
			if err != nil {
				return err
			}
			rf.apply(a)
			want := map[string]bool{}
			for _, r := range roles {
				want[r] = true
			}
			return a.serve(cmd.Context(), want)
		},
	}
	rf.register(cmd)
	sf.register(cmd.Flags())
	cmd.Flags().StringSliceVar(&roles, "roles", []string{"webhook", "consumer", "janitor"}, "roles this process runs besides the embedded NATS server")
	return cmd
}

func webhookCommand(g *globalFlags) *cobra.Command {
	var rf roleFlags
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Run the webhook receiver alone (stateless; run as many as you like)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := loadApp(g, cmd.ErrOrStderr(), config.PartWebhook|config.PartNone)
			if err != nil {
				return err
			}
			rf.apply(a)
			conn, err := a.connect(cmd.Context(), "webhook", nil, 0)
			if err != nil {
				return err
			}
			defer conn.Close()
			srv, err := a.webhookServer(conn)
			if err != nil {
				return err
			}
			parts := []runFunc{srv.Run}
			if a.metricsListener(true) {
				ops, err := a.opsServer(conn)
				if err != nil {
					return err
				}
				parts = append(parts, ops.Run)
			}
			a.logger.Info("webhook receiver running", "listen", srv.Addr()+a.cfg.Webhook.Path, "nats", secret.RedactURL(a.natsURL()))
			err = runAll(cmd.Context(), parts...)
			a.logger.Info("webhook receiver stopped", logkey.Error, err)
			return err
		},
	}
	rf.register(cmd)
	return cmd
}

// serve runs the embedded NATS server (unless nats.url is set) and the given roles.
func (a *app) serve(ctx context.Context, roles map[string]bool) error {
	emb, err := a.startEmbedded(ctx)
	if err != nil {
		return err
	}
	if emb != nil {
		defer emb.Shutdown()
	}
	conn, err := a.connect(ctx, "serve", emb, 0)
	if err != nil {
		return err
	}
	defer conn.Close()
	if emb != nil {
		// The embedded server is ours and up: its streams must be usable now.
		ectx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := conn.Ensure(ectx)
		cancel()
		if err != nil {
			return err
		}
	}
	var parts []runFunc
	if roles["consumer"] {
		cparts, closeParts, err := a.consumerParts(ctx, conn)
		if err != nil {
			return err
		}
		defer closeParts()
		parts = append(parts, cparts...)
	}
	if roles["janitor"] && a.cfg.Janitor.Enabled {
		jparts, closeJ, err := a.janitorParts(ctx, conn)
		if err != nil {
			return err
		}
		defer closeJ()
		parts = append(parts, jparts...)
	}
	webhookAddr := "off"
	if roles["webhook"] {
		srv, err := a.webhookServer(conn)
		if err != nil {
			return err
		}
		webhookAddr = srv.Addr() + a.cfg.Webhook.Path
		parts = append(parts, srv.Run)
	}
	extra, err := a.opsParts(conn, a.metricsListener(roles["webhook"]))
	if err != nil {
		return err
	}
	parts = append(parts, extra...)
	if len(parts) == 0 {
		parts = append(parts, func(ctx context.Context) error { <-ctx.Done(); return nil })
	}
	a.logger.Info("spawner serving", "webhook", webhookAddr, "bootstrap", a.cfg.Bootstrap.Listen, "nats", natsMode(a.cfg), "flavors", a.cfg.FlavorNames())
	err = runAll(ctx, parts...)
	a.logger.Info("spawner stopped", logkey.Error, err)
	return err
}

// metricsListener says whether this process runs the metrics.listen listener: a
// process without a receiver whenever it is set, a receiver only when its own
// listener does not serve /metrics (metrics.on_webhook_listener false).
func (a *app) metricsListener(receiver bool) bool {
	return a.cfg.Metrics.Listen != "" && (!receiver || !a.cfg.Metrics.OnWebhookListener)
}

// webhookServer builds the receiver's HTTP server: the webhook path plus /healthz,
// /readyz and, unless metrics.on_webhook_listener is false, /metrics.
func (a *app) webhookServer(conn *queue.Conn) (*httpserve.Server, error) {
	h, err := webhook.New(a.webhookOptions(conn))
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
	srv, err := httpserve.ListenOptions("webhook", a.cfg.Webhook.Listen, r,
		a.logger.With(logkey.Component, "http"), httpserve.Options{ReadTimeout: a.cfg.Webhook.ReadTimeout})
	if err != nil {
		return nil, err
	}
	return srv, nil
}

func (a *app) webhookOptions(conn *queue.Conn) webhook.Options {
	flavors := make([]webhook.FlavorLabels, len(a.cfg.Flavors))
	for i, f := range a.cfg.Flavors {
		flavors[i] = webhook.FlavorLabels{Name: f.Name, Labels: f.Labels}
	}
	w := a.cfg.Webhook
	return webhook.Options{
		Secrets:               w.Secrets,
		InsecureSkipSignature: w.InsecureSkipSignature,
		MaxBodyBytes:          int64(w.MaxBodyBytes),
		Router:                webhook.NewRouter(flavors, a.cfg.Routing.DefaultFlavor, a.cfg.Routing.IgnoredLabels, a.cfg.Routing.Match),
		Publisher:             conn,
		PublishTimeout:        a.cfg.NATS.PublishTimeout,
		Logger:                a.logger.With(logkey.Component, "webhook"),
		Registerer:            a.reg,
	}
}

// runAll runs parts until ctx is cancelled or one fails; then it cancels the rest and
// waits for all. A clean shutdown returns nil.
func runAll(ctx context.Context, parts ...runFunc) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range parts {
		g.Go(func() error { return p(gctx) })
	}
	err := g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("stopped: %w", err)
	}
	return nil
}
