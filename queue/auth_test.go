package queue_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/internal/testcert"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

// userSeedFile writes a fresh user nkey seed, as `nsc` or `nk -gen user` would.
func userSeedFile(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(p, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEmbeddedServerRequiresCredentials: with a credential configured, the embedded
// server refuses a client without it (or with a wrong one) at connect, and lets the
// spawner's own clients in, over TCP and in-process.
func TestEmbeddedServerRequiresCredentials(t *testing.T) {
	seed, otherSeed := userSeedFile(t), userSeedFile(t)
	tests := []struct {
		name  string
		auth  queue.EmbeddedAuth
		right queue.Options
		wrong queue.Options
	}{
		{
			name:  "user and password",
			auth:  queue.EmbeddedAuth{User: "spawner", Password: secret.New("s3cret-password")},
			right: queue.Options{User: "spawner", Password: secret.New("s3cret-password")},
			wrong: queue.Options{User: "spawner", Password: secret.New("guess")},
		},
		{
			name:  "token",
			auth:  queue.EmbeddedAuth{Token: secret.New("s3cret-token")},
			right: queue.Options{Token: secret.New("s3cret-token")},
			wrong: queue.Options{Token: secret.New("guess")},
		},
		{
			name:  "nkey",
			auth:  queue.EmbeddedAuth{NKeyFile: seed},
			right: queue.Options{NKeyFile: seed},
			wrong: queue.Options{NKeyFile: otherSeed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := queuetest.StartWith(t, queue.EmbeddedOptions{Auth: tt.auth})

			if nc, err := nats.Connect(srv.URL(), nats.Timeout(5*time.Second)); err == nil {
				nc.Close()
				t.Errorf("a client without credentials connected")
			} else if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("anonymous connect: %v, want an authorization violation", err)
			}
			wrong := tt.wrong
			wrong.URL = srv.URL()
			if c, err := queue.Connect(t.Context(), wrong); err != nil {
				t.Fatalf("connect with a wrong credential: %v", err)
			} else {
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				if err := c.Ready(ctx); err == nil {
					t.Errorf("a client with a wrong credential is ready")
				}
				cancel()
				c.Close()
			}

			// The right credential works over TCP (other processes on the host) ...
			if err := openDocs(t, srv.Connect(t, tt.right)).Create(t.Context(), "r-1", &doc{Name: "r-1"}); err != nil {
				t.Fatalf("write with the right credential: %v", err)
			}
			// ... and in-process (serve's own connection).
			in := tt.right
			in.Embedded = srv.Embedded()
			c, err := queue.Connect(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Ready(t.Context()); err != nil {
				t.Errorf("in-process connection with the right credential: %v", err)
			}
		})
	}
}

// TestEmbeddedAuthRefusesMixedCredentials: two credentials at once is a wiring
// mistake, caught at start rather than letting one of them silently win.
func TestEmbeddedAuthRefusesMixedCredentials(t *testing.T) {
	_, err := queue.StartEmbedded(t.Context(), queue.EmbeddedOptions{
		StoreDir: t.TempDir(), Listen: "127.0.0.1:0",
		Auth: queue.EmbeddedAuth{User: "u", Password: secret.New("p"), Token: secret.New("t")},
	})
	if err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Errorf("user and token together: %v", err)
	}
}

// TestClusterRoutesRequireCredentials: a route is a full peer (it sees and injects
// every message), so routes are authenticated: a node cannot be started with client
// auth but open routes, and a route without the cluster's password is refused at
// CONNECT.
func TestClusterRoutesRequireCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster")
	}
	_, err := queue.StartEmbedded(t.Context(), queue.EmbeddedOptions{
		StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Auth: queue.EmbeddedAuth{Token: secret.New("client-token")},
		Cluster: &queue.ClusterOptions{Name: "c", Listen: "127.0.0.1:" + strconv.Itoa(queuetest.FreePort(t))},
	})
	if err == nil || !strings.Contains(err.Error(), "cluster routes need") {
		t.Errorf("client auth with open routes: %v", err)
	}

	c := queuetest.StartCluster(t, 3)
	for _, tc := range []struct{ name, connect string }{
		{"no credentials", `{"verbose":false,"pedantic":false,"name":"intruder","cluster":"` + c.Name() + `"}`},
		{"a wrong password", `{"verbose":false,"pedantic":false,"user":"route","pass":"guess","name":"intruder","cluster":"` + c.Name() + `"}`},
	} {
		if reply := routeConnect(t, c.Nodes[0].RouteAddr(), tc.connect); !strings.Contains(reply, "Authorization Violation") {
			t.Errorf("route with %s: server answered %q, want an authorization violation", tc.name, reply)
		}
	}
}

// routeConnect speaks the route protocol's first step (read INFO, send CONNECT and a
// PING) and returns the server's answer.
func routeConnect(t *testing.T, addr, connect string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if info, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(info, "INFO ") {
		t.Fatalf("route INFO: %q %v", info, err)
	}
	if _, err := conn.Write([]byte("CONNECT " + connect + "\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(line)
}

// TestEmbeddedServerServesTLS: with a certificate, the embedded server requires TLS
// of network clients: one that trusts the certificate connects, one that does not is
// refused. serve's in-process connection uses no TLS, even with nats.tls.* set for
// the other processes and a certificate that does not name the listen address.
func TestEmbeddedServerServesTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := testcert.SelfSignedFor(t, "spawner-nats", "localhost")
	cert, key := filepath.Join(dir, "nats.crt"), filepath.Join(dir, "nats.key")
	if err := os.WriteFile(cert, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(queuetest.FreePort(t))
	emb, err := queue.StartEmbedded(t.Context(), queue.EmbeddedOptions{
		StoreDir: t.TempDir(), Listen: "127.0.0.1:" + port,
		Auth: queue.EmbeddedAuth{Token: secret.New("s3cret-token")}, TLSCertFile: cert, TLSKeyFile: key,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	url := "nats://localhost:" + port

	if nc, err := nats.Connect(url, nats.Token("s3cret-token"), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Errorf("a client that does not trust the certificate connected")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("connect without the CA: %v, want a certificate error", err)
	}
	nc, err := nats.Connect(url, nats.Token("s3cret-token"), nats.RootCAs(cert), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect trusting the certificate: %v", err)
	}
	if !nc.TLSRequired() {
		t.Errorf("the connection is not TLS")
	}
	nc.Close()
	for _, o := range []queue.Options{
		{URL: url, Token: secret.New("s3cret-token"), TLSCA: cert, TLSCert: cert, TLSKey: key},
		{Embedded: emb, Token: secret.New("s3cret-token"), TLSCA: cert, TLSCert: cert, TLSKey: key},
	} {
		c, err := queue.Connect(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		for c.Ready(ctx) != nil && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		if err := c.Ready(ctx); err != nil {
			t.Errorf("queue connection (in-process: %v): %v", o.Embedded != nil, err)
		}
		cancel()
		c.Close()
	}
}
