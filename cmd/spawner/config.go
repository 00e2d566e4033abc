package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/config"
)

func configCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the config file"}
	var roles []string
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the config file and print every problem with its key",
		Long: `Validate the config file and print every problem with its key.

By default every part of the file is checked, as "serve" with every role needs it.
With --roles, only what processes of those roles use is checked: a webhook receiver
needs no GitHub credentials and no cloud settings, a consumer no webhook secret.
Unknown keys and mistyped values are reported whatever the roles.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.configPath == "" {
				return &exitError{code: 2, err: fmt.Errorf("--config FILE is required")}
			}
			parts := config.PartAll
			if cmd.Flags().Changed("roles") {
				var err error
				if parts, err = config.PartsFor(roles...); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--roles: %w", err)}
				}
			}
			cfg, err := config.LoadFor(g.configPath, os.Getenv, parts)
			if err != nil {
				printConfigErrors(cmd.OutOrStdout(), g.configPath, err)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d flavors: %v; nats: %s)\n", g.configPath, len(cfg.Flavors), cfg.FlavorNames(), natsMode(cfg))
			}
			// Warnings do not fail the check: the spawner runs with them too.
			if cfg != nil {
				for _, w := range cfg.Warnings(g.configPath, parts) {
					fmt.Fprintf(cmd.OutOrStdout(), "warning: %s: %s\n", w.Key, w.Reason)
				}
			}
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("")}
			}
			return nil
		},
	}
	check.Flags().StringSliceVar(&roles, "roles", nil, "check only what these roles use (webhook, consumer, janitor); default: everything")
	cmd.AddCommand(check)
	return cmd
}
