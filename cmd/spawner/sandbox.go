package main

import (
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/github/githubtest"
)

// sandboxFlags shape `serve --sandbox`: everything in one process with a fake GitHub
// that sends jobs, on real LXD containers when a daemon is reachable, else on the
// simulated backend.
type sandboxFlags struct {
	enabled      bool
	jobs         int
	backend      string
	exitWhenDone bool
	dir          string
}

func (s *sandboxFlags) register(flags interface {
	BoolVar(*bool, string, bool, string)
	IntVar(*int, string, int, string)
	StringVar(*string, string, string, string)
}) {
	flags.BoolVar(&s.enabled, "sandbox", false, "try it out: a fake GitHub sends jobs; runners on LXD if a daemon answers, else simulated (no config file needed)")
	flags.IntVar(&s.jobs, "sandbox-jobs", 12, "jobs the sandbox's fake GitHub sends")
	flags.StringVar(&s.backend, "sandbox-backend", "auto", "auto (lxd when reachable, else sim), lxd or sim")
	flags.BoolVar(&s.exitWhenDone, "exit-when-done", false, "stop once the sandbox's jobs are done (default: keep serving)")
	flags.StringVar(&s.dir, "sandbox-dir", filepath.Join(os.TempDir(), "spawner-sandbox"), "where the sandbox keeps its state and config (wiped at start)")
}

// runSandbox builds the sandbox's config, starts the fake GitHub and serves.
func runSandbox(ctx context.Context, sf *sandboxFlags, stdout, stderr io.Writer) error {
	if err := os.RemoveAll(sf.dir); err != nil {
		return fmt.Errorf("sandbox dir: %w", err)
	}
	if err := os.MkdirAll(sf.dir, 0o700); err != nil {
		return fmt.Errorf("sandbox dir: %w", err)
	}
	say := func(format string, args ...any) { fmt.Fprintf(stdout, "sandbox: "+format+"\n", args...) }

	backend, bridge, why := chooseSandboxBackend(ctx, sf.backend)
	say("%s", why)
	ghHost := "127.0.0.1"
	if backend == config.BackendLXD {
		ghHost = bridge // containers reach the fake GitHub and the bootstrap endpoint on the bridge
	}
	token := randomHex(16)
	secret := randomHex(24)
	gh := githubtest.NewServer(githubtest.Options{
		Addr: net.JoinHostPort(ghHost, "0"), Token: token, WebhookSecret: secret,
		JobDuration: 2 * time.Second, RateLimit: 100000,
		Logger: slog.New(slog.DiscardHandler),
	})
	defer gh.Close()

	webAddr := pickAddr("127.0.0.1:8080")
	cfgText := sandboxConfig(sandboxParams{
		Dir: sf.dir, NATS: pickAddr("127.0.0.1:4222"), Webhook: webAddr,
		Bootstrap: pickAddr(net.JoinHostPort(ghHost, "8081")), GitHubURL: gh.URL(), Token: token,
		Secret: secret, Backend: backend,
	})
	cfgPath := filepath.Join(sf.dir, "spawner.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		printConfigErrors(stderr, cfgPath, err)
		return fmt.Errorf("sandbox config is not valid (a bug: please report it)")
	}
	cfg.Log.Format = "text"
	cfg.Log.Level = "warn"
	a := newApp(cfg, stderr)
	gh.SetWebhookTarget("http://"+webAddr+cfg.Webhook.Path, secret)
	say("fake GitHub at %s; webhooks to http://%s%s; config %s", gh.URL(), webAddr, cfg.Webhook.Path, cfgPath)
	say("watch it:  spawner status --config %s   (and: spawner runners list --config %s)", cfgPath, cfgPath)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	feedDone := make(chan error, 1)
	go func() { feedDone <- feedSandbox(ctx, gh, sf, say, cancel) }()
	err = a.serve(ctx, map[string]bool{"webhook": true, "consumer": true, "janitor": true})
	if ferr := <-feedDone; ferr != nil && !errors.Is(ferr, context.Canceled) {
		return ferr
	}
	return err
}

// chooseSandboxBackend picks LXD when asked for (or, with auto, when the daemon
// answers, has the tiny image and this binary can run inside a container), else the
// simulated backend, and says why.
func chooseSandboxBackend(ctx context.Context, want string) (backend, bridge, why string) {
	if want == config.BackendSim {
		return config.BackendSim, "", "backend sim (simulated instances; no real job runs)"
	}
	var reasons []string
	bridge, err := bridgeAddress("lxdbr0")
	if err != nil {
		reasons = append(reasons, err.Error())
	}
	probe := config.Defaults()
	probe.Flavors = []config.Flavor{{Name: "probe", Backend: config.BackendLXD, LXD: &config.LXDFlavor{Image: "tiny"}}}
	if err := lxdReachable(ctx, probe); err != nil {
		reasons = append(reasons, err.Error())
	}
	if err := staticBinary(); err != nil {
		reasons = append(reasons, err.Error())
	}
	if len(reasons) == 0 {
		return config.BackendLXD, bridge, fmt.Sprintf("backend lxd: real containers (image tiny) on bridge %s; each runs the spawner's fake runner against the fake GitHub", bridge)
	}
	if want == config.BackendLXD {
		return config.BackendLXD, bridge, "backend lxd requested, though: " + strings.Join(reasons, "; ")
	}
	return config.BackendSim, "", "backend sim (simulated instances; no real job runs) because LXD is not usable here: " + strings.Join(reasons, "; ") + " (scripts/lxd-setup.sh sets it up)"
}

func bridgeAddress(name string) (string, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return "", fmt.Errorf("no %s bridge", name)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.String(), nil
		}
	}
	return "", fmt.Errorf("bridge %s has no IPv4 address", name)
}

// staticBinary: containers run this very binary (served by the bootstrap endpoint),
// so it must not need the host's C library.
func staticBinary() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	f, err := elf.Open(exe)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", exe, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("this spawner binary is dynamically linked (build it with CGO_ENABLED=0 to run it inside containers)")
		}
	}
	return nil
}

func pickAddr(preferred string) string {
	if l, err := net.Listen("tcp", preferred); err == nil {
		l.Close()
		return preferred
	}
	host, _, _ := net.SplitHostPort(preferred)
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return preferred
	}
	defer l.Close()
	return l.Addr().String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type sandboxParams struct {
	Dir, NATS, Webhook, Bootstrap, GitHubURL, Token, Secret, Backend string
}

func sandboxConfig(p sandboxParams) string {
	flavor := func(name, label string, max int) string {
		s := fmt.Sprintf("  - name: %s\n    labels: [%s]\n    max_runners: %d\n    backend: %s\n", name, label, max, p.Backend)
		if p.Backend == config.BackendLXD {
			s += "    lxd: {image: tiny, bootstrap: cloud-init}\n" +
				"    runner:\n" +
				"      command: /run/spawner-hooks/spawner dev runner\n" +
				"      fetch_spawner_binary: true\n" +
				"      user_data: script\n" +
				"      idle_ttl: 30s\n"
		} else {
			s += "    sim: {boot_time: 500ms, boot_jitter: 500ms}\n    runner: {idle_ttl: 30s}\n"
		}
		return s
	}
	return fmt.Sprintf(`# Written by spawner serve --sandbox: a fake GitHub, throwaway secrets.
state_dir: %s
log: {level: warn, format: text}
github: {url: %q, path: octo-org, token: %s}
nats: {listen: %s}
webhook: {listen: %s, secrets: [%s]}
bootstrap: {listen: %s, serve_binary: true}
janitor: {interval: 5s}
routing: {default_flavor: small}
flavors:
%s%s`, filepath.Join(p.Dir, "state"), p.GitHubURL, p.Token, p.NATS, p.Webhook, p.Secret, p.Bootstrap,
		flavor("small", "small", 3), flavor("large", "large", 2))
}

// feedSandbox makes the fake GitHub queue jobs, reports each as it completes and a
// summary at the end; with exit-when-done it then stops the sandbox.
func feedSandbox(ctx context.Context, gh *githubtest.Server, sf *sandboxFlags, say func(string, ...any), stop func()) error {
	// Let the receiver come up before the first webhook.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Second):
	}
	say("queueing %d jobs (labels small or large; each runs 2s)", sf.jobs)
	flavorOf := map[int64]string{}
	for i := range sf.jobs {
		f := []string{"small", "large"}[i%3/2]
		j := gh.CreateJob(githubtest.JobSpec{Labels: []string{"self-hosted", "linux", f}, Name: fmt.Sprintf("job-%d", i+1)})
		flavorOf[j.ID] = f
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	reported := map[int64]bool{}
	var waits []time.Duration
	deadline := time.Now().Add(10 * time.Minute)
	for len(reported) < len(flavorOf) {
		for _, j := range gh.Jobs() {
			if j.Status != "completed" || reported[j.ID] || flavorOf[j.ID] == "" {
				continue
			}
			reported[j.ID] = true
			if j.StartedAt.IsZero() {
				say("job %d (%s) %s without a runner", j.ID, flavorOf[j.ID], j.Conclusion)
				continue
			}
			wait := j.StartedAt.Sub(j.CreatedAt)
			waits = append(waits, wait)
			say("job %d (%-5s) queued → running on %s after %s; %s", j.ID, flavorOf[j.ID], j.RunnerName, wait.Round(10*time.Millisecond), j.Conclusion)
		}
		if time.Now().After(deadline) {
			say("gave up waiting: %d of %d jobs done", len(reported), len(flavorOf))
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	slices.Sort(waits)
	if len(waits) > 0 {
		say("done: %d jobs; queued → running p50 %s, max %s (includes boot and fetching the runner config)",
			len(waits), waits[len(waits)/2].Round(10*time.Millisecond), waits[len(waits)-1].Round(10*time.Millisecond))
	}
	if sf.exitWhenDone {
		// Give the janitor a moment to reap the last idle runners, then stop.
		select {
		case <-ctx.Done():
		case <-time.After(3 * time.Second):
		}
		stop()
		return nil
	}
	say("the sandbox keeps serving (Ctrl-C to stop); idle runners are reaped after 30s")
	return nil
}
