package queue_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

func event(jobID int64, action, delivery string) *queue.JobEvent {
	return &queue.JobEvent{
		DeliveryID: delivery, ReceivedAt: time.Now().UTC(), Source: queue.SourceWebhook, Action: action,
		JobID: jobID, RunID: 7, RunAttempt: 1, Repo: "octo-org/octo-repo",
		Labels: []string{"self-hosted", "small"}, NormLabels: []string{"small"}, Flavor: "small",
	}
}

func TestPublishStoresOnceAndDeduplicates(t *testing.T) {
	srv := queuetest.Start(t)
	c := srv.Connect(t, queue.Options{})
	ctx := t.Context()

	first, err := c.PublishJobEvent(ctx, event(1, queue.ActionQueued, "d-1"))
	if err != nil || first.Duplicate {
		t.Fatalf("first publish: %+v %v", first, err)
	}
	again, err := c.PublishJobEvent(ctx, event(1, queue.ActionQueued, "d-1"))
	if err != nil || !again.Duplicate {
		t.Fatalf("same delivery again: %+v %v, want a duplicate", again, err)
	}
	if _, err := c.PublishJobEvent(ctx, event(1, queue.ActionInProgress, "d-2")); err != nil {
		t.Fatal(err)
	}
	// Without a delivery id the job, action and attempt de-duplicate.
	noID := event(2, queue.ActionQueued, "")
	if _, err := c.PublishJobEvent(ctx, noID); err != nil {
		t.Fatal(err)
	}
	if r, err := c.PublishJobEvent(ctx, event(2, queue.ActionQueued, "")); err != nil || !r.Duplicate {
		t.Fatalf("no delivery id, same job/action/attempt: %+v %v", r, err)
	}

	st, err := srv.JetStream(t).Stream(ctx, queue.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("spawner.jobs.>"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Errorf("stream holds %d messages, want 3", info.State.Msgs)
	}
	if n := info.State.Subjects["spawner.jobs.small.queued"]; n != 2 {
		t.Errorf("spawner.jobs.small.queued holds %d, want 2", n)
	}
	msg, err := st.GetMsg(ctx, first.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	got, err := queue.UnmarshalJobEvent(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.JobID != 1 || got.V != queue.EnvelopeVersion || got.Flavor != "small" {
		t.Errorf("stored event: %+v", got)
	}
}

func TestFullStreamRefuses(t *testing.T) {
	srv := queuetest.Start(t)
	c := srv.Connect(t, queue.Options{Streams: queue.StreamOptions{MaxMsgs: 2}})
	ctx := t.Context()
	for i := range 2 {
		if _, err := c.PublishJobEvent(ctx, event(int64(10+i), queue.ActionQueued, "")); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.PublishJobEvent(ctx, event(99, queue.ActionQueued, ""))
	if !errors.Is(err, queue.ErrStreamFull) {
		t.Fatalf("publish into a full stream = %v, want ErrStreamFull", err)
	}
}

func TestPublishFailsFastWhileDownAndRecovers(t *testing.T) {
	srv := queuetest.Start(t)
	c := srv.Connect(t, queue.Options{})
	srv.Stop()
	waitFor(t, func() bool { return !c.Connected() })

	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	_, err := c.PublishJobEvent(ctx, event(5, queue.ActionQueued, "down-1"))
	cancel()
	if err == nil {
		t.Fatal("publish while NATS is down succeeded")
	}
	if c.Ready(t.Context()) == nil {
		t.Error("Ready() = nil while NATS is down")
	}

	srv.Restart()
	waitFor(t, func() bool { return c.Ready(t.Context()) == nil })
	if _, err := c.PublishJobEvent(t.Context(), event(5, queue.ActionQueued, "up-1")); err != nil {
		t.Fatalf("publish after restart: %v", err)
	}
	// The failed publish must not have been buffered and sent on reconnect.
	st, _ := srv.JetStream(t).Stream(t.Context(), queue.StreamJobs)
	info, _ := st.Info(t.Context())
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages after restart, want 1 (the failed publish must not be replayed)", info.State.Msgs)
	}
}

func TestUnmarshalJobEventRejects(t *testing.T) {
	tests := map[string]string{
		"not json":      "{",
		"newer version": `{"v":99,"job_id":1,"flavor":"x"}`,
		"no version":    `{"job_id":1,"flavor":"x"}`,
		"no job":        `{"v":1,"flavor":"x"}`,
		"no flavor":     `{"v":1,"job_id":1}`,
	}
	for name, in := range tests {
		if _, err := queue.UnmarshalJobEvent([]byte(in)); err == nil {
			t.Errorf("%s: accepted %s", name, in)
		}
	}
}

func TestParseJobSubject(t *testing.T) {
	f, a, ok := queue.ParseJobSubject(queue.JobSubject("large-arm", queue.ActionInProgress))
	if !ok || f != "large-arm" || a != queue.ActionInProgress {
		t.Errorf("round trip: %q %q %v", f, a, ok)
	}
	for _, bad := range []string{"spawner.jobs.x", "other.jobs.x.queued", "spawner.jobs..queued", "spawner.jobs.x.a.b"} {
		if _, _, ok := queue.ParseJobSubject(bad); ok {
			t.Errorf("ParseJobSubject(%q) ok", bad)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTooLargeIsPermanent: an event over the stream's message size or over the server's
// max payload is refused at once with ErrEventTooLarge; before, the second was retried
// until the deadline and both looked like an unavailable queue.
func TestTooLargeIsPermanent(t *testing.T) {
	srv := queuetest.Start(t)
	c := srv.Connect(t, queue.Options{})
	for name, size := range map[string]int{"over the stream's max message size": 100 << 10, "over the server's max payload": 2 << 20} {
		t.Run(name, func(t *testing.T) {
			ev := event(20, queue.ActionQueued, "big")
			ev.JobName = strings.Repeat("x", size)
			// A deadline far beyond any retry: a retried publish ends with it instead.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, err := c.PublishJobEvent(ctx, ev)
			if !errors.Is(err, queue.ErrEventTooLarge) {
				t.Fatalf("publish of a %d-byte event: %v, want ErrEventTooLarge", size, err)
			}
			if ctx.Err() != nil {
				t.Fatalf("publish waited for its deadline: %v", err)
			}
		})
	}
	// The connection is still usable: nothing was sent.
	if _, err := c.PublishJobEvent(t.Context(), event(21, queue.ActionQueued, "small-after")); err != nil {
		t.Fatalf("publish after the refusals: %v", err)
	}
}
