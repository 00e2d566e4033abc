package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is typed access to one KV bucket whose values are JSON documents of type T:
// reads from the stream leader and compare-and-set updates. It is the storage the
// records of package fleet sit on; queue itself knows no record.
type Bucket[T any] struct {
	b *bucket
}

// OpenBucket opens a bucket Ensure created (one of the Bucket* names).
func OpenBucket[T any](ctx context.Context, c *Conn, name string) (*Bucket[T], error) {
	kv, err := c.js.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", name, err)
	}
	return &Bucket[T]{b: &bucket{KeyValue: kv, nc: c.nc}}, nil
}

// Name is the bucket's name.
func (k *Bucket[T]) Name() string { return k.b.Bucket() }

// Get reads key; ErrNoRecord when it does not exist.
func (k *Bucket[T]) Get(ctx context.Context, key string) (*T, error) {
	v := new(T)
	if _, err := get(ctx, k.b, key, v); err != nil {
		return nil, err
	}
	return v, nil
}

// Update applies fn to key's value under compare-and-set, reading again and applying
// fn again when another writer won. A missing key reaches fn as fresh() when fresh is
// given, and is ErrNoRecord otherwise. It returns the value as stored. When fn returns
// ErrSkip nothing is written and Update returns the value as it was read (nil if the
// key did not exist) with ErrSkip; any other error of fn is returned as it is.
func (k *Bucket[T]) Update(ctx context.Context, key string, fresh func() *T, fn func(*T) error) (*T, error) {
	for attempt := 0; ; attempt++ {
		v := new(T)
		rev, err := get(ctx, k.b, key, v)
		switch {
		case errors.Is(err, ErrNoRecord) && fresh == nil:
			return nil, ErrNoRecord
		case errors.Is(err, ErrNoRecord):
			v = fresh()
		case err != nil:
			return nil, err
		}
		read := *v // fn may edit before it skips: a skip answers what was read
		if err := fn(v); err != nil {
			if errors.Is(err, ErrSkip) && rev != 0 {
				return &read, err
			}
			return nil, err
		}
		data, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode %s/%s: %w", k.Name(), key, err)
		}
		if rev == 0 {
			_, err = k.b.Create(ctx, key, data)
		} else {
			_, err = k.b.Update(ctx, key, data, rev)
		}
		if err == nil {
			return v, nil
		}
		if !isConflict(err) {
			return nil, fmt.Errorf("write %s/%s: %w", k.Name(), key, err)
		}
		if attempt > 50 {
			return nil, fmt.Errorf("too much contention on %s/%s: %w", k.Name(), key, err)
		}
		// Back off a little so contending writers spread out.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(rand.IntN(1+attempt*2)) * time.Millisecond):
		}
	}
}

// Create stores a new key; ErrExists when it is taken.
func (k *Bucket[T]) Create(ctx context.Context, key string, v *T) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", k.Name(), key, err)
	}
	if _, err := k.b.Create(ctx, key, data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrExists
		}
		return fmt.Errorf("create %s/%s: %w", k.Name(), key, err)
	}
	return nil
}

// Put stores v under key, whatever was there (last writer wins).
func (k *Bucket[T]) Put(ctx context.Context, key string, v *T) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", k.Name(), key, err)
	}
	if _, err := k.b.Put(ctx, key, data); err != nil {
		return fmt.Errorf("put %s/%s: %w", k.Name(), key, err)
	}
	return nil
}

// Delete removes key; a missing key is not an error.
func (k *Bucket[T]) Delete(ctx context.Context, key string) error {
	if err := k.b.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete %s/%s: %w", k.Name(), key, err)
	}
	return nil
}

// All returns every value in the bucket for which keep (nil: every key) says yes, in
// one ordered pass.
func (k *Bucket[T]) All(ctx context.Context, keep func(key string) bool) ([]*T, error) {
	var out []*T
	err := scanKeys(ctx, k.b, func(key string, data []byte) error {
		if keep != nil && !keep(key) {
			return nil
		}
		v := new(T)
		if err := json.Unmarshal(data, v); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// Watch calls changed after every update of key, until ctx ends.
func (k *Bucket[T]) Watch(ctx context.Context, key string, changed func()) error {
	return watchKey(ctx, k.b, key, k.Name(), changed)
}
