package composerun

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Where docker-compose.yml publishes the sandbox's tools, on the host's loopback.
const (
	fakeGitHub = "http://127.0.0.1:8090/_fake/control"
	simCloud   = "http://127.0.0.1:8091/_sim/stats"
	// deployment_id of deployments/compose/spawner.yaml: runner names start with it.
	deployment = "compose"
	statusCmd  = "spawner status --config /etc/spawner/spawner.yaml --json --timeout 10s"
)

// stack runs docker and docker compose in the compose project's directory.
type stack struct {
	t   *testing.T
	dir string
	t0  time.Time
	mu  sync.Mutex
	log []string // the kills, with when they happened
}

func (s *stack) docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Dir = s.dir
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func (s *stack) since() string { return time.Since(s.t0).Round(time.Second).String() }

func (s *stack) event(format string, args ...any) {
	msg := fmt.Sprintf("t+%s ", s.since()) + fmt.Sprintf(format, args...)
	s.t.Log(msg)
	s.mu.Lock()
	s.log = append(s.log, msg)
	s.mu.Unlock()
}

// container is a line of `docker compose ps --format json`.
type container struct {
	Name    string `json:"Name"`
	Service string `json:"Service"`
	State   string `json:"State"`
	Health  string `json:"Health"`
}

func (s *stack) containers(ctx context.Context) ([]container, error) {
	out, err := s.docker(ctx, "compose", "ps", "-a", "--format", "json")
	if err != nil {
		return nil, err
	}
	var cs []container
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var c container
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("docker compose ps: %w", err)
		}
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b container) int { return strings.Compare(a.Name, b.Name) })
	return cs, nil
}

func (s *stack) status(ctx context.Context) (spawnerStatus, error) {
	var st spawnerStatus
	// webhook-1 is never killed; any spawner container has the config.
	out, err := s.docker(ctx, append([]string{"compose", "exec", "-T", "webhook-1"}, strings.Fields(statusCmd)...)...)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("spawner status --json: %w: %.200s", err, out)
	}
	return st, nil
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return doJSON(req, http.StatusOK, v)
}

func doJSON(req *http.Request, want int, v any) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %.200s", req.Method, req.URL, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	return nil
}

// queueJobs has the fake GitHub queue count jobs with labels; it sends each one's
// signed "queued" webhook through the balancer.
func queueJobs(ctx context.Context, labels []string, count int) ([]ghJob, error) {
	body, err := json.Marshal(map[string]any{"labels": labels, "count": count, "duration": "1s"})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fakeGitHub+"/jobs", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	var jobs []ghJob
	return jobs, doJSON(req, http.StatusCreated, &jobs)
}

// TestComposeStack: 500 jobs (3 small to 1 large) through the balancer, 8 a second,
// while a NATS node is killed and started again, a consumer is killed and the active
// janitor is killed. Every job must succeed on a runner of its flavor, no flavor may
// have more instances at once than max_runners, and at the end nothing may be left:
// no instance, no registered runner, no slot held, no job queued, no event pending.
func TestComposeStack(t *testing.T) {
	dir := os.Getenv("SPAWNER_COMPOSE_DIR")
	if dir == "" {
		t.Skip("skipping the compose stack test: scripts/compose-test.sh runs it on the stack it brings up (SPAWNER_COMPOSE_DIR)")
	}
	total := 500
	if v := os.Getenv("SPAWNER_COMPOSE_JOBS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("SPAWNER_COMPOSE_JOBS=%q: want a number of at least 10", v)
		}
		total = n
	}
	ctx, cancel := context.WithTimeout(t.Context(), 17*time.Minute)
	defer cancel()
	s := &stack{t: t, dir: dir, t0: time.Now()}

	cs, err := s.containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		t.Logf("container %-36s %-8s %s", c.Name, c.State, c.Health)
		if c.State != "running" {
			t.Errorf("%s is %s", c.Name, c.State)
		}
	}
	byService := map[string][]container{}
	for _, c := range cs {
		byService[c.Service] = append(byService[c.Service], c)
	}
	if len(byService["consumer"]) != 3 || len(byService["nats-2"]) != 1 || len(byService["janitor"]) != 1 || len(byService["janitor-standby"]) != 1 {
		t.Fatalf("the stack is not up with 3 consumers, 3 NATS nodes and 2 janitors: %v", cs)
	}
	st, err := s.status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	maxRunners := map[string]int{}
	for _, f := range st.Flavors {
		maxRunners[f.Name] = f.MaxRunners
	}
	if maxRunners["small"] == 0 || maxRunners["large"] == 0 {
		t.Fatalf("spawner status: flavors %v, want small and large", maxRunners)
	}

	// The load: every second 6 small jobs and 2 large ones, so the webhooks keep coming
	// while the containers are killed.
	want := map[int64]string{}
	var wantMu sync.Mutex
	sendErr := make(chan error, 1)
	s.t0 = time.Now()
	go func() {
		defer close(sendErr)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for sent := 0; sent < total; {
			for _, f := range []struct {
				flavor string
				n      int
			}{{"small", 6}, {"large", 2}} {
				n := min(f.n, total-sent)
				if n == 0 {
					continue
				}
				jobs, err := queueJobs(ctx, []string{"self-hosted", "linux", f.flavor}, n)
				if err != nil {
					sendErr <- err
					return
				}
				wantMu.Lock()
				for _, j := range jobs {
					want[j.ID] = f.flavor
				}
				wantMu.Unlock()
				sent += len(jobs)
			}
			select {
			case <-ctx.Done():
				sendErr <- ctx.Err()
				return
			case <-tick.C:
			}
		}
		s.event("all %d jobs queued", total)
	}()

	// The failures, at fixed times into the load.
	kills := make(chan error, 1)
	go func() {
		defer close(kills)
		at := func(d time.Duration) bool {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(time.Until(s.t0.Add(d))):
				return true
			}
		}
		nats := byService["nats-2"][0].Name
		if !at(20 * time.Second) {
			return
		}
		if _, err := s.docker(ctx, "kill", nats); err != nil {
			kills <- err
			return
		}
		s.event("docker kill %s", nats)
		if !at(35 * time.Second) {
			return
		}
		if _, err := s.docker(ctx, "start", nats); err != nil {
			kills <- err
			return
		}
		s.event("docker start %s", nats)
		consumer := byService["consumer"][1].Name
		if !at(50 * time.Second) {
			return
		}
		if _, err := s.docker(ctx, "kill", consumer); err != nil {
			kills <- err
			return
		}
		s.event("docker kill %s", consumer)
		if !at(70 * time.Second) {
			return
		}
		st, err := s.status(ctx)
		if err != nil {
			kills <- err
			return
		}
		// The lease holder's id is HOSTNAME-PID.
		var active string
		for _, c := range append(byService["janitor"], byService["janitor-standby"]...) {
			host, err := s.docker(ctx, "inspect", "--format", "{{.Config.Hostname}}", c.Name)
			if err != nil {
				kills <- err
				return
			}
			if st.Janitor.Active != "" && strings.HasPrefix(st.Janitor.Active, host+"-") {
				active = c.Name
			}
		}
		if active == "" {
			kills <- fmt.Errorf("the active janitor %q is no janitor container", st.Janitor.Active)
			return
		}
		if _, err := s.docker(ctx, "kill", active); err != nil {
			kills <- err
			return
		}
		s.event("docker kill %s (the active janitor, %s)", active, st.Janitor.Active)
	}()

	// Watch until every job has completed.
	var jobs []ghJob
	lastLog := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			t.Fatalf("t+%s: jobs still running: %v", s.since(), err)
		}
		time.Sleep(2 * time.Second)
		if err := getJSON(ctx, fakeGitHub+"/jobs", &jobs); err != nil {
			t.Fatalf("t+%s: %v", s.since(), err)
		}
		var sim simStats
		if err := getJSON(ctx, simCloud, &sim); err != nil {
			t.Fatalf("t+%s: %v", s.since(), err)
		}
		done := 0
		for _, j := range jobs {
			if j.Status == "completed" {
				done++
			}
		}
		if time.Since(lastLog) >= 15*time.Second {
			lastLog = time.Now()
			t.Logf("t+%s: %d/%d jobs completed; instances now small %d, large %d; peaks small %d, large %d",
				s.since(), done, total, sim.Live["small"], sim.Live["large"], sim.MaxLive["small"], sim.MaxLive["large"])
		}
		if len(jobs) >= total && done == len(jobs) {
			break
		}
	}
	s.event("all %d jobs completed", total)
	if err := <-sendErr; err != nil {
		t.Fatalf("queueing jobs: %v", err)
	}
	if err := <-kills; err != nil {
		t.Fatalf("kills: %v", err)
	}

	// Nothing may be left once the instances are gone and the janitor has swept: wait
	// for it (a janitor pass is every 30 s, the sweep every minute).
	o := outcome{deployment: deployment, want: want}
	var runners []json.RawMessage
	deadline := time.Now().Add(4 * time.Minute)
	for {
		if err := getJSON(ctx, fakeGitHub+"/jobs", &o.jobs); err != nil {
			t.Fatal(err)
		}
		if err := getJSON(ctx, simCloud, &o.sim); err != nil {
			t.Fatal(err)
		}
		if err := getJSON(ctx, fakeGitHub+"/runners", &runners); err != nil {
			t.Fatal(err)
		}
		o.runners = len(runners)
		if o.status, err = s.status(ctx); err != nil {
			t.Fatal(err)
		}
		if v := check(o); len(v.problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Second)
	}
	s.event("settled")
	v := check(o)

	var sum struct {
		Deliveries       int `json:"deliveries"`
		DeliveriesFailed int `json:"deliveries_failed"`
	}
	if err := getJSON(ctx, fakeGitHub+"/summary", &sum); err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	for _, j := range o.jobs {
		if !j.StartedAt.IsZero() {
			waits = append(waits, j.StartedAt.Sub(j.CreatedAt))
		}
	}
	slices.Sort(waits)
	t.Log("--- compose stack: summary")
	for _, e := range s.log {
		t.Log("event " + e)
	}
	t.Logf("jobs: %d sent, %d run on their flavor, %d lost, %d on another flavor's runner", len(want), v.ran, v.lost, v.wrongFlavor)
	if len(waits) > 0 {
		t.Logf("queued to started: p50 %s, p95 %s, max %s", waits[len(waits)/2].Round(time.Millisecond),
			waits[len(waits)*95/100].Round(time.Millisecond), waits[len(waits)-1].Round(time.Millisecond))
	}
	t.Logf("webhook deliveries through the balancer: %d, failed %d (the janitor has them redelivered)", sum.Deliveries, sum.DeliveriesFailed)
	for _, f := range o.status.Flavors {
		t.Logf("capacity %s: peak %d instances at once, max_runners %d", f.Name, o.sim.MaxLive[f.Name], f.MaxRunners)
	}
	t.Logf("cloud: %d instances created, %d deleted", o.sim.Created, o.sim.Deleted)
	slots, queued, pending := 0, 0, uint64(0)
	for _, f := range o.status.Flavors {
		slots, queued, pending = slots+f.SlotsInUse, queued+f.Queued, pending+f.Pending
	}
	t.Logf("left at the end: %d instances, %d registered runners, %d slots in use, %d jobs queued, %d events pending, %d dead letters",
		len(o.sim.Instances), o.runners, slots, queued, pending, o.status.DeadLetters)
	if cs, err := s.containers(ctx); err == nil {
		for _, c := range cs {
			if c.State != "running" {
				t.Logf("container %s is %s (killed, not restarted)", c.Name, c.State)
			}
		}
	}
	for _, p := range v.problems {
		t.Error(p)
	}
}
