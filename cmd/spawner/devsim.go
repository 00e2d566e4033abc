package main

import (
	"log/slog"
	"net/http"
	"os"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/backends/sim"
	"github.com/runner-spawner/runner-spawner/github/githubtest/fakerunner"
	"github.com/runner-spawner/runner-spawner/internal/httpserve"
)

// devSimCloudCommand is "spawner dev sim-cloud": a simulated cloud shared over HTTP,
// so that several spawner processes (flavors with sim.url set) create their simulated
// instances in one place, and instances outlive a consumer that dies, as real ones do.
func devSimCloudCommand() *cobra.Command {
	var listen string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "sim-cloud",
		Short: "Serve a simulated cloud for sim flavors with sim.url (test tool)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			cloud := sim.NewCloud(sim.CloudOptions{Runner: fakerunner.SimRunner(logger), Logger: logger})
			defer cloud.Close()
			mux := http.NewServeMux()
			mux.Handle("/", cloud.Handler())
			srv, err := httpserve.Listen("sim-cloud", listen, mux, logger)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8090", "address to serve the simulated cloud on")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "log every instance")
	return cmd
}
