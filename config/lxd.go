package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// LXDServer is the connection to the LXD server (top-level key "lxd"). Every flavor
// with backend lxd shares it, and with it one limit on concurrent operations.
// docs/configuration.md documents every key.
type LXDServer struct {
	// Socket is the local daemon's unix socket. Empty (with url empty): the first of
	// /var/lib/lxd/unix.socket (Debian's package) and /var/snap/lxd/common/lxd/unix.socket
	// (the snap) that exists.
	Socket string `yaml:"socket"`
	// URL is a remote server's HTTPS address, "https://host:8443"; set it instead of
	// socket.
	URL string `yaml:"url"`
	// ClientCertFile and ClientKeyFile are the PEM certificate and key the remote
	// server trusts (`lxc config trust add`).
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
	// ServerCertFile is the remote server's PEM certificate, pinned: the connection is
	// refused unless the server presents exactly it. Empty: the server's certificate
	// must chain to the system's CAs.
	ServerCertFile string `yaml:"server_cert_file"`
	// Project is the LXD project the instances live in; empty: LXD's default project.
	Project string `yaml:"project"`
	// MaxConcurrentOperations caps the LXD operations (create, start, stop, delete,
	// exec) in flight at once over all lxd flavors, so a burst of jobs does not
	// overload the daemon.
	MaxConcurrentOperations int `yaml:"max_concurrent_operations"`
	// AdaptiveOperations chooses the limit from the observed latency of creates and
	// starts, up to MaxConcurrentOperations.
	AdaptiveOperations bool `yaml:"adaptive_operations"`
	// Timeout bounds each request to LXD.
	Timeout time.Duration `yaml:"timeout"`
	// OperationTimeout bounds the wait for one LXD operation (an image download from a
	// remote image server on the first create can take minutes).
	OperationTimeout time.Duration `yaml:"operation_timeout"`
}

func lxdDefaults() LXDServer {
	return LXDServer{
		MaxConcurrentOperations: 8,
		Timeout:                 30 * time.Second,
		OperationTimeout:        5 * time.Minute,
	}
}

// lxdNameRE: LXD's names of projects, profiles, pools and networks have no slashes,
// spaces or control characters.
var lxdNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func (l *LXDServer) validate(key string, p *problems) {
	if l.Socket != "" && !strings.HasPrefix(l.Socket, "/") {
		p.add(key+".socket", "must be an absolute path (got %q)", l.Socket)
	}
	if l.URL != "" {
		u, err := url.Parse(l.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			p.add(key+".url", "must be https://host[:port] (got %q)", l.URL)
		}
		if l.Socket != "" {
			p.add(key+".socket", "is set together with %s.url: use one of them", key)
		}
		if l.ClientCertFile == "" {
			p.add(key+".client_cert_file", "is required with %s.url (a certificate the server trusts)", key)
		}
		if l.ClientKeyFile == "" {
			p.add(key+".client_key_file", "is required with %s.url", key)
		}
	} else {
		for k, v := range map[string]string{"client_cert_file": l.ClientCertFile, "client_key_file": l.ClientKeyFile, "server_cert_file": l.ServerCertFile} {
			if v != "" {
				p.add(key+"."+k, "only applies to a remote server (%s.url)", key)
			}
		}
	}
	checkFile(p, key+".client_cert_file", l.ClientCertFile)
	checkFile(p, key+".client_key_file", l.ClientKeyFile)
	checkFile(p, key+".server_cert_file", l.ServerCertFile)
	if l.ClientCertFile != "" && l.ClientKeyFile != "" {
		if _, err := tls.LoadX509KeyPair(l.ClientCertFile, l.ClientKeyFile); err != nil && fileExists(l.ClientCertFile) && fileExists(l.ClientKeyFile) {
			p.add(key+".client_cert_file", "does not load with %s.client_key_file: %v", key, err)
		}
	}
	if l.ServerCertFile != "" && fileExists(l.ServerCertFile) {
		if err := checkCertPEM(l.ServerCertFile); err != nil {
			p.add(key+".server_cert_file", "%v", err)
		}
	}
	if l.Project != "" && !lxdNameRE.MatchString(l.Project) {
		p.add(key+".project", "is not a valid LXD project name (got %q)", l.Project)
	}
	if l.MaxConcurrentOperations < 1 || l.MaxConcurrentOperations > 256 {
		p.add(key+".max_concurrent_operations", "must be between 1 and 256 (got %d)", l.MaxConcurrentOperations)
	}
	if l.Timeout < time.Second || l.Timeout > 10*time.Minute {
		p.add(key+".timeout", "must be between 1s and 10m (got %s)", l.Timeout)
	}
	if l.OperationTimeout < 10*time.Second || l.OperationTimeout > 2*time.Hour {
		p.add(key+".operation_timeout", "must be between 10s and 2h (got %s)", l.OperationTimeout)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func checkCertPEM(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read %q: %v", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("%q holds no PEM certificate", path)
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return fmt.Errorf("%q: %v", path, err)
	}
	return nil
}

// LXD instance types and bootstrap modes.
const (
	LXDTypeContainer      = "container"
	LXDTypeVM             = "virtual-machine"
	LXDBootstrapCloudInit = "cloud-init"
	LXDBootstrapExec      = "exec"
)

// LXDFlavor configures the LXD backend for one flavor (key "flavors[].lxd"). Keys
// left out take the defaults WithDefaults fills in.
type LXDFlavor struct {
	// Image is an image alias, or a fingerprint (12 to 64 hex digits), in the server's
	// image store, or on Remote.
	Image string `yaml:"image"`
	// Remote is an image server URL ("https://images.linuxcontainers.org") the image
	// is pulled from (and cached by LXD); empty: the LXD server's own images.
	Remote string `yaml:"remote"`
	// RemoteProtocol is how Remote speaks: simplestreams (default) or lxd.
	RemoteProtocol string `yaml:"remote_protocol"`
	// Type is container (default) or virtual-machine.
	Type string `yaml:"type"`
	// Profiles are applied in order. Left out: [default]. An empty list applies none
	// (then storage_pool and network must give the root disk and the nic).
	Profiles []string `yaml:"profiles"`
	// Limits size each instance; empty fields leave the profiles' values.
	Limits LXDLimits `yaml:"limits"`
	// StoragePool gives each instance its own root disk in that pool (needed for
	// limits.disk); empty: the profiles' root disk.
	StoragePool string `yaml:"storage_pool"`
	// Network attaches eth0 to that managed network instead of the profiles' nic.
	Network string `yaml:"network"`
	// Config holds extra instance config keys (security.nesting: "true", …).
	Config map[string]string `yaml:"config"`
	// Ephemeral instances are deleted by LXD as soon as they stop. Left out: true,
	// so a finished runner's power-off is all its instance's removal takes.
	Ephemeral *bool `yaml:"ephemeral"`
	// Bootstrap is cloud-init (default: the bootstrap user-data goes into
	// cloud-init.user-data) or exec (for images without cloud-init: the bootstrap
	// script is pushed in and run through LXD's exec API after start).
	Bootstrap string `yaml:"bootstrap"`
}

// LXDLimits are an instance's resource limits, in LXD's own notation.
type LXDLimits struct {
	// CPU is limits.cpu: a count ("2") or a set of CPUs ("0-3", "0,2").
	CPU string `yaml:"cpu"`
	// Memory is limits.memory: "4GiB", "512MB" or a share of the host, "50%".
	Memory string `yaml:"memory"`
	// Disk is the root disk's size, "20GiB"; it needs storage_pool.
	Disk string `yaml:"disk"`
}

// WithDefaults returns l with the defaults of keys left out filled in.
func (l LXDFlavor) WithDefaults() LXDFlavor {
	if l.Type == "" {
		l.Type = LXDTypeContainer
	}
	if l.Bootstrap == "" {
		l.Bootstrap = LXDBootstrapCloudInit
	}
	if l.Remote != "" && l.RemoteProtocol == "" {
		l.RemoteProtocol = "simplestreams"
	}
	if l.Profiles == nil {
		l.Profiles = []string{"default"}
	}
	if l.Ephemeral == nil {
		t := true
		l.Ephemeral = &t
	}
	return l
}

var (
	lxdCPURE   = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)
	lxdSizeRE  = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(B|kB|MB|GB|TB|PB|KiB|MiB|GiB|TiB|PiB)?$`)
	lxdShareRE = regexp.MustCompile(`^[0-9]{1,3}%$`)
	lxdKeyRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
)

func (l *LXDFlavor) validate(key string, p *problems) {
	if strings.TrimSpace(l.Image) == "" {
		p.add(key+".image", "is required for the lxd backend (an image alias or fingerprint)")
	} else if strings.ContainsAny(l.Image, " \t\n") {
		p.add(key+".image", "must be an alias or a fingerprint, without spaces (got %q)", l.Image)
	}
	if l.Remote != "" {
		u, err := url.Parse(l.Remote)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.add(key+".remote", "must be an image server URL, https://host (got %q)", l.Remote)
		}
	}
	switch l.RemoteProtocol {
	case "", "simplestreams", "lxd":
		if l.RemoteProtocol != "" && l.Remote == "" {
			p.add(key+".remote_protocol", "is set without %s.remote", key)
		}
	default:
		p.add(key+".remote_protocol", "must be simplestreams or lxd (got %q)", l.RemoteProtocol)
	}
	if l.Type != "" && l.Type != LXDTypeContainer && l.Type != LXDTypeVM {
		p.add(key+".type", "must be %s or %s (got %q)", LXDTypeContainer, LXDTypeVM, l.Type)
	}
	if l.Bootstrap != "" && l.Bootstrap != LXDBootstrapCloudInit && l.Bootstrap != LXDBootstrapExec {
		p.add(key+".bootstrap", "must be %s or %s (got %q)", LXDBootstrapCloudInit, LXDBootstrapExec, l.Bootstrap)
	}
	for i, pr := range l.Profiles {
		k := fmt.Sprintf("%s.profiles[%d]", key, i)
		switch {
		case !lxdNameRE.MatchString(pr):
			p.add(k, "is not a valid LXD profile name (got %q)", pr)
		case slices.Contains(l.Profiles[:i], pr):
			p.add(k, "%q is listed twice", pr)
		}
	}
	l.Limits.validate(key+".limits", p)
	if l.Limits.Disk != "" && l.StoragePool == "" {
		p.add(key+".limits.disk", "needs %s.storage_pool: the root disk is redefined in that pool with this size", key)
	}
	if l.StoragePool != "" && !lxdNameRE.MatchString(l.StoragePool) {
		p.add(key+".storage_pool", "is not a valid LXD storage pool name (got %q)", l.StoragePool)
	}
	if l.Network != "" && !lxdNameRE.MatchString(l.Network) {
		p.add(key+".network", "is not a valid LXD network name (got %q)", l.Network)
	}
	if l.Profiles != nil && len(l.Profiles) == 0 && (l.StoragePool == "" || l.Network == "") {
		p.add(key+".profiles", "is empty: without profiles the instance needs %s.storage_pool and %s.network for its root disk and nic", key, key)
	}
	keys := make([]string, 0, len(l.Config))
	for k := range l.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ck := key + ".config." + k
		switch {
		case !lxdKeyRE.MatchString(k):
			p.add(ck, "is not an LXD config key (lower-case letters, digits, '.', '-', '_')")
		case strings.HasPrefix(k, "user.spawner."):
			p.add(ck, "is reserved: user.spawner.* keys are the spawner's own tags")
		case k == "cloud-init.user-data" || k == "user.user-data":
			p.add(ck, "is reserved: the spawner sets it from each runner's bootstrap")
		case strings.HasPrefix(k, "volatile."):
			p.add(ck, "is reserved: volatile.* keys are LXD's internal state")
		case k == "limits.cpu" || k == "limits.memory":
			p.add(ck, "is set with %s.limits.%s", key, strings.TrimPrefix(k, "limits."))
		}
	}
}

func (l *LXDLimits) validate(key string, p *problems) {
	if l.CPU != "" {
		n, err := strconv.Atoi(l.CPU)
		if !lxdCPURE.MatchString(l.CPU) || (err == nil && n < 1) {
			p.add(key+".cpu", "must be a CPU count (\"2\") or a CPU set (\"0-3\", \"0,2\") (got %q)", l.CPU)
		}
	}
	if l.Memory != "" && !lxdSizeRE.MatchString(l.Memory) && !lxdShareRE.MatchString(l.Memory) {
		p.add(key+".memory", "must be a size such as 4GiB or 512MB, or a share such as 50%% (got %q)", l.Memory)
	}
	if l.Disk != "" && !lxdSizeRE.MatchString(l.Disk) {
		p.add(key+".disk", "must be a size such as 20GiB (got %q)", l.Disk)
	}
}
