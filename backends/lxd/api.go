package lxd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The typed calls the backend needs, named after LXD's REST API. Each is one request
// (plus the wait for its background operation, for the mutating ones).

// ServerInfo is what GET /1.0 says about the server and about us.
type ServerInfo struct {
	APIVersion    string   `json:"api_version"`
	APIExtensions []string `json:"api_extensions"`
	// Auth is "trusted" when the server accepts our certificate (always over the socket).
	Auth        string `json:"auth"`
	Environment struct {
		ServerName    string `json:"server_name"`
		ServerVersion string `json:"server_version"`
		Project       string `json:"project"`
	} `json:"environment"`
}

// HasExtension reports whether the server lists the API extension.
func (s ServerInfo) HasExtension(name string) bool {
	for _, e := range s.APIExtensions {
		if e == name {
			return true
		}
	}
	return false
}

// Server returns GET /1.0: a cheap way to check the daemon answers and trusts us.
func (c *Client) Server(ctx context.Context) (ServerInfo, error) {
	var s ServerInfo
	err := c.get(ctx, "/1.0", nil, &s)
	return s, err
}

// InstanceInfo is an instance as GET /1.0/instances/{name} shows it (the fields used).
type InstanceInfo struct {
	Name       string            `json:"name"`
	Type       string            `json:"type"` // container, virtual-machine
	Status     string            `json:"status"`
	StatusCode int               `json:"status_code"`
	Config     map[string]string `json:"config"`
	Profiles   []string          `json:"profiles"`
	Ephemeral  bool              `json:"ephemeral"`
	CreatedAt  time.Time         `json:"created_at"`
	Project    string            `json:"project"`
	Location   string            `json:"location"`
}

// Instance returns one instance; a missing one is ErrNotFound.
func (c *Client) Instance(ctx context.Context, name string) (InstanceInfo, error) {
	var in InstanceInfo
	err := c.get(ctx, instancePath(name), nil, &in)
	return in, err
}

// Instances lists the instances matching filter (LXD's filter syntax, e.g.
// `config.user.a eq x and config.user.b eq y`; empty: all) in one call
// (recursion=1). Servers without the api_filtering extension ignore the filter, so
// callers that care check the result too.
func (c *Client) Instances(ctx context.Context, filter string) ([]InstanceInfo, error) {
	q := url.Values{"recursion": {"1"}}
	if filter != "" {
		q.Set("filter", filter)
	}
	var list []InstanceInfo
	err := c.get(ctx, "/1.0/instances", q, &list)
	return list, err
}

// InstanceLog returns one of an instance's log files (lxc.log for a container,
// qemu.log for a VM), as GET /1.0/instances/{name}/logs/{file} sends it.
func (c *Client) InstanceLog(ctx context.Context, name, file string) (string, error) {
	r, err := c.do(ctx, request{method: http.MethodGet, path: instancePath(name) + "/logs/" + url.PathEscape(file), file: true})
	if err != nil {
		return "", err
	}
	return string(r.file), nil
}

// InstanceSource is where a new instance's root file system comes from.
type InstanceSource struct {
	Type        string `json:"type"` // "image"
	Alias       string `json:"alias,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// Server and Protocol name a remote image server ("simplestreams" or "lxd");
	// empty: the server's local image store.
	Server   string `json:"server,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	Mode     string `json:"mode,omitempty"` // "pull" with Server
}

// InstancesPost is the body of POST /1.0/instances.
type InstancesPost struct {
	Name string `json:"name"`
	Type string `json:"type,omitempty"`
	// Profiles nil: LXD applies its "default" profile; empty: none.
	Profiles  []string                     `json:"profiles"`
	Config    map[string]string            `json:"config,omitempty"`
	Devices   map[string]map[string]string `json:"devices,omitempty"`
	Ephemeral bool                         `json:"ephemeral"`
	Source    InstanceSource               `json:"source"`
}

// CreateInstance creates a stopped instance and waits until it exists. A name that
// is taken fails with ErrExists; a missing image or profile with ErrNotFound.
func (c *Client) CreateInstance(ctx context.Context, req InstancesPost) error {
	_, err := c.mutate(ctx, request{method: http.MethodPost, path: "/1.0/instances", body: req})
	return err
}

// InstanceStatePut is the body of PUT /1.0/instances/{name}/state.
type InstanceStatePut struct {
	Action  string `json:"action"`  // start, stop, restart, freeze, unfreeze
	Timeout int    `json:"timeout"` // seconds for a clean stop; -1: no limit
	Force   bool   `json:"force"`
}

// SetInstanceState starts or stops an instance and waits until it has.
func (c *Client) SetInstanceState(ctx context.Context, name string, req InstanceStatePut) error {
	_, err := c.mutate(ctx, request{method: http.MethodPut, path: instancePath(name) + "/state", body: req, state: req.Action})
	return err
}

// DeleteInstance deletes a stopped instance and waits until it is gone.
func (c *Client) DeleteInstance(ctx context.Context, name string) error {
	_, err := c.mutate(ctx, request{method: http.MethodDelete, path: instancePath(name)})
	return err
}

// CreateDirectory makes a directory in the instance (owned by root); an existing
// one is left as is.
func (c *Client) CreateDirectory(ctx context.Context, instance, path string, mode fs.FileMode) error {
	_, err := c.mutate(ctx, request{
		method: http.MethodPost,
		path:   instancePath(instance) + "/files",
		query:  url.Values{"path": {path}},
		raw:    bytes.NewReader(nil),
		header: fileHeader("directory", mode),
	})
	return err
}

// PushFile writes content to path in the instance (owned by root, replacing any
// file there). It works on a stopped container too; a VM needs its lxd-agent.
func (c *Client) PushFile(ctx context.Context, instance, path string, content []byte, mode fs.FileMode) error {
	h := fileHeader("file", mode)
	h.Set("X-LXD-write", "overwrite")
	_, err := c.mutate(ctx, request{
		method: http.MethodPost,
		path:   instancePath(instance) + "/files",
		query:  url.Values{"path": {path}},
		raw:    bytes.NewReader(content),
		header: h,
	})
	return err
}

func fileHeader(typ string, mode fs.FileMode) http.Header {
	h := http.Header{}
	h.Set("X-LXD-type", typ)
	h.Set("X-LXD-uid", "0")
	h.Set("X-LXD-gid", "0")
	h.Set("X-LXD-mode", fmt.Sprintf("%04o", mode.Perm()))
	return h
}

// ExecRequest is the body of POST /1.0/instances/{name}/exec, for a command run
// without a terminal or websockets: its output goes nowhere, its exit code comes
// back in the operation.
type ExecRequest struct {
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment,omitempty"`
	Cwd         string            `json:"cwd,omitempty"`
}

type execPost struct {
	ExecRequest
	WaitForWebsocket bool `json:"wait-for-websocket"`
	Interactive      bool `json:"interactive"`
	RecordOutput     bool `json:"record-output"`
}

// Exec runs a command in a running instance and waits for it to exit. The
// environment is given to that one process only: it is not stored in the instance's
// configuration. A command that exits non-zero returns its code and an *Error.
func (c *Client) Exec(ctx context.Context, instance string, req ExecRequest) (exitCode int, err error) {
	op, err := c.mutate(ctx, request{
		method: http.MethodPost,
		path:   instancePath(instance) + "/exec",
		body:   execPost{ExecRequest: req},
	})
	code := -1
	if v, ok := op.Metadata["return"]; ok {
		if n, ok := v.(float64); ok {
			code = int(n)
		}
	}
	if err == nil && code != 0 {
		err = &Error{Call: "exec in " + instance, Message: "command exited with code " + strconv.Itoa(code)}
	}
	return code, err
}

// NetworkInfo is a managed network as GET /1.0/networks/{name} shows it.
type NetworkInfo struct {
	Name    string            `json:"name"`
	Type    string            `json:"type"`
	Managed bool              `json:"managed"`
	Config  map[string]string `json:"config"`
}

// Network returns one network (its config holds ipv4.address for a bridge).
func (c *Client) Network(ctx context.Context, name string) (NetworkInfo, error) {
	var n NetworkInfo
	err := c.get(ctx, "/1.0/networks/"+url.PathEscape(name), nil, &n)
	return n, err
}

func instancePath(name string) string { return "/1.0/instances/" + url.PathEscape(name) }

// HasImage reports whether the server's image store holds ref, an alias or a
// fingerprint (a prefix of one will do, as in lxc).
func (c *Client) HasImage(ctx context.Context, ref string) (bool, error) {
	err := c.get(ctx, "/1.0/images/aliases/"+url.PathEscape(ref), nil, nil)
	if errors.Is(err, ErrNotFound) {
		err = c.get(ctx, "/1.0/images/"+url.PathEscape(ref), nil, nil)
	}
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, err
}
