// Package httpserve runs an http.Server for the lifetime of a context and serves the
// operational endpoints every spawner role exposes (/healthz, /readyz, /metrics).
//
// It must not know about any component: readiness and metrics are passed in.
package httpserve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is an HTTP listener bound to an address.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	logger *slog.Logger
	name   string
}

// Options tunes a Server. The zero value gives every field its default.
type Options struct {
	// ReadTimeout bounds reading one whole request, headers and body, from its first
	// byte (default 30 s). A handler's body read fails once it passes, and the
	// connection is closed: a client that sends slowly holds a goroutine and its
	// buffers for at most this long.
	ReadTimeout time.Duration
	// ReadHeaderTimeout bounds reading the headers (default 5 s, or ReadTimeout when
	// that is shorter).
	ReadHeaderTimeout time.Duration
}

const (
	defaultReadTimeout       = 30 * time.Second
	defaultReadHeaderTimeout = 5 * time.Second
)

// Listen binds addr now (so a busy port fails at start, not later) and returns a
// Server that Run serves, with the default Options.
func Listen(name, addr string, h http.Handler, logger *slog.Logger) (*Server, error) {
	return ListenOptions(name, addr, h, logger, Options{})
}

// ListenOptions is Listen with Options.
func ListenOptions(name, addr string, h http.Handler, logger *slog.Logger, opts Options) (*Server, error) {
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = defaultReadTimeout
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = min(defaultReadHeaderTimeout, opts.ReadTimeout)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s on %s: %w", name, addr, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: opts.ReadHeaderTimeout,
			ReadTimeout:       opts.ReadTimeout,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		ln: ln, logger: logger, name: name,
	}, nil
}

// ListenTLS is Listen serving https with the key pair in certFile and keyFile, loaded
// now so that a bad pair fails at start, not at the first client.
func ListenTLS(name, addr string, h http.Handler, certFile, keyFile string, logger *slog.Logger) (*Server, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load the %s key pair: %w", name, err)
	}
	s, err := Listen(name, addr, h, logger)
	if err != nil {
		return nil, err
	}
	s.ln = tls.NewListener(s.ln, &tls.Config{
		Certificates: []tls.Certificate{pair},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	})
	return s, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx is cancelled, then shuts down gracefully: in-flight requests
// (a webhook waiting for JetStream's ack) get up to 10 s to finish.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.logger.Info("listening", "server", s.name, "addr", s.Addr())
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", s.name, err)
	case <-ctx.Done():
	}
	// Shutdown must run to completion after ctx is cancelled: that is its purpose.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shutdown %s: %w", s.name, err)
	}
	return nil
}

// ReadyFunc returns nil when the process can do its job.
type ReadyFunc func(ctx context.Context) error

// MountOps adds /healthz (the process answers), /readyz (ready returns nil; 503 with
// the reason otherwise) and /metrics (gatherer) to r. A nil gatherer mounts no
// /metrics: the listener is public and metrics are served on another.
func MountOps(r chi.Router, ready ReadyFunc, gatherer prometheus.Gatherer) {
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Get("/readyz", func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), 3*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain")
		if err := ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if gatherer != nil {
		r.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
}
