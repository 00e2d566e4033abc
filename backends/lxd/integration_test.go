package lxd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/backends/backendtest"
	"github.com/runner-spawner/runner-spawner/internal/realservice"
	"github.com/runner-spawner/runner-spawner/internal/syncbuf"
)

// The tests in this file run against the real LXD daemon that scripts/lxd-setup.sh
// sets up (socket /var/lib/lxd/unix.socket, bridge lxdbr0, image alias "tiny").
// Without one they skip and say why; CI sets SPAWNER_REQUIRE_LXD=1, which turns the
// skip into a failure so that a broken setup cannot pass unnoticed.

const (
	testImage  = "tiny"
	testBridge = "lxdbr0"
)

// stallTimeout bounds each request of the real-LXD tests. Twice in CI-like runs (a
// daemon just restarted after a kill, the host busy with OpenStack and the race
// build) LXD 5.0.2 stopped answering for about 90 s as four containers started at
// once: their lxc hooks timed out, and every other request waited meanwhile. The
// backend gets through that (a failed start is retried once; the consumer retries
// the rest); the tests wait it out rather than fail on the default 30 s.
const stallTimeout = 3 * time.Minute

// realClient returns a client of the local daemon once it has checked the daemon
// answers and holds the test image.
func realClient(tb testing.TB) *Client {
	tb.Helper()
	c, err := NewClient(ClientOptions{Timeout: stallTimeout})
	if err != nil {
		tb.Fatalf("NewClient: %v", err)
	}
	tb.Cleanup(c.Close)
	// A daemon that is not there fails at once (no socket); only a stalled one waits.
	ctx, cancel := context.WithTimeout(context.Background(), stallTimeout)
	defer cancel()
	if _, err := c.Server(ctx); err != nil {
		realservice.LXD.Unavailable(tb, "no LXD daemon answers at %s (%v)", c.Endpoint(), err)
	}
	if ok, err := c.HasImage(ctx, testImage); !ok || err != nil {
		realservice.LXD.Unavailable(tb, "LXD has no image %q (%v)", testImage, err)
	}
	return c
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testDeployment is unique per test run, so parallel runs on one daemon never see
// each other's instances.
func testDeployment() string { return "t" + randHex(4) }

func realBackend(tb testing.TB, c *Client, o Options) *Backend {
	tb.Helper()
	if o.Image == "" {
		o.Image = testImage
	}
	b, err := New(c, o)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return b
}

// rawDelete removes an instance whatever its tags: test cleanup only.
func rawDelete(c *Client, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = retryBusy(ctx, func() error {
		return c.SetInstanceState(ctx, name, InstanceStatePut{Action: "stop", Force: true, Timeout: -1})
	})
	_ = retryBusy(ctx, func() error { return c.DeleteInstance(ctx, name) })
}

func TestContractOnRealLXD(t *testing.T) {
	c := realClient(t)
	dep := testDeployment()
	const flavor = "tiny"
	with := func(edit func(*Options)) func(t *testing.T) backends.Backend {
		return func(t *testing.T) backends.Backend {
			o := Options{DeploymentID: dep, Flavor: flavor}
			if edit != nil {
				edit(&o)
			}
			return realBackend(t, c, o)
		}
	}
	backendtest.Run(t, backendtest.Harness{
		Flavor: flavor,
		New:    with(nil),
		BadSettings: map[string]func(t *testing.T) backends.Backend{
			"missing image":             with(func(o *Options) { o.Image = "no-such-image-" + randHex(3) }),
			"missing fingerprint":       with(func(o *Options) { o.Image = "0123456789abcdef" }),
			"missing profile":           with(func(o *Options) { o.Profiles = []string{"default", "no-such-profile"} }),
			"missing storage pool":      with(func(o *Options) { o.StoragePool = "no-such-pool" }),
			"missing network":           with(func(o *Options) { o.Network = "no-such-network" }),
			"unknown config key":        with(func(o *Options) { o.Config = map[string]string{"no.such.key": "1"} }),
			"vm from a container image": with(func(o *Options) { o.Type = TypeVM }),
		},
		PlantForeign: func(t *testing.T) string {
			name := "foreign-" + randHex(3)
			t.Cleanup(func() { rawDelete(c, name) })
			// Another deployment's instance of the same flavor: as foreign as it gets.
			err := c.CreateInstance(t.Context(), InstancesPost{
				Name:   name,
				Source: InstanceSource{Type: "image", Alias: testImage},
				Config: map[string]string{TagPrefix + "deployment": "other", TagPrefix + "flavor": flavor},
			})
			if err != nil {
				t.Fatalf("plant foreign instance: %v", err)
			}
			return name
		},
		Exists: func(t *testing.T, name string) bool {
			_, err := c.Instance(t.Context(), name)
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatalf("look up %s: %v", name, err)
			}
			return err == nil
		},
		Settle: 20 * time.Second,
	})
}

// callbacks is an HTTP server on the bridge address, where instances call home the
// way a runner's bootstrap does.
type callbacks struct {
	url string
	got chan string // the token of each call
}

func listenOnBridge(t *testing.T, c *Client) *callbacks {
	t.Helper()
	n, err := c.Network(t.Context(), testBridge)
	if err != nil {
		realservice.LXD.Unavailable(t, "no bridge %s (%v)", testBridge, err)
	}
	ip, _, _ := strings.Cut(n.Config["ipv4.address"], "/")
	if net.ParseIP(ip) == nil {
		realservice.LXD.Unavailable(t, "bridge %s has no IPv4 address (%q)", testBridge, n.Config["ipv4.address"])
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on the bridge address: %v", err)
	}
	cb := &callbacks{got: make(chan string, 10)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cb.got <- r.URL.Query().Get("token")
		fmt.Fprintln(w, "ok")
	}))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	cb.url = srv.URL + "/callback"
	return cb
}

func (cb *callbacks) wait(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case tok := <-cb.got:
		return tok
	case <-time.After(timeout):
		t.Fatalf("no callback from the instance within %v", timeout)
	}
	return ""
}

// execSpec is the spec of an exec-bootstrap instance of flavor that calls cb home
// with a fresh token, which it returns too. The instance is named after the flavor.
func (cb *callbacks) execSpec(flavor string, jobID int64) (backends.InstanceSpec, string) {
	token := "tok-" + randHex(8)
	return backends.InstanceSpec{
		Name: flavor + "-" + randHex(3), Flavor: flavor, JobID: jobID,
		// No shebang: the backend runs it with /bin/sh.
		Script: "URL=$SPAWNER_BOOTSTRAP_URL TOKEN=$SPAWNER_BOOTSTRAP_TOKEN\nfor i in $(seq 1 100); do " + callHome,
		Env: map[string]string{
			"SPAWNER_BOOTSTRAP_URL":   cb.url,
			"SPAWNER_BOOTSTRAP_TOKEN": token,
			"SPAWNER_RUNNER_NAME":     flavor,
		},
	}, token
}

// callHome is a bootstrap that calls the URL with the token (retrying while DHCP
// settles) and then powers the instance off, as a single-use runner does.
const callHome = `timeout 5 wget -q -O /dev/null "$URL?token=$TOKEN" && break; sleep 0.2; done
poweroff
`

func TestBootstrapCloudInitOnRealLXD(t *testing.T) {
	c := realClient(t)
	cb := listenOnBridge(t, c)
	b := realBackend(t, c, Options{DeploymentID: testDeployment(), Flavor: "ci", Bootstrap: BootstrapCloudInit})
	token := "tok-" + randHex(8)
	spec := backends.InstanceSpec{
		Name: "ci-" + randHex(3), Flavor: "ci", JobID: 7,
		UserData: "#!/bin/sh\nURL=" + cb.url + " TOKEN=" + token + "\nfor i in $(seq 1 100); do " + callHome,
	}
	t.Cleanup(func() { rawDelete(c, spec.Name) })
	if _, err := b.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got := cb.wait(t, 30*time.Second); got != token {
		t.Errorf("callback token = %q, want %q", got, token)
	}
	waitState(t, b, spec.Name, backends.StateStopped, 20*time.Second)
	if err := b.Delete(t.Context(), spec.Name); err != nil {
		t.Errorf("Delete: %v", err)
	}
}

func TestBootstrapExecOnRealLXD(t *testing.T) {
	c := realClient(t)
	cb := listenOnBridge(t, c)
	b := realBackend(t, c, Options{DeploymentID: testDeployment(), Flavor: "ex", Bootstrap: BootstrapExec})
	spec, token := cb.execSpec("ex", 8)
	t.Cleanup(func() { rawDelete(c, spec.Name) })
	if _, err := b.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	// The token must be nowhere in what LXD stores about the instance.
	r, err := c.do(t.Context(), request{method: http.MethodGet, path: instancePath(spec.Name)})
	if err != nil {
		t.Fatalf("read instance: %v", err)
	}
	if strings.Contains(string(r.Metadata), token) {
		t.Errorf("the bootstrap token is in the instance's configuration:\n%s", r.Metadata)
	}
	if got := cb.wait(t, 30*time.Second); got != token {
		t.Errorf("callback token = %q, want %q", got, token)
	}
	waitState(t, b, spec.Name, backends.StateStopped, 20*time.Second)
	if err := b.Delete(t.Context(), spec.Name); err != nil {
		t.Errorf("Delete: %v", err)
	}
}

// TestCreateResumesHalfMadeInstance: an instance of ours that was created but never
// started (a crash between the two) is started by the next Create, not returned dead.
func TestCreateResumesHalfMadeInstanceOnRealLXD(t *testing.T) {
	c := realClient(t)
	b := realBackend(t, c, Options{DeploymentID: testDeployment(), Flavor: "hm"})
	spec := backends.InstanceSpec{Name: "hm-" + randHex(3), Flavor: "hm", JobID: 9, UserData: "#!/bin/sh\ntrue\n"}
	t.Cleanup(func() { rawDelete(c, spec.Name) })
	if err := c.CreateInstance(t.Context(), b.post(spec)); err != nil {
		t.Fatalf("raw create: %v", err)
	}
	list, err := b.List(t.Context())
	if err != nil || len(list) != 1 || list[0].State != backends.StatePending {
		t.Fatalf("List of a created, never started instance = %+v, %v; want one pending", list, err)
	}
	inst, err := b.Create(t.Context(), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if inst.State != backends.StateRunning {
		t.Errorf("Create returned state %s, want running", inst.State)
	}
}

func waitState(t *testing.T, b *Backend, name string, want backends.State, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last []backends.Instance
	for time.Now().Before(deadline) {
		list, err := b.List(t.Context())
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		for _, in := range list {
			if in.Name == name && in.State == want {
				return
			}
		}
		last = list
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("instance %s not %s within %v; List: %+v", name, want, timeout, last)
}

// TestBootstrapCloudConfigOnRealLXD runs real cloud-init (image "deb12", built by
// scripts/lxd-setup.sh image deb12, which scripts/test.sh runs) on #cloud-config
// user-data. Without the image it skips, or fails where real LXD is required; it takes
// about 15 s on a dir pool.
func TestBootstrapCloudConfigOnRealLXD(t *testing.T) {
	const image = "deb12"
	realservice.ImageDeb12.Await(t)
	c := realClient(t)
	if ok, err := c.HasImage(t.Context(), image); !ok || err != nil {
		realservice.LXD.Unavailable(t, "no image %q (%v): build it with scripts/lxd-setup.sh image %s", image, err, image)
	}
	cb := listenOnBridge(t, c)
	b := realBackend(t, c, Options{DeploymentID: testDeployment(), Flavor: "cc", Image: image})
	token := "tok-" + randHex(8)
	spec := backends.InstanceSpec{
		Name: "cc-" + randHex(3), Flavor: "cc", JobID: 10,
		UserData: "#cloud-config\nruncmd:\n  - [sh, -c, 'for i in $(seq 1 50); do wget -q -O /dev/null \"" + cb.url + "?token=" + token + "\" && break; sleep 0.2; done; poweroff']\n",
	}
	t.Cleanup(func() { rawDelete(c, spec.Name) })
	if _, err := b.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got := cb.wait(t, 90*time.Second); got != token {
		t.Errorf("callback token = %q, want %q", got, token)
	}
	waitState(t, b, spec.Name, backends.StateStopped, 60*time.Second)
}

// TestFailedStartOnRealLXD: a start LXD cannot do (a pre-start hook that fails, as
// the hooks that time out under a burst do) is retried once, then the instance is
// removed and the error carries the errors of its lxc.log.
func TestFailedStartOnRealLXD(t *testing.T) {
	c := realClient(t)
	t.Parallel() // about a minute of waiting in LXD: two starts of 30 s each
	var logs syncbuf.Buffer
	b := realBackend(t, c, Options{
		DeploymentID: testDeployment(), Flavor: "hookfail",
		Config: map[string]string{"raw.lxc": "lxc.hook.pre-start = /bin/false"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	spec := backends.InstanceSpec{Name: "hf-" + randHex(3), Flavor: "hookfail", JobID: 10, UserData: "#!/bin/sh\ntrue\n"}
	t.Cleanup(func() { rawDelete(c, spec.Name) })
	_, err := b.Create(t.Context(), spec)
	if err == nil {
		t.Fatal("Create succeeded with a pre-start hook that fails")
	}
	t.Logf("Create: %v", err)
	if errors.Is(err, backends.ErrBadSpec) || errors.Is(err, backends.ErrQuota) {
		t.Errorf("Create = %v, want a transient error", err)
	}
	if !strings.Contains(err.Error(), "Failed to run lxc.hook.pre-start") {
		t.Errorf("Create = %v, want the instance log's reason", err)
	}
	if _, err := c.Instance(t.Context(), spec.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("the instance of a failed Create is still there (%v)", err)
	}
	if n := strings.Count(logs.String(), "start failed; retrying once"); n != 1 {
		t.Errorf("%d retries of the start logged, want 1:\n%s", n, logs.String())
	}
}

// TestEphemeralGoesByItselfOnRealLXD: a finished runner's ephemeral instance is left
// to LXD, which deletes it as the runner powers it off, and the instance-deleted
// event of the real daemon's stream ends the wait: no stop, no delete from us.
func TestEphemeralGoesByItselfOnRealLXD(t *testing.T) {
	c := realClient(t)
	cb := listenOnBridge(t, c)
	var logs syncbuf.Buffer
	b := realBackend(t, c, Options{DeploymentID: testDeployment(), Flavor: "eph", Bootstrap: BootstrapExec, Ephemeral: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	spec, token := cb.execSpec("eph", 9)
	t.Cleanup(func() { rawDelete(c, spec.Name) })
	if _, err := b.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got := cb.wait(t, 30*time.Second); got != token {
		t.Fatalf("callback token = %q, want %q", got, token)
	}
	// The runner has said it is done and is powering off, as after its job.
	start := time.Now()
	if err := b.DeleteFinished(t.Context(), spec.Name); err != nil {
		t.Fatalf("DeleteFinished: %v", err)
	}
	t.Logf("instance gone %v after the runner finished; log:\n%s", time.Since(start).Round(time.Millisecond), logs.String())
	if _, err := c.Instance(t.Context(), spec.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("instance still there after DeleteFinished (lookup: %v)", err)
	}
	out := logs.String()
	if !strings.Contains(out, "seen_by=event") && !strings.Contains(out, `seen_by="before the wait"`) {
		t.Errorf("the instance's going was not seen on the event stream; log:\n%s", out)
	}
	if strings.Contains(out, "through the API") {
		t.Errorf("fell back to deleting through the API; log:\n%s", out)
	}
}
