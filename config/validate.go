package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/runner-spawner/runner-spawner/internal/secret"
)

var (
	deploymentRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,11}$`)
	// Flavor names become NATS subject tokens, KV keys and part of instance names
	// (at most 63 characters with the deployment id and the job id).
	flavorRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,23}$`)
)

// Validate checks the whole file and returns every problem at once, joined, each a
// *FieldError naming its key.
func (f *File) Validate() error {
	var p problems
	if f.NATS.URL == "" && f.StateDir == "" {
		p.add("state_dir", "is required when nats.url is empty (the embedded server stores its data there)")
	}
	if !deploymentRE.MatchString(f.DeploymentID) {
		p.add("deployment_id", "must be 1-12 lower-case letters, digits or hyphens, starting with a letter (got %q)", f.DeploymentID)
	}
	// Below a second a process could not even hand its work back; above 10 minutes
	// systemd's and Kubernetes' own stop timeouts (90 s, 30 s by default) would
	// have to be raised far beyond what an outage should hold a rolling update up.
	if f.ShutdownTimeout < time.Second || f.ShutdownTimeout > 10*time.Minute {
		p.add("shutdown_timeout", "must be between 1s and 10m (got %s)", f.ShutdownTimeout)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, f.Log.Level) {
		p.add("log.level", "must be one of debug, info, warn, error (got %q)", f.Log.Level)
	}
	if !slices.Contains([]string{"json", "text"}, f.Log.Format) {
		p.add("log.format", "must be json or text (got %q)", f.Log.Format)
	}
	f.validateNATS(&p)
	f.validateWebhook(&p)
	f.validateRouting(&p)
	f.validateFlavors(&p)
	f.validateRoles(&p)
	f.validateRepoPolicies(&p)
	if f.UsesBackend(BackendLXD) {
		f.LXD.validate("lxd", &p)
	}
	if f.UsesBackend(BackendOpenStack) {
		f.OpenStack.validate("openstack", &p)
	}
	return p.err()
}

func (f *File) validateNATS(p *problems) {
	n := f.NATS
	if n.URL != "" {
		for _, u := range strings.Split(n.URL, ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			if err != nil || pu.Host == "" || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, pu.Scheme) {
				// The URL may carry a password or a token: never print it.
				p.add("nats.url", "%q is not a NATS URL (nats://host:port, tls://…, comma-separated for a cluster)", secret.RedactURL(u))
			}
		}
	}
	checkHostPort(p, "nats.listen", n.Listen)
	auths := 0
	for _, set := range []bool{n.User != "" || !n.Password.IsZero(), !n.Token.IsZero(), n.CredsFile != "", n.NKeyFile != ""} {
		if set {
			auths++
		}
	}
	if auths > 1 {
		p.add("nats", "set only one of user/password, token, creds_file, nkey_file")
	}
	if n.User != "" && n.Password.IsZero() {
		p.add("nats.password", "is required with nats.user (or SPAWNER_NATS_PASSWORD, or nats.password_file)")
	}
	checkFile(p, "nats.creds_file", n.CredsFile)
	checkFile(p, "nats.nkey_file", n.NKeyFile)
	if n.NKeyFile != "" && fileExists(n.NKeyFile) {
		if err := checkNKeySeed(n.NKeyFile); err != nil {
			p.add("nats.nkey_file", "%v", err)
		}
	}
	if n.URL == "" {
		f.validateEmbeddedNATS(p)
	}
	checkFile(p, "nats.tls.ca_file", n.TLS.CAFile)
	checkFile(p, "nats.tls.cert_file", n.TLS.CertFile)
	checkFile(p, "nats.tls.key_file", n.TLS.KeyFile)
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		p.add("nats.tls", "cert_file and key_file go together")
	} else if n.TLS.CertFile != "" && fileExists(n.TLS.CertFile) && fileExists(n.TLS.KeyFile) {
		if _, err := tls.LoadX509KeyPair(n.TLS.CertFile, n.TLS.KeyFile); err != nil {
			p.add("nats.tls.cert_file", "does not load with nats.tls.key_file: %v", err)
		}
	}
	if n.Replicas < 0 || n.Replicas > 5 {
		p.add("nats.replicas", "must be 0 (automatic) to 5 (got %d)", n.Replicas)
	}
	if n.StreamMaxBytes < 1<<20 {
		p.add("nats.stream_max_bytes", "must be at least 1MiB (got %s)", n.StreamMaxBytes)
	}
	if n.StreamMaxMsgs == 0 || n.StreamMaxMsgs < -1 {
		p.add("nats.stream_max_msgs", "must be -1 (no limit) or positive (got %d)", n.StreamMaxMsgs)
	}
	if n.DuplicateWindow < time.Second || n.DuplicateWindow > 24*time.Hour {
		p.add("nats.duplicate_window", "must be between 1s and 24h (got %s)", n.DuplicateWindow)
	}
	if n.PublishTimeout <= 0 || n.PublishTimeout > 9*time.Second {
		p.add("nats.publish_timeout", "must be above 0 and at most 9s, inside GitHub's 10 s delivery timeout (got %s)", n.PublishTimeout)
	}
	if n.ConnectTimeout <= 0 {
		p.add("nats.connect_timeout", "must be positive (got %s)", n.ConnectTimeout)
	}
}

// validateEmbeddedNATS checks what the embedded server (nats.url empty) enforces: it
// checks the configured credential itself, so it must have one it can check, and
// one whenever it listens beyond loopback.
func (f *File) validateEmbeddedNATS(p *problems) {
	n := f.NATS
	if n.CredsFile != "" {
		p.add("nats.creds_file", "is for an external NATS server (nats.url): the embedded server cannot check JWT credentials (that needs an operator and an account resolver); for the embedded server set nats.user and nats.password, nats.token or nats.nkey_file")
	}
	if n.TLS.CAFile != "" && n.TLS.CertFile == "" {
		p.add("nats.tls.ca_file", "with the embedded server (nats.url empty) it is the CA the other processes trust for the server's certificate: set nats.tls.cert_file and nats.tls.key_file too (the server then serves TLS), or remove it")
	}
	hasAuth := n.User != "" || !n.Token.IsZero() || n.NKeyFile != ""
	if host, _, err := net.SplitHostPort(n.Listen); err == nil && !hasAuth && !isLoopback(host) {
		p.add("nats.listen", "%q is not a loopback address and the embedded server has no credential: anyone who reaches it could read the queue, forge runner records and job events, and send flushes; set nats.user and nats.password (or nats.token, or nats.nkey_file), which the embedded server then requires, or listen on 127.0.0.1", n.Listen)
	}
}

// isLoopback reports whether a listen host only accepts connections from this host.
// An empty host listens on every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkNKeySeed says whether path holds an nkey user seed, the one form both the
// clients (which sign with it) and the embedded server (which derives the public
// key) can use.
func checkNKeySeed(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read %q: %w", path, err)
	}
	defer clear(data)
	kp, err := nkeys.ParseDecoratedUserNKey(data)
	if err != nil {
		return fmt.Errorf("%q holds no nkey user seed (a line starting with SU): %w", path, err)
	}
	kp.Wipe()
	return nil
}

func (f *File) validateWebhook(p *problems) {
	w := f.Webhook
	checkHostPort(p, "webhook.listen", w.Listen)
	if !strings.HasPrefix(w.Path, "/") {
		p.add("webhook.path", "must start with / (got %q)", w.Path)
	}
	if len(w.Secrets) == 0 && !w.InsecureSkipSignature {
		p.add("webhook.secrets", "no webhook secret configured: set webhook.secrets, webhook.secrets_file or SPAWNER_WEBHOOK_SECRETS (or, for a test bed only, webhook.insecure_skip_signature: true)")
	}
	for i, s := range w.Secrets {
		if len(s.Reveal()) < 16 && !w.InsecureSkipSignature {
			p.add(fmt.Sprintf("webhook.secrets[%d]", i), "is shorter than 16 characters; use a long random secret")
		}
	}
	if w.MaxBodyBytes < 1<<10 || w.MaxBodyBytes > 25<<20 {
		p.add("webhook.max_body_bytes", "must be between 1KiB and 25MiB, GitHub's payload cap (got %s)", w.MaxBodyBytes)
	}
	if w.ReadTimeout <= 0 {
		p.add("webhook.read_timeout", "must be positive (got %s)", w.ReadTimeout)
	}
}

func (f *File) validateRouting(p *problems) {
	r := f.Routing
	if r.Match != MatchSubset && r.Match != MatchExact {
		p.add("routing.match", "must be %q or %q (got %q)", MatchSubset, MatchExact, r.Match)
	}
	if r.DefaultFlavor != "" && f.Flavor(r.DefaultFlavor) == nil {
		p.add("routing.default_flavor", "names no flavor (got %q; flavors: %s)", r.DefaultFlavor, strings.Join(f.FlavorNames(), ", "))
	}
	for i, l := range r.IgnoredLabels {
		if strings.TrimSpace(l) == "" {
			p.add(fmt.Sprintf("routing.ignored_labels[%d]", i), "is empty")
		}
	}
}

func (f *File) validateFlavors(p *problems) {
	if len(f.Flavors) == 0 {
		p.add("flavors", "at least one flavor is required")
	}
	seen := map[string]int{}
	labelSets := map[string]int{}
	for i := range f.Flavors {
		fl := &f.Flavors[i]
		key := fmt.Sprintf("flavors[%d]", i)
		if !flavorRE.MatchString(fl.Name) {
			p.add(key+".name", "must be 1-24 lower-case letters, digits or hyphens, starting with a letter (got %q)", fl.Name)
		} else if j, dup := seen[fl.Name]; dup {
			p.add(key+".name", "%q is already the name of flavors[%d]", fl.Name, j)
		} else {
			seen[fl.Name] = i
		}
		if len(fl.Labels) == 0 && fl.Name != f.Routing.DefaultFlavor {
			p.add(key+".labels", "a flavor with no labels only gets jobs as routing.default_flavor; add labels or make it the default")
		}
		norm := make([]string, 0, len(fl.Labels))
		for j, l := range fl.Labels {
			l = strings.ToLower(strings.TrimSpace(l))
			switch {
			case l == "":
				p.add(fmt.Sprintf("%s.labels[%d]", key, j), "is empty")
			case slices.Contains(norm, l):
				p.add(fmt.Sprintf("%s.labels[%d]", key, j), "%q is listed twice", l)
			default:
				norm = append(norm, l)
			}
		}
		slices.Sort(norm)
		if len(norm) > 0 {
			sig := strings.Join(norm, ",")
			if j, dup := labelSets[sig]; dup {
				p.add(key+".labels", "same labels as flavors[%d]: this flavor would never get a job", j)
			} else {
				labelSets[sig] = i
			}
		}
		if fl.MaxRunners < 1 {
			p.add(key+".max_runners", "must be at least 1 (got %d)", fl.MaxRunners)
		}
		if fl.MinIdle < 0 || (fl.MaxRunners >= 1 && fl.MinIdle > fl.MaxRunners) {
			p.add(key+".min_idle", "must be between 0 and max_runners (%d) (got %d)", fl.MaxRunners, fl.MinIdle)
		}
		for j, w := range fl.MinIdleSchedule {
			wkey := fmt.Sprintf("%s.min_idle_schedule[%d]", key, j)
			for _, pr := range w.window().Check() {
				p.add(wkey+"."+pr.Field, "%v", pr.Err)
			}
			if fl.MaxRunners >= 1 && w.MinIdle > fl.MaxRunners {
				p.add(wkey+".min_idle", "must not exceed max_runners (%d) (got %d)", fl.MaxRunners, w.MinIdle)
			}
		}
		f.validateFlavorBackend(key, fl, p)
	}
}

func (f *File) validateFlavorBackend(key string, fl *Flavor, p *problems) {
	sections := map[string]bool{BackendSim: fl.Sim != nil, BackendLXD: fl.LXD != nil, BackendOpenStack: fl.OpenStack != nil}
	if fl.Backend == "" {
		// No default: a flavor that silently ran simulated runners would take jobs and
		// run none of them.
		p.add(key+".backend", "is required: lxd (with an lxd: section), openstack (with an openstack: section), or sim (simulated instances, for tests and the sandbox)")
		return
	}
	if _, known := sections[fl.Backend]; !known {
		p.add(key+".backend", "must be sim, lxd or openstack (got %q)", fl.Backend)
		return
	}
	for name, set := range sections {
		if set && name != fl.Backend {
			p.add(key+"."+name, "is set but the flavor's backend is %q", fl.Backend)
		}
	}
	switch fl.Backend {
	case BackendSim:
		if fl.Sim.BootTime < 0 {
			p.add(key+".sim.boot_time", "must not be negative (got %s)", fl.Sim.BootTime)
		}
		// A negative jitter was silently taken as none: say so instead.
		if fl.Sim.BootJitter < 0 {
			p.add(key+".sim.boot_jitter", "must not be negative (got %s)", fl.Sim.BootJitter)
		}
	case BackendLXD:
		if fl.LXD == nil {
			p.add(key+".lxd", "is required for the lxd backend")
			return
		}
		fl.LXD.validate(key+".lxd", p)
	case BackendOpenStack:
		if fl.OpenStack == nil {
			p.add(key+".openstack", "is required for the openstack backend")
			return
		}
		fl.OpenStack.validate(key+".openstack", p)
	}
}

func checkHostPort(p *problems, key, v string) {
	if v == "" {
		p.add(key, "is required (host:port)")
		return
	}
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		p.add(key, "must be host:port (got %q)", v)
	}
}

func checkFile(p *problems, key, path string) {
	if path == "" {
		return
	}
	if _, err := os.Stat(path); err != nil {
		p.add(key, "cannot read %q: %v", path, err)
	}
}
