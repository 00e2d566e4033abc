package openstack

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

var _ backends.Backend = (*Backend)(nil)

// maxUserData is Nova's limit on user_data, counted after base64 encoding.
const maxUserData = 65535

// Options configure the Backend of one flavor.
type Options struct {
	// DeploymentID marks every server; two deployments on one project never see each
	// other's servers. On clouds without server tags runner names must start with
	// DeploymentID + "-" (the spawner names them so).
	DeploymentID string
	// Flavor is the spawner flavor this Backend serves.
	Flavor string
	// Image is the Glance image by name or id; a name means the newest active image
	// of that name.
	Image string
	// NovaFlavor is the Nova flavor (the size) by name or id.
	NovaFlavor string
	// Networks are Neutron networks by name or id, at least one. Nova makes a port on
	// each and deletes the ports with the server.
	Networks []string
	// SecurityGroups are Neutron security groups by name or id (empty: the project's
	// default group).
	SecurityGroups []string
	// KeyName is an optional Nova key pair.
	KeyName string
	// AvailabilityZone is optional.
	AvailabilityZone string
	// BootVolumeSize in GiB boots from a volume made from the image and deleted with
	// the server; 0 boots from the image directly.
	BootVolumeSize int
	// ConfigDrive attaches a config drive carrying the user-data.
	ConfigDrive bool
	// Metadata is extra server metadata; keys starting with "spawner_" are reserved.
	Metadata map[string]string
	// Logger receives the Backend's events; nil discards them.
	Logger *slog.Logger
}

// Validate reports what is wrong with the options, all problems at once.
func (o Options) Validate() error {
	var errs []error
	req := func(v, what string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s is required", what))
		}
	}
	req(o.DeploymentID, "deployment id")
	req(o.Flavor, "flavor")
	req(o.Image, "image")
	req(o.NovaFlavor, "nova flavor")
	if len(o.Networks) == 0 {
		errs = append(errs, errors.New("at least one network is required"))
	}
	for i, n := range o.Networks {
		req(n, fmt.Sprintf("networks[%d]", i))
	}
	for i, g := range o.SecurityGroups {
		req(g, fmt.Sprintf("security groups[%d]", i))
	}
	if o.BootVolumeSize < 0 {
		errs = append(errs, fmt.Errorf("boot volume size must not be negative (got %d)", o.BootVolumeSize))
	}
	for k := range o.Metadata {
		if strings.HasPrefix(strings.ToLower(k), metaPrefix) {
			errs = append(errs, fmt.Errorf("metadata key %q: the %s prefix is reserved", k, metaPrefix))
		}
	}
	return errors.Join(errs...)
}

// Backend runs one flavor's runners as Nova servers.
type Backend struct {
	cloud  *Cloud
	opts   Options
	logger *slog.Logger
	names  nameLocks
}

// New returns the Backend for one flavor on cloud. It resolves nothing yet: an image
// or network that does not exist makes Create fail with backends.ErrBadSpec, so that
// a cloud being fixed by its operator needs no restart of the spawner.
func New(cloud *Cloud, opts Options) (*Backend, error) {
	if cloud == nil {
		panic("openstack.New: nil Cloud")
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("openstack backend for flavor %q: %w", opts.Flavor, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Backend{
		cloud:  cloud,
		opts:   opts,
		logger: logger.With(logkey.Backend, BackendName, logkey.Flavor, opts.Flavor),
	}, nil
}

// Create boots a server named spec.Name with spec.UserData as its user-data, marked
// as ours, and returns without waiting for it to become ACTIVE.
//
// It is idempotent on the name: a server of ours by that name is returned as it is.
// One of ours that went to ERROR is deleted and reported as an error (wrapping
// backends.ErrQuota when Nova found no valid host); one still being deleted is a
// transient error. A server by that name that is not ours is never adopted:
// backends.ErrBadSpec.
func (b *Backend) Create(ctx context.Context, spec backends.InstanceSpec) (backends.Instance, error) {
	if err := b.checkSpec(spec); err != nil {
		return backends.Instance{}, fmt.Errorf("create instance %s: %w", spec.Name, err)
	}
	ctx, cancel := withDefaultTimeout(ctx, b.cloud.timeout)
	defer cancel()
	// Two creates of one name in this process would both find nothing and both boot.
	defer b.names.lock(spec.Name)()

	in, found, err := b.existing(ctx, spec.Name)
	if err != nil || found {
		if err != nil {
			err = fmt.Errorf("create instance %s: %w", spec.Name, err)
		}
		return in, err
	}
	opts, err := b.createOpts(ctx, spec)
	if err != nil {
		return backends.Instance{}, fmt.Errorf("create instance %s: %w", spec.Name, err)
	}
	start := time.Now()
	s, err := servers.Create(ctx, b.cloud.compute, opts, nil).Extract()
	if err != nil {
		err = classifyCreate(err)
		if isMissingResource(err) {
			b.cloud.resolver.forget()
		}
		if maybeMade(err) {
			// Nova may have registered the server, or may still: nova-api goes on with
			// a request whose client gave up. Only a server found and deleted here
			// settles it; otherwise the caller must hold the name for a while.
			found, cerr := b.cleanup(ctx, spec.Name)
			if cerr != nil {
				err = errors.Join(err, cerr)
			}
			if !found || cerr != nil {
				err = fmt.Errorf("%w: %w", backends.ErrOutcomeUnknown, err)
			}
		}
		return backends.Instance{}, fmt.Errorf("create instance %s: %w", spec.Name, err)
	}
	b.logger.Info("server created", logkey.Instance, spec.Name, logkey.JobID, spec.JobID,
		"server_id", s.ID, "took", time.Since(start).Round(time.Millisecond))
	return backends.Instance{
		Name:      spec.Name,
		ID:        s.ID,
		Backend:   BackendName,
		Flavor:    spec.Flavor,
		JobID:     spec.JobID,
		State:     backends.StatePending,
		CreatedAt: start.UTC(),
	}, nil
}

func (b *Backend) checkSpec(spec backends.InstanceSpec) error {
	if err := backends.ValidateSpec(b.opts.Flavor, spec); err != nil {
		return err
	}
	if n := base64.StdEncoding.EncodedLen(len(spec.UserData)); n > maxUserData {
		return fmt.Errorf("%w: user-data is %d bytes base64-encoded, Nova takes at most %d", backends.ErrBadSpec, n, maxUserData)
	}
	if !b.cloud.tags && !strings.HasPrefix(spec.Name, b.opts.DeploymentID+"-") {
		return fmt.Errorf("%w: on a cloud without server tags the name must start with %q (servers are found by name prefix)",
			backends.ErrBadSpec, b.opts.DeploymentID+"-")
	}
	return nil
}

// existing looks for a server named name. found is true when Create must not boot a
// new one: a usable server of ours (returned), or an error to report.
func (b *Backend) existing(ctx context.Context, name string) (in backends.Instance, found bool, err error) {
	list, err := b.serversNamed(ctx, name)
	if err != nil {
		return backends.Instance{}, false, err
	}
	foreign := false
	for i := range list {
		s := &list[i]
		if !b.ours(s) {
			foreign = true
			continue
		}
		switch {
		case s.TaskState == "deleting" || s.Status == "DELETED" || s.Status == "SOFT_DELETED":
			return backends.Instance{}, true, fmt.Errorf("server %s of an earlier attempt is still being deleted", s.ID)
		case s.Status == "ERROR":
			b.fillFault(ctx, s)
			fault := instance(s).Fault
			b.logger.Info("server in ERROR found on create: deleting it", logkey.Instance, name, "server_id", s.ID, "fault", fault)
			// The delete must go out even if the caller gives up now: the next create
			// of this name waits for it.
			// It is not waited for: the caller's Delete of the name waits before it
			// frees the server's capacity.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cloud.timeout)
			derr := b.deleteServer(dctx, s.ID)
			cancel()
			err := fmt.Errorf("server %s went to ERROR: %s", s.ID, fault)
			if noValidHost(fault) {
				err = fmt.Errorf("%w: %w", backends.ErrQuota, err)
			}
			if derr != nil {
				err = errors.Join(err, fmt.Errorf("the server in ERROR is not deleted: %w", derr))
			}
			return backends.Instance{}, true, err
		}
		return instance(s), true, nil
	}
	if foreign {
		return backends.Instance{}, true, fmt.Errorf("%w: name %q is taken by a server that is not ours", backends.ErrBadSpec, name)
	}
	return backends.Instance{}, false, nil
}

func (b *Backend) createOpts(ctx context.Context, spec backends.InstanceSpec) (servers.CreateOptsBuilder, error) {
	r := b.cloud.resolver
	imageID, err := r.image(ctx, b.opts.Image)
	if err != nil {
		return nil, err
	}
	flavorID, err := r.flavor(ctx, b.opts.NovaFlavor)
	if err != nil {
		return nil, err
	}
	nets := make([]servers.Network, len(b.opts.Networks))
	for i, ref := range b.opts.Networks {
		id, err := r.network(ctx, ref)
		if err != nil {
			return nil, err
		}
		nets[i] = servers.Network{UUID: id}
	}
	groups := make([]string, len(b.opts.SecurityGroups))
	for i, ref := range b.opts.SecurityGroups {
		// Nova takes a group's id where the API says name; the id is unambiguous.
		if groups[i], err = r.securityGroup(ctx, ref); err != nil {
			return nil, err
		}
	}
	meta, tags := markers(b.opts.DeploymentID, spec, b.opts.Metadata)
	co := servers.CreateOpts{
		Name:      spec.Name,
		FlavorRef: flavorID,
		Networks:  nets,
		// Encoded here: gophercloud would pass on as is any user-data that happens to
		// decode as base64, and Nova would then decode what was meant literally.
		UserData:         []byte(base64.StdEncoding.EncodeToString([]byte(spec.UserData))),
		SecurityGroups:   groups,
		AvailabilityZone: b.opts.AvailabilityZone,
		Metadata:         meta,
	}
	if b.cloud.tags {
		co.Tags = tags
	}
	if b.opts.ConfigDrive {
		co.ConfigDrive = &b.opts.ConfigDrive
	}
	if b.opts.BootVolumeSize > 0 {
		// Nova makes the volume and, with delete_on_termination, removes it with the
		// server, including when the boot fails: nothing is left for us to clean.
		co.BlockDevice = []servers.BlockDevice{{
			SourceType:          servers.SourceImage,
			UUID:                imageID,
			DestinationType:     servers.DestinationVolume,
			VolumeSize:          b.opts.BootVolumeSize,
			BootIndex:           0,
			DeleteOnTermination: true,
		}}
	} else {
		co.ImageRef = imageID
	}
	if b.opts.KeyName != "" {
		return keypairs.CreateOptsExt{CreateOptsBuilder: co, KeyName: b.opts.KeyName}, nil
	}
	return co, nil
}

// cleanup deletes what a create whose answer was lost may have made, and waits until
// it is gone. It must run even when the caller's context is done (that is often why
// the answer was lost). found reports whether it found a server of ours by that name;
// a server that Nova registers only after this look is ours by its markers, and
// Create reports backends.ErrOutcomeUnknown so that its name stays held until the
// janitor has seen it, or seen that none came.
func (b *Backend) cleanup(ctx context.Context, name string) (found bool, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cloud.timeout)
	defer cancel()
	list, err := b.serversNamed(ctx, name)
	if err != nil {
		return false, fmt.Errorf("look for a half-made server: %w", err)
	}
	var errs []error
	for i := range list {
		if !b.ours(&list[i]) {
			continue
		}
		found = true
		if err := b.deleteAndWait(ctx, list[i].ID); err != nil {
			errs = append(errs, fmt.Errorf("delete a half-made server: %w", err))
			continue
		}
		b.logger.Info("half-made server deleted", logkey.Instance, name, "server_id", list[i].ID)
	}
	return found, errors.Join(errs...)
}

// Delete deletes the server of ours named name and waits until Nova no longer has
// it: Nova finishes a deletion (and removes the server's ports and boot volume) in
// the background, and until then the server still exists and still counts against
// the flavor's capacity. A name with no server is success; a name whose only servers
// are not ours is backends.ErrNotFound and nothing is deleted.
func (b *Backend) Delete(ctx context.Context, name string) error {
	ctx, cancel := withDefaultTimeout(ctx, b.cloud.timeout)
	defer cancel()
	list, err := b.serversNamed(ctx, name)
	if err != nil {
		return fmt.Errorf("delete instance %s: %w", name, err)
	}
	var errs []error
	mine, foreign := 0, false
	for i := range list {
		s := &list[i]
		if !b.ours(s) {
			foreign = true
			continue
		}
		mine++
		if err := b.deleteAndWait(ctx, s.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		b.logger.Info("server deleted", logkey.Instance, name, "server_id", s.ID)
	}
	if mine == 0 && foreign {
		return fmt.Errorf("delete instance %s: %w (a server by that name exists but is not ours)", name, backends.ErrNotFound)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete instance %s: %w", name, err)
	}
	return nil
}

// deleteServer asks Nova to delete one server; already gone is success.
func (b *Backend) deleteServer(ctx context.Context, id string) error {
	err := describe(servers.Delete(ctx, b.cloud.compute, id).ExtractErr())
	if err == nil || statusOf(err) == http.StatusNotFound {
		return nil
	}
	return fmt.Errorf("delete server %s: %w", id, err)
}

// deleteAndWait deletes one server and waits until it is gone (a 404 to the delete
// says it is already).
func (b *Backend) deleteAndWait(ctx context.Context, id string) error {
	err := describe(servers.Delete(ctx, b.cloud.compute, id).ExtractErr())
	switch {
	case statusOf(err) == http.StatusNotFound:
		return nil
	case err != nil:
		return fmt.Errorf("delete server %s: %w", id, err)
	}
	return b.waitGone(ctx, id)
}

// Bounds of the pause between two looks at a server being deleted.
const (
	goneFirstPoll = 100 * time.Millisecond
	goneMaxPoll   = 2 * time.Second
)

// waitGone waits until Nova no longer has server id (404, or DELETED). Nova tells
// nobody when a deletion ends, so it asks, less often as the wait grows; within
// ctx.
func (b *Backend) waitGone(ctx context.Context, id string) error {
	pause := goneFirstPoll
	for {
		s, err := servers.Get(ctx, b.cloud.compute, id).Extract()
		err = describe(err)
		switch {
		case err == nil && s.Status == "DELETED", statusOf(err) == http.StatusNotFound:
			return nil
		case err == nil:
			err = fmt.Errorf("status %s, task state %q", s.Status, s.TaskState)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server %s still exists after its delete (%v): %w", id, err, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, goneMaxPoll)
	}
}

// List returns every server of ours for this flavor, following every page.
func (b *Backend) List(ctx context.Context) ([]backends.Instance, error) {
	ctx, cancel := withDefaultTimeout(ctx, b.cloud.timeout)
	defer cancel()
	opts := servers.ListOpts{}
	if b.cloud.tags {
		opts.Tags = listTags(b.opts.DeploymentID, b.opts.Flavor)
	} else {
		opts.Name = "^" + regexp.QuoteMeta(b.opts.DeploymentID+"-")
	}
	list, err := b.listServers(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	out := make([]backends.Instance, 0, len(list))
	for i := range list {
		if b.ours(&list[i]) {
			b.fillFault(ctx, &list[i])
			out = append(out, instance(&list[i]))
		}
	}
	return out, nil
}

// fillFault fetches the fault of a server in ERROR: Nova's list leaves it out and
// only the single-server view carries it. Failing that, the server is still reported
// in ERROR, with a generic fault.
func (b *Backend) fillFault(ctx context.Context, s *servers.Server) {
	if s.Status != "ERROR" || s.Fault.Message != "" {
		return
	}
	full, err := servers.Get(ctx, b.cloud.compute, s.ID).Extract()
	if err != nil {
		b.logger.Warn("get fault of server in ERROR", logkey.Instance, s.Name, "server_id", s.ID, logkey.Error, describe(err))
		return
	}
	s.Fault = full.Fault
}

// serversNamed returns every server of the project named exactly name, ours or not.
func (b *Backend) serversNamed(ctx context.Context, name string) ([]servers.Server, error) {
	// Nova's name filter is a regular expression matched anywhere in the name.
	list, err := b.listServers(ctx, servers.ListOpts{Name: "^" + regexp.QuoteMeta(name) + "$"})
	if err != nil {
		return nil, fmt.Errorf("find servers named %s: %w", name, err)
	}
	exact := list[:0]
	for _, s := range list {
		if s.Name == name {
			exact = append(exact, s)
		}
	}
	return exact, nil
}

func (b *Backend) listServers(ctx context.Context, opts servers.ListOpts) ([]servers.Server, error) {
	pages, err := servers.List(b.cloud.compute, opts).AllPages(ctx)
	if err != nil {
		return nil, describe(err)
	}
	list, err := servers.ExtractServers(pages)
	if err != nil {
		return nil, fmt.Errorf("read servers: %w", err)
	}
	return list, nil
}

func (b *Backend) ours(s *servers.Server) bool {
	return ours(s, b.opts.DeploymentID, b.opts.Flavor, b.cloud.tags)
}

// nameLocks serialises the creates of one name within this process.
type nameLocks struct {
	mu sync.Mutex
	m  map[string]*nameLock
}

type nameLock struct {
	mu      sync.Mutex
	holders int
}

func (l *nameLocks) lock(name string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*nameLock{}
	}
	nl := l.m[name]
	if nl == nil {
		nl = &nameLock{}
		l.m[name] = nl
	}
	nl.holders++
	l.mu.Unlock()
	nl.mu.Lock()
	return func() {
		nl.mu.Unlock()
		l.mu.Lock()
		if nl.holders--; nl.holders == 0 {
			delete(l.m, name)
		}
		l.mu.Unlock()
	}
}
