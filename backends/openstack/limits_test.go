package openstack

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestLimiterCapsConcurrency(t *testing.T) {
	l := newLimiter(2, 1000)
	r1, err := l.acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third acquire with two slots held = %v, want to wait until the deadline", err)
	}
	r1()
	r3, err := l.acquire(t.Context())
	if err != nil {
		t.Fatalf("acquire after a release: %v", err)
	}
	r2()
	r3()
}

func TestLimiterCapsRate(t *testing.T) {
	l := newLimiter(8, 1) // one request a second, burst 1
	r, err := l.acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := l.acquire(ctx); err == nil {
		t.Fatal("second request within the second was let through")
	}
	// The refused waiter must have given its slot back.
	if n := len(l.slots); n != 0 {
		t.Errorf("%d slots held after a refused wait, want 0", n)
	}
}

// Only Nova's requests spend the budget; Glance, Neutron and Keystone pass freely.
func TestTransportLimitsOnlyCompute(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	tr := &limitedTransport{base: http.DefaultTransport, limits: newLimiter(1, 1000), prefix: srv.URL + "/compute/v2.1"}
	release, err := tr.limits.acquire(t.Context()) // the only slot, held
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	client := &http.Client{Transport: tr}
	get := func(path string, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get("/image/v2/images", 5*time.Second); err != nil {
		t.Errorf("image request waited for a compute slot: %v", err)
	}
	if err := get("/compute/v2.1/servers/detail", 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("compute request with no free slot = %v, want to wait", err)
	}
}
