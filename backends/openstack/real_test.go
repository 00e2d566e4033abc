package openstack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/backends/backendtest"
	"github.com/runner-spawner/runner-spawner/internal/realservice"
)

// The real cloud is the one scripts/openstack-setup.sh brings up: clouds osdev-admin
// (password), osdev-appcred (application credential) and osdev-quota (a project with
// room for one instance); image cirros-fake, flavors m1.tiny and m1.novalidhost,
// network private.
const (
	realAdminCloud  = "osdev-admin"
	realAppCred     = "osdev-appcred"
	realQuotaCloud  = "osdev-quota"
	realImage       = "cirros-fake"
	realNovaFlavor  = "m1.tiny"
	realNoValidHost = "m1.novalidhost"
	realNetwork     = "private"
	// Nova deletes asynchronously; with the fake driver a delete is done in a second
	// or two, but a loaded machine (other suites, a compile) stretches that.
	realSettle = 90 * time.Second
)

// realCloudsFile is the clouds.yaml of the test cloud; SPAWNER_OPENSTACK_CLOUDS_FILE
// points the tests at another file with the same entries.
func realCloudsFile() string {
	if f := os.Getenv("SPAWNER_OPENSTACK_CLOUDS_FILE"); f != "" {
		return f
	}
	return "/etc/openstack/clouds.yaml"
}

// realCloudPool shares one connection per cloud entry across the tests of this binary:
// one login each, as the spawner does.
type realCloudPool struct {
	mu     sync.Mutex
	clouds map[string]*Cloud
	errs   map[string]error
}

var realClouds = &realCloudPool{clouds: map[string]*Cloud{}, errs: map[string]error{}}

// realCloud connects to the named cloud of the local test cloud, or skips the test
// saying why; with SPAWNER_REQUIRE_OPENSTACK=1 (CI) it fails instead, so a suite that
// silently skipped can never pass there.
func realCloud(t testing.TB, name string) *Cloud {
	t.Helper()
	realservice.OpenStackCloud.Await(t)
	if _, err := os.Stat(realCloudsFile()); err != nil {
		realservice.OpenStack.Unavailable(t, "%v", err)
	}
	realClouds.mu.Lock()
	defer realClouds.mu.Unlock()
	if c, ok := realClouds.clouds[name]; ok {
		return c
	}
	if err, ok := realClouds.errs[name]; ok {
		realservice.OpenStack.Unavailable(t, "cloud %s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Connect(ctx, CloudOptions{Cloud: name, CloudsFile: realCloudsFile(), Timeout: 60 * time.Second,
		MaxConcurrentRequests: 8, RequestsPerSecond: 20})
	if err != nil {
		realClouds.errs[name] = err
		realservice.OpenStack.Unavailable(t, "cloud %s: %v", name, err)
	}
	realClouds.clouds[name] = c
	return c
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// realOptions are working settings for flavor on the local test cloud, with a
// deployment id of this test run's own so parallel runs never see each other.
func realOptions(flavor string) Options {
	return Options{
		DeploymentID:   "t" + randomID(4),
		Flavor:         flavor,
		Image:          realImage,
		NovaFlavor:     realNovaFlavor,
		Networks:       []string{realNetwork},
		SecurityGroups: []string{"default"},
		Metadata:       map[string]string{"purpose": "backend-test"},
	}
}

func mustNew(t testing.TB, c *Cloud, o Options) *Backend {
	t.Helper()
	b, err := New(c, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

// serversNamedRaw lists every server by that name through gophercloud directly.
func serversNamedRaw(t testing.TB, c *Cloud, name string) []servers.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pages, err := servers.List(c.compute, servers.ListOpts{Name: "^" + name + "$"}).AllPages(ctx)
	if err != nil {
		t.Fatalf("list servers named %s: %v", name, err)
	}
	all, err := servers.ExtractServers(pages)
	if err != nil {
		t.Fatalf("read servers: %v", err)
	}
	return slices.DeleteFunc(all, func(s servers.Server) bool { return s.Name != name })
}

// eventually polls f until it returns true or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestRealContract(t *testing.T) {
	c := realCloud(t, realAdminCloud)
	opts := realOptions("os-tiny")
	bad := func(edit func(*Options)) func(t *testing.T) backends.Backend {
		return func(t *testing.T) backends.Backend {
			o := opts
			edit(&o)
			return mustNew(t, c, o)
		}
	}
	backendtest.Run(t, backendtest.Harness{
		Flavor: opts.Flavor,
		New:    func(t *testing.T) backends.Backend { return mustNew(t, c, opts) },
		BadSettings: map[string]func(t *testing.T) backends.Backend{
			"missing image":          bad(func(o *Options) { o.Image = "no-such-image-" + randomID(3) }),
			"missing image id":       bad(func(o *Options) { o.Image = "00000000-0000-4000-8000-000000000000" }),
			"missing flavor":         bad(func(o *Options) { o.NovaFlavor = "no-such-flavor" }),
			"missing network":        bad(func(o *Options) { o.Networks = []string{"no-such-network"} }),
			"missing security group": bad(func(o *Options) { o.SecurityGroups = []string{"no-such-group"} }),
			"missing key pair":       bad(func(o *Options) { o.KeyName = "no-such-key" }),
			"missing zone":           bad(func(o *Options) { o.AvailabilityZone = "no-such-zone" }),
		},
		PlantForeign: func(t *testing.T) string {
			// A server made straight through gophercloud, without our markers, as an
			// operator or another tool would.
			name := "bt-foreign-" + randomID(3)
			ctx := t.Context()
			imageID, err := c.resolver.image(ctx, realImage)
			if err != nil {
				t.Fatalf("resolve image: %v", err)
			}
			netID, err := c.resolver.network(ctx, realNetwork)
			if err != nil {
				t.Fatalf("resolve network: %v", err)
			}
			s, err := servers.Create(ctx, c.compute, servers.CreateOpts{
				Name: name, ImageRef: imageID, FlavorRef: "1", Networks: []servers.Network{{UUID: netID}},
				Metadata: map[string]string{"owner": "someone-else"},
			}, nil).Extract()
			if err != nil {
				t.Fatalf("plant foreign server: %v", err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = servers.Delete(ctx, c.compute, s.ID).ExtractErr()
			})
			return name
		},
		Exists: func(t *testing.T, name string) bool { return len(serversNamedRaw(t, c, name)) > 0 },
		Settle: realSettle,
	})
}

// What Create sends is what the cloud stores: user-data byte for byte, the tags and
// the metadata, read back through the API (user-data needs an admin's token).
func TestRealUserDataAndMarkers(t *testing.T) {
	c := realCloud(t, realAdminCloud)
	if !c.ServerTags() {
		t.Fatalf("the test cloud announces no microversion %s", tagsMicroversion)
	}
	opts := realOptions("os-markers")
	b := mustNew(t, c, opts)
	spec := backends.InstanceSpec{
		Name:   opts.DeploymentID + "-markers-1",
		Flavor: opts.Flavor,
		JobID:  987654321,
		// Text that happens to be valid base64 must still arrive literally.
		UserData: "#cloud-config\nruncmd:\n  - [sh, -c, 'curl -fsS \"$URL\"']\n",
	}
	t.Cleanup(func() { _ = b.Delete(context.WithoutCancel(t.Context()), spec.Name) })
	in, err := b.Create(t.Context(), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	s, err := servers.Get(t.Context(), c.compute, in.ID).Extract()
	if err != nil {
		t.Fatalf("get server: %v", err)
	}
	if s.Userdata == nil {
		t.Fatal("server shows no user_data (the admin's token at microversion 2.3+ should see it)")
	}
	got, err := base64.StdEncoding.DecodeString(*s.Userdata)
	if err != nil || string(got) != spec.UserData {
		t.Errorf("user_data read back = %q (%v), want %q", got, err, spec.UserData)
	}
	for _, tag := range []string{"spawner_deployment=" + opts.DeploymentID, "spawner_flavor=" + opts.Flavor, "spawner_job=987654321"} {
		if s.Tags == nil || !slices.Contains(*s.Tags, tag) {
			t.Errorf("tags %v lack %q", s.Tags, tag)
		}
	}
	wantMeta := map[string]string{
		"spawner_deployment": opts.DeploymentID, "spawner_flavor": opts.Flavor,
		"spawner_runner": spec.Name, "spawner_job": "987654321", "purpose": "backend-test",
	}
	for k, v := range wantMeta {
		if s.Metadata[k] != v {
			t.Errorf("metadata[%s] = %q, want %q (all: %v)", k, s.Metadata[k], v, s.Metadata)
		}
	}
	eventually(t, 60*time.Second, "server never listed as running", func() bool {
		list, err := b.List(t.Context())
		return err == nil && len(list) == 1 && list[0].State == backends.StateRunning && list[0].JobID == spec.JobID
	})
}

// A server Nova cannot place goes to ERROR after Create returned; List reports it with
// Nova's fault, a Create of the same name deletes it and says ErrQuota, and Delete
// cleans whatever is left.
func TestRealNoValidHost(t *testing.T) {
	c := realCloud(t, realAdminCloud)
	opts := realOptions("os-novalid")
	opts.NovaFlavor = realNoValidHost
	b := mustNew(t, c, opts)
	spec := backends.InstanceSpec{Name: opts.DeploymentID + "-novalid-1", Flavor: opts.Flavor, JobID: 7, UserData: "#!/bin/sh\ntrue\n"}
	t.Cleanup(func() { _ = b.Delete(context.WithoutCancel(t.Context()), spec.Name) })

	if _, err := b.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v (the scheduling failure comes later)", err)
	}
	var failed backends.Instance
	eventually(t, 60*time.Second, "server never reported in StateError", func() bool {
		list, err := b.List(t.Context())
		if err != nil || len(list) != 1 {
			return false
		}
		failed = list[0]
		return failed.State == backends.StateError
	})
	if !strings.Contains(failed.Fault, "No valid host") {
		t.Errorf("Fault = %q, want Nova's \"No valid host was found\"", failed.Fault)
	}

	_, err := b.Create(t.Context(), spec)
	if !errors.Is(err, backends.ErrQuota) || !strings.Contains(err.Error(), "No valid host") {
		t.Errorf("Create over the ERROR server = %v, want ErrQuota with the fault", err)
	}
	if err := b.Delete(t.Context(), spec.Name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	eventually(t, realSettle, "ERROR server still exists after Delete", func() bool {
		return len(serversNamedRaw(t, c, spec.Name)) == 0
	})
}

// In a project with room for one instance, the create past it is ErrQuota with Nova's
// message.
func TestRealQuota(t *testing.T) {
	c := realCloud(t, realQuotaCloud)
	opts := realOptions("os-quota")
	opts.SecurityGroups = nil
	b := mustNew(t, c, opts)
	var names []string
	t.Cleanup(func() {
		for _, n := range names {
			_ = b.Delete(context.WithoutCancel(t.Context()), n)
		}
	})
	var err error
	// The quota is 1; a server left over in the project would use it up early, so
	// create until refused, a few times at most.
	for i := range 4 {
		spec := backends.InstanceSpec{Name: opts.DeploymentID + "-quota-" + string(rune('a'+i)), Flavor: opts.Flavor, JobID: int64(i)}
		names = append(names, spec.Name)
		if _, err = b.Create(t.Context(), spec); err != nil {
			break
		}
	}
	if !errors.Is(err, backends.ErrQuota) {
		t.Fatalf("Create past the instance quota = %v, want ErrQuota", err)
	}
	if !strings.Contains(err.Error(), "Quota exceeded") {
		t.Errorf("error %q lost Nova's message", err)
	}
	if errors.Is(err, backends.ErrBadSpec) {
		t.Errorf("quota error must not also be ErrBadSpec: %v", err)
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 403 || ae.RequestID == "" {
		t.Errorf("want an *APIError 403 with Nova's request id, got %#v", ae)
	}
}

// Both kinds of clouds.yaml entry log in, negotiate tags and can list.
func TestRealAuth(t *testing.T) {
	for _, name := range []string{realAdminCloud, realAppCred} {
		t.Run(name, func(t *testing.T) {
			c := realCloud(t, name)
			if !c.ServerTags() || c.Microversion() != tagsMicroversion {
				t.Errorf("microversion %q, tags %v; want %s with tags", c.Microversion(), c.ServerTags(), tagsMicroversion)
			}
			if c.projectID == "" {
				t.Error("token names no project")
			}
			b := mustNew(t, c, realOptions("os-auth"))
			list, err := b.List(t.Context())
			if err != nil || len(list) != 0 {
				t.Errorf("List of a fresh deployment = %v, %v; want empty", list, err)
			}
		})
	}
}
