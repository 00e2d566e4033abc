package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/internal/assemble"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/queue"
)

// app is what every command starts from: the validated config, the logger, the
// metrics registry of this process, and the assembly that builds its parts.
type app struct {
	cfg    *config.File
	logger *slog.Logger
	reg    *prometheus.Registry
	asm    *assemble.Assembly
	// bootstrapListen is where this process serves the bootstrap endpoint ("": it
	// serves none). It starts as bootstrap.listen and --bootstrap-listen changes it;
	// the config keeps bootstrap.listen, the address bootstrap.url is derived from,
	// because instances must be told the endpoint whichever process serves it.
	bootstrapListen string
	// stop bounds this process's shutdown (shutdown_timeout after the first signal).
	stop *stopper
}

// loadApp reads and validates the config, checking only the parts this process uses
// (a webhook receiver needs no GitHub credentials). Problems are printed one per line
// with their key, and the command fails with exit code 2.
func loadApp(g *globalFlags, stderr io.Writer, parts config.Part) (*app, error) {
	return loadAppLevel(g, stderr, "", parts)
}

// loadCLI is loadApp for the operator commands (status, flush, …): their log goes to
// stderr at warn level unless the config asks for debug, so output stays readable.
func loadCLI(g *globalFlags, stderr io.Writer) (*app, error) {
	return loadAppLevel(g, stderr, "warn", config.PartNone)
}

func loadAppLevel(g *globalFlags, stderr io.Writer, minLevel string, parts config.Part) (*app, error) {
	if g.configPath == "" {
		return nil, &exitError{code: 2, err: fmt.Errorf("--config FILE is required (see docs/configuration.md)")}
	}
	cfg, err := config.LoadFor(g.configPath, os.Getenv, parts)
	if err != nil {
		printConfigErrors(stderr, g.configPath, err)
		return nil, &exitError{code: 2, err: fmt.Errorf("config %s is not valid", g.configPath)}
	}
	if minLevel != "" && cfg.Log.Level != "debug" {
		cfg.Log.Level = minLevel
	}
	a := newApp(cfg, stderr)
	if g.stop != nil {
		g.stop.arm(a.logger, cfg.ShutdownTimeout)
		a.stop = g.stop
	}
	for _, w := range cfg.Warnings(g.configPath, parts) {
		a.logger.Warn("config warning", "key", w.Key, "warning", w.Reason)
	}
	return a, nil
}

func newApp(cfg *config.File, stderr io.Writer) *app {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	logger := newLogger(cfg.Log, stderr)
	// A stopper that no signal reaches (the sandbox, tests): it bounds a stop that
	// begins with a failing part; loadApp gives a process the one signals reach.
	stop := newStopper(func(error) {}, stderr, os.Exit)
	stop.arm(logger, cfg.ShutdownTimeout)
	return &app{cfg: cfg, logger: logger, reg: reg, bootstrapListen: cfg.Bootstrap.Listen, stop: stop, asm: assemble.New(assemble.Options{
		Config: cfg, Logger: logger, Registry: reg, SimRunner: simRunner(logger),
	})}
}

func printConfigErrors(w io.Writer, path string, err error) {
	fes := config.FieldErrors(err)
	fmt.Fprintf(w, "%s: %d problem(s):\n", path, len(fes))
	for _, fe := range fes {
		if fe.Key == "" {
			fmt.Fprintf(w, "  %s\n", fe.Reason)
			continue
		}
		fmt.Fprintf(w, "  %s: %s\n", fe.Key, fe.Reason)
	}
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	// The config refused any level but debug, info, warn and error.
	_ = level.UnmarshalText([]byte(strings.ToUpper(c.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// connect dials NATS as name and, when wait is set, waits until the streams are
// usable.
func (a *app) connect(ctx context.Context, name string, emb *queue.Embedded, wait time.Duration) (*queue.Conn, error) {
	return a.asm.Connect(ctx, name, emb, wait)
}

// operate runs an operator command's work on a fresh NATS connection (named name,
// waiting up to wait for the streams), all within timeout.
func (a *app) operate(ctx context.Context, name string, timeout, wait time.Duration, fn func(context.Context, *queue.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := a.connect(ctx, name, nil, wait)
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(ctx, conn)
}

// natsMode says which NATS a process uses, for its start-up line and config check.
func natsMode(cfg *config.File) string {
	if cfg.NATS.URL == "" {
		return "embedded on " + cfg.NATS.Listen
	}
	return "external " + secret.RedactURL(cfg.NATS.URL)
}
