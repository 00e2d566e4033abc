package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runner-spawner/runner-spawner/internal/testcert"
)

const lxdMinimal = `
github: {path: octo-org, token: ghp_test}
bootstrap: {url: "http://10.77.0.1:8081"}
webhook:
  secrets: ["0123456789abcdef0123"]
routing:
  default_flavor: small
flavors:
  - name: small
    labels: [small]
    max_runners: 4
    backend: lxd
    lxd:
      image: tiny
`

func TestLXDDefaults(t *testing.T) {
	f, err := Parse([]byte(lxdMinimal), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := LXDServer{MaxConcurrentOperations: 8, Timeout: 30 * time.Second, OperationTimeout: 5 * time.Minute}
	if diff := cmp.Diff(want, f.LXD); diff != "" {
		t.Errorf("lxd defaults (-want +got):\n%s", diff)
	}
	got := f.Flavors[0].LXD.WithDefaults()
	wantFlavor := LXDFlavor{Image: "tiny", Type: "container", Bootstrap: "cloud-init", Profiles: []string{"default"}, Ephemeral: ptr(true)}
	if diff := cmp.Diff(wantFlavor, got); diff != "" {
		t.Errorf("flavor defaults (-want +got):\n%s", diff)
	}
	// An explicit false stays false.
	if kept := (LXDFlavor{Image: "x", Ephemeral: ptr(false)}).WithDefaults(); *kept.Ephemeral {
		t.Error("ephemeral: false became true")
	}
	// An explicit empty list stays empty: no profiles at all.
	noProfiles := LXDFlavor{Image: "x", Profiles: []string{}}.WithDefaults()
	if noProfiles.Profiles == nil || len(noProfiles.Profiles) != 0 {
		t.Errorf("profiles: [] became %v", noProfiles.Profiles)
	}
}

func TestLXDFullConfigParses(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "client")
	server, _ := writeCert(t, dir, "server")
	yaml := strings.Replace(lxdMinimal, "    lxd:\n      image: tiny\n", `    lxd:
      image: runner-noble
      remote: https://images.example
      remote_protocol: lxd
      type: virtual-machine
      profiles: [default, runner]
      limits: {cpu: "2", memory: 4GiB, disk: 20GiB}
      storage_pool: fast
      network: runners
      config:
        security.nesting: true
        limits.processes: 2000
      ephemeral: true
      bootstrap: exec
lxd:
  url: https://lxd1.example:8443
  client_cert_file: `+cert+`
  client_key_file: `+key+`
  server_cert_file: `+server+`
  project: ci
  max_concurrent_operations: 4
  timeout: 10s
  operation_timeout: 10m
`, 1)
	f, err := Parse([]byte(yaml), nil)
	if err != nil {
		for _, fe := range FieldErrors(err) {
			t.Errorf("%s", fe)
		}
		t.FailNow()
	}
	want := LXDFlavor{
		Image: "runner-noble", Remote: "https://images.example", RemoteProtocol: "lxd", Type: "virtual-machine",
		Profiles: []string{"default", "runner"}, Limits: LXDLimits{CPU: "2", Memory: "4GiB", Disk: "20GiB"},
		StoragePool: "fast", Network: "runners", Ephemeral: ptr(true), Bootstrap: "exec",
		// YAML booleans and numbers arrive as LXD's strings.
		Config: map[string]string{"security.nesting": "true", "limits.processes": "2000"},
	}
	if diff := cmp.Diff(want, *f.Flavors[0].LXD); diff != "" {
		t.Errorf("flavor (-want +got):\n%s", diff)
	}
	if f.LXD.URL != "https://lxd1.example:8443" || f.LXD.Project != "ci" || f.LXD.MaxConcurrentOperations != 4 {
		t.Errorf("server: %+v", f.LXD)
	}
}

func TestLXDValidationNamesEveryKey(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "client")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	flavor := func(lines string) string {
		return strings.Replace(lxdMinimal, "      image: tiny\n", lines, 1)
	}
	tests := []struct {
		name string
		yaml string
		want []string // keys that must be reported
	}{
		{"no image", flavor("      type: container\n"), []string{"flavors[0].lxd.image"}},
		{"bad type", flavor("      image: tiny\n      type: vm\n"), []string{"flavors[0].lxd.type"}},
		{"bad bootstrap", flavor("      image: tiny\n      bootstrap: ssh\n"), []string{"flavors[0].lxd.bootstrap"}},
		{"bad remote", flavor("      image: tiny\n      remote: images.example\n"), []string{"flavors[0].lxd.remote"}},
		{"protocol without remote", flavor("      image: tiny\n      remote_protocol: lxd\n"), []string{"flavors[0].lxd.remote_protocol"}},
		{"bad protocol", flavor("      image: tiny\n      remote: https://x\n      remote_protocol: ftp\n"), []string{"flavors[0].lxd.remote_protocol"}},
		{"profile twice and a bad one", flavor("      image: tiny\n      profiles: [a, a, 'b c']\n"), []string{"flavors[0].lxd.profiles[1]", "flavors[0].lxd.profiles[2]"}},
		{"no profiles, no pool or network", flavor("      image: tiny\n      profiles: []\n"), []string{"flavors[0].lxd.profiles"}},
		{"bad limits", flavor("      image: tiny\n      limits: {cpu: \"0\", memory: lots, disk: 5 apples}\n      storage_pool: default\n"),
			[]string{"flavors[0].lxd.limits.cpu", "flavors[0].lxd.limits.memory", "flavors[0].lxd.limits.disk"}},
		{"disk without pool", flavor("      image: tiny\n      limits: {disk: 20GiB}\n"), []string{"flavors[0].lxd.limits.disk"}},
		{"bad pool and network", flavor("      image: tiny\n      storage_pool: a/b\n      network: ' '\n"), []string{"flavors[0].lxd.storage_pool", "flavors[0].lxd.network"}},
		{"reserved config keys", flavor("      image: tiny\n      config: {user.spawner.flavor: x, cloud-init.user-data: x, volatile.uuid: x, limits.memory: 1GiB, Bad Key: x}\n"),
			[]string{"flavors[0].lxd.config.user.spawner.flavor", "flavors[0].lxd.config.cloud-init.user-data", "flavors[0].lxd.config.volatile.uuid", "flavors[0].lxd.config.limits.memory", "flavors[0].lxd.config.Bad Key"}},
		{"unknown key", flavor("      image: tiny\n      imgae: x\n"), []string{"flavors[0].lxd.imgae"}},
		{"remote without certificate", lxdMinimal + "lxd:\n  url: https://lxd:8443\n", []string{"lxd.client_cert_file", "lxd.client_key_file"}},
		{"remote not https", lxdMinimal + "lxd:\n  url: http://lxd:8443\n  client_cert_file: " + cert + "\n  client_key_file: " + key + "\n", []string{"lxd.url"}},
		{"socket and url", lxdMinimal + "lxd:\n  socket: /s\n  url: https://lxd:8443\n  client_cert_file: " + cert + "\n  client_key_file: " + key + "\n", []string{"lxd.socket"}},
		{"relative socket", lxdMinimal + "lxd:\n  socket: lxd.socket\n", []string{"lxd.socket"}},
		{"certificates without url", lxdMinimal + "lxd:\n  client_cert_file: " + cert + "\n", []string{"lxd.client_cert_file"}},
		{"missing and garbage certificates", lxdMinimal + "lxd:\n  url: https://lxd:8443\n  client_cert_file: /nonexistent.crt\n  client_key_file: " + key + "\n  server_cert_file: " + garbage + "\n",
			[]string{"lxd.client_cert_file", "lxd.server_cert_file"}},
		{"bad project", lxdMinimal + "lxd:\n  project: 'a/b'\n", []string{"lxd.project"}},
		{"limits out of range", lxdMinimal + "lxd:\n  max_concurrent_operations: 0\n  timeout: 1ms\n  operation_timeout: 1s\n",
			[]string{"lxd.max_concurrent_operations", "lxd.timeout", "lxd.operation_timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), nil)
			if err == nil {
				t.Fatal("Parse succeeded, want errors")
			}
			got := map[string]string{}
			for _, fe := range FieldErrors(err) {
				got[fe.Key] = fe.Reason
			}
			for _, k := range tt.want {
				if reason, ok := got[k]; !ok {
					t.Errorf("no error for key %q; got %v", k, got)
				} else if reason == "" {
					t.Errorf("key %q has no reason", k)
				}
			}
		})
	}
}

// TestLXDSectionIgnoredWithoutLXDFlavors: a bad lxd section does not stop a
// deployment that uses no lxd flavor.
func TestLXDSectionIgnoredWithoutLXDFlavors(t *testing.T) {
	yaml := strings.Replace(lxdMinimal, "    backend: lxd\n    lxd:\n      image: tiny\n", "    backend: sim\n", 1) + "lxd:\n  max_concurrent_operations: 0\n"
	if _, err := Parse([]byte(yaml), nil); err != nil {
		t.Fatalf("Parse: %v", err)
	}
}

func writeCert(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM := testcert.SelfSigned(t, name)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func ptr[T any](v T) *T { return &v }
