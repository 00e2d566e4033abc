package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/runner-spawner/runner-spawner/queue"
)

// ErrNoJanitor means no active janitor answered a command.
var ErrNoJanitor = errors.New("no active janitor answered")

// ErrFlushIncomplete means the janitor answered but could not carry the flush out in
// full; the FlushResult returned with it says what was done.
var ErrFlushIncomplete = errors.New("flush incomplete")

// DefaultFlushTimeout bounds Flush when ctx has no deadline: long enough for both
// default waits (2 × 5 × 30 s) and the removals.
const DefaultFlushTimeout = 10 * time.Minute

// Flush asks the active janitor to flush and waits for its answer. It returns
// ErrNoJanitor when no janitor is active, ctx's error on timeout, and
// ErrFlushIncomplete (with the result filled in) when the janitor could not do it all.
func Flush(ctx context.Context, conn *queue.Conn, req FlushRequest) (FlushResult, error) {
	if _, err := ParseMode(string(req.Mode)); err != nil {
		return FlushResult{}, fmt.Errorf("request flush: %w", err) // a Mode not made by ParseMode
	}
	data, err := json.Marshal(req)
	if err != nil {
		return FlushResult{}, fmt.Errorf("request flush: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultFlushTimeout)
		defer cancel()
	}
	answer, err := conn.Request(ctx, SubjectFlush, data)
	if errors.Is(err, queue.ErrNoResponders) {
		return FlushResult{Mode: req.Mode}, fmt.Errorf("flush %s: %w", req.Mode, ErrNoJanitor)
	}
	if err != nil {
		return FlushResult{Mode: req.Mode}, fmt.Errorf("flush %s: %w", req.Mode, err)
	}
	var res FlushResult
	if err := json.Unmarshal(answer, &res); err != nil {
		return FlushResult{Mode: req.Mode}, fmt.Errorf("flush %s: decode answer: %w", req.Mode, err)
	}
	if res.Error != "" {
		return res, fmt.Errorf("flush %s: %w: %s", req.Mode, ErrFlushIncomplete, res.Error)
	}
	return res, nil
}

// Reconcile asks the active janitor for a reconcile pass now and returns the pass's
// summary. It returns ErrNoJanitor when no janitor is active and ctx's error on
// timeout. A suspect (an orphan instance, say) is acted on only once two passes at
// least half janitor.interval apart have seen it, so a pass on demand right after
// another marks new suspects rather than deleting them.
func Reconcile(ctx context.Context, conn *queue.Conn) (PassSummary, error) {
	answer, err := conn.Request(ctx, SubjectReconcile, nil)
	if errors.Is(err, queue.ErrNoResponders) {
		return PassSummary{}, fmt.Errorf("reconcile: %w", ErrNoJanitor)
	}
	if err != nil {
		return PassSummary{}, fmt.Errorf("reconcile: %w", err)
	}
	var res reconcileResult
	if err := json.Unmarshal(answer, &res); err != nil {
		return PassSummary{}, fmt.Errorf("reconcile: decode answer: %w", err)
	}
	if res.Error != "" {
		return PassSummary{}, fmt.Errorf("reconcile: %s", res.Error)
	}
	return res.PassSummary, nil
}
