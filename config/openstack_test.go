package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const openstackMinimal = `
github: {path: octo-org, token: ghp_test}
bootstrap: {url: "http://10.77.0.1:8081"}
webhook:
  secrets: ["0123456789abcdef0123"]
routing:
  default_flavor: os
openstack:
  cloud: mycloud
flavors:
  - name: os
    labels: [vm]
    max_runners: 4
    backend: openstack
    openstack:
      image: ubuntu-24.04-runner
      flavor: m1.small
      networks: [runners]
`

func TestOpenStackDefaults(t *testing.T) {
	f, err := Parse([]byte(openstackMinimal), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := OpenStackCloud{Cloud: "mycloud", MaxConcurrentRequests: 8, RequestsPerSecond: 10, Timeout: time.Minute}
	if diff := cmp.Diff(want, f.OpenStack); diff != "" {
		t.Errorf("openstack (-want +got):\n%s", diff)
	}
	wantFlavor := &OpenStackFlavor{Image: "ubuntu-24.04-runner", Flavor: "m1.small", Networks: []string{"runners"}}
	if diff := cmp.Diff(wantFlavor, f.Flavors[0].OpenStack); diff != "" {
		t.Errorf("flavors[0].openstack (-want +got):\n%s", diff)
	}
}

func TestOpenStackFullSection(t *testing.T) {
	dir := t.TempDir()
	clouds := filepath.Join(dir, "clouds.yaml")
	ca := filepath.Join(dir, "ca.pem")
	for _, p := range []string{clouds, ca} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	doc := strings.Replace(openstackMinimal, "  cloud: mycloud\n", `  cloud: mycloud
  clouds_file: `+clouds+`
  region: RegionTwo
  ca_file: `+ca+`
  max_concurrent_requests: 2
  requests_per_second: 0.5
  timeout: 2m
`, 1) + `      security_groups: [runners, 5f0e4f5a-0000-4000-8000-000000000001]
      key_name: ops
      availability_zone: az1
      boot_volume_size: 40
      config_drive: true
      metadata: {cost_center: ci}
`
	f, err := Parse([]byte(doc), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	wantCloud := OpenStackCloud{Cloud: "mycloud", CloudsFile: clouds, Region: "RegionTwo", CAFile: ca,
		MaxConcurrentRequests: 2, RequestsPerSecond: 0.5, Timeout: 2 * time.Minute}
	if diff := cmp.Diff(wantCloud, f.OpenStack); diff != "" {
		t.Errorf("openstack (-want +got):\n%s", diff)
	}
	wantFlavor := &OpenStackFlavor{
		Image: "ubuntu-24.04-runner", Flavor: "m1.small", Networks: []string{"runners"},
		SecurityGroups: []string{"runners", "5f0e4f5a-0000-4000-8000-000000000001"},
		KeyName:        "ops", AvailabilityZone: "az1", BootVolumeSize: 40, ConfigDrive: true,
		Metadata: map[string]string{"cost_center": "ci"},
	}
	if diff := cmp.Diff(wantFlavor, f.Flavors[0].OpenStack); diff != "" {
		t.Errorf("flavors[0].openstack (-want +got):\n%s", diff)
	}
}

func TestOpenStackValidation(t *testing.T) {
	flavor := func(s string) string { return strings.Replace(openstackMinimal, "      networks: [runners]\n", s, 1) }
	tests := []struct {
		name string
		yaml string
		want map[string]string // key → a fragment of its reason
	}{
		{"no cloud", strings.Replace(openstackMinimal, "  cloud: mycloud\n", "  region: r\n", 1),
			map[string]string{"openstack.cloud": "is required"}},
		{"missing clouds file", strings.Replace(openstackMinimal, "  cloud: mycloud\n", "  cloud: c\n  clouds_file: /nonexistent/clouds.yaml\n", 1),
			map[string]string{"openstack.clouds_file": "cannot read"}},
		{"missing ca file", strings.Replace(openstackMinimal, "  cloud: mycloud\n", "  cloud: c\n  ca_file: /nonexistent/ca.pem\n", 1),
			map[string]string{"openstack.ca_file": "cannot read"}},
		{"limits out of range", strings.Replace(openstackMinimal, "  cloud: mycloud\n",
			"  cloud: c\n  max_concurrent_requests: 0\n  requests_per_second: -1\n  timeout: 10ms\n", 1),
			map[string]string{
				"openstack.max_concurrent_requests": "between 1 and 256 (got 0)",
				"openstack.requests_per_second":     "above 0",
				"openstack.timeout":                 "between 1s and 30m (got 10ms)",
			}},
		{"no image, flavor or network", strings.Replace(flavor(""), "      image: ubuntu-24.04-runner\n      flavor: m1.small\n", "      key_name: k\n", 1),
			map[string]string{
				"flavors[0].openstack.image":    "is required",
				"flavors[0].openstack.flavor":   "is required",
				"flavors[0].openstack.networks": "at least one network",
			}},
		{"empty and repeated names", flavor("      networks: [a, '', a]\n      security_groups: [' ']\n"),
			map[string]string{
				"flavors[0].openstack.networks[1]":        "is empty",
				"flavors[0].openstack.networks[2]":        `"a" is listed twice`,
				"flavors[0].openstack.security_groups[0]": "is empty",
			}},
		{"negative volume", flavor("      networks: [n]\n      boot_volume_size: -1\n"),
			map[string]string{"flavors[0].openstack.boot_volume_size": "got -1"}},
		{"reserved and long metadata", flavor("      networks: [n]\n      metadata: {spawner_job: '1', x: '" + strings.Repeat("v", 256) + "'}\n"),
			map[string]string{
				"flavors[0].openstack.metadata.spawner_job": "reserved",
				"flavors[0].openstack.metadata.x":           "at most 255",
			}},
		{"section missing", strings.Replace(flavor(""), "    openstack:\n      image: ubuntu-24.04-runner\n      flavor: m1.small\n", "", 1),
			map[string]string{"flavors[0].openstack": "is required"}},
		{"unknown key", flavor("      networks: [n]\n      netwrks: [n]\n"),
			map[string]string{"flavors[0].openstack.netwrks": `did you mean "networks"`}},
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
			for k, frag := range tt.want {
				reason, ok := got[k]
				if !ok {
					t.Errorf("no error for key %q; got %v", k, got)
					continue
				}
				if !strings.Contains(reason, frag) {
					t.Errorf("%s: reason %q does not say %q", k, reason, frag)
				}
			}
		})
	}
}

// The cloud section is only checked when a flavor uses it: a config without OpenStack
// flavors needs no cloud name.
func TestOpenStackCloudIgnoredWithoutOpenStackFlavors(t *testing.T) {
	if _, err := Parse([]byte(minimal+"openstack:\n  max_concurrent_requests: 0\n"), nil); err != nil {
		t.Fatalf("Parse: %v", err)
	}
}

// The OpenStack example in deployments/openstack is a fragment: with a webhook secret
// it must be a valid config.
func TestOpenStackExampleIsValid(t *testing.T) {
	frag, err := os.ReadFile("../deployments/openstack/spawner-openstack.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SPAWNER_WEBHOOK_SECRETS": "example-secret-0123456789", "SPAWNER_GITHUB_TOKEN": "ghp_example"}
	f, err := Parse(frag, func(k string) string { return env[k] })
	if err != nil {
		for _, fe := range FieldErrors(err) {
			t.Errorf("%s", fe)
		}
		return
	}
	if len(f.Flavors) != 2 || f.Flavors[1].OpenStack.BootVolumeSize != 100 {
		t.Errorf("example read as %+v", f.Flavors)
	}
}
