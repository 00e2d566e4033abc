package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
)

// TestLXDSplitProcesses is issue 17's deployment as an operator runs it on one host,
// every role a separate process of the built binary, on real LXD containers of the
// tiny image: one `serve --roles webhook` with the embedded NATS, three consumers
// (only the first serves the bootstrap endpoint; the config has bootstrap.listen and
// no bootstrap.url, so the others derive the URL from it), two janitors. 100 jobs
// over two flavors. Midway one consumer and the active janitor are SIGKILLed, later
// another consumer gets SIGTERM. Every job must run, no flavor may have more
// containers at once than max_runners, and nothing may be left (no container, no
// registered runner). Then NATS goes (SIGTERM to serve) and every remaining process
// gets SIGTERM: each must exit within shutdown_timeout.
func TestLXDSplitProcesses(t *testing.T) {
	const jobs = 100
	const shutdownTimeout = 5 * time.Second
	flavors := []e2eFlavor{{"small", "small", 5}, {"large", "large", 3}}
	tb := newLXDTestbed(t, "e2e", fakegithub.Options{JobDuration: 300 * time.Millisecond}, "")
	client, gh, dir, deployment, web, nats, boot := tb.client, tb.gh, tb.dir, tb.deployment, tb.web, tb.nats, tb.boot
	// Short timings: a janitor pass every second, short backoffs, quick redelivery
	// (ack_wait) of what a killed consumer held.
	cfg := writeFile(t, dir, "spawner.yaml", fmt.Sprintf(`state_dir: %s
deployment_id: %s
shutdown_timeout: %s
log: {level: info, format: text}
%snats: {listen: %s, user: spawner, password: %q}
webhook: {listen: %s, secrets: [%q]}
bootstrap: {listen: %s}
consumer: {workers: 4, ack_wait: 10s, capacity_retry: 1s, capacity_wait: 2s, backoff_initial: 200ms, backoff_max: 2s}
janitor: {interval: 1s}
routing: {default_flavor: %s}
flavors:
%s`, filepath.Join(dir, "state"), deployment, shutdownTimeout, tb.githubYAML(), nats, natsTestPassword, web, e2eSecret, boot, flavors[0].name, tb.flavorsYAML(flavors, ", ephemeral: true", "")))

	e := &lxdE2E{gh: gh, cfg: cfg, flavors: flavors, backends: map[string]backends.Backend{}, maxLive: map[string]int{}}
	tinyBackends(t, client, deployment, flavors, e.backends)

	serve := startProc(t, nil, "serve", "--config", cfg, "--roles", "webhook", "--bootstrap-listen", "off")
	waitReady(t, "http://"+web, 30*time.Second)
	consumers := []*proc{
		startProc(t, nil, "consumer", "--config", cfg),
		startProc(t, nil, "consumer", "--config", cfg, "--bootstrap-listen", "off"),
		startProc(t, nil, "consumer", "--config", cfg, "--bootstrap-listen", "off"),
	}
	janitors := []*proc{startProc(t, nil, "janitor", "--config", cfg), startProc(t, nil, "janitor", "--config", cfg)}
	active := activeJanitor(t, cfg, janitors)
	if active == nil {
		t.Fatal("no janitor process holds the lease")
	}
	gh.SetWebhookTarget("http://"+web+"/webhook", e2eSecret)

	ctx, stopWatch := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { e.watch(ctx) })
	want := map[int64]string{}
	start := time.Now()
	for i := range jobs {
		f := flavors[i%len(flavors)]
		j := gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux", f.label}})
		want[j.ID] = f.name
	}
	completed := func() int {
		n := 0
		for _, j := range gh.Jobs() {
			if j.Status == "completed" {
				n++
			}
		}
		return n
	}
	waitCompleted := func(n int) {
		t.Helper()
		eventuallyElse(t, 3*time.Minute, func() error {
			if c := completed(); c < n {
				return fmt.Errorf("%d of %d jobs completed", c, jobs)
			}
			return nil
		}, func() { dumpStuckJobs(t, cfg, notCompleted(gh), gh, lxdExists(client)) })
	}

	// A quarter in: a consumer and the active janitor crash.
	waitCompleted(jobs / 4)
	consumers[1].kill()
	killedID := janitorID(t, cfg)
	killedAt := time.Now()
	active.kill()
	var failover time.Duration
	wg.Go(func() {
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			if id := janitorID(t, cfg); id != "" && id != killedID {
				failover = time.Since(killedAt)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	// Half in: another consumer is stopped as in a rolling update.
	waitCompleted(jobs / 2)
	termTook := sigterm(t, consumers[2], "consumer (SIGTERM mid-run)", shutdownTimeout+2*time.Second)

	waitCompleted(jobs)
	elapsed := time.Since(start)
	for _, j := range gh.Jobs() {
		if j.Conclusion != "success" || !strings.Contains(j.RunnerName, "-"+want[j.ID]+"-") {
			t.Errorf("job %d (%s): %s on %q", j.ID, want[j.ID], j.Conclusion, j.RunnerName)
		}
	}
	e.noContainersLeft(t, 2*time.Minute)
	eventually(t, time.Minute, func() error {
		if rs := gh.Runners(); len(rs) > 0 {
			return fmt.Errorf("%d runners still registered on GitHub (%s)", len(rs), rs[0].Name)
		}
		return nil
	})
	stopWatch()
	wg.Wait()
	if failover == 0 {
		t.Errorf("no janitor took over after the active one (%s) was killed", killedID)
	}
	for _, f := range flavors {
		if e.maxLive[f.name] > f.max {
			t.Errorf("flavor %s: %d containers at once, max_runners %d", f.name, e.maxLive[f.name], f.max)
		}
	}

	// NATS goes first, then every remaining process is told to stop.
	exits := map[string]time.Duration{}
	bound := shutdownTimeout + 1500*time.Millisecond
	exits["serve --roles webhook (NATS)"] = sigterm(t, serve, "serve --roles webhook", bound)
	var mu sync.Mutex
	var sg sync.WaitGroup
	remaining := map[string]*proc{"consumer (bootstrap)": consumers[0]}
	for _, j := range janitors {
		if j != active {
			remaining["janitor"] = j
		}
	}
	for role, p := range remaining {
		sg.Go(func() {
			took := sigterm(t, p, role+" with NATS gone", bound)
			mu.Lock()
			exits[role] = took
			mu.Unlock()
		})
	}
	sg.Wait()
	var ex []string
	for role, d := range exits {
		ex = append(ex, fmt.Sprintf("%s %.2fs", role, d.Seconds()))
	}
	t.Logf("summary: %d jobs on real LXD in %s; peak containers per flavor %v (max_runners small %d, large %d); none left; "+
		"janitor failover %.1fs; consumer SIGTERM mid-run exited in %.2fs; exit after SIGTERM with NATS gone (shutdown_timeout %s): %s",
		jobs, elapsed.Round(time.Second), e.maxLive, flavors[0].max, flavors[1].max, failover.Seconds(), termTook.Seconds(), shutdownTimeout, strings.Join(ex, ", "))
}

// janitorID is the active janitor's id as `spawner status` reports it ("": none).
func janitorID(t *testing.T, cfg string) string {
	out, _, code := runCmdSplit(t, nil, "status", "--config", cfg, "--json")
	if code != 0 {
		return ""
	}
	var st struct{ Janitor struct{ Active string } }
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return ""
	}
	return st.Janitor.Active
}
