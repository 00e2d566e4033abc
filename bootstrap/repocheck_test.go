package bootstrap_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/dev/fakerepopolicy"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/repopolicy"
	"github.com/runner-spawner/runner-spawner/internal/secret"
)

// The pre-job checks (templates/repo-check.sh) run here as the hook runs them, in
// busybox sh with busybox applets alone (so wget and busybox awk, as in the minimal
// image) and in the system sh with curl, against the fake repo-policy service, with
// real event payloads (testdata/events).

const serviceToken = "service-token-0123456789"

// checkShells: busybox sh with busybox applets (wget, awk), the system sh with curl,
// and the system sh with GNU wget and no curl (Debian's minimal images).
var checkShells = []string{"busybox", "system", "gnuwget"}

// gnuWgetPath is a directory with the tools repo-check.sh uses, GNU wget among them
// and no curl; the test skips when the system's wget is not GNU's.
func gnuWgetPath(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("wget", "--version").Output()
	if err != nil || !strings.Contains(string(out), "GNU Wget") {
		t.Skip("no GNU wget")
	}
	bin := filepath.Join(dir, "gnubin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"sh", "awk", "sed", "tr", "cut", "head", "tail", "cat", "rm", "grep", "timeout", "wget"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

type policyEnv struct {
	fake *fakerepopolicy.Server
	srv  *httptest.Server
}

func newPolicy(t *testing.T, opts fakerepopolicy.Options) *policyEnv {
	t.Helper()
	opts.ServiceToken = serviceToken
	fake := fakerepopolicy.New(opts)
	srv := httptest.NewServer(fake.Handler())
	t.Cleanup(srv.Close)
	return &policyEnv{fake: fake, srv: srv}
}

// mint asks the fake for a one-time token, as the spawner does.
func (p *policyEnv) mint(t *testing.T) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.srv.URL+"/one-time-token", nil)
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("mint: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// event is one event file: a payload from testdata/events, edited.
type event struct {
	name string // GITHUB_EVENT_NAME
	file string // under testdata/events
	edit func(map[string]any)
}

// write writes the event's payload to dir and returns its path and repository.
func (e event) write(t *testing.T, dir string) (path, repo string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "events", e.file))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if e.edit != nil {
		e.edit(m)
		// Written as GitHub's runner writes the event file: indented.
		if data, err = json.MarshalIndent(m, "", "  "); err != nil {
			t.Fatal(err)
		}
	}
	path = filepath.Join(dir, "event.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, m["repository"].(map[string]any)["full_name"].(string)
}

// obj walks m along keys, creating nothing: the payloads have them.
func obj(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		m = m[k].(map[string]any)
	}
	return m
}

// fork makes a pull request event come from a fork by an author of association.
func fork(association string) func(map[string]any) {
	return func(m map[string]any) {
		obj(m, "pull_request", "head", "repo")["full_name"] = "outsider/Hello-World"
		obj(m, "pull_request")["author_association"] = association
	}
}

type checkRun struct {
	exit    int
	verdict string // the JSON members for pre_job_done
	out     string
}

// runCheck runs repo-check.sh in shell with env on top of the event's.
func runCheck(t *testing.T, shell string, ev event, env map[string]string) checkRun {
	t.Helper()
	dir := t.TempDir()
	eventPath, repo := ev.write(t, dir)
	script := filepath.Join(dir, "repo-check.sh")
	data, err := os.ReadFile(filepath.Join("templates", "repo-check.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, data, 0o755); err != nil {
		t.Fatal(err)
	}
	result := filepath.Join(dir, "result")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var cmd *exec.Cmd
	vars := []string{"GITHUB_EVENT_NAME=" + ev.name, "GITHUB_EVENT_PATH=" + eventPath, "GITHUB_REPOSITORY=" + repo, "TMPDIR=" + dir}
	switch shell {
	case "system":
		cmd = exec.CommandContext(ctx, "sh", script, result)
		vars = append(vars, "PATH="+os.Getenv("PATH"))
	case "gnuwget":
		bin := gnuWgetPath(t, dir)
		cmd = exec.CommandContext(ctx, filepath.Join(bin, "sh"), script, result)
		vars = append(vars, "PATH="+bin)
	default:
		cmd = scriptCmd(ctx, t, "busybox", dir, "")
		cmd.Args = append(cmd.Args[:2], script, result)
		vars = append(vars, cmd.Env...)
	}
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	cmd.Env = vars
	out, err := cmd.CombinedOutput()
	run := checkRun{out: string(out)}
	if ee, ok := err.(*exec.ExitError); ok {
		run.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("repo-check.sh: %v\n%s", err, out)
	}
	verdict, _ := os.ReadFile(result)
	run.verdict = string(verdict)
	return run
}

// policyVars is the hook's environment for the service at p with a fresh token.
func (p *policyEnv) vars(t *testing.T, dir string, extra ...string) map[string]string {
	t.Helper()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(p.mint(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SPAWNER_POLICY_URL": p.srv.URL, "SPAWNER_POLICY_TOKEN_FILE": tokenFile, "SPAWNER_POLICY_TIMEOUT": "5"}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

// TestRepoCheckRequestPerEvent: each event type's check goes to its path with its
// body, the values read from the real payload and the GITHUB_* environment.
func TestRepoCheckRequestPerEvent(t *testing.T) {
	const sha = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
	tests := []struct {
		ev   event
		path string
		body map[string]string
	}{
		{event{name: "pull_request", file: "pull_request.json"}, "/pull_request/check-run", map[string]string{
			"repository_name": "Codertocat/Hello-World", "source_repository_name": "Codertocat/Hello-World",
			"target_branch_name": "master", "source_branch_name": "changes", "commit_sha": sha}},
		{event{name: "pull_request_target", file: "pull_request.json", edit: func(m map[string]any) {
			obj(m, "pull_request", "head", "repo")["full_name"] = "outsider/Hello-World"
			obj(m, "pull_request", "head")["ref"] = `feature/"quoted"`
		}}, "/pull_request/check-run", map[string]string{
			"repository_name": "Codertocat/Hello-World", "source_repository_name": "outsider/Hello-World",
			"target_branch_name": "master", "source_branch_name": `feature/"quoted"`, "commit_sha": sha}},
		{event{name: "push", file: "push.json"}, "/push/check-run", map[string]string{"repository_name": "Codertocat/Hello-World"}},
		{event{name: "workflow_dispatch", file: "workflow_dispatch.json"}, "/workflow_dispatch/check-run", map[string]string{"repository_name": "octo-org/octo-repo"}},
		{event{name: "schedule", file: "push.json"}, "/schedule/check-run", map[string]string{"repository_name": "Codertocat/Hello-World"}},
		{event{name: "issue_comment", file: "issue_comment.json"}, "/default/check-run", map[string]string{"repository_name": "Codertocat/Hello-World"}},
		{event{name: "pull_request_review", file: "pull_request_review.json"}, "/default/check-run", map[string]string{"repository_name": "Codertocat/Hello-World"}},
	}
	for _, shell := range checkShells {
		for _, tt := range tests {
			t.Run(shell+"/"+tt.ev.name, func(t *testing.T) {
				p := newPolicy(t, fakerepopolicy.Options{})
				run := runCheck(t, shell, tt.ev, p.vars(t, t.TempDir()))
				checks := p.fake.Checks()
				if run.exit != 0 || len(checks) != 1 {
					t.Fatalf("exit %d, %d checks\n%s", run.exit, len(checks), run.out)
				}
				var body map[string]string
				if err := json.Unmarshal(checks[0].Body, &body); err != nil {
					t.Fatalf("body %s: %v", checks[0].Body, err)
				}
				if checks[0].Path != tt.path || fmt.Sprint(body) != fmt.Sprint(tt.body) {
					t.Errorf("check %s %s, want %s %v", checks[0].Path, checks[0].Body, tt.path, tt.body)
				}
			})
		}
	}
}

// TestRepoCheckTokenSingleUse: the hook removes the token once read, and the
// service refuses a spent token, which fails the job (a 401 is no service error).
func TestRepoCheckTokenSingleUse(t *testing.T) {
	for _, shell := range checkShells {
		t.Run(shell, func(t *testing.T) {
			p := newPolicy(t, fakerepopolicy.Options{})
			dir := t.TempDir()
			env := p.vars(t, dir, "SPAWNER_POLICY_FAIL_OPEN", "1")
			token, _ := os.ReadFile(env["SPAWNER_POLICY_TOKEN_FILE"])
			ev := event{name: "push", file: "push.json"}
			if run := runCheck(t, shell, ev, env); run.exit != 0 {
				t.Fatalf("first check: exit %d\n%s", run.exit, run.out)
			}
			if _, err := os.Stat(env["SPAWNER_POLICY_TOKEN_FILE"]); !os.IsNotExist(err) {
				t.Errorf("the token file is still there after the check: %v", err)
			}
			// Replay the spent token: even with fail_open, a refusal fails the job.
			if err := os.WriteFile(env["SPAWNER_POLICY_TOKEN_FILE"], token, 0o600); err != nil {
				t.Fatal(err)
			}
			run := runCheck(t, shell, ev, env)
			if run.exit != 1 || !strings.Contains(run.verdict, `"outcome":"repo-policy-check-failure","http_code":401`) {
				t.Errorf("replayed token: exit %d verdict %s\n%s", run.exit, run.verdict, run.out)
			}
			if minted, spent := p.fake.Minted(); minted != 1 || spent != 1 {
				t.Errorf("minted %d, spent %d", minted, spent)
			}
		})
	}
}

// TestRepoCheckFailClosedAndOpen: a refusal fails the job with the service's code
// and reason (cut to safe text); a service error (5xx, unreachable, no token) fails
// it too unless fail_open, which lets it run with a warning.
func TestRepoCheckFailClosedAndOpen(t *testing.T) {
	ev := event{name: "push", file: "push.json"}
	for _, shell := range checkShells {
		t.Run(shell, func(t *testing.T) {
			p := newPolicy(t, fakerepopolicy.Options{RefuseRepos: []string{"Codertocat/Hello-World"}})
			run := runCheck(t, shell, ev, p.vars(t, t.TempDir(), "SPAWNER_POLICY_FAIL_OPEN", "1"))
			want := `,"outcome":"repo-policy-check-failure","http_code":403,"reason":"repository Codertocat/Hello-World is not compliant`
			if shell == "busybox" {
				// busybox wget keeps no body of an error answer: the code stays.
				want = `,"outcome":"repo-policy-check-failure","http_code":403,"reason":"not compliant"`
			}
			if run.exit != 1 || !strings.HasPrefix(run.verdict, want) {
				t.Errorf("refused: exit %d verdict %q, want prefix %q\n%s", run.exit, run.verdict, want, run.out)
			}

			for name, tc := range map[string]struct {
				setup func(env map[string]string)
				code  string
			}{
				"503":         {func(map[string]string) { p.fake.SetFailWith(503) }, "503"},
				"unreachable": {func(env map[string]string) { env["SPAWNER_POLICY_URL"] = "http://127.0.0.1:1" }, "0"},
				"no token":    {func(env map[string]string) { os.Remove(env["SPAWNER_POLICY_TOKEN_FILE"]) }, "0"},
			} {
				for _, open := range []bool{false, true} {
					env := p.vars(t, t.TempDir())
					if open {
						env["SPAWNER_POLICY_FAIL_OPEN"] = "1"
					}
					tc.setup(env)
					run := runCheck(t, shell, ev, env)
					p.fake.SetFailWith(0)
					switch {
					case open && (run.exit != 0 || !strings.Contains(run.out, "::warning::") || run.verdict != ""):
						t.Errorf("%s with fail_open: exit %d verdict %q\n%s", name, run.exit, run.verdict, run.out)
					case !open && (run.exit != 1 || !strings.Contains(run.verdict, `"outcome":"repo-policy-check-failure","http_code":`+tc.code+`,`)):
						t.Errorf("%s failing closed: exit %d verdict %q\n%s", name, run.exit, run.verdict, run.out)
					}
				}
			}
		})
	}
}

// TestRepoCheckReasonIsCut: a reason from the service with quotes, backslashes,
// control characters and excess length reaches the verdict as safe JSON text.
func TestRepoCheckReasonIsCut(t *testing.T) {
	evil := `bad "repo" \ ` + "\x1b[31m\n" + strings.Repeat("x", 500)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, evil, http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := runCheck(t, "system", event{name: "push", file: "push.json"},
		map[string]string{"SPAWNER_POLICY_URL": srv.URL, "SPAWNER_POLICY_TOKEN_FILE": tokenFile})
	var v struct {
		Outcome  string `json:"outcome"`
		HTTPCode int    `json:"http_code"`
		Reason   string `json:"reason"`
	}
	if err := json.Unmarshal([]byte("{"+strings.TrimPrefix(run.verdict, ",")+"}"), &v); err != nil {
		t.Fatalf("verdict %q is not JSON: %v", run.verdict, err)
	}
	if run.exit != 1 || v.HTTPCode != 403 || len(v.Reason) > 200 || strings.ContainsAny(v.Reason, "\"\\\x1b\n") || !strings.HasPrefix(v.Reason, "bad repo") {
		t.Errorf("exit %d, verdict %+v", run.exit, v)
	}
}

// TestForkCheckAssociations is the built-in check's table: forks' pull requests
// (and comments on pull requests) run only for OWNER, MEMBER and COLLABORATOR,
// CONTRIBUTOR too in private repositories; a pull request from a branch of the
// repository itself is never refused; with the check off, nothing is.
func TestForkCheckAssociations(t *testing.T) {
	type row struct {
		ev      event
		refused bool
	}
	private := func(m map[string]any) { obj(m, "repository")["private"] = true }
	both := func(fs ...func(map[string]any)) func(map[string]any) {
		return func(m map[string]any) {
			for _, f := range fs {
				f(m)
			}
		}
	}
	onPR := func(assoc string) func(map[string]any) {
		return func(m map[string]any) {
			obj(m, "issue")["pull_request"] = map[string]any{"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"}
			obj(m, "comment")["author_association"] = assoc
		}
	}
	rows := map[string]row{}
	for _, assoc := range []string{"OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER", "MANNEQUIN", "NONE"} {
		trusted := assoc == "OWNER" || assoc == "MEMBER" || assoc == "COLLABORATOR"
		for _, name := range []string{"pull_request", "pull_request_target"} {
			rows[name+"/fork/"+assoc] = row{event{name: name, file: "pull_request.json", edit: fork(assoc)}, !trusted}
			rows[name+"/private-fork/"+assoc] = row{event{name: name, file: "pull_request.json", edit: both(fork(assoc), private)}, !trusted && assoc != "CONTRIBUTOR"}
			rows[name+"/internal/"+assoc] = row{event{name: name, file: "pull_request.json", edit: func(m map[string]any) {
				obj(m, "pull_request")["author_association"] = assoc
			}}, false}
		}
		rows["pull_request_review/fork/"+assoc] = row{event{name: "pull_request_review", file: "pull_request_review.json", edit: fork(assoc)}, !trusted}
		rows["pull_request_review_comment/fork/"+assoc] = row{event{name: "pull_request_review_comment", file: "pull_request_review_comment.json", edit: fork(assoc)}, !trusted}
		rows["issue_comment/on-pr/"+assoc] = row{event{name: "issue_comment", file: "issue_comment.json", edit: onPR(assoc)}, !trusted}
	}
	rows["issue_comment/on-issue/NONE"] = row{event{name: "issue_comment", file: "issue_comment.json", edit: func(m map[string]any) {
		obj(m, "comment")["author_association"] = "NONE"
	}}, false}
	rows["pull_request/deleted-fork/NONE"] = row{event{name: "pull_request", file: "pull_request.json", edit: func(m map[string]any) {
		obj(m, "pull_request", "head")["repo"] = nil
		obj(m, "pull_request")["author_association"] = "NONE"
	}}, true}
	rows["push/NONE"] = row{event{name: "push", file: "push.json"}, false}

	for _, shell := range checkShells {
		for name, r := range rows {
			if shell != "system" && !strings.Contains(name, "/NONE") && !strings.Contains(name, "/CONTRIBUTOR") {
				continue // busybox runs the rows that differ by rule; the system shell runs all
			}
			t.Run(shell+"/"+name, func(t *testing.T) {
				run := runCheck(t, shell, r.ev, map[string]string{"SPAWNER_FORK_CHECK": "1"})
				refused := run.exit == 1 && strings.HasPrefix(run.verdict, `,"outcome":"external-contributor-check-failure","http_code":0,`)
				if refused != r.refused || (!refused && run.exit != 0) {
					t.Errorf("exit %d verdict %q, want refused=%v\n%s", run.exit, run.verdict, r.refused, run.out)
				}
				if r.refused {
					// With the check off, the same event runs.
					if off := runCheck(t, shell, r.ev, map[string]string{"SPAWNER_FORK_CHECK": "0"}); off.exit != 0 {
						t.Errorf("check off: exit %d\n%s", off.exit, off.out)
					}
				}
			})
		}
	}
}

// policyMinter mints through the real client, as internal/assemble wires it.
type policyMinter struct{ c *repopolicy.Client }

func (m policyMinter) PolicyToken(ctx context.Context, _ string) (string, bool, error) {
	tok, err := m.c.OneTimeToken(ctx)
	return tok, true, err
}

// TestScriptRunsThePolicyCheck runs the whole bootstrap script with the check on:
// the one-time token comes in the config answer (never in the user-data), the hook
// spends and removes it, a refused job's verdict reaches the runner record with the
// service's code, and an allowed job ends normal.
func TestScriptRunsThePolicyCheck(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("busybox not installed")
	}
	for _, shell := range []string{"busybox", "system"} {
		t.Run(shell, func(t *testing.T) {
			p := newPolicy(t, fakerepopolicy.Options{RefuseRepos: []string{"Codertocat/Hello-World"}})
			e := newEnv(t, envOptions{policy: policyMinter{&repopolicy.Client{URL: p.srv.URL, Token: secret.New(serviceToken)}}})
			for i, tc := range []struct {
				event, file string
				outcome     fleet.Outcome
				code        int
			}{
				{"push", "push.json", fleet.OutcomeRepoPolicyFailure, 403},
				{"workflow_dispatch", "workflow_dispatch.json", fleet.OutcomeNormal, 0},
			} {
				dir := t.TempDir()
				name := fmt.Sprintf("spawner-small-8-%d", i)
				token := e.newRunner(t, name, time.Minute)
				eventPath, repo := event{name: tc.event, file: tc.file}.write(t, dir)
				runner := filepath.Join(dir, "run.sh")
				// The runner runs the job-started hook with the job's event, and fails the
				// job (exit 1, as ours does) when the hook fails.
				script := fmt.Sprintf("#!/bin/sh\nexport GITHUB_EVENT_NAME=%s GITHUB_EVENT_PATH=%s GITHUB_REPOSITORY=%s TMPDIR=%s\n\"$ACTIONS_RUNNER_HOOK_JOB_STARTED\" || exit 1\nexit 0\n", tc.event, eventPath, repo, dir)
				if err := os.WriteFile(runner, []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
				r, err := bootstrap.Render(bootstrap.Spec{
					URL: e.srv.URL, RunnerName: name, Flavor: "small", Token: token, RunDir: filepath.Join(dir, "run"), Path: shellPath(shell, dir),
					Runner: bootstrap.RunnerSettings{Command: runner, User: "nobody-here", UserDataFormat: bootstrap.FormatScript,
						RepoPolicy: &bootstrap.RepoPolicy{URL: p.srv.URL, Timeout: 5 * time.Second}},
				})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
				out, err := scriptCmd(ctx, t, shell, dir, r.UserData).CombinedOutput()
				cancel()
				if err != nil {
					t.Fatalf("bootstrap script: %v\n%s", err, out)
				}
				rec, err := e.state.Runner(t.Context(), name)
				if err != nil {
					t.Fatal(err)
				}
				if rec.Outcome != tc.outcome || rec.CheckHTTPCode != tc.code || rec.State != fleet.RunnerFinished || rec.PreJobDoneAt.IsZero() {
					t.Errorf("%s: outcome %q code %d reason %q state %s\n%s", tc.event, rec.Outcome, rec.CheckHTTPCode, rec.CheckReason, rec.State, out)
				}
				if tc.code == 403 && shell == "system" && !strings.Contains(rec.CheckReason, "is not compliant") {
					t.Errorf("reason on the record: %q", rec.CheckReason)
				}
				if _, err := os.Stat(filepath.Join(dir, "run", "spawner-policy", "token")); !os.IsNotExist(err) {
					t.Errorf("the one-time token is still on the instance: %v", err)
				}
				for _, tok := range p.fake.Tokens() {
					if strings.Contains(r.UserData, tok) || strings.Contains(string(out), tok) || strings.Contains(e.logs.String(), tok) {
						t.Errorf("a one-time token is in the user-data, the script's output or the spawner's log")
					}
				}
			}
			if minted, spent := p.fake.Minted(); minted != 2 || spent != 2 {
				t.Errorf("minted %d, spent %d one-time tokens, want 2 and 2", minted, spent)
			}
		})
	}
}

// TestCheckVerdictIsValidated: the verdict comes with pre_job_done only, its outcome
// must be a check failure, its code an HTTP status, and its reason (the service's
// words through the instance) is stored cut and escaped. The config answer carries
// the minted one-time token.
func TestCheckVerdictIsValidated(t *testing.T) {
	p := newPolicy(t, fakerepopolicy.Options{})
	e := newEnv(t, envOptions{policy: policyMinter{&repopolicy.Client{URL: p.srv.URL, Token: secret.New(serviceToken)}}})
	name := "spawner-small-9-0"
	cfg := e.fetchConfig(t, name, e.newRunner(t, name, time.Minute))
	if tokens := p.fake.Tokens(); len(tokens) != 1 || cfg.RepoPolicyToken != tokens[0] {
		t.Errorf("config answer's policy token %q, minted %v", cfg.RepoPolicyToken, tokens)
	}
	status := func(token, body string) int {
		t.Helper()
		return e.call(t, name, "status", token, body).StatusCode
	}
	if got := status(cfg.HookToken, `{"event":"job_started"}`); got != http.StatusNoContent {
		t.Fatalf("job_started: %d", got)
	}
	for what, body := range map[string]string{
		"with job_started":    `{"event":"job_started","outcome":"repo-policy-check-failure"}`,
		"with job_finished":   `{"event":"job_finished","exit_code":1,"outcome":"repo-policy-check-failure"}`,
		"an outcome of ours":  `{"event":"pre_job_done","exit_code":1,"outcome":"normal"}`,
		"an unknown outcome":  `{"event":"pre_job_done","exit_code":1,"outcome":"\u001b[31mok"}`,
		"a code out of range": `{"event":"pre_job_done","exit_code":1,"outcome":"repo-policy-check-failure","http_code":1000}`,
		"a reason alone":      `{"event":"pre_job_done","exit_code":1,"reason":"x"}`,
	} {
		token := cfg.HookToken
		if strings.Contains(what, "job_finished") {
			token = cfg.CallbackToken
		}
		if got := status(token, body); got != http.StatusBadRequest {
			t.Errorf("a verdict %s: %d, want 400", what, got)
		}
	}
	reason := "line\none \u202e" + strings.Repeat("y", 400)
	body, _ := json.Marshal(map[string]any{"event": "pre_job_done", "exit_code": 1, "outcome": "external-contributor-check-failure", "reason": reason})
	if got := status(cfg.HookToken, string(body)); got != http.StatusNoContent {
		t.Fatalf("verdict: %d", got)
	}
	if got := status(cfg.CallbackToken, `{"event":"job_finished","exit_code":1}`); got != http.StatusNoContent {
		t.Fatalf("job_finished: %d", got)
	}
	rec, err := e.state.Runner(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Outcome != fleet.OutcomeExternalContributorFailure || len(rec.CheckReason) > 240 || strings.ContainsAny(rec.CheckReason, "\n\u202e") {
		t.Errorf("record: outcome %q reason %q", rec.Outcome, rec.CheckReason)
	}
	if !strings.Contains(e.logs.String(), "pre-job check refused the job") || strings.Contains(e.logs.String(), strings.Repeat("y", 300)) {
		t.Errorf("the refusal is not logged, or not cut:\n%s", e.logs.String())
	}
}
