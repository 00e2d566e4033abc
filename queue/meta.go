package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KV buckets for the janitor's own bookkeeping.
const (
	// BucketMeta holds small documents about the fleet that status commands read (the
	// last reconcile summary). Nothing expires: status shows the last pass however
	// long ago it ran.
	BucketMeta = "spawner_meta"
	// BucketSweeper remembers the webhook deliveries the janitor redelivered, by
	// GUID, so that a restart or a failover does not redeliver them again.
	BucketSweeper = "spawner_sweeper"
)

// MetaLastReconcile is the BucketMeta key of the last reconcile pass's summary.
const MetaLastReconcile = "janitor.last_reconcile"

// sweeperTTL outlives GitHub's delivery retention (3 days), the longest lookback a
// sweeper may use: a delivery is forgotten only after GitHub forgot it.
const sweeperTTL = 73 * time.Hour

func metaBucketConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: BucketMeta, Description: "status documents (last reconcile)", Storage: jetstream.FileStorage, Replicas: replicas, History: 1}
}

func sweeperBucketConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: BucketSweeper, Description: "webhook deliveries redelivered, by GUID", TTL: sweeperTTL, Storage: jetstream.FileStorage, Replicas: replicas, History: 1}
}

// PutMeta stores v as JSON under key (last writer wins: only the active janitor
// writes).
func (s *State) PutMeta(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode meta %s: %w", key, err)
	}
	raw := json.RawMessage(data)
	return s.meta.Put(ctx, key, &raw)
}

// Meta decodes key into v; ErrNoRecord when it was never written.
func (s *State) Meta(ctx context.Context, key string, v any) error {
	raw, err := s.meta.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("meta %s: %w", key, err)
	}
	if err := json.Unmarshal(*raw, v); err != nil {
		return fmt.Errorf("meta %s: %w", key, err)
	}
	return nil
}

// RedeliveryRecord is what the sweeper remembers about one delivery GUID.
type RedeliveryRecord struct {
	GUID string `json:"guid"`
	// Count is how many redeliveries were asked for.
	Count int `json:"count"`
	// AfterAttempt is the id of the failed attempt the last redelivery followed: a
	// later failed attempt means that redelivery failed too.
	AfterAttempt int64     `json:"after_attempt"`
	At           time.Time `json:"at"`
}

// Redelivery reads the record of a GUID; ErrNoRecord when it was never redelivered.
func (s *State) Redelivery(ctx context.Context, guid string) (*RedeliveryRecord, error) {
	rec, err := s.redeliveries.Get(ctx, guid)
	if err != nil {
		return nil, fmt.Errorf("redelivery %s: %w", guid, err)
	}
	return rec, nil
}

// UpdateRedelivery applies fn to a GUID's record under compare-and-set (a missing
// record reaches fn as a zero record with GUID set). ErrSkip from fn leaves it.
func (s *State) UpdateRedelivery(ctx context.Context, guid string, fn func(*RedeliveryRecord) error) (*RedeliveryRecord, error) {
	rec, err := s.redeliveries.Update(ctx, guid, func() *RedeliveryRecord { return &RedeliveryRecord{GUID: guid} }, fn)
	if errors.Is(err, ErrSkip) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("update redelivery %s: %w", guid, err)
	}
	return rec, nil
}
