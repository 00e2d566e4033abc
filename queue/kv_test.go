package queue_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

// doc stands for a record: the queue stores documents of any type, and knows none.
type doc struct {
	Name  string   `json:"name"`
	Items []string `json:"items,omitempty"`
	N     int      `json:"n"`
}

func openDocs(t *testing.T, conn *queue.Conn) *queue.Bucket[doc] {
	t.Helper()
	b, err := queue.OpenBucket[doc](t.Context(), conn, queue.BucketRunners)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBucketCreateUpdateSkip(t *testing.T) {
	b := openDocs(t, queuetest.Start(t).Connect(t, queue.Options{}))
	ctx := t.Context()
	for i := range 25 {
		if err := b.Create(ctx, fmt.Sprintf("d-%d", i), &doc{Name: fmt.Sprintf("d-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Create(ctx, "d-3", &doc{}); !errors.Is(err, queue.ErrExists) {
		t.Errorf("duplicate create: %v", err)
	}
	got, err := b.Update(ctx, "d-3", nil, func(d *doc) error { d.N = 7; return nil })
	if err != nil || got.N != 7 {
		t.Fatalf("update: %+v %v", got, err)
	}
	// A skip writes nothing and answers the value as it was read, even if fn edited it.
	got, err = b.Update(ctx, "d-3", nil, func(d *doc) error { d.N = 99; return queue.ErrSkip })
	if !errors.Is(err, queue.ErrSkip) || got == nil || got.N != 7 {
		t.Errorf("skip: %+v %v, want the stored value with ErrSkip", got, err)
	}
	if d, _ := b.Get(ctx, "d-3"); d.N != 7 {
		t.Errorf("a skip wrote %+v", d)
	}
	if _, err := b.Update(ctx, "nope", nil, func(*doc) error { return nil }); !errors.Is(err, queue.ErrNoRecord) {
		t.Errorf("update of a missing key without fresh: %v", err)
	}
	// A missing key with fresh: fn sees fresh(); a skip leaves the key absent.
	got, err = b.Update(ctx, "new", func() *doc { return &doc{Name: "new"} }, func(*doc) error { return queue.ErrSkip })
	if !errors.Is(err, queue.ErrSkip) || got != nil {
		t.Errorf("skip of a missing key: %+v %v", got, err)
	}
	if _, err := b.Get(ctx, "new"); !errors.Is(err, queue.ErrNoRecord) {
		t.Errorf("a skipped missing key was created: %v", err)
	}
	got, err = b.Update(ctx, "new", func() *doc { return &doc{Name: "new"} }, func(d *doc) error { d.N = 1; return nil })
	if err != nil || got.Name != "new" || got.N != 1 {
		t.Errorf("create through update: %+v %v", got, err)
	}
	all, err := b.All(ctx, nil)
	if err != nil || len(all) != 26 {
		t.Fatalf("scan found %d documents (%v)", len(all), err)
	}
	some, err := b.All(ctx, func(key string) bool { return key == "d-1" || key == "new" })
	if err != nil || len(some) != 2 {
		t.Errorf("scan with a key filter found %d (%v)", len(some), err)
	}
}

// TestBucketConcurrentUpdatesLoseNothing: compare-and-set from many writers at once,
// on three connections (three processes): every write lands.
func TestBucketConcurrentUpdatesLoseNothing(t *testing.T) {
	srv := queuetest.Start(t)
	var buckets []*queue.Bucket[doc]
	for range 3 {
		buckets = append(buckets, openDocs(t, srv.Connect(t, queue.Options{})))
	}
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			_, err := buckets[i%3].Update(t.Context(), "shared", func() *doc { return &doc{} }, func(d *doc) error {
				d.Items = append(d.Items, fmt.Sprintf("i-%d", i))
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	d, err := buckets[0].Get(t.Context(), "shared")
	if err != nil || len(d.Items) != 60 {
		t.Fatalf("document has %d items after 60 concurrent appends (%v)", len(d.Items), err)
	}
}
