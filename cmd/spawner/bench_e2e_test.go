package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

// The end-to-end benchmarks run the built binaries and report numbers (t.Logf); they
// assert nothing about time. Run them with:
//
//	SPAWNER_BENCH=1 go test -run 'TestBench' -v ./cmd/spawner/

func requireBench(t *testing.T) {
	if os.Getenv("SPAWNER_BENCH") == "" {
		t.Skip("benchmark: set SPAWNER_BENCH=1")
	}
}

type latencies []time.Duration

func (l latencies) p(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))].Round(100 * time.Microsecond)
}

// spawnLatencies pairs each job's first 2xx queued delivery with the create call of
// its first runner (the simulated cloud records when each Create arrived).
func spawnLatencies(w *e2eWorld, flavorOf map[int64]string) (latencies, time.Time, time.Time) {
	okAt := map[int64]time.Time{}
	for _, d := range w.gh.Deliveries() {
		if d.Action == "queued" && d.StatusCode/100 == 2 {
			at := d.DeliveredAt.Add(d.Duration)
			if prev, ok := okAt[d.JobID]; !ok || at.Before(prev) {
				okAt[d.JobID] = at
			}
		}
	}
	calls := w.cloud.Stats().CreateCalls
	var out latencies
	var first, last time.Time
	for id, f := range flavorOf {
		ok, created := okAt[id], calls[fmt.Sprintf("spawner-%s-%d-0", f, id)]
		if ok.IsZero() || created.IsZero() {
			continue
		}
		out = append(out, created.Sub(ok))
		if first.IsZero() || ok.Before(first) {
			first = ok
		}
		if created.After(last) {
			last = created
		}
	}
	return out, first, last
}

// TestBenchConsumerBurst is issue 4's benchmark: a burst of 1,000 queued jobs on the
// simulated backend with zero boot time, served by 1 and by 3 consumer processes:
// webhook 2xx → backend create call p50/p99, and the time to drain the burst. Before
// it, single jobs one at a time give the unloaded latency.
func TestBenchConsumerBurst(t *testing.T) {
	requireBench(t)
	for _, consumers := range []int{1, 3} {
		t.Run(fmt.Sprintf("consumers=%d", consumers), func(t *testing.T) {
			w := newE2EWorld(t, fakegithub.Options{JobDuration: 20 * time.Millisecond, Webhooks: fakegithub.WebhookOptions{Workers: 16}})
			dir := t.TempDir()
			cfg, webhookURL, _ := w.config(t, dir, []e2eFlavor{{"small", "small", 1000}}, "")
			cfg = writeFile(t, dir, "spawner.yaml", strings.Replace(readFile(t, cfg), "boot_jitter: 200ms", "boot_time: 0s", 1))
			// serve receives and serves the bootstrap endpoint; its own consumer counts as one.
			startProc(t, nil, "serve", "--config", cfg)
			waitReady(t, strings.TrimSuffix(webhookURL, "/webhook"), 30*time.Second)
			for range consumers - 1 {
				startProc(t, nil, "consumer", "--config", cfg, "--bootstrap-listen", "off")
			}
			w.gh.SetWebhookTarget(webhookURL, e2eSecret)
			time.Sleep(time.Second) // consumers subscribed

			single := map[int64]string{}
			for range 50 {
				j := w.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "small"}})
				single[j.ID] = "small"
				time.Sleep(50 * time.Millisecond)
			}
			w.waitAllCompleted(t, cfg, time.Minute)
			one, _, _ := spawnLatencies(w, single)

			burst := map[int64]string{}
			start := time.Now()
			for range 1000 {
				j := w.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "small"}})
				burst[j.ID] = "small"
			}
			w.waitAllCompleted(t, cfg, 5*time.Minute)
			all := time.Since(start)
			// A job taken by another job's runner before its own was spawned needs none:
			// latencies are over the jobs that got their own runner.
			lat, first, last := spawnLatencies(w, burst)
			sum := w.gh.Summary()
			t.Logf("consumers=%d single jobs (50, one every 50ms): webhook 2xx → create call p50 %s p99 %s",
				consumers, one.p(.5), one.p(.99))
			t.Logf("consumers=%d burst of 1000: webhook 2xx → create call p50 %s p99 %s (%d jobs got their own runner); runners created over %s after the first 2xx (%.0f/s); all jobs completed %s after the burst began; GitHub calls %d",
				consumers, lat.p(.5), lat.p(.99), len(lat), last.Sub(first).Round(time.Millisecond), float64(len(lat))/last.Sub(first).Seconds(), all.Round(time.Millisecond), sum.CallsTotal)
		})
	}
}

// TestBenchClusterSustained is issue 8's benchmark: sustained webhook load on a
// 3-node NATS cluster with 2 webhook replicas, and 1 or 3 consumer processes:
// webhooks/s accepted and webhook 2xx → create call p50/p99.
func TestBenchClusterSustained(t *testing.T) {
	requireBench(t)
	for _, run := range []struct{ consumers, rate int }{{1, 30}, {3, 30}, {1, 100}, {3, 100}} {
		consumers, rate := run.consumers, run.rate
		t.Run(fmt.Sprintf("consumers=%d/rate=%d", consumers, rate), func(t *testing.T) {
			cluster := queuetest.StartCluster(t, 3)
			w := newE2EWorld(t, fakegithub.Options{JobDuration: 20 * time.Millisecond, Webhooks: fakegithub.WebhookOptions{Workers: 32}})
			webLB, webURL := newBalancer(t)
			bootLB, bootURL := newBalancer(t)
			dir := t.TempDir()
			cfg := writeFile(t, dir, "spawner.yaml", fmt.Sprintf(`state_dir: %s
log: {level: warn, format: text}
github: {url: %q, path: octo-org, token: ghp_e2e, rate_per_hour: 1000000, secondary_points_per_minute: 0}
nats: {url: %q}
webhook: {secrets: [%q]}
bootstrap: {url: %q}
consumer: {workers: 8}
janitor: {interval: 5s}
routing: {default_flavor: small}
flavors:
  - {name: small, labels: [small], max_runners: 2000, backend: sim, sim: {url: %q}, runner: {idle_ttl: 5s}}
`, filepath.Join(dir, "state"), w.gh.URL(), cluster.URL(), e2eSecret, bootURL, w.cloudURL))
			for range 2 {
				addr := freeAddr(t)
				startProc(t, nil, "webhook", "--config", cfg, "--webhook-listen", addr)
				waitReady(t, "http://"+addr, 60*time.Second)
				webLB.add("http://" + addr)
			}
			for range consumers {
				addr := freeAddr(t)
				startProc(t, nil, "consumer", "--config", cfg, "--bootstrap-listen", addr)
				bootLB.add("http://" + addr)
			}
			startProc(t, nil, "janitor", "--config", cfg)
			w.gh.SetWebhookTarget(webURL+"/webhook", e2eSecret)
			time.Sleep(2 * time.Second)

			const seconds = 15
			jobs := map[int64]string{}
			start := time.Now()
			for i := range rate * seconds {
				due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
				time.Sleep(time.Until(due))
				j := w.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "small"}})
				jobs[j.ID] = "small"
			}
			w.waitAllCompleted(t, cfg, 5*time.Minute)
			lat, first, last := spawnLatencies(w, jobs)
			accepted := 0
			var lastOK time.Time
			for _, d := range w.gh.Deliveries() {
				if d.StatusCode/100 == 2 {
					accepted++
					if at := d.DeliveredAt.Add(d.Duration); at.After(lastOK) {
						lastOK = at
					}
				}
			}
			t.Logf("cluster, 2 webhooks, consumers=%d, %d jobs offered at %d/s: %d webhooks accepted (all actions) in %s = %.0f/s; webhook 2xx → create call p50 %s p99 %s; runners created over %s",
				consumers, len(jobs), rate, accepted, lastOK.Sub(start).Round(time.Millisecond), float64(accepted)/lastOK.Sub(start).Seconds(),
				lat.p(.5), lat.p(.99), last.Sub(first).Round(time.Millisecond))
		})
	}
}
