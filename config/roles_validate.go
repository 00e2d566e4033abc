package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/bootstrapendpoint"
)

var (
	githubOrgRE  = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$`)
	githubRepoRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$`)
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func (f *File) validateRoles(p *problems) {
	f.validateGitHub(p)
	c := f.Consumer
	if c.Workers < 1 || c.Workers > 256 {
		p.add("consumer.workers", "must be 1 to 256 (got %d)", c.Workers)
	}
	for i, name := range c.Flavors {
		if f.Flavor(name) == nil {
			p.add(fmt.Sprintf("consumer.flavors[%d]", i), "names no flavor (got %q)", name)
		}
	}
	positive(p, "consumer.verify_age", c.VerifyAge)
	positive(p, "consumer.backoff_initial", c.BackoffInitial)
	positive(p, "consumer.backoff_max", c.BackoffMax)
	positive(p, "consumer.capacity_wait", c.CapacityWait)
	positive(p, "consumer.capacity_retry", c.CapacityRetry)
	positive(p, "consumer.create_timeout", c.CreateTimeout)
	if c.AckWait < 5*time.Second {
		p.add("consumer.ack_wait", "must be at least 5s (got %s)", c.AckWait)
	}
	if c.MaxAttempts < 1 {
		p.add("consumer.max_attempts", "must be at least 1 (got %d)", c.MaxAttempts)
	}
	if c.MaxReplacements < 0 {
		p.add("consumer.max_replacements", "must not be negative (got %d)", c.MaxReplacements)
	}
	if c.BackoffMax < c.BackoffInitial {
		p.add("consumer.backoff_max", "must not be below consumer.backoff_initial (%s < %s)", c.BackoffMax, c.BackoffInitial)
	}

	b := f.Bootstrap
	if b.Listen != "" {
		checkHostPort(p, "bootstrap.listen", b.Listen)
	}
	if b.URL != "" {
		// The URL is written into every instance's bootstrap script: a strict
		// alphabet, so that nothing in it can be shell.
		if err := bootstrapendpoint.CheckURL(strings.TrimRight(b.URL, "/")); err != nil {
			p.add("bootstrap.url", "%v (got %q)", err, b.URL)
		}
	} else if !listenHasPort(b.Listen) {
		// The URL instances are given is derived from bootstrap.listen even where
		// --bootstrap-listen off keeps this process from serving it: with neither
		// key giving an address, no consumer could tell its instances where to call.
		p.add("bootstrap.url", "is not set and bootstrap.listen %q gives no address: set bootstrap.url to the endpoint instances reach, or bootstrap.listen to the host:port it is served on (--bootstrap-listen off only stops a process serving it; the address still comes from these keys)", b.Listen)
	} else if f.needsReachableBootstrap() && !listenHasHost(b.Listen) {
		p.add("bootstrap.url", "is required: instances need an address of the spawner they can reach (bootstrap.listen %q names no host; set bootstrap.url, or bootstrap.listen to an address of this host they reach)", b.Listen)
	}
	f.validateBootstrapTLS(p)

	j := f.Janitor
	if j.Interval < time.Second {
		p.add("janitor.interval", "must be at least 1s (got %s)", j.Interval)
	}
	if j.MaxDeletesPerPass < 1 {
		p.add("janitor.max_deletes_per_pass", "must be at least 1 (got %d)", j.MaxDeletesPerPass)
	}
	if j.MaxGitHubCallsPerPass < 1 {
		p.add("janitor.max_github_calls_per_pass", "must be at least 1 (got %d)", j.MaxGitHubCallsPerPass)
	}
	positive(p, "janitor.flush_wait", j.FlushWait)
	if j.FlushWaitAttempts < 1 {
		p.add("janitor.flush_wait_attempts", "must be at least 1 (got %d)", j.FlushWaitAttempts)
	}
	positive(p, "janitor.sweep_interval", j.SweepInterval)
	if j.SweepLookback <= 0 || j.SweepLookback > 72*time.Hour {
		p.add("janitor.sweep_lookback", "must be above 0 and at most 72h, GitHub's delivery retention (got %s)", j.SweepLookback)
	}
	positive(p, "janitor.poll_interval", j.PollInterval)
	for i, r := range j.PollRepos {
		if !githubRepoRE.MatchString(r) {
			p.add(fmt.Sprintf("janitor.poll_repos[%d]", i), "must be owner/repo (got %q)", r)
		}
	}

	if f.Admin.Listen != "" {
		checkHostPort(p, "admin.listen", f.Admin.Listen)
		if len(f.Admin.Token.Reveal()) < 16 {
			p.add("admin.token", "a token of at least 16 characters is required with admin.listen (admin.token, admin.token_file or SPAWNER_ADMIN_TOKEN)")
		}
	}
	if f.Metrics.Listen != "" {
		checkHostPort(p, "metrics.listen", f.Metrics.Listen)
	}
	for i := range f.Flavors {
		f.Flavors[i].Runner.validate(fmt.Sprintf("flavors[%d].runner", i), p)
		if s := f.Flavors[i].Sim; s != nil && s.URL != "" {
			if u, err := url.Parse(s.URL); err != nil || u.Host == "" {
				p.add(fmt.Sprintf("flavors[%d].sim.url", i), "must be an http URL of a simulated cloud (got %q)", s.URL)
			}
		}
	}
}

func (f *File) validateGitHub(p *problems) {
	g := f.GitHub
	if u, err := url.Parse(g.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.add("github.url", "must be the REST API's URL, https://api.github.com/ or https://HOST/api/v3/ (got %q)", g.URL)
	}
	switch {
	case g.Path == "":
		p.add("github.path", "is required: the organisation (octo-org) or repository (octo-org/octo-repo) runners register with")
	case strings.Contains(g.Path, "/") && !githubRepoRE.MatchString(g.Path):
		p.add("github.path", "must be owner/repo (got %q)", g.Path)
	case !strings.Contains(g.Path, "/") && !githubOrgRE.MatchString(g.Path):
		p.add("github.path", "must be an organisation name (got %q)", g.Path)
	}
	hasToken, hasApp := !g.Token.IsZero(), g.App.ID != 0 || g.App.PrivateKeyFile != ""
	switch {
	case hasToken && hasApp:
		p.add("github", "set either a token or an app, not both")
	case !hasToken && !hasApp:
		p.add("github.token", "no GitHub credentials: set github.token, github.token_file or SPAWNER_GITHUB_TOKEN, or github.app")
	case hasApp:
		if g.App.ID <= 0 {
			p.add("github.app.id", "is required with github.app")
		}
		if g.App.PrivateKeyFile == "" {
			p.add("github.app.private_key_file", "is required with github.app")
		} else {
			checkFile(p, "github.app.private_key_file", g.App.PrivateKeyFile)
		}
	}
	if g.RunnerGroup != "" && strings.Contains(g.Path, "/") && !strings.EqualFold(g.RunnerGroup, "default") {
		p.add("github.runner_group", "runner groups exist for organisations only (github.path is a repository)")
	}
	positive(p, "github.timeout", g.Timeout)
	if g.MaxInFlight < 1 {
		p.add("github.max_in_flight", "must be at least 1 (got %d)", g.MaxInFlight)
	}
	// 0 is no ceiling; every value accepted before (≥ 1) still is, now as a ceiling.
	if g.RatePerHour < 0 {
		p.add("github.rate_per_hour", "must not be negative (got %d)", g.RatePerHour)
	}
	if g.ReserveThreshold < 0 {
		p.add("github.reserve_threshold", "must not be negative (got %d)", g.ReserveThreshold)
	}
	if g.SecondaryPointsPerMinute < 0 {
		p.add("github.secondary_points_per_minute", "must not be negative (got %d; 0 turns the pacing off)", g.SecondaryPointsPerMinute)
	}
	if g.MaxMutatingInFlight < 1 || g.MaxMutatingInFlight > g.MaxInFlight {
		p.add("github.max_mutating_in_flight", "must be between 1 and github.max_in_flight (%d) (got %d)", g.MaxInFlight, g.MaxMutatingInFlight)
	}
	switch g.Hook.Kind {
	case "":
	case "repo":
		if !githubRepoRE.MatchString(g.Hook.Repo) {
			p.add("github.hook.repo", "must be owner/repo for a repo hook (got %q)", g.Hook.Repo)
		}
		if g.Hook.ID <= 0 {
			p.add("github.hook.id", "is required for a repo hook")
		}
	case "org":
		if g.Hook.ID <= 0 {
			p.add("github.hook.id", "is required for an org hook")
		}
	case "app":
		if g.App.ID == 0 {
			p.add("github.hook.kind", "app hooks need github.app credentials")
		}
	default:
		p.add("github.hook.kind", "must be repo, org or app (got %q)", g.Hook.Kind)
	}
}

func (r *Runner) validate(key string, p *problems) {
	if strings.TrimSpace(r.Command) == "" || strings.ContainsAny(r.Command, "\n\r") {
		p.add(key+".command", "must be one non-empty line (got %q)", r.Command)
	}
	if !slices.Contains([]string{UserDataCloudConfig, UserDataScript}, r.UserData) {
		p.add(key+".user_data", "must be %s or %s (got %q)", UserDataCloudConfig, UserDataScript, r.UserData)
	}
	for k := range r.Env {
		if !envNameRE.MatchString(k) {
			p.add(key+".env."+k, "is not an environment variable name")
		}
	}
	for i, l := range r.ExtraLabels {
		if strings.TrimSpace(l) == "" {
			p.add(fmt.Sprintf("%s.extra_labels[%d]", key, i), "is empty")
		}
	}
	for _, delim := range []string{"SPAWNER_LIB_EOF", "SPAWNER_HOOK_EOF", "SPAWNER_RUN_EOF"} {
		if strings.Contains(r.PreJobScript, delim) {
			p.add(key+".pre_job_script", "must not contain %s", delim)
		}
	}
	if r.DockerhubMirror != "" {
		if u, err := url.Parse(r.DockerhubMirror); err != nil || u.Host == "" {
			p.add(key+".dockerhub_mirror", "must be a registry URL such as https://mirror.example.com (got %q)", r.DockerhubMirror)
		}
	}
	positive(p, key+".boot_timeout", r.BootTimeout)
	positive(p, key+".idle_ttl", r.IdleTTL)
}

// validateBootstrapTLS checks bootstrap.tls: the key pair loads and matches, what
// instances pin holds certificates only, the URL is https, and the pinned
// certificates verify the endpoint's certificate for the URL's host, as curl in the
// instance will.
func (f *File) validateBootstrapTLS(p *problems) {
	b := f.Bootstrap
	t := b.TLS
	checkFile(p, "bootstrap.tls.cert_file", t.CertFile)
	checkFile(p, "bootstrap.tls.key_file", t.KeyFile)
	checkFile(p, "bootstrap.tls.ca_file", t.CAFile)
	if t.CertFile == "" && t.KeyFile == "" && t.CAFile == "" {
		return
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		p.add("bootstrap.tls", "cert_file and key_file go together")
	}
	var chain []*x509.Certificate
	if t.CertFile != "" && t.KeyFile != "" && fileExists(t.CertFile) && fileExists(t.KeyFile) {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			p.add("bootstrap.tls.key_file", "does not load with bootstrap.tls.cert_file (they must be a matching pair): %v", err)
		} else {
			for _, der := range pair.Certificate {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					p.add("bootstrap.tls.cert_file", "%v", err)
					break
				}
				chain = append(chain, c)
			}
		}
	}
	var roots *x509.CertPool
	pinKey := "bootstrap.tls.cert_file"
	if t.CAFile != "" {
		pinKey = "bootstrap.tls.ca_file"
	}
	if pin := b.PinFile(); fileExists(pin) {
		data, err := os.ReadFile(pin)
		if err != nil {
			p.add(pinKey, "cannot read %q: %v", pin, err)
		} else if pem, err := bootstrapendpoint.PinPEM(data); err != nil {
			// Every instance gets this file: a key in it would go to all of them.
			p.add(pinKey, "%q is handed to every instance to pin, and %v", pin, err)
		} else {
			roots = x509.NewCertPool()
			roots.AppendCertsFromPEM(pem)
		}
	}
	base := strings.TrimRight(b.URL, "/")
	host := ""
	switch {
	case base == "" && t.CertFile == "":
		p.add("bootstrap.url", "is required with bootstrap.tls.ca_file alone (the endpoint is served by a TLS proxy): its https:// address")
	case base == "":
		if listenHasHost(b.Listen) {
			host, _, _ = net.SplitHostPort(b.Listen)
		}
	case !bootstrapendpoint.HTTPS(base):
		p.add("bootstrap.url", "must be https:// with bootstrap.tls (got %q)", b.URL)
	default:
		if u, err := url.Parse(base); err == nil {
			host = u.Hostname()
		}
	}
	if host != "" && roots != nil && len(chain) > 0 {
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter}); err != nil {
			p.add(pinKey, "does not verify bootstrap.tls.cert_file for %s, as instances will check it: %v", host, err)
		}
	}
}

// needsReachableBootstrap: instances of real backends call the bootstrap endpoint over
// the network; simulated ones reach it on loopback.
func (f *File) needsReachableBootstrap() bool {
	return f.UsesBackend(BackendLXD) || f.UsesBackend(BackendOpenStack)
}

// listenHasPort: a bootstrap URL can be derived from listen (host or not).
func listenHasPort(listen string) bool {
	_, port, err := net.SplitHostPort(listen)
	return err == nil && port != ""
}

func listenHasHost(listen string) bool {
	host, _, found := strings.Cut(listen, ":")
	return found && host != "" && host != "0.0.0.0" && host != "::" && host != "[::]"
}

func positive(p *problems, key string, d time.Duration) {
	if d <= 0 {
		p.add(key, "must be positive (got %s)", d)
	}
}
