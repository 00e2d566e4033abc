package bootstrap_test

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/fleet/fleettest"
	"github.com/runner-spawner/runner-spawner/internal/syncbuf"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

type fakeMinter struct {
	mu    sync.Mutex
	calls int
	fail  error
}

func (m *fakeMinter) MintJITConfig(_ context.Context, name string, labels []string) (int64, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.fail != nil {
		err := m.fail
		m.fail = nil
		return 0, "", err
	}
	return 4242, jitFor(name), nil
}

// jitFor is the fake's JIT config for a runner: base64, as GitHub's is, with every
// character of the alphabet that is not a letter or digit (+, / and =).
func jitFor(name string) string {
	return base64.StdEncoding.EncodeToString([]byte("jit-config-for-" + name + "\xfb\xef\xff\xfe\xfb"))
}

type env struct {
	ns       *queuetest.Server
	conn     *queue.Conn
	state    *fleet.Fleet
	srv      *httptest.Server
	minter   *fakeMinter
	finished chan string
	logs     *syncbuf.Buffer // the server's log
	handled  atomic.Int64    // requests that reached the handler
	agents   sync.Map        // User-Agent of every request → true
	tlsLog   *syncbuf.Buffer // the HTTP server's own errors (TLS handshakes)
}

type envOptions struct {
	tls    bool                   // serve https with httptest's certificate
	policy bootstrap.PolicyMinter // mints the repo-policy tokens (nil: no check)
}

func newEnv(t *testing.T, opts ...envOptions) *env {
	t.Helper()
	var o envOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	ns := queuetest.Start(t)
	conn := ns.Connect(t, queue.Options{})
	st, err := fleet.Open(t.Context(), conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ns: ns, conn: conn, state: st, minter: &fakeMinter{}, finished: make(chan string, 10), logs: &syncbuf.Buffer{}, tlsLog: &syncbuf.Buffer{}}
	s := bootstrap.NewServer(bootstrap.Options{
		Fleet:  st,
		Minter: e.minter,
		Policy: o.policy,
		Labels: func(f string) ([]string, bool) { return []string{"self-hosted", f}, f == "small" },
		Finished: func(name string) {
			e.finished <- name
		},
		Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
	})
	mux := http.NewServeMux()
	mux.Handle(bootstrap.PathPrefix+"/", http.StripPrefix(bootstrap.PathPrefix, s.Routes()))
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.handled.Add(1)
		e.agents.Store(r.UserAgent(), true)
		mux.ServeHTTP(w, r)
	}))
	e.srv.Config.ErrorLog = log.New(e.tlsLog, "", 0)
	if o.tls {
		e.srv.StartTLS()
	} else {
		e.srv.Start()
	}
	t.Cleanup(e.srv.Close)
	return e
}

// pin is the PEM of the test server's certificate, what an instance pins.
func (e *env) pin() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw})
}

func (e *env) newRunner(t *testing.T, name string, ttl time.Duration) string {
	t.Helper()
	token, hash := bootstrap.NewToken()
	fleettest.PutRunner(t, e.conn, fleet.RunnerRecord{
		Name: name, Flavor: "small", State: fleet.RunnerBooting, ForJob: 1,
		TokenHash: hash, TokenExpires: time.Now().Add(ttl),
	})
	return token
}

func (e *env) call(t *testing.T, name, endpoint, token, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+bootstrap.PathPrefix+"/runners/"+name+"/"+endpoint, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestConfigIsHandedOutOnce(t *testing.T) {
	e := newEnv(t)
	token := e.newRunner(t, "spawner-small-1-0", time.Minute)
	other := e.newRunner(t, "spawner-small-2-0", time.Minute)
	expired := e.newRunner(t, "spawner-small-3-0", -time.Second)

	tests := []struct {
		name, runner, token string
		want                int
	}{
		{"no token", "spawner-small-1-0", "", 401},
		{"another runner's token", "spawner-small-1-0", other, 401},
		{"unknown runner", "spawner-small-9-0", token, 401},
		{"expired", "spawner-small-3-0", expired, 401},
		{"right", "spawner-small-1-0", token, 200},
		{"second time", "spawner-small-1-0", token, 410},
	}
	for _, tt := range tests {
		if got := e.call(t, tt.runner, "config", tt.token, "{}").StatusCode; got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}
	if e.minter.calls != 1 {
		t.Errorf("minted %d configs, want 1", e.minter.calls)
	}
	rec, err := e.state.Runner(t.Context(), "spawner-small-1-0")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != fleet.RunnerIdle || rec.GitHubRunnerID != 4242 || !rec.ConfigFetched || rec.CallbackHash == "" || rec.HookHash == "" {
		t.Errorf("runner after config: %+v", rec)
	}
}

func TestMintBusyIsRetriable(t *testing.T) {
	e := newEnv(t)
	token := e.newRunner(t, "spawner-small-1-0", time.Minute)
	e.minter.fail = &bootstrap.BusyError{RetryAfter: 7 * time.Second, Err: errors.New("rate limited")}
	resp := e.call(t, "spawner-small-1-0", "config", token, "{}")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("busy mint: %d Retry-After=%q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if got := e.call(t, "spawner-small-1-0", "config", token, "{}").StatusCode; got != 200 {
		t.Fatalf("retry after a busy mint: %d", got)
	}
}

func TestRenderGolden(t *testing.T) {
	spec := bootstrap.Spec{
		URL: "http://10.77.0.1:8081", RunnerName: "spawner-small-289782451-0", Flavor: "small", Token: "TOKEN-abc",
		Runner: bootstrap.RunnerSettings{
			Command: "/home/runner/actions-runner/run.sh", User: "runner",
			Env:             map[string]string{"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "it's,local"},
			DockerhubMirror: "https://mirror.example.com", PreJobScript: "/opt/repo-policy-check", PowerOff: true,
		},
	}
	for _, format := range []string{bootstrap.FormatCloudConfig, bootstrap.FormatScript} {
		spec.Runner.UserDataFormat = format
		r, err := bootstrap.Render(spec)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "user-data."+format, r.UserData)
		if format == bootstrap.FormatScript {
			golden(t, "exec-script.sh", r.Script)
			if strings.Contains(r.Script, "TOKEN-abc") {
				t.Error("the exec-mode script carries the token")
			}
			if r.Env[bootstrap.EnvToken] != "TOKEN-abc" {
				t.Errorf("exec env: %v", r.Env)
			}
		}
	}
	// https, with the certificate to pin written by the script itself.
	pin, err := os.ReadFile(filepath.Join("testdata", "pin.pem"))
	if err != nil {
		t.Fatal(err)
	}
	https := spec
	https.URL, https.CACert = "https://10.77.0.1:8443", pin
	https.Runner.UserDataFormat = bootstrap.FormatScript
	r, err := bootstrap.Render(https)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "user-data.script-https", r.UserData)
	if r.Env[bootstrap.EnvCACert] != string(pin) {
		t.Errorf("exec env carries no pin: %v", r.Env)
	}
	for name, bad := range map[string]bootstrap.RunnerSettings{
		"no command":          {},
		"multi-line command":  {Command: "a\nb"},
		"delimiter in script": {Command: "x", PreJobScript: "echo\nSPAWNER_HOOK_EOF\nrm -rf /"},
		"bad env name":        {Command: "x", Env: map[string]string{"A B": "1"}},
		"unknown format":      {Command: "x", UserDataFormat: "ignition"},
	} {
		s := spec
		s.Runner = bad
		if _, err := bootstrap.Render(s); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./bootstrap -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from %s; run go test ./bootstrap -update if the change is intended\n--- got:\n%s", name, path, got)
	}
}

// TestScriptRunsTheProtocol runs the rendered bootstrap script for real, in busybox sh
// with only busybox applets on PATH (so wget, as in the minimal image) and in the
// system sh with curl, against the real server, and checks the whole callback
// sequence and that the runner command got the JIT config.
func TestScriptRunsTheProtocol(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("busybox not installed")
	}
	for _, shell := range []string{"busybox", "system", "gnuwget"} {
		t.Run(shell, func(t *testing.T) {
			e := newEnv(t)
			dir := t.TempDir()
			name := "spawner-small-7-0"
			token := e.newRunner(t, name, time.Minute)
			runner, argsFile := fakeRunner(t, dir)
			r, err := bootstrap.Render(bootstrap.Spec{
				URL: e.srv.URL, RunnerName: name, Flavor: "small", Token: token, RunDir: filepath.Join(dir, "run"), Path: shellPath(shell, dir),
				Runner: bootstrap.RunnerSettings{Command: runner, User: "nobody-here", UserDataFormat: bootstrap.FormatScript,
					Env: map[string]string{"EXTRA": "x y"}, PreJobScript: "echo checking repo", DockerhubMirror: ""},
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cmd := scriptCmd(ctx, t, shell, dir, r.UserData)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bootstrap script: %v\n%s", err, out)
			}
			// busybox sh must have used busybox wget, the system sh curl: each of the
			// script's two HTTP paths ran.
			wantAgent := map[string]string{"busybox": "Wget", "system": "curl/", "gnuwget": "Wget/"}[shell]
			e.agents.Range(func(k, _ any) bool {
				if !strings.HasPrefix(k.(string), wantAgent) {
					t.Errorf("a request from %q, want only %s", k, wantAgent)
				}
				return true
			})
			args, _ := os.ReadFile(argsFile)
			if !strings.Contains(string(args), "--jitconfig "+jitFor(name)) || !strings.Contains(string(args), "extra=x y") {
				t.Errorf("runner saw %q\nscript output:\n%s", args, out)
			}
			select {
			case got := <-e.finished:
				if got != name {
					t.Errorf("finished %s", got)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no job_finished callback\n%s", out)
			}
			rec, err := e.state.Runner(t.Context(), name)
			if err != nil {
				t.Fatal(err)
			}
			if rec.State != fleet.RunnerFinished || rec.ExitCode == nil || *rec.ExitCode != 3 ||
				rec.BootedAt.IsZero() || rec.PreJobStartedAt.IsZero() || rec.PreJobDoneAt.IsZero() {
				t.Errorf("runner record after the script: %+v\n%s", rec, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "run", "spawner", "config.json")); err == nil {
				t.Error("the config answer with the JIT config was left behind")
			}
			checkTokenFiles(t, filepath.Join(dir, "run"), rec)
			// A second run (a replayed user-data) is refused at once, not retried for minutes.
			start := time.Now()
			out, err = scriptCmd(ctx, t, shell, dir, r.UserData).CombinedOutput()
			if err == nil || time.Since(start) > 20*time.Second || !strings.Contains(string(out), "refused") {
				t.Errorf("replayed bootstrap: err=%v after %s\n%s", err, time.Since(start), out)
			}
		})
	}
}

// scriptCmd runs script (written to dir/bootstrap.sh) in shell: "busybox" is busybox sh
// with only busybox applets on PATH (so wget, as in the minimal image), "system" the
// system sh (dash on Debian) with the system PATH (so curl).
func scriptCmd(ctx context.Context, t *testing.T, shell, dir, script string) *exec.Cmd {
	t.Helper()
	path := filepath.Join(dir, "bootstrap.sh")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	switch shell {
	case "system":
		return exec.CommandContext(ctx, "sh", path)
	case "gnuwget":
		cmd := exec.CommandContext(ctx, "sh", path)
		cmd.Env = []string{"PATH=" + noCurlPath(t, dir)}
		return cmd
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed")
	}
	bin := filepath.Join(dir, "bin")
	if _, err := os.Stat(bin); err != nil {
		if err := os.Mkdir(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bb, "--list").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, applet := range strings.Fields(string(out)) {
			if err := os.Symlink(bb, filepath.Join(bin, applet)); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd := exec.CommandContext(ctx, bb, "sh", path)
	cmd.Env = []string{"PATH=" + bin}
	return cmd
}

// shellPath is the Spec.Path for shell: busybox applets alone (no curl), or the
// script's default.
func shellPath(shell, dir string) string {
	switch shell {
	case "busybox":
		return filepath.Join(dir, "bin")
	case "gnuwget":
		return filepath.Join(dir, "nocurl")
	}
	return ""
}

// noCurlPath is dir/nocurl: every tool of the system's PATH but curl, so GNU wget (as
// in Debian's minimal images, which have no curl). It skips when the system's wget
// is not GNU's.
func noCurlPath(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("wget", "--version").Output()
	if err != nil || !strings.Contains(string(out), "GNU Wget") {
		t.Skip("no GNU wget")
	}
	bin := filepath.Join(dir, "nocurl")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue // a PATH entry that does not exist
		}
		for _, e := range entries {
			link := filepath.Join(bin, e.Name())
			if e.Name() == "curl" {
				continue
			}
			if _, err := os.Lstat(link); err == nil {
				continue // an earlier PATH entry has it
			}
			if err := os.Symlink(filepath.Join(d, e.Name()), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	return bin
}

// fakeRunner writes a runner command that records its arguments and environment in
// argsFile, runs the pre-job hook as the real runner does, and exits 3.
func fakeRunner(t *testing.T, dir string) (runner, argsFile string) {
	t.Helper()
	runner = filepath.Join(dir, "fake-run.sh")
	argsFile = filepath.Join(dir, "args")
	if err := os.WriteFile(runner, []byte("#!/bin/sh\necho \"$@\" > "+argsFile+"\n\"$ACTIONS_RUNNER_HOOK_JOB_STARTED\" || exit 9\necho \"mirror=$DOCKERHUB_MIRROR extra=$EXTRA\" >> "+argsFile+"\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return runner, argsFile
}
