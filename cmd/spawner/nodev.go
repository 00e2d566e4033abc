//go:build nodev

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/backends/sim"
)

// A binary built with -tags nodev has no dev tools: no fake GitHub, no fake runner,
// no sandbox (dev.go holds them otherwise).

var errNoDev = errors.New("this spawner was built without the dev tools (-tags nodev)")

func devCommand() *cobra.Command {
	return &cobra.Command{
		Use: "dev", Short: "Test tools (not in this build)", Hidden: true,
		RunE: func(*cobra.Command, []string) error { return errNoDev },
	}
}

// simRunner: simulated instances boot, fetch their config and stop.
func simRunner(*slog.Logger) sim.RunnerFunc { return nil }

func runSandbox(context.Context, *sandboxFlags, io.Writer, io.Writer) error { return errNoDev }
