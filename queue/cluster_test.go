package queue_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

// TestReplicatedStateReadsItsWrites: on a 3-node cluster the buckets are R3, and a
// write through one node must be seen at once by a read through another (a token
// stored by the consumer, checked by the bootstrap endpoint in another process).
func TestReplicatedStateReadsItsWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster")
	}
	c := queuetest.StartCluster(t, 3)
	urls := strings.Split(c.URL(), ",")
	var states []*queue.State
	for i := range 3 {
		conn := (&queuetest.Server{}).ConnectURL(t, urls[i])
		st, err := conn.State(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, st)
	}
	if err := states[0].CreateRunner(t.Context(), &queue.RunnerRecord{Name: "r", State: queue.RunnerCreating}); err != nil {
		t.Fatal(err)
	}
	// A node that was away and comes back is behind until it catches up: reads through
	// it must still see the latest writes.
	c.Kill(2)
	for i := range 50 {
		if _, err := states[0].UpdateRunner(t.Context(), "r", func(rec *queue.RunnerRecord) error { rec.Attempts = i; return nil }); err != nil {
			t.Fatalf("write while a node is down: %v", err)
		}
	}
	c.Restart(2)
	for i := range 200 {
		w, r := states[i%3], states[(i+1)%3]
		want := fmt.Sprintf("hash-%d", i)
		if _, err := w.UpdateRunner(t.Context(), "r", func(rec *queue.RunnerRecord) error { rec.CallbackHash = want; return nil }); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got, err := r.Runner(t.Context(), "r")
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if got.CallbackHash != want {
			t.Fatalf("read %d through another node saw %q, want %q: a stale read", i, got.CallbackHash, want)
		}
	}
}
