package bootstrap_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/fleet/fleettest"
	"github.com/runner-spawner/runner-spawner/internal/testcert"
	"github.com/runner-spawner/runner-spawner/queue"
)

// fetchConfig takes a runner's config with its bootstrap token, as the script does.
func (e *env) fetchConfig(t *testing.T, name, token string) bootstrap.ConfigResponse {
	t.Helper()
	resp := e.call(t, name, "config", token, "{}")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("config: %d", resp.StatusCode)
	}
	var cfg bootstrap.ConfigResponse
	if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// rawRunner is the runner's record as the KV store holds it, bytes and all.
func (e *env) rawRunner(t *testing.T, name string) string {
	t.Helper()
	return string(fleettest.Raw(t, e.ns.Connect(t, queue.Options{Name: "raw-reader"}), queue.BucketRunners, name))
}

// Each token of a runner can say only what its holder may say: the hook token (which
// job code can read, since the hook runs as the runner user) never job_finished, which
// deletes the instance.
func TestTokenScopes(t *testing.T) {
	e := newEnv(t)
	name := "spawner-small-1-0"
	boot := e.newRunner(t, name, time.Minute)
	other := e.newRunner(t, "spawner-small-2-0", time.Minute)
	cfg := e.fetchConfig(t, name, boot)
	if cfg.CallbackToken == "" || cfg.HookToken == "" || cfg.CallbackToken == cfg.HookToken {
		t.Fatalf("config answer tokens: root %q, hook %q", cfg.CallbackToken, cfg.HookToken)
	}
	otherCfg := e.fetchConfig(t, "spawner-small-2-0", other)

	steps := []struct {
		what, token, event string
		want               int
	}{
		{"hook token: job_finished", cfg.HookToken, bootstrap.EventJobFinished, http.StatusForbidden},
		{"hook token: booted", cfg.HookToken, bootstrap.EventBooted, http.StatusForbidden},
		{"bootstrap token: job_finished", boot, bootstrap.EventJobFinished, http.StatusForbidden},
		{"bootstrap token: job_started", boot, bootstrap.EventJobStarted, http.StatusForbidden},
		{"another runner's root token", otherCfg.CallbackToken, bootstrap.EventJobFinished, http.StatusUnauthorized},
		{"another runner's hook token", otherCfg.HookToken, bootstrap.EventJobStarted, http.StatusUnauthorized},
		{"no token", "", bootstrap.EventJobStarted, http.StatusUnauthorized},
		{"hook token: job_started", cfg.HookToken, bootstrap.EventJobStarted, http.StatusNoContent},
		{"hook token: pre_job_done", cfg.HookToken, bootstrap.EventPreJobDone, http.StatusNoContent},
	}
	for _, s := range steps {
		if got := e.call(t, name, "status", s.token, `{"event":"`+s.event+`"}`).StatusCode; got != s.want {
			t.Errorf("%s: %d, want %d", s.what, got, s.want)
		}
	}
	rec, err := e.state.Runner(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != fleet.RunnerBusy || rec.PreJobDoneAt.IsZero() || rec.ExitCode != nil {
		t.Errorf("after the hook's events: %+v", rec)
	}
	select {
	case got := <-e.finished:
		t.Fatalf("%s reported finished by a token that may not say so", got)
	default:
	}
	if got := e.call(t, name, "status", cfg.CallbackToken, `{"event":"job_finished","exit_code":0}`).StatusCode; got != http.StatusNoContent {
		t.Fatalf("root token: job_finished: %d", got)
	}
	if got := <-e.finished; got != name {
		t.Errorf("finished %s", got)
	}
}

// A record written before the hook token existed has only callback_hash: its
// instance's token keeps every event during an upgrade.
func TestRecordWithoutHookHashKeepsRootScope(t *testing.T) {
	e := newEnv(t)
	name := "spawner-small-3-0"
	token, hash := bootstrap.NewToken()
	fleettest.PutRunner(t, e.conn, fleet.RunnerRecord{
		Name: name, Flavor: "small", State: fleet.RunnerIdle, ForJob: 3, ConfigFetched: true, CallbackHash: hash,
	})
	for _, ev := range []string{bootstrap.EventJobStarted, bootstrap.EventPreJobDone, bootstrap.EventJobFinished} {
		if got := e.call(t, name, "status", token, `{"event":"`+ev+`"}`).StatusCode; got != http.StatusNoContent {
			t.Errorf("%s with an old record's callback token: %d", ev, got)
		}
	}
}

// The config answer is JSON only. A script that asks for the old shell answer is
// refused before anything is claimed or minted, so its runner is simply replaced.
func TestConfigAnswerIsJSONOnly(t *testing.T) {
	e := newEnv(t)
	name := "spawner-small-4-0"
	token := e.newRunner(t, name, time.Minute)
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+bootstrap.PathPrefix+"/runners/"+name+"/config", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/plain")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotAcceptable || e.minter.calls != 0 {
		t.Fatalf("text answer asked: %d after %d mints, want 406 and none", resp.StatusCode, e.minter.calls)
	}
	resp = e.call(t, name, "config", token, "{}")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/json" {
		t.Fatalf("JSON answer: %d %s", resp.StatusCode, ct)
	}
}

// The tokens are stored as hashes only: whoever reads the KV store cannot act as a
// runner. Read the record as the store holds it, through the real NATS server.
func TestTokensAreStoredHashed(t *testing.T) {
	e := newEnv(t)
	name := "spawner-small-5-0"
	boot := e.newRunner(t, name, time.Minute)
	cfg := e.fetchConfig(t, name, boot)
	raw := e.rawRunner(t, name)
	for what, token := range map[string]string{"bootstrap": boot, "root callback": cfg.CallbackToken, "hook": cfg.HookToken} {
		if strings.Contains(raw, token) {
			t.Errorf("the %s token is in the stored record: %s", what, raw)
		}
		if !strings.Contains(raw, bootstrap.HashToken(token)) {
			t.Errorf("the %s token's hash is not in the stored record: %s", what, raw)
		}
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(raw), &fields); err != nil {
		t.Fatal(err)
	}
	if fields["callback_hash"] != bootstrap.HashToken(cfg.CallbackToken) || fields["hook_hash"] != bootstrap.HashToken(cfg.HookToken) {
		t.Errorf("hashes under the wrong keys: %s", raw)
	}
}

// A {name} no runner can have is refused (400) before the store is read: with NATS
// stopped, a bad name still gets its 400 at once. What is logged of it is cut.
func TestRunnerNameCheckedBeforeTheStore(t *testing.T) {
	e := newEnv(t)
	// A good name that is no runner's is looked up: 401, like a wrong token.
	if got := e.call(t, "spawner-small-1-0", "config", "token", "{}").StatusCode; got != http.StatusUnauthorized {
		t.Fatalf("an unknown runner: %d, want 401", got)
	}
	e.ns.Stop()
	long := strings.Repeat("a", 5000)
	for _, name := range []string{"Spawner-small-1-0", "spawner_small", "x", "spawner-small-1-", "1spawner", "spawner%27small", long} {
		for _, endpoint := range []string{"config", "status"} {
			if got := e.call(t, name, endpoint, "token", `{"event":"booted"}`).StatusCode; got != http.StatusBadRequest {
				t.Errorf("%s of %.20q: %d, want 400", endpoint, name, got)
			}
		}
	}
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if len(line) > 1024 {
			t.Errorf("a log line of %d bytes: %.200s…", len(line), line)
		}
	}
	if !strings.Contains(e.logs.String(), "…(+") {
		t.Errorf("the long name was not logged cut:\n%.2000s", e.logs.String())
	}
}

// An unknown event is refused before the store is read, and logged cut.
func TestUnknownEventIsCutInLogs(t *testing.T) {
	e := newEnv(t)
	name := "spawner-small-6-0"
	e.newRunner(t, name, time.Minute)
	event := strings.Repeat("x", 3000)
	if got := e.call(t, name, "status", "token", `{"event":"`+event+`"}`).StatusCode; got != http.StatusBadRequest {
		t.Fatalf("unknown event: %d", got)
	}
	if strings.Contains(e.logs.String(), event) || !strings.Contains(e.logs.String(), "…(+") {
		t.Errorf("the unknown event was not logged cut:\n%.600s", e.logs.String())
	}
}

// checkTokenFiles checks what the script left: the root callback token in a root-only
// file in a root-only directory, the hook token where the hook reads it, and neither
// in lib.sh nor the root token anywhere the runner user may read.
func checkTokenFiles(t *testing.T, runDir string, rec *fleet.RunnerRecord) {
	t.Helper()
	mode := func(p string) fs.FileMode {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	secretDir, hookDir := filepath.Join(runDir, "spawner"), filepath.Join(runDir, "spawner-hooks")
	rootFile, hookFile := filepath.Join(secretDir, "callback-token"), filepath.Join(hookDir, "hook-token")
	if m := mode(secretDir); m != 0o700 {
		t.Errorf("%s: mode %v, want 0700", secretDir, m)
	}
	if m := mode(rootFile); m != 0o600 {
		t.Errorf("%s: mode %v, want 0600", rootFile, m)
	}
	root, hook := read(rootFile), read(hookFile)
	if bootstrap.HashToken(root) != rec.CallbackHash {
		t.Errorf("%s does not hold the root callback token", rootFile)
	}
	if bootstrap.HashToken(hook) != rec.HookHash {
		t.Errorf("%s does not hold the hook token", hookFile)
	}
	// The runner runs as root here (no runner user in the test): the hook token is
	// root's too. With a runner user it is that user's, mode 0400.
	if m := mode(hookFile); m != 0o600 {
		t.Errorf("%s: mode %v, want 0600", hookFile, m)
	}
	lib := read(filepath.Join(hookDir, "lib.sh"))
	if m := mode(filepath.Join(hookDir, "lib.sh")); m != 0o644 {
		t.Errorf("lib.sh: mode %v, want 0644", m)
	}
	if strings.Contains(lib, root) || strings.Contains(lib, hook) {
		t.Errorf("lib.sh (readable by every user) holds a token:\n%s", lib)
	}
	entries, err := os.ReadDir(hookDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		if strings.Contains(read(filepath.Join(hookDir, ent.Name())), root) {
			t.Errorf("%s, which the runner user may read, holds the root callback token", ent.Name())
		}
	}
}

// hostileAnswers are config answers an attacker on the path (plain http) or a
// compromised endpoint could send. None may run anything: the script must refuse each
// and never start the runner. PWNED is replaced with a path the test watches.
var hostileAnswers = map[string]string{
	"command substitution in the JIT config": `{"runner_name":"NAME","jit_config":"$(touch PWNED)","callback_token":"abc","hook_token":"def"}`,
	"backquotes in the JIT config":           "{\"runner_name\":\"NAME\",\"jit_config\":\"YWJj`touch PWNED`\",\"callback_token\":\"abc\",\"hook_token\":\"def\"}",
	"quotes in a token":                      `{"runner_name":"NAME","jit_config":"YWJj","callback_token":"'; touch PWNED; '","hook_token":"def"}`,
	"the old shell answer":                   "SPAWNER_JITCONFIG='YWJj'; touch PWNED\nSPAWNER_CALLBACK_TOKEN='abc'\n",
	"a second line":                          "{\"runner_name\":\"NAME\",\"jit_config\":\"YWJj\",\"callback_token\":\"abc\",\"hook_token\":\"def\"}\ntouch PWNED\n{\"jit_config\":\"YWJj\"}\n",
	"another runner's name":                  `{"runner_name":"spawner-small-99-0","jit_config":"YWJj","callback_token":"abc","hook_token":"def"}`,
	"escaped quote in a value":               `{"runner_name":"NAME","jit_config":"YWJj\"; touch PWNED; \"","callback_token":"abc","hook_token":"def"}`,
}

// The script parses the config answer, never runs it: for each hostile answer, in
// busybox sh and in the system sh, nothing is executed and the runner never starts.
func TestScriptNeverRunsTheAnswer(t *testing.T) {
	for what, answer := range hostileAnswers {
		for _, shell := range []string{"busybox", "system"} {
			t.Run(shell+"/"+what, func(t *testing.T) {
				dir := t.TempDir()
				pwned := filepath.Join(dir, "PWNED")
				name := "spawner-small-8-0"
				body := strings.ReplaceAll(strings.ReplaceAll(answer, "PWNED", pwned), "NAME", name)
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.HasSuffix(r.URL.Path, "/config") {
						w.Header().Set("Content-Type", "application/json")
						_, _ = w.Write([]byte(body))
						return
					}
					w.WriteHeader(http.StatusNoContent)
				}))
				defer srv.Close()
				runner, argsFile := fakeRunner(t, dir)
				token, _ := bootstrap.NewToken()
				r, err := bootstrap.Render(bootstrap.Spec{
					URL: srv.URL, RunnerName: name, Flavor: "small", Token: token, RunDir: filepath.Join(dir, "run"), Path: shellPath(shell, dir),
					Runner: bootstrap.RunnerSettings{Command: runner, UserDataFormat: bootstrap.FormatScript},
				})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
				defer cancel()
				out, err := scriptCmd(ctx, t, shell, dir, r.UserData).CombinedOutput()
				if _, serr := os.Stat(pwned); serr == nil {
					t.Fatalf("the answer ran a command\n%s", out)
				}
				if _, serr := os.Stat(argsFile); serr == nil {
					t.Errorf("the runner started on a hostile answer\n%s", out)
				}
				if err == nil || !strings.Contains(string(out), "refusing it") {
					t.Errorf("script: %v, want a refusal\n%s", err, out)
				}
			})
		}
	}
}

// With https, the script pins the certificate it was rendered with: curl reaches the
// endpoint holding that certificate, refuses one with another (no token is sent), and
// an image with busybox wget only (which cannot verify certificates) gives up before
// it sends anything.
func TestScriptPinsTheCertificate(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	render := func(t *testing.T, e *env, shell, dir, name, token string, pin []byte) bootstrap.Rendered {
		t.Helper()
		runner, _ := fakeRunner(t, dir)
		r, err := bootstrap.Render(bootstrap.Spec{
			URL: e.srv.URL, CACert: pin, RunnerName: name, Flavor: "small", Token: token, RunDir: filepath.Join(dir, "run"), Path: shellPath(shell, dir),
			Runner: bootstrap.RunnerSettings{Command: runner, UserDataFormat: bootstrap.FormatScript},
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("curl with the endpoint certificate", func(t *testing.T) {
		e := newEnv(t, envOptions{tls: true})
		dir, name := t.TempDir(), "spawner-small-10-0"
		r := render(t, e, "system", dir, name, e.newRunner(t, name, time.Minute), e.pin())
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		out, err := scriptCmd(ctx, t, "system", dir, r.UserData).CombinedOutput()
		if err != nil {
			t.Fatalf("bootstrap script over https: %v\n%s", err, out)
		}
		rec, err := e.state.Runner(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != fleet.RunnerFinished || rec.PreJobDoneAt.IsZero() {
			t.Errorf("runner record after the script: %+v\n%s", rec, out)
		}
		if got, err := os.ReadFile(filepath.Join(dir, "run", "spawner-hooks", "ca.pem")); err != nil || string(got) != string(e.pin()) {
			t.Errorf("the pinned certificate file: %v\n%s", err, got)
		}
	})

	t.Run("curl with another certificate", func(t *testing.T) {
		e := newEnv(t, envOptions{tls: true})
		dir, name := t.TempDir(), "spawner-small-11-0"
		other, _ := testcert.SelfSignedFor(t, "mallory", "127.0.0.1")
		r := render(t, e, "system", dir, name, e.newRunner(t, name, time.Minute), other)
		ctx, cancel := context.WithCancel(t.Context())
		cmd := scriptCmd(ctx, t, "system", dir, r.UserData)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// curl gives up in the handshake: the server logs it, and no request ever
		// reaches the handler. Wait for either.
		eventually(t, 30*time.Second, func() bool {
			return strings.Contains(e.tlsLog.String(), "TLS handshake error") || e.handled.Load() > 0
		})
		cancel()
		_ = cmd.Wait()
		if n := e.handled.Load(); n != 0 {
			t.Errorf("%d requests reached the endpoint through a certificate the script does not pin", n)
		}
	})

	t.Run("busybox wget only", func(t *testing.T) {
		if _, err := exec.LookPath("busybox"); err != nil {
			t.Skip("busybox not installed")
		}
		e := newEnv(t, envOptions{tls: true})
		dir, name := t.TempDir(), "spawner-small-12-0"
		r := render(t, e, "busybox", dir, name, e.newRunner(t, name, time.Minute), e.pin())
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		out, err := scriptCmd(ctx, t, "busybox", dir, r.UserData).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "no curl") {
			t.Errorf("https with busybox wget: %v, want a refusal\n%s", err, out)
		}
		if n := e.handled.Load(); n != 0 {
			t.Errorf("%d requests sent over TLS nobody verified", n)
		}
	})
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Render refuses what could be shell in the values it writes into the script, and
// what must not be handed to instances.
func TestRenderRefusesUnsafeValues(t *testing.T) {
	cert, key := testcert.SelfSignedFor(t, "spawner", "10.77.0.1")
	good := bootstrap.Spec{URL: "http://10.77.0.1:8081", RunnerName: "spawner-small-1-0", Flavor: "small", Token: "TOKEN-abc",
		Runner: bootstrap.RunnerSettings{Command: "/run.sh"}}
	if _, err := bootstrap.Render(good); err != nil {
		t.Fatal(err)
	}
	tls := good
	tls.URL, tls.CACert = "https://10.77.0.1:8081", cert
	if _, err := bootstrap.Render(tls); err != nil {
		t.Fatal(err)
	}
	for what, edit := range map[string]func(*bootstrap.Spec){
		"a quote in the url":         func(s *bootstrap.Spec) { s.URL = "http://10.77.0.1:8081/'; touch /tmp/pwned; '" },
		"a substitution in the url":  func(s *bootstrap.Spec) { s.URL = "http://10.77.0.1:8081/$(id)" },
		"a newline in the url":       func(s *bootstrap.Spec) { s.URL = "http://10.77.0.1:8081/\nid" },
		"a quote in the runner name": func(s *bootstrap.Spec) { s.RunnerName = "spawner-'x" },
		"a quote in the token":       func(s *bootstrap.Spec) { s.Token = "tok'en" },
		"a newline in the flavor":    func(s *bootstrap.Spec) { s.Flavor = "small\nid" },
		"a quote in the run dir":     func(s *bootstrap.Spec) { s.RunDir = "/run/'x" },
		"a pin with an http url":     func(s *bootstrap.Spec) { s.CACert = cert },
		"a private key in the pin": func(s *bootstrap.Spec) {
			s.URL, s.CACert = "https://10.77.0.1:8081", append(append([]byte{}, cert...), key...)
		},
		"a pin that is no PEM":        func(s *bootstrap.Spec) { s.URL, s.CACert = "https://10.77.0.1:8081", []byte("SPAWNER_CA_EOF\nid\n") },
		"a heredoc end in the script": func(s *bootstrap.Spec) { s.Runner.PreJobScript = "SPAWNER_CA_EOF" },
	} {
		s := good
		edit(&s)
		if _, err := bootstrap.Render(s); err == nil {
			t.Errorf("%s: rendered", what)
		}
	}
}
