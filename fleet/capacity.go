package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A flavor's capacity is one record of slots (key: the flavor), so "count and claim"
// is a single compare-and-set across every replica and worker. A slot is taken before
// a runner's record and instance exist, and given back only once the instance is
// confirmed gone (InstanceGone, or Unclaim for a runner that never got one): so not
// only runners but instances stay within max_runners.

// Capacity reads a flavor's slots.
func (f *Fleet) Capacity(ctx context.Context, flavor string) (*CapacityRecord, error) {
	rec, err := f.capacity.Get(ctx, flavor)
	if errors.Is(err, ErrNoRecord) {
		rec, err = &CapacityRecord{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("capacity %s: %w", flavor, err)
	}
	if rec.Slots == nil {
		rec.Slots = map[string]Slot{}
	}
	return rec, nil
}

// Claim takes one of the flavor's max slots for runner name, meant for job. It is
// idempotent (a runner holding a slot keeps it) and atomic across every process:
// false means the flavor is full; ErrFlavorPaused that a flush holds new runners back.
func (f *Fleet) Claim(ctx context.Context, flavor, name string, job int64, max int) (bool, error) {
	claimed, paused := false, false
	err := f.updateCapacity(ctx, flavor, func(rec *CapacityRecord) error {
		// Runs again after a lost compare-and-set: decide from this read alone.
		claimed, paused = false, false
		if _, held := rec.Slots[name]; held {
			claimed = true
			return ErrUnchanged
		}
		if f.now().Before(rec.PausedUntil) {
			paused = true
			return ErrUnchanged
		}
		if len(rec.Slots) >= max {
			return ErrUnchanged
		}
		rec.Slots[name] = Slot{Job: job, Since: f.now().UTC()}
		claimed = true
		return nil
	})
	if err != nil {
		return false, err
	}
	if paused {
		return false, fmt.Errorf("claim %s for %s: %w by a flush", name, flavor, ErrFlavorPaused)
	}
	return claimed, nil
}

// Unclaim gives back the slot of a runner for which no instance was ever asked for
// (its job turned out not to need it, or its record could not be written).
func (f *Fleet) Unclaim(ctx context.Context, flavor, name string) error {
	return f.release(ctx, flavor, name)
}

// FreeSlot frees the slot of a runner whose instance the caller has confirmed gone
// without deleting it now: the janitor, on a listing taken before the records were
// read, for a slot with no record, or for a runner that is over and whose instance is
// deleted or no longer listed. (A caller that deletes the instance uses InstanceGone,
// which settles the record too.)
func (f *Fleet) FreeSlot(ctx context.Context, flavor, name string) error {
	return f.release(ctx, flavor, name)
}

func (f *Fleet) release(ctx context.Context, flavor, name string) error {
	return f.updateCapacity(ctx, flavor, func(rec *CapacityRecord) error {
		if _, held := rec.Slots[name]; !held {
			return ErrUnchanged
		}
		delete(rec.Slots, name)
		return nil
	})
}

// Pause stops new claims for the flavor until until (or Resume by the same by).
func (f *Fleet) Pause(ctx context.Context, flavor, by string, until time.Time) error {
	return f.updateCapacity(ctx, flavor, func(rec *CapacityRecord) error {
		rec.PausedUntil, rec.PausedBy = until.UTC(), by
		return nil
	})
}

// Resume lifts a pause set by by (a pause set by someone else stays).
func (f *Fleet) Resume(ctx context.Context, flavor, by string) error {
	return f.updateCapacity(ctx, flavor, func(rec *CapacityRecord) error {
		if rec.PausedBy != by || rec.PausedUntil.IsZero() {
			return ErrUnchanged
		}
		rec.PausedUntil, rec.PausedBy = time.Time{}, ""
		return nil
	})
}

// WatchCapacity calls changed after every update of a flavor's capacity record,
// until ctx ends. Workers waiting for a free slot try again at once instead of after
// a fixed delay.
func (f *Fleet) WatchCapacity(ctx context.Context, flavor string, changed func()) error {
	return f.capacity.Watch(ctx, flavor, changed)
}

// updateCapacity edits a flavor's capacity record; ErrUnchanged from edit is not an
// error here.
func (f *Fleet) updateCapacity(ctx context.Context, flavor string, edit func(*CapacityRecord) error) error {
	_, err := f.capacity.Update(ctx, flavor, func() *CapacityRecord { return &CapacityRecord{} }, func(rec *CapacityRecord) error {
		if rec.Slots == nil {
			rec.Slots = map[string]Slot{}
		}
		return edit(rec)
	})
	if err != nil && !errors.Is(err, ErrUnchanged) {
		return fmt.Errorf("capacity %s: %w", flavor, err)
	}
	return nil
}

// sparesKey is where a flavor's spare index lives (flavor names have no dots, so it
// never meets a flavor's capacity key).
func sparesKey(flavor string) string { return "spares." + flavor }

// Spares returns a flavor's spare index: runner name → the job it was meant for.
func (f *Fleet) Spares(ctx context.Context, flavor string) (map[string]int64, error) {
	rec, err := f.spares.Get(ctx, sparesKey(flavor))
	if errors.Is(err, ErrNoRecord) {
		rec, err = &SparesRecord{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spares %s: %w", flavor, err)
	}
	if rec.Runners == nil {
		rec.Runners = map[string]int64{}
	}
	return rec.Runners, nil
}

// indexSpare edits a flavor's spare index; edit reports whether it changed it.
func (f *Fleet) indexSpare(ctx context.Context, flavor string, edit func(map[string]int64) bool) error {
	_, err := f.spares.Update(ctx, sparesKey(flavor), func() *SparesRecord { return &SparesRecord{} }, func(rec *SparesRecord) error {
		if rec.Runners == nil {
			rec.Runners = map[string]int64{}
		}
		if !edit(rec.Runners) {
			return ErrUnchanged
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrUnchanged) {
		return fmt.Errorf("spares %s: %w", flavor, err)
	}
	return nil
}

func (f *Fleet) addSpare(ctx context.Context, flavor, name string, job int64) error {
	return f.indexSpare(ctx, flavor, func(m map[string]int64) bool {
		if j, ok := m[name]; ok && j == job {
			return false
		}
		m[name] = job
		return true
	})
}

func (f *Fleet) removeSpare(ctx context.Context, flavor, name string) error {
	return f.indexSpare(ctx, flavor, func(m map[string]int64) bool {
		if _, ok := m[name]; !ok {
			return false
		}
		delete(m, name)
		return true
	})
}
