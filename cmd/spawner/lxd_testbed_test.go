package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends/lxd"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
)

// lxdTestbed is what the real-LXD end-to-end tests share: the LXD client, the fake
// GitHub listening on the LXD bridge (the containers' runners reach it there), a
// free address on the bridge for the bootstrap endpoint, loopback addresses for the
// webhook receiver and NATS, a deployment id of the test's own (so that runs sharing
// the daemon never see each other's containers) and the runner profile.
type lxdTestbed struct {
	client     *lxd.Client
	bridge     string
	profile    string
	gh         *fakegithub.Server
	dir        string
	deployment string
	web, nats  string
	boot       string // host:port on the bridge
}

// newLXDTestbed requires LXD and starts the fake GitHub with opts (its address,
// token, webhook secret and rate limit are the testbed's). prefix starts the
// deployment id; profile is the runner profile to use (empty: a new one).
func newLXDTestbed(t *testing.T, prefix string, opts fakegithub.Options, profile string) *lxdTestbed {
	t.Helper()
	client, bridge := requireLXD(t)
	if profile == "" {
		profile = lxdRunnerProfile(t)
	}
	b := &lxdTestbed{client: client, bridge: bridge, profile: profile, dir: t.TempDir(), deployment: prefix + randomHex(3)}
	b.gh = lxdFakeGitHub(t, bridge, opts)
	b.web, b.nats = freeAddr(t), freeAddr(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(bridge, "0"))
	if err != nil {
		t.Fatal(err)
	}
	b.boot = ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return b
}

// lxdFakeGitHub is the fake GitHub of the real-LXD tests, with opts: on the LXD
// bridge, so that runners in containers reach it, with the tests' token, webhook
// secret, a budget no test spends and a runner-lost timeout that a container's boot
// never reaches (unless opts set them).
func lxdFakeGitHub(t *testing.T, bridge string, opts fakegithub.Options) *fakegithub.Server {
	t.Helper()
	opts.Addr, opts.Token, opts.WebhookSecret = net.JoinHostPort(bridge, "0"), "ghp_e2e", e2eSecret
	if opts.RateLimit == 0 {
		opts.RateLimit = 1_000_000
	}
	if opts.RunnerLostAfter == 0 {
		opts.RunnerLostAfter = 10 * time.Second
	}
	gh := fakegithub.NewServer(opts)
	t.Cleanup(gh.Close)
	return gh
}

// githubYAML is the config's github section for the testbed's fake (which has no
// secondary limit, and a budget no test spends).
func (b *lxdTestbed) githubYAML() string {
	return fmt.Sprintf("github: {url: %q, path: octo-org, token: ghp_e2e, rate_per_hour: 1000000, secondary_points_per_minute: 0}\n", b.gh.URL())
}

// flavorsYAML is the config's flavors list: each flavor on the tiny image with the
// runner profile, booted by cloud-init, running the fake runner; lxdExtra is added
// to each flavor's lxd section (", ephemeral: true"), flavorExtra (YAML, one key per
// line, unindented) to each flavor.
func (b *lxdTestbed) flavorsYAML(flavors []e2eFlavor, lxdExtra, flavorExtra string) string {
	extra := ""
	for line := range strings.Lines(flavorExtra) {
		extra += "    " + strings.TrimRight(line, "\n") + "\n"
	}
	var fl strings.Builder
	for _, f := range flavors {
		fmt.Fprintf(&fl, `  - name: %s
    labels: [%s]
    max_runners: %d
    backend: lxd
    lxd: {image: tiny, profiles: [default, %s], bootstrap: cloud-init%s}
    runner: {command: /opt/spawner/spawner dev runner, user_data: script, idle_ttl: 5s, boot_timeout: 60s}
%s`, f.name, f.label, f.max, b.profile, lxdExtra, extra)
	}
	return fl.String()
}

// lxdExists reports whether LXD has an instance of that name, for post-mortems.
func lxdExists(c *lxd.Client) func(name string) bool {
	return func(name string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.Instance(ctx, name)
		return err == nil
	}
}
