package janitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/queue"
)

// Mode is a flush mode; its value is the operator-facing string.
type Mode string

// The flush modes (DESIGN.md, issue 7).
const (
	// FlushIdle removes runners not running a job; an instance is deleted only after
	// GitHub accepted removing its runner (a busy runner is skipped).
	FlushIdle Mode = "FLUSH_IDLE"
	// FlushIdleWaitRepoCheck first waits while a runner is in its pre-job phase.
	FlushIdleWaitRepoCheck Mode = "FLUSH_IDLE_WAIT_REPO_CHECK"
	// FlushBusy removes every runner, busy ones too (their jobs fail).
	FlushBusy Mode = "FLUSH_BUSY"
	// FlushBusyWaitRepoCheck first waits while a runner is in its pre-job phase.
	FlushBusyWaitRepoCheck Mode = "FLUSH_BUSY_WAIT_REPO_CHECK"
	// ForceFlushWaitRepoCheck waits, then removes everything even when the GitHub
	// API fails; leftover registrations are removed by reconcile later.
	ForceFlushWaitRepoCheck Mode = "FORCE_FLUSH_WAIT_REPO_CHECK"
)

// Modes lists every flush mode.
var Modes = []Mode{FlushIdle, FlushIdleWaitRepoCheck, FlushBusy, FlushBusyWaitRepoCheck, ForceFlushWaitRepoCheck}

// ParseMode accepts a mode's operator string or its lower-case, hyphenated form
// (flush-idle, force-flush-wait-repo-check).
func ParseMode(s string) (Mode, error) {
	m := Mode(strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_")))
	for _, known := range Modes {
		if m == known {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown flush mode %q (want one of FLUSH_IDLE, FLUSH_IDLE_WAIT_REPO_CHECK, FLUSH_BUSY, FLUSH_BUSY_WAIT_REPO_CHECK, FORCE_FLUSH_WAIT_REPO_CHECK)", s)
}

func (m Mode) waitRepoCheck() bool { return strings.HasSuffix(string(m), "_WAIT_REPO_CHECK") }
func (m Mode) busy() bool          { return m != FlushIdle && m != FlushIdleWaitRepoCheck }
func (m Mode) force() bool         { return m == ForceFlushWaitRepoCheck }

// FlushRequest and FlushResult are the control messages (see package queue).
type (
	FlushRequest = queue.FlushRequest
	FlushResult  = queue.FlushResult
)

// ErrNoJanitor means no active janitor answered a command.
var ErrNoJanitor = errors.New("no active janitor answered")

// ErrFlushIncomplete means the janitor answered but could not carry the flush out in
// full; the FlushResult returned with it says what was done.
var ErrFlushIncomplete = errors.New("flush incomplete")

// DefaultFlushTimeout bounds RequestFlush when ctx has no deadline: long enough for
// both default waits (2 × 5 × 30 s) and the removals.
const DefaultFlushTimeout = 10 * time.Minute

// RequestFlush asks the active janitor to flush and waits for its answer. It returns
// ErrNoJanitor when no janitor is active, ctx's error on timeout, and
// ErrFlushIncomplete (with the result filled in) when the janitor could not do it all.
func RequestFlush(ctx context.Context, conn *queue.Conn, req FlushRequest) (FlushResult, error) {
	mode, err := ParseMode(req.Mode)
	if err != nil {
		return FlushResult{}, fmt.Errorf("request flush: %w", err)
	}
	req.Mode = string(mode)
	data, err := json.Marshal(req)
	if err != nil {
		return FlushResult{}, fmt.Errorf("request flush: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultFlushTimeout)
		defer cancel()
	}
	msg, err := conn.NATS().RequestWithContext(ctx, queue.SubjectFlush, data)
	if errors.Is(err, nats.ErrNoResponders) {
		return FlushResult{Mode: req.Mode}, fmt.Errorf("flush %s: %w", mode, ErrNoJanitor)
	}
	if err != nil {
		return FlushResult{Mode: req.Mode}, fmt.Errorf("flush %s: %w", mode, err)
	}
	var res FlushResult
	if err := json.Unmarshal(msg.Data, &res); err != nil {
		return FlushResult{Mode: req.Mode}, fmt.Errorf("flush %s: decode answer: %w", mode, err)
	}
	if res.Error != "" {
		return res, fmt.Errorf("flush %s: %w: %s", mode, ErrFlushIncomplete, res.Error)
	}
	return res, nil
}

// control is the active janitor's subscription to commands.
type control struct {
	sub *nats.Subscription
	ch  chan *nats.Msg
}

// subscribeControl subscribes and waits until the server has the subscription, so
// that a command sent right after this janitor became active finds it.
func (j *Janitor) subscribeControl() (*control, error) {
	nc := j.opts.Conn.NATS()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanQueueSubscribe(queue.SubjectFlush, queue.ControlQueueGroup, ch)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", queue.SubjectFlush, err)
	}
	if err := nc.FlushTimeout(renewTimeout); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe %s: %w", queue.SubjectFlush, err)
	}
	return &control{sub: sub, ch: ch}, nil
}

// serveControl carries out commands one at a time until ctx ends, then answers what
// is still queued with an error so no sender waits for its timeout.
func (j *Janitor) serveControl(ctx context.Context, c *control) {
	defer func() {
		_ = c.sub.Unsubscribe()
		for {
			select {
			case m := <-c.ch:
				j.respond(m, FlushResult{Error: "the janitor stopped before carrying out the flush"})
			default:
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-c.ch:
			var req FlushRequest
			if err := json.Unmarshal(m.Data, &req); err != nil {
				j.respond(m, FlushResult{Error: "bad flush request"})
				continue
			}
			j.respond(m, j.flush(ctx, req))
		}
	}
}

func (j *Janitor) respond(m *nats.Msg, res FlushResult) {
	data, err := json.Marshal(res)
	if err == nil {
		err = m.Respond(data)
	}
	if err != nil {
		j.logger.Warn("flush answer not sent", logkey.Mode, res.Mode, logkey.Error, err)
	}
}
