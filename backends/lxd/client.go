package lxd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Where LXD listens locally: Debian's and Ubuntu's lxd package, then the snap.
const (
	SocketPath     = "/var/lib/lxd/unix.socket"
	SnapSocketPath = "/var/snap/lxd/common/lxd/unix.socket"
)

// Defaults for the zero values of ClientOptions.
const (
	DefaultMaxConcurrentOperations = 8
	DefaultTimeout                 = 30 * time.Second
	DefaultOperationTimeout        = 5 * time.Minute
)

// maxWaitSeconds bounds one /wait request, so a dead connection is noticed and a
// cancelled ctx is honoured even when LXD never answers.
const maxWaitSeconds = 30

// ClientOptions says how to reach one LXD server. The zero value talks to the local
// daemon over its unix socket (SocketPath, else SnapSocketPath).
type ClientOptions struct {
	// Socket is the unix socket path. Empty (and URL empty): the first of SocketPath
	// and SnapSocketPath that exists, looked up at each connection.
	Socket string
	// URL is a remote server's HTTPS address ("https://lxd1.example:8443"). It needs
	// ClientCert and ClientKey, a certificate the server trusts.
	URL string
	// ClientCert and ClientKey are PEM; ServerCert is the server's PEM certificate,
	// pinned: the connection is refused unless the server presents exactly it. With
	// no ServerCert the server's certificate must chain to the system roots.
	ClientCert, ClientKey, ServerCert []byte
	// Project is the LXD project every call is made in; empty: LXD's default project.
	Project string
	// MaxConcurrentOperations bounds the background operations (create, start, stop,
	// delete, exec) in flight on this server, so that a burst of jobs does not
	// overload the daemon. Zero: DefaultMaxConcurrentOperations. With
	// AdaptiveOperations it is the ceiling of the adaptive limit.
	MaxConcurrentOperations int
	// AdaptiveOperations chooses the limit from the observed latency of creates and
	// starts (adapt.go), between 2 and MaxConcurrentOperations, starting from
	// DefaultMaxConcurrentOperations (or the ceiling when lower).
	AdaptiveOperations bool
	// Timeout bounds each request whose ctx has no earlier deadline. Zero: DefaultTimeout.
	Timeout time.Duration
	// OperationTimeout bounds the wait for a background operation (an image download
	// from a remote server can take minutes). Zero: DefaultOperationTimeout.
	OperationTimeout time.Duration
	// Logger gets debug lines per operation; nil discards.
	Logger *slog.Logger
}

// Validate reports what cannot work, before any connection is made.
func (o ClientOptions) Validate() error {
	var errs []error
	if o.URL != "" {
		u, err := url.Parse(o.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, fmt.Errorf("url %q: must be https://host[:port]", o.URL))
		}
		if o.Socket != "" {
			errs = append(errs, errors.New("socket and url: set one of them"))
		}
		if len(o.ClientCert) == 0 || len(o.ClientKey) == 0 {
			errs = append(errs, errors.New("a remote server needs a client certificate and key"))
		}
	}
	if o.MaxConcurrentOperations < 0 {
		errs = append(errs, fmt.Errorf("max concurrent operations must not be negative (got %d)", o.MaxConcurrentOperations))
	}
	if o.Timeout < 0 || o.OperationTimeout < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	return errors.Join(errs...)
}

// Client is a small client of LXD's REST API (https://documentation.ubuntu.com/lxd/,
// "REST API"), safe for concurrent use. Mutating calls wait for their background
// operation and hold one of the server's operation slots meanwhile.
type Client struct {
	base      string // "http://lxd" on the socket, the URL for a remote
	endpoint  string // for messages
	hc        *http.Client
	project   string
	slots     *opGate
	timeout   time.Duration
	opTimeout time.Duration
	logger    *slog.Logger
}

// NewClient checks opts and returns a client. It does not connect: the first call does.
func NewClient(opts ClientOptions) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("lxd client options: %w", err)
	}
	c := &Client{
		project:   opts.Project,
		slots:     newOpGate(cmp0(opts.MaxConcurrentOperations, DefaultMaxConcurrentOperations)),
		timeout:   cmp0(opts.Timeout, DefaultTimeout),
		opTimeout: cmp0(opts.OperationTimeout, DefaultOperationTimeout),
		logger:    opts.Logger,
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if opts.AdaptiveOperations {
		ceiling := cmp0(opts.MaxConcurrentOperations, DefaultMaxConcurrentOperations)
		c.slots = newAdaptiveOpGate(newClimber(DefaultMaxConcurrentOperations, ceiling), func(limit int) {
			c.logger.Debug("lxd operation limit changed", "limit", limit)
		})
	}
	tr := &http.Transport{
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if opts.URL != "" {
		tc, err := tlsConfig(opts)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
		tr.Proxy = http.ProxyFromEnvironment
		c.base = strings.TrimRight(opts.URL, "/")
		c.endpoint = c.base
	} else {
		paths := []string{SocketPath, SnapSocketPath}
		if opts.Socket != "" {
			paths = []string{opts.Socket}
		}
		tr.DialContext = unixDialer(paths)
		c.base = "http://lxd"
		c.endpoint = "unix:" + strings.Join(paths, " or ")
	}
	c.hc = &http.Client{
		Transport: tr,
		// LXD never redirects the calls we make; following one would resend a body.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Endpoint says where the client connects (for logs and messages).
func (c *Client) Endpoint() string { return c.endpoint }

// Close drops idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func cmp0[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func unixDialer(paths []string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		var missing []string
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				missing = append(missing, p)
				continue
			}
			return d.DialContext(ctx, "unix", p)
		}
		return nil, fmt.Errorf("no LXD socket at %s", strings.Join(missing, " or "))
	}
}

func tlsConfig(opts ClientOptions) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(opts.ClientCert, opts.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("load lxd client certificate: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if len(opts.ServerCert) == 0 {
		return tc, nil
	}
	block, _ := pem.Decode(opts.ServerCert)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("load lxd server certificate: no PEM CERTIFICATE block")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return nil, fmt.Errorf("load lxd server certificate: %w", err)
	}
	pinned := block.Bytes
	// LXD servers present self-signed certificates, often without the name they are
	// reached by, so chain and name checks cannot work; pinning the exact certificate
	// (as `lxc remote add` does) is the check instead, done in VerifyConnection.
	tc.InsecureSkipVerify = true
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, pinned) {
			return errors.New("lxd server certificate does not match the pinned server certificate")
		}
		return nil
	}
	return tc, nil
}

// response is LXD's envelope around every answer: sync, async (a background
// operation) or error.
type response struct {
	Type       string          `json:"type"`
	Status     string          `json:"status"`
	StatusCode int             `json:"status_code"`
	Operation  string          `json:"operation"`
	ErrorCode  int             `json:"error_code"`
	Error      string          `json:"error"`
	Metadata   json.RawMessage `json:"metadata"`
	// file is the body of a successful file answer (rq.file): LXD sends files
	// (instance logs) as they are, without the envelope.
	file []byte
}

// request is one call to LXD.
type request struct {
	method string
	path   string // already escaped
	query  url.Values
	body   any       // JSON-encoded, unless raw is set
	raw    io.Reader // sent as is (file contents)
	header http.Header
	// timeout overrides the client's request timeout (the /wait calls wait longer).
	timeout time.Duration
	// file: a successful answer is a file, not an envelope (errors still are).
	file bool
	// state is the action of an instance state change (start, stop): it decides the
	// operation's priority for a slot (gate.go).
	state string
}

func (r request) call() string { return r.method + " " + r.path }

// maxAnswer bounds what one answer may hold; a recursive list of thousands of
// instances stays well below it.
const maxAnswer = 64 << 20

// do sends one request and decodes LXD's envelope. Error answers come back as *Error.
func (c *Client) do(ctx context.Context, rq request) (*response, error) {
	q := url.Values{}
	for k, v := range rq.query {
		q[k] = v
	}
	if c.project != "" {
		q.Set("project", c.project)
	}
	u := c.base + rq.path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader = rq.raw
	if rq.raw == nil && rq.body != nil {
		b, err := json.Marshal(rq.body)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", rq.call(), err)
		}
		body = bytes.NewReader(b)
	}
	timeout := rq.timeout
	if timeout == 0 {
		timeout = c.timeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, rq.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", rq.call(), err)
	}
	switch {
	case rq.raw != nil:
		// Without it LXD's file API reads the body as a form and stores an empty file.
		req.Header.Set("Content-Type", "application/octet-stream")
	case body != nil:
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range rq.header {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up: not the server's fault.
			return nil, &Error{Call: rq.call(), err: ctx.Err(), Message: ctx.Err().Error()}
		}
		cause := err
		var ue *url.Error
		if errors.As(err, &ue) {
			cause = ue.Err // the method and URL are in Call already
		}
		return nil, &Error{Call: rq.call(), kind: ErrUnreachable, err: err, Message: "no answer from " + c.endpoint + ": " + cause.Error()}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, &Error{Call: rq.call(), Code: resp.StatusCode, kind: ErrUnreachable, err: err, Message: "read answer: " + err.Error()}
	}
	if rq.file && resp.StatusCode < 300 {
		return &response{Type: "sync", file: data}, nil
	}
	var r response
	if err := json.Unmarshal(data, &r); err != nil || r.Type == "" {
		// Not LXD speaking (a proxy's error page, a wrong URL).
		msg := strings.TrimSpace(string(data))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		if resp.StatusCode < 300 {
			msg = "answer is not an LXD response: " + msg
		}
		code := resp.StatusCode
		return nil, &Error{Call: rq.call(), Code: code, Message: msg, kind: classify(code, msg, false)}
	}
	if r.Type == "error" || resp.StatusCode >= 400 {
		code := r.ErrorCode
		if code == 0 {
			code = resp.StatusCode
		}
		return nil, &Error{Call: rq.call(), Code: code, Message: r.Error, kind: classify(code, r.Error, false)}
	}
	return &r, nil
}

// get decodes a sync answer's metadata into into.
func (c *Client) get(ctx context.Context, path string, query url.Values, into any) error {
	r, err := c.do(ctx, request{method: http.MethodGet, path: path, query: query})
	if err != nil {
		return err
	}
	if into == nil {
		return nil
	}
	if err := json.Unmarshal(r.Metadata, into); err != nil {
		return fmt.Errorf("decode GET %s: %w", path, err)
	}
	return nil
}

// mutate sends a request that changes something and, when LXD answers with a
// background operation, waits for it. It holds an operation slot throughout.
func (c *Client) mutate(ctx context.Context, rq request) (Operation, error) {
	prio := priorityOf(rq)
	release, err := c.slots.acquire(ctx, prio)
	if err != nil {
		return Operation{}, err
	}
	started := time.Now()
	defer func() { c.slots.done(release, prio, time.Since(started)) }()
	r, err := c.do(ctx, rq)
	if err != nil {
		return Operation{}, err
	}
	if r.Type != "async" {
		return Operation{Status: "Success", StatusCode: statusSuccess}, nil
	}
	var op Operation
	if err := json.Unmarshal(r.Metadata, &op); err != nil || op.ID == "" {
		return Operation{}, fmt.Errorf("decode operation of %s: %q: %v", rq.call(), r.Operation, err)
	}
	return c.wait(ctx, op)
}
