package config

import (
	"slices"
	"strings"
	"testing"
)

// What each role checks: a webhook receiver needs no GitHub credentials, no cloud and
// no bootstrap address; a consumer needs no webhook secret; operator commands need
// only the common keys. Spelling and type mistakes are reported to every role.
func TestLoadForChecksOnlyTheRolesParts(t *testing.T) {
	// Valid for the webhook only: no github credentials, no bootstrap.url, an lxd
	// flavor without an lxd section, a GitHub key file that does not exist.
	webhookOnly := `
github: {path: octo-org, app: {id: 1, installation_id: 2, private_key_file: /nonexistent/key.pem}}
webhook:
  secrets: ["0123456789abcdef0123"]
flavors:
  - name: small
    labels: [small]
    max_runners: 4
    backend: lxd
`
	// Valid for the consumer and janitor only: no webhook secret.
	cloudOnly := `
github: {path: octo-org, token: ghp_test}
bootstrap: {url: "http://10.77.0.1:8081"}
flavors:
  - name: small
    labels: [small]
    max_runners: 4
    backend: sim
`
	tests := []struct {
		name  string
		yaml  string
		roles []string
		want  []string // keys reported; nil: valid
	}{
		{"webhook needs no github or cloud", webhookOnly, []string{"webhook"}, nil},
		{"consumer needs them", webhookOnly, []string{"consumer"}, []string{"bootstrap.url", "flavors[0].lxd", "github.app.private_key_file"}},
		{"janitor needs them", webhookOnly, []string{"janitor"}, []string{"bootstrap.url", "flavors[0].lxd", "github.app.private_key_file"}},
		{"operator commands need neither", webhookOnly, nil, nil},
		{"consumer needs no webhook secret", cloudOnly, []string{"consumer"}, nil},
		{"janitor needs no webhook secret", cloudOnly, []string{"janitor", "consumer"}, nil},
		{"webhook needs its secret", cloudOnly, []string{"webhook"}, []string{"webhook.secrets"}},
		{"serve with every role needs all", cloudOnly, Roles, []string{"webhook.secrets"}},
		{"a typo counts for every role", cloudOnly + "githb: {}\n", []string{"webhook"}, []string{"githb", "webhook.secrets"}},
		{"a typo inside another part too", strings.Replace(cloudOnly, "token: ghp_test", "tokn: ghp_test", 1), nil, []string{"github.tokn"}},
		{"a common key is checked for all", strings.Replace(cloudOnly, "max_runners: 4", "max_runners: 0", 1), nil, []string{"flavors[0].max_runners"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := PartsFor(tt.roles...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseFor([]byte(tt.yaml), nil, parts)
			var got []string
			for _, fe := range FieldErrors(err) {
				got = append(got, fe.Key)
			}
			for _, k := range tt.want {
				if !slices.ContainsFunc(got, func(g string) bool { return g == k || strings.HasPrefix(g, k+".") }) {
					t.Errorf("%s not reported; got %v", k, got)
				}
			}
			if tt.want == nil && err != nil {
				t.Errorf("want valid for roles %v, got %v", tt.roles, err)
			}
		})
	}
}

func TestPartsForUnknownRole(t *testing.T) {
	if _, err := PartsFor("webhook", "scheduler"); err == nil || !strings.Contains(err.Error(), `"scheduler"`) {
		t.Errorf("PartsFor(scheduler) = %v, want an error naming it", err)
	}
}

func TestPartOf(t *testing.T) {
	for key, want := range map[string]Part{
		"webhook.secrets[0]":           PartWebhook,
		"github":                       PartGitHub,
		"github.app.private_key_file":  PartGitHub,
		"bootstrap.url":                PartCloud,
		"lxd.socket":                   PartCloud,
		"consumer.flavors[1]":          PartCloud,
		"flavors[2].runner.user_data":  PartCloud,
		"flavors[0].openstack.network": PartCloud,
		"flavors[0].max_runners":       partCommon,
		"flavors[0]":                   partCommon,
		"janitor.interval":             PartJanitor,
		"routing.default_flavor":       partCommon,
		"nats.url":                     partCommon,
		"":                             partCommon,
	} {
		if got := partOf(key); got != want {
			t.Errorf("partOf(%q) = %b, want %b", key, got, want)
		}
	}
}
