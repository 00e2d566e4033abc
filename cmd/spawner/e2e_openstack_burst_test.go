package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
)

// Issue 15's burst on OpenStack: 50 servers wanted at once, made by plain gophercloud
// and by the spawner, in one test run on the same cloud.
const (
	osBurstN = 50
	// osBurstMax is max_runners of each of the spawner's two flavors: 25 jobs each,
	// so capacity never binds (the raw side has no capacity rule either).
	osBurstMax = 25
	// osBurstActiveWait bounds the wait for all 50 ACTIVE. It stays under the flavors'
	// boot_timeout (10m): the spawner's servers are played only after it, and one
	// waiting longer than its boot timeout would be replaced.
	osBurstActiveWait = 8 * time.Minute
	// osBurstGone bounds the wait for 50 deletes; Nova's fake driver on two loaded
	// cores can take longer than osSettle for that many.
	osBurstGone = 5 * time.Minute
	// osBurstDeletes is how many delete calls the test sends at once.
	osBurstDeletes = 10
)

// osBurstConcurrency are the raw side's levels: at most this many create calls in
// flight, the 50 servers all wanted at the burst's start.
var osBurstConcurrency = []int{10, 50}

// osBurstRow is one side's row of the table.
type osBurstRow struct {
	name  string
	short string // in the ratio rows
	n     int    // servers wanted (raw) or jobs queued (spawner)
	// lat is, per server that reached ACTIVE, raw: its create call → first seen
	// ACTIVE; spawner: its job's webhook 2xx → the job's server first seen ACTIVE.
	lat []time.Duration
	// wall is from the burst's start (the first create call, the first job queued)
	// to the last of the n first seen ACTIVE.
	wall    time.Duration
	servers int // servers created (that Nova accepted)
	calls   int // GitHub REST calls from the burst's start until settled; -1: none made
	errored int // servers Nova put in ERROR
}

func (r osBurstRow) String() string {
	calls := "—"
	if r.calls >= 0 {
		calls = fmt.Sprintf("%.2f", float64(r.calls)/float64(r.n))
	}
	wall := secs(r.wall)
	if len(r.lat) < r.n {
		wall += fmt.Sprintf(" (%d of %d ACTIVE)", len(r.lat), r.n)
	}
	return fmt.Sprintf("| %s | %d | %s | %s | %s | %.2f | %s | %d |", r.name, r.n,
		secs(percentile(r.lat, 0.5)), secs(percentile(r.lat, 0.99)), wall,
		float64(r.servers)/float64(r.n), calls, r.errored)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// sortedRounded is roundAll, sorted: for logging samples.
func sortedRounded(s []time.Duration) []time.Duration {
	out := roundAll(s)
	slices.Sort(out)
	return out
}

// serverCreatedRE matches the OpenStack backend's line for each server Nova accepted,
// with how long its create call took (the Nova request budget's waits included).
var serverCreatedRE = regexp.MustCompile(`msg="server created".* took=([0-9.]+[a-zµ]+)`)

// TestOpenStackBenchBurst is issue 15's burst on OpenStack, with SPAWNER_BENCH=1: on
// the same cloud, in the same run, 50 servers wanted at once.
//
//   - Raw, once per level of osBurstConcurrency: 50 creates with plain gophercloud,
//     at most that many in flight; one list of the round's servers (by a tag of
//     their own) every osPoll sees each go ACTIVE, the way the test's cloudWatch sees
//     the spawner's. Per server: its create call → first seen ACTIVE. Then all are
//     deleted, and the next part starts once Nova lists none.
//   - Spawner: 50 jobs queued at once through the fake GitHub over two flavors of
//     max_runners 25 (capacity never binds). Per job: its queued webhook's 2xx → its
//     server first seen ACTIVE, as TestOpenStackBenchCreateToActive measures. The
//     servers are played (their runners run) only once all 50 were ACTIVE, so no
//     job's runner or delete weighs on the measurement; then every job must complete
//     and nothing may be left.
//
// It logs one BENCHMARKS.md table row per side (p50, p99, time until all 50 ACTIVE,
// runners per job, GitHub calls per job, servers in ERROR) and the ratios
// spawner/raw. It asserts nothing about time. Run it with
//
//	SPAWNER_BENCH=1 SPAWNER_REQUIRE_OPENSTACK=1 go test -count=1 -timeout 20m -run OpenStackBenchBurst -v ./cmd/spawner/
func TestOpenStackBenchBurst(t *testing.T) {
	if os.Getenv("SPAWNER_BENCH") != "1" {
		t.Skip("benchmark: set SPAWNER_BENCH=1 to run it (about 10 minutes)")
	}
	compute := osCompute(t, osAdminCloud)
	hold := make(chan struct{})
	r := startOSRun(t, compute, osAdminCloud, false, []osFlavor{{"os-small", osBurstMax}, {"os-large", osBurstMax}}, "", hold)
	imageID, flavorID, netID := resolveForRaw(t, compute)

	var rows []osBurstRow
	for _, c := range osBurstConcurrency {
		rows = append(rows, osRawBurst(t, compute, r.deployment, imageID, flavorID, netID, c, osBurstN))
		// Let nova-compute finish what the deletes left it (ports, allocations)
		// before the next part is measured.
		time.Sleep(5 * time.Second)
	}
	sp := osSpawnerBurst(t, r, hold, osBurstN)
	rows = append(rows, sp)

	var b strings.Builder
	b.WriteString("\n| side | servers wanted | → ACTIVE p50 | p99 | all ACTIVE after | runners/job | GitHub calls/job | servers in ERROR |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, row := range rows {
		b.WriteString(row.String() + "\n")
	}
	for _, raw := range rows[:len(rows)-1] {
		fmt.Fprintf(&b, "| **spawner / %s** | | **%.2f** | **%.2f** | %.2f | | | |\n", raw.short,
			ratio(percentile(sp.lat, 0.5), percentile(raw.lat, 0.5)),
			ratio(percentile(sp.lat, 0.99), percentile(raw.lat, 0.99)),
			ratio(sp.wall, raw.wall))
	}
	t.Log(b.String())
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// rawServer is what the raw side knows of one of its servers.
type rawServer struct {
	start, returned time.Time // the create call's
	id              string
	createErr       error
	active          time.Time // the first list that showed it ACTIVE
	fault           string    // Nova's fault, if a list showed it in ERROR
}

// osRawBurst creates n servers with plain gophercloud, all wanted at once and at most
// concurrency create calls in flight; watches them with one list every osPoll (by a
// tag of the round's own, as cloudWatch lists the spawner's by the deployment's);
// then deletes them all and waits until Nova lists none. The servers' names carry the
// run's deployment id.
func osRawBurst(t *testing.T, compute *gophercloud.ServiceClient, deployment, imageID, flavorID, netID string, concurrency, n int) osBurstRow {
	t.Helper()
	tag := fmt.Sprintf("bench_raw=%s-c%d", deployment, concurrency)
	var mu sync.Mutex
	names := make([]string, n)
	byName := make(map[string]*rawServer, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-raw%d-%02d", deployment, concurrency, i)
		byName[names[i]] = &rawServer{}
	}
	ids := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, rs := range byName {
			if rs.id != "" {
				out = append(out, rs.id)
			}
		}
		return out
	}
	// Whatever happens below, the round's servers go (a list and a GET each once they
	// are gone): by tag, so a server whose create answer was lost goes too, and by id.
	t.Cleanup(func() { deleteTagged(t, compute, tag, ids(), osBurstGone) })
	row := osBurstRow{
		name: fmt.Sprintf("raw gophercloud, %d creates at once", concurrency), short: fmt.Sprintf("raw, %d at once", concurrency),
		n: n, calls: -1,
	}

	ctx, stop := context.WithCancel(t.Context())
	var watch sync.WaitGroup
	var polls, pollErrors int
	var lastErr error
	watch.Go(func() {
		for ctx.Err() == nil {
			list, err := listTagged(ctx, compute, tag)
			now := time.Now()
			mu.Lock()
			polls++
			if err != nil && ctx.Err() == nil {
				pollErrors++
				lastErr = err
			}
			for _, s := range list {
				rs := byName[s.Name]
				if rs == nil {
					continue
				}
				if s.Status == "ACTIVE" && rs.active.IsZero() {
					rs.active = now
				}
				if s.Status == "ERROR" && rs.fault == "" {
					rs.fault = "ERROR: " + s.Fault.Message
				}
			}
			mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(osPoll):
			}
		}
	})
	defer func() {
		stop()
		watch.Wait()
	}()

	// The burst: every create is wanted now; a semaphore lets concurrency of them
	// call Nova at once.
	sem := make(chan struct{}, concurrency)
	var creates sync.WaitGroup
	burstStart := time.Now()
	for _, name := range names {
		creates.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			start := time.Now()
			s, err := servers.Create(cctx, compute, servers.CreateOpts{
				Name: name, ImageRef: imageID, FlavorRef: flavorID,
				Networks: []servers.Network{{UUID: netID}}, UserData: []byte("#!/bin/sh\ntrue\n"),
				Tags: []string{tag},
			}, nil).Extract()
			returned := time.Now()
			mu.Lock()
			defer mu.Unlock()
			rs := byName[name]
			rs.start, rs.returned, rs.createErr = start, returned, err
			if err == nil {
				rs.id = s.ID
			}
		})
	}
	creates.Wait()

	// Until every server Nova accepted is ACTIVE or in ERROR.
	deadline := burstStart.Add(osBurstActiveWait)
	for {
		mu.Lock()
		var pending []string
		for _, name := range names {
			if rs := byName[name]; rs.createErr == nil && rs.active.IsZero() && rs.fault == "" {
				pending = append(pending, name)
			}
		}
		p, pe, le := polls, pollErrors, lastErr
		mu.Unlock()
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("raw, %d at once: %d servers not ACTIVE %s after the burst's start (first %s); %d of %d lists failed, last: %v",
				concurrency, len(pending), osBurstActiveWait, pending[0], pe, p, le)
		}
		time.Sleep(osPoll)
	}
	stop()
	watch.Wait()

	var fromBurst, createCall []time.Duration
	var last time.Time
	var createErrs []string
	for _, name := range names {
		rs := byName[name]
		if rs.createErr != nil {
			createErrs = append(createErrs, fmt.Sprintf("%s: %v", name, rs.createErr))
			continue
		}
		row.servers++
		createCall = append(createCall, rs.returned.Sub(rs.start))
		switch {
		case rs.fault != "":
			row.errored++
			t.Logf("raw, %d at once: server %s (%s) %s", concurrency, name, rs.id, rs.fault)
		default:
			row.lat = append(row.lat, rs.active.Sub(rs.start))
			fromBurst = append(fromBurst, rs.active.Sub(burstStart))
			if rs.active.After(last) {
				last = rs.active
			}
		}
	}
	if !last.IsZero() {
		row.wall = last.Sub(burstStart)
	}
	for i, e := range createErrs {
		if i == 5 {
			t.Logf("raw, %d at once: … and %d more create calls failed", concurrency, len(createErrs)-i)
			break
		}
		t.Logf("raw, %d at once: create call failed: %s", concurrency, e)
	}

	deleteStart := time.Now()
	deleteTagged(t, compute, tag, ids(), osBurstGone)
	t.Logf("raw, %d creates at once: %d created (%d create calls failed), %d ACTIVE, %d in ERROR; create call → ACTIVE %s; burst start → ACTIVE %s; create call answered in %s; all ACTIVE %s after the burst's start; all gone %s after the deletes began; %d lists (%d failed)",
		concurrency, row.servers, len(createErrs), len(row.lat), row.errored, fmtPercentiles(row.lat), fmtPercentiles(fromBurst),
		fmtPercentiles(createCall), row.wall.Round(time.Millisecond), time.Since(deleteStart).Round(time.Second), polls, pollErrors)
	t.Logf("raw, %d at once: samples create call → ACTIVE %v", concurrency, sortedRounded(row.lat))
	return row
}

// osSpawnerBurst queues n jobs at once over the run's flavors, measures each job's
// webhook 2xx → its server first seen ACTIVE until all n are, then releases hold (the
// servers are played) and checks that every job completed on its flavor and nothing
// is left.
func osSpawnerBurst(t *testing.T, r *osRun, hold chan struct{}, n int) osBurstRow {
	t.Helper()
	row := osBurstRow{name: fmt.Sprintf("spawner, %d flavors × max_runners %d", len(r.flavors), osBurstMax), n: n}
	before := r.gh.CallCounts()
	logFrom := len(r.serve.out.String())

	burstStart := time.Now()
	want := make(map[int64]string, n)
	for i := range n {
		f := r.flavors[i%len(r.flavors)]
		j := r.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux", f.name}})
		want[j.ID] = f.name
	}

	// Until every job's queued webhook got its 2xx and one of its servers was seen
	// ACTIVE.
	var ok map[int64]time.Time
	deadline := burstStart.Add(osBurstActiveWait)
	for {
		ok = webhookOK(r.gh)
		var noHook, notActive []int64
		for id := range want {
			if _, found := ok[id]; !found {
				noHook = append(noHook, id)
			} else if _, found := r.cw.activeFor(id); !found {
				notActive = append(notActive, id)
			}
		}
		if len(noHook)+len(notActive) == 0 {
			break
		}
		if time.Now().After(deadline) {
			v := r.cw.view()
			for _, s := range v.servers {
				t.Logf("server %s job %d seen %s active %s fault %q", s.name, s.job,
					s.firstSeen.Format(time.TimeOnly), s.active.Format(time.TimeOnly), s.fault)
			}
			out, errOut, _ := runCmdSplit(t, nil, "status", "--config", r.cfg, "--json")
			t.Fatalf("spawner: %s after the burst's start, %d jobs without a 2xx for their queued webhook %v, %d without a server ACTIVE %v; last cloud poll error %v; status: %s%s",
				osBurstActiveWait, len(noHook), noHook, len(notActive), notActive, v.lastErr, oneLine(out), errOut)
		}
		time.Sleep(osPoll)
	}

	v := r.cw.view()
	created := map[int64]time.Time{}
	for _, j := range r.gh.Jobs() {
		created[j.ID] = j.CreatedAt
	}
	var toSeen, delivered []time.Duration
	var last time.Time
	for id := range want {
		active, _ := r.cw.activeFor(id)
		row.lat = append(row.lat, active.Sub(ok[id]))
		if active.After(last) {
			last = active
		}
		delivered = append(delivered, ok[id].Sub(created[id]))
		// The job's first server (v.servers is in the order first seen).
		if i := slices.IndexFunc(v.servers, func(s osServer) bool { return s.job == id }); i >= 0 {
			toSeen = append(toSeen, v.servers[i].firstSeen.Sub(ok[id]))
		}
	}
	row.wall = last.Sub(burstStart)

	// Now the servers' runners run their jobs; then the spawner deletes the servers.
	playsFrom := time.Now()
	close(hold)
	r.waitJobs(t, 5*time.Minute)
	jobsDone := time.Since(playsFrom)
	// Fifty deletes may take Nova longer than check's osSettle: wait here first,
	// listing once a second (the cloudWatch lists too) so as not to slow Nova down.
	goneFrom := time.Now()
	for {
		list, err := listOurs(t.Context(), r.cw.compute, r.deployment, r.cw.allTenants)
		if err == nil && len(list) == 0 {
			break
		}
		if err == nil {
			err = fmt.Errorf("%d servers of ours left, first %s (%s, task %q)", len(list), list[0].Name, list[0].Status, list[0].TaskState)
		}
		if time.Since(goneFrom) > osBurstGone {
			t.Fatalf("spawner: servers not gone %s after every job completed: %v", osBurstGone, err)
		}
		time.Sleep(time.Second)
	}
	gone := time.Since(goneFrom)
	// A server Nova put in ERROR is the cloud's doing; the spawner replaces it. They
	// are counted and shown, not failed on.
	list := r.check(t, want, func(string) bool { return true })
	row.servers = len(list)
	for _, s := range list {
		if s.fault != "" {
			row.errored++
			t.Logf("spawner: server %s (job %d) %s", s.name, s.job, s.fault)
		}
	}
	ops := map[string]int{}
	for op, c := range r.gh.CallCounts() {
		if d := c - before[op]; d != 0 {
			ops[op] = d
			row.calls += d
		}
	}

	logs := r.serve.out.String()[logFrom:]
	var createCall []time.Duration
	for _, m := range serverCreatedRE.FindAllStringSubmatch(logs, -1) {
		if d, err := time.ParseDuration(m[1]); err == nil {
			createCall = append(createCall, d)
		}
	}
	retries := strings.Count(logs, "instance create failed; retrying")
	v = r.cw.view()
	t.Logf("spawner, %d jobs at once: %d servers seen (%d \"server created\" in serve's log, %d create retries), %d in ERROR; webhook 2xx → ACTIVE %s; webhook 2xx → server listed %s; job queued → webhook 2xx %s; Nova create call (the spawner's request budget included) %s; all ACTIVE %s after the first job was queued; most servers at once %v; all jobs done %s after the plays began, all servers gone %s later",
		n, row.servers, len(createCall), retries, row.errored, fmtPercentiles(row.lat), fmtPercentiles(toSeen), fmtPercentiles(delivered),
		fmtPercentiles(createCall), row.wall.Round(time.Millisecond), v.maxExisting, jobsDone.Round(100*time.Millisecond), gone.Round(time.Second))
	t.Logf("spawner: GitHub calls %d (%.2f per job): %v", row.calls, float64(row.calls)/float64(n), ops)
	t.Logf("spawner: samples webhook 2xx → ACTIVE %v", sortedRounded(row.lat))
	return row
}

// listTagged lists every server carrying tag (in the caller's project).
func listTagged(ctx context.Context, compute *gophercloud.ServiceClient, tag string) ([]servers.Server, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pages, err := servers.List(compute, servers.ListOpts{Tags: tag}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return servers.ExtractServers(pages)
}

// deleteTagged deletes every server carrying tag and every server of ids (in case a
// tag did not take), osBurstDeletes calls at a time, and waits until Nova lists none
// with the tag and answers 404 for each id; a server still there 30 s after its
// delete is deleted again. What is left after timeout fails the test. It runs in
// t.Cleanup too, so it takes no context from t.
func deleteTagged(t *testing.T, compute *gophercloud.ServiceClient, tag string, ids []string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	deletedAt := map[string]time.Time{}
	del := func(targets map[string]string) {
		sem := make(chan struct{}, osBurstDeletes)
		var wg sync.WaitGroup
		for id, name := range targets {
			if at, ok := deletedAt[id]; ok && time.Since(at) < 30*time.Second {
				continue
			}
			deletedAt[id] = time.Now()
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				if err := servers.Delete(ctx, compute, id).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
					t.Logf("delete server %s (%s): %v", name, id, err)
				}
			})
		}
		wg.Wait()
	}
	// The ids first: they need no list to be found.
	known := map[string]string{}
	for _, id := range ids {
		known[id] = id
	}
	del(known)
	left := ids
	for {
		list, err := listTagged(ctx, compute, tag)
		if err == nil && len(list) > 0 {
			targets := map[string]string{}
			for _, s := range list {
				targets[s.ID] = s.Name
			}
			del(targets)
			err = fmt.Errorf("%d listed with the tag, first %s (%s, task %q)", len(list), list[0].Name, list[0].Status, list[0].TaskState)
		} else if err == nil {
			// None listed: each id must be gone too (one GET each, normally once).
			left = slices.DeleteFunc(left, func(id string) bool {
				_, gerr := servers.Get(ctx, compute, id).Extract()
				return gophercloud.ResponseCodeIs(gerr, http.StatusNotFound)
			})
			if len(left) == 0 {
				return
			}
			targets := map[string]string{}
			for _, id := range left {
				targets[id] = id
			}
			del(targets)
			err = fmt.Errorf("%d not listed with the tag but still there, first %s", len(left), left[0])
		}
		select {
		case <-ctx.Done():
			t.Errorf("servers of %s still there %s after their deletes: %v", tag, timeout, err)
			return
		case <-time.After(time.Second):
		}
	}
}
