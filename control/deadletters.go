package control

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"
)

// ErrNoDeadLetter means no dead letter has the sequence asked for.
var ErrNoDeadLetter = errors.New("no such dead letter")

// DeadLetters lists the stored dead letters, oldest first, at most limit.
func DeadLetters(ctx context.Context, conn *queue.Conn, limit int) ([]*queue.DeadLetter, error) {
	return conn.DeadLetters(ctx, limit)
}

// FindDeadLetters returns the dead letters of the given sequences (as the operator
// typed them), and an error per sequence that names none.
func FindDeadLetters(ctx context.Context, conn *queue.Conn, seqs []string) ([]*queue.DeadLetter, []error, error) {
	all, err := conn.DeadLetters(ctx, 100000)
	if err != nil {
		return nil, nil, err
	}
	bySeq := map[string]*queue.DeadLetter{}
	for _, dl := range all {
		bySeq[strconv.FormatUint(dl.Seq, 10)] = dl
	}
	var found []*queue.DeadLetter
	var missing []error
	for _, s := range seqs {
		if dl := bySeq[s]; dl != nil {
			found = append(found, dl)
		} else {
			missing = append(missing, fmt.Errorf("%w: %s", ErrNoDeadLetter, s))
		}
	}
	return found, missing, nil
}

// RetryDeadLetter queues the dead letter's job again, as a fresh delivery, and drops
// the letter. The job's attempt and replacement counts restart (fleet.JobRetried), so
// that the event is not given up again at once. A letter without a decodable event
// cannot be retried: drop it.
func RetryDeadLetter(ctx context.Context, conn *queue.Conn, fl *fleet.Fleet, dl *queue.DeadLetter) error {
	if dl.Event == nil {
		return fmt.Errorf("dead letter %d has no decodable event; drop it", dl.Seq)
	}
	if err := fl.JobRetried(ctx, dl.Event.JobID); err != nil {
		return err
	}
	ev := *dl.Event
	ev.Source, ev.Action, ev.ReceivedAt = queue.SourceWebhook, queue.ActionQueued, time.Now().UTC()
	ev.DeliveryID = fmt.Sprintf("retry-%d-%d", dl.Seq, time.Now().UnixNano())
	if _, err := conn.PublishJobEvent(ctx, &ev); err != nil {
		return err
	}
	return conn.DropDeadLetter(ctx, dl.Seq)
}

// DropDeadLetter deletes the dead letter.
func DropDeadLetter(ctx context.Context, conn *queue.Conn, dl *queue.DeadLetter) error {
	return conn.DropDeadLetter(ctx, dl.Seq)
}
