package lxd

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeLXD is an httptest server speaking LXD's REST shapes for the calls the client
// makes: sync, async and error envelopes, background operations with /wait, and the
// quirks met on the real daemon (a create over an existing name fails inside its
// operation; a missing profile answers 500). Tests inject failures with fault and
// hold operations open with hold.
type fakeLXD struct {
	srv *httptest.Server

	mu        sync.Mutex
	instances map[string]*InstanceInfo
	images    map[string]bool
	profiles  map[string]bool
	ops       map[string]*fakeOp
	nextOp    int
	requests  []fakeRequest
	creates   []InstancesPost
	execs     []execPost
	files     map[string]fakeFile // instance + path
	logs      map[string]string   // instance → its lxc.log
	inflight  int
	peak      int
	// fault returns the error message an operation ("create", "start", "stop",
	// "delete", "exec") on instance fails with, or "".
	fault func(action, instance string) string
	// hold, when set, keeps every operation running until it is closed.
	hold chan struct{}
	// listeners are the open event streams (GET /1.0/events), each fed its
	// lifecycle events as JSON.
	listeners map[chan []byte]bool
	// noEvents makes /1.0/events answer 404, as a server too old for it would;
	// quietDeletes deletes without sending the event, as if the stream missed it.
	noEvents, quietDeletes bool
}

type fakeRequest struct {
	Method, Path string
	Query        map[string][]string
}

type fakeFile struct {
	Content []byte
	Mode    string
	Type    string
}

type fakeOp struct {
	op   Operation
	done chan struct{}
}

func newFakeLXD(t *testing.T) *fakeLXD {
	f := &fakeLXD{
		instances: map[string]*InstanceInfo{},
		images:    map[string]bool{"tiny": true},
		profiles:  map[string]bool{"default": true},
		ops:       map[string]*fakeOp{},
		files:     map[string]fakeFile{},
		logs:      map[string]string{},
		listeners: map[chan []byte]bool{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// client returns a Client of the fake.
func (f *fakeLXD) client(t *testing.T, o ClientOptions) *Client {
	t.Helper()
	c, err := NewClient(o)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	c.base = f.srv.URL
	c.hc = f.srv.Client()
	return c
}

// addInstance plants an instance directly.
func (f *fakeLXD) addInstance(name, status string, config map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if config == nil {
		config = map[string]string{}
	}
	if status != "Stopped" {
		config["volatile.last_state.power"] = "RUNNING"
	}
	f.instances[name] = &InstanceInfo{Name: name, Type: "container", Status: status, Config: config, CreatedAt: time.Now()}
}

func (f *fakeLXD) count(method, path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

func (f *fakeLXD) has(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.instances[name]
	return ok
}

func (f *fakeLXD) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query()})
	f.mu.Unlock()

	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/1.0"), "/")[1:]
	switch {
	case r.URL.Path == "/1.0" && r.Method == http.MethodGet:
		sync200(w, map[string]any{"api_version": "1.0", "auth": "trusted", "api_extensions": []string{"api_filtering"},
			"environment": map[string]any{"server_version": "5.0.2"}})
	case r.URL.Path == "/1.0/events" && r.Method == http.MethodGet:
		f.events(w, r)
	case len(parts) == 3 && parts[0] == "operations" && parts[2] == "wait":
		f.wait(w, r, parts[1])
	case len(parts) == 1 && parts[0] == "instances" && r.Method == http.MethodGet:
		f.list(w)
	case len(parts) == 1 && parts[0] == "instances" && r.Method == http.MethodPost:
		f.create(w, r)
	case len(parts) == 2 && parts[0] == "instances" && r.Method == http.MethodGet:
		f.mu.Lock()
		in, ok := f.instances[parts[1]]
		var cp InstanceInfo
		if ok {
			cp = *in
		}
		f.mu.Unlock()
		if !ok {
			lxdError(w, 404, "Instance not found")
			return
		}
		sync200(w, cp)
	case len(parts) == 2 && parts[0] == "instances" && r.Method == http.MethodDelete:
		f.mutateInstance(w, parts[1], "delete", func(in *InstanceInfo) string {
			if in.Status == "Running" {
				return "Instance is running"
			}
			f.removeLocked(in.Name)
			return ""
		})
	case len(parts) == 3 && parts[0] == "instances" && parts[2] == "state":
		var req InstanceStatePut
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.mutateInstance(w, parts[1], req.Action, func(in *InstanceInfo) string {
			switch req.Action {
			case "start":
				if in.Status == "Running" {
					return "The instance is already running"
				}
				in.Status = "Running"
				in.Config["volatile.last_state.power"] = "RUNNING"
			case "stop":
				if in.Status == "Stopped" {
					return "The instance is already stopped"
				}
				in.Status = "Stopped"
				if in.Ephemeral {
					f.removeLocked(in.Name)
				}
			}
			return ""
		})
	case len(parts) == 4 && parts[0] == "instances" && parts[2] == "logs" && r.Method == http.MethodGet:
		f.mu.Lock()
		_, ok := f.instances[parts[1]]
		text := f.logs[parts[1]]
		f.mu.Unlock()
		if !ok || parts[3] != "lxc.log" {
			lxdError(w, 404, "Instance not found")
			return
		}
		// Like LXD: the file as it is, no envelope.
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, text)
	case len(parts) == 3 && parts[0] == "instances" && parts[2] == "files":
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		_, ok := f.instances[parts[1]]
		if ok {
			f.files[parts[1]+":"+r.URL.Query().Get("path")] = fakeFile{Content: body, Mode: r.Header.Get("X-LXD-mode"), Type: r.Header.Get("X-LXD-type")}
		}
		f.mu.Unlock()
		if !ok {
			lxdError(w, 404, "Instance not found")
			return
		}
		sync200(w, map[string]any{})
	case len(parts) == 3 && parts[0] == "instances" && parts[2] == "exec":
		var req execPost
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		f.execs = append(f.execs, req)
		f.mu.Unlock()
		f.mutateInstance(w, parts[1], "exec", func(in *InstanceInfo) string {
			if in.Status != "Running" {
				return "Instance is not running"
			}
			return ""
		})
	default:
		lxdError(w, 404, "not found")
	}
}

func (f *fakeLXD) list(w http.ResponseWriter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Like a server without api_filtering: the filter is ignored, every instance comes.
	out := []InstanceInfo{}
	for _, in := range f.instances {
		out = append(out, *in)
	}
	sync200(w, out)
}

func (f *fakeLXD) create(w http.ResponseWriter, r *http.Request) {
	var req InstancesPost
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		lxdError(w, 400, "invalid JSON")
		return
	}
	f.mu.Lock()
	f.creates = append(f.creates, req)
	if !f.images[req.Source.Alias] && !f.images[req.Source.Fingerprint] {
		f.mu.Unlock()
		lxdError(w, 404, "Image alias not found")
		return
	}
	for _, p := range req.Profiles {
		if !f.profiles[p] {
			f.mu.Unlock()
			lxdError(w, 500, fmt.Sprintf("Requested profile %q doesn't exist", p))
			return
		}
	}
	f.mu.Unlock()
	f.operation(w, "Creating instance", req.Name, "create", func() string {
		if _, ok := f.instances[req.Name]; ok {
			return `Failed creating instance record: Add instance info to the database: This "instances" entry already exists`
		}
		cfg := map[string]string{}
		for k, v := range req.Config {
			cfg[k] = v
		}
		f.instances[req.Name] = &InstanceInfo{Name: req.Name, Type: "container", Status: "Stopped", Config: cfg, Ephemeral: req.Ephemeral, Profiles: req.Profiles, CreatedAt: time.Now()}
		return ""
	})
}

// mutateInstance runs apply on the instance as a background operation.
func (f *fakeLXD) mutateInstance(w http.ResponseWriter, name, action string, apply func(*InstanceInfo) string) {
	f.mu.Lock()
	_, ok := f.instances[name]
	f.mu.Unlock()
	if !ok {
		lxdError(w, 404, "Instance not found")
		return
	}
	f.operation(w, action+" instance", name, action, func() string {
		in, ok := f.instances[name]
		if !ok {
			return "Instance not found"
		}
		return apply(in)
	})
}

// operation answers 202 with a running operation; apply runs (under f.mu) when the
// operation completes: at once, or when hold is closed.
func (f *fakeLXD) operation(w http.ResponseWriter, desc, instance, action string, apply func() string) {
	f.mu.Lock()
	f.nextOp++
	id := fmt.Sprintf("op-%d", f.nextOp)
	op := &fakeOp{
		op: Operation{ID: id, Class: "task", Description: desc, Status: "Running", StatusCode: statusRunning,
			Metadata: map[string]any{}, CreatedAt: time.Now()},
		done: make(chan struct{}),
	}
	f.ops[id] = op
	f.inflight++
	f.peak = max(f.peak, f.inflight)
	running := op.op
	hold := f.hold
	f.mu.Unlock()

	finish := func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		msg := ""
		if f.fault != nil {
			msg = f.fault(action, instance)
		}
		if msg == "" {
			msg = apply()
		}
		if msg != "" {
			op.op.Status, op.op.StatusCode, op.op.Err = "Failure", statusFailure, msg
		} else {
			op.op.Status, op.op.StatusCode = "Success", statusSuccess
		}
		if action == "exec" {
			code := 0
			if msg != "" {
				code = 127
			}
			op.op.Metadata["return"] = code
		}
		f.inflight--
		close(op.done)
	}
	if hold == nil {
		finish()
	} else {
		go func() { <-hold; finish() }()
	}
	w.Header().Set("Location", "/1.0/operations/"+id)
	writeJSON(w, http.StatusAccepted, map[string]any{
		"type": "async", "status": "Operation created", "status_code": 100,
		"operation": "/1.0/operations/" + id, "metadata": running,
	})
}

func (f *fakeLXD) wait(w http.ResponseWriter, r *http.Request, id string) {
	f.mu.Lock()
	op, ok := f.ops[id]
	f.mu.Unlock()
	if !ok {
		lxdError(w, 404, "Operation not found")
		return
	}
	secs, _ := strconv.Atoi(r.URL.Query().Get("timeout"))
	select {
	case <-op.done:
	case <-time.After(time.Duration(secs) * time.Second):
	case <-r.Context().Done():
		return
	}
	f.mu.Lock()
	cp := op.op
	f.mu.Unlock()
	sync200(w, cp)
}

func sync200(w http.ResponseWriter, metadata any) {
	writeJSON(w, http.StatusOK, map[string]any{"type": "sync", "status": "Success", "status_code": 200, "metadata": metadata})
}

func lxdError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"type": "error", "error": msg, "error_code": code, "metadata": nil})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// events serves GET /1.0/events?type=lifecycle as LXD does: a websocket carrying
// one JSON message per event, from the moment it is open.
func (f *fakeLXD) events(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	off := f.noEvents
	f.mu.Unlock()
	if off || r.URL.Query().Get("type") != "lifecycle" {
		lxdError(w, 404, "not found")
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	feed := make(chan []byte, 64)
	f.mu.Lock()
	f.listeners[feed] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.listeners, feed)
		f.mu.Unlock()
	}()
	// The client only reads; its close shows up here as the read failing.
	ctx := conn.CloseRead(r.Context())
	for {
		select {
		case msg, ok := <-feed:
			if !ok {
				return // dropStreams: the daemon went away
			}
			if conn.Write(ctx, websocket.MessageText, msg) != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// emitLocked sends a lifecycle event about an instance to every open stream.
func (f *fakeLXD) emitLocked(action, instance string) {
	msg, _ := json.Marshal(map[string]any{
		"type": "lifecycle", "timestamp": time.Now(), "project": "default", "location": "none",
		"metadata": map[string]any{"action": action, "source": "/1.0/instances/" + instance,
			"requestor": map[string]any{"username": "root", "protocol": "unix"}},
	})
	for feed := range f.listeners {
		select {
		case feed <- msg:
		default: // a stream that does not keep up loses events, as LXD's does
		}
	}
}

// removeLocked deletes an instance and says so on the event streams.
func (f *fakeLXD) removeLocked(name string) {
	delete(f.instances, name)
	if !f.quietDeletes {
		f.emitLocked("instance-deleted", name)
	}
}

// powerOff is the runner inside powering its instance off: an ephemeral instance
// is deleted, any other stops.
func (f *fakeLXD) powerOff(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.instances[name]
	if !ok {
		return
	}
	in.Status = "Stopped"
	f.emitLocked("instance-stopped", name)
	if in.Ephemeral {
		f.removeLocked(name)
	}
}

// dropStreams ends every open event stream, as a daemon restart does.
func (f *fakeLXD) dropStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for feed := range f.listeners {
		close(feed)
		delete(f.listeners, feed)
	}
}

// streams is the number of open event streams.
func (f *fakeLXD) streams() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.listeners)
}
