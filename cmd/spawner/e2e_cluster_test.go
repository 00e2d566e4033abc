package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

// balancer is a tiny round-robin reverse proxy standing for the load balancer in front
// of webhook replicas (and of the bootstrap endpoints): a backend that does not answer
// is skipped, as a health-checked load balancer would.
type balancer struct {
	mu       sync.Mutex
	backends []*url.URL
	next     atomic.Uint64
}

func newBalancer(t *testing.T) (*balancer, string) {
	b := &balancer{}
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	return b, srv.URL
}

func (b *balancer) add(raw string) {
	u, _ := url.Parse(raw)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = append(b.backends, u)
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	list := append([]*url.URL(nil), b.backends...)
	b.mu.Unlock()
	start := int(b.next.Add(1))
	for i := range list {
		target := list[(start+i)%len(list)]
		failed := false
		p := httputil.NewSingleHostReverseProxy(target)
		p.ErrorHandler = func(http.ResponseWriter, *http.Request, error) { failed = true }
		rec := httptest.NewRecorder()
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(strings.NewReader(string(body)))
		p.ServeHTTP(rec, r2)
		if failed {
			continue // connection refused: a dead replica
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	http.Error(w, "no backend answered", http.StatusBadGateway)
}

// TestClusterSurvivesFailures is issue 8's check: a 3-node NATS cluster (real
// servers, in this process, on loopback); the roles split into separate processes —
// 2 webhook behind a load balancer, 3 consumer, 2 janitor —; the fake GitHub sends
// 2,000 jobs; meanwhile one NATS node is killed and later restarted, one consumer and
// the active janitor are killed. Every webhook that got a 2xx leads to a job that ran,
// no job is lost, no instance is left, capacity is never exceeded.
func TestClusterSurvivesFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run")
	}
	const jobs = 2000
	cluster := queuetest.StartCluster(t, 3)
	w := newE2EWorld(t, fakegithub.Options{JobDuration: 50 * time.Millisecond, Webhooks: fakegithub.WebhookOptions{Workers: 8}})
	webLB, webURL := newBalancer(t)
	bootLB, bootURL := newBalancer(t)
	flavors := []e2eFlavor{{"small", "small", 25}, {"large", "large", 15}}
	dir := t.TempDir()
	var fl strings.Builder
	for _, f := range flavors {
		fmt.Fprintf(&fl, "  - name: %s\n    labels: [%s]\n    max_runners: %d\n    backend: sim\n    sim: {url: %q}\n    runner: {idle_ttl: 2s, boot_timeout: 30s}\n", f.name, f.label, f.max, w.cloudURL)
	}
	cfg := writeFile(t, dir, "spawner.yaml", fmt.Sprintf(`state_dir: %s
log: {level: info, format: text}
github: {url: %q, path: octo-org, token: ghp_e2e, rate_per_hour: 1000000, secondary_points_per_minute: 0, hook: {kind: org, id: 1}}
nats: {url: %q}
webhook: {secrets: [%q]}
bootstrap: {url: %q}
consumer: {workers: 6, ack_wait: 5s, capacity_retry: 1s, capacity_wait: 2s}
janitor: {interval: 1s, sweep_interval: 2s}
routing: {default_flavor: small}
flavors:
%s`, filepath.Join(dir, "state"), w.gh.URL(), cluster.URL(), e2eSecret, bootURL, fl.String()))

	for i := range 2 {
		addr := freeAddr(t)
		startProc(t, nil, "webhook", "--config", cfg, "--webhook-listen", addr)
		waitReady(t, "http://"+addr, 60*time.Second)
		webLB.add("http://" + addr)
		t.Logf("webhook %d on %s", i, addr)
	}
	var consumers []*proc
	for range 3 {
		addr := freeAddr(t)
		consumers = append(consumers, startProc(t, nil, "consumer", "--config", cfg, "--bootstrap-listen", addr))
		bootLB.add("http://" + addr)
	}
	var janitors []*proc
	for range 2 {
		janitors = append(janitors, startProc(t, nil, "janitor", "--config", cfg))
	}
	w.gh.SetWebhookTarget(webURL+"/webhook", e2eSecret)

	start := time.Now()
	want := map[int64]string{}
	for i := range jobs {
		f := flavors[i%2]
		j := w.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", f.label}})
		want[j.ID] = f.name
		switch i {
		case 300:
			cluster.Kill(0)
			t.Logf("killed NATS node 0 after %d jobs", i)
		case 600:
			consumers[0].kill()
			t.Logf("killed consumer 0 (SIGKILL) after %d jobs", i)
		case 900:
			if p := activeJanitor(t, cfg, janitors); p != nil {
				p.kill()
				t.Logf("killed the active janitor (SIGKILL) after %d jobs", i)
			} else {
				t.Error("no active janitor found")
			}
		case 1300:
			cluster.Restart(0)
			t.Logf("restarted NATS node 0 after %d jobs", i)
		}
		time.Sleep(4 * time.Millisecond)
	}
	w.waitAllCompleted(t, cfg, 6*time.Minute)
	elapsed := time.Since(start)

	ok2xx, failedDeliveries, ranOK := 0, 0, 0
	firstOK := map[int64]bool{}
	for _, d := range w.gh.Deliveries() {
		if d.Action != "queued" {
			continue
		}
		if d.StatusCode/100 == 2 {
			firstOK[d.JobID] = true
			ok2xx++
		} else if d.Done {
			failedDeliveries++
		}
	}
	for _, j := range w.gh.Jobs() {
		if j.Conclusion == "success" && strings.Contains(j.RunnerName, "-"+want[j.ID]+"-") {
			ranOK++
		} else if firstOK[j.ID] {
			t.Errorf("job %d (%s) got a 2xx but %s on %q", j.ID, want[j.ID], j.Conclusion, j.RunnerName)
		}
	}
	stats := w.cloud.Stats()
	for _, f := range flavors {
		if stats.MaxLive[f.name] > f.max {
			t.Errorf("flavor %s: %d instances at once, max_runners %d: %v", f.name, stats.MaxLive[f.name], f.max, stats.PeakNames[f.name])
		}
	}
	eventually(t, time.Minute, func() error {
		if n := len(w.cloud.All()); n > 0 {
			return fmt.Errorf("%d instances left", n)
		}
		return nil
	})
	t.Logf("%d jobs in %s through a 3-node NATS cluster with a node, a consumer and the active janitor killed: "+
		"%d queued deliveries answered 2xx, %d failed (redelivered by the sweeper); %d of %d jobs ran on their flavor; "+
		"0 jobs lost; %d instances created, max at once %v, 0 left",
		jobs, elapsed.Round(time.Millisecond), ok2xx, failedDeliveries, ranOK, jobs, stats.Created, stats.MaxLive)
	if ranOK != jobs {
		t.Errorf("%d of %d jobs ran", ranOK, jobs)
	}
}

// activeJanitor finds the janitor process holding the lease (its id ends in -<pid>).
func activeJanitor(t *testing.T, cfg string, janitors []*proc) *proc {
	var active string
	eventually(t, 30*time.Second, func() error {
		out, errOut, code := runCmdSplit(t, nil, "status", "--config", cfg, "--json")
		if code != 0 {
			return fmt.Errorf("status: %s", errOut)
		}
		var st struct{ Janitor struct{ Active string } }
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		if st.Janitor.Active == "" {
			return fmt.Errorf("no active janitor yet")
		}
		active = st.Janitor.Active
		return nil
	})
	for _, p := range janitors {
		if strings.HasSuffix(active, "-"+strconv.Itoa(p.cmd.Process.Pid)) {
			return p
		}
	}
	return nil
}

// TestRollingRestartOfConsumers restarts every consumer process in turn (SIGTERM,
// then a new one) during a burst: no job is lost.
func TestRollingRestartOfConsumers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run")
	}
	w := newE2EWorld(t, fakegithub.Options{JobDuration: 100 * time.Millisecond})
	flavors := []e2eFlavor{{"small", "small", 10}}
	dir := t.TempDir()
	cfg, webhookURL, bootAddr := w.config(t, dir, flavors, "")
	startProc(t, nil, "serve", "--config", cfg, "--roles", "webhook,janitor")
	waitReady(t, strings.TrimSuffix(webhookURL, "/webhook"), 30*time.Second)
	var consumers []*proc
	// The serve above runs no consumer, hence no bootstrap endpoint: instances reach
	// the consumers' endpoints through a balancer, as behind a load balancer.
	lb, lbURL := newBalancer(t)
	cfg2 := strings.Replace(readFile(t, cfg), `url: "http://`+bootAddr+`"`, `url: "`+lbURL+`"`, 1)
	cfg = writeFile(t, dir, "spawner-consumers.yaml", cfg2)
	startConsumer := func() *proc {
		addr := freeAddr(t)
		p := startProc(t, nil, "consumer", "--config", cfg, "--bootstrap-listen", addr)
		lb.add("http://" + addr)
		return p
	}
	for range 3 {
		consumers = append(consumers, startConsumer())
	}
	w.gh.SetWebhookTarget(webhookURL, e2eSecret)
	const jobs = 400
	restarted := 0
	for i := range jobs {
		w.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "small"}})
		if i > 0 && i%100 == 0 && restarted < len(consumers) {
			old := consumers[restarted]
			if err := old.stop(30 * time.Second); err != nil {
				t.Logf("consumer %d exited: %v", restarted, err)
			}
			consumers[restarted] = startConsumer()
			t.Logf("restarted consumer %d (SIGTERM, then a new process) after %d jobs", restarted, i)
			restarted++
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.waitAllCompleted(t, cfg, 4*time.Minute)
	ok := 0
	for _, j := range w.gh.Jobs() {
		if j.Conclusion == "success" {
			ok++
		}
	}
	if ok != jobs {
		t.Errorf("%d of %d jobs succeeded", ok, jobs)
	}
	t.Logf("%d jobs through a rolling restart of all 3 consumers: %d ran, 0 lost", jobs, ok)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := io.ReadAll(mustOpen(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
