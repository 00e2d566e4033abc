package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/webhook"
)

const intakeSecret = "intake-test-secret-0123456789"

func intakeConfig(t *testing.T, dir string) (cfgPath, webhookURL, natsAddr string) {
	t.Helper()
	web, nats := freeAddr(t), freeAddr(t)
	// No github and no bootstrap section: the receiver and the operator commands do
	// not use them, and a config for them alone need not carry credentials.
	cfg := fmt.Sprintf(`
state_dir: %s
log: {level: debug, format: text}
nats: {listen: %s}
webhook: {listen: %s}
routing: {default_flavor: k8s}
flavors:
  - {name: ubuntu, labels: [ubuntu-latest], max_runners: 2, backend: sim}
  - {name: k8s, labels: [k8s], max_runners: 2, backend: sim}
`, filepath.Join(dir, "state"), nats, web)
	return writeFile(t, dir, "spawner.yaml", cfg), "http://" + web, nats
}

// TestServeBinaryStoresSignedFixtures runs the built binary the way an operator does,
// posts every signed workflow_job fixture over HTTP and reads the stream back with
// `spawner status --json`.
func TestServeBinaryStoresSignedFixtures(t *testing.T) {
	dir := t.TempDir()
	cfgPath, base, _ := intakeConfig(t, dir)
	env := []string{"SPAWNER_WEBHOOK_SECRETS=" + intakeSecret}
	// Only the receiver (and the embedded NATS server): no consumer drains the stream.
	startProc(t, env, "serve", "--config", cfgPath, "--roles", "webhook")
	waitReady(t, base, 30*time.Second)

	files, _ := filepath.Glob("../../testdata/webhooks/workflow_job/*.json")
	if len(files) != 7 {
		t.Fatalf("found %d workflow_job fixtures, want 7", len(files))
	}
	post := func(id string, body []byte, sig string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, base+"/webhook", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "workflow_job")
		req.Header.Set("X-GitHub-Delivery", id)
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct{ Result string }
		_ = json.NewDecoder(resp.Body).Decode(&r)
		return resp.StatusCode, r.Result
	}
	for i, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if code, res := post(fmt.Sprintf("d-%d", i), body, webhook.Sign(body, intakeSecret)); code != 200 || res != "stored" {
			t.Errorf("%s: %d %s", filepath.Base(f), code, res)
		}
		// The same delivery again (GitHub's manual redelivery keeps the id): stored once.
		if code, res := post(fmt.Sprintf("d-%d", i), body, webhook.Sign(body, intakeSecret)); code != 200 || res != "duplicate" {
			t.Errorf("%s redelivered: %d %s", filepath.Base(f), code, res)
		}
		if code, _ := post(fmt.Sprintf("bad-%d", i), body, webhook.Sign(body, "wrong-secret-wrong-secret")); code != 401 {
			t.Errorf("%s with a wrong signature: %d, want 401", filepath.Base(f), code)
		}
	}

	out, errOut, code := runCmdSplit(t, env, "status", "--config", cfgPath, "--json")
	if code != 0 {
		t.Fatalf("status exited %d: %s%s", code, out, errOut)
	}
	var rep struct {
		Flavors []struct {
			Name            string
			Pending         int
			PendingByAction map[string]int `json:"pending_by_action"`
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	got := map[string]int{}
	for _, f := range rep.Flavors {
		got[f.Name] = f.Pending
	}
	// Five fixtures carry ubuntu-latest, two carry self-hosted+k8s.
	if got["ubuntu"] != 5 || got["k8s"] != 2 {
		t.Errorf("pending per flavor = %v, want ubuntu 5, k8s 2\n%s", got, out)
	}
}

func TestConfigCheckNamesKeys(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", `
deployment_id: UPPER
webhook: {listen: nowhere}
flavors:
  - {name: small, labels: [a], max_runners: 0, backnd: sim}
`)
	out, code := runCmd(t, nil, "config", "check", "--config", bad)
	if code == 0 {
		t.Fatalf("config check accepted a bad file:\n%s", out)
	}
	for _, key := range []string{"deployment_id", "webhook.listen", "webhook.secrets", "flavors[0].max_runners", "flavors[0].backnd"} {
		if !strings.Contains(out, key+":") {
			t.Errorf("config check output does not name %s:\n%s", key, out)
		}
	}
	// A nats.url is never printed with its password, even one that does not parse.
	leaky := writeFile(t, dir, "leaky.yaml", "nats: {url: \"nats://spawner:hunter#2@n1:4222\"}\n")
	if out, _ := runCmd(t, nil, "config", "check", "--config", leaky); !strings.Contains(out, "nats.url:") || strings.Contains(out, "hunter") {
		t.Errorf("config check of a bad nats.url leaks its password or names no key:\n%s", out)
	}
	// serve refuses to start on the same errors.
	out, code = runCmd(t, nil, "serve", "--config", bad)
	if code == 0 || !strings.Contains(out, "flavors[0].max_runners") {
		t.Errorf("serve started on a bad config (exit %d):\n%s", code, out)
	}

	// A receiver's config: fine for the webhook role, short of what consumers need.
	good, _, _ := intakeConfig(t, dir)
	env := []string{"SPAWNER_WEBHOOK_SECRETS=" + intakeSecret}
	out, code = runCmd(t, env, "config", "check", "--config", good, "--roles", "webhook")
	if code != 0 {
		t.Errorf("config check --roles webhook rejected a receiver's file (exit %d):\n%s", code, out)
	}
	out, code = runCmd(t, env, "config", "check", "--config", good)
	if code == 0 || !strings.Contains(out, "github.path:") {
		t.Errorf("config check (every role) of a file without github: exit %d, want github.path named:\n%s", code, out)
	}
	out, code = runCmd(t, env, "consumer", "--config", good)
	if code != 2 || !strings.Contains(out, "github.path:") {
		t.Errorf("consumer started without GitHub credentials (exit %d):\n%s", code, out)
	}
	out, code = runCmd(t, env, "config", "check", "--config", good, "--roles", "webhook,scheduler")
	if code != 2 || !strings.Contains(out, `"scheduler"`) {
		t.Errorf("config check --roles scheduler: exit %d:\n%s", code, out)
	}
}

// TestConfigCheckWarnsOfReadableSecretFiles: a secret file everyone can read is a
// warning in config check (which still passes) and in the log of a process at start.
func TestConfigCheckWarnsOfReadableSecretFiles(t *testing.T) {
	dir := t.TempDir()
	secrets := writeFile(t, dir, "webhook-secrets", intakeSecret+"\n")
	if err := os.Chmod(secrets, 0o644); err != nil {
		t.Fatal(err)
	}
	web := freeAddr(t)
	cfg := writeFile(t, dir, "spawner.yaml", fmt.Sprintf(`
state_dir: %s
log: {format: text}
nats: {listen: %s}
webhook: {listen: %s, secrets_file: %s}
routing: {default_flavor: k8s}
flavors:
  - {name: k8s, labels: [k8s], max_runners: 2, backend: sim}
`, filepath.Join(dir, "state"), freeAddr(t), web, secrets))
	out, code := runCmd(t, nil, "config", "check", "--config", cfg, "--roles", "webhook")
	if code != 0 || !strings.Contains(out, "warning: webhook.secrets_file: "+secrets+" holds a secret and is readable by everyone") {
		t.Errorf("config check of a world-readable secrets file: exit %d, want 0 and a warning:\n%s", code, out)
	}
	p := startProc(t, nil, "serve", "--config", cfg, "--roles", "webhook")
	waitReady(t, "http://"+web, 30*time.Second)
	if log := p.out.String(); !strings.Contains(log, `msg="config warning" key=webhook.secrets_file`) {
		t.Errorf("serve logged no warning for the secrets file:\n%s", log)
	}

	if err := os.Chmod(secrets, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runCmd(t, nil, "config", "check", "--config", cfg, "--roles", "webhook"); code != 0 || strings.Contains(out, "warning") {
		t.Errorf("config check of a private secrets file: exit %d:\n%s", code, out)
	}
}

// TestServeMetricsOnlyOnMetricsListen: by default a receiver serves /metrics on the
// webhook port, as it always did; with metrics.on_webhook_listener false it serves it
// only on metrics.listen, and the webhook port keeps /healthz and /readyz. Both kinds
// of receiver: serve with the webhook role, and a separate webhook process.
func TestServeMetricsOnlyOnMetricsListen(t *testing.T) {
	env := []string{"SPAWNER_WEBHOOK_SECRETS=" + intakeSecret}
	get := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			t.Errorf("GET %s: %v", url, err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name       string
		onWebhook  string
		webMetrics int
	}{{"default", "", 200}, {"off the webhook listener", "on_webhook_listener: false, ", 404}} {
		dir := t.TempDir()
		web, metrics := freeAddr(t), freeAddr(t)
		cfg := writeFile(t, dir, "spawner.yaml", fmt.Sprintf(`
state_dir: %s
log: {format: text}
nats: {listen: %s}
webhook: {listen: %s}
metrics: {%slisten: %s}
routing: {default_flavor: k8s}
flavors:
  - {name: k8s, labels: [k8s], max_runners: 2, backend: sim}
`, filepath.Join(dir, "state"), freeAddr(t), web, tc.onWebhook, metrics))
		web2, metrics2 := freeAddr(t), freeAddr(t)
		procs := []*proc{startProc(t, env, "serve", "--config", cfg, "--roles", "webhook")}
		waitReady(t, "http://"+web, 30*time.Second)
		// A separate receiver on the serve's embedded NATS, with its own ports.
		procs = append(procs, startProc(t, env, "webhook", "--config", cfg, "--webhook-listen", web2, "--metrics-listen", metrics2))
		waitReady(t, "http://"+web2, 30*time.Second)
		for _, addrs := range [][2]string{{web, metrics}, {web2, metrics2}} {
			if code := get("http://" + addrs[0] + "/metrics"); code != tc.webMetrics {
				t.Errorf("%s: webhook listener /metrics answered %d, want %d", tc.name, code, tc.webMetrics)
			}
			if code := get("http://" + addrs[0] + "/healthz"); code != 200 {
				t.Errorf("%s: webhook listener /healthz answered %d", tc.name, code)
			}
			if tc.webMetrics == 404 {
				// The separate listener serves what a scraper and a prober need.
				waitReady(t, "http://"+addrs[1], 30*time.Second)
				if code := get("http://" + addrs[1] + "/metrics"); code != 200 {
					t.Errorf("%s: metrics.listen /metrics answered %d, want 200", tc.name, code)
				}
			}
		}
		for i := len(procs) - 1; i >= 0; i-- {
			if err := procs[i].stop(10 * time.Second); err != nil {
				t.Logf("stopped: %v", err)
			}
		}
	}
}
