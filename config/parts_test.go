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

// A consumer's instances are told the bootstrap URL, derived from bootstrap.listen
// when bootstrap.url is empty; with neither giving an address the consumer's check
// says what is missing, naming both keys and the flag that only turns a listener off.
func TestConsumerNeedsABootstrapAddress(t *testing.T) {
	yaml := `
github: {path: octo-org, token: ghp_test}
bootstrap: {listen: ""}
flavors:
  - name: small
    labels: [small]
    max_runners: 4
    backend: sim
`
	for _, roles := range []string{"consumer", "janitor"} {
		parts, err := PartsFor(roles)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseFor([]byte(yaml), nil, parts)
		fes := FieldErrors(err)
		if len(fes) != 1 || fes[0].Key != "bootstrap.url" {
			t.Fatalf("%s: got %v, want one bootstrap.url problem", roles, err)
		}
		for _, s := range []string{"bootstrap.listen", "--bootstrap-listen off"} {
			if !strings.Contains(fes[0].Reason, s) {
				t.Errorf("%s: the reason %q does not name %s", roles, fes[0].Reason, s)
			}
		}
	}
	// An address in either key is enough for simulated instances.
	for _, b := range []string{`{listen: "127.0.0.1:8081"}`, `{listen: "", url: "http://10.77.0.1:8081"}`} {
		if _, err := ParseFor([]byte(strings.Replace(yaml, `{listen: ""}`, b, 1)), nil, PartAll&^PartWebhook); err != nil {
			t.Errorf("bootstrap %s: %v", b, err)
		}
	}
}

// shutdown_timeout defaults to 30 s and is refused outside 1 s to 10 min.
func TestShutdownTimeout(t *testing.T) {
	yaml := "flavors: [{name: small, labels: [small], max_runners: 1, backend: sim}]\n"
	cfg, err := ParseFor([]byte(yaml), nil, PartNone)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ShutdownTimeout.String() != "30s" {
		t.Errorf("default shutdown_timeout %s, want 30s", cfg.ShutdownTimeout)
	}
	for value, ok := range map[string]bool{"5s": true, "10m": true, "500ms": false, "11m": false, "0s": false} {
		_, err := ParseFor([]byte("shutdown_timeout: "+value+"\n"+yaml), nil, PartNone)
		fes := FieldErrors(err)
		if ok != (err == nil) || (!ok && (len(fes) != 1 || fes[0].Key != "shutdown_timeout")) {
			t.Errorf("shutdown_timeout %s: %v", value, err)
		}
	}
}
