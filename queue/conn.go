package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/secret"
)

// Options configures a connection to NATS and the streams it relies on.
type Options struct {
	// URL is one server or a comma-separated list (a cluster).
	URL string
	// Embedded, when set, connects in-process to this server (URL is then ignored).
	Embedded *Embedded
	// Name identifies the connection in the server's monitoring ("spawner webhook").
	Name      string
	User      string
	Password  secret.Value
	Token     secret.Value
	CredsFile string
	NKeyFile  string
	TLSCA     string
	TLSCert   string
	TLSKey    string
	// ConnectTimeout bounds each dial (default 5 s).
	ConnectTimeout time.Duration
	Streams        StreamOptions
	Logger         *slog.Logger
}

// StreamOptions sizes the streams and buckets.
type StreamOptions struct {
	// Replicas of every stream and bucket; 0 = 1 on a single server, 3 on a cluster
	// of three or more.
	Replicas int
	// MaxBytes and MaxMsgs limit the job stream. A full stream refuses new events
	// (the receiver answers 503 and GitHub records a failed delivery, which the
	// janitor redelivers) instead of dropping old ones.
	MaxBytes        int64
	MaxMsgs         int64
	DuplicateWindow time.Duration
}

func (o *StreamOptions) defaults() {
	if o.MaxBytes == 0 {
		o.MaxBytes = 1 << 30
	}
	if o.MaxMsgs == 0 {
		o.MaxMsgs = -1
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = 10 * time.Minute
	}
}

// Conn is a NATS connection with JetStream. It reconnects on its own, forever; Ready
// says whether it is usable now.
type Conn struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	opts   Options
	logger *slog.Logger

	// ensured is true once the streams and buckets were created or checked on the
	// current connection; a reconnect clears it so they are checked again (a
	// restarted server may have lost them).
	ensured  atomic.Bool
	ensureMu sync.Mutex
}

// Connect dials NATS. It does not wait for the server: with the server down it
// returns a Conn that keeps trying in the background, and Ready reports the state.
func Connect(ctx context.Context, opts Options) (*Conn, error) {
	opts.Streams.defaults()
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	c := &Conn{opts: opts, logger: orDiscard(opts.Logger)}
	nopts := []nats.Option{
		nats.Name(opts.Name),
		nats.Timeout(opts.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		// No reconnect buffer: while disconnected a publish must fail at once, so the
		// receiver answers 503 instead of claiming a write that may never happen.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.ConnectHandler(func(*nats.Conn) {
			c.logger.Info("nats connected")
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			c.ensured.Store(false)
			if err != nil {
				c.logger.Warn("nats disconnected", logkey.Error, err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.ensured.Store(false)
			// The whole user info goes: in a token URL it has no password part.
			c.logger.Info("nats reconnected", "server", secret.RedactURL(nc.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			c.logger.Warn("nats async error", "subject", subj, logkey.Error, err)
		}),
	}
	switch {
	case opts.User != "":
		nopts = append(nopts, nats.UserInfo(opts.User, opts.Password.Reveal()))
	case !opts.Token.IsZero():
		nopts = append(nopts, nats.Token(opts.Token.Reveal()))
	case opts.CredsFile != "":
		nopts = append(nopts, nats.UserCredentials(opts.CredsFile))
	case opts.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(opts.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey: %w", err)
		}
		nopts = append(nopts, o)
	}
	url := opts.URL
	if opts.Embedded == nil {
		if opts.TLSCA != "" {
			nopts = append(nopts, nats.RootCAs(opts.TLSCA))
		}
		if opts.TLSCert != "" {
			nopts = append(nopts, nats.ClientCert(opts.TLSCert, opts.TLSKey))
		}
	} else {
		nopts = append(nopts, nats.InProcessServer(opts.Embedded.srv))
		// No TLS and a nats:// URL, not the server's tls:// one: an in-process
		// connection is a pipe inside this process, which the server accepts without
		// TLS, and whose address (0.0.0.0 say) the certificate need not name.
		url = "nats://" + opts.Embedded.srv.Addr().String()
	}
	if url == "" {
		return nil, errors.New("nats: no server URL")
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", secret.RedactURL(url), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c.nc, c.js = nc, js
	return c, nil
}

// Close drains nothing and closes the connection.
func (c *Conn) Close() { c.nc.Close() }

// Connected reports whether the connection is up right now.
func (c *Conn) Connected() bool { return c.nc.IsConnected() }

// Ready returns nil when the connection is up and the streams and buckets exist,
// creating or updating them if this connection has not checked them yet.
func (c *Conn) Ready(ctx context.Context) error {
	if !c.nc.IsConnected() {
		return fmt.Errorf("nats: %s", strings.ToLower(c.nc.Status().String()))
	}
	if c.ensured.Load() {
		return nil
	}
	return c.Ensure(ctx)
}

// Ensure creates or updates every stream and bucket idempotently. Every process does
// it at start; concurrent calls from several processes are safe.
func (c *Conn) Ensure(ctx context.Context) error {
	c.ensureMu.Lock()
	defer c.ensureMu.Unlock()
	if c.ensured.Load() {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	replicas := c.replicas()
	for _, cfg := range streamConfigs(c.opts.Streams, replicas) {
		// Update only what differs: every process ensures at start, and an update
		// of a stream that other processes are busy consuming is not free.
		if st, err := c.js.Stream(ctx, cfg.Name); err == nil && sameStream(st.CachedInfo().Config, cfg) {
			continue
		}
		if _, err := c.js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	for _, cfg := range bucketConfigs(replicas) {
		if kv, err := c.js.KeyValue(ctx, cfg.Bucket); err == nil {
			if st, err := kv.Status(ctx); err == nil && st.TTL() == cfg.TTL && st.History() == int64(cfg.History) {
				continue
			}
		}
		if _, err := c.js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("ensure bucket %s: %w", cfg.Bucket, err)
		}
	}
	c.ensured.Store(true)
	return nil
}

// sameStream reports whether an existing stream already has the settings we set.
func sameStream(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention &&
		have.Storage == want.Storage && have.Replicas == want.Replicas && have.Discard == want.Discard &&
		have.MaxBytes == want.MaxBytes && have.MaxMsgs == want.MaxMsgs && have.MaxAge == want.MaxAge &&
		have.MaxMsgSize == want.MaxMsgSize && have.Duplicates == want.Duplicates
}

// replicas picks the replica count: the configured one, else 3 on a cluster of at
// least three servers, else 1.
func (c *Conn) replicas() int {
	if r := c.opts.Streams.Replicas; r > 0 {
		return r
	}
	if c.nc.ConnectedClusterName() != "" && len(c.nc.Servers()) >= 3 {
		return 3
	}
	return 1
}
