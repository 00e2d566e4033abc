package httpserve

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// serve runs a Server with opts whose handler answers 408 when the body cannot be read
// in time, and returns its address.
func serve(t *testing.T, opts Options) string {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, os.ErrDeadlineExceeded) {
				code = http.StatusRequestTimeout
			}
			w.WriteHeader(code)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	srv, err := ListenOptions("test", "127.0.0.1:0", h, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return srv.Addr()
}

// TestReadTimeoutEndsStalledRequests: a client that declares a body and stops sending,
// or stops in the middle of its headers, is cut off once ReadTimeout has passed, and not
// after the 30 s every listener used to have.
func TestReadTimeoutEndsStalledRequests(t *testing.T) {
	addr := serve(t, Options{ReadTimeout: 300 * time.Millisecond})
	for name, req := range map[string]string{
		"stalled body":    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
		"stalled headers": "POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			// Far below the old 30 s, far above 300 ms: the bound is what is checked.
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(bufio.NewReader(c))
			if err != nil {
				t.Fatalf("connection still open 10 s after a 300 ms read timeout: %v (read %q)", err, got)
			}
			if name == "stalled body" && !strings.HasPrefix(string(got), "HTTP/1.1 408") {
				t.Errorf("answer to a stalled body: %q, want 408", got)
			}
		})
	}
}

func TestDefaultOptions(t *testing.T) {
	for _, tc := range []struct {
		in                 Options
		wantRead, wantHead time.Duration
	}{
		{Options{}, 30 * time.Second, 5 * time.Second},
		{Options{ReadTimeout: 2 * time.Second}, 2 * time.Second, 2 * time.Second},
		{Options{ReadTimeout: 10 * time.Second, ReadHeaderTimeout: time.Second}, 10 * time.Second, time.Second},
	} {
		srv, err := ListenOptions("test", "127.0.0.1:0", http.NotFoundHandler(), nil, tc.in)
		if err != nil {
			t.Fatal(err)
		}
		srv.ln.Close()
		if srv.srv.ReadTimeout != tc.wantRead || srv.srv.ReadHeaderTimeout != tc.wantHead {
			t.Errorf("%+v: read %s, header %s; want %s, %s", tc.in, srv.srv.ReadTimeout, srv.srv.ReadHeaderTimeout, tc.wantRead, tc.wantHead)
		}
	}
}
