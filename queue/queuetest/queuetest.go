// Package queuetest runs the real NATS server in-process for tests: JetStream with
// file storage in t.TempDir(), on a free loopback port, stopped in t.Cleanup. It is a
// test helper: only tests import it.
package queuetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/queue"
)

// Server is an embedded NATS server owned by one test.
type Server struct {
	t    testing.TB
	opts queue.EmbeddedOptions
	emb  *queue.Embedded
}

// Start runs a single JetStream server that accepts anyone.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, queue.EmbeddedOptions{})
}

// StartWith runs a single JetStream server with opts (credentials, TLS); the store
// directory and the loopback address are filled in.
func StartWith(t testing.TB, opts queue.EmbeddedOptions) *Server {
	t.Helper()
	opts.StoreDir = filepath.Join(t.TempDir(), "nats")
	opts.Listen = "127.0.0.1:" + strconv.Itoa(FreePort(t))
	s := &Server{t: t, opts: opts}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	emb, err := queue.StartEmbedded(ctx, s.opts)
	if err != nil {
		s.t.Fatalf("queuetest: start nats: %v", err)
	}
	s.emb = emb
}

// URL is the server's client URL; it stays the same across Restart.
func (s *Server) URL() string { return "nats://" + s.opts.Listen }

// Embedded returns the running server.
func (s *Server) Embedded() *queue.Embedded { return s.emb }

// Stop shuts the server down (idempotent).
func (s *Server) Stop() {
	if s.emb != nil {
		s.emb.Shutdown()
		s.emb = nil
	}
}

// Restart starts the server again on the same address with the same store, as after
// a crash or an upgrade.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Connect opens a queue connection to the server (over TCP, so that it sees Stop and
// Restart like a remote client) and ensures the streams; closed in t.Cleanup.
func (s *Server) Connect(t testing.TB, opts queue.Options) *queue.Conn {
	t.Helper()
	if opts.URL == "" {
		opts.URL = s.URL()
	}
	if opts.Name == "" {
		opts.Name = "queuetest"
	}
	c, err := queue.Connect(t.Context(), opts)
	if err != nil {
		t.Fatalf("queuetest: connect: %v", err)
	}
	t.Cleanup(c.Close)
	// A cluster elects its JetStream leaders first: give it time.
	deadline := time.Now().Add(45 * time.Second)
	for {
		err := c.Ready(t.Context())
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("queuetest: not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ConnectURL opens a queue connection to url (any server, or a cluster's node) and
// ensures the streams; closed in t.Cleanup.
func (s *Server) ConnectURL(t testing.TB, url string) *queue.Conn {
	t.Helper()
	return s.Connect(t, queue.Options{URL: url})
}

// JetStream opens a plain nats.go JetStream client of the server (closed in
// t.Cleanup), for tests that look into the streams themselves: product code goes
// through queue.Conn's typed methods.
func (s *Server) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.URL(), nats.Name("queuetest-raw"))
	if err != nil {
		t.Fatalf("queuetest: raw connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("queuetest: jetstream: %v", err)
	}
	return js
}

// FreePort returns a TCP port that was free a moment ago on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("queuetest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Cluster is a set of clustered servers on loopback.
type Cluster struct {
	t      testing.TB
	Nodes  []*ClusterNode
	name   string
	routes []string
	// routePass authenticates the routes, as a deployment's cluster would.
	routePass secret.Value
}

// ClusterNode is one server of a Cluster.
type ClusterNode struct {
	dir, addr, routeAddr, name string
	emb                        *queue.Embedded
}

// StartCluster runs n clustered JetStream servers and waits until they accept clients.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, name: fmt.Sprintf("qt-%d", FreePort(t)), routePass: secret.New(rand.Text())}
	base := t.TempDir()
	for i := range n {
		node := &ClusterNode{
			dir:       filepath.Join(base, fmt.Sprintf("n%d", i)),
			addr:      "127.0.0.1:" + strconv.Itoa(FreePort(t)),
			routeAddr: "127.0.0.1:" + strconv.Itoa(FreePort(t)),
			name:      fmt.Sprintf("node-%d", i),
		}
		c.Nodes = append(c.Nodes, node)
		c.routes = append(c.routes, "nats-route://"+node.routeAddr)
	}
	errs := make(chan error, n)
	for i := range c.Nodes {
		go func() { errs <- c.startNode(i) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("queuetest: cluster: %v", err)
		}
	}
	t.Cleanup(func() {
		for i := range c.Nodes {
			c.Kill(i)
		}
	})
	return c
}

func (c *Cluster) startNode(i int) error {
	node := c.Nodes[i]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	emb, err := queue.StartEmbedded(ctx, queue.EmbeddedOptions{
		StoreDir: node.dir, Listen: node.addr, Name: node.name, ReadyTimeout: 60 * time.Second,
		Cluster: &queue.ClusterOptions{Name: c.name, Listen: node.routeAddr, Routes: c.routes, User: "route", Password: c.routePass},
	})
	if err != nil {
		return fmt.Errorf("node %d: %w", i, err)
	}
	node.emb = emb
	return nil
}

// Name is the cluster's name, which every route announces.
func (c *Cluster) Name() string { return c.name }

// RouteAddr is the node's cluster route address (host:port).
func (n *ClusterNode) RouteAddr() string { return n.routeAddr }

// URL lists every node's client URL, comma-separated.
func (c *Cluster) URL() string {
	u := ""
	for i, n := range c.Nodes {
		if i > 0 {
			u += ","
		}
		u += "nats://" + n.addr
	}
	return u
}

// Kill stops node i (idempotent).
func (c *Cluster) Kill(i int) {
	if n := c.Nodes[i]; n.emb != nil {
		n.emb.Shutdown()
		n.emb = nil
	}
}

// Restart starts node i again with its store.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.startNode(i); err != nil {
		c.t.Fatalf("queuetest: restart: %v", err)
	}
}
