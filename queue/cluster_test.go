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
	var states []*queue.Bucket[doc]
	for i := range 3 {
		states = append(states, openDocs(t, (&queuetest.Server{}).ConnectURL(t, urls[i])))
	}
	if err := states[0].Create(t.Context(), "r", &doc{Name: "r"}); err != nil {
		t.Fatal(err)
	}
	// A node that was away and comes back is behind until it catches up: reads through
	// it must still see the latest writes.
	c.Kill(2)
	for i := range 50 {
		if _, err := states[0].Update(t.Context(), "r", nil, func(d *doc) error { d.N = i; return nil }); err != nil {
			t.Fatalf("write while a node is down: %v", err)
		}
	}
	c.Restart(2)
	for i := range 200 {
		w, r := states[i%3], states[(i+1)%3]
		want := fmt.Sprintf("hash-%d", i)
		if _, err := w.Update(t.Context(), "r", nil, func(d *doc) error { d.Name = want; return nil }); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got, err := r.Get(t.Context(), "r")
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if got.Name != want {
			t.Fatalf("read %d through another node saw %q, want %q: a stale read", i, got.Name, want)
		}
	}
}
