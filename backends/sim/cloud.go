// Package sim is a simulated backend for tests, benchmarks and the sandbox. Its
// "instances" are goroutines that run the real bootstrap protocol against the
// spawner's bootstrap endpoint and then play the runner (with the fake GitHub's
// runner program); no real job runs anywhere.
//
// A Cloud is the simulated infrastructure. It lives in one process and can be shared
// over HTTP (Handler, NewRemote), so that several spawner processes create instances
// in the same place, and instances outlive a crashed consumer as real ones do. It
// must not import the queue or GitHub packages: the runner is passed in.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
)

// RunnerFunc plays the runner inside an instance: given the JIT config the spawner
// handed out, it runs one job and returns its exit code. Hooks report the job's start
// the way the real runner's pre-job hook does.
type RunnerFunc func(ctx context.Context, jitConfig string, hooks Hooks) (exitCode int, err error)

// Hooks are what the bootstrap's pre-job hook does, as Go calls.
type Hooks struct {
	// JobStarted reports job_started, then pre_job_done (the pre-job phase).
	JobStarted func(ctx context.Context) error
}

// CloudOptions configures a Cloud.
type CloudOptions struct {
	// Runner plays the runner in every instance. nil: instances boot, fetch their
	// config, report a job that finished at once, and stop.
	Runner RunnerFunc
	// HTTPClient reaches the bootstrap endpoint (default: a client with a 30 s timeout).
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Cloud holds the simulated instances.
type Cloud struct {
	opts   CloudOptions
	logger *slog.Logger
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	instances map[string]*instance
	faults    []fault
	// deleteFaults: deletes of existing instances fail, by flavor ("": every flavor).
	deleteFaults map[string]error
	stats        Stats
	live         map[string]int // flavor → instances that exist now
}

// Stats are counters for tests and benchmarks.
type Stats struct {
	Created int
	Deleted int
	// MaxLive is, per flavor, the most instances that existed at the same moment.
	MaxLive map[string]int
	// Live is, per flavor, the instances that exist now.
	Live map[string]int
	// PeakNames are, per flavor, the instances that existed when MaxLive was reached.
	PeakNames map[string][]string
	// CreateCalls counts every Create, with the time it arrived (for latency
	// measurements), by runner name.
	CreateCalls map[string]time.Time
	// RunnerStarted is when each instance started its runner program, by name.
	RunnerStarted map[string]time.Time
}

type instance struct {
	backends.Instance
	deployment string
	cancel     context.CancelFunc
	done       chan struct{}
}

type fault struct {
	flavor string
	err    error
	count  int
	// leave: the instance is made before the create fails.
	leave bool
}

// NewCloud starts an empty cloud. Close stops every instance.
func NewCloud(opts CloudOptions) *Cloud {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Cloud{
		opts: opts, logger: opts.Logger, ctx: ctx, stop: stop,
		instances:    map[string]*instance{},
		live:         map[string]int{},
		deleteFaults: map[string]error{},
		stats:        Stats{MaxLive: map[string]int{}, PeakNames: map[string][]string{}, CreateCalls: map[string]time.Time{}, RunnerStarted: map[string]time.Time{}},
	}
}

// Close stops every instance and waits for their goroutines.
func (c *Cloud) Close() {
	c.stop()
	c.wg.Wait()
}

// FailNext makes the next count creates for flavor fail with err (backends.ErrQuota,
// backends.ErrBadSpec or any transient error).
func (c *Cloud) FailNext(flavor string, err error, count int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = append(c.faults, fault{flavor: flavor, err: err, count: count})
}

// FailNextLeaving makes the next count creates for flavor make their instance and
// then fail with err, as a backend does whose delete of what it half-made failed:
// the instance exists (stopped: its start failed, so it runs nothing) although the
// create said it failed.
func (c *Cloud) FailNextLeaving(flavor string, err error, count int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = append(c.faults, fault{flavor: flavor, err: err, count: count, leave: true})
}

// SetDeleteFault makes every delete of an existing instance of flavor ("": of every
// flavor) fail with err, until it is set again with a nil err. A delete of a name
// with no instance still succeeds: there is nothing to fail.
func (c *Cloud) SetDeleteFault(flavor string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		delete(c.deleteFaults, flavor)
		return
	}
	c.deleteFaults[flavor] = err
}

// Stats returns a copy of the counters.
func (c *Cloud) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.MaxLive = maps.Clone(c.stats.MaxLive)
	s.Live = maps.Clone(c.live)
	s.PeakNames = maps.Clone(c.stats.PeakNames)
	s.CreateCalls = maps.Clone(c.stats.CreateCalls)
	s.RunnerStarted = maps.Clone(c.stats.RunnerStarted)
	return s
}

// All lists every instance, ours or not, of every deployment.
func (c *Cloud) All() []backends.Instance {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]backends.Instance, 0, len(c.instances))
	for _, in := range c.instances {
		out = append(out, in.Instance)
	}
	slices.SortFunc(out, func(a, b backends.Instance) int { return compareStrings(a.Name, b.Name) })
	return out
}

// PlantForeign adds an instance that belongs to no deployment (as if made by hand).
func (c *Cloud) PlantForeign(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.instances[name] = &instance{Instance: backends.Instance{Name: name, ID: "foreign-" + name, Backend: "sim", State: backends.StateRunning, CreatedAt: time.Now()}, done: closedChan()}
}

// Protect sets or clears the protected tag of an instance.
func (c *Cloud) Protect(name string, protected bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if in, ok := c.instances[name]; ok {
		in.Protected = protected
	}
}

// Exists reports whether an instance by that name exists, ours or not.
func (c *Cloud) Exists(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.instances[name]
	return ok
}

func (c *Cloud) create(deployment string, bootTime time.Duration, spec backends.InstanceSpec) (backends.Instance, error) {
	if err := backends.ValidateSpec(spec.Flavor, spec); err != nil {
		return backends.Instance{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.CreateCalls[spec.Name] = time.Now()
	if in, ok := c.instances[spec.Name]; ok {
		if in.deployment != deployment || in.Flavor != spec.Flavor {
			return backends.Instance{}, fmt.Errorf("create %s: %w: the name is taken by an instance that is not ours", spec.Name, backends.ErrBadSpec)
		}
		return in.Instance, nil
	}
	var failWith error
	for i := range c.faults {
		f := &c.faults[i]
		if f.count > 0 && (f.flavor == "" || f.flavor == spec.Flavor) {
			f.count--
			failWith = fmt.Errorf("create %s: %w", spec.Name, f.err)
			if !f.leave {
				return backends.Instance{}, failWith
			}
			break
		}
	}
	ctx, cancel := context.WithCancel(c.ctx)
	in := &instance{
		Instance: backends.Instance{
			Name: spec.Name, ID: "sim-" + spec.Name, Backend: "sim", Flavor: spec.Flavor, JobID: spec.JobID,
			State: backends.StatePending, CreatedAt: time.Now(),
		},
		deployment: deployment, cancel: cancel, done: make(chan struct{}),
	}
	c.instances[spec.Name] = in
	c.stats.Created++
	c.live[spec.Flavor]++
	if c.live[spec.Flavor] > c.stats.MaxLive[spec.Flavor] {
		c.stats.MaxLive[spec.Flavor] = c.live[spec.Flavor]
		var names []string
		for _, in := range c.instances {
			if in.Flavor == spec.Flavor && in.deployment != "" {
				names = append(names, in.Name)
			}
		}
		slices.Sort(names)
		c.stats.PeakNames[spec.Flavor] = names
	}
	if failWith != nil {
		// Half-made: it exists, but its start failed, so it runs nothing.
		in.State, in.done = backends.StateStopped, closedChan()
		return backends.Instance{}, failWith
	}
	env := maps.Clone(spec.Env)
	c.wg.Go(func() {
		defer close(in.done)
		c.boot(ctx, in, env, bootTime)
	})
	return in.Instance, nil
}

func (c *Cloud) delete(deployment, flavor, name string) error {
	c.mu.Lock()
	in, ok := c.instances[name]
	if !ok {
		c.mu.Unlock()
		return nil
	}
	if in.deployment != deployment || in.Flavor != flavor || deployment == "" {
		c.mu.Unlock()
		return fmt.Errorf("delete %s: %w", name, backends.ErrNotFound)
	}
	if err := c.deleteFaultLocked(flavor); err != nil {
		c.mu.Unlock()
		return fmt.Errorf("delete %s: %w", name, err)
	}
	delete(c.instances, name)
	c.stats.Deleted++
	c.live[in.Flavor]--
	c.mu.Unlock()
	in.cancel()
	<-in.done
	return nil
}

func (c *Cloud) deleteFaultLocked(flavor string) error {
	if err, ok := c.deleteFaults[flavor]; ok {
		return err
	}
	return c.deleteFaults[""]
}

func (c *Cloud) list(deployment, flavor string) []backends.Instance {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []backends.Instance
	for _, in := range c.instances {
		if in.deployment == deployment && in.Flavor == flavor && deployment != "" {
			out = append(out, in.Instance)
		}
	}
	return out
}

func (c *Cloud) setState(in *instance, s backends.State, fault string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	in.State, in.Fault = s, fault
}

// boot is the instance's life: wait for the boot time, run the bootstrap, power off.
func (c *Cloud) boot(ctx context.Context, in *instance, env map[string]string, bootTime time.Duration) {
	if bootTime > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(bootTime):
		}
	}
	c.setState(in, backends.StateRunning, "")
	err := c.bootstrap(ctx, in.Name, env)
	if ctx.Err() != nil {
		return // deleted
	}
	if err != nil {
		c.logger.Info("sim instance bootstrap ended", "instance", in.Name, "error", err)
	}
	c.setState(in, backends.StateStopped, "")
}

func closedChan() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

var errNoBootstrap = errors.New("no bootstrap environment")
