// Package rawlauncher is a bench tool: the least a launcher of single-use runners on
// LXD can do, to measure the spawner against. It receives the fake GitHub's signed
// workflow_job webhooks and, for each queued job, mints one JIT config (one REST call),
// then creates and starts one container whose user-data starts the fake runner with
// that config at once. There is no queue, no record, no capacity rule and no
// bootstrap round trip: the JIT config rides in the user-data, and the container is
// ephemeral, so LXD deletes it as the runner powers it off. What it measures is the
// physical limit of the LXD daemon and the machine under a burst.
//
// With Options.DeleteByAPI the containers are not ephemeral: on the job's completed
// webhook the launcher stops (when still running) and deletes its container through
// the API, as the spawner does, so that the cost of those two operations can be
// measured against LXD's own delete of an ephemeral container.
//
// It is a test tool (the JIT config sits in the instance's configuration, which the
// spawner's bootstrap never allows); product packages never import it.
package rawlauncher

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/runner-spawner/runner-spawner/backends/lxd"
)

// TagKey is the instance config key carrying Options.Run: Leftovers and Close find
// this launcher's containers by it.
const TagKey = "user.rawlauncher.run"

// Options configure a Launcher.
type Options struct {
	// Client reaches the LXD daemon. Its MaxConcurrentOperations must be at least
	// Concurrency (or large, when Concurrency is 0), or the client's own limit is
	// what binds.
	Client *lxd.Client
	// GitHubURL is the REST base URL of the fake GitHub, Org the organisation the
	// runners register in, Token its token.
	GitHubURL, Org, Token string
	// WebhookSecret checks X-Hub-Signature-256 on every delivery.
	WebhookSecret string
	// Image is the LXD image alias; Profiles are applied in order. The profiles must
	// make RunnerCommand exist in the container.
	Image    string
	Profiles []string
	// RunnerCommand starts the runner; "--jitconfig <config>" is appended.
	RunnerCommand string
	// Concurrency bounds the create+start sequences in flight; 0: unbounded.
	Concurrency int
	// DeleteByAPI: containers are not ephemeral; each is stopped and deleted
	// through the API once its job's completed webhook names its runner.
	DeleteByAPI bool
	// Run names this launcher's containers (rl-<Run>-<job id>) and tags them; it
	// must be short (LXD names are at most 63 characters) and of [a-z0-9].
	Run string
	// HTTPClient calls GitHub (nil: a client with a 30 s timeout).
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Stats is what a launcher did.
type Stats struct {
	// Queued is the queued webhooks taken (each job once); Minted the JIT configs
	// minted; Started the containers created and started; Failed the jobs whose
	// mint or launch failed.
	Queued, Minted, Started, Failed int
	// Deleted is the containers deleted through the API (DeleteByAPI).
	Deleted int
	// Launches are the containers started, with when each step ended.
	Launches []Launch
	// Errors are the first failures, for the report.
	Errors []string
}

// Launch is one container started, with the time each step of its launch ended.
type Launch struct {
	// Name is the container's and its runner's name; Job the job it was made for
	// (the fake gives a runner the oldest job it matches, maybe another).
	Name string
	Job  int64
	// Received: the queued webhook was taken; Minted: the JIT config came back;
	// Slot: a concurrency slot was taken (= Minted when unbounded); Started: the
	// create and the start returned.
	Received, Minted, Slot, Started time.Time
}

// CreateStart is what LXD took for the create and the start, once a slot was held.
func (l Launch) CreateStart() time.Duration { return l.Started.Sub(l.Slot) }

// Launcher launches one container per queued job. Serve its ServeHTTP as the fake
// GitHub's webhook target.
type Launcher struct {
	o    Options
	hc   *http.Client
	log  *slog.Logger
	sem  chan struct{} // nil: unbounded
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu    sync.Mutex
	seen  map[int64]bool
	stats Stats
}

// New checks opts and returns a Launcher. Close it.
func New(opts Options) (*Launcher, error) {
	var errs []error
	if opts.Client == nil {
		errs = append(errs, errors.New("an LXD client is required"))
	}
	if opts.GitHubURL == "" || opts.Org == "" {
		errs = append(errs, errors.New("the GitHub URL and org are required"))
	}
	if opts.Image == "" || opts.RunnerCommand == "" {
		errs = append(errs, errors.New("the image and the runner command are required"))
	}
	if opts.Run == "" || len(opts.Run) > 20 || strings.Trim(opts.Run, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		errs = append(errs, fmt.Errorf("run %q must be 1 to 20 characters of [a-z0-9]", opts.Run))
	}
	if opts.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency must not be negative (got %d)", opts.Concurrency))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("rawlauncher: %w", err)
	}
	l := &Launcher{o: opts, hc: opts.HTTPClient, log: opts.Logger, seen: map[int64]bool{}}
	if l.hc == nil {
		l.hc = &http.Client{Timeout: 30 * time.Second}
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if opts.Concurrency > 0 {
		l.sem = make(chan struct{}, opts.Concurrency)
	}
	l.ctx, l.stop = context.WithCancel(context.Background())
	return l, nil
}

// webhook is the part of a workflow_job payload the launcher reads.
type webhook struct {
	Action      string `json:"action"`
	WorkflowJob struct {
		ID         int64    `json:"id"`
		Labels     []string `json:"labels"`
		RunnerName string   `json:"runner_name"`
	} `json:"workflow_job"`
}

// maxBody bounds a webhook body: GitHub's are at most 25 MB, the fake's a few KB.
const maxBody = 1 << 20

// ServeHTTP takes a webhook: it answers once the job is accepted, as the spawner's
// receiver does once JetStream has the event, and launches in the background.
func (l *Launcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	if !l.signed(r.Header.Get("X-Hub-Signature-256"), body) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if r.Header.Get("X-GitHub-Event") != "workflow_job" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var hook webhook
	if err := json.Unmarshal(body, &hook); err != nil || hook.WorkflowJob.ID == 0 {
		http.Error(w, "not a workflow_job payload", http.StatusBadRequest)
		return
	}
	if hook.Action == "completed" && l.o.DeleteByAPI && strings.HasPrefix(hook.WorkflowJob.RunnerName, "rl-"+l.o.Run+"-") {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.remove(hook.WorkflowJob.RunnerName)
		}()
	}
	if hook.Action != "queued" {
		// Otherwise in_progress and completed need nothing: the runner powers its
		// ephemeral container off when its job is over, and LXD deletes it.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	l.mu.Lock()
	dup := l.seen[hook.WorkflowJob.ID]
	l.seen[hook.WorkflowJob.ID] = true
	if !dup {
		l.stats.Queued++
		l.wg.Add(1)
	}
	l.mu.Unlock()
	if !dup {
		go func() {
			defer l.wg.Done()
			l.launch(hook.WorkflowJob.ID, hook.WorkflowJob.Labels, time.Now())
		}()
	}
	w.WriteHeader(http.StatusAccepted)
}

func (l *Launcher) signed(header string, body []byte) bool {
	if l.o.WebhookSecret == "" {
		return true
	}
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	sum, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(l.o.WebhookSecret))
	mac.Write(body)
	return hmac.Equal(sum, mac.Sum(nil))
}

// name is the container's (and the runner's) name for a job.
func (l *Launcher) name(job int64) string { return fmt.Sprintf("rl-%s-%d", l.o.Run, job) }

// launch mints the job's runner config and starts its container.
func (l *Launcher) launch(job int64, labels []string, received time.Time) {
	name := l.name(job)
	rec := Launch{Name: name, Job: job, Received: received}
	fail := func(err error) {
		l.log.Warn("raw launch failed", "instance", name, "error", err)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.stats.Failed++
		if len(l.stats.Errors) < 5 {
			l.stats.Errors = append(l.stats.Errors, err.Error())
		}
	}
	jit, err := l.mint(name, labels)
	if err != nil {
		fail(err)
		return
	}
	rec.Minted = time.Now()
	l.mu.Lock()
	l.stats.Minted++
	l.mu.Unlock()
	if l.sem != nil {
		select {
		case l.sem <- struct{}{}:
			defer func() { <-l.sem }()
		case <-l.ctx.Done():
			fail(fmt.Errorf("launch %s: %w", name, l.ctx.Err()))
			return
		}
	}
	rec.Slot = time.Now()
	err = l.o.Client.CreateInstance(l.ctx, lxd.InstancesPost{
		Name:      name,
		Profiles:  l.o.Profiles,
		Ephemeral: !l.o.DeleteByAPI,
		Source:    lxd.InstanceSource{Type: "image", Alias: l.o.Image},
		Config: map[string]string{
			"cloud-init.user-data": l.userData(jit),
			TagKey:                 l.o.Run,
		},
	})
	if err != nil {
		fail(fmt.Errorf("create %s: %w", name, err))
		return
	}
	if err := l.o.Client.SetInstanceState(l.ctx, name, lxd.InstanceStatePut{Action: "start", Timeout: -1}); err != nil {
		err = fmt.Errorf("start %s: %w", name, err)
		// A container that did not start never powers itself off: delete it now.
		if derr := l.o.Client.DeleteInstance(context.WithoutCancel(l.ctx), name); derr != nil && !errors.Is(derr, lxd.ErrNotFound) {
			err = errors.Join(err, fmt.Errorf("delete it: %w", derr))
		}
		fail(err)
		return
	}
	rec.Started = time.Now()
	l.mu.Lock()
	l.stats.Started++
	l.stats.Launches = append(l.stats.Launches, rec)
	l.mu.Unlock()
}

// busyFor bounds the retries of a delete refused because LXD's own stop after the
// power-off inside still holds the instance.
const busyFor = 30 * time.Second

// remove stops the container when it still runs (its runner may not have powered it
// off yet) and deletes it, as the spawner's LXD backend does.
func (l *Launcher) remove(name string) {
	ctx := context.WithoutCancel(l.ctx)
	err := func() error {
		in, err := l.o.Client.Instance(ctx, name)
		if errors.Is(err, lxd.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("look up %s: %w", name, err)
		}
		if in.Status != "Stopped" {
			// One that stops on its own meanwhile makes the stop fail; the delete
			// decides.
			if err := l.o.Client.SetInstanceState(ctx, name, lxd.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}); err != nil {
				l.log.Info("stop before delete", "instance", name, "error", err)
			}
		}
		deadline := time.Now().Add(busyFor)
		for {
			err := l.o.Client.DeleteInstance(ctx, name)
			if err == nil || errors.Is(err, lxd.ErrNotFound) {
				return nil
			}
			if !errors.Is(err, lxd.ErrBusy) || time.Now().After(deadline) {
				return fmt.Errorf("delete %s: %w", name, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.log.Warn("raw delete failed", "instance", name, "error", err)
		if len(l.stats.Errors) < 5 {
			l.stats.Errors = append(l.stats.Errors, err.Error())
		}
		return
	}
	l.stats.Deleted++
}

// userData is the container's whole bootstrap: the tiny image's init runs a "#!"
// user-data once the network is up. The config is base64, so single quotes hold it.
func (l *Launcher) userData(jit string) string {
	return fmt.Sprintf(`#!/bin/sh
# rawlauncher: run one job, then power off (an ephemeral container goes with it).
RUNNER_ALLOW_RUNASROOT=1 %s --jitconfig '%s'
poweroff 2>/dev/null || poweroff -f 2>/dev/null || kill -s PWR 1
`, l.o.RunnerCommand, jit)
}

// mint registers an ephemeral runner with the job's labels and returns its JIT config.
func (l *Launcher) mint(name string, labels []string) (string, error) {
	body, err := json.Marshal(map[string]any{"name": name, "runner_group_id": 1, "labels": labels, "work_folder": "_work"})
	if err != nil {
		return "", fmt.Errorf("mint %s: %w", name, err)
	}
	url := strings.TrimRight(l.o.GitHubURL, "/") + "/orgs/" + l.o.Org + "/actions/runners/generate-jitconfig"
	req, err := http.NewRequestWithContext(l.ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("mint %s: %w", name, err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("Content-Type", "application/json")
	if l.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+l.o.Token)
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("mint %s: %w", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return "", fmt.Errorf("mint %s: read answer: %w", name, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("mint %s: HTTP %d: %.200s", name, resp.StatusCode, b)
	}
	var out struct {
		JIT string `json:"encoded_jit_config"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return "", fmt.Errorf("mint %s: decode answer: %w", name, err)
	}
	if out.JIT == "" || strings.Trim(out.JIT, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != "" {
		return "", fmt.Errorf("mint %s: the answer's encoded_jit_config is not base64", name)
	}
	return out.JIT, nil
}

// Stats returns what the launcher did so far.
func (l *Launcher) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Launches = slices.Clone(s.Launches)
	s.Errors = slices.Clone(s.Errors)
	return s
}

// Leftovers lists this launcher's containers that still exist.
func (l *Launcher) Leftovers(ctx context.Context) ([]lxd.InstanceInfo, error) {
	list, err := l.o.Client.Instances(ctx, fmt.Sprintf("config.%s eq %s", TagKey, l.o.Run))
	if err != nil {
		return nil, fmt.Errorf("list containers of run %s: %w", l.o.Run, err)
	}
	// Servers without api_filtering ignore the filter.
	return slices.DeleteFunc(list, func(in lxd.InstanceInfo) bool { return in.Config[TagKey] != l.o.Run }), nil
}

// Close stops launching, waits for the launches in flight, and force-deletes every
// container of this launcher that is left (a runner that never got a job never
// powers off). It returns what it could not delete.
func (l *Launcher) Close(ctx context.Context) error {
	l.stop()
	l.wg.Wait()
	list, err := l.Leftovers(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, in := range list {
		if in.Status != "Stopped" {
			// An ephemeral container goes with its stop; one that stops on its own
			// meanwhile makes the stop fail, and the delete below decides.
			if err := l.o.Client.SetInstanceState(ctx, in.Name, lxd.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}); err != nil && !errors.Is(err, lxd.ErrNotFound) {
				l.log.Info("stop leftover", "instance", in.Name, "error", err)
			}
		}
		if err := l.o.Client.DeleteInstance(ctx, in.Name); err != nil && !errors.Is(err, lxd.ErrNotFound) {
			errs = append(errs, fmt.Errorf("delete %s: %w", in.Name, err))
		}
	}
	return errors.Join(errs...)
}
