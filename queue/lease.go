package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A lease gives one holder among many the right to act (the active janitor). It is a
// key in the spawner_leases bucket, written with compare-and-set: Create takes a free
// lease, Update at the held revision renews it, and the bucket's TTL removes the key
// LeaseTTL after the last write, so a holder that died frees it on its own. A holder
// must stop acting before its lease could expire: renew well within LeaseTTL and stop
// at the first failed renewal.

// ErrLeaseHeld means another holder has the lease.
var ErrLeaseHeld = errors.New("lease held by another holder")

// ErrLeaseLost means the lease is no longer ours: it expired, was released or was
// taken over.
var ErrLeaseLost = errors.New("lease lost")

// LeaseRecord is the value of a lease key.
type LeaseRecord struct {
	Holder     string    `json:"holder"`
	AcquiredAt time.Time `json:"acquired_at"`
	RenewedAt  time.Time `json:"renewed_at"`
}

// Lease is a lease this process holds. It is used by one goroutine at a time.
type Lease struct {
	Name     string
	Holder   string
	acquired time.Time
	rev      uint64
}

// AcquireLease takes the lease name for holder if it is free (or already holder's,
// as after a failed renewal whose write went through). ErrLeaseHeld when another
// holder has it; the error names that holder.
func (s *State) AcquireLease(ctx context.Context, name, holder string) (*Lease, error) {
	if holder == "" {
		return nil, fmt.Errorf("acquire lease %s: empty holder", name)
	}
	now := s.now().UTC()
	l := &Lease{Name: name, Holder: holder, acquired: now}
	data, err := json.Marshal(LeaseRecord{Holder: holder, AcquiredAt: now, RenewedAt: now})
	if err != nil {
		return nil, err
	}
	// Two rounds: the key may expire between a failed Create and the Get.
	for range 2 {
		rev, err := s.leases.Create(ctx, name, data)
		if err == nil {
			l.rev = rev
			return l, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("acquire lease %s: %w", name, err)
		}
		var cur LeaseRecord
		rev, err = get(ctx, s.leases, name, &cur)
		if errors.Is(err, ErrNoRecord) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("acquire lease %s: %w", name, err)
		}
		if cur.Holder != holder {
			return nil, fmt.Errorf("acquire lease %s: %w (%s)", name, ErrLeaseHeld, cur.Holder)
		}
		// Still ours: nobody else can have acted since, so take it back.
		l.acquired = cur.AcquiredAt
		data, err = json.Marshal(LeaseRecord{Holder: holder, AcquiredAt: cur.AcquiredAt, RenewedAt: now})
		if err != nil {
			return nil, err
		}
		rev, err = s.leases.Update(ctx, name, data, rev)
		if err != nil {
			if isRevisionConflict(err) {
				continue
			}
			return nil, fmt.Errorf("acquire lease %s: %w", name, err)
		}
		l.rev = rev
		return l, nil
	}
	return nil, fmt.Errorf("acquire lease %s: %w", name, ErrLeaseHeld)
}

// RenewLease extends a held lease by LeaseTTL from now. ErrLeaseLost when it is no
// longer ours; any error means the holder must stop acting.
func (s *State) RenewLease(ctx context.Context, l *Lease) error {
	data, err := json.Marshal(LeaseRecord{Holder: l.Holder, AcquiredAt: l.acquired, RenewedAt: s.now().UTC()})
	if err != nil {
		return err
	}
	rev, err := s.leases.Update(ctx, l.Name, data, l.rev)
	if err != nil {
		if isRevisionConflict(err) {
			return fmt.Errorf("renew lease %s: %w", l.Name, ErrLeaseLost)
		}
		return fmt.Errorf("renew lease %s: %w", l.Name, err)
	}
	l.rev = rev
	return nil
}

// ReleaseLease frees a held lease at once, so a standby takes over without waiting
// for the TTL. A lease that is no longer ours is left alone (ErrLeaseLost).
func (s *State) ReleaseLease(ctx context.Context, l *Lease) error {
	if err := s.leases.Delete(ctx, l.Name, jetstream.LastRevision(l.rev)); err != nil {
		if isRevisionConflict(err) {
			return fmt.Errorf("release lease %s: %w", l.Name, ErrLeaseLost)
		}
		return fmt.Errorf("release lease %s: %w", l.Name, err)
	}
	return nil
}

// LeaseInfo reads a lease; ErrNoRecord when nobody holds it.
func (s *State) LeaseInfo(ctx context.Context, name string) (*LeaseRecord, error) {
	var rec LeaseRecord
	if _, err := get(ctx, s.leases, name, &rec); err != nil {
		return nil, fmt.Errorf("lease %s: %w", name, err)
	}
	return &rec, nil
}

// LeaseHolder returns who holds the lease now ("" when nobody does).
func (s *State) LeaseHolder(ctx context.Context, name string) (string, error) {
	rec, err := s.LeaseInfo(ctx, name)
	if errors.Is(err, ErrNoRecord) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return rec.Holder, nil
}

// WatchLease calls changed after every write or release of the lease, until ctx
// ends. A lease that expires is not seen here (the bucket's TTL removes it silently),
// so standbys also try now and then.
func (s *State) WatchLease(ctx context.Context, name string, changed func()) error {
	return watchKey(ctx, s.leases, name, "lease", changed)
}

// isRevisionConflict reports a compare-and-set refusal (single server or replicated).
func isRevisionConflict(err error) bool {
	return isConflict(err) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}
