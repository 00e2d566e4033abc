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

// RequestReconcile asks the active janitor for a reconcile pass now and returns the
// pass's summary. It returns ErrNoJanitor when no janitor is active and ctx's error on
// timeout. A suspect (an orphan instance, say) is acted on only once two passes at
// least half janitor.interval apart have seen it, so a pass on demand right after
// another marks new suspects rather than deleting them.
func RequestReconcile(ctx context.Context, conn *queue.Conn) (PassSummary, error) {
	msg, err := conn.NATS().RequestWithContext(ctx, queue.SubjectReconcile, nil)
	if errors.Is(err, nats.ErrNoResponders) {
		return PassSummary{}, fmt.Errorf("reconcile: %w", ErrNoJanitor)
	}
	if err != nil {
		return PassSummary{}, fmt.Errorf("reconcile: %w", err)
	}
	var res reconcileResult
	if err := json.Unmarshal(msg.Data, &res); err != nil {
		return PassSummary{}, fmt.Errorf("reconcile: decode answer: %w", err)
	}
	if res.Error != "" {
		return PassSummary{}, fmt.Errorf("reconcile: %s", res.Error)
	}
	return res.PassSummary, nil
}

// reconcileResult is the answer on SubjectReconcile: a summary, or why there is none.
type reconcileResult struct {
	PassSummary
	Error string `json:"error,omitempty"`
}

// control is the active janitor's subscription to commands.
type control struct {
	subs []*nats.Subscription
	ch   chan *nats.Msg
}

// subscribeControl subscribes and waits until the server has the subscriptions, so
// that a command sent right after this janitor became active finds them.
func (j *Janitor) subscribeControl() (*control, error) {
	nc := j.opts.Conn.NATS()
	c := &control{ch: make(chan *nats.Msg, 64)}
	for _, subject := range []string{queue.SubjectFlush, queue.SubjectReconcile} {
		sub, err := nc.ChanQueueSubscribe(subject, queue.ControlQueueGroup, c.ch)
		if err != nil {
			c.unsubscribe()
			return nil, fmt.Errorf("subscribe %s: %w", subject, err)
		}
		c.subs = append(c.subs, sub)
	}
	if err := nc.FlushTimeout(renewTimeout); err != nil {
		c.unsubscribe()
		return nil, fmt.Errorf("subscribe to control subjects: %w", err)
	}
	return c, nil
}

func (c *control) unsubscribe() {
	for _, s := range c.subs {
		_ = s.Unsubscribe()
	}
}

// serveControl carries out commands one at a time until ctx ends, then answers what
// is still queued with an error so no sender waits for its timeout.
func (j *Janitor) serveControl(ctx context.Context, c *control) {
	defer func() {
		c.unsubscribe()
		for {
			select {
			case m := <-c.ch:
				const stopped = "the janitor stopped before carrying out the command"
				if m.Subject == queue.SubjectReconcile {
					j.respond(m, reconcileResult{Error: stopped})
				} else {
					j.respond(m, FlushResult{Error: stopped})
				}
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
			if m.Subject == queue.SubjectReconcile {
				j.logger.Info("reconcile pass requested")
				sum := j.reconcile(ctx)
				if ctx.Err() != nil {
					j.respond(m, reconcileResult{Error: "the janitor stopped during the pass"})
					continue
				}
				j.respond(m, reconcileResult{PassSummary: *sum})
				continue
			}
			var req FlushRequest
			if err := json.Unmarshal(m.Data, &req); err != nil {
				j.respond(m, FlushResult{Error: "bad flush request"})
				continue
			}
			j.respond(m, j.flush(ctx, req))
		}
	}
}

func (j *Janitor) respond(m *nats.Msg, res any) {
	data, err := json.Marshal(res)
	if err == nil {
		err = m.Respond(data)
	}
	if err != nil {
		j.logger.Warn("control answer not sent", "subject", m.Subject, logkey.Error, err)
	}
}
