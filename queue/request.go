package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Request/reply over core NATS (not through a stream), for commands that only make
// sense while someone is there to carry them out: package control's operator
// commands. "No responders" tells the sender at once that nobody listens.

// ErrNoResponders means nobody listens on the subject now.
var ErrNoResponders = errors.New("no responders")

// Request sends data on subject and waits, within ctx, for one answer.
func (c *Conn) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	msg, err := c.nc.RequestWithContext(ctx, subject, data)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("request %s: %w", subject, ErrNoResponders)
	}
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", subject, err)
	}
	return msg.Data, nil
}

// Incoming is one request received by a Listener.
type Incoming struct {
	Subject string
	Data    []byte
	msg     *nats.Msg
}

// Respond answers the request.
func (in *Incoming) Respond(data []byte) error { return in.msg.Respond(data) }

// Listener receives the requests sent to its subjects.
type Listener struct {
	subs []*nats.Subscription
	ch   chan *nats.Msg
}

// Listen subscribes to subjects in queue group group (so that two listeners that
// overlap for a moment still handle each request once) and returns once the server
// has the subscriptions, at most after ready, so that a request sent right after
// finds them. Close ends it.
func (c *Conn) Listen(subjects []string, group string, ready time.Duration) (*Listener, error) {
	l := &Listener{ch: make(chan *nats.Msg, 64)}
	for _, subject := range subjects {
		sub, err := c.nc.ChanQueueSubscribe(subject, group, l.ch)
		if err != nil {
			l.unsubscribe()
			return nil, fmt.Errorf("subscribe %s: %w", subject, err)
		}
		l.subs = append(l.subs, sub)
	}
	if err := c.nc.FlushTimeout(ready); err != nil {
		l.unsubscribe()
		return nil, fmt.Errorf("subscribe to %v: %w", subjects, err)
	}
	return l, nil
}

// Next waits for the next request; false once ctx ends.
func (l *Listener) Next(ctx context.Context) (*Incoming, bool) {
	select {
	case <-ctx.Done():
		return nil, false
	case m := <-l.ch:
		return &Incoming{Subject: m.Subject, Data: m.Data, msg: m}, true
	}
}

// Close unsubscribes and returns the requests received but not taken, for the
// caller to answer ("stopped") so that no sender waits for its timeout.
func (l *Listener) Close() []*Incoming {
	l.unsubscribe()
	var left []*Incoming
	for {
		select {
		case m := <-l.ch:
			left = append(left, &Incoming{Subject: m.Subject, Data: m.Data, msg: m})
		default:
			return left
		}
	}
}

func (l *Listener) unsubscribe() {
	for _, s := range l.subs {
		_ = s.Unsubscribe() // the connection may be gone; its subscriptions are then too
	}
}

// JobConsumerSpec describes a durable consumer of the job stream.
type JobConsumerSpec struct {
	Name        string
	Description string
	Filters     []string
	// AckWait is JetStream's redelivery timeout for an unacknowledged event.
	AckWait time.Duration
}

// JobConsumer creates or updates a durable, explicitly acknowledged consumer of the
// job stream that every replica shares.
func (c *Conn) JobConsumer(ctx context.Context, spec JobConsumerSpec) (jetstream.Consumer, error) {
	cons, err := c.js.CreateOrUpdateConsumer(ctx, StreamJobs, jetstream.ConsumerConfig{
		Durable:        spec.Name,
		Description:    spec.Description,
		FilterSubjects: spec.Filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        spec.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  10000,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", spec.Name, err)
	}
	return cons, nil
}
