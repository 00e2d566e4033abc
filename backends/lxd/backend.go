package lxd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// Instance types and bootstrap modes, as written in Options (and the config file).
const (
	TypeContainer = "container"
	TypeVM        = "virtual-machine"

	// BootstrapCloudInit puts spec.UserData into the instance's cloud-init.user-data
	// (and user.user-data, which older images' cloud-init and template-seeded images
	// read): for images with cloud-init, or minimal images that run "#!" user-data.
	BootstrapCloudInit = "cloud-init"
	// BootstrapExec is for images without cloud-init: after start, spec.Script is
	// pushed into the instance and run through LXD's exec API, detached, with
	// spec.Env as its environment. The bootstrap token reaches the instance only
	// there, never in its configuration.
	BootstrapExec = "exec"
)

// BackendName is what Instance.Backend says.
const BackendName = "lxd"

// TagPrefix is the config-key prefix of our tags: user.spawner.deployment, …
const TagPrefix = "user.spawner."

// DefaultScriptPath is where the exec bootstrap mode writes spec.Script. Its
// directory is created (mode 0700) if missing; its parent must exist.
const DefaultScriptPath = "/var/lib/spawner/bootstrap.sh"

// Defaults for the zero values of Options.
const (
	DefaultAgentTimeout = 2 * time.Minute
	cleanupTimeout      = 2 * time.Minute
)

// Options configures the Backend of one flavor. Zero values mean the documented
// defaults, so cmd/spawner copies the config over as it is.
type Options struct {
	// DeploymentID and Flavor are written into every instance's tags; List and
	// Delete see only instances carrying both.
	DeploymentID string
	Flavor       string
	// Image is an image alias, or a fingerprint (12 to 64 hex digits).
	Image string
	// ImageServer is a remote image server's URL ("https://images.example"); empty:
	// the LXD server's local image store. ImageProtocol is "simplestreams" (default)
	// or "lxd".
	ImageServer   string
	ImageProtocol string
	// Type is TypeContainer (default) or TypeVM.
	Type string
	// Profiles applied in order; nil means LXD's "default" profile, empty means none
	// (then StoragePool and Network must give the root disk and the nic).
	Profiles []string
	// CPU, Memory and Disk are limits.cpu ("2", "0-3"), limits.memory ("2GiB") and
	// the root disk's size ("20GiB"; needs StoragePool). Empty: the profiles' own.
	CPU, Memory, Disk string
	// StoragePool, when set, gives the instance its own root disk in that pool.
	StoragePool string
	// Network, when set, attaches eth0 to that managed network instead of the
	// profiles' nic.
	Network string
	// Config holds extra instance config keys (security.nesting, …). Our tag keys
	// and the user-data keys are the backend's own and may not be set here.
	Config map[string]string
	// Ephemeral instances are deleted by LXD as soon as they stop.
	Ephemeral bool
	// NoPowerOff says the runner does not power its instance off after its job
	// (runner.power_off: false): DeleteFinished then deletes at once, ephemeral or
	// not, since nothing would make the instance go by itself.
	NoPowerOff bool
	// Bootstrap is BootstrapCloudInit (default) or BootstrapExec.
	Bootstrap string
	// ScriptPath is where BootstrapExec writes the script; empty: DefaultScriptPath.
	ScriptPath string
	// AgentTimeout bounds how long BootstrapExec waits for a VM's lxd-agent to answer
	// after start. Zero: DefaultAgentTimeout.
	AgentTimeout time.Duration
	// Logger gets one line per instance created or deleted; nil discards.
	Logger *slog.Logger
}

var (
	fingerprintRE = regexp.MustCompile(`^[0-9a-f]{12,64}$`)
	// LXD object names: no slashes, spaces or control characters.
	lxdNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
)

// Validate reports every setting that cannot work, joined.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if o.DeploymentID == "" {
		bad("deployment id is required")
	}
	if o.Flavor == "" {
		bad("flavor is required")
	}
	if o.Image == "" {
		bad("image is required")
	}
	switch o.Type {
	case "", TypeContainer, TypeVM:
	default:
		bad("type must be %s or %s (got %q)", TypeContainer, TypeVM, o.Type)
	}
	switch o.Bootstrap {
	case "", BootstrapCloudInit, BootstrapExec:
	default:
		bad("bootstrap must be %s or %s (got %q)", BootstrapCloudInit, BootstrapExec, o.Bootstrap)
	}
	switch o.ImageProtocol {
	case "", "simplestreams", "lxd":
	default:
		bad("image protocol must be simplestreams or lxd (got %q)", o.ImageProtocol)
	}
	if o.ImageProtocol != "" && o.ImageServer == "" {
		bad("image protocol is set without an image server")
	}
	for _, p := range o.Profiles {
		if !lxdNameRE.MatchString(p) {
			bad("profile %q is not a valid LXD name", p)
		}
	}
	if o.StoragePool != "" && !lxdNameRE.MatchString(o.StoragePool) {
		bad("storage pool %q is not a valid LXD name", o.StoragePool)
	}
	if o.Network != "" && !lxdNameRE.MatchString(o.Network) {
		bad("network %q is not a valid LXD name", o.Network)
	}
	if o.Disk != "" && o.StoragePool == "" {
		bad("a disk limit needs a storage pool (the root disk is redefined in it)")
	}
	for k := range o.Config {
		if reason := reservedKey(k); reason != "" {
			bad("config key %q %s", k, reason)
		}
	}
	if o.ScriptPath != "" && (!strings.HasPrefix(o.ScriptPath, "/") || strings.HasSuffix(o.ScriptPath, "/")) {
		bad("script path %q must be an absolute file path", o.ScriptPath)
	}
	return errors.Join(errs...)
}

// reservedKey says why an extra config key may not be set by an operator, or "".
func reservedKey(k string) string {
	switch {
	case strings.HasPrefix(k, TagPrefix):
		return "is the backend's own tag"
	case k == "cloud-init.user-data" || k == "user.user-data":
		return "is set from the runner's bootstrap"
	case strings.HasPrefix(k, "volatile."):
		return "is LXD's internal state"
	case k == "limits.cpu" || k == "limits.memory":
		return "is set with the flavor's limits"
	}
	return ""
}

// Backend implements backends.Backend for one flavor on one LXD server.
type Backend struct {
	c      *Client
	o      Options
	logger *slog.Logger
	// startPause is the wait before the one retry of a failed start.
	startPause time.Duration
	// grace and recheck pace DeleteFinished's wait for an ephemeral instance
	// (ephemeralGrace, ephemeralRecheck).
	grace, recheck time.Duration
}

var _ backends.Backend = (*Backend)(nil)

// New returns the Backend of one flavor. Several may share c (and with it the
// server's operation limit).
func New(c *Client, opts Options) (*Backend, error) {
	if c == nil {
		panic("lxd.New: nil Client")
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("lxd flavor %s: %w", opts.Flavor, err)
	}
	if opts.Type == "" {
		opts.Type = TypeContainer
	}
	if opts.Bootstrap == "" {
		opts.Bootstrap = BootstrapCloudInit
	}
	if opts.ScriptPath == "" {
		opts.ScriptPath = DefaultScriptPath
	}
	if opts.AgentTimeout == 0 {
		opts.AgentTimeout = DefaultAgentTimeout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Backend{
		c: c, o: opts, startPause: startRetryPause, grace: ephemeralGrace, recheck: ephemeralRecheck,
		logger: logger.With(logkey.Backend, BackendName, logkey.Flavor, opts.Flavor),
	}, nil
}

// Create makes and starts the instance for spec; see backends.Backend.
func (b *Backend) Create(ctx context.Context, spec backends.InstanceSpec) (backends.Instance, error) {
	if err := backends.ValidateSpec(b.o.Flavor, spec); err != nil {
		return backends.Instance{}, err
	}
	switch {
	case b.o.Bootstrap == BootstrapCloudInit && spec.UserData == "":
		return backends.Instance{}, fmt.Errorf("%w: flavor %s boots with cloud-init but the spec has no user-data", backends.ErrBadSpec, b.o.Flavor)
	case b.o.Bootstrap == BootstrapExec && spec.Script == "":
		return backends.Instance{}, fmt.Errorf("%w: flavor %s boots with exec but the spec has no script", backends.ErrBadSpec, b.o.Flavor)
	}
	log := b.logger.With(logkey.Instance, spec.Name, logkey.JobID, spec.JobID)
	start := time.Now()

	// Create first, look up only when the name is taken: almost every Create is of a
	// new name, and on a busy host each API call is LXD CPU that a burst's creates
	// wait for (BENCHMARKS.md, "Bursts on real LXD"). LXD checks the name before it
	// makes anything, so a taken name costs one refused POST.
	if err := b.c.CreateInstance(ctx, b.post(spec)); err != nil {
		if errors.Is(err, ErrExists) {
			// A retry of a Create that got as far as making it (a crash, a lost
			// answer), or another Create of this name that won the race: what is there
			// is the answer, once it is known to be ours.
			in, gerr := b.c.Instance(ctx, spec.Name)
			if gerr == nil {
				return b.existing(ctx, spec, in, log)
			}
			return backends.Instance{}, fmt.Errorf("create instance %s: %w (looking it up: %v)", spec.Name, err, gerr)
		}
		// LXD reverts a create that fails on its side, but one we stopped waiting for
		// may still finish: remove whatever is there, and say that more may come.
		lost := lostAnswer(err)
		err = permanent(err)
		if cerr := b.cleanup(ctx, spec.Name); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if lost {
			err = fmt.Errorf("%w: %w", backends.ErrOutcomeUnknown, err)
		}
		return backends.Instance{}, fmt.Errorf("create instance %s: %w", spec.Name, err)
	}
	inst, err := b.boot(ctx, spec, log)
	if err != nil {
		return backends.Instance{}, err
	}
	log.Info("instance created", "duration", time.Since(start).Round(time.Millisecond))
	return inst, nil
}

// existing answers Create for a name that is already taken.
func (b *Backend) existing(ctx context.Context, spec backends.InstanceSpec, in InstanceInfo, log *slog.Logger) (backends.Instance, error) {
	if !b.ours(in) {
		return backends.Instance{}, fmt.Errorf("create instance %s: %w: the name is taken by an instance that is not this deployment's and flavor's", spec.Name, backends.ErrBadSpec)
	}
	if neverStarted(in) {
		// A Create that ended between create and start (a crash, a lost answer):
		// finish it rather than hand back an instance that will never boot.
		log.Info("resuming half-made instance")
		return b.boot(ctx, spec, log)
	}
	return b.instance(in), nil
}

// boot starts a created instance and runs the exec bootstrap; on failure it deletes
// the instance.
func (b *Backend) boot(ctx context.Context, spec backends.InstanceSpec, log *slog.Logger) (backends.Instance, error) {
	fail := func(step string, err error) (backends.Instance, error) {
		err = fmt.Errorf("%s %s: %w", step, spec.Name, permanent(err))
		if cerr := b.cleanup(ctx, spec.Name); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return backends.Instance{}, err
	}
	if err := b.start(ctx, spec.Name, log); err != nil {
		return fail("start instance", err)
	}
	if b.o.Bootstrap == BootstrapExec {
		if err := b.execBootstrap(ctx, spec); err != nil {
			return fail("bootstrap instance", err)
		}
	}
	// What LXD would say back is known already: the name is the id, and the start
	// succeeded. No read-back: on a busy host every call is LXD CPU that the burst's
	// other creates wait for (BENCHMARKS.md, "Bursts on real LXD"), and the caller
	// keeps only the id.
	return backends.Instance{
		Name: spec.Name, ID: spec.Name, Backend: BackendName, Flavor: spec.Flavor,
		JobID: spec.JobID, State: backends.StateRunning, CreatedAt: time.Now(),
	}, nil
}

// startRetryPause is how long boot waits before it retries a failed start.
const startRetryPause = 2 * time.Second

// start starts the created instance. A start that fails for a reason that may pass
// is retried once: under a burst of concurrent starts LXD now and then fails one
// because the lxc hooks calling back into the daemon time out (seen on LXD 5.0 on a
// loaded host), and starting the stopped instance again costs far less than
// deleting it and creating it anew. A failure that stays carries the errors of the
// instance's log, which LXD's own message only points to.
func (b *Backend) start(ctx context.Context, name string, log *slog.Logger) error {
	for attempt := 1; ; attempt++ {
		err := b.c.SetInstanceState(ctx, name, InstanceStatePut{Action: "start", Timeout: -1})
		if err == nil {
			return nil
		}
		// A concurrent Create of the same name may have started it first.
		in, gerr := b.c.Instance(ctx, name)
		if gerr == nil && in.Status == "Running" {
			return nil
		}
		retry := attempt == 1 && gerr == nil && in.Status == "Stopped" && ctx.Err() == nil &&
			!errors.Is(permanent(err), backends.ErrBadSpec) && !errors.Is(err, ErrQuota)
		why := b.logErrors(ctx, name)
		if !retry {
			if why != "" {
				return fmt.Errorf("%w (instance log: %s)", err, why)
			}
			return err
		}
		log.Warn("start failed; retrying once", logkey.Error, err, "instance_log", why)
		select {
		case <-time.After(b.startPause):
		case <-ctx.Done():
			return err
		}
	}
}

// logErrors returns the first errors in the instance's log (lxc.log: containers
// only; a VM's qemu.log has no such lines), or "" when there are none or the log
// cannot be read.
func (b *Backend) logErrors(ctx context.Context, name string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	text, err := b.c.InstanceLog(ctx, name, "lxc.log")
	if err != nil {
		return ""
	}
	return lxcLogErrors(text, 3)
}

// lxcLogErrors picks the messages of the first max ERROR lines of an lxc.log, whose
// lines read "lxc NAME TIME ERROR    conf - ../src/lxc/conf.c:run_buffer:322 - text".
func lxcLogErrors(text string, max int) string {
	var out []string
	for line := range strings.Lines(text) {
		_, rest, ok := strings.Cut(line, " ERROR ")
		if !ok {
			continue
		}
		parts := strings.SplitN(strings.TrimSpace(rest), " - ", 3)
		out = append(out, strings.TrimSpace(parts[len(parts)-1]))
		if len(out) == max {
			break
		}
	}
	return strings.Join(out, "; ")
}

// permanent marks the failures a retry cannot fix (a missing image, profile, pool or
// network; a setting LXD refuses) as backends.ErrBadSpec. Quota stays ErrQuota and
// everything else stays transient.
func permanent(err error) error {
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
		return fmt.Errorf("%w: %w", backends.ErrBadSpec, err)
	}
	return err
}

// cleanup deletes what a failed Create made. Its failure goes back with Create's
// error: the instance is left, and whoever holds capacity for it must keep it.
func (b *Backend) cleanup(ctx context.Context, name string) error {
	// The half-made instance must go even when the caller's ctx is what failed.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := b.Delete(ctx, name); err != nil {
		return fmt.Errorf("half-made instance not deleted: %w", err)
	}
	return nil
}

// lostAnswer reports whether a failed create may still make its instance: the
// request may have reached LXD but its outcome did not come back (we stopped waiting
// for the operation, the connection broke). A connection never made sent nothing.
func lostAnswer(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnreachable) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// post is the create request for spec.
func (b *Backend) post(spec backends.InstanceSpec) InstancesPost {
	cfg := map[string]string{}
	for k, v := range b.o.Config {
		cfg[k] = v
	}
	for k, v := range backends.Tags(b.o.DeploymentID, spec) {
		cfg[TagPrefix+k] = v
	}
	if b.o.CPU != "" {
		cfg["limits.cpu"] = b.o.CPU
	}
	if b.o.Memory != "" {
		cfg["limits.memory"] = b.o.Memory
	}
	if b.o.Bootstrap == BootstrapCloudInit {
		cfg["cloud-init.user-data"] = spec.UserData
		cfg["user.user-data"] = spec.UserData
	}
	devices := map[string]map[string]string{}
	if b.o.StoragePool != "" {
		root := map[string]string{"type": "disk", "path": "/", "pool": b.o.StoragePool}
		if b.o.Disk != "" {
			root["size"] = b.o.Disk
		}
		devices["root"] = root
	}
	if b.o.Network != "" {
		devices["eth0"] = map[string]string{"type": "nic", "network": b.o.Network, "name": "eth0"}
	}
	src := InstanceSource{Type: "image"}
	if fingerprintRE.MatchString(b.o.Image) {
		src.Fingerprint = b.o.Image
	} else {
		src.Alias = b.o.Image
	}
	if b.o.ImageServer != "" {
		src.Server, src.Mode = b.o.ImageServer, "pull"
		src.Protocol = b.o.ImageProtocol
		if src.Protocol == "" {
			src.Protocol = "simplestreams"
		}
	}
	return InstancesPost{
		Name:      spec.Name,
		Type:      b.o.Type,
		Profiles:  b.o.Profiles,
		Config:    cfg,
		Devices:   devices,
		Ephemeral: b.o.Ephemeral,
		Source:    src,
	}
}

// Delete force-stops and deletes the instance of ours named name; see
// backends.Backend.
func (b *Backend) Delete(ctx context.Context, name string) error {
	in, err := b.c.Instance(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up instance %s: %w", name, err)
	}
	if !b.ours(in) {
		return fmt.Errorf("delete instance %s: %w: it does not carry deployment %q and flavor %q", name, backends.ErrNotFound, b.o.DeploymentID, b.o.Flavor)
	}
	var stopErr error
	if in.Status != "Stopped" {
		// An instance that stops on its own meanwhile (its runner powered off) makes the
		// stop fail; the delete below is what decides.
		stopErr = retryBusy(ctx, func() error {
			return b.c.SetInstanceState(ctx, name, InstanceStatePut{Action: "stop", Force: true, Timeout: -1})
		})
	}
	err = retryBusy(ctx, func() error { return b.c.DeleteInstance(ctx, name) })
	switch {
	case errors.Is(err, ErrNotFound):
		// Gone already: an ephemeral instance goes with its stop.
	case err != nil && stopErr != nil:
		return fmt.Errorf("delete instance %s: %w (stop: %w)", name, err, stopErr)
	case err != nil:
		return fmt.Errorf("delete instance %s: %w", name, err)
	}
	b.logger.Info("instance deleted", logkey.Instance, name)
	return nil
}

// List returns every instance of ours for this flavor, in one call.
func (b *Backend) List(ctx context.Context) ([]backends.Instance, error) {
	filter := fmt.Sprintf("config.%s%s eq %s and config.%s%s eq %s",
		TagPrefix, backends.TagDeployment, b.o.DeploymentID, TagPrefix, backends.TagFlavor, b.o.Flavor)
	list, err := b.c.Instances(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	out := make([]backends.Instance, 0, len(list))
	for _, in := range list {
		// The server filtered already, unless it predates api_filtering.
		if b.ours(in) {
			out = append(out, b.instance(in))
		}
	}
	return out, nil
}

// busyPoll and busyFor pace the retries of a call refused because another operation
// holds the instance: LXD's own stop after a poweroff inside takes a moment to end.
const (
	busyPoll = 250 * time.Millisecond
	busyFor  = 30 * time.Second
)

func retryBusy(ctx context.Context, call func() error) error {
	deadline := time.Now().Add(busyFor)
	for {
		err := call()
		if !errors.Is(err, ErrBusy) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-time.After(busyPoll):
		case <-ctx.Done():
			return err
		}
	}
}

func (b *Backend) ours(in InstanceInfo) bool {
	return in.Config[TagPrefix+backends.TagDeployment] == b.o.DeploymentID &&
		in.Config[TagPrefix+backends.TagFlavor] == b.o.Flavor
}

func (b *Backend) instance(in InstanceInfo) backends.Instance {
	job, _ := strconv.ParseInt(in.Config[TagPrefix+backends.TagJob], 10, 64)
	inst := backends.Instance{
		Name:      in.Name,
		ID:        in.Name,
		Backend:   BackendName,
		Flavor:    in.Config[TagPrefix+backends.TagFlavor],
		JobID:     job,
		State:     state(in),
		CreatedAt: in.CreatedAt,
		Protected: in.Config[TagPrefix+backends.TagProtected] == "true",
	}
	if inst.State == backends.StateError {
		inst.Fault = "LXD reports the instance in status Error (see the LXD log)"
	}
	return inst
}

// neverStarted: LXD records volatile.last_state.power at the first start.
func neverStarted(in InstanceInfo) bool {
	_, ok := in.Config["volatile.last_state.power"]
	return in.Status == "Stopped" && !ok
}

// state maps LXD's instance status to the common states.
func state(in InstanceInfo) backends.State {
	switch in.Status {
	case "Running", "Ready":
		return backends.StateRunning
	case "Stopped":
		// Created but not yet started is still on its way up.
		if neverStarted(in) {
			return backends.StatePending
		}
		return backends.StateStopped
	case "Stopping", "Aborting":
		return backends.StateStopped
	case "Error":
		return backends.StateError
	case "Starting", "Creating", "Pending", "Started":
		return backends.StatePending
	}
	return backends.StateUnknown
}
