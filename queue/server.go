package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/runner-spawner/runner-spawner/internal/secret"
)

// EmbeddedOptions configures a NATS server run inside the spawner process.
type EmbeddedOptions struct {
	// StoreDir is where JetStream keeps its files (config: state_dir).
	StoreDir string
	// Listen is the client address ("127.0.0.1:4222"); port 0 picks a free port.
	Listen string
	// Name is the server name (default: "spawner-" + port); unique within a cluster.
	Name string
	// Auth is the credential every client must present (see EmbeddedAuth). The zero
	// value lets anyone in who reaches Listen: only for a loopback listener (config
	// check refuses anything else).
	Auth EmbeddedAuth
	// TLSCertFile and TLSKeyFile, when set, make the server require TLS of every
	// client that connects over the network (in-process connections need none).
	TLSCertFile string
	TLSKeyFile  string
	// Cluster joins or forms a cluster (tests and multi-node setups); nil for a
	// single server.
	Cluster *ClusterOptions
	// Logger receives the server's log lines (nil: discarded).
	Logger *slog.Logger
	// ReadyTimeout bounds how long to wait for the server to accept clients
	// (default 10 s; a clustered JetStream may need longer to elect a leader).
	ReadyTimeout time.Duration
}

// ClusterOptions makes the embedded server one node of a NATS cluster.
type ClusterOptions struct {
	Name   string   // cluster name, the same on every node
	Listen string   // this node's route address
	Routes []string // nats-route://host:port of the other nodes
	// User and Password authenticate routes: this node accepts only routes that
	// present them and presents them on its own. A route is a full peer (it sees and
	// injects every message), so they are required whenever Auth is set.
	User     string
	Password secret.Value
}

// Embedded is a running in-process NATS server with JetStream.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a NATS server with JetStream and file storage and waits until
// it accepts clients.
func StartEmbedded(ctx context.Context, opts EmbeddedOptions) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen %q: %w", opts.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if err := os.MkdirAll(opts.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded nats: create store dir: %w", err)
	}
	so := &server.Options{
		ServerName: opts.Name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		// The spawner owns signal handling and shutdown.
		NoSigs: true,
		// Events published as one message each: 1 MiB is plenty and caps abuse.
		MaxPayload: 1 << 20,
	}
	if so.ServerName == "" {
		so.ServerName = "spawner-" + portStr
	}
	if err := opts.Auth.apply(so); err != nil {
		return nil, err
	}
	if opts.TLSCertFile != "" || opts.TLSKeyFile != "" {
		// nats-server's own loader: the cipher and version choices of the server.
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: opts.TLSCertFile, KeyFile: opts.TLSKeyFile})
		if err != nil {
			return nil, fmt.Errorf("embedded nats: tls: %w", err)
		}
		so.TLS, so.TLSConfig = true, tc
	}
	if c := opts.Cluster; c != nil {
		ch, cp, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: cluster listen %q: %w", c.Listen, err)
		}
		so.Cluster.Name = c.Name
		so.Cluster.Host = ch
		so.Cluster.Port, _ = strconv.Atoi(cp)
		if !opts.Auth.IsZero() && (c.User == "" || c.Password.IsZero()) {
			return nil, errors.New("embedded nats: cluster routes need User and Password when clients must authenticate")
		}
		so.Cluster.Username, so.Cluster.Password = c.User, c.Password.Reveal()
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("embedded nats: route %q: %w", r, err)
			}
			if c.User != "" && u.User == nil {
				u.User = url.UserPassword(c.User, c.Password.Reveal())
			}
			so.Routes = append(so.Routes, u)
		}
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.SetLoggerV2(natsLogger{l: orDiscard(opts.Logger)}, false, false, false)
	srv.Start()
	wait := opts.ReadyTimeout
	if wait == 0 {
		wait = 10 * time.Second
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = time.Until(dl)
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after %s (is %s in use?)", wait, opts.Listen)
	}
	return &Embedded{srv: srv}, nil
}

// ClientURL is the URL clients use over the network (tls:// when it serves TLS).
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Server gives access to the server itself (tests kill and inspect it).
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits until it has stopped.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// natsLogger routes the server's log into slog. The server's notices are chatty at
// start-up, so they go to Debug; warnings and errors keep their level.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n natsLogger) Warnf(f string, v ...any)   { n.l.Warn(fmt.Sprintf(f, v...)) }
func (n natsLogger) Fatalf(f string, v ...any)  { n.l.Error(fmt.Sprintf(f, v...)) }
func (n natsLogger) Errorf(f string, v ...any)  { n.l.Error(fmt.Sprintf(f, v...)) }
func (n natsLogger) Debugf(f string, v ...any)  { n.l.Debug(fmt.Sprintf(f, v...)) }
func (n natsLogger) Tracef(f string, v ...any)  {}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
