package lxd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// How long DeleteFinished waits for an ephemeral instance to go by itself, and how
// often it looks meanwhile. The runner powers its instance off as soon as its job is
// over (bootstrap.sh's power_off), and LXD deletes it within a second or two on a
// busy host; one that is still there after the grace is stuck, and is stopped and
// deleted as any other. The look is the backstop for an event the stream missed
// (it sees only what happens once it is open).
const (
	ephemeralGrace   = 30 * time.Second
	ephemeralRecheck = 5 * time.Second
)

var _ backends.FinishedDeleter = (*Backend)(nil)

// DeleteFinished removes the instance of a runner that has finished; see
// backends.FinishedDeleter. An ephemeral instance is left to go by itself: LXD
// deletes it when the runner powers it off, and its instance-deleted lifecycle
// event says when. That saves a stop and a delete per runner, which on a busy host
// are operations the creates of a burst queue behind. Whatever goes wrong with the
// wait (no event stream, the stream breaking, the grace passing) falls back to
// Delete, so the instance goes in every case. Other instances, and those of a
// runner that does not power off (Options.NoPowerOff), are deleted at once.
func (b *Backend) DeleteFinished(ctx context.Context, name string) error {
	if !b.o.Ephemeral || b.o.NoPowerOff {
		return b.Delete(ctx, name)
	}
	log := b.logger.With(logkey.Instance, name)
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, b.grace)
	defer cancel()
	// Subscribe before looking, so that a deletion after the look is seen.
	stream, err := b.c.LifecycleEvents(wctx)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("delete instance %s: %w", name, ctx.Err())
		}
		log.Warn("lxd event stream unavailable; deleting the ephemeral instance through the API", logkey.Error, err)
		return b.Delete(ctx, name)
	}
	gone := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { gone <- awaitDeleted(wctx, stream, name) })
	defer func() {
		cancel()
		if err := stream.Close(); err != nil {
			log.Debug("closing the lxd event stream", logkey.Error, err)
		}
		wg.Wait()
	}()

	present, err := b.present(ctx, name)
	if err != nil {
		return err
	}
	if !present {
		return b.gone(name, start, "before the wait")
	}
	recheck := time.NewTicker(b.recheck)
	defer recheck.Stop()
	for {
		select {
		case err := <-gone:
			if err == nil {
				return b.gone(name, start, "event")
			}
			if ctx.Err() != nil {
				return fmt.Errorf("delete instance %s: %w", name, ctx.Err())
			}
			if wctx.Err() == nil {
				log.Warn("lxd event stream lost while waiting for an ephemeral instance to go; deleting it through the API", logkey.Error, err)
			} else {
				log.Warn("ephemeral instance still there after its runner finished; deleting it through the API", "waited", time.Since(start).Round(time.Millisecond))
			}
			return b.Delete(ctx, name)
		case <-recheck.C:
			// A failed look changes nothing: the event, the next look or the grace
			// decides.
			if present, err := b.present(ctx, name); err == nil && !present {
				return b.gone(name, start, "look")
			}
		}
	}
}

// present reports whether the instance named name exists. One that exists but is
// not ours is an error, as Delete has it: it is never waited for nor deleted.
func (b *Backend) present(ctx context.Context, name string) (bool, error) {
	in, err := b.c.Instance(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look up instance %s: %w", name, err)
	case !b.ours(in):
		return false, fmt.Errorf("delete instance %s: %w: it does not carry deployment %q and flavor %q", name, backends.ErrNotFound, b.o.DeploymentID, b.o.Flavor)
	}
	return true, nil
}

// gone ends DeleteFinished once the instance was seen gone, by how.
func (b *Backend) gone(name string, start time.Time, how string) error {
	b.logger.Info("instance deleted", logkey.Instance, name, "by", "lxd (ephemeral)", "seen_by", how,
		"waited", time.Since(start).Round(time.Millisecond))
	return nil
}

// awaitDeleted reads stream until it reports the deletion of the instance named
// name (nil), or ends (its error).
func awaitDeleted(ctx context.Context, stream *EventStream, name string) error {
	for {
		ev, err := stream.Next(ctx)
		if err != nil {
			return err
		}
		if ev.Metadata.Action == ActionInstanceDeleted && ev.Instance() == name {
			return nil
		}
	}
}
