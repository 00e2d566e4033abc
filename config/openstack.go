package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// OpenStackCloud is the cloud connection (top-level key "openstack"). Every flavor with
// backend openstack shares it: one login, one token, and one budget of concurrent and
// per-second requests toward Nova. docs/configuration.md documents every key.
type OpenStackCloud struct {
	// Cloud names the entry in clouds.yaml (password or application-credential auth).
	Cloud string `yaml:"cloud"`
	// CloudsFile is the clouds.yaml to read; empty searches where the OpenStack CLI
	// does ($OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/, /etc/openstack/).
	CloudsFile string `yaml:"clouds_file"`
	// Region overrides the cloud entry's region_name.
	Region string `yaml:"region"`
	// CAFile is a PEM bundle to trust for the cloud's endpoints, overriding the entry's
	// cacert.
	CAFile string `yaml:"ca_file"`
	// MaxConcurrentRequests caps the Nova requests in flight at once, over all flavors.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests"`
	// RequestsPerSecond caps the rate of Nova requests, over all flavors, so that a
	// burst of queued jobs does not trip the cloud's API rate limit.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Timeout bounds each backend call (create, delete, list) when its caller set no
	// deadline.
	Timeout time.Duration `yaml:"timeout"`
}

func openstackDefaults() OpenStackCloud {
	return OpenStackCloud{
		MaxConcurrentRequests: 8,
		RequestsPerSecond:     10,
		Timeout:               60 * time.Second,
	}
}

func (o *OpenStackCloud) validate(key string, p *problems) {
	if o.Cloud == "" {
		p.add(key+".cloud", "is required when a flavor uses the openstack backend (the cloud's name in clouds.yaml)")
	}
	checkFile(p, key+".clouds_file", o.CloudsFile)
	checkFile(p, key+".ca_file", o.CAFile)
	if o.MaxConcurrentRequests < 1 || o.MaxConcurrentRequests > 256 {
		p.add(key+".max_concurrent_requests", "must be between 1 and 256 (got %d)", o.MaxConcurrentRequests)
	}
	if o.RequestsPerSecond <= 0 || o.RequestsPerSecond > 1000 {
		p.add(key+".requests_per_second", "must be above 0 and at most 1000 (got %g)", o.RequestsPerSecond)
	}
	if o.Timeout < time.Second || o.Timeout > 30*time.Minute {
		p.add(key+".timeout", "must be between 1s and 30m (got %s)", o.Timeout)
	}
}

// OpenStackFlavor configures the OpenStack backend for one flavor (key
// "flavors[].openstack").
type OpenStackFlavor struct {
	// Image is the Glance image, by name or id. A name is resolved to the newest
	// active image of that name.
	Image string `yaml:"image"`
	// Flavor is the Nova flavor (the instance size), by name or id.
	Flavor string `yaml:"flavor"`
	// Networks are the Neutron networks, by name or id; the server gets one port on each.
	Networks []string `yaml:"networks"`
	// SecurityGroups are Neutron security groups, by name or id; empty means the
	// project's "default" group.
	SecurityGroups []string `yaml:"security_groups"`
	// KeyName is an optional Nova key pair, for an operator's debugging access.
	KeyName string `yaml:"key_name"`
	// AvailabilityZone pins the servers to one zone; empty lets Nova choose.
	AvailabilityZone string `yaml:"availability_zone"`
	// BootVolumeSize, in GiB, boots from a new Cinder volume of that size made from the
	// image (and deleted with the server); 0 boots from the image on the hypervisor's
	// local disk.
	BootVolumeSize int `yaml:"boot_volume_size"`
	// ConfigDrive attaches a config drive, for clouds whose instances cannot reach the
	// metadata service.
	ConfigDrive bool `yaml:"config_drive"`
	// Metadata is extra server metadata (for the cloud's own accounting or policies).
	Metadata map[string]string `yaml:"metadata"`
}

// Nova's limits on server metadata: 255 characters per key and value; keys starting
// with spawner_ are the backend's own markers.
const (
	openstackMetadataMax    = 255
	openstackReservedPrefix = "spawner_"
	// Nova's default metadata_items quota is 128; the backend's own markers take 4.
	openstackMaxMetadata = 100
)

func (o *OpenStackFlavor) validate(key string, p *problems) {
	if strings.TrimSpace(o.Image) == "" {
		p.add(key+".image", "is required for the openstack backend (a Glance image name or id)")
	}
	if strings.TrimSpace(o.Flavor) == "" {
		p.add(key+".flavor", "is required for the openstack backend (a Nova flavor name or id)")
	}
	if len(o.Networks) == 0 {
		p.add(key+".networks", "at least one network (name or id) is required for the openstack backend")
	}
	checkOpenStackNames(p, key+".networks", o.Networks)
	checkOpenStackNames(p, key+".security_groups", o.SecurityGroups)
	if o.BootVolumeSize < 0 || o.BootVolumeSize > 16384 {
		p.add(key+".boot_volume_size", "must be between 0 (boot from image) and 16384 GiB (got %d)", o.BootVolumeSize)
	}
	if len(o.Metadata) > openstackMaxMetadata {
		p.add(key+".metadata", "has %d items; at most %d fit beside the spawner's own within Nova's default quota", len(o.Metadata), openstackMaxMetadata)
	}
	keys := make([]string, 0, len(o.Metadata))
	for k := range o.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		mk := key + ".metadata." + k
		switch {
		case k == "" || len(k) > openstackMetadataMax:
			p.add(mk, "keys must be 1-%d characters (got %d)", openstackMetadataMax, len(k))
		case strings.HasPrefix(strings.ToLower(k), openstackReservedPrefix):
			p.add(mk, "keys starting with %q are reserved for the spawner's own markers", openstackReservedPrefix)
		case len(o.Metadata[k]) > openstackMetadataMax:
			p.add(mk, "values must be at most %d characters (got %d)", openstackMetadataMax, len(o.Metadata[k]))
		}
	}
}

// checkOpenStackNames reports empty and repeated entries of a list of names or ids.
func checkOpenStackNames(p *problems, key string, names []string) {
	for i, n := range names {
		switch {
		case strings.TrimSpace(n) == "":
			p.add(fmt.Sprintf("%s[%d]", key, i), "is empty")
		case slices.Contains(names[:i], n):
			p.add(fmt.Sprintf("%s[%d]", key, i), "%q is listed twice", n)
		}
	}
}
