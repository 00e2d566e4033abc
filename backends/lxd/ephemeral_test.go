package lxd

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
)

// ephemeralBackend is a backend of ephemeral instances on f, with its one instance
// r1 running.
func ephemeralBackend(t *testing.T, f *fakeLXD) *Backend {
	t.Helper()
	b := fakeBackend(t, f, func(o *Options) { o.Ephemeral = true })
	f.addInstance("r1", "Running", ourTags("r1"))
	f.mu.Lock()
	f.instances["r1"].Ephemeral = true
	f.mu.Unlock()
	return b
}

// deleteFinished runs DeleteFinished on r1 in the background, and returns its
// result channel once the wait is under way (its event stream is open).
func deleteFinished(t *testing.T, f *fakeLXD, b *Backend) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- backends.DeleteFinished(t.Context(), b, "r1") }()
	deadline := time.Now().Add(5 * time.Second)
	for f.streams() == 0 || f.count(http.MethodGet, "/1.0/instances/r1") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("DeleteFinished never opened its event stream and looked")
		}
		time.Sleep(time.Millisecond)
	}
	return done
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("DeleteFinished did not return")
		return nil
	}
}

// apiCalls reports whether r1 was stopped or deleted through the API.
func apiCalls(f *fakeLXD) (stopped, deleted bool) {
	return f.count(http.MethodPut, "/1.0/instances/r1/state") > 0, f.count(http.MethodDelete, "/1.0/instances/r1") > 0
}

func TestEphemeralInstanceGoesByItself(t *testing.T) {
	f := newFakeLXD(t)
	b := ephemeralBackend(t, f)
	b.grace, b.recheck = time.Minute, time.Minute // only the event can end the wait
	done := deleteFinished(t, f, b)
	select {
	case err := <-done:
		t.Fatalf("DeleteFinished returned %v while the instance was still running", err)
	case <-time.After(50 * time.Millisecond):
	}
	f.powerOff("r1")
	if err := result(t, done); err != nil {
		t.Fatalf("DeleteFinished: %v", err)
	}
	if stopped, deleted := apiCalls(f); stopped || deleted {
		t.Errorf("stopped %v, deleted %v through the API; want neither: LXD deletes an ephemeral instance itself", stopped, deleted)
	}
	if n := f.streams(); n != 0 {
		// Give the server a moment to see the close.
		time.Sleep(100 * time.Millisecond)
		if n = f.streams(); n != 0 {
			t.Errorf("%d event streams left open", n)
		}
	}
}

func TestEphemeralInstanceAlreadyGone(t *testing.T) {
	f := newFakeLXD(t)
	b := fakeBackend(t, f, func(o *Options) { o.Ephemeral = true })
	if err := b.DeleteFinished(t.Context(), "r1"); err != nil {
		t.Fatalf("DeleteFinished: %v", err)
	}
	if stopped, deleted := apiCalls(f); stopped || deleted {
		t.Errorf("stopped %v, deleted %v; want neither", stopped, deleted)
	}
}

// Every way the wait can fail ends with the instance deleted through the API.
func TestEphemeralWaitFallsBackToDelete(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fakeLXD, b *Backend)
		// during runs while DeleteFinished waits; nil: it does not wait (no stream).
		during      func(f *fakeLXD)
		wantAPIStop bool
	}{
		{"no event stream", func(f *fakeLXD, b *Backend) { f.noEvents = true }, nil, true},
		{"stream lost, as when the daemon restarts", func(f *fakeLXD, b *Backend) { b.grace = time.Minute }, func(f *fakeLXD) { f.dropStreams() }, true},
		{"runner never powers off", func(f *fakeLXD, b *Backend) { b.grace = 200 * time.Millisecond }, func(*fakeLXD) {}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeLXD(t)
			b := ephemeralBackend(t, f)
			b.recheck = time.Minute
			tt.setup(f, b)
			var err error
			if tt.during == nil {
				err = b.DeleteFinished(t.Context(), "r1")
			} else {
				done := deleteFinished(t, f, b)
				tt.during(f)
				err = result(t, done)
			}
			if err != nil {
				t.Fatalf("DeleteFinished: %v", err)
			}
			if f.has("r1") {
				t.Error("instance still there")
			}
			if stopped, _ := apiCalls(f); stopped != tt.wantAPIStop {
				t.Errorf("stopped through the API = %v, want %v", stopped, tt.wantAPIStop)
			}
		})
	}
}

// An event the stream missed costs a look, not the grace.
func TestEphemeralMissedEventIsFoundByLooking(t *testing.T) {
	f := newFakeLXD(t)
	b := ephemeralBackend(t, f)
	b.grace, b.recheck = time.Minute, 50*time.Millisecond
	f.quietDeletes = true
	done := deleteFinished(t, f, b)
	f.powerOff("r1")
	start := time.Now()
	if err := result(t, done); err != nil {
		t.Fatalf("DeleteFinished: %v", err)
	}
	if waited := time.Since(start); waited > 30*time.Second {
		t.Errorf("waited %v: the grace, not a look, ended the wait", waited)
	}
	if stopped, deleted := apiCalls(f); stopped || deleted {
		t.Errorf("stopped %v, deleted %v; want neither", stopped, deleted)
	}
}

func TestDeleteFinishedOfOthers(t *testing.T) {
	// Nothing makes these go by themselves: they are deleted at once, no stream.
	for name, edit := range map[string]func(*Options){
		"not ephemeral":              nil,
		"ephemeral, runner stays up": func(o *Options) { o.Ephemeral, o.NoPowerOff = true, true },
	} {
		t.Run(name+": deleted at once, no stream", func(t *testing.T) {
			f := newFakeLXD(t)
			b := fakeBackend(t, f, edit)
			b.grace = time.Minute
			f.addInstance("r1", "Running", ourTags("r1"))
			if err := b.DeleteFinished(t.Context(), "r1"); err != nil {
				t.Fatalf("DeleteFinished: %v", err)
			}
			if f.has("r1") {
				t.Error("instance still there")
			}
			if n := f.count(http.MethodGet, "/1.0/events"); n != 0 {
				t.Errorf("%d event streams opened", n)
			}
		})
	}
	t.Run("not ours: never waited for nor deleted", func(t *testing.T) {
		f := newFakeLXD(t)
		b := fakeBackend(t, f, func(o *Options) { o.Ephemeral = true })
		f.addInstance("r1", "Running", map[string]string{"user.spawner.deployment": "other", "user.spawner.flavor": "small"})
		err := b.DeleteFinished(t.Context(), "r1")
		if !errors.Is(err, backends.ErrNotFound) {
			t.Fatalf("DeleteFinished = %v, want ErrNotFound", err)
		}
		if !f.has("r1") {
			t.Error("another deployment's instance was deleted")
		}
	})
	t.Run("caller gives up: an error, nothing deleted", func(t *testing.T) {
		f := newFakeLXD(t)
		b := ephemeralBackend(t, f)
		b.grace = time.Minute
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- b.DeleteFinished(ctx, "r1") }()
		for f.streams() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := result(t, done); !errors.Is(err, context.Canceled) {
			t.Fatalf("DeleteFinished = %v, want context.Canceled", err)
		}
		if !f.has("r1") {
			t.Error("deleted after the caller gave up")
		}
	})
}

func TestLifecycleEventInstance(t *testing.T) {
	for source, want := range map[string]string{
		"/1.0/instances/r1":             "r1",
		"/1.0/instances/r1?project=ci":  "r1",
		"/1.0/instances/r1/snapshots/s": "",
		"/1.0/images/abc":               "",
		"":                              "",
	} {
		var ev LifecycleEvent
		ev.Metadata.Source = source
		if got := ev.Instance(); got != want {
			t.Errorf("Instance() of source %q = %q, want %q", source, got, want)
		}
	}
}
