package lxd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// LXD's status codes for operations and instances (REST API, "Status codes").
const (
	statusRunning = 103
	statusSuccess = 200
	statusFailure = 400
)

// Operation is a background operation (REST API: /1.0/operations/{id}).
type Operation struct {
	ID          string         `json:"id"`
	Class       string         `json:"class"`
	Description string         `json:"description"`
	Status      string         `json:"status"`
	StatusCode  int            `json:"status_code"`
	Metadata    map[string]any `json:"metadata"`
	Err         string         `json:"err"`
	CreatedAt   time.Time      `json:"created_at"`
}

// done: success, failure or cancelled (codes 2xx–4xx); 1xx is still going.
func (o Operation) done() bool { return o.StatusCode >= statusSuccess }

// WaitOperation waits until the operation with that id finishes, at most the
// client's operation timeout (or ctx's deadline if earlier). A failed operation is an
// *Error carrying LXD's message; one still running at the deadline is ErrTimeout.
func (c *Client) WaitOperation(ctx context.Context, id string) (Operation, error) {
	return c.wait(ctx, Operation{ID: id, StatusCode: statusRunning})
}

func (c *Client) wait(ctx context.Context, op Operation) (Operation, error) {
	call := "operation " + op.ID
	if op.Description != "" {
		call = "operation " + op.Description + " (" + op.ID + ")"
	}
	wctx, cancel := context.WithTimeout(ctx, c.opTimeout)
	defer cancel()
	start := time.Now()
	for !op.done() {
		// LXD's /wait holds the request until the operation ends or timeout seconds
		// pass; asking for no more than is left of our deadline keeps us on time.
		secs := maxWaitSeconds
		if dl, ok := wctx.Deadline(); ok {
			secs = max(1, min(secs, int(time.Until(dl).Seconds())))
		}
		r, err := c.do(wctx, request{
			method:  http.MethodGet,
			path:    "/1.0/operations/" + url.PathEscape(op.ID) + "/wait",
			query:   url.Values{"timeout": {strconv.Itoa(secs)}},
			timeout: time.Duration(secs)*time.Second + c.timeout,
		})
		if err == nil {
			var next Operation
			if jerr := json.Unmarshal(r.Metadata, &next); jerr != nil {
				return op, fmt.Errorf("decode %s: %w", call, jerr)
			}
			op = next
			continue
		}
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return op, err // the caller cancelled
		}
		if wctx.Err() != nil {
			break
		}
		return op, err
	}
	if !op.done() {
		return op, &Error{Call: call, Message: fmt.Sprintf("still %s after %s", op.Status, time.Since(start).Round(time.Millisecond)), kind: ErrTimeout, err: context.DeadlineExceeded}
	}
	c.logger.Debug("lxd operation done", "operation", op.Description, "status", op.Status, "duration", time.Since(start))
	if op.StatusCode != statusSuccess {
		msg := op.Err
		if msg == "" {
			msg = op.Status
		}
		return op, &Error{Call: call, Code: op.StatusCode, Message: msg, kind: classify(op.StatusCode, msg, true)}
	}
	return op, nil
}
