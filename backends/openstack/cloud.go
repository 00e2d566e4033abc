package openstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gcopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/utils"
)

// Defaults of CloudOptions.
const (
	DefaultMaxConcurrentRequests = 8
	DefaultRequestsPerSecond     = 10
	DefaultTimeout               = 60 * time.Second
)

// tagsMicroversion is the first compute microversion that takes tags in the create
// request itself (2.26 could only add them afterwards, leaving an untagged window).
const tagsMicroversion = "2.52"

// CloudOptions say which cloud to connect to and how hard to press it.
type CloudOptions struct {
	// Cloud is the entry's name in clouds.yaml. Required.
	Cloud string
	// CloudsFile is the clouds.yaml to read; empty searches where the OpenStack CLI
	// does ($OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/clouds.yaml,
	// /etc/openstack/clouds.yaml).
	CloudsFile string
	// Region overrides the entry's region_name.
	Region string
	// CAFile is a PEM bundle that replaces the entry's cacert.
	CAFile string
	// MaxConcurrentRequests caps the Nova requests in flight (0: 8). Every Backend
	// sharing the Cloud shares the cap.
	MaxConcurrentRequests int
	// RequestsPerSecond caps the rate of Nova requests (0: 10), with bursts up to
	// MaxConcurrentRequests.
	RequestsPerSecond float64
	// Timeout bounds each Backend call whose context has no deadline, and each HTTP
	// request (0: 60 s).
	Timeout time.Duration
	// Logger receives the connection's events; nil discards them.
	Logger *slog.Logger
}

func (o *CloudOptions) setDefaults() {
	if o.MaxConcurrentRequests == 0 {
		o.MaxConcurrentRequests = DefaultMaxConcurrentRequests
	}
	if o.RequestsPerSecond == 0 {
		o.RequestsPerSecond = DefaultRequestsPerSecond
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports what is wrong with the options, all problems at once.
func (o CloudOptions) Validate() error {
	var errs []error
	if o.Cloud == "" {
		errs = append(errs, errors.New("cloud: the clouds.yaml entry's name is required"))
	}
	if o.MaxConcurrentRequests < 0 {
		errs = append(errs, fmt.Errorf("max concurrent requests: must not be negative (got %d)", o.MaxConcurrentRequests))
	}
	if o.RequestsPerSecond < 0 {
		errs = append(errs, fmt.Errorf("requests per second: must not be negative (got %g)", o.RequestsPerSecond))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must not be negative (got %s)", o.Timeout))
	}
	return errors.Join(errs...)
}

// Cloud is one authenticated connection to an OpenStack cloud, shared by the Backends
// of every flavor on it. It is safe for concurrent use.
type Cloud struct {
	name      string
	provider  *gophercloud.ProviderClient
	compute   *gophercloud.ServiceClient
	image     *gophercloud.ServiceClient
	network   *gophercloud.ServiceClient
	projectID string
	// tags is false on clouds older than microversion 2.52: servers are then marked
	// by metadata only and listed by name prefix.
	tags     bool
	timeout  time.Duration
	logger   *slog.Logger
	resolver *resolver
}

// Connect reads the clouds.yaml entry, logs in and negotiates the compute
// microversion. The token is kept and renewed when the cloud rejects it as expired.
func Connect(ctx context.Context, opts CloudOptions) (*Cloud, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("connect to cloud: %w", err)
	}
	opts.setDefaults()
	ctx, cancel := withDefaultTimeout(ctx, opts.Timeout)
	defer cancel()

	parse := []clouds.ParseOption{clouds.WithCloudName(opts.Cloud)}
	if opts.CloudsFile != "" {
		parse = append(parse, clouds.WithLocations(opts.CloudsFile))
	}
	if opts.Region != "" {
		parse = append(parse, clouds.WithRegion(opts.Region))
	}
	if opts.CAFile != "" {
		parse = append(parse, clouds.WithCACertPath(opts.CAFile))
	}
	authOpts, endpointOpts, tlsConfig, err := clouds.Parse(parse...)
	if err != nil {
		return nil, fmt.Errorf("read cloud %q from clouds.yaml: %w", opts.Cloud, err)
	}
	// Runners are created for hours on end; a token expires long before that.
	authOpts.AllowReauth = true

	limits := newLimiter(opts.MaxConcurrentRequests, opts.RequestsPerSecond)
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = tlsConfig
	transport := &limitedTransport{base: base, limits: limits}

	provider, err := gcopenstack.NewClient(authOpts.IdentityEndpoint)
	if err != nil {
		return nil, fmt.Errorf("connect to cloud %q: %w", opts.Cloud, err)
	}
	provider.HTTPClient = http.Client{Transport: transport, Timeout: opts.Timeout}
	provider.UserAgent.Prepend("runner-spawner")
	if err := gcopenstack.Authenticate(ctx, provider, authOpts); err != nil {
		return nil, fmt.Errorf("log in to cloud %q: %w", opts.Cloud, describe(err))
	}

	c := &Cloud{name: opts.Cloud, provider: provider, timeout: opts.Timeout, logger: opts.Logger}
	if c.compute, err = gcopenstack.NewComputeV2(provider, endpointOpts); err != nil {
		return nil, fmt.Errorf("find compute endpoint of cloud %q: %w", opts.Cloud, err)
	}
	if c.image, err = gcopenstack.NewImageV2(provider, endpointOpts); err != nil {
		return nil, fmt.Errorf("find image endpoint of cloud %q: %w", opts.Cloud, err)
	}
	if c.network, err = gcopenstack.NewNetworkV2(provider, endpointOpts); err != nil {
		return nil, fmt.Errorf("find network endpoint of cloud %q: %w", opts.Cloud, err)
	}
	// Only Nova gets the limits: Glance and Neutron are asked rarely (lookups are cached).
	transport.prefix = strings.TrimSuffix(c.compute.Endpoint, "/")
	c.projectID = tokenProject(provider)

	if err := c.negotiate(ctx); err != nil {
		return nil, err
	}
	c.resolver = newResolver(c)
	c.logger.Info("openstack cloud connected", "cloud", opts.Cloud, "compute_microversion", c.Microversion(),
		"server_tags", c.tags, "project_id", c.projectID)
	return c, nil
}

// negotiate picks the compute microversion: 2.52 where the cloud has it, so that tags
// are set in the create request and filtered on by list; otherwise the base version,
// with metadata and a name prefix doing the tags' job.
func (c *Cloud) negotiate(ctx context.Context) error {
	mv, err := utils.GetSupportedMicroversions(ctx, c.compute)
	if err != nil {
		var ue gophercloud.ErrUnexpectedResponseCode
		if errors.As(err, &ue) || isTransport(err) {
			return fmt.Errorf("read compute versions of cloud %q: %w", c.name, describe(err))
		}
		// A version document without microversions: a cloud older than 2.1's era.
		c.logger.Warn("compute API announces no microversions: servers are marked by metadata only",
			"cloud", c.name, "error", err)
		return nil
	}
	ok, err := mv.IsSupported(tagsMicroversion)
	if err != nil {
		return fmt.Errorf("compare compute microversions: %w", err)
	}
	if ok {
		c.compute.Microversion = tagsMicroversion
		c.tags = true
		return nil
	}
	c.logger.Warn("compute API is older than microversion 2.52: servers are marked by metadata and listed by name prefix",
		"cloud", c.name, "max_microversion", fmt.Sprintf("%d.%d", mv.MaxMajor, mv.MaxMinor))
	return nil
}

// Close drops the connection's idle keep-alive connections. The Cloud stays usable
// (new requests open new connections); call it when shutting down.
func (c *Cloud) Close() {
	c.provider.HTTPClient.CloseIdleConnections()
}

// Microversion is the compute microversion in use ("" for the base 2.1 API).
func (c *Cloud) Microversion() string { return c.compute.Microversion }

// ServerTags reports whether servers are marked with tags (microversion 2.52 and
// later) as well as metadata.
func (c *Cloud) ServerTags() bool { return c.tags }

// tokenProject returns the project the token is scoped to, used to prefer the
// project's own security groups and networks when names repeat across projects.
func tokenProject(p *gophercloud.ProviderClient) string {
	r, ok := p.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return ""
	}
	proj, err := r.ExtractProject()
	if err != nil || proj == nil {
		return ""
	}
	return proj.ID
}

// withDefaultTimeout gives ctx a deadline when it has none, so no call can hang.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
