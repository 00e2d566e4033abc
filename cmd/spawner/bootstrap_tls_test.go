package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/internal/testcert"
)

// TestBootstrapOverHTTPS runs the binary with bootstrap.tls: the endpoint serves https
// only, and the simulated instances, which pin the certificate handed to them as the
// script does, run their jobs through it.
func TestBootstrapOverHTTPS(t *testing.T) {
	w := newE2EWorld(t, fakegithub.Options{JobDuration: 50 * time.Millisecond})
	dir := t.TempDir()
	cert, key := testcert.SelfSignedFor(t, "spawner", "127.0.0.1")
	certFile, keyFile := writeFile(t, dir, "cert.pem", string(cert)), writeFile(t, dir, "key.pem", string(key))
	web, nats, boot := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := writeFile(t, dir, "spawner.yaml", fmt.Sprintf(`state_dir: %s
log: {level: info, format: text}
github: {url: %q, path: octo-org, token: ghp_e2e, rate_per_hour: 1000000, secondary_points_per_minute: 0}
nats: {listen: %s}
webhook: {listen: %s, secrets: [%q]}
bootstrap: {listen: %s, url: "https://%s", tls: {cert_file: %s, key_file: %s}}
janitor: {interval: 1s}
routing: {default_flavor: small}
flavors:
  - name: small
    labels: [small]
    max_runners: 2
    backend: sim
    sim: {url: %q}
    runner: {idle_ttl: 2s, boot_timeout: 20s}
`, filepath.Join(dir, "state"), w.gh.URL(), nats, web, e2eSecret, boot, boot, certFile, keyFile, w.cloudURL))
	if out, code := runCmd(t, nil, "config", "check", "--config", cfg); code != 0 {
		t.Fatalf("config check: exit %d\n%s", code, out)
	}
	startProc(t, nil, "serve", "--config", cfg)
	waitReady(t, "http://"+web, 30*time.Second)
	w.gh.SetWebhookTarget("http://"+web+"/webhook", e2eSecret)
	for range 4 {
		w.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux", "small"}})
	}
	w.waitAllCompleted(t, cfg, time.Minute)
	for _, j := range w.gh.Jobs() {
		if j.Conclusion != "success" {
			t.Errorf("job %d: %s", j.ID, j.Conclusion)
		}
	}
	// Plain http finds no endpoint there.
	if resp, err := http.Get("http://" + boot + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the bootstrap endpoint answered plain http")
		}
	}
}

// config check names bootstrap.url when it could carry shell into the scripts, and
// the bootstrap.tls keys when the pair or the pin is wrong.
func TestConfigCheckBootstrapURL(t *testing.T) {
	dir := t.TempDir()
	other, _ := testcert.SelfSignedFor(t, "other", "10.0.0.1")
	_, key := testcert.SelfSignedFor(t, "spawner", "10.0.0.1")
	otherFile, keyFile := writeFile(t, dir, "other.pem", string(other)), writeFile(t, dir, "key.pem", string(key))
	for what, tc := range map[string]struct{ bootstrap, key string }{
		"a quote":          {`{url: "http://10.0.0.1:8081/'; touch /tmp/pwned; '"}`, "bootstrap.url:"},
		"http with tls":    {`{url: "http://10.0.0.1:8081", tls: {cert_file: ` + otherFile + `, key_file: ` + keyFile + `}}`, "bootstrap.url:"},
		"a key not a pair": {`{url: "https://10.0.0.1:8081", tls: {cert_file: ` + otherFile + `, key_file: ` + keyFile + `}}`, "bootstrap.tls.key_file:"},
	} {
		cfg := writeFile(t, dir, "spawner.yaml", fmt.Sprintf(`state_dir: %s
github: {path: octo-org, token: ghp_x}
webhook: {secrets: ["0123456789abcdef0123"]}
bootstrap: %s
flavors:
  - {name: small, labels: [small], max_runners: 1, backend: sim}
`, filepath.Join(dir, "state"), tc.bootstrap))
		out, code := runCmd(t, nil, "config", "check", "--config", cfg)
		if code == 0 || !strings.Contains(out, tc.key) {
			t.Errorf("%s: exit %d, want %s named:\n%s", what, code, tc.key, out)
		}
	}
}
