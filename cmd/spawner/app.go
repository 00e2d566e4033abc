package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/queue"
)

// app is what every role starts from: the validated config, the logger and the
// metrics registry of this process.
type app struct {
	cfg    *config.File
	logger *slog.Logger
	reg    *prometheus.Registry

	// shared holds what the roles of one process share (one GitHub client, one set of
	// backends, one simulated cloud), built on first use.
	shared *sharedDeps
}

// loadApp reads and validates the config. Problems are printed one per line with
// their key, and the command fails with exit code 2.
func loadApp(g *globalFlags, stderr io.Writer, parts config.Part) (*app, error) {
	return loadAppLevel(g, stderr, "", parts)
}

// loadCLI is loadApp for the operator commands (status, flush, …): their log goes to
// stderr at warn level unless the config asks for debug, so output stays readable.
func loadCLI(g *globalFlags, stderr io.Writer) (*app, error) {
	return loadAppLevel(g, stderr, "warn", config.PartNone)
}

// loadAppLevel loads the config, checking only the parts this process uses (a webhook
// receiver needs no GitHub credentials, an operator command no cloud settings).
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
	for _, w := range cfg.Warnings(g.configPath, parts) {
		a.logger.Warn("config warning", "key", w.Key, "warning", w.Reason)
	}
	return a, nil
}

func newApp(cfg *config.File, stderr io.Writer) *app {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &app{cfg: cfg, logger: newLogger(cfg.Log, stderr), reg: reg}
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
	_ = level.UnmarshalText([]byte(strings.ToUpper(c.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// natsURL is where a role that does not embed the server connects: the configured
// URL, or the embedded server of a `serve` on this host.
func (a *app) natsURL() string {
	if a.cfg.NATS.URL != "" {
		return a.cfg.NATS.URL
	}
	return "nats://" + a.cfg.NATS.Listen
}

func (a *app) queueOptions(name string, emb *queue.Embedded) queue.Options {
	n := a.cfg.NATS
	return queue.Options{
		URL:            a.natsURL(),
		Embedded:       emb,
		Name:           "spawner " + name,
		User:           n.User,
		Password:       n.Password,
		Token:          n.Token,
		CredsFile:      n.CredsFile,
		NKeyFile:       n.NKeyFile,
		TLSCA:          n.TLS.CAFile,
		TLSCert:        n.TLS.CertFile,
		TLSKey:         n.TLS.KeyFile,
		ConnectTimeout: n.ConnectTimeout,
		Streams: queue.StreamOptions{
			Replicas:        n.Replicas,
			MaxBytes:        int64(n.StreamMaxBytes),
			MaxMsgs:         n.StreamMaxMsgs,
			DuplicateWindow: n.DuplicateWindow,
		},
		Logger: a.logger.With(logkey.Component, "nats"),
	}
}

// startEmbedded runs the embedded NATS server when no external one is configured.
func (a *app) startEmbedded(ctx context.Context) (*queue.Embedded, error) {
	if a.cfg.NATS.URL != "" {
		return nil, nil
	}
	n := a.cfg.NATS
	// The server checks the very credential the spawner's clients present (see
	// queueOptions), so one config sets both sides and every process on the host
	// still gets in; a client without it is refused at connect.
	emb, err := queue.StartEmbedded(ctx, queue.EmbeddedOptions{
		StoreDir:    filepath.Join(a.cfg.StateDir, "nats"),
		Listen:      n.Listen,
		Auth:        queue.EmbeddedAuth{User: n.User, Password: n.Password, Token: n.Token, NKeyFile: n.NKeyFile},
		TLSCertFile: n.TLS.CertFile,
		TLSKeyFile:  n.TLS.KeyFile,
		Logger:      a.logger.With(logkey.Component, "nats-server"),
	})
	if err != nil {
		return nil, err
	}
	a.logger.Info("embedded NATS server started", "listen", emb.ClientURL(), "store", filepath.Join(a.cfg.StateDir, "nats"), "auth", embeddedAuthKind(n), "tls", n.TLS.CertFile != "")
	return emb, nil
}

// embeddedAuthKind names the credential the embedded server checks, for its start-up
// log line (never the credential itself).
func embeddedAuthKind(n config.NATS) string {
	switch {
	case n.User != "":
		return "user"
	case !n.Token.IsZero():
		return "token"
	case n.NKeyFile != "":
		return "nkey"
	}
	return "none"
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

// connect dials NATS and, when wait is set, waits until the streams are usable.
func (a *app) connect(ctx context.Context, name string, emb *queue.Embedded, wait time.Duration) (*queue.Conn, error) {
	conn, err := queue.Connect(ctx, a.queueOptions(name, emb))
	if err != nil {
		return nil, err
	}
	if wait <= 0 {
		return conn, nil
	}
	deadline := time.Now().Add(wait)
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := conn.Ready(rctx)
		cancel()
		if err == nil {
			return conn, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			conn.Close()
			return nil, fmt.Errorf("nats at %s not usable after %s: %w", secret.RedactURL(a.natsURL()), wait, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
