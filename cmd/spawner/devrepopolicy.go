//go:build !nodev

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/dev/fakerepopolicy"
	"github.com/runner-spawner/runner-spawner/internal/httpserve"
)

// devRepoPolicyCommand is "spawner dev repo-policy": a fake repo-policy-compliance
// service for the sandbox and manual runs (docs/repo-policy.md).
func devRepoPolicyCommand() *cobra.Command {
	var listen, token string
	var opts fakerepopolicy.Options
	var verbose bool
	cmd := &cobra.Command{
		Use:   "repo-policy",
		Short: "Serve a fake repo-policy-compliance service (test tool)",
		Long: `Serve a fake repo-policy-compliance service: GET /one-time-token with the service
token mints a single-use token; POST /<check>/check-run with it answers 204, or 403
with a reason for a refused repository or branch, or at random. --hold keeps each
check open (to watch *_WAIT_REPO_CHECK flushes wait). GET /_fake/checks lists the
checks answered. The service token is --service-token or $` + config.EnvRepoPolicyToken + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if token == "" {
				token = os.Getenv(config.EnvRepoPolicyToken)
			}
			if token == "" {
				return errors.New("a service token is required: --service-token or $" + config.EnvRepoPolicyToken)
			}
			if opts.RefuseRate < 0 || opts.RefuseRate > 1 {
				return fmt.Errorf("--refuse-rate must be 0 to 1 (got %g)", opts.RefuseRate)
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			opts.ServiceToken = token
			opts.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			srv, err := httpserve.Listen("repo-policy", listen, fakerepopolicy.New(opts).Handler(), opts.Logger)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "fake repo-policy service listening on http://%s\n", srv.Addr())
			return srv.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8070", "address to serve on")
	cmd.Flags().StringVar(&token, "service-token", "", "the service token that mints one-time tokens")
	cmd.Flags().StringSliceVar(&opts.RefuseRepos, "refuse-repo", nil, "refuse checks of these repositories (owner/name)")
	cmd.Flags().StringSliceVar(&opts.RefuseBranches, "refuse-branch", nil, "refuse pull requests from or to these branches")
	cmd.Flags().Float64Var(&opts.RefuseRate, "refuse-rate", 0, "refuse this fraction of the other checks at random")
	cmd.Flags().DurationVar(&opts.Hold, "hold", 0*time.Second, "hold each check open this long before answering")
	cmd.Flags().IntVar(&opts.FailWith, "fail-with", 0, "answer every check with this status (a 5xx) instead")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "log every check")
	return cmd
}
