package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/httpserve"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
	"github.com/runner-spawner/runner-spawner/janitor"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/webhook"
)

func janitorCommand(g *globalFlags) *cobra.Command {
	return roleCommand(g, "janitor", "Run a janitor: reconcile, flush on command, recover lost webhooks (one is active; others stand by)",
		func(ctx context.Context, a *app, conn *queue.Conn) ([]runFunc, func(), error) {
			return a.janitorParts(ctx, conn)
		})
}

// janitorParts builds this process's janitor over every flavor.
func (a *app) janitorParts(ctx context.Context, conn *queue.Conn) ([]runFunc, func(), error) {
	st, err := conn.State(ctx)
	if err != nil {
		return nil, nil, err
	}
	d, err := a.deps(ctx)
	if err != nil {
		return nil, nil, err
	}
	fl, err := fleet.Open(ctx, conn, a.logger)
	if err != nil {
		return nil, nil, err
	}
	j, err := janitor.New(a.janitorOptions(conn, st, fl, d.gh, d.set))
	if err != nil {
		return nil, nil, err
	}
	return []runFunc{j.Run}, a.closeDeps, nil
}

func (a *app) janitorOptions(conn *queue.Conn, st *queue.State, fl *fleet.Fleet, gh *github.Client, set *backendSet) janitor.Options {
	jc := a.cfg.Janitor
	opts := janitor.Options{
		Conn: conn, State: st, Fleet: fl, GitHub: gh, DeploymentID: a.cfg.DeploymentID,
		Interval: jc.Interval, MaxDeletesPerPass: jc.MaxDeletesPerPass, MaxGitHubCallsPerPass: jc.MaxGitHubCallsPerPass,
		FlushWait: jc.FlushWait, FlushWaitAttempts: jc.FlushWaitAttempts, ProtectedRunners: jc.ProtectedRunners,
		SweepInterval: jc.SweepInterval, SweepLookback: jc.SweepLookback,
		PollRepos: jc.PollRepos, PollInterval: jc.PollInterval,
		Logger: a.logger, Registerer: a.reg, // the janitor adds its own component key
	}
	for _, f := range a.cfg.Flavors {
		opts.Flavors = append(opts.Flavors, janitor.Flavor{
			Name: f.Name, Backend: set.byFlavor[f.Name], BackendName: f.Backend,
			BootTimeout: f.Runner.BootTimeout, IdleTTL: f.Runner.IdleTTL,
		})
	}
	if h := a.cfg.GitHub.Hook; h.Kind != "" {
		org, _, _ := strings.Cut(a.cfg.GitHub.Path, "/")
		opts.Hook = &github.HookRef{Kind: h.Kind, Repo: h.Repo, Org: org, HookID: h.ID}
	}
	if len(jc.PollRepos) > 0 {
		router := a.router()
		opts.Route = func(labels []string) (string, bool) {
			f, _, reason := router.Route(labels)
			return f, reason == ""
		}
	}
	return opts
}

func (a *app) router() *webhook.Router {
	flavors := make([]webhook.FlavorLabels, len(a.cfg.Flavors))
	for i, f := range a.cfg.Flavors {
		flavors[i] = webhook.FlavorLabels{Name: f.Name, Labels: f.Labels}
	}
	return webhook.NewRouter(flavors, a.cfg.Routing.DefaultFlavor, a.cfg.Routing.IgnoredLabels, a.cfg.Routing.Match)
}

// adminServer serves the admin endpoint when admin.listen is set.
func (a *app) adminServer(conn *queue.Conn) (*httpserve.Server, error) {
	if a.cfg.Admin.Listen == "" {
		return nil, nil
	}
	st, err := conn.State(context.Background())
	if err != nil {
		return nil, err
	}
	fl, err := fleet.Open(context.Background(), conn, a.logger)
	if err != nil {
		return nil, err
	}
	h, err := control.AdminHandler(control.AdminOptions{
		Conn: conn, State: st, Fleet: fl, Token: a.cfg.Admin.Token, Flavors: a.cfg.FlavorNames(),
		Logger: a.logger.With(logkey.Component, "admin"),
	})
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	r := chi.NewRouter()
	r.Mount("/admin", h)
	httpserve.MountOps(r, conn.Ready, a.reg)
	return httpserve.Listen("admin", a.cfg.Admin.Listen, r, a.logger.With(logkey.Component, "http"))
}

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

func reconcileCommand(g *globalFlags) *cobra.Command {
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Ask the active janitor for a reconcile pass now and print what it did",
		Long: `Ask the active janitor for a reconcile pass now (instead of waiting up to
janitor.interval) and print its summary: what it saw, deleted, settled, kept and
deferred. The pass has the usual bounds (janitor.max_deletes_per_pass,
janitor.max_github_calls_per_pass).

A suspect, such as an instance with no record, is deleted only once two passes at
least half of janitor.interval apart have seen it; a pass asked for right after
another marks new suspects ("marked") rather than deleting them. The command exits
non-zero when no janitor answered or the pass had errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := loadCLI(g, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			var sum control.PassSummary
			err = a.operate(cmd.Context(), "reconcile", timeout, 15*time.Second, func(ctx context.Context, conn *queue.Conn) error {
				s, err := control.Reconcile(ctx, conn)
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				sum = s
				return nil
			})
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(cmd, sum); err != nil {
					return err
				}
			} else {
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "reconcile by %s in %.2fs: %d instances, %d GitHub runners, %d records (GitHub checked: %v)\n",
					untrusted.Cell(sum.Janitor, cellMax), sum.Seconds, sum.Instances, sum.GitHubRunners, sum.Records, sum.GitHubChecked)
				fmt.Fprintf(w, "deleted %d %v, registrations removed %d, settled %d, slots released %d, resumed %d, replacements %d\n",
					sumCounts(sum.Deleted), sum.Deleted, sum.RegistrationsRemoved, sum.Settled, sum.SlotsReleased, sum.Resumed, sum.Replacements)
				fmt.Fprintf(w, "marked %d (acted on by a later pass if still suspect), kept %v, deferred %d, errors %d\n",
					sum.Marked, sum.Kept, sum.Deferred, sum.Errors)
				if sum.FirstError != "" {
					fmt.Fprintf(w, "first error: %s\n", untrusted.Cell(sum.FirstError, lineMax))
				}
			}
			if sum.Errors > 0 {
				return &exitError{code: 1, err: fmt.Errorf("")}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the pass summary as one JSON object")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the janitor's answer")
	return cmd
}

func runnersCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "runners", Short: "Inspect runners"}
	var flavor string
	var states []string
	var live, asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List runner records (oldest first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withState(cmd, g, func(ctx context.Context, _ *app, _ *queue.Conn, fl *fleet.Fleet) error {
				f := control.RunnerFilter{Flavor: flavor, Live: live}
				for _, s := range states {
					f.States = append(f.States, fleet.RunnerState(s))
				}
				rs, err := control.ListRunners(ctx, fl, f)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd, rs)
				}
				tw := newTable(cmd.OutOrStdout(), "RUNNER", "FLAVOR", "STATE", "FOR JOB", "TOOK JOB", "SPARE", "PRE-JOB", "AGE", "NOTE")
				for _, r := range rs {
					note := r.FailReason
					if note == "" {
						note = r.LastError
					}
					tw.row(r.Name, r.Flavor, string(r.State), r.ForJob, r.TookJob, r.Spare, r.InPreJob(), time.Since(r.CreatedAt).Round(time.Second), note)
				}
				return tw.flush()
			})
		},
	}
	list.Flags().StringVar(&flavor, "flavor", "", "only this flavor")
	list.Flags().StringSliceVar(&states, "state", nil, "only these states (creating, booting, idle, busy, finished, failed)")
	list.Flags().BoolVar(&live, "live", false, "only runners that are not over")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list)
	return cmd
}

func jobsCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "jobs", Short: "Inspect jobs"}
	var flavor, repo string
	var states []string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List job records (oldest first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withState(cmd, g, func(ctx context.Context, _ *app, _ *queue.Conn, fl *fleet.Fleet) error {
				f := control.JobFilter{Flavor: flavor, Repo: repo}
				for _, s := range states {
					f.States = append(f.States, fleet.JobState(s))
				}
				js, err := control.ListJobs(ctx, fl, f)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd, js)
				}
				tw := newTable(cmd.OutOrStdout(), "JOB", "FLAVOR", "REPO", "STATE", "CONCLUSION", "RUNNERS", "TAKEN BY", "WAITED", "NOTE")
				for _, j := range js {
					waited := ""
					if !j.ReceivedAt.IsZero() {
						end := j.StartedAt
						if end.IsZero() {
							end = time.Now()
						}
						waited = end.Sub(j.ReceivedAt).Round(time.Millisecond).String()
					}
					note := j.LastError
					if j.Gone {
						note = "gone on GitHub"
					}
					tw.row(j.ID, j.Flavor, j.Repo, string(j.State), j.Conclusion, strings.Join(j.Runners, ","), j.TakenBy, waited, note)
				}
				return tw.flush()
			})
		},
	}
	list.Flags().StringVar(&flavor, "flavor", "", "only this flavor")
	list.Flags().StringVar(&repo, "repo", "", "only this repository (owner/name)")
	list.Flags().StringSliceVar(&states, "state", nil, "only these states (queued, in_progress, completed)")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(list)
	return cmd
}

func deadLettersCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "dead-letters", Short: "List, retry or drop job events the consumers gave up on"}
	var asJSON bool
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters (oldest first) with their reasons",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withState(cmd, g, func(ctx context.Context, _ *app, conn *queue.Conn, _ *fleet.Fleet) error {
				dls, err := conn.DeadLetters(ctx, limit)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd, dls)
				}
				tw := newTable(cmd.OutOrStdout(), "SEQ", "AT", "FLAVOR", "JOB", "REPO", "REASON")
				for _, dl := range dls {
					job, repo, flavor := int64(0), "", strings.TrimPrefix(dl.Subject, "spawner.dead.")
					if dl.Event != nil {
						job, repo = dl.Event.JobID, dl.Event.Repo
					}
					tw.row(dl.Seq, dl.At.Format(time.DateTime), flavor, job, repo, dl.Reason)
				}
				return tw.flush()
			})
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	list.Flags().IntVar(&limit, "limit", 1000, "at most this many")
	retry := &cobra.Command{
		Use:   "retry SEQ...",
		Short: "Queue the jobs of these dead letters again (their attempt and replacement counts restart) and drop the letters",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withState(cmd, g, func(ctx context.Context, a *app, conn *queue.Conn, fl *fleet.Fleet) error {
				return forDeadLetters(ctx, cmd, conn, args, func(dl *queue.DeadLetter) error {
					if dl.Event == nil {
						return fmt.Errorf("dead letter %d has no decodable event; drop it", dl.Seq)
					}
					if err := fl.JobRetried(ctx, dl.Event.JobID); err != nil {
						return err
					}
					ev := *dl.Event
					ev.Source, ev.Action, ev.ReceivedAt = queue.SourceWebhook, queue.ActionQueued, time.Now().UTC()
					ev.DeliveryID = fmt.Sprintf("retry-%d-%d", dl.Seq, time.Now().UnixNano())
					if _, err := conn.PublishJobEvent(ctx, &ev); err != nil {
						return err
					}
					return conn.DropDeadLetter(ctx, dl.Seq)
				})
			})
		},
	}
	drop := &cobra.Command{
		Use:   "drop SEQ...",
		Short: "Delete these dead letters",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withState(cmd, g, func(ctx context.Context, _ *app, conn *queue.Conn, _ *fleet.Fleet) error {
				return forDeadLetters(ctx, cmd, conn, args, func(dl *queue.DeadLetter) error {
					return conn.DropDeadLetter(ctx, dl.Seq)
				})
			})
		},
	}
	cmd.AddCommand(list, retry, drop)
	return cmd
}

func forDeadLetters(ctx context.Context, cmd *cobra.Command, conn *queue.Conn, args []string, fn func(*queue.DeadLetter) error) error {
	dls, err := conn.DeadLetters(ctx, 100000)
	if err != nil {
		return err
	}
	bySeq := map[string]*queue.DeadLetter{}
	for _, dl := range dls {
		bySeq[fmt.Sprint(dl.Seq)] = dl
	}
	var errs []error
	for _, arg := range args {
		dl := bySeq[arg]
		if dl == nil {
			errs = append(errs, fmt.Errorf("no dead letter %s", arg))
			continue
		}
		if err := fn(dl); err != nil {
			errs = append(errs, fmt.Errorf("dead letter %s: %w", arg, err))
			continue
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: done\n", arg)
	}
	if len(errs) > 0 {
		return &exitError{code: 1, err: errors.Join(errs...)}
	}
	return nil
}

// withState connects an operator command to NATS and the KV state.
func withState(cmd *cobra.Command, g *globalFlags, fn func(ctx context.Context, a *app, conn *queue.Conn, fl *fleet.Fleet) error) error {
	a, err := loadCLI(g, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	return a.operate(cmd.Context(), cmd.CommandPath(), time.Minute, 15*time.Second, func(ctx context.Context, conn *queue.Conn) error {
		fl, err := fleet.Open(ctx, conn, a.logger)
		if err != nil {
			return err
		}
		return fn(ctx, a, conn, fl)
	})
}

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
