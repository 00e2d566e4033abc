package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const minimal = `
github: {path: octo-org, token: ghp_test}
bootstrap: {url: "http://10.77.0.1:8081"}
webhook:
  secrets: ["0123456789abcdef0123"]
routing:
  default_flavor: small
flavors:
  - name: small
    labels: [small, x64]
    max_runners: 4
    backend: sim
`

func TestParseMinimalGetsDefaults(t *testing.T) {
	f, err := Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if f.NATS.DuplicateWindow != 10*time.Minute || f.Webhook.Path != "/webhook" || f.Webhook.MaxBodyBytes != 1<<20 {
		t.Errorf("defaults not applied: %+v %+v", f.NATS, f.Webhook)
	}
	if diff := cmp.Diff([]string{"self-hosted", "linux"}, f.Routing.IgnoredLabels); diff != "" {
		t.Errorf("ignored labels (-want +got):\n%s", diff)
	}
	if f.Flavors[0].Backend != BackendSim || f.Flavors[0].Sim == nil {
		t.Errorf("flavor backend default: %+v", f.Flavors[0])
	}
}

func TestValidationNamesEveryKey(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // keys that must be reported
	}{
		{"unknown key with suggestion", minimal + "    max_runner: 3\n", []string{"flavors[0].max_runner"}},
		{"unknown top-level key", "stat_dir: /x\n" + minimal, []string{"stat_dir"}},
		{"wrong type", strings.Replace(minimal, "max_runners: 4", "max_runners: many", 1), []string{"flavors[0].max_runners"}},
		{"bad duration", minimal + "nats:\n  duplicate_window: soon\n", []string{"nats.duplicate_window"}},
		{"zero max runners", strings.Replace(minimal, "max_runners: 4", "max_runners: 0", 1), []string{"flavors[0].max_runners"}},
		{"no secret", strings.Replace(minimal, `secrets: ["0123456789abcdef0123"]`, "path: /webhook", 1), []string{"webhook.secrets"}},
		{"short secret", strings.Replace(minimal, "0123456789abcdef0123", "short", 1), []string{"webhook.secrets[0]"}},
		{"bad match", minimal + "  match: fuzzy\n", nil}, // routing.match appended to the flavor list: unknown key
		{"unknown default", strings.Replace(minimal, "default_flavor: small", "default_flavor: huge", 1), []string{"routing.default_flavor"}},
		{"bad listen", minimal + "webhook2: {}\n", []string{"webhook2"}},
		{"publish timeout past github's", minimal + "nats:\n  publish_timeout: 12s\n", []string{"nats.publish_timeout"}},
		{"bad nats url", minimal + "nats:\n  url: http://x\n", []string{"nats.url"}},
		{"several problems at once", `
deployment_id: Bad_ID
log: {level: loud}
flavors:
  - name: Small
    labels: [a, A]
    max_runners: -1
    backend: docker
  - name: other
    labels: [b]
    max_runners: 1
    backend: lxd
`, []string{"deployment_id", "log.level", "webhook.secrets", "flavors[0].name", "flavors[0].labels[1]", "flavors[0].max_runners", "flavors[0].backend", "flavors[1].lxd"}},
		{"duplicate label sets", minimal + "  - name: same\n    labels: [x64, small]\n    max_runners: 1\n    backend: sim\n", []string{"flavors[1].labels"}},
		{"no backend", strings.Replace(minimal, "    backend: sim\n", "", 1), []string{"flavors[0].backend"}},
		{"section of another backend", minimal + "    lxd: {image: tiny}\n", []string{"flavors[0].lxd"}},
		{"negative secondary pacing", strings.Replace(minimal, "token: ghp_test}", "token: ghp_test, secondary_points_per_minute: -5}", 1), []string{"github.secondary_points_per_minute"}},
		{"mutating beyond in-flight", strings.Replace(minimal, "token: ghp_test}", "token: ghp_test, max_in_flight: 2, max_mutating_in_flight: 3}", 1), []string{"github.max_mutating_in_flight"}},
		{"negative boot jitter", minimal + "    sim: {boot_jitter: -1s}\n", []string{"flavors[0].sim.boot_jitter"}},
		{"min_idle beyond max_runners", minimal + "    min_idle: 5\n", []string{"flavors[0].min_idle"}},
		{"bad min_idle_schedule", minimal + `    min_idle_schedule:
      - {start: "0 8 * *", duration: 10h, min_idle: 2}
      - {start: "0 8 * * 1-5", duration: 0s, min_idle: 5}
      - {start: "CRON_TZ=Europe/Berlin 0 7 * * 1", duration: 2h, min_idle: 4}
      - {start: "@daily", duration: 1h, min_idle: -1}
`, []string{"flavors[0].min_idle_schedule[0].start", "flavors[0].min_idle_schedule[1].duration", "flavors[0].min_idle_schedule[1].min_idle", "flavors[0].min_idle_schedule[3].min_idle"}},
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
				if _, ok := got[k]; !ok {
					t.Errorf("no error for key %q; got %v", k, got)
				}
			}
		})
	}
}

func TestUnknownKeySuggests(t *testing.T) {
	_, err := Parse([]byte(minimal+"    max_runner: 3\n"), nil)
	if err == nil || !strings.Contains(err.Error(), `did you mean "max_runners"`) {
		t.Fatalf("want a suggestion, got %v", err)
	}
}

func TestSecretsFromEnvAndFiles(t *testing.T) {
	dir := t.TempDir()
	secretsFile := filepath.Join(dir, "secrets")
	if err := os.WriteFile(secretsFile, []byte("file-secret-aaaaaaaaaaaa\n\nfile-secret-bbbbbbbbbbbb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("pw-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(minimal, `secrets: ["0123456789abcdef0123"]`, "secrets_file: "+secretsFile, 1) +
		"nats:\n  user: spawner\n  password_file: " + pwFile + "\n"

	f, err := Parse([]byte(base), nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(f.Webhook.Secrets) != 2 || f.Webhook.Secrets[1].Reveal() != "file-secret-bbbbbbbbbbbb" {
		t.Errorf("secrets from file: %d", len(f.Webhook.Secrets))
	}
	if f.NATS.Password.Reveal() != "pw-from-file" {
		t.Errorf("password from file not read")
	}

	env := map[string]string{"SPAWNER_WEBHOOK_SECRETS": "env-secret-1111111111, env-secret-2222222222", "SPAWNER_NATS_PASSWORD": "pw-env"}
	f, err = Parse([]byte(base), func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("Parse with env: %v", err)
	}
	if len(f.Webhook.Secrets) != 2 || f.Webhook.Secrets[0].Reveal() != "env-secret-1111111111" {
		t.Errorf("env secrets not applied")
	}
	if f.NATS.Password.Reveal() != "pw-env" {
		t.Errorf("env password not applied")
	}

	_, err = Parse([]byte(minimal+"nats:\n  user: u\n  password: inline\n  password_file: "+pwFile+"\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "nats.password_file") {
		t.Errorf("inline plus file must be an error naming nats.password_file, got %v", err)
	}
}

func TestExampleConfigsAreValid(t *testing.T) {
	files, err := filepath.Glob("../deployments/examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no example configs in deployments/examples")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			env := map[string]string{"SPAWNER_WEBHOOK_SECRETS": "example-secret-0123456789", "SPAWNER_GITHUB_TOKEN": "ghp_example"}
			if _, err := Load(file, func(k string) string { return env[k] }); err != nil {
				for _, fe := range FieldErrors(err) {
					t.Errorf("%s", fe)
				}
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"1024", 1024, true}, {"1MiB", 1 << 20, true}, {"2 GiB", 2 << 30, true}, {"1GB", 1e9, true},
		{"512k", 512 << 10, true}, {"lots", 0, false}, {"-1", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v", tt.in, got, err)
		}
	}
}
