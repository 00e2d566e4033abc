package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// State is the janitor's own bookkeeping in KV: its lease, the status documents
// (meta) and the sweeper's memory of redelivered webhooks. The job and runner
// records are package fleet's.
type State struct {
	leases       *bucket
	meta         *Bucket[json.RawMessage]
	redeliveries *Bucket[RedeliveryRecord]
	now          func() time.Time
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

// State opens the janitor's buckets (Ensure must have created them).
func (c *Conn) State(ctx context.Context) (*State, error) {
	kv, err := c.js.KeyValue(ctx, BucketLeases)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketLeases, err)
	}
	s := &State{leases: &bucket{KeyValue: kv, nc: c.nc}, now: time.Now}
	if s.meta, err = OpenBucket[json.RawMessage](ctx, c, BucketMeta); err != nil {
		return nil, err
	}
	if s.redeliveries, err = OpenBucket[RedeliveryRecord](ctx, c, BucketSweeper); err != nil {
		return nil, err
	}
	return s, nil
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

func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	// Replicated streams report a compare-and-set conflict as 10164, not 10071.
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// scanKeys reads every current key and value of a bucket in one ordered pass (a
// watch that stops at the initial snapshot), far cheaper than a Get per key.
func scanKeys(ctx context.Context, kv *bucket, fn func(key string, data []byte) error) error {
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
			if err := fn(e.Key(), e.Value()); err != nil {
				return fmt.Errorf("scan %s key %s: %w", kv.Bucket(), e.Key(), err)
			}
		}
	}
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
