package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gcopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"gopkg.in/yaml.v3"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/backends/sim"
	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
	"github.com/runner-spawner/runner-spawner/internal/realservice"
)

// The real cloud is the one scripts/openstack-setup.sh brings up (as in
// backends/openstack/real_test.go): clouds osdev-admin (password, admin) and
// osdev-quota (a project with room for one instance); image cirros-fake, flavor
// m1.tiny, network private. Servers reach ACTIVE, but no VM runs: the test plays each
// instance's part.
const (
	osAdminCloud = "osdev-admin"
	osQuotaCloud = "osdev-quota"
	osImage      = "cirros-fake"
	osNovaFlavor = "m1.tiny"
	osNetwork    = "private"
	// Nova deletes asynchronously; on a loaded machine a delete can take a while.
	osSettle = 90 * time.Second
	// osPoll is how often the test looks at the cloud (and so the resolution of every
	// time it measures there), as BenchmarkRealCreateToActive polls.
	osPoll = 100 * time.Millisecond
	// osMicroversion shows tags (2.26+, the spawner negotiates 2.52) and, to an admin,
	// user_data (2.3+).
	osMicroversion = "2.52"
)

// osCloudsFile is the clouds.yaml of the test cloud; SPAWNER_OPENSTACK_CLOUDS_FILE
// points the tests at another file with the same entries.
func osCloudsFile() string {
	if f := os.Getenv("SPAWNER_OPENSTACK_CLOUDS_FILE"); f != "" {
		return f
	}
	return "/etc/openstack/clouds.yaml"
}

// osCompute logs in to the named cloud of the test cloud with plain gophercloud (the
// test's own view of the cloud, sharing nothing with the spawner's), or skips the test
// saying why; with SPAWNER_REQUIRE_OPENSTACK=1 (CI) it fails instead, as the backend's
// real-cloud tests do.
func osCompute(t testing.TB, cloud string) *gophercloud.ServiceClient {
	t.Helper()
	realservice.OpenStackCloud.Await(t)
	if _, err := os.Stat(osCloudsFile()); err != nil {
		realservice.OpenStack.Unavailable(t, "%v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ao, eo, tlsConfig, err := clouds.Parse(clouds.WithCloudName(cloud), clouds.WithLocations(osCloudsFile()))
	if err != nil {
		realservice.OpenStack.Unavailable(t, "cloud %s: %v", cloud, err)
	}
	ao.AllowReauth = true
	provider, err := gcopenstack.NewClient(ao.IdentityEndpoint)
	if err != nil {
		realservice.OpenStack.Unavailable(t, "cloud %s: %v", cloud, err)
	}
	if tlsConfig != nil {
		provider.HTTPClient = http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	}
	if err := gcopenstack.Authenticate(ctx, provider, ao); err != nil {
		realservice.OpenStack.Unavailable(t, "cloud %s: %v", cloud, err)
	}
	compute, err := gcopenstack.NewComputeV2(provider, eo)
	if err != nil {
		realservice.OpenStack.Unavailable(t, "cloud %s: %v", cloud, err)
	}
	compute.Microversion = osMicroversion
	return compute
}

// osTag is a server tag as the OpenStack backend sets it ("spawner_deployment=e2e1").
func osTag(key, value string) string { return "spawner_" + key + "=" + value }

// listOurs lists every server tagged with the deployment, across projects when
// allTenants (an admin's token is needed then).
func listOurs(ctx context.Context, compute *gophercloud.ServiceClient, deployment string, allTenants bool) ([]servers.Server, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pages, err := servers.List(compute, servers.ListOpts{Tags: osTag(backends.TagDeployment, deployment), AllTenants: allTenants}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return servers.ExtractServers(pages)
}

// deleteOurs deletes what is left of the deployment's servers and waits until Nova
// lists none: the cloud is shared and must stay clean whatever the test's outcome.
func deleteOurs(t testing.TB, compute *gophercloud.ServiceClient, deployment string, allTenants bool) {
	ctx, cancel := context.WithTimeout(context.Background(), osSettle+30*time.Second)
	defer cancel()
	deleted := map[string]bool{}
	for {
		list, err := listOurs(ctx, compute, deployment, allTenants)
		if err == nil && len(list) == 0 {
			return
		}
		if err == nil {
			for _, s := range list {
				if !deleted[s.ID] {
					deleted[s.ID] = true
					if err := servers.Delete(ctx, compute, s.ID).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
						t.Logf("cleanup: delete server %s (%s): %v", s.Name, s.ID, err)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Errorf("cleanup: servers of deployment %s still listed after %s (last error %v)", deployment, osSettle, err)
			return
		case <-time.After(time.Second):
		}
	}
}

// osServer is what the test saw of one server of ours.
type osServer struct {
	id, name, flavor string
	job              int64
	firstSeen        time.Time // the first poll that listed it
	active           time.Time // the first poll that saw it ACTIVE
	fault            string    // Nova's fault, if it ever went to ERROR

	userData string // as Nova shows it (base64)
	played   bool
	playErr  error
	jit      string // the runner config the instance was handed
	leak     string // where the user-data showed a secret beyond the one-time token
	reuse    int    // the bootstrap's answer to the token used a second time
}

// cloudWatch is the test's eye on the cloud and its hands in the instances: every
// osPoll it lists the deployment's servers, counts them per flavor, and plays each
// server that reaches ACTIVE the way its VM would (cloud-init runs the bootstrap
// script from the user-data; the runner runs one job against the fake GitHub).
type cloudWatch struct {
	compute    *gophercloud.ServiceClient
	deployment string
	allTenants bool
	hold       chan struct{} // plays start once it is closed
	runner     sim.RunnerFunc
	// secrets the user-data must never carry, by what they are.
	secrets map[string]string

	mu      sync.Mutex
	servers map[string]*osServer // by server id
	// maxExisting is, per flavor, the most servers that existed at one poll: every
	// server Nova lists for the deployment, whatever its status (BUILD, ACTIVE,
	// ERROR, being deleted), since each holds a share of the cloud until Nova has
	// removed it. peak names them (with status and task state) at that poll.
	maxExisting map[string]int
	peak        map[string][]string
	maxActive   map[string]int // per flavor, ACTIVE servers not being deleted
	polls       int
	pollErrors  int
	lastErr     error

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// watchCloud starts watching; plays wait for hold to close (nil: play at once). It
// stops, cancelling the plays still running, in t.Cleanup.
func watchCloud(t *testing.T, compute *gophercloud.ServiceClient, deployment string, allTenants bool, hold chan struct{}, secrets map[string]string) *cloudWatch {
	if hold == nil {
		hold = make(chan struct{})
		close(hold)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cw := &cloudWatch{
		compute: compute, deployment: deployment, allTenants: allTenants, hold: hold, secrets: secrets,
		runner:  fakerunner.SimRunner(slog.New(slog.DiscardHandler)),
		servers: map[string]*osServer{}, maxExisting: map[string]int{}, peak: map[string][]string{}, maxActive: map[string]int{},
		cancel: cancel,
	}
	cw.wg.Go(func() {
		for ctx.Err() == nil {
			cw.poll(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(osPoll):
			}
		}
	})
	t.Cleanup(cw.stop)
	return cw
}

func (cw *cloudWatch) stop() {
	cw.cancel()
	cw.wg.Wait()
}

func (cw *cloudWatch) poll(ctx context.Context) {
	list, err := listOurs(ctx, cw.compute, cw.deployment, cw.allTenants)
	now := time.Now()
	cw.mu.Lock()
	defer cw.mu.Unlock()
	cw.polls++
	if err != nil {
		if ctx.Err() == nil {
			cw.pollErrors++
			cw.lastErr = err
		}
		return
	}
	existing, active := map[string][]string{}, map[string]int{}
	for i := range list {
		s := &list[i]
		fl := s.Metadata["spawner_flavor"]
		// Every server listed exists, and counts against max_runners: one being
		// deleted or in ERROR too. The spawner frees a slot only once Nova no longer
		// has the server.
		existing[fl] = append(existing[fl], fmt.Sprintf("%s (%s/%s)", s.Name, s.Status, s.TaskState))
		if s.Status == "ACTIVE" && s.TaskState != "deleting" {
			active[fl]++
		}
		rec := cw.servers[s.ID]
		if rec == nil {
			job, _ := strconv.ParseInt(s.Metadata["spawner_job"], 10, 64)
			rec = &osServer{id: s.ID, name: s.Name, flavor: fl, job: job, firstSeen: now}
			cw.servers[s.ID] = rec
		}
		if rec.userData == "" && s.Userdata != nil {
			rec.userData = *s.Userdata
		}
		if s.Status == "ERROR" && rec.fault == "" {
			rec.fault = "ERROR: " + s.Fault.Message
		}
		if s.Status == "ACTIVE" && rec.active.IsZero() {
			rec.active = now
			cw.wg.Go(func() { cw.play(ctx, rec) })
		}
	}
	for fl, names := range existing {
		if len(names) > cw.maxExisting[fl] {
			cw.maxExisting[fl] = len(names)
			cw.peak[fl] = names
		}
	}
	for fl, n := range active {
		cw.maxActive[fl] = max(cw.maxActive[fl], n)
	}
}

// play is one instance's life after boot: read its user-data back from Nova, run the
// bootstrap (sim.Play: booted, fetch the one-time config, the runner, job callbacks),
// then check what the user-data carried.
func (cw *cloudWatch) play(ctx context.Context, rec *osServer) {
	select {
	case <-cw.hold:
	case <-ctx.Done():
		return
	}
	cw.mu.Lock()
	ud := rec.userData
	cw.mu.Unlock()
	result := func(f func()) {
		cw.mu.Lock()
		defer cw.mu.Unlock()
		f()
	}
	if ud == "" {
		// The list showed none (a cloud whose list omits it): ask for the server itself.
		s, err := servers.Get(ctx, cw.compute, rec.id).Extract()
		if err != nil || s.Userdata == nil {
			result(func() {
				rec.playErr = fmt.Errorf("read user_data of %s: %v (admin token at microversion 2.3+ needed)", rec.name, err)
			})
			return
		}
		ud = *s.Userdata
		result(func() { rec.userData = ud })
	}
	boot, err := parseUserData(ud)
	if err != nil {
		result(func() { rec.playErr = fmt.Errorf("user_data of %s: %w", rec.name, err) })
		return
	}
	if boot.env[bootstrap.EnvRunnerName] != rec.name {
		result(func() {
			rec.playErr = fmt.Errorf("user_data of %s names runner %q", rec.name, boot.env[bootstrap.EnvRunnerName])
		})
		return
	}
	var jit string
	err = sim.Play(ctx, boot.env, sim.PlayOptions{Runner: func(ctx context.Context, cfg string, hooks sim.Hooks) (int, error) {
		jit = cfg
		return cw.runner(ctx, cfg, hooks)
	}})
	reuse := 0
	if err == nil {
		reuse = reuseToken(ctx, boot.env)
	}
	secrets := map[string]string{}
	maps.Copy(secrets, cw.secrets)
	if jit != "" {
		secrets["the runner's JIT config"] = jit
	}
	var leaks []string
	for what, v := range secrets {
		if strings.Contains(ud, v) || strings.Contains(boot.cloudConfig, v) || strings.Contains(boot.script, v) {
			leaks = append(leaks, what)
		}
	}
	slices.Sort(leaks)
	result(func() {
		rec.played, rec.playErr, rec.jit, rec.reuse = true, err, jit, reuse
		rec.leak = strings.Join(leaks, ", ")
	})
}

// bootUserData is a server's user-data taken apart.
type bootUserData struct {
	cloudConfig string            // the #cloud-config document
	script      string            // the bootstrap script it writes and runs
	env         map[string]string // what sim.Play needs, from the script's assignments
}

// assignRE matches the script's shell single-quoted assignments (a quote inside a
// value is written as: close the quotes, an escaped quote, reopen them).
var assignRE = regexp.MustCompile(`(?m)^(SPAWNER_URL|SPAWNER_RUNNER_NAME|SPAWNER_BOOTSTRAP_TOKEN)='((?:[^']|'\\'')*)'$`)

// parseUserData undoes what the consumer and the backend did: Nova's base64, the
// #cloud-config with the script as a base64 write_files entry, the script's quoting.
func parseUserData(ud string) (bootUserData, error) {
	var b bootUserData
	raw, err := base64.StdEncoding.DecodeString(ud)
	if err != nil {
		return b, fmt.Errorf("not base64: %w", err)
	}
	b.cloudConfig = string(raw)
	if !strings.HasPrefix(b.cloudConfig, "#cloud-config\n") {
		return b, errors.New("not a #cloud-config document")
	}
	var cc struct {
		WriteFiles []struct {
			Path, Encoding, Content string
		} `yaml:"write_files"`
		RunCmd []any `yaml:"runcmd"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&cc); err != nil {
		return b, fmt.Errorf("cloud-config: %w", err)
	}
	i := slices.IndexFunc(cc.WriteFiles, func(f struct{ Path, Encoding, Content string }) bool {
		return f.Path == "/run/spawner-bootstrap.sh"
	})
	if i < 0 || cc.WriteFiles[i].Encoding != "b64" || len(cc.RunCmd) == 0 {
		return b, errors.New("cloud-config writes no base64 /run/spawner-bootstrap.sh, or runs nothing")
	}
	script, err := base64.StdEncoding.DecodeString(cc.WriteFiles[i].Content)
	if err != nil {
		return b, fmt.Errorf("bootstrap script not base64: %w", err)
	}
	b.script = string(script)
	vars := map[string]string{}
	for _, m := range assignRE.FindAllStringSubmatch(b.script, -1) {
		if _, dup := vars[m[1]]; !dup {
			vars[m[1]] = strings.ReplaceAll(m[2], `'\''`, `'`)
		}
	}
	b.env = map[string]string{
		bootstrap.EnvURL:        vars["SPAWNER_URL"],
		bootstrap.EnvToken:      vars["SPAWNER_BOOTSTRAP_TOKEN"],
		bootstrap.EnvRunnerName: vars["SPAWNER_RUNNER_NAME"],
	}
	for k, v := range b.env {
		if v == "" {
			return b, fmt.Errorf("bootstrap script sets no %s", k)
		}
	}
	return b, nil
}

// reuseToken asks for the runner config a second time with the user-data's token
// and returns the HTTP status: a one-time token must be refused (4xx) once used.
func reuseToken(ctx context.Context, env map[string]string) int {
	url := strings.TrimRight(env[bootstrap.EnvURL], "/") + "/bootstrap/v1/runners/" + env[bootstrap.EnvRunnerName] + "/config"
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("{}"))
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+env[bootstrap.EnvToken])
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// watchView is a copy of what the watcher saw.
type watchView struct {
	servers                []osServer // in the order first seen
	maxExisting, maxActive map[string]int
	peak                   map[string][]string
	polls, pollErrors      int
	lastErr                error
}

func (cw *cloudWatch) view() watchView {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	v := watchView{
		maxExisting: maps.Clone(cw.maxExisting), peak: maps.Clone(cw.peak), maxActive: maps.Clone(cw.maxActive),
		polls: cw.polls, pollErrors: cw.pollErrors, lastErr: cw.lastErr,
	}
	for _, s := range cw.servers {
		v.servers = append(v.servers, *s)
	}
	slices.SortFunc(v.servers, func(a, b osServer) int { return a.firstSeen.Compare(b.firstSeen) })
	return v
}

// activeFor returns when the first server made for job was first seen ACTIVE.
func (cw *cloudWatch) activeFor(job int64) (time.Time, bool) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	var first time.Time
	for _, s := range cw.servers {
		if s.job == job && !s.active.IsZero() && (first.IsZero() || s.active.Before(first)) {
			first = s.active
		}
	}
	return first, !first.IsZero()
}

// percentile is the nearest-rank percentile, as BenchmarkRealCreateToActive reports.
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	i := min(max(int(p*float64(len(s))+0.5)-1, 0), len(s)-1)
	return s[i]
}

// probeIDs resolves the test image and network to ids through Glance and Neutron
// (Nova takes ids only), as the backend does: the newest active image of the name.
func probeIDs(t testing.TB, compute *gophercloud.ServiceClient) (imageID, netID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, eo, _, err := clouds.Parse(clouds.WithCloudName(osAdminCloud), clouds.WithLocations(osCloudsFile()))
	if err != nil {
		t.Fatal(err)
	}
	imageClient, err := gcopenstack.NewImageV2(compute.ProviderClient, eo)
	if err != nil {
		t.Fatal(err)
	}
	pages, err := images.List(imageClient, images.ListOpts{Name: osImage, Status: images.ImageStatusActive, Sort: "created_at:desc"}).AllPages(ctx)
	if err != nil {
		t.Fatalf("list images: %v", err)
	}
	imgs, err := images.ExtractImages(pages)
	if err != nil || len(imgs) == 0 {
		t.Fatalf("no active image %s (%v)", osImage, err)
	}
	netClient, err := gcopenstack.NewNetworkV2(compute.ProviderClient, eo)
	if err != nil {
		t.Fatal(err)
	}
	pages, err = networks.List(netClient, networks.ListOpts{Name: osNetwork}).AllPages(ctx)
	if err != nil {
		t.Fatalf("list networks: %v", err)
	}
	nets, err := networks.ExtractNetworks(pages)
	if err != nil || len(nets) == 0 {
		t.Fatalf("no network %s (%v)", osNetwork, err)
	}
	return imgs[0].ID, nets[0].ID
}
