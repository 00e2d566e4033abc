package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/config"
)

func configCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the config file"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Validate the config file and print every problem with its key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.configPath == "" {
				return &exitError{code: 2, err: fmt.Errorf("--config FILE is required")}
			}
			cfg, err := config.Load(g.configPath, os.Getenv)
			if err != nil {
				printConfigErrors(cmd.OutOrStdout(), g.configPath, err)
				return &exitError{code: 1, err: fmt.Errorf("")}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d flavors: %v; nats: %s)\n", g.configPath, len(cfg.Flavors), cfg.FlavorNames(), natsMode(cfg))
			return nil
		},
	})
	return cmd
}

func natsMode(cfg *config.File) string {
	if cfg.NATS.URL == "" {
		return "embedded on " + cfg.NATS.Listen
	}
	return "external " + redact(cfg.NATS.URL)
}
