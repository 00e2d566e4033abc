package openstack

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/backends/backendtest"
	"github.com/runner-spawner/runner-spawner/backends/openstack/openstacktest"
)

// fakeCloud starts a fake and connects to it through a clouds.yaml, as the spawner
// connects to a real cloud.
func fakeCloud(t *testing.T, o openstacktest.Options) (*openstacktest.Cloud, *Cloud) {
	t.Helper()
	fake := openstacktest.New(t, o)
	c, err := Connect(t.Context(), CloudOptions{Cloud: openstacktest.CloudName, CloudsFile: fake.CloudsYAML(t), RequestsPerSecond: 1000})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(c.Close)
	return fake, c
}

func fakeOptions() Options {
	return Options{DeploymentID: "dep", Flavor: "small", Image: "cirros", NovaFlavor: "m1.tiny", Networks: []string{"private"}}
}

func spec(name string) backends.InstanceSpec {
	return backends.InstanceSpec{Name: name, Flavor: "small", JobID: 42, UserData: "#!/bin/sh\necho hi\n"}
}

// The contract suite on the fake: quick, and the same assertions as on a real cloud.
func TestFakeContract(t *testing.T) {
	fake, c := fakeCloud(t, openstacktest.Options{})
	fake.SetDeleteDelay(300 * time.Millisecond)
	opts := fakeOptions()
	backendtest.Run(t, backendtest.Harness{
		Flavor: "small",
		New:    func(t *testing.T) backends.Backend { return mustNew(t, c, opts) },
		BadSettings: map[string]func(t *testing.T) backends.Backend{
			"missing image": func(t *testing.T) backends.Backend {
				o := opts
				o.Image = "nope"
				return mustNew(t, c, o)
			},
		},
		PlantForeign: func(t *testing.T) string {
			fake.PutServer(openstacktest.Server{Name: "bt-foreign"})
			return "bt-foreign"
		},
		Exists: func(t *testing.T, name string) bool {
			for _, s := range fake.Servers() {
				if s.Name == name {
					return true
				}
			}
			return false
		},
		Settle: 5 * time.Second,
	})
}

func TestConnect(t *testing.T) {
	tests := []struct {
		name    string
		fake    openstacktest.Options
		cloud   string
		tls     bool
		wantMV  string
		wantErr string
	}{
		{name: "password", cloud: openstacktest.CloudName, wantMV: "2.52"},
		{name: "application credential", cloud: openstacktest.AppCredCloud, wantMV: "2.52"},
		{name: "old cloud without tags", fake: openstacktest.Options{MaxMicroversion: "2.25"}, cloud: openstacktest.CloudName, wantMV: ""},
		{name: "custom CA", fake: openstacktest.Options{TLS: true}, cloud: openstacktest.CloudName, tls: true, wantMV: "2.52"},
		{name: "unknown CA", fake: openstacktest.Options{TLS: true}, cloud: openstacktest.CloudName, wantErr: "certificate"},
		{name: "unknown cloud", cloud: "nope", wantErr: `cloud "nope" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := openstacktest.New(t, tt.fake)
			o := CloudOptions{Cloud: tt.cloud, CloudsFile: fake.CloudsYAML(t), Timeout: 5 * time.Second}
			if tt.tls {
				o.CAFile = fake.CAFile(t)
			}
			c, err := Connect(t.Context(), o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Connect = %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			if c.Microversion() != tt.wantMV || c.ServerTags() != (tt.wantMV != "") {
				t.Errorf("microversion %q tags %v, want %q", c.Microversion(), c.ServerTags(), tt.wantMV)
			}
			if c.projectID != openstacktest.ProjectID {
				t.Errorf("project %q, want %q", c.projectID, openstacktest.ProjectID)
			}
		})
	}
}

// One login serves every flavor, and an expired token is renewed once, transparently.
func TestTokenReuseAndRenewal(t *testing.T) {
	fake, c := fakeCloud(t, openstacktest.Options{})
	a := mustNew(t, c, fakeOptions())
	o := fakeOptions()
	o.Flavor = "large"
	b := mustNew(t, c, o)
	for _, be := range []*Backend{a, b, a} {
		if _, err := be.List(t.Context()); err != nil {
			t.Fatalf("List: %v", err)
		}
	}
	if n := fake.TokensIssued(); n != 1 {
		t.Errorf("%d logins for two flavors, want 1", n)
	}
	fake.ExpireTokens()
	if _, err := a.Create(t.Context(), spec("dep-after-expiry")); err != nil {
		t.Fatalf("Create after the token expired: %v", err)
	}
	if _, err := b.List(t.Context()); err != nil {
		t.Fatalf("List after renewal: %v", err)
	}
	if n := fake.TokensIssued(); n != 2 {
		t.Errorf("%d logins after one expiry, want 2", n)
	}
}

func TestCreateSendsEverything(t *testing.T) {
	fake, c := fakeCloud(t, openstacktest.Options{})
	o := fakeOptions()
	o.SecurityGroups = []string{"default"}
	o.KeyName = "ops"
	o.AvailabilityZone = "nova"
	o.BootVolumeSize = 20
	o.ConfigDrive = true
	o.Metadata = map[string]string{"cost_center": "ci"}
	b := mustNew(t, c, o)
	sp := spec("dep-everything")
	// Valid base64 on its own: it must still arrive literally.
	sp.UserData = "aGVsbG8="
	in, err := b.Create(t.Context(), sp)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	want := backends.Instance{Name: sp.Name, ID: in.ID, Backend: "openstack", Flavor: "small", JobID: 42, State: backends.StatePending, CreatedAt: in.CreatedAt}
	if diff := cmp.Diff(want, in); diff != "" {
		t.Errorf("Create returned (-want +got):\n%s", diff)
	}
	got := fake.Servers()
	if len(got) != 1 {
		t.Fatalf("%d servers, want 1", len(got))
	}
	s := got[0]
	ud, _ := base64.StdEncoding.DecodeString(s.UserData)
	if string(ud) != sp.UserData {
		t.Errorf("user_data decodes to %q, want %q", ud, sp.UserData)
	}
	wantServer := openstacktest.Server{
		ID: in.ID, Name: sp.Name, Status: "BUILD", FlavorID: "1",
		Networks:       []string{"6d0a3f4e-1111-4a2b-9c3d-000000000001"},
		SecurityGroups: []string{"9a8b7c6d-2222-4e3f-8a9b-000000000001"},
		KeyName:        "ops", AvailabilityZone: "nova", UserData: s.UserData, ConfigDrive: true,
		Metadata: map[string]string{"cost_center": "ci", "spawner_deployment": "dep", "spawner_flavor": "small",
			"spawner_runner": sp.Name, "spawner_job": "42"},
		Tags: []string{"spawner_deployment=dep", "spawner_flavor=small", "spawner_job=42"},
		BlockDevices: []map[string]any{{"source_type": "image", "uuid": "11111111-aaaa-4bbb-8ccc-000000000002",
			"destination_type": "volume", "volume_size": float64(20), "boot_index": float64(0), "delete_on_termination": true}},
		Created: s.Created, Microversion: "2.52",
	}
	if diff := cmp.Diff(wantServer, s, cmp.AllowUnexported(openstacktest.Server{})); diff != "" {
		t.Errorf("server as stored (-want +got):\n%s", diff)
	}
}

func TestCreateIsIdempotentWithOnePost(t *testing.T) {
	fake, c := fakeCloud(t, openstacktest.Options{})
	b := mustNew(t, c, fakeOptions())
	first, err := b.Create(t.Context(), spec("dep-once"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := mustNew(t, c, fakeOptions()).Create(t.Context(), spec("dep-once"))
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || again.State != backends.StateRunning {
		t.Errorf("second Create = %+v, want the first server (%s), now running", again, first.ID)
	}
	if n := fake.Requests("POST /compute/v2.1/servers"); n != 1 {
		t.Errorf("%d server creates sent, want 1", n)
	}
}

// Nova's refusals of a create, as real clouds word them, map onto the typed errors,
// and nothing is left behind.
func TestCreateErrorMapping(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		quota   bool
		badSpec bool
		// unknown: a 5xx may come from a proxy while nova-api goes on: the server may
		// still appear, and nothing was found to delete.
		unknown bool
		msg     string
	}{
		{"instance quota", 403, `{"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"}}`, true, false, false, "Quota exceeded for instances"},
		{"cores quota", 403, `{"forbidden": {"code": 403, "message": "Quota exceeded for cores: Requested 2, but already used 19 of 20 cores"}}`, true, false, false, "cores"},
		{"port quota", 403, `{"forbidden": {"code": 403, "message": "Maximum number of ports exceeded"}}`, true, false, false, "ports"},
		{"old over-limit", 413, `{"overLimit": {"code": 413, "message": "Quota exceeded for instances", "retryAfter": "0"}}`, true, false, false, "Quota"},
		{"policy refusal", 403, `{"forbidden": {"code": 403, "message": "Policy doesn't allow os_compute_api:servers:create to be performed."}}`, false, false, false, "Policy"},
		{"bad key pair", 400, `{"badRequest": {"code": 400, "message": "Invalid key_name provided."}}`, false, true, false, "key_name"},
		{"ambiguous network", 409, `{"conflictingRequest": {"code": 409, "message": "Multiple possible networks found, use a Network ID to be more specific."}}`, false, true, false, "Multiple possible networks"},
		{"internal error", 500, `{"computeFault": {"code": 500, "message": "Unexpected API Error."}}`, false, false, true, "Unexpected API Error"},
		{"unavailable", 503, `<html><body><h1>503 Service Unavailable</h1>No server is available to handle this request.</body></html>`, false, false, true, "503 Service Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, c := fakeCloud(t, openstacktest.Options{})
			b := mustNew(t, c, fakeOptions())
			fake.Fail("POST", "/compute/v2.1/servers", 1, tt.status, tt.body)
			_, err := b.Create(t.Context(), spec("dep-refused"))
			if err == nil {
				t.Fatal("Create succeeded, want an error")
			}
			if errors.Is(err, backends.ErrQuota) != tt.quota || errors.Is(err, backends.ErrBadSpec) != tt.badSpec {
				t.Errorf("Create = %v; quota %v bad spec %v, want %v %v", err, errors.Is(err, backends.ErrQuota), errors.Is(err, backends.ErrBadSpec), tt.quota, tt.badSpec)
			}
			if errors.Is(err, backends.ErrOutcomeUnknown) != tt.unknown {
				t.Errorf("Create = %v; outcome unknown %v, want %v", err, !tt.unknown, tt.unknown)
			}
			if !strings.Contains(err.Error(), tt.msg) || strings.Contains(err.Error(), "Expected HTTP response code") {
				t.Errorf("error %q should carry the service's message %q and not gophercloud's dump", err, tt.msg)
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tt.status || ae.RequestID == "" {
				t.Errorf("want *APIError %d with a request id, got %+v", tt.status, ae)
			}
			if n := len(fake.Servers()); n != 0 {
				t.Errorf("%d servers left behind", n)
			}
		})
	}
}

// A create whose answer never comes (Nova slow, caller's deadline) may have made a
// server: Create deletes it, and waits until it is gone, before returning. Having
// found it, it knows the outcome.
func TestCreateCleansUpAfterLostAnswer(t *testing.T) {
	fake, c := fakeCloud(t, openstacktest.Options{})
	fake.SetDeleteDelay(300 * time.Millisecond)
	b := mustNew(t, c, fakeOptions())
	fake.SetCreateDelay(2 * time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := b.Create(ctx, spec("dep-lost"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Create = %v, want the deadline", err)
	}
	if errors.Is(err, backends.ErrQuota) || errors.Is(err, backends.ErrBadSpec) || errors.Is(err, backends.ErrOutcomeUnknown) {
		t.Errorf("a lost answer whose server was found and deleted is transient, got %v", err)
	}
	for _, s := range fake.Servers() {
		t.Errorf("server %s (%s, task %q) left behind", s.Name, s.Status, s.TaskState)
	}
	if n := fake.Requests("DELETE /compute/v2.1/servers/"); n != 1 {
		t.Errorf("%d deletes, want 1", n)
	}
}

// Delete returns once Nova no longer has the server, not when it accepted the
// delete: a server being deleted still holds capacity. A deletion that does not end
// within the deadline is an error.
func TestDeleteWaitsUntilGone(t *testing.T) {
	fake, c := fakeCloud(t, openstacktest.Options{})
	b := mustNew(t, c, fakeOptions())
	if _, err := b.Create(t.Context(), spec("dep-slow-delete")); err != nil {
		t.Fatal(err)
	}
	fake.SetDeleteDelay(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if err := b.Delete(ctx, "dep-slow-delete"); err == nil {
		t.Fatal("Delete = nil while Nova still has the server")
	}
	fake.SetDeleteDelay(400 * time.Millisecond)
	if err := b.Delete(t.Context(), "dep-slow-delete"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if left := fake.Servers(); len(left) != 0 {
		t.Errorf("Delete returned while Nova still has %+v", left)
	}
}

// Settings that name nothing on the cloud fail before any server is requested.
func TestBadSettings(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Options, *openstacktest.Cloud)
		msg  string
	}{
		{"unknown image", func(o *Options, _ *openstacktest.Cloud) { o.Image = "nope" }, `image "nope"`},
		{"unknown image id", func(o *Options, _ *openstacktest.Cloud) { o.Image = "00000000-0000-4000-8000-000000000000" }, "no active image"},
		{"image not active", func(o *Options, f *openstacktest.Cloud) {
			o.Image = f.AddImage("half-uploaded", "queued", time.Now())
		}, "is queued"},
		{"unknown nova flavor", func(o *Options, _ *openstacktest.Cloud) { o.NovaFlavor = "m9.huge" }, `nova flavor "m9.huge"`},
		{"unknown network", func(o *Options, _ *openstacktest.Cloud) { o.Networks = []string{"private", "nope"} }, `network "nope"`},
		{"ambiguous network", func(o *Options, f *openstacktest.Cloud) {
			f.AddNetwork("twin", "p1", true)
			f.AddNetwork("twin", "p2", true)
			o.Networks = []string{"twin"}
		}, "2 networks have that name"},
		{"unknown security group", func(o *Options, _ *openstacktest.Cloud) { o.SecurityGroups = []string{"nope"} }, `security group "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, c := fakeCloud(t, openstacktest.Options{})
			o := fakeOptions()
			tt.edit(&o, fake)
			_, err := mustNew(t, c, o).Create(t.Context(), spec("dep-bad"))
			if !errors.Is(err, backends.ErrBadSpec) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Create = %v, want ErrBadSpec saying %q", err, tt.msg)
			}
			if n := fake.Requests("POST /compute/v2.1/servers"); n != 0 {
				t.Errorf("%d creates sent for settings that cannot work", n)
			}
		})
	}
}

// Names resolve to the newest active image, a shared network when ours has no such
// name, and our own "default" group; the answers are cached until they age out.
func TestResolveAndCache(t *testing.T) {
	fake, c := fakeCloud(t, openstacktest.Options{})
	ctx := t.Context()
	id, err := c.resolver.image(ctx, "cirros")
	if err != nil || id != "11111111-aaaa-4bbb-8ccc-000000000002" {
		t.Errorf("image cirros = %q, %v; want the newest active one", id, err)
	}
	if id, err := c.resolver.network(ctx, "public"); err != nil || id != "6d0a3f4e-1111-4a2b-9c3d-000000000002" {
		t.Errorf("network public = %q, %v", id, err)
	}
	if id, err := c.resolver.securityGroup(ctx, "default"); err != nil || id != "9a8b7c6d-2222-4e3f-8a9b-000000000001" {
		t.Errorf("security group default = %q, %v; want our project's", id, err)
	}
	if id, err := c.resolver.flavor(ctx, "1"); err != nil || id != "1" {
		t.Errorf("flavor by id = %q, %v", id, err)
	}

	newer := fake.AddImage("cirros", "active", time.Now())
	before := fake.Requests("GET /image/")
	if id, _ := c.resolver.image(ctx, "cirros"); id == newer || fake.Requests("GET /image/") != before {
		t.Errorf("a fresh answer was not taken from the cache")
	}
	now := time.Now()
	c.resolver.now = func() time.Time { return now.Add(resolveTTL + time.Second) }
	if id, _ := c.resolver.image(ctx, "cirros"); id != newer {
		t.Errorf("after the cache aged out image cirros = %q, want the new upload %q", id, newer)
	}
}

// A server that went to ERROR: List shows the fault (fetched from the server view,
// which lists leave out); a Create of the name deletes it and says ErrQuota; while the
// delete runs a Create is transient; once gone a Create boots anew.
func TestErrorServerLifecycle(t *testing.T) {
	fake, c := fakeCloud(t, openstacktest.Options{})
	fake.SetDeleteDelay(time.Hour)
	o := fakeOptions()
	o.NovaFlavor = "m1.novalidhost"
	b := mustNew(t, c, o)
	if _, err := b.Create(t.Context(), spec("dep-nvh")); err != nil {
		t.Fatalf("Create: %v", err)
	}
	list, err := b.List(t.Context())
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	}
	if list[0].State != backends.StateError || list[0].Fault != "No valid host was found." {
		t.Errorf("listed %+v, want StateError with Nova's fault", list[0])
	}
	_, err = b.Create(t.Context(), spec("dep-nvh"))
	if !errors.Is(err, backends.ErrQuota) || !strings.Contains(err.Error(), "No valid host") {
		t.Errorf("Create over the ERROR server = %v, want ErrQuota with the fault", err)
	}
	_, err = b.Create(t.Context(), spec("dep-nvh"))
	if err == nil || errors.Is(err, backends.ErrQuota) || errors.Is(err, backends.ErrBadSpec) || !strings.Contains(err.Error(), "still being deleted") {
		t.Errorf("Create while the ERROR server is deleted = %v, want a transient error", err)
	}
	fake.SetDeleteDelay(0)
	if err := b.Delete(t.Context(), "dep-nvh"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := b.Create(t.Context(), spec("dep-nvh")); err != nil {
		t.Errorf("Create after the ERROR server is gone: %v", err)
	}
}

// Servers that are not ours (no markers, another deployment's or flavor's, markers
// half stripped) are never listed, deleted or adopted.
func TestForeignServers(t *testing.T) {
	fake, c := fakeCloud(t, openstacktest.Options{})
	b := mustNew(t, c, fakeOptions())
	meta := func(dep, flavor, name string) map[string]string {
		return map[string]string{"spawner_deployment": dep, "spawner_flavor": flavor, "spawner_runner": name, "spawner_job": "1"}
	}
	tags := func(dep, flavor string) []string {
		return []string{"spawner_deployment=" + dep, "spawner_flavor=" + flavor}
	}
	foreign := []openstacktest.Server{
		{Name: "dep-plain"},
		{Name: "dep-other-dep", Metadata: meta("other", "small", "dep-other-dep"), Tags: tags("other", "small")},
		{Name: "dep-other-flavor", Metadata: meta("dep", "large", "dep-other-flavor"), Tags: tags("dep", "large")},
		{Name: "dep-tags-only", Tags: tags("dep", "small")},
		{Name: "dep-meta-only", Metadata: meta("dep", "small", "dep-meta-only")},
	}
	for _, s := range foreign {
		fake.PutServer(s)
	}
	list, err := b.List(t.Context())
	if err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v; want nothing", list, err)
	}
	for _, s := range foreign {
		if err := b.Delete(t.Context(), s.Name); !errors.Is(err, backends.ErrNotFound) {
			t.Errorf("Delete(%s) = %v, want ErrNotFound", s.Name, err)
		}
		if _, err := b.Create(t.Context(), spec(s.Name)); !errors.Is(err, backends.ErrBadSpec) {
			t.Errorf("Create(%s) = %v, want ErrBadSpec", s.Name, err)
		}
	}
	if n := fake.Requests("DELETE "); n != 0 {
		t.Errorf("%d deletes sent to foreign servers", n)
	}
	if n := len(fake.Servers()); n != len(foreign) {
		t.Errorf("%d servers remain, want %d", n, len(foreign))
	}
}

func TestListFollowsPages(t *testing.T) {
	fake, c := fakeCloud(t, openstacktest.Options{PageSize: 2})
	b := mustNew(t, c, fakeOptions())
	o := fakeOptions()
	o.Flavor = "large"
	other := mustNew(t, c, o)
	for _, n := range []string{"dep-a", "dep-b", "dep-c", "dep-d", "dep-e"} {
		if _, err := b.Create(t.Context(), spec(n)); err != nil {
			t.Fatal(err)
		}
	}
	sp := spec("dep-large")
	sp.Flavor = "large"
	if _, err := other.Create(t.Context(), sp); err != nil {
		t.Fatal(err)
	}
	before := fake.Requests("GET /compute/v2.1/servers/detail")
	list, err := b.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 5 {
		t.Errorf("List shows %d servers, want 5", len(list))
	}
	if pages := fake.Requests("GET /compute/v2.1/servers/detail") - before; pages != 3 {
		t.Errorf("List read %d pages, want 3", pages)
	}
}

func TestDelete(t *testing.T) {
	tests := []struct {
		name    string
		fail    int // status injected on DELETE, 0 none
		wantErr bool
	}{
		{"deleted", 0, false},
		{"vanished meanwhile", 404, false},
		{"locked", 409, true},
		{"nova down", 503, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, c := fakeCloud(t, openstacktest.Options{})
			b := mustNew(t, c, fakeOptions())
			if _, err := b.Create(t.Context(), spec("dep-del")); err != nil {
				t.Fatal(err)
			}
			if tt.fail != 0 {
				fake.Fail("DELETE", "/servers/", 1, tt.fail, `{"conflictingRequest": {"code": 409, "message": "Instance is locked"}}`)
			}
			err := b.Delete(t.Context(), "dep-del")
			if (err != nil) != tt.wantErr {
				t.Fatalf("Delete = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && (errors.Is(err, backends.ErrNotFound) || errors.Is(err, backends.ErrBadSpec)) {
				t.Errorf("a failed delete is transient, got %v", err)
			}
		})
	}
	_, c := fakeCloud(t, openstacktest.Options{})
	if err := mustNew(t, c, fakeOptions()).Delete(t.Context(), "dep-never"); err != nil {
		t.Errorf("Delete of a name never used = %v, want nil", err)
	}
}

// On clouds older than 2.52 servers carry metadata only and are listed by name prefix.
func TestOldCloudWithoutTags(t *testing.T) {
	fake, c := fakeCloud(t, openstacktest.Options{MaxMicroversion: "2.25"})
	b := mustNew(t, c, fakeOptions())
	if _, err := b.Create(t.Context(), spec("other-prefix")); !errors.Is(err, backends.ErrBadSpec) {
		t.Errorf("Create of a name without the deployment prefix = %v, want ErrBadSpec", err)
	}
	in, err := b.Create(t.Context(), spec("dep-old"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	fake.PutServer(openstacktest.Server{Name: "dep-someone-elses"})
	list, err := b.List(t.Context())
	if err != nil || len(list) != 1 || list[0].ID != in.ID {
		t.Fatalf("List = %v, %v; want only %s", list, err, in.ID)
	}
	s := fake.Servers()[0]
	if len(s.Tags) != 0 || s.Metadata["spawner_runner"] != "dep-old" || s.Microversion != "2.1" {
		t.Errorf("server on an old cloud: tags %v metadata %v microversion %s", s.Tags, s.Metadata, s.Microversion)
	}
	if err := b.Delete(t.Context(), "dep-old"); err != nil {
		t.Errorf("Delete: %v", err)
	}
}

func TestSpecChecks(t *testing.T) {
	_, c := fakeCloud(t, openstacktest.Options{})
	b := mustNew(t, c, fakeOptions())
	sp := spec("dep-big")
	sp.UserData = strings.Repeat("x", 50000)
	if _, err := b.Create(t.Context(), sp); !errors.Is(err, backends.ErrBadSpec) || !strings.Contains(err.Error(), "user-data") {
		t.Errorf("Create with 50 kB user-data = %v, want ErrBadSpec", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"complete", func(*Options) {}, ""},
		{"no deployment", func(o *Options) { o.DeploymentID = "" }, "deployment id is required"},
		{"no image", func(o *Options) { o.Image = " " }, "image is required"},
		{"no nova flavor", func(o *Options) { o.NovaFlavor = "" }, "nova flavor is required"},
		{"no network", func(o *Options) { o.Networks = nil }, "at least one network"},
		{"empty group", func(o *Options) { o.SecurityGroups = []string{""} }, "security groups[0] is required"},
		{"negative volume", func(o *Options) { o.BootVolumeSize = -1 }, "must not be negative"},
		{"reserved metadata", func(o *Options) { o.Metadata = map[string]string{"spawner_job": "x"} }, "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := fakeOptions()
			tt.edit(&o)
			err := o.Validate()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}
