package config

// LXDServer is the connection to the LXD server (top-level key "lxd").
// Owned by the LXD backend work: extend freely, keep docs/configuration.md in step.
type LXDServer struct {
	Socket string `yaml:"socket"`
}

func lxdDefaults() LXDServer {
	return LXDServer{}
}

func (l *LXDServer) validate(key string, p *problems) {}

// LXDFlavor configures the LXD backend for one flavor (key "flavors[].lxd").
type LXDFlavor struct {
	Image string `yaml:"image"`
}

func (l *LXDFlavor) validate(key string, p *problems) {
	if l.Image == "" {
		p.add(key+".image", "is required for the lxd backend")
	}
}
