package assemble

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/backends/openstack"
	"github.com/runner-spawner/runner-spawner/config"
)

// newOpenStackBackends connects to the configured cloud once and returns one backend
// per flavor whose backend is openstack, keyed by flavor name. The flavors share the
// connection: one login, one token, one budget of requests toward Nova. With no such
// flavor it connects to nothing and returns an empty map.
func newOpenStackBackends(ctx context.Context, cfg *config.File, logger *slog.Logger) (map[string]backends.Backend, error) {
	out := map[string]backends.Backend{}
	if !cfg.UsesBackend(config.BackendOpenStack) {
		return out, nil
	}
	oc := cfg.OpenStack
	cloud, err := openstack.Connect(ctx, openstack.CloudOptions{
		Cloud:                 oc.Cloud,
		CloudsFile:            oc.CloudsFile,
		Region:                oc.Region,
		CAFile:                oc.CAFile,
		MaxConcurrentRequests: oc.MaxConcurrentRequests,
		RequestsPerSecond:     oc.RequestsPerSecond,
		Timeout:               oc.Timeout,
		Logger:                logger,
	})
	if err != nil {
		return nil, err
	}
	for _, fl := range cfg.Flavors {
		if fl.Backend != config.BackendOpenStack || fl.OpenStack == nil {
			continue
		}
		f := fl.OpenStack
		b, err := openstack.New(cloud, openstack.Options{
			DeploymentID:     cfg.DeploymentID,
			Flavor:           fl.Name,
			Image:            f.Image,
			NovaFlavor:       f.Flavor,
			Networks:         f.Networks,
			SecurityGroups:   f.SecurityGroups,
			KeyName:          f.KeyName,
			AvailabilityZone: f.AvailabilityZone,
			BootVolumeSize:   f.BootVolumeSize,
			ConfigDrive:      f.ConfigDrive,
			Metadata:         f.Metadata,
			Logger:           logger,
		})
		if err != nil {
			return nil, fmt.Errorf("flavor %s: %w", fl.Name, err)
		}
		out[fl.Name] = b
	}
	return out, nil
}
