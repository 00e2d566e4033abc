package queue_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

func TestLeaseLifecycle(t *testing.T) {
	srv := queuetest.Start(t)
	a, err := srv.Connect(t, queue.Options{}).State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := srv.Connect(t, queue.Options{}).State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	if h, err := a.LeaseHolder(ctx, "janitor"); err != nil || h != "" {
		t.Fatalf("holder of a free lease = %q, %v", h, err)
	}
	la, err := a.AcquireLease(ctx, "janitor", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AcquireLease(ctx, "janitor", "b"); !errors.Is(err, queue.ErrLeaseHeld) || !strings.Contains(err.Error(), "(a)") {
		t.Fatalf("second holder: %v, want ErrLeaseHeld naming a", err)
	}
	if err := a.RenewLease(ctx, la); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if err := a.RenewLease(ctx, la); err != nil {
		t.Fatalf("second renew: %v", err)
	}
	if h, _ := b.LeaseHolder(ctx, "janitor"); h != "a" {
		t.Fatalf("holder = %q, want a", h)
	}

	// A holder that lost track of its revision (a renew whose answer was lost) takes
	// its own lease back; nobody else can.
	again, err := a.AcquireLease(ctx, "janitor", "a")
	if err != nil {
		t.Fatalf("re-acquire own lease: %v", err)
	}
	if err := a.RenewLease(ctx, la); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("renew at a stale revision: %v, want ErrLeaseLost", err)
	}

	// Release hands it over at once, and the watcher of a standby sees it.
	seen := make(chan struct{}, 100)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = b.WatchLease(wctx, "janitor", func() { seen <- struct{}{} }) }()
	// Renew until the watch reports a write: then it is live.
	for live := false; !live; {
		if err := a.RenewLease(ctx, again); err != nil {
			t.Fatal(err)
		}
		select {
		case <-seen:
			live = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	for len(seen) > 0 {
		<-seen
	}
	if err := a.ReleaseLease(ctx, again); err != nil {
		t.Fatalf("release: %v", err)
	}
	select {
	case <-seen:
	case <-time.After(5 * time.Second):
		t.Error("the standby's watch did not see the release")
	}
	lb, err := b.AcquireLease(ctx, "janitor", "b")
	if err != nil {
		t.Fatalf("standby acquire after release: %v", err)
	}
	if err := a.ReleaseLease(ctx, again); !errors.Is(err, queue.ErrLeaseLost) {
		t.Fatalf("releasing a lease taken over: %v, want ErrLeaseLost", err)
	}
	if h, _ := a.LeaseHolder(ctx, "janitor"); h != "b" {
		t.Fatalf("holder = %q, want b", h)
	}
	info, err := a.LeaseInfo(ctx, "janitor")
	if err != nil || info.AcquiredAt.IsZero() || info.RenewedAt.Before(info.AcquiredAt) {
		t.Fatalf("lease info %+v, %v", info, err)
	}
	if err := b.ReleaseLease(ctx, lb); err != nil {
		t.Fatal(err)
	}
}
