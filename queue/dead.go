package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetter is a job event whose handling was given up.
type DeadLetter struct {
	Event    *JobEvent `json:"event,omitempty"`
	Raw      []byte    `json:"raw,omitempty"` // the message itself when it could not be decoded
	Subject  string    `json:"subject"`
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`
	// Seq is the dead letter's sequence in StreamDead (set when read back).
	Seq uint64 `json:"seq,omitempty"`
}

// PublishDeadLetter stores a dead letter for flavor. id de-duplicates (the same give-up
// redelivered after a crash is stored once).
func (c *Conn) PublishDeadLetter(ctx context.Context, flavor, id string, dl *DeadLetter) error {
	data, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	_, err = c.publish(ctx, &nats.Msg{Subject: DeadSubject(flavor), Data: data}, id, StreamDead)
	return err
}

// DeadLetters lists the stored dead letters (oldest first), at most limit.
func (c *Conn) DeadLetters(ctx context.Context, limit int) ([]*DeadLetter, error) {
	st, err := c.js.Stream(ctx, StreamDead)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamDead, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []*DeadLetter
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0 && len(out) < limit; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var dl DeadLetter
		if err := json.Unmarshal(m.Data, &dl); err != nil {
			dl = DeadLetter{Raw: m.Data, Reason: "undecodable dead letter"}
		}
		dl.Seq = seq
		dl.Subject = m.Subject
		out = append(out, &dl)
	}
	return out, nil
}

// DeadLetterCount is the number of stored dead letters.
func (c *Conn) DeadLetterCount(ctx context.Context) (uint64, error) {
	st, err := c.js.Stream(ctx, StreamDead)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", StreamDead, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// DropDeadLetter deletes one dead letter.
func (c *Conn) DropDeadLetter(ctx context.Context, seq uint64) error {
	st, err := c.js.Stream(ctx, StreamDead)
	if err != nil {
		return err
	}
	if err := st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("drop dead letter %d: %w", seq, err)
	}
	return nil
}
