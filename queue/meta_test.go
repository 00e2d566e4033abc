package queue_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

func TestMetaAndRedeliveries(t *testing.T) {
	st, err := queuetest.Start(t).Connect(t, queue.Options{}).State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var got map[string]int
	if err := st.Meta(ctx, queue.MetaLastReconcile, &got); !errors.Is(err, fleet.ErrNoRecord) {
		t.Fatalf("unwritten meta: %v, want ErrNoRecord", err)
	}
	want := map[string]int{"deleted": 3}
	if err := st.PutMeta(ctx, queue.MetaLastReconcile, want); err != nil {
		t.Fatal(err)
	}
	if err := st.Meta(ctx, queue.MetaLastReconcile, &got); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("meta (-want +got):\n%s", d)
	}

	guid := "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	if _, err := st.Redelivery(ctx, guid); !errors.Is(err, fleet.ErrNoRecord) {
		t.Fatalf("unknown guid: %v", err)
	}
	bump := func(after int64) (*queue.RedeliveryRecord, error) {
		return st.UpdateRedelivery(ctx, guid, func(r *queue.RedeliveryRecord) error {
			if r.AfterAttempt >= after {
				return queue.ErrSkip
			}
			r.Count++
			r.AfterAttempt = after
			r.At = time.Now()
			return nil
		})
	}
	tests := []struct {
		name      string
		after     int64
		wantSkip  bool
		wantCount int
	}{
		{"first redelivery", 10, false, 1},
		{"same attempt again is skipped", 10, true, 1},
		{"a later failed attempt", 12, false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bump(tc.after)
			if tc.wantSkip != errors.Is(err, queue.ErrSkip) || (!tc.wantSkip && err != nil) {
				t.Fatalf("err = %v, want skip %v", err, tc.wantSkip)
			}
			rec, err := st.Redelivery(ctx, guid)
			if err != nil || rec.Count != tc.wantCount {
				t.Fatalf("record %+v, %v; want count %d", rec, err, tc.wantCount)
			}
		})
	}
}

// TestFlushResultJSON pins the keys scripts read from `spawner flush --json`.
func TestFlushResultJSON(t *testing.T) {
	data, err := json.Marshal(control.FlushResult{Mode: "FLUSH_IDLE", Removed: 2, SkippedBusy: 1, Failed: 0, WaitedSeconds: 1.5, Error: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"mode": "FLUSH_IDLE", "removed": 2.0, "skipped_busy": 1.0, "failed": 0.0, "waited_seconds": 1.5, "error": "x"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("flush result JSON (-want +got):\n%s", d)
	}
}
