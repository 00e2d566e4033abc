package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/backends/lxd"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/dev/sandbox"
	"github.com/runner-spawner/runner-spawner/internal/realservice"
	"github.com/runner-spawner/runner-spawner/internal/testcert"
)

// requireLXD returns a client of the local LXD daemon, or skips (fails when
// SPAWNER_REQUIRE_LXD=1, as in CI) with the reason.
func requireLXD(t *testing.T) (*lxd.Client, string) {
	t.Helper()
	c, err := lxd.NewClient(lxd.ClientOptions{})
	if err != nil {
		realservice.LXD.Unavailable(t, "no LXD client: %v", err)
	}
	t.Cleanup(c.Close)
	// A daemon that is not there fails at once (no socket); only a stalled one waits,
	// and a daemon busy with other suites' containers took more than 5 s to answer in CI.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if _, err := c.Server(ctx); err != nil {
		realservice.LXD.Unavailable(t, "no LXD daemon answers at %s: %v", c.Endpoint(), err)
	}
	if ok, err := c.HasImage(ctx, "tiny"); !ok || err != nil {
		realservice.LXD.Unavailable(t, "LXD has no image tiny (%v)", err)
	}
	bridge, err := sandbox.BridgeAddress("lxdbr0")
	if err != nil {
		realservice.LXD.Unavailable(t, "%v", err)
	}
	return c, bridge
}

// lxdRunnerProfile makes a profile that mounts the spawner binary read-only at
// /opt/spawner, as an operator's image would carry the Actions runner: every
// container runs `/opt/spawner/spawner dev runner` against the fake GitHub.
func lxdRunnerProfile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(spawnerBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "spawner"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	name := "spawner-e2e-" + randomHex(3)
	for _, args := range [][]string{
		{"profile", "create", name},
		{"profile", "device", "add", name, "spawnerbin", "disk", "source=" + dir, "path=/opt/spawner", "readonly=true"},
	} {
		if out, err := exec.Command("lxc", args...).CombinedOutput(); err != nil {
			t.Fatalf("lxc %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("lxc", "profile", "delete", name).Run() })
	return name
}

type lxdE2E struct {
	gh       *fakegithub.Server
	cfg      string
	webhook  string
	serve    *proc
	flavors  []e2eFlavor
	backends map[string]backends.Backend
	maxLive  map[string]int
	mu       sync.Mutex
}

func startLXDE2E(t *testing.T, flavors []e2eFlavor, jobDuration time.Duration) *lxdE2E {
	t.Helper()
	return startLXDE2EWith(t, flavors, jobDuration, false)
}

// lxdOverHTTPS is the config's lxd section for reaching the local daemon the way a
// remote one is reached: HTTPS (the loopback address scripts/lxd-setup.sh sets), a
// client certificate the daemon trusts until the test ends, and the daemon's own
// certificate pinned.
func lxdOverHTTPS(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("lxc", "config", "get", "core.https_address").Output()
	addr := strings.TrimSpace(string(out))
	if err != nil || addr == "" {
		realservice.LXD.Unavailable(t, "LXD does not listen on HTTPS (core.https_address: %q, %v)", addr, err)
	}
	const serverCert = "/var/lib/lxd/server.crt" // Debian's package keeps it there
	if _, err := os.Stat(serverCert); err != nil {
		realservice.LXD.Unavailable(t, "no LXD server certificate: %v", err)
	}
	certPEM, keyPEM := testcert.SelfSigned(t, "spawner-e2e")
	fingerprint := testcert.Fingerprint(t, certPEM)
	certFile := writeFile(t, dir, "lxd-client.crt", string(certPEM))
	keyFile := writeFile(t, dir, "lxd-client.key", string(keyPEM))
	if out, err := exec.Command("lxc", "config", "trust", "add", certFile).CombinedOutput(); err != nil {
		t.Fatalf("lxc config trust add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("lxc", "config", "trust", "remove", fingerprint).CombinedOutput(); err != nil {
			t.Errorf("lxc config trust remove: %v\n%s", err, out)
		}
	})
	return fmt.Sprintf("lxd: {url: %q, client_cert_file: %s, client_key_file: %s, server_cert_file: %s}\n",
		"https://"+addr, certFile, keyFile, serverCert)
}

// startLXDE2EWith starts the spawner binary on real LXD; with overHTTPS it reaches the
// daemon as a remote server (the test's own checks still use the socket).
func startLXDE2EWith(t *testing.T, flavors []e2eFlavor, jobDuration time.Duration, overHTTPS bool) *lxdE2E {
	t.Helper()
	return startLXDE2EOpts(t, lxdE2EOptions{flavors: flavors, jobDuration: jobDuration, overHTTPS: overHTTPS})
}

// lxdE2EOptions shape a spawner on real LXD (startLXDE2EOpts).
type lxdE2EOptions struct {
	flavors     []e2eFlavor
	jobDuration time.Duration
	overHTTPS   bool
	// flavorExtra is YAML added to every flavor, one key per line, unindented.
	flavorExtra string
	// webhookWorkers is the fake GitHub's delivery concurrency (0: its default).
	webhookWorkers int
	// profile is the runner profile (lxdRunnerProfile) to use; empty: a new one.
	profile string
	// defaultJanitor leaves the janitor's interval at the product's default (1m)
	// rather than the tests' 2 s, which reap faster but list every instance 30 times
	// as often: the benchmark's "defaults" rows run as operators do.
	defaultJanitor bool
	// vetConfig, when set, sees the written config before serve starts (it may skip
	// or fail the test).
	vetConfig func(t *testing.T, cfg string)
	// lxdKeys is the config's top-level lxd section's keys in flow style
	// ("max_concurrent_operations: 2"); not with overHTTPS, which writes that section.
	lxdKeys string
	// flavorLXD is added to every flavor's lxd section (", ephemeral: false").
	flavorLXD string
	// consumerKeys is the config's consumer section's keys in flow style
	// ("workers: 8"); empty: no consumer section.
	consumerKeys string
}

// startLXDE2EOpts starts the spawner binary on real LXD as o says.
func startLXDE2EOpts(t *testing.T, o lxdE2EOptions) *lxdE2E {
	t.Helper()
	tb := newLXDTestbed(t, "e2e", fakegithub.Options{JobDuration: o.jobDuration, Webhooks: fakegithub.WebhookOptions{Workers: o.webhookWorkers}}, o.profile)
	lxdSection := ""
	switch {
	case o.overHTTPS && o.lxdKeys != "":
		t.Fatal("lxdE2EOptions: lxdKeys and overHTTPS both write the lxd section")
	case o.overHTTPS:
		lxdSection = lxdOverHTTPS(t, tb.dir)
	case o.lxdKeys != "":
		lxdSection = "lxd: {" + o.lxdKeys + "}\n"
	}
	// roleSections are the janitor's and the consumer's sections, when not default.
	roleSections := "janitor: {interval: 2s}\n"
	if o.defaultJanitor {
		roleSections = ""
	}
	if o.consumerKeys != "" {
		roleSections += "consumer: {" + o.consumerKeys + "}\n"
	}
	cfg := writeFile(t, tb.dir, "spawner.yaml", fmt.Sprintf(`state_dir: %s
deployment_id: %s
log: {level: info, format: text}
%snats: {listen: %s}
webhook: {listen: %s, secrets: [%q]}
bootstrap: {listen: %s}
%srouting: {default_flavor: %s}
%sflavors:
%s`, filepath.Join(tb.dir, "state"), tb.deployment, tb.githubYAML(), tb.nats, tb.web, e2eSecret, tb.boot, roleSections, o.flavors[0].name, lxdSection, tb.flavorsYAML(o.flavors, o.flavorLXD, o.flavorExtra)))
	if o.vetConfig != nil {
		o.vetConfig(t, cfg)
	}
	gh, web := tb.gh, tb.web
	e := &lxdE2E{gh: gh, cfg: cfg, webhook: "http://" + web + "/webhook", flavors: o.flavors, backends: map[string]backends.Backend{}, maxLive: map[string]int{}}
	tinyBackends(t, tb.client, tb.deployment, o.flavors, e.backends)
	e.serve = startProc(t, nil, "serve", "--config", cfg)
	waitReady(t, "http://"+web, 30*time.Second)
	gh.SetWebhookTarget(e.webhook, e2eSecret)
	return e
}

// tinyBackends fills into one LXD backend per flavor on the tiny image, and deletes
// whatever containers they have when the test ends, whatever happened.
func tinyBackends(t *testing.T, client *lxd.Client, deployment string, flavors []e2eFlavor, into map[string]backends.Backend) {
	t.Helper()
	for _, f := range flavors {
		b, err := lxd.New(client, lxd.Options{DeploymentID: deployment, Flavor: f.name, Image: "tiny"})
		if err != nil {
			t.Fatal(err)
		}
		into[f.name] = b
	}
	t.Cleanup(func() {
		for _, b := range into {
			list, err := b.List(context.Background())
			if err != nil {
				t.Logf("cleanup: list containers: %v", err)
			}
			for _, in := range list {
				if err := b.Delete(context.Background(), in.Name); err != nil {
					t.Logf("cleanup: delete %s: %v", in.Name, err)
				}
			}
		}
	})
}

// watch samples our containers per flavor until ctx ends, recording the most that
// existed at once.
func (e *lxdE2E) watch(ctx context.Context) {
	for ctx.Err() == nil {
		for name, b := range e.backends {
			list, err := b.List(ctx)
			if err != nil {
				continue
			}
			e.mu.Lock()
			e.maxLive[name] = max(e.maxLive[name], len(list))
			e.mu.Unlock()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *lxdE2E) noContainersLeft(t *testing.T, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		for name, b := range e.backends {
			list, err := b.List(t.Context())
			if err != nil {
				return err
			}
			if len(list) > 0 {
				return fmt.Errorf("flavor %s: %d containers left (%s %s)", name, len(list), list[0].Name, list[0].State)
			}
		}
		return nil
	})
}

// TestLXDEndToEnd is issue 5's end-to-end check on real containers: jobs arrive by
// webhook; each runner container boots the tiny image, fetches its config from the
// spawner over the bridge, runs the runner program against the fake GitHub, which
// runs the job; containers are deleted afterwards. 20 jobs over 2 flavors. Its
// containers are not ephemeral, so that the spawner's own stop and delete of a
// finished runner's container stays tested end to end; the other LXD tests run on
// the default, ephemeral containers that LXD deletes.
func TestLXDEndToEnd(t *testing.T) {
	e := startLXDE2EOpts(t, lxdE2EOptions{flavors: []e2eFlavor{{"small", "small", 3}, {"large", "large", 2}}, jobDuration: time.Second, flavorLXD: ", ephemeral: false"})
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { e.watch(ctx) })
	want := map[int64]string{}
	start := time.Now()
	for i := range 20 {
		f := e.flavors[i%2]
		j := e.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux", f.label}})
		want[j.ID] = f.name
	}
	eventually(t, 3*time.Minute, func() error {
		n := 0
		for _, j := range e.gh.Jobs() {
			if j.Status != "completed" {
				n++
			}
		}
		if n > 0 {
			return fmt.Errorf("%d of 20 jobs not completed", n)
		}
		return nil
	})
	elapsed := time.Since(start)
	for _, j := range e.gh.Jobs() {
		if j.Conclusion != "success" || !strings.Contains(j.RunnerName, "-"+want[j.ID]+"-") {
			t.Errorf("job %d (%s): %s on %q", j.ID, want[j.ID], j.Conclusion, j.RunnerName)
		}
	}
	e.noContainersLeft(t, time.Minute)
	stop()
	wg.Wait()
	for _, f := range e.flavors {
		if e.maxLive[f.name] > f.max {
			t.Errorf("flavor %s: %d containers at once, max_runners %d", f.name, e.maxLive[f.name], f.max)
		}
	}
	t.Logf("20 jobs on real LXD containers in %s; most containers at once %v; none left", elapsed.Round(time.Millisecond), e.maxLive)
}

// TestLXDEndToEndOverHTTPS runs jobs with the spawner reaching LXD the way it reaches
// a remote server: lxd.url over HTTPS, lxd.client_cert_file and client_key_file (a
// certificate the daemon trusts), lxd.server_cert_file pinned.
func TestLXDEndToEndOverHTTPS(t *testing.T) {
	e := startLXDE2EWith(t, []e2eFlavor{{"small", "small", 2}}, 500*time.Millisecond, true)
	for range 4 {
		e.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux", "small"}})
	}
	start := time.Now()
	eventually(t, 2*time.Minute, func() error {
		for _, j := range e.gh.Jobs() {
			if j.Status != "completed" {
				return fmt.Errorf("job %d %s", j.ID, j.Status)
			}
		}
		return nil
	})
	for _, j := range e.gh.Jobs() {
		if j.Conclusion != "success" || !strings.Contains(j.RunnerName, "-small-") {
			t.Errorf("job %d: %s on %q", j.ID, j.Conclusion, j.RunnerName)
		}
	}
	e.noContainersLeft(t, time.Minute)
	t.Logf("4 jobs on real LXD over HTTPS with a client certificate in %s; none left", time.Since(start).Round(time.Millisecond))
}

// TestLXDLaunchLatency is issue 5's benchmark (run with SPAWNER_BENCH=1): (a) raw LXD
// create+start of the tiny image through the REST API, also until a process inside
// runs (its user-data script calls back), and (b) from the webhook's 2xx to the
// runner running the job inside its container, one job at a time, p50/p99, and b/a.
func TestLXDLaunchLatency(t *testing.T) {
	if os.Getenv("SPAWNER_BENCH") == "" {
		t.Skip("benchmark: set SPAWNER_BENCH=1")
	}
	n := 50
	client, bridge := requireLXD(t)

	// (a) raw: create+start, and until the user-data script calls back.
	hits := make(chan time.Time, 1)
	ln, err := net.Listen("tcp", net.JoinHostPort(bridge, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		select {
		case hits <- time.Now():
		default:
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	var rawStart, rawInside, spawned []time.Duration
	rawLaunch := func(i int) {
		name := fmt.Sprintf("raw-%s-%d", randomHex(2), i)
		script := fmt.Sprintf("#!/bin/sh\nwhile ! wget -q -O /dev/null http://%s/; do sleep 0.05; done\n", ln.Addr())
		t0 := time.Now()
		err := client.CreateInstance(t.Context(), lxd.InstancesPost{Name: name, Source: lxd.InstanceSource{Type: "image", Alias: "tiny"},
			Config: map[string]string{"cloud-init.user-data": script}})
		if err == nil {
			err = client.SetInstanceState(t.Context(), name, lxd.InstanceStatePut{Action: "start", Timeout: -1})
		}
		started := time.Since(t0)
		if err != nil {
			t.Fatalf("raw launch: %v", err)
		}
		select {
		case at := <-hits:
			rawInside = append(rawInside, at.Sub(t0))
		case <-time.After(30 * time.Second):
			t.Fatalf("raw launch %s: no callback", name)
		}
		rawStart = append(rawStart, started)
		_ = client.SetInstanceState(context.Background(), name, lxd.InstanceStatePut{Action: "stop", Force: true, Timeout: -1})
		_ = client.DeleteInstance(context.Background(), name)
	}

	// (b) spawner: webhook 2xx → the job running in its container, one at a time,
	// alternating with raw launches so both see the same machine.
	e := startLXDE2E(t, []e2eFlavor{{"small", "small", 4}}, 200*time.Millisecond)
	for i := range n {
		if i%2 == 0 {
			rawLaunch(i)
		}
		j := e.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "small"}})
		var ok time.Time
		eventually(t, time.Minute, func() error {
			for _, d := range e.gh.Deliveries() {
				if d.JobID == j.ID && d.Action == "queued" && d.StatusCode/100 == 2 {
					ok = d.DeliveredAt.Add(d.Duration)
					break
				}
			}
			got, _ := e.gh.Job(j.ID)
			if ok.IsZero() || got.StartedAt.IsZero() {
				return fmt.Errorf("job %d not running yet", j.ID)
			}
			spawned = append(spawned, got.StartedAt.Sub(ok))
			return nil
		})
		time.Sleep(300 * time.Millisecond) // let its container go before the next launch
	}
	e.noContainersLeft(t, time.Minute)
	// Where b goes, from the runner records: create call → instance started → booted
	// (script's first call) → config handed out (runner starting).
	if out, _, code := runCmdSplit(t, nil, "runners", "list", "--json", "--config", e.cfg); code == 0 {
		var rs []struct {
			CreatedAt time.Time `json:"created_at"`
			BootingAt time.Time `json:"booting_at"`
			BootedAt  time.Time `json:"booted_at"`
			IdleAt    time.Time `json:"idle_at"`
			BusyAt    time.Time `json:"busy_at"`
		}
		if json.Unmarshal([]byte(out), &rs) == nil {
			var create, boot, config, busy []time.Duration
			for _, r := range rs {
				if r.BootingAt.IsZero() || r.BootedAt.IsZero() || r.IdleAt.IsZero() || r.BusyAt.IsZero() {
					continue
				}
				create = append(create, r.BootingAt.Sub(r.CreatedAt))
				boot = append(boot, r.BootedAt.Sub(r.BootingAt))
				config = append(config, r.IdleAt.Sub(r.BootedAt))
				busy = append(busy, r.BusyAt.Sub(r.IdleAt))
			}
			q := func(d []time.Duration) time.Duration { return latencies(d).p(.5) }
			t.Logf("breakdown p50 over %d runners: record→create+start returned %s; → script's first call (booted) %s; → config handed out %s; → job started (runner up, connected, pre-job hook) %s",
				len(create), q(create), q(boot), q(config), q(busy))
		}
	}
	p := func(d []time.Duration, q float64) time.Duration {
		slices.Sort(d)
		return d[min(len(d)-1, int(q*float64(len(d))))]
	}
	a1, a2, b := p(rawStart, .5), p(rawInside, .5), p(spawned, .5)
	t.Logf("(a) raw LXD create+start of tiny (REST, %d launches, alternating with the jobs): p50 %s p99 %s", len(rawStart), a1.Round(time.Millisecond), p(rawStart, .99).Round(time.Millisecond))
	t.Logf("(a') raw create+start until a process inside runs (user-data calls back): p50 %s p99 %s", a2.Round(time.Millisecond), p(rawInside, .99).Round(time.Millisecond))
	t.Logf("(b) webhook 2xx → runner running the job in its container (%d jobs, one at a time): p50 %s p99 %s", n, b.Round(time.Millisecond), p(spawned, .99).Round(time.Millisecond))
	t.Logf("ratio b/a p50 = %.2f; b/a' p50 = %.2f", float64(b)/float64(a1), float64(b)/float64(a2))
}

// randomHex is n random bytes in hex: unique names for what a test creates in LXD.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}
