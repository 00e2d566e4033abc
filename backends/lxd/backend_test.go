package lxd

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runner-spawner/runner-spawner/backends"
)

func fakeBackend(t *testing.T, f *fakeLXD, edit func(*Options)) *Backend {
	t.Helper()
	o := Options{DeploymentID: "dep", Flavor: "small", Image: "tiny"}
	if edit != nil {
		edit(&o)
	}
	b, err := New(f.client(t, ClientOptions{}), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b.startPause = time.Millisecond
	return b
}

func testSpec(name string) backends.InstanceSpec {
	return backends.InstanceSpec{
		Name: name, Flavor: "small", JobID: 42,
		UserData: "#!/bin/sh\necho user-data\n",
		Script:   "#!/bin/sh\necho script\n",
		Env:      map[string]string{"SPAWNER_BOOTSTRAP_TOKEN": "one-time-secret", "SPAWNER_BOOTSTRAP_URL": "http://10.77.0.1:8080/b"},
	}
}

func ourTags(name string) map[string]string {
	return map[string]string{
		"user.spawner.deployment": "dep", "user.spawner.flavor": "small",
		"user.spawner.runner": name, "user.spawner.job": "42",
	}
}

func TestPost(t *testing.T) {
	spec := testSpec("r1")
	tags := ourTags("r1")
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range tags {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	userData := map[string]string{"cloud-init.user-data": spec.UserData, "user.user-data": spec.UserData}
	tests := []struct {
		name string
		opts Options
		want InstancesPost
	}{
		{"cloud-init defaults", Options{Image: "tiny"}, InstancesPost{
			Name: "r1", Type: TypeContainer, Config: with(userData), Devices: map[string]map[string]string{},
			Source: InstanceSource{Type: "image", Alias: "tiny"},
		}},
		{"exec mode sets no user-data", Options{Image: "tiny", Bootstrap: BootstrapExec}, InstancesPost{
			Name: "r1", Type: TypeContainer, Config: with(nil), Devices: map[string]map[string]string{},
			Source: InstanceSource{Type: "image", Alias: "tiny"},
		}},
		{"fingerprint, vm, limits, pool, network, profiles, extra config, ephemeral", Options{
			Image: "a1b2c3d4e5f6", Type: TypeVM, CPU: "2", Memory: "4GiB", Disk: "20GiB", StoragePool: "fast",
			Network: "runners", Profiles: []string{"default", "runner"}, Config: map[string]string{"security.nesting": "true"},
			Ephemeral: true,
		}, InstancesPost{
			Name: "r1", Type: TypeVM, Profiles: []string{"default", "runner"}, Ephemeral: true,
			Config: with(map[string]string{"limits.cpu": "2", "limits.memory": "4GiB", "security.nesting": "true",
				"cloud-init.user-data": spec.UserData, "user.user-data": spec.UserData}),
			Devices: map[string]map[string]string{
				"root": {"type": "disk", "path": "/", "pool": "fast", "size": "20GiB"},
				"eth0": {"type": "nic", "network": "runners", "name": "eth0"},
			},
			Source: InstanceSource{Type: "image", Fingerprint: "a1b2c3d4e5f6"},
		}},
		{"remote image server", Options{Image: "debian/12/cloud", ImageServer: "https://images.example"}, InstancesPost{
			Name: "r1", Type: TypeContainer, Config: with(userData), Devices: map[string]map[string]string{},
			Source: InstanceSource{Type: "image", Alias: "debian/12/cloud", Server: "https://images.example", Protocol: "simplestreams", Mode: "pull"},
		}},
		{"no profiles at all", Options{Image: "tiny", Profiles: []string{}, StoragePool: "default", Network: "lxdbr0"}, InstancesPost{
			Name: "r1", Type: TypeContainer, Profiles: []string{}, Config: with(userData),
			Devices: map[string]map[string]string{
				"root": {"type": "disk", "path": "/", "pool": "default"},
				"eth0": {"type": "nic", "network": "lxdbr0", "name": "eth0"},
			},
			Source: InstanceSource{Type: "image", Alias: "tiny"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.DeploymentID, o.Flavor = "dep", "small"
			b, err := New(&Client{}, o)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if diff := cmp.Diff(tt.want, b.post(spec)); diff != "" {
				t.Errorf("create request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	ok := Options{DeploymentID: "d", Flavor: "f", Image: "tiny"}
	tests := []struct {
		name string
		edit func(*Options)
		want string // "" = valid
	}{
		{"minimal", func(*Options) {}, ""},
		{"no image", func(o *Options) { o.Image = "" }, "image is required"},
		{"bad type", func(o *Options) { o.Type = "vm" }, "type must be"},
		{"bad bootstrap", func(o *Options) { o.Bootstrap = "ssh" }, "bootstrap must be"},
		{"disk without pool", func(o *Options) { o.Disk = "10GiB" }, "needs a storage pool"},
		{"our tag in config", func(o *Options) { o.Config = map[string]string{"user.spawner.flavor": "x"} }, "backend's own tag"},
		{"user-data in config", func(o *Options) { o.Config = map[string]string{"cloud-init.user-data": "x"} }, "bootstrap"},
		{"limit in config", func(o *Options) { o.Config = map[string]string{"limits.memory": "1GiB"} }, "flavor's limits"},
		{"protocol without server", func(o *Options) { o.ImageProtocol = "lxd" }, "without an image server"},
		{"bad profile name", func(o *Options) { o.Profiles = []string{"a b"} }, "profile"},
		{"relative script path", func(o *Options) { o.ScriptPath = "boot.sh" }, "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			err := o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want it to say %q", err, tt.want)
			}
		})
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	f := newFakeLXD(t)
	b := fakeBackend(t, f, nil)
	first, err := b.Create(t.Context(), testSpec("r1"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.Create(t.Context(), testSpec("r1"))
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != second.ID || second.State != backends.StateRunning {
		t.Errorf("second Create = %+v, first %+v", second, first)
	}
	// The second Create's POST is refused (the name is taken) and makes nothing; the
	// instance is neither started again nor deleted.
	if n := f.count(http.MethodPut, "/1.0/instances/r1/state"); n != 1 {
		t.Errorf("%d start requests, want 1", n)
	}
	if n := f.count(http.MethodDelete, "/1.0/instances/r1"); n != 0 {
		t.Errorf("%d delete requests, want none", n)
	}
}

// TestCreateOfNewNameLooksNothingUpFirst prices the common case: a new name costs
// the create and the start, with no look-up before the create and no read-back
// after the start (on a busy host every LXD call is CPU that a burst's other creates
// wait for).
func TestCreateOfNewNameLooksNothingUpFirst(t *testing.T) {
	f := newFakeLXD(t)
	b := fakeBackend(t, f, nil)
	if _, err := b.Create(t.Context(), testSpec("r1")); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{
		"POST /1.0/instances":         f.count(http.MethodPost, "/1.0/instances"),
		"PUT /1.0/instances/r1/state": f.count(http.MethodPut, "/1.0/instances/r1/state"),
		"GET /1.0/instances/r1":       f.count(http.MethodGet, "/1.0/instances/r1"),
	}
	want := map[string]int{"POST /1.0/instances": 1, "PUT /1.0/instances/r1/state": 1, "GET /1.0/instances/r1": 0}
	if !maps.Equal(got, want) {
		t.Errorf("requests = %v, want %v", got, want)
	}
}

// TestCreateLosesRaceToTwin: a create of the same name by another process lands
// just before ours; ours fails with "already exists" and must return the twin's
// instance, not delete it.
func TestCreateLosesRaceToTwin(t *testing.T) {
	f := newFakeLXD(t)
	b := fakeBackend(t, f, nil)
	f.fault = func(action, name string) string {
		if action == "create" {
			f.instances[name] = &InstanceInfo{Name: name, Status: "Running", Config: ourTags(name)}
			f.instances[name].Config["volatile.last_state.power"] = "RUNNING"
		}
		return "" // the create itself then fails: the name exists
	}
	inst, err := b.Create(t.Context(), testSpec("r1"))
	if err != nil {
		t.Fatalf("Create = %v, want the twin's instance", err)
	}
	if inst.Name != "r1" || !f.has("r1") {
		t.Errorf("Create = %+v; instance still there: %v", inst, f.has("r1"))
	}
	if n := f.count(http.MethodDelete, "/1.0/instances/r1"); n != 0 {
		t.Errorf("the twin's instance was deleted")
	}
}

func TestCreateNeverAdoptsForeign(t *testing.T) {
	tests := []struct {
		name   string
		config map[string]string
	}{
		{"no tags", nil},
		{"other deployment", map[string]string{"user.spawner.deployment": "other", "user.spawner.flavor": "small"}},
		{"other flavor", map[string]string{"user.spawner.deployment": "dep", "user.spawner.flavor": "large"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeLXD(t)
			f.addInstance("r1", "Running", tt.config)
			before := maps.Clone(f.instances["r1"].Config)
			b := fakeBackend(t, f, nil)
			if _, err := b.Create(t.Context(), testSpec("r1")); !errors.Is(err, backends.ErrBadSpec) {
				t.Errorf("Create over a foreign name = %v, want ErrBadSpec", err)
			}
			if err := b.Delete(t.Context(), "r1"); !errors.Is(err, backends.ErrNotFound) {
				t.Errorf("Delete of a foreign instance = %v, want ErrNotFound", err)
			}
			if list, err := b.List(t.Context()); err != nil || len(list) != 0 {
				t.Errorf("List = %+v, %v; want nothing", list, err)
			}
			if !f.has("r1") {
				t.Error("the foreign instance was deleted")
			}
			// A POST of the taken name is refused by LXD and changes nothing; no
			// request may stop or delete the foreign instance.
			if n := f.count(http.MethodPut, "/1.0/instances/r1/state") + f.count(http.MethodDelete, "/1.0/instances/r1"); n != 0 {
				t.Errorf("%d start, stop or delete requests touched the foreign name", n)
			}
			if got := f.instances["r1"].Config; !maps.Equal(got, before) {
				t.Errorf("the foreign instance's config changed: %v, was %v", got, before)
			}
		})
	}
}

func TestCreateFailureCleansUpAndClassifies(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(*Options)
		failOn    string // operation that fails
		msg       string
		want      error // errors.Is
		transient bool  // neither ErrBadSpec nor ErrQuota
	}{
		{"start fails oddly", nil, "start", "Failed to run: forkstart: exit status 1", nil, true},
		{"start finds no network", nil, "start", `Failed to start device "eth0": Failed to load network "x": Network not found`, backends.ErrBadSpec, false},
		{"storage full on create", nil, "create", "Failed creating instance from image: no space left on device", backends.ErrQuota, false},
		{"unknown key on create", nil, "create", "Failed creating instance record: Unknown configuration key: x.y", backends.ErrBadSpec, false},
		{"exec finds no shell", func(o *Options) { o.Bootstrap = BootstrapExec }, "exec", "Command not found", backends.ErrBadSpec, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeLXD(t)
			f.fault = func(action, _ string) string {
				if action == tt.failOn {
					return tt.msg
				}
				return ""
			}
			b := fakeBackend(t, f, tt.edit)
			_, err := b.Create(t.Context(), testSpec("r1"))
			if err == nil {
				t.Fatal("Create succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Create = %v, want %v", err, tt.want)
			}
			if tt.transient && (errors.Is(err, backends.ErrBadSpec) || errors.Is(err, backends.ErrQuota)) {
				t.Errorf("Create = %v, want a transient error", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Create = %v, lost LXD's message %q", err, tt.msg)
			}
			if f.has("r1") {
				t.Error("a failed Create left its instance behind")
			}
		})
	}
}

// A failed Create whose own cleanup fails says so: the instance is left, and the
// caller must keep the capacity it held for it. The outcome is known, though.
func TestCreateReportsTheInstanceItLeft(t *testing.T) {
	f := newFakeLXD(t)
	f.fault = func(action, _ string) string {
		switch action {
		case "start":
			return "Failed to run: forkstart: exit status 1"
		case "delete":
			return "Failed deleting instance storage: device or resource busy"
		}
		return ""
	}
	b := fakeBackend(t, f, nil)
	_, err := b.Create(t.Context(), testSpec("r1"))
	if err == nil || !strings.Contains(err.Error(), "half-made instance not deleted") || !strings.Contains(err.Error(), "resource busy") {
		t.Errorf("Create = %v, want the failed cleanup in the error", err)
	}
	if errors.Is(err, backends.ErrOutcomeUnknown) {
		t.Errorf("Create = %v: LXD answered, the outcome is known", err)
	}
	if !f.has("r1") {
		t.Error("the fake deleted the instance after all: the case did not happen")
	}
}

// A create we stopped waiting for may still finish on LXD after the cleanup found
// nothing: Create says the outcome is unknown, and the instance does appear.
func TestCreateLostAnswerIsOutcomeUnknown(t *testing.T) {
	f := newFakeLXD(t)
	hold := make(chan struct{})
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
	b := fakeBackend(t, f, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := b.Create(ctx, testSpec("r1"))
	if !errors.Is(err, backends.ErrOutcomeUnknown) || errors.Is(err, backends.ErrBadSpec) || errors.Is(err, backends.ErrQuota) {
		t.Errorf("Create = %v, want ErrOutcomeUnknown alone", err)
	}
	close(hold)
	deadline := time.Now().Add(5 * time.Second)
	for !f.has("r1") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !f.has("r1") {
		t.Error("the held create never finished: the case did not happen")
	}
}

// hookTimeout is the lxc.log of a start that failed on a real LXD 5.0 under a burst
// of concurrent starts (CI, 2026-11-27).
const hookTimeout = `lxc r1 20261127091258.743 ERROR    conf - ../src/lxc/conf.c:run_buffer:322 - Script exited with status 1
lxc r1 20261127091258.743 ERROR    start - ../src/lxc/start.c:lxc_init:844 - Failed to run lxc.hook.pre-start for container "r1"
lxc r1 20261127091258.743 WARN     cgfsng - ../src/lxc/cgroups/cgfsng.c:fchowmodat:1619 - No such file or directory - Failed to fchownat(34, memory.oom.group)
lxc r1 20261127091258.743 ERROR    start - ../src/lxc/start.c:__lxc_start:2027 - Failed to initialize container "r1"
lxc r1 20261127091357.937 ERROR    lxccontainer - ../src/lxc/lxccontainer.c:wait_on_daemonized_start:870 - No such file or directory - Failed to receive the container state
`

func TestStartRetriesOnce(t *testing.T) {
	const forkstart = "Failed to run: /usr/bin/lxd forkstart r1 /var/lib/lxd/containers /var/log/lxd/r1/lxc.conf: exit status 1"
	tests := []struct {
		name       string
		failures   int // starts that fail before one succeeds
		msg        string
		wantStarts int
		wantErr    bool
		wantInErr  string
	}{
		{"fails once, then starts", 1, forkstart, 2, false, ""},
		{"fails twice", 2, forkstart, 2, true, `Failed to run lxc.hook.pre-start for container "r1"`},
		{"missing network is not retried", 5, `Failed to start device "eth0": Failed to load network "x": Network not found`, 1, true, "Network not found"},
		{"full storage is not retried", 5, "Failed to mount: no space left on device", 1, true, "no space left"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeLXD(t)
			starts := 0
			f.fault = func(action, name string) string {
				if action != "start" {
					return ""
				}
				starts++
				if starts <= tt.failures {
					f.logs[name] = hookTimeout // fault runs under f.mu
					return tt.msg
				}
				return ""
			}
			b := fakeBackend(t, f, nil)
			_, err := b.Create(t.Context(), testSpec("r1"))
			if starts != tt.wantStarts {
				t.Errorf("%d starts, want %d", starts, tt.wantStarts)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("Create = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr {
				if !f.has("r1") {
					t.Error("the instance is gone after a start that succeeded on its retry")
				}
				return
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("Create = %v, want it to say %q", err, tt.wantInErr)
			}
			if f.has("r1") {
				t.Error("a failed Create left its instance behind")
			}
		})
	}
}

func TestLXCLogErrors(t *testing.T) {
	tests := []struct {
		log  string
		max  int
		want string
	}{
		{hookTimeout, 3, `Script exited with status 1; Failed to run lxc.hook.pre-start for container "r1"; Failed to initialize container "r1"`},
		{hookTimeout, 1, "Script exited with status 1"},
		{hookTimeout, 9, `Script exited with status 1; Failed to run lxc.hook.pre-start for container "r1"; Failed to initialize container "r1"; No such file or directory - Failed to receive the container state`},
		{"lxc r1 20261127091258.743 WARN     cgfsng - x.c:1 - only a warning\n", 3, ""},
		{"", 3, ""},
		{"lxc r1 1 ERROR odd line without separators", 3, "odd line without separators"},
	}
	for _, tt := range tests {
		if got := lxcLogErrors(tt.log, tt.max); got != tt.want {
			t.Errorf("lxcLogErrors(max %d) = %q, want %q", tt.max, got, tt.want)
		}
	}
}

func TestExecBootstrapKeepsTokenOutOfConfig(t *testing.T) {
	f := newFakeLXD(t)
	b := fakeBackend(t, f, func(o *Options) { o.Bootstrap = BootstrapExec })
	spec := testSpec("r1")
	if _, err := b.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, v := range f.creates[0].Config {
		if strings.Contains(v, "one-time-secret") {
			t.Errorf("config key %s holds the bootstrap token", k)
		}
	}
	script := f.files["r1:"+DefaultScriptPath]
	if string(script.Content) != spec.Script || script.Mode != "0700" || script.Type != "file" {
		t.Errorf("pushed script = %+v", script)
	}
	if dir := f.files["r1:/var/lib/spawner"]; dir.Type != "directory" || dir.Mode != "0700" {
		t.Errorf("script directory = %+v", dir)
	}
	if len(f.execs) != 1 {
		t.Fatalf("%d exec calls, want 1", len(f.execs))
	}
	ex := f.execs[0]
	if diff := cmp.Diff(spec.Env, ex.Environment); diff != "" {
		t.Errorf("exec environment (-want +got):\n%s", diff)
	}
	if ex.WaitForWebsocket || ex.Interactive || ex.RecordOutput {
		t.Errorf("exec must be detached: %+v", ex)
	}
	if got := ex.Command[len(ex.Command)-1]; got != DefaultScriptPath {
		t.Errorf("exec runs %q, want the script", got)
	}
}

func TestDelete(t *testing.T) {
	tests := []struct {
		name       string
		status     string // "" = no such instance
		busyTimes  int    // delete answers busy this many times first
		wantStop   bool
		wantDelete bool
	}{
		{"gone is success", "", 0, false, false},
		{"running is stopped first", "Running", 0, true, true},
		{"stopped is just deleted", "Stopped", 0, false, true},
		{"busy is retried", "Stopped", 2, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeLXD(t)
			if tt.status != "" {
				f.addInstance("r1", tt.status, ourTags("r1"))
			}
			var busy atomic.Int32
			busy.Store(int32(tt.busyTimes))
			f.fault = func(action, _ string) string {
				if action == "delete" && busy.Add(-1) >= 0 {
					return `Failed to create instance delete operation: Instance is busy running a "stop" operation`
				}
				return ""
			}
			b := fakeBackend(t, f, nil)
			if err := b.Delete(t.Context(), "r1"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if f.has("r1") {
				t.Error("instance still there")
			}
			if got := f.count(http.MethodPut, "/1.0/instances/r1/state") > 0; got != tt.wantStop {
				t.Errorf("stopped = %v, want %v", got, tt.wantStop)
			}
			if got := f.count(http.MethodDelete, "/1.0/instances/r1") > 0; got != tt.wantDelete {
				t.Errorf("deleted = %v, want %v", got, tt.wantDelete)
			}
		})
	}
}

func TestListFiltersAndMaps(t *testing.T) {
	f := newFakeLXD(t)
	mine := ourTags("r1")
	mine["user.spawner.protected"] = "true"
	f.addInstance("r1", "Running", mine)
	f.addInstance("r2", "Stopped", ourTags("r2")) // never started: pending
	f.addInstance("x1", "Running", map[string]string{"user.spawner.deployment": "dep", "user.spawner.flavor": "large"})
	f.addInstance("x2", "Running", nil)
	b := fakeBackend(t, f, nil)
	list, err := b.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]backends.Instance{}
	for _, in := range list {
		in.CreatedAt = in.CreatedAt.UTC().Truncate(0)
		got[in.Name] = in
	}
	if len(got) != 2 {
		t.Fatalf("List = %+v, want r1 and r2 only", list)
	}
	if in := got["r1"]; in.State != backends.StateRunning || !in.Protected || in.JobID != 42 || in.Flavor != "small" || in.Backend != "lxd" {
		t.Errorf("r1 = %+v", in)
	}
	if in := got["r2"]; in.State != backends.StatePending || in.Protected {
		t.Errorf("r2 = %+v", in)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var filter string
	for _, r := range f.requests {
		if r.Path == "/1.0/instances" && r.Method == http.MethodGet {
			filter = r.Query["filter"][0]
			if r.Query["recursion"][0] != "1" {
				t.Errorf("list without recursion=1: %v", r.Query)
			}
		}
	}
	if want := "config.user.spawner.deployment eq dep and config.user.spawner.flavor eq small"; filter != want {
		t.Errorf("filter = %q, want %q", filter, want)
	}
}

func TestState(t *testing.T) {
	started := map[string]string{"volatile.last_state.power": "STOPPED"}
	tests := []struct {
		status string
		config map[string]string
		want   backends.State
	}{
		{"Running", started, backends.StateRunning},
		{"Stopped", started, backends.StateStopped},
		{"Stopped", nil, backends.StatePending},
		{"Error", started, backends.StateError},
		{"Starting", nil, backends.StatePending},
		{"Creating", nil, backends.StatePending},
		{"Stopping", started, backends.StateStopped},
		{"Frozen", started, backends.StateUnknown},
	}
	for _, tt := range tests {
		if got := state(InstanceInfo{Status: tt.status, Config: tt.config}); got != tt.want {
			t.Errorf("state(%s, %v) = %s, want %s", tt.status, tt.config, got, tt.want)
		}
	}
}

func TestCreateRejectsSpecWithoutBootstrap(t *testing.T) {
	f := newFakeLXD(t)
	tests := []struct {
		mode string
		edit func(*backends.InstanceSpec)
	}{
		{BootstrapCloudInit, func(s *backends.InstanceSpec) { s.UserData = "" }},
		{BootstrapExec, func(s *backends.InstanceSpec) { s.Script = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			b := fakeBackend(t, f, func(o *Options) { o.Bootstrap = tt.mode })
			spec := testSpec("r1")
			tt.edit(&spec)
			if _, err := b.Create(t.Context(), spec); !errors.Is(err, backends.ErrBadSpec) {
				t.Errorf("Create = %v, want ErrBadSpec", err)
			}
		})
	}
	if n := f.count(http.MethodPost, "/1.0/instances"); n != 0 {
		t.Errorf("%d creates reached LXD", n)
	}
}
