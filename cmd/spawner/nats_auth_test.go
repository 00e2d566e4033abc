package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/internal/testcert"
	"github.com/runner-spawner/runner-spawner/queue"
)

const natsTestPassword = "nats-test-password-0123456789"

// TestServeEmbeddedNATSRefusesAnonymousClients is the attack on the embedded NATS
// server, run against the built binary: a client without the configured credential
// used to list the streams, write a runner record carrying its own bootstrap token
// into spawner_runners, fetch a freshly minted JIT config for it from the bootstrap
// endpoint (a real registration on GitHub), forge job events past the webhook's HMAC
// and send flush commands. Now it is refused at connect. The same steps with the
// credential succeed, so the attack path the test drives is a real one.
func TestServeEmbeddedNATSRefusesAnonymousClients(t *testing.T) {
	w := newE2EWorld(t, fakegithub.Options{})
	dir := t.TempDir()
	web, natsAddr, boot := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := writeFile(t, dir, "spawner.yaml", fmt.Sprintf(`state_dir: %s
log: {level: info, format: text}
github: {url: %q, path: octo-org, token: ghp_e2e, rate_per_hour: 1000000, secondary_points_per_minute: 0}
nats: {listen: %s, user: spawner, password: %s}
webhook: {listen: %s, secrets: [%q]}
bootstrap: {listen: %s, url: "http://%s"}
janitor: {interval: 1s}
routing: {default_flavor: small}
flavors:
  - {name: small, labels: [small], max_runners: 2, backend: sim, sim: {url: %q}}
`, filepath.Join(dir, "state"), w.gh.URL(), natsAddr, natsTestPassword, web, e2eSecret, boot, boot, w.cloudURL))
	startProc(t, nil, "serve", "--config", cfg)
	waitReady(t, "http://"+web, 30*time.Second)
	url := "nats://" + natsAddr

	// No credential, or a wrong one: refused by the server's own check.
	for _, c := range []struct {
		name string
		opt  nats.Option
	}{{"no credential", func(*nats.Options) error { return nil }}, {"a wrong password", nats.UserInfo("spawner", "guess")}} {
		nc, err := nats.Connect(url, c.opt, nats.Timeout(5*time.Second))
		if err == nil {
			nc.Close()
			t.Errorf("a client with %s connected to the embedded server", c.name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("a client with %s: %v, want an authorization violation", c.name, err)
		}
	}
	registered := w.gh.Summary().Runners
	if did := attackEmbedded(t, queue.Options{URL: url, Name: "intruder"}, boot, "spawner-small-900001-0", 900001); len(did) > 0 {
		t.Errorf("a client without credentials: %s", strings.Join(did, "; "))
	}
	if got := w.gh.Summary().Runners; got != registered {
		t.Errorf("GitHub has %d runner registrations after the anonymous attempt, want %d", got, registered)
	}

	// With the credential the same steps work: the path above is a real one.
	auth := queue.Options{URL: url, Name: "operator", User: "spawner", Password: secret.New(natsTestPassword)}
	did := attackEmbedded(t, auth, boot, "spawner-small-900002-0", 900002)
	want := []string{"connected", "listed the streams", "wrote a runner record", "published a job event", "sent a flush", "fetched a JIT config"}
	if strings.Join(did, "; ") != strings.Join(want, "; ") {
		t.Errorf("with the credential: %q, want %q", did, want)
	}
	// And the spawner's own processes on the host connect with the same config.
	if out, errOut, code := runCmdSplit(t, nil, "status", "--config", cfg, "--json"); code != 0 {
		t.Errorf("status with the credential exited %d: %s%s", code, out, errOut)
	}
}

// attackEmbedded drives the attack as a client with opts and returns what it
// achieved: connecting, listing streams, writing a runner record with its own
// bootstrap token, publishing a job event, sending a flush, and fetching the JIT
// config minted for its forged runner.
func attackEmbedded(t *testing.T, opts queue.Options, bootAddr, runner string, jobID int64) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := queue.Connect(ctx, opts)
	if err != nil {
		t.Fatalf("queue connect: %v", err)
	}
	defer conn.Close()
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	for conn.Ready(rctx) != nil {
		select {
		case <-rctx.Done():
			return nil // refused: never usable
		case <-time.After(50 * time.Millisecond):
		}
	}
	did := []string{"connected"}
	if _, _, err := conn.JobBacklog(ctx); err == nil {
		did = append(did, "listed the streams")
	}
	runners, err := queue.OpenBucket[fleet.RunnerRecord](ctx, conn, queue.BucketRunners)
	if err != nil {
		t.Logf("runner bucket: %v", err)
		return did
	}
	token, hash := bootstrap.NewToken()
	if err := runners.Create(ctx, runner, &fleet.RunnerRecord{
		Name: runner, Flavor: "small", Backend: "sim", State: fleet.RunnerBooting, ForJob: jobID,
		TokenHash: hash, TokenExpires: time.Now().Add(time.Minute), CreatedAt: time.Now().UTC(),
	}); err == nil {
		did = append(did, "wrote a runner record")
	}
	if _, err := conn.PublishJobEvent(ctx, &queue.JobEvent{
		Source: queue.SourceWebhook, Action: queue.ActionQueued, JobID: jobID, RunID: jobID, RunAttempt: 1,
		Repo: "octo-org/forged", Labels: []string{"self-hosted", "small"}, NormLabels: []string{"small"},
		Flavor: "small", ReceivedAt: time.Now().UTC(),
	}); err == nil {
		did = append(did, "published a job event")
	}
	// The janitor answers flushes once it holds its lease, a moment after start.
	req, _ := json.Marshal(control.FlushRequest{Mode: "FLUSH_IDLE", Flavor: "no-such-flavor"})
	fdeadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := conn.Request(ctx, control.SubjectFlush, req); err == nil {
			did = append(did, "sent a flush")
			break
		} else if !errors.Is(err, queue.ErrNoResponders) || time.Now().After(fdeadline) {
			t.Logf("flush: %v", err)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	hreq, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+bootAddr+bootstrap.PathPrefix+"/runners/"+runner+"/config", strings.NewReader("{}"))
	hreq.Header.Set("Authorization", "Bearer "+token)
	hreq.Header.Set("Accept", "application/json") // as the bootstrap script asks
	if resp, err := http.DefaultClient.Do(hreq); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			did = append(did, "fetched a JIT config")
		} else {
			t.Logf("bootstrap config for %s: %d", runner, resp.StatusCode)
		}
	}
	return did
}

// TestServeEmbeddedNATSServesTLS: with nats.tls.cert_file and key_file, serve's
// embedded server requires TLS; the other processes on the host connect with the same
// config (trusting ca_file), a client that does not trust the certificate cannot.
func TestServeEmbeddedNATSServesTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := testcert.SelfSignedFor(t, "spawner-nats", "127.0.0.1")
	cert, key := writeFile(t, dir, "nats.crt", string(certPEM)), writeFile(t, dir, "nats.key", string(keyPEM))
	web, natsAddr := freeAddr(t), freeAddr(t)
	cfg := writeFile(t, dir, "spawner.yaml", fmt.Sprintf(`state_dir: %s
log: {format: text}
nats: {listen: %s, token: %s, tls: {ca_file: %s, cert_file: %s, key_file: %s}}
webhook: {listen: %s, secrets: [%q]}
routing: {default_flavor: small}
flavors:
  - {name: small, labels: [small], max_runners: 2, backend: sim}
`, filepath.Join(dir, "state"), natsAddr, natsTestPassword, cert, cert, key, web, e2eSecret))
	startProc(t, nil, "serve", "--config", cfg, "--roles", "webhook")
	waitReady(t, "http://"+web, 30*time.Second)
	if nc, err := nats.Connect("nats://"+natsAddr, nats.Token(natsTestPassword), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Errorf("a client that does not trust the certificate connected")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("connect without the CA: %v, want a certificate error", err)
	}
	if out, errOut, code := runCmdSplit(t, nil, "status", "--config", cfg, "--json"); code != 0 {
		t.Errorf("status over TLS exited %d: %s%s", code, out, errOut)
	}
}
