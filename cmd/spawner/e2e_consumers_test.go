package main

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends/sim"
	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/consumer"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/janitor"
	"github.com/runner-spawner/runner-spawner/queue"
)

const e2eSecret = "e2e-webhook-secret-0123456789"

// e2eWorld is what the test process plays: GitHub (the fake, sending real signed
// webhooks and running the runners) and the cloud (simulated instances shared by every
// spawner process over HTTP, so instances outlive a killed consumer).
type e2eWorld struct {
	gh       *fakegithub.Server
	cloud    *sim.Cloud
	cloudURL string
}

func newE2EWorld(t *testing.T, ghOpts fakegithub.Options) *e2eWorld {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	ghOpts.Token = "ghp_e2e"
	if ghOpts.RateLimit == 0 {
		ghOpts.RateLimit = 1_000_000
	}
	ghOpts.WebhookSecret = e2eSecret
	if ghOpts.RunnerLostAfter == 0 {
		ghOpts.RunnerLostAfter = 3 * time.Second
	}
	gh := fakegithub.NewServer(ghOpts)
	t.Cleanup(gh.Close)
	cloud := sim.NewCloud(sim.CloudOptions{Runner: fakerunner.SimRunner(logger)})
	t.Cleanup(cloud.Close)
	cs := httptest.NewServer(cloud.Handler())
	t.Cleanup(cs.Close)
	return &e2eWorld{gh: gh, cloud: cloud, cloudURL: cs.URL}
}

type e2eFlavor struct {
	name, label string
	max         int
}

// config writes a spawner config whose processes share one NATS (the serve's
// embedded server, which requires the password every process presents), one
// bootstrap endpoint (the serve's) and the world's cloud.
func (w *e2eWorld) config(t *testing.T, dir string, flavors []e2eFlavor, extra string) (path, webhookURL, bootstrapAddr string) {
	t.Helper()
	web, nats, boot := freeAddr(t), freeAddr(t), freeAddr(t)
	var fl strings.Builder
	for _, f := range flavors {
		fmt.Fprintf(&fl, "  - name: %s\n    labels: [%s]\n    max_runners: %d\n    backend: sim\n    sim: {url: %q, boot_jitter: 200ms}\n    runner: {idle_ttl: 2s, boot_timeout: 20s}\n", f.name, f.label, f.max, w.cloudURL)
	}
	cfg := fmt.Sprintf(`state_dir: %s
log: {level: info, format: text}
github: {url: %q, path: octo-org, token: ghp_e2e, rate_per_hour: 1000000, secondary_points_per_minute: 0}
nats: {listen: %s, user: spawner, password: %q}
webhook: {listen: %s, secrets: [%q]}
bootstrap: {listen: %s, url: "http://%s"}
consumer: {workers: 4, ack_wait: 5s, capacity_retry: 1s, capacity_wait: 2s, backoff_initial: 200ms, backoff_max: 2s}
janitor: {interval: 1s}
routing: {default_flavor: %s}
flavors:
%s%s`, filepath.Join(dir, "state"), w.gh.URL(), nats, natsTestPassword, web, e2eSecret, boot, boot, flavors[0].name, fl.String(), extra)
	return writeFile(t, dir, "spawner.yaml", cfg), "http://" + web + "/webhook", boot
}

// TestConsumersEndToEnd is issue 4's end-to-end check with the built binaries: the fake
// GitHub sends 300 jobs over two flavors, with duplicate, redelivered and out-of-order
// deliveries and some cancellations, into serve plus three separate consumer
// processes on the simulated backend; one consumer is killed with SIGKILL midway.
func TestConsumersEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run")
	}
	w := newE2EWorld(t, fakegithub.Options{
		JobDuration: 150 * time.Millisecond,
		Webhooks: fakegithub.WebhookOptions{Workers: 8, Faults: fakegithub.WebhookFaults{
			DuplicateRate: 0.1, RedeliverRate: 0.05, ReorderRate: 0.1, Seed: 42,
		}},
	})
	flavors := []e2eFlavor{{"small", "small", 8}, {"large", "large", 5}}
	dir := t.TempDir()
	cfg, webhookURL, _ := w.config(t, dir, flavors, "")
	serve := startProc(t, nil, "serve", "--config", cfg)
	waitReady(t, strings.TrimSuffix(webhookURL, "/webhook"), 30*time.Second)
	var consumers []*proc
	for range 3 {
		consumers = append(consumers, startProc(t, nil, "consumer", "--config", cfg, "--bootstrap-listen", "off"))
	}
	w.gh.SetWebhookTarget(webhookURL, e2eSecret)

	rng := rand.New(rand.NewPCG(1, 2))
	want := map[int64]string{}
	cancelled := map[int64]bool{}
	start := time.Now()
	for i := range 300 {
		f := flavors[i%2]
		j := w.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux", f.label}})
		want[j.ID] = f.name
		if rng.IntN(20) == 0 {
			_ = w.gh.CancelJob(j.ID)
			cancelled[j.ID] = true
		}
		if i == 120 {
			consumers[1].kill()
			t.Logf("killed consumer 1 (SIGKILL) after %d jobs", i)
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.waitAllCompleted(t, cfg, 3*time.Minute)
	elapsed := time.Since(start)

	ranOnOwnFlavor, success, cancels := 0, 0, 0
	for _, j := range w.gh.Jobs() {
		switch j.Conclusion {
		case "success":
			success++
			if strings.HasPrefix(j.RunnerName, "spawner-"+want[j.ID]+"-") {
				ranOnOwnFlavor++
			} else {
				t.Errorf("job %d (%s) ran on %q", j.ID, want[j.ID], j.RunnerName)
			}
		case "cancelled":
			cancels++
			if !cancelled[j.ID] {
				t.Errorf("job %d cancelled though nobody cancelled it", j.ID)
			}
		default:
			t.Errorf("job %d concluded %q", j.ID, j.Conclusion)
		}
	}
	stats := w.cloud.Stats()
	for _, f := range flavors {
		if stats.MaxLive[f.name] > f.max {
			t.Errorf("flavor %s: %d instances at once, max_runners %d", f.name, stats.MaxLive[f.name], f.max)
		}
	}
	sum := w.gh.Summary()
	ran := len(want) - len(cancelled)
	t.Logf("300 jobs in %s: %d succeeded on their flavor, %d cancelled; %d instances created; max live %v; GitHub calls %d = %.2f per job run: %v",
		elapsed.Round(time.Millisecond), ranOnOwnFlavor, cancels, stats.Created, stats.MaxLive, sum.CallsTotal, float64(sum.CallsTotal)/float64(ran), sum.Calls)
	if per := float64(sum.CallsTotal) / float64(ran); per > 2 {
		t.Errorf("%.2f GitHub calls per job, want at most 2", per)
	}

	// Nothing left: spares are reaped by the janitor after their idle TTL.
	eventually(t, 30*time.Second, func() error {
		if all := w.cloud.All(); len(all) > 0 {
			return fmt.Errorf("%d instances left, first %s (%s)", len(all), all[0].Name, all[0].State)
		}
		return nil
	})
	// A consumer killed in the middle of a create leaves a record in `creating` that
	// holds a slot until its create lease runs out and the janitor (two passes after
	// that, at interval 1s) hands it back or removes it; killed between claiming a slot
	// and writing the record, it leaves a slot without a record, which the janitor
	// frees once it is older than janitor.SlotGrace (CI hit that case and waited too
	// little).
	out := waitSettled(t, cfg, max(consumer.CreateLease, janitor.SlotGrace)+15*time.Second)
	t.Logf("status: %s", oneLine(out))
	_ = serve
}

// waitAllCompleted waits for every fake job to complete; on timeout it prints what
// the spawner's records say about the stuck ones.
func (w *e2eWorld) waitAllCompleted(t *testing.T, cfg string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		stuck := notCompleted(w.gh)
		if len(stuck) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d jobs not completed after %s", len(stuck), timeout)
			dumpRecords(t, cfg, stuck, w)
			t.FailNow()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dumpRecords(t *testing.T, cfgPath string, stuck []fakegithub.Job, w *e2eWorld) {
	dumpStuckJobs(t, cfgPath, stuck, w.gh, w.cloud.Exists)
}

// dumpStuckJobs logs, for up to 8 jobs that did not complete, what the spawner's
// records say of them and of their runners (exists: whether the runner's instance is
// there now), and every runner the fake GitHub has registered: what a post-mortem of
// a job that waited needs first.
func dumpStuckJobs(t *testing.T, cfgPath string, stuck []fakegithub.Job, gh *fakegithub.Server, exists func(name string) bool) {
	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Logf("dump: %v", err)
		return
	}
	n := cfg.NATS
	conn, err := queue.Connect(t.Context(), queue.Options{URL: "nats://" + n.Listen, User: n.User, Password: n.Password, Token: n.Token})
	if err != nil {
		t.Logf("dump: %v", err)
		return
	}
	defer conn.Close()
	eventually(t, 10*time.Second, func() error { return conn.Ready(t.Context()) })
	st, err := fleet.Open(t.Context(), conn, nil)
	if err != nil {
		t.Logf("dump: %v", err)
		return
	}
	for i, j := range stuck {
		if i >= 8 {
			break
		}
		rec, err := st.Job(t.Context(), j.ID)
		t.Logf("stuck job %d (fake: %s %v runner %q, created %s): record %+v %v", j.ID, j.Status, j.Labels, j.RunnerName, j.CreatedAt.Format(time.TimeOnly), rec, err)
		if rec != nil {
			for _, name := range rec.Runners {
				r, err := st.Runner(t.Context(), name)
				if r != nil {
					t.Logf("   runner %s: state %s for %d took %d spare %v creating_until %s attempts %d err %q exists %v", name, r.State, r.ForJob, r.TookJob, r.Spare, r.CreatingUntil.Format(time.TimeOnly), r.Attempts, r.LastError, exists(name))
				} else {
					t.Logf("   runner %s: %v", name, err)
				}
			}
		}
	}
	for _, r := range gh.Runners() {
		t.Logf("fake runner %+v", r)
	}
}

// notCompleted returns the fake's jobs that have not completed.
func notCompleted(gh *fakegithub.Server) []fakegithub.Job {
	var out []fakegithub.Job
	for _, j := range gh.Jobs() {
		if j.Status != "completed" {
			out = append(out, j)
		}
	}
	return out
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
