// Package fleettest plants job and runner records in any state, for tests that start
// from a fleet as it would be after some history (a runner stuck booting, a slot
// without a record). Product code moves records only through fleet's verbs; tests may
// write them whole through here.
//
// It is a test tool: only tests import it.
package fleettest

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"
)

// PutRunner stores rec as it is (CreatedAt and UpdatedAt default to now).
func PutRunner(t testing.TB, conn *queue.Conn, rec fleet.RunnerRecord) {
	t.Helper()
	b, err := queue.OpenBucket[fleet.RunnerRecord](t.Context(), conn, queue.BucketRunners)
	if err != nil {
		t.Fatal(err)
	}
	stamp(&rec.CreatedAt, &rec.UpdatedAt)
	if err := b.Put(t.Context(), rec.Name, &rec); err != nil {
		t.Fatal(err)
	}
}

// PutJob stores rec as it is (UpdatedAt defaults to now).
func PutJob(t testing.TB, conn *queue.Conn, rec fleet.JobRecord) {
	t.Helper()
	b, err := queue.OpenBucket[fleet.JobRecord](t.Context(), conn, queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	var created time.Time
	stamp(&created, &rec.UpdatedAt)
	if err := b.Put(t.Context(), strconv.FormatInt(rec.ID, 10), &rec); err != nil {
		t.Fatal(err)
	}
}

// PutCapacity stores a flavor's capacity record as it is.
func PutCapacity(t testing.TB, conn *queue.Conn, flavor string, rec fleet.CapacityRecord) {
	t.Helper()
	b, err := queue.OpenBucket[fleet.CapacityRecord](t.Context(), conn, queue.BucketCapacity)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(t.Context(), flavor, &rec); err != nil {
		t.Fatal(err)
	}
}

// Raw reads a runner record's stored JSON, for tests that check what the store holds
// (a token's hash, never the token).
func Raw(t testing.TB, conn *queue.Conn, bucket, key string) []byte {
	t.Helper()
	b, err := queue.OpenBucket[json.RawMessage](t.Context(), conn, bucket)
	if err != nil {
		t.Fatal(err)
	}
	v, err := b.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return *v
}

func stamp(created, updated *time.Time) {
	now := time.Now().UTC()
	if created.IsZero() {
		*created = now
	}
	if updated.IsZero() {
		*updated = now
	}
}

// EditRunner changes a stored runner record as edit says (compare-and-set), for tests
// that stand in for what an instance or another process would have done.
func EditRunner(t testing.TB, conn *queue.Conn, name string, edit func(*fleet.RunnerRecord)) {
	t.Helper()
	b, err := queue.OpenBucket[fleet.RunnerRecord](t.Context(), conn, queue.BucketRunners)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Update(t.Context(), name, nil, func(r *fleet.RunnerRecord) error { edit(r); return nil }); err != nil {
		t.Fatal(err)
	}
}

// EditJob changes (or creates, from a record with only ID set) a stored job record
// as edit says.
func EditJob(t testing.TB, conn *queue.Conn, id int64, edit func(*fleet.JobRecord)) {
	t.Helper()
	b, err := queue.OpenBucket[fleet.JobRecord](t.Context(), conn, queue.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	fresh := func() *fleet.JobRecord { return &fleet.JobRecord{ID: id} }
	if _, err := b.Update(t.Context(), strconv.FormatInt(id, 10), fresh, func(j *fleet.JobRecord) error { edit(j); return nil }); err != nil {
		t.Fatal(err)
	}
}
