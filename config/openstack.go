package config

// OpenStackCloud is the cloud connection (top-level key "openstack").
// Owned by the OpenStack backend work: extend freely, keep docs/configuration.md in step.
type OpenStackCloud struct {
	Cloud string `yaml:"cloud"`
}

func openstackDefaults() OpenStackCloud {
	return OpenStackCloud{}
}

func (o *OpenStackCloud) validate(key string, p *problems) {}

// OpenStackFlavor configures the OpenStack backend for one flavor (key
// "flavors[].openstack").
type OpenStackFlavor struct {
	Image string `yaml:"image"`
}

func (o *OpenStackFlavor) validate(key string, p *problems) {
	if o.Image == "" {
		p.add(key+".image", "is required for the openstack backend")
	}
}
