package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/runner-spawner/runner-spawner/queue"
)

// Errors of the store, as fleet's callers see them.
var (
	// ErrNoRecord means the job or runner has no record.
	ErrNoRecord = queue.ErrNoRecord
	// ErrExists means a record that had to be new already exists.
	ErrExists = queue.ErrExists
	// ErrUnchanged means a verb found nothing to change: the record is already where
	// the verb would take it, or a newer event overtook it.
	ErrUnchanged = queue.ErrSkip
	// ErrFlavorPaused means no new runner may be claimed for the flavor now (a flush
	// is running).
	ErrFlavorPaused = errors.New("flavor paused")
	// ErrCreateLeased means another worker holds the runner's create lease.
	ErrCreateLeased = errors.New("create lease held by another worker")
	// ErrProtected means the runner is protected: the janitor leaves it alone.
	ErrProtected = errors.New("runner protected")
)

// Fleet is the lifecycle's store and verbs, over one NATS connection.
type Fleet struct {
	conn     *queue.Conn
	jobs     *queue.Bucket[JobRecord]
	runners  *queue.Bucket[RunnerRecord]
	capacity *queue.Bucket[CapacityRecord]
	spares   *queue.Bucket[SparesRecord]
	now      func() time.Time
	// logger says what the verbs leave to the janitor: a secondary write (the spare
	// index, a job's runner list) that failed after the primary one took effect.
	logger *slog.Logger
	// stopped is told of each run's outcome once, by the process whose write
	// settled it (WithStops): summed over processes, every run counts once.
	stopped func(flavor string, o Outcome)
}

// Open opens the buckets (conn.Ensure must have created them). logger (nil: none)
// receives the failures the verbs tolerate; the clock is time.Now (WithClock).
func Open(ctx context.Context, conn *queue.Conn, logger *slog.Logger) (*Fleet, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{conn: conn, now: time.Now, logger: logger.With("component", "fleet")}
	var err error
	if f.jobs, err = queue.OpenBucket[JobRecord](ctx, conn, queue.BucketJobs); err != nil {
		return nil, err
	}
	if f.runners, err = queue.OpenBucket[RunnerRecord](ctx, conn, queue.BucketRunners); err != nil {
		return nil, err
	}
	if f.capacity, err = queue.OpenBucket[CapacityRecord](ctx, conn, queue.BucketCapacity); err != nil {
		return nil, err
	}
	// The spare index shares the capacity bucket, under keys of its own.
	if f.spares, err = queue.OpenBucket[SparesRecord](ctx, conn, queue.BucketCapacity); err != nil {
		return nil, err
	}
	return f, nil
}

// WithClock returns the same fleet whose verbs read time from now: each role stamps
// records and judges leases with its own clock (which tests drive).
func (f *Fleet) WithClock(now func() time.Time) *Fleet {
	if now == nil {
		return f
	}
	cp := *f
	cp.now = now
	return &cp
}

// WithStops returns the same fleet, telling stopped of every outcome its verbs
// settle (the runner-stop metric).
func (f *Fleet) WithStops(stopped func(flavor string, o Outcome)) *Fleet {
	cp := *f
	cp.stopped = stopped
	return &cp
}

// Job reads a job record.
func (f *Fleet) Job(ctx context.Context, id int64) (*JobRecord, error) {
	rec, err := f.jobs.Get(ctx, jobKey(id))
	if err != nil {
		return nil, fmt.Errorf("job %d: %w", id, err)
	}
	return rec, nil
}

// Runner reads a runner record.
func (f *Fleet) Runner(ctx context.Context, name string) (*RunnerRecord, error) {
	rec, err := f.runners.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("runner %s: %w", name, err)
	}
	return rec, nil
}

// Runners returns every runner record, in one pass over the bucket.
func (f *Fleet) Runners(ctx context.Context) ([]*RunnerRecord, error) {
	return f.runners.All(ctx, nil)
}

// Jobs returns every job record, in one pass over the bucket.
func (f *Fleet) Jobs(ctx context.Context) ([]*JobRecord, error) {
	return f.jobs.All(ctx, nil)
}

// updateJob applies edit to the job under compare-and-set, creating the record when
// it is missing (edit sees it with only ID set), and stamps UpdatedAt. ErrUnchanged
// from edit writes nothing.
func (f *Fleet) updateJob(ctx context.Context, id int64, edit func(*JobRecord) error) (*JobRecord, error) {
	rec, err := f.jobs.Update(ctx, jobKey(id), func() *JobRecord { return &JobRecord{ID: id} }, func(j *JobRecord) error {
		if err := edit(j); err != nil {
			return err
		}
		j.UpdatedAt = f.now().UTC()
		return nil
	})
	if err != nil && !errors.Is(err, ErrUnchanged) {
		return nil, fmt.Errorf("update job %d: %w", id, err)
	}
	return rec, err
}

// updateRunner applies edit to an existing runner record under compare-and-set and
// stamps UpdatedAt. ErrUnchanged from edit writes nothing and returns the record as
// it is, with ErrUnchanged.
func (f *Fleet) updateRunner(ctx context.Context, name string, edit func(*RunnerRecord) error) (*RunnerRecord, error) {
	var before Outcome // of the attempt that was written
	rec, err := f.runners.Update(ctx, name, nil, func(r *RunnerRecord) error {
		before = r.Outcome
		if err := edit(r); err != nil {
			return err
		}
		r.UpdatedAt = f.now().UTC()
		return nil
	})
	if err != nil && !errors.Is(err, ErrUnchanged) {
		return nil, fmt.Errorf("update runner %s: %w", name, err)
	}
	if err == nil && f.stopped != nil && before == OutcomeNone && rec.Outcome != OutcomeNone {
		f.stopped(rec.Flavor, rec.Outcome)
	}
	return rec, err
}

func jobKey(id int64) string { return strconv.FormatInt(id, 10) }
