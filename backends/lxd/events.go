package lxd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/coder/websocket"
)

// Lifecycle event actions this package reads (LXD's "Events" reference, type
// "lifecycle").
const (
	// ActionInstanceDeleted is sent once an instance is gone: deleted through the
	// API, or an ephemeral instance that stopped.
	ActionInstanceDeleted = "instance-deleted"
)

// eventReadLimit bounds one event message. Lifecycle events are a few hundred bytes;
// one larger than this ends the stream, and its reader falls back to asking.
const eventReadLimit = 1 << 20

// LifecycleEvent is one message of LXD's event stream (GET /1.0/events) of type
// lifecycle.
type LifecycleEvent struct {
	Type     string `json:"type"`
	Project  string `json:"project"`
	Metadata struct {
		Action string `json:"action"`
		// Source is the object's API path: "/1.0/instances/NAME", with
		// "?project=P" outside the default project.
		Source string `json:"source"`
	} `json:"metadata"`
}

// Instance returns the name of the instance the event is about, or "" when it is
// about something else.
func (e LifecycleEvent) Instance() string {
	u, err := url.Parse(e.Metadata.Source)
	if err != nil {
		return ""
	}
	name, ok := strings.CutPrefix(u.Path, "/1.0/instances/")
	if !ok || strings.Contains(name, "/") {
		return ""
	}
	return name
}

// EventStream is one subscription to the server's lifecycle events, in the client's
// project. It sees only what happens after it is open.
type EventStream struct {
	conn *websocket.Conn
}

// LifecycleEvents subscribes to the server's lifecycle events. The subscription
// lasts until Close or until ctx ends; it costs the server one listener, and no
// operation slot.
func (c *Client) LifecycleEvents(ctx context.Context) (*EventStream, error) {
	q := url.Values{"type": {"lifecycle"}}
	if c.project != "" {
		q.Set("project", c.project)
	}
	// coder/websocket takes the http(s) scheme and our http.Client, so the stream
	// uses the same socket or TLS identity as every other call.
	conn, resp, err := websocket.Dial(ctx, c.base+"/1.0/events?"+q.Encode(), &websocket.DialOptions{HTTPClient: c.hc})
	if err != nil {
		e := &Error{Call: "GET /1.0/events", err: err, kind: ErrUnreachable}
		if resp != nil {
			// The server answered, but not with the upgrade.
			e.Code = resp.StatusCode
			e.kind = classify(resp.StatusCode, "", false)
		}
		return nil, e
	}
	conn.SetReadLimit(eventReadLimit)
	return &EventStream{conn: conn}, nil
}

// Next returns the next lifecycle event. An error ends the stream: the connection
// broke, the server went away, ctx ended, or a message was not an event.
func (s *EventStream) Next(ctx context.Context) (LifecycleEvent, error) {
	for {
		typ, data, err := s.conn.Read(ctx)
		if err != nil {
			return LifecycleEvent{}, fmt.Errorf("lxd event stream: %w", err)
		}
		if typ != websocket.MessageText {
			continue
		}
		var ev LifecycleEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return LifecycleEvent{}, fmt.Errorf("lxd event stream: undecodable event: %w", err)
		}
		if ev.Type == "lifecycle" {
			return ev, nil
		}
	}
}

// Close ends the subscription at once, without the closing handshake: nothing is
// owed to the server, and the handshake would wait for its answer.
func (s *EventStream) Close() error {
	if err := s.conn.CloseNow(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close lxd event stream: %w", err)
	}
	return nil
}
