package config

// OpenStackFlavor configures the OpenStack backend for one flavor. The OpenStack
// backend's owner fills this in; see docs/configuration.md.
type OpenStackFlavor struct {
	Image string `yaml:"image"`
}

func (o *OpenStackFlavor) validate(key string, p *problems) {
	if o.Image == "" {
		p.add(key+".image", "is required for the openstack backend")
	}
}
