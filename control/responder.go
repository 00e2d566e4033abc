package control

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
	"github.com/runner-spawner/runner-spawner/queue"
)

// Responder carries commands out: the active janitor.
type Responder interface {
	// Flush carries out one flush and says what it did.
	Flush(ctx context.Context, req FlushRequest) FlushResult
	// Reconcile runs a pass now and returns its summary (nil: ctx ended during it).
	Reconcile(ctx context.Context) *PassSummary
}

// Listener receives the control commands for the active janitor.
type Listener struct {
	l      *queue.Listener
	logger *slog.Logger
}

// Listen subscribes to the control subjects and returns once the server has the
// subscriptions (at most after ready), so that a command sent right after the
// janitor became active finds them.
func Listen(conn *queue.Conn, ready time.Duration, logger *slog.Logger) (*Listener, error) {
	l, err := conn.Listen([]string{SubjectFlush, SubjectReconcile}, QueueGroup, ready)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	return &Listener{l: l, logger: logger}, nil
}

// Serve carries commands out one at a time until ctx ends, then answers what is
// still queued with an error, so no sender waits for its timeout.
func (s *Listener) Serve(ctx context.Context, r Responder) {
	defer func() {
		for _, in := range s.l.Close() {
			const stopped = "the janitor stopped before carrying out the command"
			if in.Subject == SubjectReconcile {
				s.respond(in, reconcileResult{Error: stopped})
			} else {
				s.respond(in, FlushResult{Error: stopped})
			}
		}
	}()
	for {
		in, ok := s.l.Next(ctx)
		if !ok {
			return
		}
		if in.Subject == SubjectReconcile {
			s.logger.Info("reconcile pass requested")
			sum := r.Reconcile(ctx)
			if sum == nil || ctx.Err() != nil {
				s.respond(in, reconcileResult{Error: "the janitor stopped during the pass"})
				continue
			}
			s.respond(in, reconcileResult{PassSummary: *sum})
			continue
		}
		var req FlushRequest
		if err := json.Unmarshal(in.Data, &req); err != nil {
			s.respond(in, FlushResult{Error: "bad flush request: " + untrusted.Log(err.Error())})
			continue
		}
		s.respond(in, r.Flush(ctx, req))
	}
}

func (s *Listener) respond(in *queue.Incoming, res any) {
	data, err := json.Marshal(res)
	if err == nil {
		err = in.Respond(data)
	}
	if err != nil {
		// The sender times out and says so; nothing else waits on the answer.
		s.logger.Warn("control answer not sent", "subject", in.Subject, logkey.Error, err)
	}
}
