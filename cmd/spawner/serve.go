package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

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

// serve runs the embedded NATS server (unless nats.url is set) and the given roles.
func (a *app) serve(ctx context.Context, roles map[string]bool) error {
	defer a.asm.Close()
	emb, err := a.asm.StartEmbedded(ctx)
	if err != nil {
		return err
	}
	if emb != nil {
		defer a.stop.closeWithin("embedded NATS server", emb.Shutdown)
	}
	conn, err := a.connect(ctx, "serve", emb, 0)
	if err != nil {
		return err
	}
	defer a.stop.closeWithin("nats connection", conn.Close)
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
		cparts, err := a.consumerParts(ctx, conn)
		if err != nil {
			return err
		}
		parts = append(parts, cparts...)
	}
	if roles["janitor"] && a.cfg.Janitor.Enabled {
		jparts, err := a.janitorParts(ctx, conn)
		if err != nil {
			return err
		}
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
	extra, err := a.opsParts(ctx, conn, a.metricsListener(roles["webhook"]), true)
	if err != nil {
		return err
	}
	parts = append(parts, extra...)
	if len(parts) == 0 {
		parts = append(parts, func(ctx context.Context) error { <-ctx.Done(); return nil })
	}
	a.logger.Info("spawner serving", "webhook", webhookAddr, "bootstrap", a.bootstrapListen, "nats", natsMode(a.cfg), "flavors", a.cfg.FlavorNames())
	err = a.runAll(ctx, parts...)
	a.logger.Info("spawner stopped", logkey.Error, err)
	return err
}

// sandboxFlags shape `serve --sandbox`: everything in one process with a fake GitHub
// that sends jobs, on real LXD containers when a daemon is reachable, else on the
// simulated backend.
type sandboxFlags struct {
	enabled      bool
	jobs         int
	backend      string
	exitWhenDone bool
	dir          string
}

func (s *sandboxFlags) register(flags interface {
	BoolVar(*bool, string, bool, string)
	IntVar(*int, string, int, string)
	StringVar(*string, string, string, string)
}) {
	flags.BoolVar(&s.enabled, "sandbox", false, "try it out: a fake GitHub sends jobs; runners on LXD if a daemon answers, else simulated (no config file needed)")
	flags.IntVar(&s.jobs, "sandbox-jobs", 12, "jobs the sandbox's fake GitHub sends")
	flags.StringVar(&s.backend, "sandbox-backend", "auto", "auto (lxd when reachable, else sim), lxd or sim")
	flags.BoolVar(&s.exitWhenDone, "exit-when-done", false, "stop once the sandbox's jobs are done (default: keep serving)")
	flags.StringVar(&s.dir, "sandbox-dir", filepath.Join(os.TempDir(), "spawner-sandbox"), "where the sandbox keeps its state and config (wiped at start)")
}
