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
)

//go:embed templates/*.tmpl
var templateFS embed.FS

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
}

// Spec is one runner's bootstrap.
type Spec struct {
	URL        string // the spawner's bootstrap base URL as instances reach it
	RunnerName string
	Flavor     string
	Token      string // the one-time bootstrap token
	Runner     RunnerSettings
	// RunDir is where the script keeps its files (default /run, a tmpfs, so nothing
	// outlives the boot); tests point it elsewhere.
	RunDir string
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
)

type envVar struct{ Name, Value string }

type scriptData struct {
	URL, RunnerName, Flavor, Token string
	RunDir                         string
	RunnerCommand, RunnerUser      string
	Env                            []envVar
	DockerhubMirror, PreJobScript  string
	FetchBinary, PowerOff          bool
	ScriptBase64                   string
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Render produces the user-data, the exec-mode script and its environment.
func Render(s Spec) (Rendered, error) {
	if s.URL == "" || s.RunnerName == "" || s.Token == "" {
		return Rendered{}, fmt.Errorf("render bootstrap: url, runner name and token are required")
	}
	d := scriptData{
		URL: strings.TrimRight(s.URL, "/"), RunnerName: s.RunnerName, Flavor: s.Flavor,
		RunnerCommand: s.Runner.Command, RunnerUser: s.Runner.User,
		DockerhubMirror: s.Runner.DockerhubMirror, PreJobScript: s.Runner.PreJobScript,
		FetchBinary: s.Runner.FetchBinary, PowerOff: s.Runner.PowerOff, RunDir: s.RunDir,
	}
	if d.RunDir == "" {
		d.RunDir = "/run"
	}
	if d.RunnerCommand == "" || strings.ContainsAny(d.RunnerCommand, "\n\r") {
		return Rendered{}, fmt.Errorf("render bootstrap: the runner command must be one non-empty line")
	}
	for _, delim := range []string{"SPAWNER_LIB_EOF", "SPAWNER_HOOK_EOF", "SPAWNER_RUN_EOF"} {
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
