package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrStreamFull means JetStream refused the event because the stream is at its
// limits: nothing was stored.
var ErrStreamFull = errors.New("stream full")

// ErrEventTooLarge means the event can never be stored: it is over the server's
// maximum payload or the stream's maximum message size. Retrying cannot help, so it is
// returned at once; the receiver answers 413.
var ErrEventTooLarge = errors.New("event too large")

// PublishResult says what JetStream did with an event.
type PublishResult struct {
	// Duplicate is true when an event with the same id was already stored within the
	// duplicate window: nothing new was written.
	Duplicate bool
	Sequence  uint64
}

// PublishJobEvent stores ev on its subject and returns once JetStream acknowledged
// it. While the deadline of ctx allows, it retries what a server failover or a
// reconnect causes (no responders, timeouts), which is safe because the message id
// de-duplicates. A full stream (ErrStreamFull) and an event too large to ever be
// stored (ErrEventTooLarge) are not retried.
func (c *Conn) PublishJobEvent(ctx context.Context, ev *JobEvent) (PublishResult, error) {
	data, err := ev.Marshal()
	if err != nil {
		return PublishResult{}, fmt.Errorf("encode job event: %w", err)
	}
	msg := &nats.Msg{
		Subject: JobSubject(ev.Flavor, ev.Action),
		Data:    data,
		Header:  nats.Header{},
	}
	msg.Header.Set("Spawner-Job-Id", jobKey(ev.JobID))
	return c.publish(ctx, msg, ev.MsgID(), StreamJobs)
}

func (c *Conn) publish(ctx context.Context, msg *nats.Msg, msgID, stream string) (PublishResult, error) {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ack, err := c.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(stream))
		if err == nil {
			return PublishResult{Duplicate: ack.Duplicate, Sequence: ack.Sequence}, nil
		}
		if isStreamFull(err) {
			return PublishResult{}, fmt.Errorf("publish to %s: %w", stream, ErrStreamFull)
		}
		if isTooLarge(err) {
			return PublishResult{}, fmt.Errorf("publish %d bytes to %s: %w (%v)", len(msg.Data), stream, ErrEventTooLarge, err)
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			// A restarted server or a new cluster may lack the stream; recreate it.
			c.ensured.Store(false)
			if eerr := c.Ensure(ctx); eerr != nil {
				err = fmt.Errorf("%w (and %v)", err, eerr)
			}
		}
		if !retryable(err) {
			return PublishResult{}, fmt.Errorf("publish to %s: %w", stream, err)
		}
		select {
		case <-ctx.Done():
			return PublishResult{}, fmt.Errorf("publish to %s after %d attempts: %w", stream, attempt, err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

func isStreamFull(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// The limits share error code 10077 ("store failed", a 503) with transient
		// store failures, so the description is the only way to tell them apart.
		d := strings.ToLower(apiErr.Description)
		return strings.Contains(d, "maximum messages") || strings.Contains(d, "maximum bytes") || strings.Contains(d, "insufficient resources")
	}
	return false
}

// isTooLarge tells a message that no retry will store: the client refuses one over the
// server's max_payload before sending it (it would otherwise retry until its deadline),
// and the stream refuses one over its MaxMsgSize.
func isTooLarge(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum
}

// retryable says whether a publish error may go away on its own soon.
func retryable(err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.Is(err, nats.ErrConnectionClosed):
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// A publish with the same id is being stored right now (a replicated stream
		// answers 409/10158 until it is): asking again soon gets "duplicate".
		if apiErr.ErrorCode == errCodeDuplicateInProcess {
			return true
		}
		// Server-side refusals (wrong stream, bad headers) will not change; "no
		// leader" style 503s will.
		return apiErr.Code >= 500
	}
	return true
}

// errCodeDuplicateInProcess is JetStream's "duplicate message id is in process".
const errCodeDuplicateInProcess = 10158
