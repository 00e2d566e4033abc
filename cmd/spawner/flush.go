package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
	"github.com/runner-spawner/runner-spawner/queue"
)

func flushCommand(g *globalFlags) *cobra.Command {
	var mode, flavor string
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "flush --mode MODE [--flavor F]",
		Short: "Ask the active janitor to flush runners and wait for the result",
		Long: `Flush modes (also in lower case with hyphens, e.g. flush-idle):
  FLUSH_IDLE                   remove runners not running a job (a busy one is skipped)
  FLUSH_IDLE_WAIT_REPO_CHECK   first wait while runners are in their pre-job phase, then FLUSH_IDLE
  FLUSH_BUSY                   remove every runner; the jobs of busy ones fail
  FLUSH_BUSY_WAIT_REPO_CHECK   wait as above, then FLUSH_BUSY
  FORCE_FLUSH_WAIT_REPO_CHECK  wait, then remove everything even when the GitHub API fails

New runners for the flavor are held back while the flush runs. The command exits
non-zero when no janitor answered or the flush could not be carried out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := control.ParseMode(mode)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			a, err := loadCLI(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if flavor != "" && a.cfg.Flavor(flavor) == nil {
				return &exitError{code: 2, err: fmt.Errorf("--flavor %q names no flavor (%s)", flavor, strings.Join(a.cfg.FlavorNames(), ", "))}
			}
			return a.operate(cmd.Context(), "flush", timeout, 15*time.Second, func(ctx context.Context, conn *queue.Conn) error {
				res, ferr := control.Flush(ctx, conn, control.FlushRequest{Mode: m, Flavor: flavor})
				if errors.Is(ferr, control.ErrNoJanitor) || (ferr != nil && !errors.Is(ferr, control.ErrFlushIncomplete)) {
					return &exitError{code: 1, err: fmt.Errorf("flush %s: %w", m, ferr)}
				}
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					if err := enc.Encode(res); err != nil {
						return err
					}
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: removed %d, skipped busy %d, failed %d, waited %.0fs\n", res.Mode, res.Removed, res.SkippedBusy, res.Failed, res.WaitedSeconds)
					if res.Error != "" {
						fmt.Fprintf(cmd.OutOrStdout(), "error: %s\n", untrusted.Cell(res.Error, lineMax))
					}
				}
				if ferr != nil {
					return &exitError{code: 1, err: fmt.Errorf("")}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&mode, "mode", "", "flush mode (see above)")
	cmd.Flags().StringVar(&flavor, "flavor", "", "only this flavor (default: all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().DurationVar(&timeout, "timeout", control.DefaultFlushTimeout, "how long to wait for the janitor's answer")
	_ = cmd.MarkFlagRequired("mode")
	return cmd
}
