// Package sandbox is `spawner serve --sandbox`: the whole spawner in one process with a
// fake GitHub that queues jobs and sends signed webhooks, on real LXD containers when
// a daemon is usable, else on simulated instances. It writes the config, starts the
// fake, hands the config to the caller's serve, and reports each job.
//
// It is a dev tool: product packages never import it.
package sandbox

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
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
)

// Options shape a sandbox run.
type Options struct {
	// Jobs is how many jobs the fake GitHub sends.
	Jobs int
	// Backend is auto (lxd when usable, else sim), lxd or sim.
	Backend string
	// ExitWhenDone stops the sandbox once its jobs are done.
	ExitWhenDone bool
	// Dir keeps the sandbox's state and config (wiped at start).
	Dir            string
	Stdout, Stderr io.Writer
	// LXDReachable says whether the LXD server of a config answers and has its images.
	LXDReachable func(ctx context.Context, cfg *config.File) error
	// Serve runs the spawner with every role on cfg until ctx ends.
	Serve func(ctx context.Context, cfg *config.File) error
}

// Run builds the sandbox's config, starts the fake GitHub and serves.
func Run(ctx context.Context, sf Options) error {
	stdout := sf.Stdout
	if err := os.RemoveAll(sf.Dir); err != nil {
		return fmt.Errorf("sandbox dir: %w", err)
	}
	if err := os.MkdirAll(sf.Dir, 0o700); err != nil {
		return fmt.Errorf("sandbox dir: %w", err)
	}
	say := func(format string, args ...any) { fmt.Fprintf(stdout, "sandbox: "+format+"\n", args...) }

	backend, bridge, why := chooseBackend(ctx, sf.Backend, sf.LXDReachable)
	say("%s", why)
	ghHost := "127.0.0.1"
	if backend == config.BackendLXD {
		ghHost = bridge // containers reach the fake GitHub and the bootstrap endpoint on the bridge
	}
	token := randomHex(16)
	secret := randomHex(24)
	gh := fakegithub.NewServer(fakegithub.Options{
		Addr: net.JoinHostPort(ghHost, "0"), Token: token, WebhookSecret: secret,
		JobDuration: 2 * time.Second, RateLimit: 100000,
		Logger: slog.New(slog.DiscardHandler),
	})
	defer gh.Close()

	webAddr := pickAddr("127.0.0.1:8080")
	cfgText := sandboxConfig(sandboxParams{
		Dir: sf.Dir, NATS: pickAddr("127.0.0.1:4222"), Webhook: webAddr,
		Bootstrap: pickAddr(net.JoinHostPort(ghHost, "8081")), GitHubURL: gh.URL(), Token: token,
		Secret: secret, Backend: backend,
	})
	cfgPath := filepath.Join(sf.Dir, "spawner.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		return fmt.Errorf("sandbox config %s is not valid (a bug: please report it): %w", cfgPath, err)
	}
	cfg.Log.Format = "text"
	cfg.Log.Level = "warn"
	gh.SetWebhookTarget("http://"+webAddr+cfg.Webhook.Path, secret)
	say("fake GitHub at %s; webhooks to http://%s%s; config %s", gh.URL(), webAddr, cfg.Webhook.Path, cfgPath)
	say("watch it:  spawner status --config %s   (and: spawner runners list --config %s)", cfgPath, cfgPath)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	feedDone := make(chan error, 1)
	go func() { feedDone <- feedSandbox(ctx, gh, sf, say, cancel) }()
	err = sf.Serve(ctx, cfg)
	if ferr := <-feedDone; ferr != nil && !errors.Is(ferr, context.Canceled) {
		return ferr
	}
	return err
}

// chooseSandboxBackend picks LXD when asked for (or, with auto, when the daemon
// answers, has the tiny image and this binary can run inside a container), else the
// simulated backend, and says why.
func chooseBackend(ctx context.Context, want string, lxdReachable func(context.Context, *config.File) error) (backend, bridge, why string) {
	if want == config.BackendSim {
		return config.BackendSim, "", "backend sim (simulated instances; no real job runs)"
	}
	var reasons []string
	bridge, err := BridgeAddress("lxdbr0")
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

// BridgeAddress is the IPv4 address of the host bridge name (lxdbr0): where LXD
// containers reach services on the host.
func BridgeAddress(name string) (string, error) {
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
	_, _ = rand.Read(b) // crypto/rand never fails on Linux; a sandbox's secrets are throwaway anyway
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
func feedSandbox(ctx context.Context, gh *fakegithub.Server, sf Options, say func(string, ...any), stop func()) error {
	// Let the receiver come up before the first webhook.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Second):
	}
	say("queueing %d jobs (labels small or large; each runs 2s)", sf.Jobs)
	flavorOf := map[int64]string{}
	for i := range sf.Jobs {
		f := []string{"small", "large"}[i%3/2]
		j := gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux", f}, Name: fmt.Sprintf("job-%d", i+1)})
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
	if sf.ExitWhenDone {
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
