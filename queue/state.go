package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// KV buckets.
const (
	BucketJobs     = "spawner_jobs"
	BucketRunners  = "spawner_runners"
	BucketCapacity = "spawner_capacity"
	BucketLeases   = "spawner_leases"
)

// Records expire this long after their last update, so the buckets do not grow
// forever. GitHub cancels a self-hosted job after 5 days, so no live record is
// ever this old.
const recordTTL = 7 * 24 * time.Hour

// leaseTTL bounds how long a lease survives its holder: the janitor's lease is
// renewed well within it and taken over soon after a holder dies.
const leaseTTL = 15 * time.Second

// LeaseTTL is how long a lease outlives its last renewal.
func LeaseTTL() time.Duration { return leaseTTL }

func bucketConfigsFor(replicas int) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{Bucket: BucketJobs, Description: "job records by job id", TTL: recordTTL, Storage: jetstream.FileStorage, Replicas: replicas, History: 1},
		{Bucket: BucketRunners, Description: "runner records by runner name", TTL: recordTTL, Storage: jetstream.FileStorage, Replicas: replicas, History: 1},
		{Bucket: BucketCapacity, Description: "capacity slots by flavor", Storage: jetstream.FileStorage, Replicas: replicas, History: 1},
		{Bucket: BucketLeases, Description: "leases (active janitor)", TTL: leaseTTL, Storage: jetstream.FileStorage, Replicas: replicas, History: 1},
		metaBucketConfig(replicas), sweeperBucketConfig(replicas),
	}
}

// ErrNoRecord means the key does not exist.
var ErrNoRecord = errors.New("no such record")

// ErrExists means a record that had to be new already exists.
var ErrExists = errors.New("record exists")

// ErrSkip, returned by an update function, leaves the record as it is.
var ErrSkip = errors.New("no change")

// ErrFlavorPaused means no new runner may be claimed for the flavor now (a flush is
// running).
var ErrFlavorPaused = errors.New("flavor paused")

// State is typed access to the KV buckets, with compare-and-set updates.
type State struct {
	jobs, runners, capacity, leases *bucket
	meta, sweeper                   *bucket // queue/meta.go
	now                             func() time.Time
}

// bucket is a KV bucket whose reads come from the stream's leader. The KV API reads
// with direct gets, which any replica of a replicated bucket may answer, a moment
// behind: a token just stored would look wrong, and every compare-and-set after such
// a read would fail. A leader read sees every write acknowledged before it.
type bucket struct {
	jetstream.KeyValue
	nc *nats.Conn
}

// msgGetResponse is JetStream's answer to $JS.API.STREAM.MSG.GET.
type msgGetResponse struct {
	Message *struct {
		Seq  uint64 `json:"seq"`
		Hdrs []byte `json:"hdrs"`
		Data []byte `json:"data"`
	} `json:"message"`
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// latest reads a key's last value and revision from the stream leader. While the
// bucket has no leader (an election after a node died: "temporarily unavailable", no
// responders, a timeout) it retries for a few seconds, within ctx.
func (b *bucket) latest(ctx context.Context, key string) ([]byte, uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	wait := 50 * time.Millisecond
	for {
		data, rev, transient, err := b.latestOnce(ctx, key)
		if !transient {
			return data, rev, err
		}
		select {
		case <-ctx.Done():
			return nil, 0, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

func (b *bucket) latestOnce(ctx context.Context, key string) (data []byte, rev uint64, transient bool, err error) {
	bucketName := b.Bucket()
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + bucketName + "." + key})
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg, err := b.nc.RequestWithContext(rctx, "$JS.API.STREAM.MSG.GET.KV_"+bucketName, req)
	if err != nil {
		return nil, 0, ctx.Err() == nil, fmt.Errorf("read %s/%s: %w", bucketName, key, err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, 0, false, fmt.Errorf("read %s/%s: %w", bucketName, key, err)
	}
	if resp.Error != nil {
		if resp.Error.Code == 404 {
			return nil, 0, false, ErrNoRecord
		}
		return nil, 0, resp.Error.Code >= 500, fmt.Errorf("read %s/%s: %s (%d)", bucketName, key, resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return nil, 0, false, ErrNoRecord
	}
	// A delete or purge marker: the key is gone.
	if h := string(resp.Message.Hdrs); strings.Contains(h, "KV-Operation: DEL") || strings.Contains(h, "KV-Operation: PURGE") {
		return nil, 0, false, ErrNoRecord
	}
	return resp.Message.Data, resp.Message.Seq, false, nil
}

// State opens the buckets (Ensure must have created them).
func (c *Conn) State(ctx context.Context) (*State, error) {
	s := &State{now: time.Now}
	for _, b := range []struct {
		name string
		dst  **bucket
	}{{BucketJobs, &s.jobs}, {BucketRunners, &s.runners}, {BucketCapacity, &s.capacity}, {BucketLeases, &s.leases}, {BucketMeta, &s.meta}, {BucketSweeper, &s.sweeper}} {
		kv, err := c.js.KeyValue(ctx, b.name)
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", b.name, err)
		}
		*b.dst = &bucket{KeyValue: kv, nc: c.nc}
	}
	return s, nil
}

// Job reads a job record.
func (s *State) Job(ctx context.Context, id int64) (*JobRecord, error) {
	var rec JobRecord
	if _, err := get(ctx, s.jobs, jobKey(id), &rec); err != nil {
		return nil, fmt.Errorf("job %d: %w", id, err)
	}
	return &rec, nil
}

// UpdateJob applies fn to the job record under compare-and-set, retrying on
// conflict. A missing record reaches fn as a zero JobRecord with ID set (fn decides
// whether to create it; ErrSkip leaves it absent). It returns the record as stored.
func (s *State) UpdateJob(ctx context.Context, id int64, fn func(*JobRecord) error) (*JobRecord, error) {
	var out *JobRecord
	err := update(ctx, s.jobs, jobKey(id), func() any { return &JobRecord{ID: id} }, true, func(v any) error {
		rec := v.(*JobRecord)
		if err := fn(rec); err != nil {
			return err
		}
		rec.UpdatedAt = s.now().UTC()
		out = rec
		return nil
	})
	if errors.Is(err, ErrSkip) {
		rec, gerr := s.Job(ctx, id)
		if errors.Is(gerr, ErrNoRecord) {
			return nil, err
		}
		return rec, err
	}
	if err != nil {
		return nil, fmt.Errorf("update job %d: %w", id, err)
	}
	return out, nil
}

// Runner reads a runner record.
func (s *State) Runner(ctx context.Context, name string) (*RunnerRecord, error) {
	var rec RunnerRecord
	if _, err := get(ctx, s.runners, name, &rec); err != nil {
		return nil, fmt.Errorf("runner %s: %w", name, err)
	}
	return &rec, nil
}

// CreateRunner stores a new runner record; ErrExists if the name is taken.
func (s *State) CreateRunner(ctx context.Context, rec *RunnerRecord) error {
	now := s.now().UTC()
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = now
	}
	rec.UpdatedAt = now
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := s.runners.Create(ctx, rec.Name, data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("create runner %s: %w", rec.Name, ErrExists)
		}
		return fmt.Errorf("create runner %s: %w", rec.Name, err)
	}
	return nil
}

// UpdateRunner applies fn to an existing runner record under compare-and-set.
func (s *State) UpdateRunner(ctx context.Context, name string, fn func(*RunnerRecord) error) (*RunnerRecord, error) {
	var out *RunnerRecord
	err := update(ctx, s.runners, name, func() any { return &RunnerRecord{} }, false, func(v any) error {
		rec := v.(*RunnerRecord)
		if err := fn(rec); err != nil {
			return err
		}
		rec.UpdatedAt = s.now().UTC()
		out = rec
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("update runner %s: %w", name, err)
	}
	return out, nil
}

// DeleteRunner removes a runner record (the janitor, once the instance is gone).
func (s *State) DeleteRunner(ctx context.Context, name string) error {
	if err := s.runners.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete runner %s: %w", name, err)
	}
	return nil
}

// Runners returns every runner record, in one pass over the bucket.
func (s *State) Runners(ctx context.Context) ([]*RunnerRecord, error) {
	var out []*RunnerRecord
	err := scan(ctx, s.runners, func(data []byte) error {
		var rec RunnerRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			return err
		}
		out = append(out, &rec)
		return nil
	})
	return out, err
}

// Jobs returns every job record, in one pass over the bucket.
func (s *State) Jobs(ctx context.Context) ([]*JobRecord, error) {
	var out []*JobRecord
	err := scan(ctx, s.jobs, func(data []byte) error {
		var rec JobRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			return err
		}
		out = append(out, &rec)
		return nil
	})
	return out, err
}

// Capacity reads a flavor's slots.
func (s *State) Capacity(ctx context.Context, flavor string) (*CapacityRecord, error) {
	rec := &CapacityRecord{}
	if _, err := get(ctx, s.capacity, flavor, rec); err != nil && !errors.Is(err, ErrNoRecord) {
		return nil, fmt.Errorf("capacity %s: %w", flavor, err)
	}
	if rec.Slots == nil {
		rec.Slots = map[string]Slot{}
	}
	return rec, nil
}

// ClaimSlot takes one of the flavor's max slots for runner name, for job. It is
// idempotent (a runner holding a slot keeps it) and atomic across every process:
// false means the flavor is full.
func (s *State) ClaimSlot(ctx context.Context, flavor, name string, job int64, max int) (bool, error) {
	claimed := false
	paused := false
	err := s.updateCapacity(ctx, flavor, func(rec *CapacityRecord) error {
		if _, held := rec.Slots[name]; held {
			claimed = true
			return ErrSkip
		}
		if s.now().Before(rec.PausedUntil) {
			paused = true
			return ErrSkip
		}
		if len(rec.Slots) >= max {
			claimed = false
			return ErrSkip
		}
		rec.Slots[name] = Slot{Job: job, Since: s.now().UTC()}
		claimed = true
		return nil
	})
	if err != nil && !errors.Is(err, ErrSkip) {
		return false, err
	}
	if paused {
		return false, fmt.Errorf("claim %s for %s: %w by %s", name, flavor, ErrFlavorPaused, "a flush")
	}
	return claimed, nil
}

// PauseFlavor stops new claims for the flavor until until (or ResumeFlavor).
func (s *State) PauseFlavor(ctx context.Context, flavor, by string, until time.Time) error {
	err := s.updateCapacity(ctx, flavor, func(rec *CapacityRecord) error {
		rec.PausedUntil, rec.PausedBy = until.UTC(), by
		return nil
	})
	if err != nil && !errors.Is(err, ErrSkip) {
		return err
	}
	return nil
}

// ResumeFlavor lifts a pause set by by (a pause set by someone else stays).
func (s *State) ResumeFlavor(ctx context.Context, flavor, by string) error {
	err := s.updateCapacity(ctx, flavor, func(rec *CapacityRecord) error {
		if rec.PausedBy != by || rec.PausedUntil.IsZero() {
			return ErrSkip
		}
		rec.PausedUntil, rec.PausedBy = time.Time{}, ""
		return nil
	})
	if err != nil && !errors.Is(err, ErrSkip) {
		return err
	}
	return nil
}

// ReleaseSlot frees runner name's slot (idempotent).
func (s *State) ReleaseSlot(ctx context.Context, flavor, name string) error {
	err := s.updateCapacity(ctx, flavor, func(rec *CapacityRecord) error {
		if _, held := rec.Slots[name]; !held {
			return ErrSkip
		}
		delete(rec.Slots, name)
		return nil
	})
	if err != nil && !errors.Is(err, ErrSkip) {
		return err
	}
	return nil
}

// sparesKey is where a flavor's spare index lives (flavor names have no dots, so it
// never meets a flavor's capacity key).
func sparesKey(flavor string) string { return "spares." + flavor }

// Spares returns a flavor's spare index.
func (s *State) Spares(ctx context.Context, flavor string) (map[string]int64, error) {
	rec := &SparesRecord{}
	if _, err := get(ctx, s.capacity, sparesKey(flavor), rec); err != nil && !errors.Is(err, ErrNoRecord) {
		return nil, fmt.Errorf("spares %s: %w", flavor, err)
	}
	if rec.Runners == nil {
		rec.Runners = map[string]int64{}
	}
	return rec.Runners, nil
}

// AddSpare records runner name (meant for job) as spare.
func (s *State) AddSpare(ctx context.Context, flavor, name string, job int64) error {
	return s.updateSpares(ctx, flavor, func(m map[string]int64) bool {
		if j, ok := m[name]; ok && j == job {
			return false
		}
		m[name] = job
		return true
	})
}

// RemoveSpare drops runner name from the spare index (idempotent).
func (s *State) RemoveSpare(ctx context.Context, flavor, name string) error {
	return s.updateSpares(ctx, flavor, func(m map[string]int64) bool {
		if _, ok := m[name]; !ok {
			return false
		}
		delete(m, name)
		return true
	})
}

func (s *State) updateSpares(ctx context.Context, flavor string, fn func(map[string]int64) bool) error {
	err := update(ctx, s.capacity, sparesKey(flavor), func() any { return &SparesRecord{} }, true, func(v any) error {
		rec := v.(*SparesRecord)
		if rec.Runners == nil {
			rec.Runners = map[string]int64{}
		}
		if !fn(rec.Runners) {
			return ErrSkip
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrSkip) {
		return fmt.Errorf("spares %s: %w", flavor, err)
	}
	return nil
}

func (s *State) updateCapacity(ctx context.Context, flavor string, fn func(*CapacityRecord) error) error {
	err := update(ctx, s.capacity, flavor, func() any { return &CapacityRecord{} }, true, func(v any) error {
		rec := v.(*CapacityRecord)
		if rec.Slots == nil {
			rec.Slots = map[string]Slot{}
		}
		return fn(rec)
	})
	if err != nil && !errors.Is(err, ErrSkip) {
		return fmt.Errorf("capacity %s: %w", flavor, err)
	}
	return err
}

// get decodes key into v and returns its revision.
func get(ctx context.Context, kv *bucket, key string, v any) (uint64, error) {
	data, rev, err := kv.latest(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return rev, nil
}

// update is the compare-and-set loop: read, apply fn, write at the revision read;
// on a conflict (another writer won), read again. alloc makes an empty value; a
// missing key reaches fn as that empty value when create is set, and is
// ErrNoRecord otherwise.
func update(ctx context.Context, kv *bucket, key string, alloc func() any, create bool, fn func(any) error) error {
	for attempt := 0; ; attempt++ {
		v := alloc()
		rev, err := get(ctx, kv, key, v)
		switch {
		case errors.Is(err, ErrNoRecord) && !create:
			return ErrNoRecord
		case errors.Is(err, ErrNoRecord):
			v = alloc()
		case err != nil:
			return err
		}
		if err := fn(v); err != nil {
			return err
		}
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, data)
		} else {
			_, err = kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			return nil
		}
		if !isConflict(err) {
			return err
		}
		if attempt > 50 {
			return fmt.Errorf("too much contention on %s: %w", key, err)
		}
		// Back off a little so contending writers spread out.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(rand.IntN(1+attempt*2)) * time.Millisecond):
		}
	}
}

func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	// Replicated streams report a compare-and-set conflict as 10164, not 10071.
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// scan reads every current value of a bucket in one ordered pass (a watch that
// stops at the initial snapshot), far cheaper than a Get per key.
func scan(ctx context.Context, kv *bucket, fn func([]byte) error) error {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("scan %s: %w", kv.Bucket(), err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("scan %s: watch closed", kv.Bucket())
			}
			if e == nil {
				return nil // end of the initial snapshot
			}
			if err := fn(e.Value()); err != nil {
				return fmt.Errorf("scan %s key %s: %w", kv.Bucket(), e.Key(), err)
			}
		}
	}
}

// WatchCapacity calls changed after every update of a flavor's capacity record,
// until ctx ends. Consumers waiting for a free slot use it to try again at once
// instead of after a fixed delay.
func (s *State) WatchCapacity(ctx context.Context, flavor string, changed func()) error {
	return watchKey(ctx, s.capacity, flavor, "capacity", changed)
}

// watchKey calls changed after every update of key, until ctx ends.
func watchKey(ctx context.Context, kv *bucket, key, what string, changed func()) error {
	w, err := kv.Watch(ctx, key, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("watch %s %s: %w", what, key, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s %s: closed", what, key)
			}
			if e != nil {
				changed()
			}
		}
	}
}
