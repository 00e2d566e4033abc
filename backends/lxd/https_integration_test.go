package lxd

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/internal/realservice"
	"github.com/runner-spawner/runner-spawner/internal/testcert"
)

// httpsServer is how the local daemon is reached over HTTPS: the address
// scripts/lxd-setup.sh gives it (core.https_address, loopback) and the certificate it
// presents, read over the trusted unix socket.
func httpsServer(t *testing.T, c *Client) (url string, serverCert []byte) {
	t.Helper()
	r, err := c.do(t.Context(), request{method: http.MethodGet, path: "/1.0"})
	if err != nil {
		t.Fatalf("GET /1.0: %v", err)
	}
	var info struct {
		Config      map[string]any `json:"config"`
		Environment struct {
			Certificate string `json:"certificate"`
		} `json:"environment"`
	}
	if err := json.Unmarshal(r.Metadata, &info); err != nil {
		t.Fatal(err)
	}
	addr, _ := info.Config["core.https_address"].(string)
	if addr == "" || info.Environment.Certificate == "" {
		realservice.LXD.Unavailable(t, "LXD does not listen on HTTPS (core.https_address unset)")
	}
	return "https://" + addr, []byte(info.Environment.Certificate)
}

// httpsClient is a client of the daemon at url over HTTPS, closed when the test ends.
func httpsClient(t *testing.T, url string, cert, key, serverCert []byte) *Client {
	t.Helper()
	c, err := NewClient(ClientOptions{URL: url, ClientCert: cert, ClientKey: key, ServerCert: serverCert, Timeout: stallTimeout})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// trust adds a client certificate to the daemon's trust store, as `lxc config trust
// add` does, until the test ends.
func trust(t *testing.T, c *Client, certPEM []byte) {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	fingerprint := testcert.Fingerprint(t, certPEM)
	body := map[string]any{"type": "client", "name": "spawner-test-" + fingerprint[:12], "certificate": base64.StdEncoding.EncodeToString(block.Bytes)}
	if _, err := c.do(t.Context(), request{method: http.MethodPost, path: "/1.0/certificates", body: body}); err != nil {
		t.Fatalf("trust the test client certificate: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := c.do(ctx, request{method: http.MethodDelete, path: "/1.0/certificates/" + fingerprint}); err != nil {
			t.Errorf("remove the test client certificate: %v", err)
		}
	})
}

// TestRemoteHTTPSOnRealLXD runs the remote-server path against the real daemon: HTTPS,
// a client certificate the server trusts, its own certificate pinned. A whole runner
// life goes over it (create, the exec bootstrap with files pushed, the instance
// calling back, list, delete). An untrusted certificate and a wrong pin are refused
// with the errors an operator is told about.
func TestRemoteHTTPSOnRealLXD(t *testing.T) {
	local := realClient(t)
	url, serverCert := httpsServer(t, local)
	clientCert, clientKey := testcert.SelfSigned(t, "spawner-https-test")
	trust(t, local, clientCert)

	c := httpsClient(t, url, clientCert, clientKey, serverCert)
	info, err := c.Server(t.Context())
	if err != nil {
		t.Fatalf("GET /1.0 over HTTPS: %v", err)
	}
	if info.Auth != "trusted" {
		t.Fatalf("auth %q over HTTPS with a trusted certificate, want trusted", info.Auth)
	}

	cb := listenOnBridge(t, local)
	b := realBackend(t, c, Options{DeploymentID: testDeployment(), Flavor: "tls", Bootstrap: BootstrapExec})
	spec, token := cb.execSpec("tls", 9)
	t.Cleanup(func() { rawDelete(local, spec.Name) })
	if _, err := b.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create over HTTPS: %v", err)
	}
	if got := cb.wait(t, 30*time.Second); got != token {
		t.Errorf("callback token = %q, want %q", got, token)
	}
	listed, err := b.List(t.Context())
	if err != nil {
		t.Fatalf("List over HTTPS: %v", err)
	}
	if len(listed) != 1 || listed[0].Name != spec.Name {
		t.Errorf("List over HTTPS = %+v, want just %s", listed, spec.Name)
	}
	waitState(t, b, spec.Name, backends.StateStopped, 20*time.Second)
	if err := b.Delete(t.Context(), spec.Name); err != nil {
		t.Errorf("Delete over HTTPS: %v", err)
	}

	t.Run("untrusted certificate", func(t *testing.T) {
		cert, key := testcert.SelfSigned(t, "spawner-not-trusted")
		c := httpsClient(t, url, cert, key, serverCert)
		info, err := c.Server(t.Context())
		if err != nil || info.Auth != "untrusted" {
			t.Errorf("GET /1.0 with an untrusted certificate: auth %q, %v; want untrusted", info.Auth, err)
		}
		if _, err := c.Instances(t.Context(), ""); !errors.Is(err, ErrForbidden) {
			t.Errorf("list instances untrusted = %v, want ErrForbidden", err)
		}
	})
	t.Run("another server certificate pinned", func(t *testing.T) {
		other, _ := testcert.SelfSigned(t, "not-the-server")
		c := httpsClient(t, url, clientCert, clientKey, other)
		if _, err := c.Server(t.Context()); !errors.Is(err, ErrUnreachable) {
			t.Errorf("GET /1.0 with a wrong pin = %v, want ErrUnreachable", err)
		}
	})
}
