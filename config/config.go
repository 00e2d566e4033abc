// Package config reads the one YAML file that configures every spawner role, fills in
// defaults, resolves secrets (inline, *_file keys, SPAWNER_* environment variables)
// and validates it, reporting every problem at once with its key path.
//
// Only cmd/spawner imports it: it turns a File into each package's Options. It must
// not import any other package of ours except internal leaves.
package config

import (
	"time"

	"github.com/runner-spawner/runner-spawner/internal/poolschedule"
	"github.com/runner-spawner/runner-spawner/internal/secret"
)

// File is the whole config file. docs/configuration.md documents every key; keep the
// two in step.
type File struct {
	// StateDir holds the embedded NATS server's JetStream store.
	StateDir string `yaml:"state_dir"`
	// DeploymentID tags every instance and prefixes every runner name, so that two
	// deployments sharing an org or a cloud never touch each other's runners.
	DeploymentID string `yaml:"deployment_id"`
	// ShutdownTimeout bounds how long any process takes to exit after SIGTERM or
	// SIGINT, whether or not NATS, the cloud or GitHub answer: what it has not
	// finished by then is left for the janitor.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	Log             Log           `yaml:"log"`
	NATS            NATS          `yaml:"nats"`
	Webhook         Webhook       `yaml:"webhook"`
	Routing         Routing       `yaml:"routing"`
	// Flavors is the routing table and the per-flavor runner settings. Order matters:
	// a job goes to the first flavor that matches.
	Flavors   []Flavor  `yaml:"flavors"`
	GitHub    GitHub    `yaml:"github"`
	Consumer  Consumer  `yaml:"consumer"`
	Bootstrap Bootstrap `yaml:"bootstrap"`
	Janitor   Janitor   `yaml:"janitor"`
	Admin     Admin     `yaml:"admin"`
	Metrics   Metrics   `yaml:"metrics"`
	// LXD is the connection to the LXD server used by flavors with backend lxd.
	LXD LXDServer `yaml:"lxd"`
	// OpenStack is the cloud used by flavors with backend openstack.
	OpenStack OpenStackCloud `yaml:"openstack"`
	// RepoPolicy is the repo-policy-compliance check before every job (repopolicy.go).
	RepoPolicy RepoPolicy `yaml:"repo_policy"`

	// inlineSecrets names the secrets written in the file itself, for Warnings.
	inlineSecrets []string
}

// Log configures the process log.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json, text
}

// NATS is the queue connection. An empty URL runs an embedded server (serve only).
type NATS struct {
	URL string `yaml:"url"`
	// Listen is the embedded server's client address, and the address that other
	// spawner processes on the host (status, consumer, flush) connect to when URL is
	// empty.
	Listen       string       `yaml:"listen"`
	User         string       `yaml:"user"`
	Password     secret.Value `yaml:"password"`
	PasswordFile string       `yaml:"password_file"`
	Token        secret.Value `yaml:"token"`
	TokenFile    string       `yaml:"token_file"`
	CredsFile    string       `yaml:"creds_file"`
	NKeyFile     string       `yaml:"nkey_file"`
	TLS          TLS          `yaml:"tls"`
	// Replicas of every stream and KV bucket; 0 = 1 for the embedded server and for
	// a single external server, 3 for an external cluster.
	Replicas        int           `yaml:"replicas"`
	StreamMaxBytes  ByteSize      `yaml:"stream_max_bytes"`
	StreamMaxMsgs   int64         `yaml:"stream_max_msgs"`
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// PublishTimeout bounds how long the receiver waits for JetStream's ack before it
	// answers 503; it must stay well inside GitHub's 10 s delivery timeout.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// DefaultNATSUser is nats.user when only a password is set.
const DefaultNATSUser = "spawner"

// TLS names certificate files: for the NATS connection (key "nats.tls") and for the
// bootstrap endpoint (key "bootstrap.tls").
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Webhook is the HTTP receiver GitHub posts to.
type Webhook struct {
	Listen string `yaml:"listen"`
	Path   string `yaml:"path"`
	// Secrets are the webhook secrets; every one is accepted, so a secret can be
	// rotated by adding the new one, changing GitHub, then removing the old one.
	Secrets               []secret.Value `yaml:"secrets"`
	SecretsFile           string         `yaml:"secrets_file"`
	InsecureSkipSignature bool           `yaml:"insecure_skip_signature"`
	MaxBodyBytes          ByteSize       `yaml:"max_body_bytes"`
	ReadTimeout           time.Duration  `yaml:"read_timeout"`
}

// Routing is how a job's labels pick a flavor.
type Routing struct {
	DefaultFlavor string   `yaml:"default_flavor"`
	IgnoredLabels []string `yaml:"ignored_labels"`
	// Match is "subset" (a flavor takes a job whose labels are all among the
	// flavor's) or "exact" (the label sets must be equal).
	Match string `yaml:"match"`
}

// PoolWindow is one window of a flavor's min_idle_schedule.
type PoolWindow struct {
	// Start is a 5-field cron expression (minute hour day-of-month month
	// day-of-week) or a descriptor (@daily), in UTC unless prefixed with
	// "CRON_TZ=<zone> ".
	Start string `yaml:"start"`
	// Duration is how long the window stays open after each start.
	Duration time.Duration `yaml:"duration"`
	// MinIdle is the warm pool's size while the window is open.
	MinIdle int `yaml:"min_idle"`
}

func (w PoolWindow) window() poolschedule.Window {
	return poolschedule.Window{Start: w.Start, Duration: w.Duration, MinIdle: w.MinIdle}
}

// PoolSchedule is the flavor's warm pool size over time (min_idle and its
// min_idle_schedule), for the consumers that fill the pool and the janitor that
// reaps beyond it. The config's validation has checked it.
func (f *Flavor) PoolSchedule() (poolschedule.Schedule, error) {
	windows := make([]poolschedule.Window, len(f.MinIdleSchedule))
	for i, w := range f.MinIdleSchedule {
		windows[i] = w.window()
	}
	return poolschedule.New(f.MinIdle, windows)
}

// Flavor is one kind of runner.
type Flavor struct {
	Name       string   `yaml:"name"`
	Labels     []string `yaml:"labels"`
	MaxRunners int      `yaml:"max_runners"`
	// MinIdle is the warm pool: runners kept started, registered and idle before any
	// job asks for them, within max_runners (0: none).
	MinIdle int `yaml:"min_idle"`
	// MinIdleSchedule are windows (a cron start and a duration) in which the warm
	// pool holds the window's min_idle instead: the largest of those open, else
	// MinIdle.
	MinIdleSchedule []PoolWindow `yaml:"min_idle_schedule"`
	// Backend selects where the flavor's instances run: lxd, openstack or sim. It is
	// required (no default). Its settings sit under the key of the same name.
	Backend string `yaml:"backend"`
	// Runner is the runner's environment inside the instance.
	Runner Runner `yaml:"runner"`
	// RepoPolicy, when set, replaces the deployment's repo_policy for this flavor
	// (url: "" turns the check off for it).
	RepoPolicy *RepoPolicy      `yaml:"repo_policy"`
	Sim        *SimFlavor       `yaml:"sim"`
	LXD        *LXDFlavor       `yaml:"lxd"`
	OpenStack  *OpenStackFlavor `yaml:"openstack"`
}

// SimFlavor configures the simulated backend (tests, benchmarks, sandbox).
type SimFlavor struct {
	// BootTime is how long a simulated instance takes to boot.
	BootTime time.Duration `yaml:"boot_time"`
	// BootJitter adds a random 0..boot_jitter to each boot.
	BootJitter time.Duration `yaml:"boot_jitter"`
	// URL is a shared simulated cloud (`spawner dev sim-cloud`); empty: in-process.
	URL string `yaml:"url"`
}

// Backend names.
const (
	BackendSim       = "sim"
	BackendLXD       = "lxd"
	BackendOpenStack = "openstack"
)

// Routing match modes.
const (
	MatchSubset = "subset"
	MatchExact  = "exact"
)

// Defaults returns a File with every default filled in and no flavors.
func Defaults() *File {
	f := &File{
		StateDir:        "/var/lib/spawner",
		DeploymentID:    "spawner",
		ShutdownTimeout: 30 * time.Second,
		Log:             Log{Level: "info", Format: "json"},
		NATS: NATS{
			Listen:          "127.0.0.1:4222",
			StreamMaxBytes:  1 << 30,
			StreamMaxMsgs:   -1,
			DuplicateWindow: 10 * time.Minute,
			PublishTimeout:  4 * time.Second,
			ConnectTimeout:  5 * time.Second,
		},
		Webhook: Webhook{
			Listen:       "0.0.0.0:8080",
			Path:         "/webhook",
			MaxBodyBytes: 1 << 20,
			ReadTimeout:  5 * time.Second,
		},
		Routing: Routing{
			IgnoredLabels: []string{"self-hosted", "linux"},
			Match:         MatchSubset,
		},
		LXD:        lxdDefaults(),
		OpenStack:  openstackDefaults(),
		RepoPolicy: RepoPolicy{Timeout: DefaultRepoPolicyTimeout},
	}
	roleDefaults(f)
	return f
}

// UsesBackend reports whether any flavor uses the named backend.
func (f *File) UsesBackend(name string) bool {
	for _, fl := range f.Flavors {
		if fl.Backend == name {
			return true
		}
	}
	return false
}

// applyFlavorDefaults fills per-flavor defaults that depend on the flavor itself.
func applyFlavorDefaults(f *Flavor) {
	if f.Backend == BackendSim && f.Sim == nil {
		f.Sim = &SimFlavor{}
	}
	applyRunnerDefaults(&f.Runner)
	applyRepoPolicyDefaults(f.RepoPolicy)
}

// FlavorNames returns the flavors' names in config order.
func (f *File) FlavorNames() []string {
	names := make([]string, len(f.Flavors))
	for i, fl := range f.Flavors {
		names[i] = fl.Name
	}
	return names
}

// Flavor returns the flavor named name, or nil.
func (f *File) Flavor(name string) *Flavor {
	for i := range f.Flavors {
		if f.Flavors[i].Name == name {
			return &f.Flavors[i]
		}
	}
	return nil
}
