package deployments

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"

	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/internal/secret"
)

const composeFile = "docker-compose.yml"

// loadCompose loads docker-compose.yml as `docker compose` does (schema validation,
// interpolation with env, merge keys), with every profile enabled.
func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	details := types.ConfigDetails{
		WorkingDir:  repoRoot,
		ConfigFiles: []types.ConfigFile{{Filename: repoPath(composeFile)}},
		Environment: types.Mapping(env),
	}
	p, err := loader.LoadWithContext(t.Context(), details, func(o *loader.Options) {
		o.SetProjectName("runner-spawner", true)
		o.Profiles = []string{"*"}
	})
	if err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return p
}

// composeService is a service with its spawner command taken apart (for services that
// run the spawner image) and the config it reads.
type composeService struct {
	types.ServiceConfig
	inv *spawnerInvocation
	cfg *config.File
}

func composeServices(t *testing.T, p *types.Project) map[string]*composeService {
	t.Helper()
	out := map[string]*composeService{}
	for name, s := range p.Services {
		cs := &composeService{ServiceConfig: s}
		out[name] = cs
		if s.Image != spawnerComposeImage {
			continue
		}
		if len(s.Entrypoint) > 0 {
			t.Errorf("%s: service %s overrides the image's entrypoint (spawner)", composeFile, name)
		}
		inv, err := checkSpawnerArgs(s.Command)
		if err != nil {
			t.Errorf("%s: service %s: %v", composeFile, name, err)
			continue
		}
		cs.inv = &inv
		if strings.HasPrefix(inv.command, "dev ") {
			continue
		}
		path, ok := inv.flags["config"]
		if !ok {
			t.Errorf("%s: service %s runs spawner %s without --config", composeFile, name, inv.command)
			continue
		}
		src := composeBindSource(t, name, s, path)
		if src == "" {
			continue
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			if v != nil {
				env[k] = *v
			}
		}
		cs.cfg = parseConfig(t, fmt.Sprintf("%s (service %s)", src, name), readRepoFile(t, src), env, inv)
		applyRoleFlags(cs.cfg, inv)
	}
	return out
}

// composeBindSource is the repository file bind-mounted at target in service s.
func composeBindSource(t *testing.T, name string, s types.ServiceConfig, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == target {
			rel, err := filepath.Rel(repoRoot, v.Source)
			if err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s: service %s mounts %s from outside the repository", composeFile, name, v.Source)
				return ""
			}
			return filepath.ToSlash(rel)
		}
	}
	t.Errorf("%s: service %s reads %s but mounts nothing there", composeFile, name, target)
	return ""
}

const spawnerComposeImage = "runner-spawner:local"

func TestComposeFile(t *testing.T) {
	p := loadCompose(t, nil)
	svcs := composeServices(t, p)

	want := []string{"blackbox", "consumer", "fake-github", "grafana", "janitor", "janitor-standby", "nats-1", "nats-2", "nats-3", "prometheus", "proxy", "sim-cloud", "webhook-1", "webhook-2"}
	if got := sortedKeys(svcs); !slices.Equal(got, want) {
		t.Errorf("%s: services %v, want %v", composeFile, got, want)
	}
	roles := map[string][]string{}
	for name, s := range svcs {
		if s.inv != nil {
			roles[s.inv.command] = append(roles[s.inv.command], name)
		}
	}
	for role, n := range map[string]int{"webhook": 2, "consumer": 1, "janitor": 2, "dev sim-cloud": 1, "dev github": 1} {
		if len(roles[role]) != n {
			t.Errorf("%s: %d services run spawner %s (%v), want %d", composeFile, len(roles[role]), role, roles[role], n)
		}
	}

	for name, s := range svcs {
		// Every bind mount comes from the repository and exists.
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s: service %s: bind mount source: %v", composeFile, name, err)
				}
				if !v.ReadOnly {
					t.Errorf("%s: service %s: bind mount %s should be read-only", composeFile, name, v.Target)
				}
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("%s: service %s: volume %q is not declared", composeFile, name, v.Source)
				}
			}
		}
		for dep, d := range s.DependsOn {
			if d.Condition == types.ServiceConditionHealthy && !hasHealthcheck(svcs[dep]) {
				t.Errorf("%s: %s waits for %s to be healthy, which has no healthcheck", composeFile, name, dep)
			}
		}
		if s.Image == "" {
			t.Errorf("%s: service %s has no image", composeFile, name)
		}
		if s.Image == spawnerComposeImage {
			if s.Build == nil || s.Build.Context != repoRoot {
				t.Errorf("%s: service %s: the spawner image must be built from the repository's Dockerfile (build: .)", composeFile, name)
			} else if _, err := os.Stat(filepath.Join(s.Build.Context, "Dockerfile")); err != nil {
				t.Errorf("%s: service %s: %v", composeFile, name, err)
			}
		}
	}
	checkComposeNATS(t, svcs)
	checkComposeSpawners(t, svcs)
	checkComposeSandbox(t, svcs)
	checkComposeMonitoring(t, svcs)
}

func hasHealthcheck(s *composeService) bool {
	return s != nil && s.HealthCheck != nil && !s.HealthCheck.Disable && len(s.HealthCheck.Test) > 0
}

// checkComposeNATS: three nodes from deployments/nats/nats-server.conf, each with its
// own volume and the environment the config reads, routes naming the three.
func checkComposeNATS(t *testing.T, svcs map[string]*composeService) {
	nodes := []string{"nats-1", "nats-2", "nats-3"}
	natsMinor := semverMinor(goModVersion(t, "github.com/nats-io/nats-server/v2"))
	var routes []string
	for _, n := range nodes {
		routes = append(routes, fmt.Sprintf("nats://%s:6222", n))
	}
	for _, name := range nodes {
		s := svcs[name]
		if s == nil {
			continue
		}
		if want := "nats:" + natsMinor + "-alpine"; s.Image != want {
			t.Errorf("%s: %s: image %q, want %q (the embedded server's release, alpine for wget)", composeFile, name, s.Image, want)
		}
		if !slices.Equal(s.Command, []string{"--config", "/etc/nats/nats-server.conf"}) {
			t.Errorf("%s: %s: command %q", composeFile, name, s.Command)
		}
		if src := composeBindSource(t, name, s.ServiceConfig, "/etc/nats/nats-server.conf"); src != "" && src != natsConfPath {
			t.Errorf("%s: %s mounts %s as its config, want %s", composeFile, name, src, natsConfPath)
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			if v != nil {
				env[k] = *v
			}
		}
		for _, v := range natsConfVars(t) {
			if env[v] == "" {
				t.Errorf("%s: %s does not set %s, which %s reads", composeFile, name, v, natsConfPath)
			}
		}
		if env["NATS_SERVER_NAME"] != name {
			t.Errorf("%s: %s: NATS_SERVER_NAME %q, want the service's name", composeFile, name, env["NATS_SERVER_NAME"])
		}
		var got []string
		for i := 1; i <= 3; i++ {
			got = append(got, env[fmt.Sprintf("NATS_ROUTE_%d", i)])
		}
		if !slices.Equal(got, routes) {
			t.Errorf("%s: %s: routes %v, want %v", composeFile, name, got, routes)
		}
		store := ""
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume && v.Target == env["NATS_STORE_DIR"] {
				store = v.Source
			}
		}
		if store == "" {
			t.Errorf("%s: %s: no volume at NATS_STORE_DIR %q", composeFile, name, env["NATS_STORE_DIR"])
		}
		checkWgetHealthcheck(t, name, s, 8222, "/healthz")
		if len(s.Ports) > 0 {
			t.Errorf("%s: %s publishes ports: NATS stays on the compose network", composeFile, name)
		}
	}
	// The passwords the nodes get are the ones the spawner services log in with.
	for name, s := range svcs {
		if s.cfg != nil && s.Environment["SPAWNER_NATS_PASSWORD"] != nil && svcs["nats-1"] != nil {
			if *s.Environment["SPAWNER_NATS_PASSWORD"] != *svcs["nats-1"].Environment["SPAWNER_NATS_PASSWORD"] {
				t.Errorf("%s: %s's SPAWNER_NATS_PASSWORD differs from the NATS nodes'", composeFile, name)
			}
		}
	}
}

func semverMinor(v string) string {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// checkWgetHealthcheck: a busybox wget of a local URL the service serves.
func checkWgetHealthcheck(t *testing.T, name string, s *composeService, port int, path string) {
	t.Helper()
	if !hasHealthcheck(s) {
		t.Errorf("%s: %s has no healthcheck", composeFile, name)
		return
	}
	test := s.HealthCheck.Test
	if len(test) < 3 || test[0] != "CMD" || test[1] != "wget" {
		t.Errorf("%s: %s: healthcheck %q, want [CMD wget ... URL]", composeFile, name, test)
		return
	}
	u, err := url.Parse(test[len(test)-1])
	if err != nil || u.Hostname() != "127.0.0.1" || u.Port() != fmt.Sprint(port) || u.Path != path {
		t.Errorf("%s: %s: healthcheck URL %q, want http://127.0.0.1:%d%s", composeFile, name, test[len(test)-1], port, path)
	}
}

// checkComposeSpawners: the roles, their configs, listeners, health checks and
// scaling.
func checkComposeSpawners(t *testing.T, svcs map[string]*composeService) {
	var webhooks []string
	for name, s := range svcs {
		if s.inv == nil || s.cfg == nil {
			continue
		}
		role := s.inv.command
		if s.cfg.NATS.URL == "" {
			t.Errorf("%s: %s: nats.url is empty: each spawner container would run its own embedded NATS", composeFile, name)
		}
		for _, u := range strings.Split(s.cfg.NATS.URL, ",") {
			host, port := hostPort(t, "nats.url", strings.TrimSpace(u))
			if svcs[host] == nil || !strings.HasPrefix(host, "nats-") || port != 4222 {
				t.Errorf("%s: %s: nats.url names %s:%d, not a NATS node's client port", composeFile, name, host, port)
			}
		}
		if s.cfg.NATS.Replicas != 3 {
			t.Errorf("%s: %s: nats.replicas %d, want 3 on the 3-node cluster", composeFile, name, s.cfg.NATS.Replicas)
		}
		// The healthcheck is the binary's own status command on the same config.
		if !hasHealthcheck(s) {
			t.Errorf("%s: %s has no healthcheck", composeFile, name)
		} else if test := s.HealthCheck.Test; len(test) < 2 || test[0] != "CMD" || test[1] != "spawner" {
			t.Errorf("%s: %s: healthcheck %q, want [CMD spawner status ...] (the image has no shell)", composeFile, name, test)
		} else if inv, err := checkSpawnerArgs(test[2:]); err != nil {
			t.Errorf("%s: %s: healthcheck: %v", composeFile, name, err)
		} else if inv.command != "status" || inv.flags["config"] != s.inv.flags["config"] {
			t.Errorf("%s: %s: healthcheck runs spawner %s with config %q, want status with %q", composeFile, name, inv.command, inv.flags["config"], s.inv.flags["config"])
		} else if d, err := time.ParseDuration(inv.flags["timeout"]); err != nil || s.HealthCheck.Timeout == nil || time.Duration(*s.HealthCheck.Timeout) <= d {
			t.Errorf("%s: %s: healthcheck --timeout %q must be shorter than the check's timeout", composeFile, name, inv.flags["timeout"])
		}
		if role == "webhook" {
			webhooks = append(webhooks, name)
		}
		ls := spawnerListeners(t, role, s.cfg)
		if role == "consumer" || role == "janitor" {
			if !slices.ContainsFunc(ls, func(l listener) bool { return l.name == "metrics.listen" }) {
				t.Errorf("%s: %s serves no /metrics (metrics.listen or --metrics-listen)", composeFile, name)
			}
		}
		if role == "consumer" {
			if s.ContainerName != "" || s.Hostname != "" || len(s.Ports) > 0 {
				t.Errorf("%s: consumer has a container_name, hostname or published port: `docker compose up --scale consumer=N` would fail", composeFile)
			}
			if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < s.cfg.Consumer.CreateTimeout {
				t.Errorf("%s: consumer's stop_grace_period is shorter than consumer.create_timeout (%s): a drain would be cut", composeFile, s.cfg.Consumer.CreateTimeout)
			}
			// Instances reach any consumer by the service's name.
			host, port := hostPort(t, "bootstrap.url", s.cfg.Bootstrap.URL)
			if host != name || !slices.ContainsFunc(ls, func(l listener) bool { return l.name == "bootstrap.listen" && l.port == port }) {
				t.Errorf("%s: bootstrap.url %q is not the consumers' bootstrap listener", composeFile, s.cfg.Bootstrap.URL)
			}
		}
		for _, f := range s.cfg.Flavors {
			if f.Backend == config.BackendSim && f.Sim != nil {
				if f.Sim.URL == "" {
					t.Errorf("%s: %s: flavor %s simulates in-process: the replicas would not share instances (set sim.url)", composeFile, name, f.Name)
					continue
				}
				host, port := hostPort(t, "sim.url", f.Sim.URL)
				if c := svcs[host]; c == nil || c.inv == nil || c.inv.command != "dev sim-cloud" || listenPort(t, c.inv.flags["listen"]) != port {
					t.Errorf("%s: flavor %s: sim.url %q is not the sim-cloud service", composeFile, f.Name, f.Sim.URL)
				}
			}
		}
	}
	slices.Sort(webhooks)
	checkCaddyfile(t, svcs, webhooks)
}

func listenPort(t *testing.T, addr string) int {
	t.Helper()
	if addr == "" {
		return 0
	}
	_, p := hostPort(t, "--listen", addr)
	return p
}

var (
	caddyUpstreamsRE = regexp.MustCompile(`(?m)^\s*reverse_proxy\s+([^{]+)\{`)
	caddyMatcherRE   = regexp.MustCompile(`(?m)^\s*@\w+\s+path\s+(.+)$`)
	caddyHealthRE    = regexp.MustCompile(`(?m)^\s*health_uri\s+(\S+)`)
	caddySiteRE      = regexp.MustCompile(`(?m)^:(\d+)\s*\{`)
)

// checkCaddyfile: the proxy spreads the webhook path over exactly the webhook
// services, checks their /readyz, and listens where compose publishes it.
func checkCaddyfile(t *testing.T, svcs map[string]*composeService, webhooks []string) {
	const file = "deployments/compose/Caddyfile"
	proxy := svcs["proxy"]
	if proxy == nil {
		return
	}
	if src := composeBindSource(t, "proxy", proxy.ServiceConfig, "/etc/caddy/Caddyfile"); src != file {
		t.Errorf("%s: proxy mounts %q as its Caddyfile, want %s", composeFile, src, file)
	}
	data := string(readRepoFile(t, file))
	if strings.Count(data, "{") != strings.Count(data, "}") {
		t.Errorf("%s: unbalanced braces", file)
	}
	m := caddySiteRE.FindStringSubmatch(data)
	if m == nil {
		t.Fatalf("%s: no site block :PORT {", file)
	}
	port := m[1]
	if len(proxy.Ports) != 1 || fmt.Sprint(proxy.Ports[0].Target) != port {
		t.Errorf("%s: proxy publishes %+v, want the Caddyfile's port %s", composeFile, proxy.Ports, port)
	}
	checkWgetHealthcheck(t, "proxy", proxy, listenPort(t, ":"+port), "/readyz")

	um := caddyUpstreamsRE.FindStringSubmatch(data)
	if um == nil {
		t.Fatalf("%s: no reverse_proxy block", file)
	}
	var upstreams []string
	for _, u := range strings.Fields(um[1]) {
		host, p := hostPort(t, file+" upstream", u)
		s := svcs[host]
		if s == nil || s.cfg == nil || s.inv.command != "webhook" || listenPort(t, s.cfg.Webhook.Listen) != p {
			t.Errorf("%s: upstream %s is not a webhook service's webhook.listen", file, u)
		}
		upstreams = append(upstreams, host)
	}
	slices.Sort(upstreams)
	if !slices.Equal(upstreams, webhooks) {
		t.Errorf("%s: upstreams %v, want every webhook service %v", file, upstreams, webhooks)
	}
	if hm := caddyHealthRE.FindStringSubmatch(data); hm == nil || hm[1] != "/readyz" {
		t.Errorf("%s: reverse_proxy has no active health check of /readyz", file)
	}
	pm := caddyMatcherRE.FindStringSubmatch(data)
	if pm == nil {
		t.Fatalf("%s: no path matcher", file)
	}
	paths := strings.Fields(pm[1])
	for _, w := range webhooks {
		if c := svcs[w].cfg; c != nil && !slices.Contains(paths, c.Webhook.Path) {
			t.Errorf("%s: the proxy does not pass webhook.path %s of %s", file, c.Webhook.Path, w)
		}
	}
}

// checkComposeSandbox: the fake GitHub delivers through the proxy with the
// receivers' secret, and the spawners call it; the sim cloud serves the flavors.
func checkComposeSandbox(t *testing.T, svcs map[string]*composeService) {
	gh := svcs["fake-github"]
	if gh == nil || gh.inv == nil {
		return
	}
	f := gh.inv.flags
	ghPort := listenPort(t, f["listen"])
	if host, port := hostPort(t, "--public-url", f["public-url"]); host != "fake-github" || port != ghPort {
		t.Errorf("%s: fake-github --public-url %q: runners in sim-cloud would not reach it", composeFile, f["public-url"])
	}
	wu, err := url.Parse(f["webhook-url"])
	if err != nil {
		t.Fatal(err)
	}
	proxy := svcs["proxy"]
	if wu.Hostname() != "proxy" || proxy == nil || len(proxy.Ports) == 0 || wu.Port() != fmt.Sprint(proxy.Ports[0].Target) {
		t.Errorf("%s: fake-github --webhook-url %q is not the proxy", composeFile, f["webhook-url"])
	}
	if _, ok := gh.DependsOn["proxy"]; !ok {
		t.Errorf("%s: fake-github starts sending webhooks before the proxy is up", composeFile)
	}
	for name, s := range svcs {
		if s.cfg == nil {
			continue
		}
		if s.inv.command == "webhook" {
			if wu.Path != s.cfg.Webhook.Path {
				t.Errorf("%s: fake-github posts to %s, %s listens on %s", composeFile, wu.Path, name, s.cfg.Webhook.Path)
			}
			if !slices.ContainsFunc(s.cfg.Webhook.Secrets, func(v secret.Value) bool { return v.Reveal() == f["webhook-secret"] }) {
				t.Errorf("%s: fake-github signs with a secret %s does not accept", composeFile, name)
			}
		}
		if host, port := hostPort(t, "github.url", s.cfg.GitHub.URL); host != "fake-github" || port != ghPort {
			t.Errorf("%s: %s: github.url %q is not the fake GitHub (see docs/operations.md for real GitHub)", composeFile, name, s.cfg.GitHub.URL)
		}
	}
	sim := svcs["sim-cloud"]
	if sim != nil && sim.inv != nil && listenPort(t, sim.inv.flags["listen"]) == 0 {
		t.Errorf("%s: sim-cloud has no --listen (its default is loopback only)", composeFile)
	}
}

// checkComposeMonitoring: Prometheus scrapes each spawner service where it serves
// /metrics, loads the alert rules, and Grafana gets the dashboard.
func checkComposeMonitoring(t *testing.T, svcs map[string]*composeService) {
	const file = "deployments/compose/prometheus.yml"
	prom := svcs["prometheus"]
	if prom == nil {
		return
	}
	if src := composeBindSource(t, "prometheus", prom.ServiceConfig, "/etc/prometheus/prometheus.yml"); src != file {
		t.Errorf("%s: prometheus mounts %q, want %s", composeFile, src, file)
	}
	var pc struct {
		RuleFiles     []string `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string            `json:"job_name"`
			MetricsPath   string            `json:"metrics_path"`
			Params        map[string][]any  `json:"params"`
			StaticConfigs []json2StaticConf `json:"static_configs"`
			DNSSDConfigs  []struct {
				Names []string `json:"names"`
				Type  string   `json:"type"`
				Port  int      `json:"port"`
			} `json:"dns_sd_configs"`
			RelabelConfigs []map[string]any `json:"relabel_configs"`
		} `json:"scrape_configs"`
		Global map[string]string `json:"global"`
	}
	if err := yaml.UnmarshalStrict(readRepoFile(t, file), &pc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	for _, rf := range pc.RuleFiles {
		if src := composeBindSource(t, "prometheus", prom.ServiceConfig, rf); src != alertsFile {
			t.Errorf("%s: rule file %s is %q, want %s", file, rf, src, alertsFile)
		}
	}
	if len(pc.RuleFiles) == 0 {
		t.Errorf("%s: no rule_files", file)
	}
	scraped := map[string]bool{}
	for _, sc := range pc.ScrapeConfigs {
		if !strings.HasPrefix(sc.JobName, "spawner-") {
			t.Errorf("%s: job %s: the alerts select spawner jobs by the prefix spawner-", file, sc.JobName)
		}
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				if sc.MetricsPath == "/probe" {
					u, err := url.Parse(target)
					if err != nil {
						t.Errorf("%s: %v", file, err)
						continue
					}
					port := listenPort(t, u.Host)
					checkScrapeTarget(t, file, svcs, u.Hostname(), port, u.Path)
					continue
				}
				host, port := hostPort(t, file, target)
				checkScrapeTarget(t, file, svcs, host, port, "/metrics")
				scraped[host] = true
			}
		}
		for _, dc := range sc.DNSSDConfigs {
			for _, n := range dc.Names {
				checkScrapeTarget(t, file, svcs, n, dc.Port, "/metrics")
				scraped[n] = true
			}
		}
	}
	for name, s := range svcs {
		if s.cfg != nil && !scraped[name] {
			t.Errorf("%s: service %s is not scraped", file, name)
		}
	}
	if bb := svcs["blackbox"]; bb == nil {
		t.Errorf("%s: the readyz probes need the blackbox service", composeFile)
	}
	if g := svcs["grafana"]; g != nil {
		if src := composeBindSource(t, "grafana", g.ServiceConfig, "/var/lib/grafana/dashboards/spawner.json"); src != dashboardFile {
			t.Errorf("%s: grafana mounts %q as the dashboard, want %s", composeFile, src, dashboardFile)
		}
		composeBindSource(t, "grafana", g.ServiceConfig, "/etc/grafana/provisioning")
	}
}

type json2StaticConf struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

func checkScrapeTarget(t *testing.T, file string, svcs map[string]*composeService, host string, port int, path string) {
	t.Helper()
	s := svcs[host]
	if s == nil || s.cfg == nil {
		t.Errorf("%s: target %s:%d is not a spawner service", file, host, port)
		return
	}
	if !servesPath(spawnerListeners(t, s.inv.command, s.cfg), port, path) {
		t.Errorf("%s: %s does not serve %s on port %d", file, host, path, port)
	}
}

// TestComposeFileTypoFails makes sure the loader is strict enough to catch what this
// test is for: a misspelt key.
func TestComposeFileTypoFails(t *testing.T) {
	data := strings.Replace(string(readRepoFile(t, composeFile)), "healthcheck:", "healthchek:", 1)
	dir := t.TempDir()
	path := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: path}},
	}, func(o *loader.Options) { o.SetProjectName("typo", true); o.Profiles = []string{"*"} })
	if err == nil {
		t.Error("compose-go accepted a misspelt key (healthchek)")
	}
}

const noRegistryFile = "deployments/compose/no-registry.yml"

// TestComposeNoRegistry: the override for a host with no registry changes only the
// images of NATS and the balancer, to the tags scripts/compose-test.sh builds (NATS at
// the embedded server's exact version), and never pulls them; every other service and
// every health check stays as docker-compose.yml has it.
func TestComposeNoRegistry(t *testing.T) {
	base := loadCompose(t, nil)
	p, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  repoRoot,
		ConfigFiles: []types.ConfigFile{{Filename: repoPath(composeFile)}, {Filename: repoPath(noRegistryFile)}},
	}, func(o *loader.Options) {
		o.SetProjectName("runner-spawner", true)
		o.Profiles = []string{"*"}
	})
	if err != nil {
		t.Fatalf("%s + %s: %v", composeFile, noRegistryFile, err)
	}
	natsImage := "runner-spawner/nats-server:" + strings.TrimPrefix(goModVersion(t, "github.com/nats-io/nats-server/v2"), "v")
	for name, s := range p.Services {
		b := base.Services[name]
		want := b.Image
		switch {
		case strings.HasPrefix(name, "nats-"):
			want = natsImage
		case name == "proxy":
			if !regexp.MustCompile(`^runner-spawner/caddy:2\.\d+\.\d+$`).MatchString(s.Image) {
				t.Errorf("%s: proxy image %q, want runner-spawner/caddy:2.MINOR.PATCH (a Caddy release on the module proxy)", noRegistryFile, s.Image)
			}
			want = s.Image
		}
		if s.Image != want {
			t.Errorf("%s: %s runs %q, want %q", noRegistryFile, name, s.Image, want)
		}
		if s.Image != b.Image && s.PullPolicy != types.PullPolicyNever {
			t.Errorf("%s: %s: pull_policy %q, want never (the image is built here)", noRegistryFile, name, s.PullPolicy)
		}
		// The images carry busybox's wget, so the health checks are docker-compose.yml's.
		if !reflect.DeepEqual(s.HealthCheck, b.HealthCheck) || !reflect.DeepEqual(s.Command, b.Command) ||
			!reflect.DeepEqual(s.Volumes, b.Volumes) || !reflect.DeepEqual(s.Environment, b.Environment) {
			t.Errorf("%s changes more of %s than its image", noRegistryFile, name)
		}
	}
	script := string(readRepoFile(t, "scripts/compose-test.sh"))
	for _, repo := range []string{"runner-spawner/nats-server", "runner-spawner/caddy"} {
		if !strings.Contains(script, "image_tag "+repo+")") {
			t.Errorf("scripts/compose-test.sh does not build %s at the tag %s names", repo, noRegistryFile)
		}
	}
	if !strings.Contains(script, "OVERRIDE="+noRegistryFile) {
		t.Errorf("scripts/compose-test.sh does not read %s", noRegistryFile)
	}
}
