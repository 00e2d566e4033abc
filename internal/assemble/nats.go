package assemble

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/queue"
)

// NATSURL is where a role that does not embed the server connects: the configured
// URL, or the embedded server of a `serve` on this host.
func (a *Assembly) NATSURL() string {
	if a.cfg.NATS.URL != "" {
		return a.cfg.NATS.URL
	}
	return "nats://" + a.cfg.NATS.Listen
}

// QueueOptions are the connection options of a process named name (emb: serve's own
// in-process connection to its embedded server).
func (a *Assembly) QueueOptions(name string, emb *queue.Embedded) queue.Options {
	n := a.cfg.NATS
	return queue.Options{
		URL: a.NATSURL(), Embedded: emb, Name: "spawner " + name,
		User: n.User, Password: n.Password, Token: n.Token, CredsFile: n.CredsFile, NKeyFile: n.NKeyFile,
		TLSCA: n.TLS.CAFile, TLSCert: n.TLS.CertFile, TLSKey: n.TLS.KeyFile,
		ConnectTimeout: n.ConnectTimeout,
		Streams: queue.StreamOptions{
			Replicas: n.Replicas, MaxBytes: int64(n.StreamMaxBytes), MaxMsgs: n.StreamMaxMsgs,
			DuplicateWindow: n.DuplicateWindow,
		},
		Logger: a.logger.With(logkey.Component, "nats"),
	}
}

// StartEmbedded runs the embedded NATS server when no external one is configured
// (nil, nil otherwise). The server checks the very credential the spawner's clients
// present (QueueOptions), so one config sets both sides and every process on the
// host still gets in; a client without it is refused at connect.
func (a *Assembly) StartEmbedded(ctx context.Context) (*queue.Embedded, error) {
	if a.cfg.NATS.URL != "" {
		return nil, nil
	}
	n := a.cfg.NATS
	store := filepath.Join(a.cfg.StateDir, "nats")
	emb, err := queue.StartEmbedded(ctx, queue.EmbeddedOptions{
		StoreDir: store, Listen: n.Listen,
		Auth:        queue.EmbeddedAuth{User: n.User, Password: n.Password, Token: n.Token, NKeyFile: n.NKeyFile},
		TLSCertFile: n.TLS.CertFile, TLSKeyFile: n.TLS.KeyFile,
		Logger: a.logger.With(logkey.Component, "nats-server"),
	})
	if err != nil {
		return nil, err
	}
	a.logger.Info("embedded NATS server started", "listen", emb.ClientURL(), "store", store, "auth", embeddedAuthKind(n), "tls", n.TLS.CertFile != "")
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

// Connect dials NATS as name and, when wait is set, waits until the streams are
// usable.
func (a *Assembly) Connect(ctx context.Context, name string, emb *queue.Embedded, wait time.Duration) (*queue.Conn, error) {
	conn, err := queue.Connect(ctx, a.QueueOptions(name, emb))
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
			return nil, fmt.Errorf("nats at %s not usable after %s: %w", secret.RedactURL(a.NATSURL()), wait, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
