package bootstrap

import (
	"bytes"
	"embed"
	"encoding/base64"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/bootstrapendpoint"
	"github.com/runner-spawner/runner-spawner/internal/runnername"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

// repoCheckScript is the pre-job checks (the fork check and the repo-policy call),
// a plain script rather than a template so that it can be run and tested alone.
//
//go:embed templates/repo-check.sh
var repoCheckScript string

var templates = template.Must(template.New("").Funcs(template.FuncMap{"q": shellQuote}).ParseFS(templateFS, "templates/*.tmpl"))

// User-data formats.
const (
	// FormatCloudConfig wraps the bootstrap script in a #cloud-config document
	// (write_files + runcmd): images with cloud-init.
	FormatCloudConfig = "cloud-config"
	// FormatScript gives the script itself as user-data ("#!"): cloud-init runs it as
	// a user script, and minimal images without cloud-init run it from their init.
	FormatScript = "script"
)

// RunnerSettings is what a flavor says about the runner's environment.
type RunnerSettings struct {
	// Command starts the runner; the script appends --jitconfig <config>.
	Command string
	// User runs the runner when the image has it; otherwise root, with
	// RUNNER_ALLOW_RUNASROOT=1.
	User string
	// Env is exported to the runner and its jobs.
	Env map[string]string
	// DockerhubMirror is written to the Docker daemon's registry-mirrors and exported
	// as DOCKERHUB_MIRROR.
	DockerhubMirror string
	// PreJobScript is shell run by the pre-job hook (for example a repository policy
	// check); a non-zero exit fails the job.
	PreJobScript string
	// UserDataFormat is FormatCloudConfig or FormatScript.
	UserDataFormat string
	// FetchBinary makes the script download the spawner binary from the spawner
	// (test images that run `spawner dev runner`).
	FetchBinary bool
	// PowerOff powers the instance off after the job (default in config: true).
	PowerOff bool
	// RepoPolicy, when set, has the pre-job hook check every job with a
	// repo-policy-compliance service before its first step (docs/repo-policy.md).
	RepoPolicy *RepoPolicy
	// RefuseExternalContributors is runner.allow_external_contributors: false: the
	// pre-job hook refuses forks' pull requests by authors who are not members.
	RefuseExternalContributors bool
}

// RepoPolicy is what the pre-job hook needs of the repo-policy-compliance service;
// the service token is not here: it never reaches an instance.
type RepoPolicy struct {
	// URL is the service's base URL; it must pass bootstrapendpoint.CheckURL, since
	// it is written into the hook.
	URL string
	// Timeout bounds the check call (whole seconds, at least 1).
	Timeout time.Duration
	// FailOpen lets the job run when the service errs (5xx, unreachable).
	FailOpen bool
}

// Spec is one runner's bootstrap.
type Spec struct {
	// URL is the spawner's bootstrap base URL as instances reach it; it must pass
	// bootstrapendpoint.CheckURL (Render refuses it otherwise).
	URL        string
	RunnerName string
	Flavor     string
	Token      string // the one-time bootstrap token
	// CACert, when set, is the PEM the script pins the https endpoint to (PinPEM's
	// output): curl trusts it and nothing else.
	CACert []byte
	Runner RunnerSettings
	// RunDir is where the script keeps its files (default /run, a tmpfs, so nothing
	// outlives the boot); tests point it elsewhere.
	RunDir string
	// Path is where the script looks for commands first, before the PATH it was
	// started with (default: the standard directories, since init may start it with
	// none); tests point it at busybox applets alone, so that no curl is found.
	Path string
}

// Rendered is what a backend needs.
type Rendered struct {
	// UserData carries the token inside (cloud-init reads it once at first boot).
	UserData string
	// Script is the same bootstrap without the token, for the exec mode: the token
	// travels in Env only, never in instance config.
	Script string
	Env    map[string]string
}

// Env keys of the exec mode.
const (
	EnvURL        = "SPAWNER_BOOTSTRAP_URL"
	EnvToken      = "SPAWNER_BOOTSTRAP_TOKEN"
	EnvRunnerName = "SPAWNER_RUNNER_NAME"
	// EnvCACert is the pinned PEM, for instances played in Go (backends/sim); the
	// script carries its own copy.
	EnvCACert = "SPAWNER_BOOTSTRAP_CA"
)

type envVar struct{ Name, Value string }

type scriptData struct {
	URL, RunnerName, Flavor, Token string
	RunDir, Path                   string
	CACert, CAFile                 string
	RunnerCommand, RunnerUser      string
	Env                            []envVar
	DockerhubMirror, PreJobScript  string
	FetchBinary, PowerOff          bool
	ScriptBase64                   string
	// The pre-job checks: RepoCheck when either is on.
	RepoCheck, ForkCheck, PolicyFailOpen bool
	PolicyURL, RepoCheckScript           string
	PolicyTimeout                        int
}

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// runDirRE: the run directory is written unquoted into a su -c command line.
	runDirRE = regexp.MustCompile(`^/[A-Za-z0-9._/-]*$`)
	// tokenRE is the alphabet of NewToken's tokens (base64url).
	tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// Render produces the user-data, the exec-mode script and its environment. Every
// value it writes into the script is either checked against a strict alphabet (URL,
// runner name, token, run directory, certificate) or shell-quoted; the runner command
// and the pre-job script are the operator's shell, written as given.
func Render(s Spec) (Rendered, error) {
	if s.URL == "" || s.RunnerName == "" || s.Token == "" {
		return Rendered{}, fmt.Errorf("render bootstrap: url, runner name and token are required")
	}
	url := strings.TrimRight(s.URL, "/")
	if err := CheckEndpoint(url, s.CACert); err != nil {
		return Rendered{}, fmt.Errorf("render bootstrap: %w", err)
	}
	if !runnername.Valid(s.RunnerName) {
		return Rendered{}, fmt.Errorf("render bootstrap: runner name %q is not %s", s.RunnerName, runnername.Rule)
	}
	if !tokenRE.MatchString(s.Token) {
		return Rendered{}, fmt.Errorf("render bootstrap: the token is not base64url")
	}
	if strings.ContainsFunc(s.Flavor, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Rendered{}, fmt.Errorf("render bootstrap: flavor %q has control characters", s.Flavor)
	}
	d := scriptData{
		URL: url, RunnerName: s.RunnerName, Flavor: s.Flavor,
		RunnerCommand: s.Runner.Command, RunnerUser: s.Runner.User,
		DockerhubMirror: s.Runner.DockerhubMirror, PreJobScript: s.Runner.PreJobScript,
		FetchBinary: s.Runner.FetchBinary, PowerOff: s.Runner.PowerOff, RunDir: s.RunDir,
	}
	if d.RunDir == "" {
		d.RunDir = "/run"
	}
	if rp := s.Runner.RepoPolicy; rp != nil {
		url := strings.TrimRight(rp.URL, "/")
		if err := bootstrapendpoint.CheckURL(url); err != nil {
			return Rendered{}, fmt.Errorf("render bootstrap: the repo-policy url %q %w", url, err)
		}
		d.PolicyURL, d.PolicyFailOpen = url, rp.FailOpen
		d.PolicyTimeout = max(1, int(rp.Timeout.Round(time.Second).Seconds()))
	}
	d.ForkCheck = s.Runner.RefuseExternalContributors
	if d.RepoCheck = d.PolicyURL != "" || d.ForkCheck; d.RepoCheck {
		d.RepoCheckScript = repoCheckScript
	}
	d.Path = s.Path
	if d.Path == "" {
		d.Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	if !runDirRE.MatchString(d.RunDir) {
		return Rendered{}, fmt.Errorf("render bootstrap: run directory %q must be an absolute path of letters, digits and . _ / -", d.RunDir)
	}
	if len(s.CACert) > 0 {
		// Normalised again: the heredoc that writes it must hold PEM and nothing else.
		pinned, err := PinPEM(s.CACert)
		if err != nil {
			return Rendered{}, fmt.Errorf("render bootstrap: %w", err)
		}
		d.CACert, d.CAFile = string(pinned), d.RunDir+"/spawner-hooks/ca.pem"
	}
	if d.RunnerCommand == "" || strings.ContainsAny(d.RunnerCommand, "\n\r") {
		return Rendered{}, fmt.Errorf("render bootstrap: the runner command must be one non-empty line")
	}
	for _, delim := range []string{"SPAWNER_LIB_EOF", "SPAWNER_HOOK_EOF", "SPAWNER_RUN_EOF", "SPAWNER_CA_EOF", "SPAWNER_CHECK_EOF"} {
		if strings.Contains(d.PreJobScript, delim) || strings.Contains(d.RunnerCommand, delim) {
			return Rendered{}, fmt.Errorf("render bootstrap: the pre-job script and runner command must not contain %s", delim)
		}
	}
	names := make([]string, 0, len(s.Runner.Env))
	for k := range s.Runner.Env {
		if !envNameRE.MatchString(k) {
			return Rendered{}, fmt.Errorf("render bootstrap: %q is not an environment variable name", k)
		}
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		d.Env = append(d.Env, envVar{k, s.Runner.Env[k]})
	}

	script, err := execute("bootstrap.sh.tmpl", d) // no token: exec mode
	if err != nil {
		return Rendered{}, err
	}
	d.Token = s.Token
	withToken, err := execute("bootstrap.sh.tmpl", d)
	if err != nil {
		return Rendered{}, err
	}
	out := Rendered{
		Script: script,
		Env:    map[string]string{EnvURL: d.URL, EnvToken: s.Token, EnvRunnerName: s.RunnerName},
	}
	if d.CACert != "" {
		out.Env[EnvCACert] = d.CACert
	}
	switch s.Runner.UserDataFormat {
	case FormatScript:
		out.UserData = withToken
	case FormatCloudConfig, "":
		d.ScriptBase64 = base64.StdEncoding.EncodeToString([]byte(withToken))
		if out.UserData, err = execute("cloud-config.yaml.tmpl", d); err != nil {
			return Rendered{}, err
		}
	default:
		return Rendered{}, fmt.Errorf("render bootstrap: unknown user-data format %q", s.Runner.UserDataFormat)
	}
	return out, nil
}

func execute(name string, d scriptData) (string, error) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, d); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	return b.String(), nil
}

// shellQuote quotes s for POSIX sh: single quotes, with each ' written as '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// CheckEndpoint checks what every runner's bootstrap is given about the endpoint: a
// URL that passes bootstrapendpoint.CheckURL (trailing slashes aside), and, when caPEM
// is set, an https URL and certificates PinPEM accepts. The consumer calls it at
// start, so a bad setting stops it there rather than failing every runner.
func CheckEndpoint(url string, caPEM []byte) error {
	url = strings.TrimRight(url, "/")
	if err := bootstrapendpoint.CheckURL(url); err != nil {
		return fmt.Errorf("the bootstrap url %q %w", url, err)
	}
	if len(caPEM) == 0 {
		return nil
	}
	if !bootstrapendpoint.HTTPS(url) {
		return fmt.Errorf("a certificate to pin needs an https bootstrap url (got %q)", url)
	}
	_, err := PinPEM(caPEM)
	return err
}

// PinPEM returns the certificates in data re-encoded as PEM alone, refusing any
// other block (see bootstrapendpoint.PinPEM).
func PinPEM(data []byte) ([]byte, error) {
	out, err := bootstrapendpoint.PinPEM(data)
	if err != nil {
		return nil, fmt.Errorf("the certificate to pin %w", err)
	}
	return out, nil
}
