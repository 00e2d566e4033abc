package main

import (
	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/secret"
)

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
			defer a.asm.Close()
			conn, err := a.connect(cmd.Context(), "webhook", nil, 0)
			if err != nil {
				return err
			}
			defer a.stop.closeWithin("nats connection", conn.Close)
			srv, err := a.webhookServer(conn)
			if err != nil {
				return err
			}
			extra, err := a.opsParts(cmd.Context(), conn, a.metricsListener(true), false)
			if err != nil {
				return err
			}
			a.logger.Info("webhook receiver running", "listen", srv.Addr()+a.cfg.Webhook.Path, "nats", secret.RedactURL(a.asm.NATSURL()))
			err = a.runAll(cmd.Context(), append([]runFunc{srv.Run}, extra...)...)
			a.logger.Info("webhook receiver stopped", logkey.Error, err)
			return err
		},
	}
	rf.register(cmd)
	return cmd
}
