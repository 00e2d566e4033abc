package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
)

// BackendOptions configures one flavor's simulated backend.
type BackendOptions struct {
	DeploymentID string
	Flavor       string
	// BootTime is how long an instance takes before its bootstrap starts.
	BootTime time.Duration
	// BootJitter adds a random 0..BootJitter to each boot, so runners come up out of
	// order (and GitHub hands them other jobs, as it does).
	BootJitter time.Duration
}

// world is where instances live: a Cloud in this process, or one reached over HTTP.
type world interface {
	create(ctx context.Context, deployment string, bootTime time.Duration, spec backends.InstanceSpec) (backends.Instance, error)
	delete(ctx context.Context, deployment, flavor, name string) error
	list(ctx context.Context, deployment, flavor string) ([]backends.Instance, error)
}

// Backend is the simulated backend of one flavor.
type Backend struct {
	opts  BackendOptions
	world world
}

var _ backends.Backend = (*Backend)(nil)

// Backend returns a backend creating instances in this cloud.
func (c *Cloud) Backend(opts BackendOptions) *Backend {
	return &Backend{opts: opts, world: localWorld{c}}
}

// NewRemote returns a backend creating instances in the cloud served at baseURL (see
// Cloud.Handler).
func NewRemote(baseURL string, opts BackendOptions) *Backend {
	return &Backend{opts: opts, world: &remoteWorld{base: strings.TrimRight(baseURL, "/"), client: &http.Client{Timeout: 30 * time.Second}}}
}

// Create implements backends.Backend.
func (b *Backend) Create(ctx context.Context, spec backends.InstanceSpec) (backends.Instance, error) {
	if err := backends.ValidateSpec(b.opts.Flavor, spec); err != nil {
		return backends.Instance{}, err
	}
	boot := b.opts.BootTime
	if b.opts.BootJitter > 0 {
		boot += time.Duration(rand.Int64N(int64(b.opts.BootJitter)))
	}
	return b.world.create(ctx, b.opts.DeploymentID, boot, spec)
}

// Delete implements backends.Backend.
func (b *Backend) Delete(ctx context.Context, name string) error {
	return b.world.delete(ctx, b.opts.DeploymentID, b.opts.Flavor, name)
}

// List implements backends.Backend.
func (b *Backend) List(ctx context.Context) ([]backends.Instance, error) {
	return b.world.list(ctx, b.opts.DeploymentID, b.opts.Flavor)
}

type localWorld struct{ c *Cloud }

func (w localWorld) create(_ context.Context, d string, boot time.Duration, spec backends.InstanceSpec) (backends.Instance, error) {
	return w.c.create(d, boot, spec)
}
func (w localWorld) delete(_ context.Context, d, f, name string) error { return w.c.delete(d, f, name) }
func (w localWorld) list(_ context.Context, d, f string) ([]backends.Instance, error) {
	return w.c.list(d, f), nil
}

// The remote API: a small JSON protocol between NewRemote and Cloud.Handler.

type createRequest struct {
	Deployment string                `json:"deployment"`
	BootTimeMS int64                 `json:"boot_time_ms"`
	Spec       backends.InstanceSpec `json:"spec"`
}

type errorReply struct {
	Kind    string `json:"kind"` // quota, bad_spec, not_found, outcome_unknown, other
	Message string `json:"message"`
}

// Handler serves the cloud to remote backends (NewRemote), under any prefix.
func (c *Cloud) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /instances", func(w http.ResponseWriter, r *http.Request) {
		var req createRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeErr(w, fmt.Errorf("%w: %v", backends.ErrBadSpec, err))
			return
		}
		in, err := c.create(req.Deployment, time.Duration(req.BootTimeMS)*time.Millisecond, req.Spec)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, in)
	})
	mux.HandleFunc("DELETE /instances/{name}", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if err := c.delete(q.Get("deployment"), q.Get("flavor"), r.PathValue("name")); err != nil {
			writeErr(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /instances", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		list := c.list(q.Get("deployment"), q.Get("flavor"))
		if list == nil {
			list = []backends.Instance{}
		}
		writeJSON(w, list)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	kind, code := "other", http.StatusInternalServerError
	switch {
	case errors.Is(err, backends.ErrQuota):
		kind, code = "quota", http.StatusForbidden
	case errors.Is(err, backends.ErrBadSpec):
		kind, code = "bad_spec", http.StatusBadRequest
	case errors.Is(err, backends.ErrNotFound):
		kind, code = "not_found", http.StatusNotFound
	case errors.Is(err, backends.ErrOutcomeUnknown):
		kind, code = "outcome_unknown", http.StatusGatewayTimeout
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorReply{Kind: kind, Message: err.Error()})
}

type remoteWorld struct {
	base   string
	client *http.Client
}

func (w *remoteWorld) create(ctx context.Context, d string, boot time.Duration, spec backends.InstanceSpec) (backends.Instance, error) {
	var in backends.Instance
	err := w.do(ctx, http.MethodPost, "/instances", createRequest{Deployment: d, BootTimeMS: boot.Milliseconds(), Spec: spec}, &in)
	return in, err
}

func (w *remoteWorld) delete(ctx context.Context, d, f, name string) error {
	return w.do(ctx, http.MethodDelete, "/instances/"+url.PathEscape(name)+"?"+url.Values{"deployment": {d}, "flavor": {f}}.Encode(), nil, nil)
}

func (w *remoteWorld) list(ctx context.Context, d, f string) ([]backends.Instance, error) {
	var out []backends.Instance
	err := w.do(ctx, http.MethodGet, "/instances?"+url.Values{"deployment": {d}, "flavor": {f}}.Encode(), nil, &out)
	return out, err
}

func (w *remoteWorld) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, w.base+path, rd)
	if err != nil {
		return err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("sim cloud %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var er errorReply
		_ = json.NewDecoder(resp.Body).Decode(&er)
		switch er.Kind {
		case "quota":
			return fmt.Errorf("sim cloud: %w (%s)", backends.ErrQuota, er.Message)
		case "bad_spec":
			return fmt.Errorf("sim cloud: %w (%s)", backends.ErrBadSpec, er.Message)
		case "not_found":
			return fmt.Errorf("sim cloud: %w (%s)", backends.ErrNotFound, er.Message)
		case "outcome_unknown":
			return fmt.Errorf("sim cloud: %w (%s)", backends.ErrOutcomeUnknown, er.Message)
		}
		return fmt.Errorf("sim cloud %s %s: status %d: %s", method, path, resp.StatusCode, er.Message)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}
