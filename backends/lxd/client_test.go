package lxd

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/internal/testcert"
)

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name string
		// sync: the create answers this error at once; otherwise its operation fails
		// with msg.
		sync     bool
		code     int
		msg      string
		want     error // nil: no kind
		alsoWant error
	}{
		{"missing image", true, 404, "Image alias not found", ErrNotFound, nil},
		{"missing profile answers 500", true, 500, `Requested profile "x" doesn't exist`, ErrNotFound, nil},
		{"missing project", true, 404, "Failed loading project: Project not found", ErrNotFound, nil},
		{"bad name", true, 400, "Invalid instance name: Name can only contain alphanumeric and hyphen characters", ErrInvalid, nil},
		{"untrusted client", true, 403, "not authorized", ErrForbidden, nil},
		{"server error", true, 500, "Failed to begin transaction", nil, nil},
		{"name taken", false, 0, `Failed creating instance record: Add instance info to the database: This "instances" entry already exists`, ErrExists, nil},
		{"storage full", false, 0, "Failed creating instance from image: Unpack failed: write /var/lib/lxd/x: no space left on device", ErrQuota, backends.ErrQuota},
		{"project limit", false, 0, `Reached maximum number of instances in project "ci"`, ErrQuota, backends.ErrQuota},
		{"busy", false, 0, `Failed to create instance delete operation: Instance is busy running a "stop" operation`, ErrBusy, nil},
		{"unknown key", false, 0, "Failed creating instance record: Unknown configuration key: foo.bar", ErrInvalid, nil},
		{"missing pool", false, 0, "Failed creating instance record: Failed initialising instance: Failed loading storage pool: Storage pool not found", ErrNotFound, nil},
		{"type mismatch", false, 0, `Requested image's type "container" doesn't match instance type "virtual-machine"`, ErrInvalid, nil},
		{"odd failure", false, 0, "Failed to run: forkstart: exit status 1", nil, nil},
	}
	kinds := []error{ErrNotFound, ErrExists, ErrQuota, ErrInvalid, ErrForbidden, ErrUnreachable, ErrTimeout, ErrBusy}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeLXD(t)
			f.fault = func(action, _ string) string { return tt.msg }
			c := f.client(t, ClientOptions{})
			if tt.sync {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { lxdError(w, tt.code, tt.msg) }))
				t.Cleanup(srv.Close)
				c.base, c.hc = srv.URL, srv.Client()
			}
			err := c.CreateInstance(t.Context(), InstancesPost{Name: "a1", Source: InstanceSource{Type: "image", Alias: "tiny"}})
			if err == nil {
				t.Fatal("CreateInstance succeeded, want an error")
			}
			var le *Error
			if !errors.As(err, &le) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			if le.Message != tt.msg {
				t.Errorf("Message = %q, want LXD's own %q", le.Message, tt.msg)
			}
			for _, k := range kinds {
				if got, want := errors.Is(err, k), k == tt.want; got != want {
					t.Errorf("errors.Is(%v, %q) = %v, want %v", err, k, got, want)
				}
			}
			if tt.alsoWant != nil && !errors.Is(err, tt.alsoWant) {
				t.Errorf("errors.Is(%v, %q) = false", err, tt.alsoWant)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	tests := []struct {
		name string
		opts func(t *testing.T) ClientOptions
		want string // in the message
	}{
		{"missing socket", func(t *testing.T) ClientOptions {
			return ClientOptions{Socket: filepath.Join(t.TempDir(), "none.socket")}
		}, "none.socket"},
		{"refused", func(t *testing.T) ClientOptions {
			dir := t.TempDir()
			ln, err := net.Listen("unix", filepath.Join(dir, "s"))
			if err != nil {
				t.Fatal(err)
			}
			ln.Close() // the file stays, nobody listens
			return ClientOptions{Socket: filepath.Join(dir, "s")}
		}, "no answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.opts(t))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Server(t.Context())
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("Server() = %v, want ErrUnreachable", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestNotLXDAnswering(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte("<html>bad gateway</html>"))
	}))
	defer srv.Close()
	c, err := NewClient(ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.base, c.hc = srv.URL, srv.Client()
	_, err = c.Server(t.Context())
	var le *Error
	if !errors.As(err, &le) || le.Code != http.StatusBadGateway || !strings.Contains(le.Message, "bad gateway") {
		t.Fatalf("Server() = %v, want an *Error with code 502 and the body", err)
	}
}

func TestUnixSocket(t *testing.T) {
	f := newFakeLXD(t)
	sock := filepath.Join(t.TempDir(), "unix.socket")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	defer func() { srv.Close(); wg.Wait() }()

	c, err := NewClient(ClientOptions{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.Server(t.Context())
	if err != nil {
		t.Fatalf("Server over the socket: %v", err)
	}
	if s.Auth != "trusted" || !s.HasExtension("api_filtering") {
		t.Errorf("Server() = %+v", s)
	}
}

func TestProjectOnEveryRequest(t *testing.T) {
	f := newFakeLXD(t)
	c := f.client(t, ClientOptions{Project: "ci"})
	b, err := New(c, Options{DeploymentID: "d", Flavor: "f", Image: "tiny", Bootstrap: BootstrapExec})
	if err != nil {
		t.Fatal(err)
	}
	spec := backends.InstanceSpec{Name: "r1", Flavor: "f", Script: "true"}
	if _, err := b.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	if _, err := b.List(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(t.Context(), "r1"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) < 8 {
		t.Fatalf("only %d requests recorded", len(f.requests))
	}
	for _, r := range f.requests {
		if got := r.Query["project"]; len(got) != 1 || got[0] != "ci" {
			t.Errorf("%s %s has project=%v, want ci", r.Method, r.Path, got)
		}
	}
}

func TestOperationWaitTimeout(t *testing.T) {
	f := newFakeLXD(t)
	f.hold = make(chan struct{})
	t.Cleanup(func() { close(f.hold) })
	c := f.client(t, ClientOptions{OperationTimeout: 1500 * time.Millisecond})
	start := time.Now()
	err := c.CreateInstance(t.Context(), InstancesPost{Name: "slow", Source: InstanceSource{Type: "image", Alias: "tiny"}})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CreateInstance = %v, want ErrTimeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("gave up after %v, want about the 1.5 s operation timeout", took)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.requests {
		if strings.HasSuffix(r.Path, "/wait") && r.Query["timeout"][0] != "1" {
			t.Errorf("wait asked for timeout=%s, want 1 (what is left of 1.5 s)", r.Query["timeout"][0])
		}
	}
}

func TestCallerCancelStopsWait(t *testing.T) {
	f := newFakeLXD(t)
	f.hold = make(chan struct{})
	t.Cleanup(func() { close(f.hold) })
	c := f.client(t, ClientOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		errc <- c.CreateInstance(ctx, InstancesPost{Name: "slow", Source: InstanceSource{Type: "image", Alias: "tiny"}})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for f.count(http.MethodGet, "/1.0/operations/op-1/wait") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the client never waited on the operation")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
			t.Errorf("CreateInstance = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("CreateInstance did not return after its ctx was cancelled")
	}
}

func TestConcurrencyLimit(t *testing.T) {
	f := newFakeLXD(t)
	f.hold = make(chan struct{})
	c := f.client(t, ClientOptions{MaxConcurrentOperations: 2})
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = c.CreateInstance(t.Context(), InstancesPost{Name: "c" + string(rune('a'+i)), Source: InstanceSource{Type: "image", Alias: "tiny"}})
		})
	}
	// Two operations reach the server and stay there; the others wait for a slot.
	deadline := time.Now().Add(5 * time.Second)
	for f.count(http.MethodPost, "/1.0/instances") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no operation reached the server")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := f.count(http.MethodPost, "/1.0/instances"); got != 2 {
		t.Errorf("%d creates reached the server while 2 were held, want 2", got)
	}
	close(f.hold)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("create %d: %v", i, err)
		}
	}
	if f.peak > 2 {
		t.Errorf("%d operations ran at once, limit 2", f.peak)
	}
	if got := f.count(http.MethodPost, "/1.0/instances"); got != n {
		t.Errorf("%d creates reached the server, want %d", got, n)
	}
}

// TestRemoteTLS: a remote server is reached with our client certificate, and only
// when it presents exactly the pinned certificate.
func TestRemoteTLS(t *testing.T) {
	f := newFakeLXD(t)
	var sawClientCert bool
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sawClientCert = r.TLS != nil && len(r.TLS.PeerCertificates) == 1
		mu.Unlock()
		f.serve(w, r)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	serverPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	clientCert, clientKey := testcert.SelfSigned(t, "spawner")
	otherCert, _ := testcert.SelfSigned(t, "impostor")

	tests := []struct {
		name    string
		opts    ClientOptions
		wantErr error // nil: works
	}{
		{"pinned certificate", ClientOptions{URL: srv.URL, ClientCert: clientCert, ClientKey: clientKey, ServerCert: serverPEM}, nil},
		{"another certificate pinned", ClientOptions{URL: srv.URL, ClientCert: clientCert, ClientKey: clientKey, ServerCert: otherCert}, ErrUnreachable},
		{"nothing pinned, self-signed server", ClientOptions{URL: srv.URL, ClientCert: clientCert, ClientKey: clientKey}, ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.opts)
			if err != nil {
				t.Fatalf("NewClient: %v", err)
			}
			defer c.Close()
			_, err = c.Server(t.Context())
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Server: %v", err)
				}
				mu.Lock()
				defer mu.Unlock()
				if !sawClientCert {
					t.Error("the server saw no client certificate")
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Server = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestClientOptionsValidate(t *testing.T) {
	cert, key := testcert.SelfSigned(t, "x")
	tests := []struct {
		name string
		opts ClientOptions
		want string // "" = valid
	}{
		{"zero is the local socket", ClientOptions{}, ""},
		{"remote", ClientOptions{URL: "https://lxd:8443", ClientCert: cert, ClientKey: key}, ""},
		{"plain http", ClientOptions{URL: "http://lxd:8443", ClientCert: cert, ClientKey: key}, "must be https"},
		{"remote without certificate", ClientOptions{URL: "https://lxd:8443"}, "client certificate"},
		{"socket and url", ClientOptions{URL: "https://lxd", Socket: "/s", ClientCert: cert, ClientKey: key}, "set one of them"},
		{"negative limit", ClientOptions{MaxConcurrentOperations: -1}, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want it to say %q", err, tt.want)
			}
		})
	}
}
