package config

import (
	"time"

	"github.com/runner-spawner/runner-spawner/internal/secret"
)

// GitHub is the GitHub API connection (key "github").
type GitHub struct {
	// URL of the REST API: https://api.github.com/ or, for GitHub Enterprise Server,
	// https://HOST/api/v3/.
	URL string `yaml:"url"`
	// Path is where runners register: an organisation ("octo-org") or a repository
	// ("octo-org/octo-repo").
	Path string `yaml:"path"`
	// RunnerGroup is the organisation runner group new runners join.
	RunnerGroup string `yaml:"runner_group"`
	// Token is a personal access token (or SPAWNER_GITHUB_TOKEN, or token_file).
	Token     secret.Value `yaml:"token"`
	TokenFile string       `yaml:"token_file"`
	// App authenticates as a GitHub App instead of a token.
	App              GitHubApp     `yaml:"app"`
	Timeout          time.Duration `yaml:"timeout"`
	MaxInFlight      int           `yaml:"max_in_flight"`
	RatePerHour      int           `yaml:"rate_per_hour"`
	ReserveThreshold int           `yaml:"reserve_threshold"`
	// SecondaryPointsPerMinute paces calls under GitHub's secondary limit (0: off);
	// MaxMutatingInFlight bounds concurrent minting/deleting/redelivering calls.
	SecondaryPointsPerMinute int `yaml:"secondary_points_per_minute"`
	MaxMutatingInFlight      int `yaml:"max_mutating_in_flight"`
	// Hook names the webhook whose failed deliveries the janitor redelivers.
	Hook GitHubHook `yaml:"hook"`
}

// GitHubApp is a GitHub App's credentials.
type GitHubApp struct {
	ID             int64  `yaml:"id"`
	PrivateKeyFile string `yaml:"private_key_file"`
	InstallationID int64  `yaml:"installation_id"`
}

// GitHubHook identifies a webhook: kind repo (repo + id), org (id, on github.path's
// organisation) or app (the App's own webhook).
type GitHubHook struct {
	Kind string `yaml:"kind"`
	Repo string `yaml:"repo"`
	ID   int64  `yaml:"id"`
}

// Consumer configures the consumer workers (key "consumer").
type Consumer struct {
	// Workers per flavor in each process.
	Workers int `yaml:"workers"`
	// Flavors this process serves; empty: all.
	Flavors         []string      `yaml:"flavors"`
	VerifyAge       time.Duration `yaml:"verify_age"`
	MaxAttempts     int           `yaml:"max_attempts"`
	BackoffInitial  time.Duration `yaml:"backoff_initial"`
	BackoffMax      time.Duration `yaml:"backoff_max"`
	CapacityWait    time.Duration `yaml:"capacity_wait"`
	CapacityRetry   time.Duration `yaml:"capacity_retry"`
	MaxReplacements int           `yaml:"max_replacements"`
	CreateTimeout   time.Duration `yaml:"create_timeout"`
	AckWait         time.Duration `yaml:"ack_wait"`
}

// Bootstrap is the endpoint instances fetch their runner config from (key
// "bootstrap").
type Bootstrap struct {
	// Listen is the address served; empty: this process serves none (another does).
	Listen string `yaml:"listen"`
	// URL is the endpoint's base URL as instances reach it (a bridge address, a load
	// balancer); empty: derived from listen when that names a host.
	URL string `yaml:"url"`
	// ServeBinary serves this spawner binary at /bootstrap/v1/files/spawner, for test
	// images that run the fake runner (`spawner dev runner`). Never needed with real
	// runner images.
	ServeBinary bool `yaml:"serve_binary"`
	// TLS: with cert_file and key_file the endpoint serves https. Instances pin
	// ca_file when set (a private CA, or a TLS proxy in front), else cert_file.
	TLS TLS `yaml:"tls"`
}

// PinFile is the PEM file every instance pins the bootstrap endpoint to:
// tls.ca_file, else tls.cert_file; empty: none (http, or an https URL the images'
// own CAs verify).
func (b Bootstrap) PinFile() string {
	if b.TLS.CAFile != "" {
		return b.TLS.CAFile
	}
	return b.TLS.CertFile
}

// Janitor configures the reconciler (key "janitor").
type Janitor struct {
	// Enabled runs a janitor inside serve (the janitor role always runs one).
	Enabled               bool          `yaml:"enabled"`
	Interval              time.Duration `yaml:"interval"`
	MaxDeletesPerPass     int           `yaml:"max_deletes_per_pass"`
	MaxGitHubCallsPerPass int           `yaml:"max_github_calls_per_pass"`
	FlushWait             time.Duration `yaml:"flush_wait"`
	FlushWaitAttempts     int           `yaml:"flush_wait_attempts"`
	ProtectedRunners      []string      `yaml:"protected_runners"`
	SweepInterval         time.Duration `yaml:"sweep_interval"`
	SweepLookback         time.Duration `yaml:"sweep_lookback"`
	PollRepos             []string      `yaml:"poll_repos"`
	PollInterval          time.Duration `yaml:"poll_interval"`
}

// Admin is the admin HTTP endpoint (key "admin").
type Admin struct {
	// Listen: empty disables the endpoint.
	Listen    string       `yaml:"listen"`
	Token     secret.Value `yaml:"token"`
	TokenFile string       `yaml:"token_file"`
}

// Metrics is the operational listener of roles without a webhook listener
// (consumer, janitor): /healthz, /readyz, /metrics (key "metrics").
type Metrics struct {
	// Listen: empty disables it.
	Listen string `yaml:"listen"`
	// OnWebhookListener serves /metrics on webhook.listen too, which GitHub (the
	// internet) reaches. false serves it only on Listen, also in receivers.
	OnWebhookListener bool `yaml:"on_webhook_listener"`
}

// Runner is a flavor's runner environment (key "flavors[].runner").
type Runner struct {
	// Command starts the runner inside the instance; --jitconfig <config> is appended.
	Command string `yaml:"command"`
	// User runs the runner when the image has that user (root otherwise).
	User            string            `yaml:"user"`
	ExtraLabels     []string          `yaml:"extra_labels"`
	Env             map[string]string `yaml:"env"`
	DockerhubMirror string            `yaml:"dockerhub_mirror"`
	PreJobScript    string            `yaml:"pre_job_script"`
	// UserData is cloud-config (images with cloud-init) or script ("#!" user-data,
	// also run by minimal images without cloud-init).
	UserData           string        `yaml:"user_data"`
	FetchSpawnerBinary bool          `yaml:"fetch_spawner_binary"`
	PowerOff           *bool         `yaml:"power_off"`
	BootTimeout        time.Duration `yaml:"boot_timeout"`
	IdleTTL            time.Duration `yaml:"idle_ttl"`
	// AllowExternalContributors (default true) lets pull requests from forks run
	// whoever wrote them; false runs them only for the repository's owners, members
	// and collaborators (contributors too in private repositories). See
	// docs/repo-policy.md.
	AllowExternalContributors *bool `yaml:"allow_external_contributors"`
}

// User-data formats.
const (
	UserDataCloudConfig = "cloud-config"
	UserDataScript      = "script"
)

func roleDefaults(f *File) {
	f.GitHub = GitHub{
		URL:              "https://api.github.com/",
		RunnerGroup:      "default",
		Timeout:          10 * time.Second,
		MaxInFlight:      8,
		RatePerHour:      0, // no ceiling: GitHub's own budget paces the client
		ReserveThreshold: 500,
		// 80% of the 900 points a minute GitHub allows a credential's REST calls.
		SecondaryPointsPerMinute: 720,
		MaxMutatingInFlight:      2,
	}
	f.Consumer = Consumer{
		Workers:         4,
		VerifyAge:       2 * time.Minute,
		MaxAttempts:     5,
		BackoffInitial:  2 * time.Second,
		BackoffMax:      2 * time.Minute,
		CapacityWait:    5 * time.Second,
		CapacityRetry:   5 * time.Second,
		MaxReplacements: 3,
		CreateTimeout:   5 * time.Minute,
		AckWait:         time.Minute,
	}
	f.Bootstrap = Bootstrap{Listen: "0.0.0.0:8081"}
	f.Janitor = Janitor{
		Enabled:               true,
		Interval:              time.Minute,
		MaxDeletesPerPass:     50,
		MaxGitHubCallsPerPass: 100,
		FlushWait:             30 * time.Second,
		FlushWaitAttempts:     5,
		SweepInterval:         5 * time.Minute,
		SweepLookback:         time.Hour,
		PollInterval:          5 * time.Minute,
	}
	f.Admin = Admin{}
	// true keeps where receivers have always served /metrics, so existing scrape
	// configs keep working; operators opt out (docs/configuration.md).
	f.Metrics = Metrics{OnWebhookListener: true}
}

func applyRunnerDefaults(r *Runner) {
	if r.Command == "" {
		r.Command = "/home/runner/actions-runner/run.sh"
	}
	if r.User == "" {
		r.User = "runner"
	}
	if r.UserData == "" {
		r.UserData = UserDataCloudConfig
	}
	if r.PowerOff == nil {
		t := true
		r.PowerOff = &t
	}
	if r.BootTimeout == 0 {
		r.BootTimeout = 10 * time.Minute
	}
	if r.IdleTTL == 0 {
		r.IdleTTL = 5 * time.Minute
	}
	if r.AllowExternalContributors == nil {
		t := true
		r.AllowExternalContributors = &t
	}
}
