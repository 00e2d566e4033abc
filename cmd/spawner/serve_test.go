package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

// TestWebhookServerHonoursReadTimeout: the receiver's listener used the hard-coded 30 s
// of every listener, not webhook.read_timeout, so a client that declared a body and
// stalled held its connection (and, before, a buffer of the declared size) for 30 s.
func TestWebhookServerHonoursReadTimeout(t *testing.T) {
	cfg := config.Defaults()
	cfg.Webhook.Listen = "127.0.0.1:0"
	cfg.Webhook.ReadTimeout = 300 * time.Millisecond
	cfg.Webhook.Secrets = []secret.Value{secret.New("read-timeout-test-secret-0123")}
	a := newApp(cfg, io.Discard)
	conn := queuetest.Start(t).Connect(t, queue.Options{})
	srv, err := a.webhookServer(conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: workflow_job\r\n"+
		"X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\r\nContent-Length: 100000\r\n\r\n{\"action\":", cfg.Webhook.Path)
	// Well below the old 30 s.
	_ = c.SetReadDeadline(time.Now().Add(4 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer within 4 s to a stalled body with webhook.read_timeout 300ms: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body: status %d, want 408", resp.StatusCode)
	}
}
