package config

// LXDFlavor configures the LXD backend for one flavor. The LXD backend's owner fills
// this in; see docs/configuration.md.
type LXDFlavor struct {
	Image string `yaml:"image"`
}

func (l *LXDFlavor) validate(key string, p *problems) {
	if l.Image == "" {
		p.add(key+".image", "is required for the lxd backend")
	}
}
