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

// Listen binds addr now (so a busy port fails at start, not later) and returns a
// Server that Run serves.
func Listen(name, addr string, h http.Handler, logger *slog.Logger) (*Server, error) {
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
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
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
// the reason otherwise) and /metrics (gatherer) to r.
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
	r.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
}
