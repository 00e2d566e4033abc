package config

import (
	"fmt"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/bootstrapendpoint"
	"github.com/runner-spawner/runner-spawner/internal/secret"
)

// RepoPolicy is the repo-policy-compliance service every job is checked with before
// its first step (key "repo_policy", and "flavors[].repo_policy" to override it for
// one flavor). An empty url turns the check off. docs/repo-policy.md has the rest.
type RepoPolicy struct {
	// URL is the service's base URL, as the spawner and the instances reach it. It
	// is written into every runner's pre-job hook, so it has the strict alphabet of
	// bootstrap.url.
	URL string `yaml:"url"`
	// Token is the service token (the service's CHARM_TOKEN): it mints one-time
	// tokens and never leaves the spawner.
	Token     secret.Value `yaml:"token"`
	TokenFile string       `yaml:"token_file"`
	// Timeout bounds the instance's check call and each of the spawner's mint calls.
	Timeout time.Duration `yaml:"timeout"`
	// FailOpen lets a job run, with a warning in its log, when the service answers
	// 5xx or cannot be reached; false (default) fails such a job.
	FailOpen bool `yaml:"fail_open"`
}

// DefaultRepoPolicyTimeout is repo_policy.timeout when unset.
const DefaultRepoPolicyTimeout = 30 * time.Second

// EnvRepoPolicyToken is the environment variable holding repo_policy.token.
const EnvRepoPolicyToken = "SPAWNER_REPO_POLICY_TOKEN"

// RepoPolicyFor is the policy check of the named flavor: its own repo_policy section
// when it has one, else the deployment's; nil when the check is off (no url).
func (f *File) RepoPolicyFor(flavor string) *RepoPolicy {
	rp := &f.RepoPolicy
	if fl := f.Flavor(flavor); fl != nil && fl.RepoPolicy != nil {
		rp = fl.RepoPolicy
	}
	if rp.URL == "" {
		return nil
	}
	return rp
}

// resolveRepoPolicySecrets reads the token files; the environment variable sets the
// deployment's token only (a flavor with its own service names its own file).
func resolveRepoPolicySecrets(f *File, getenv func(string) string, p *problems) {
	readSecretFile(&f.RepoPolicy.Token, f.RepoPolicy.TokenFile, "repo_policy.token", p)
	envSecret(&f.RepoPolicy.Token, EnvRepoPolicyToken, getenv)
	for i := range f.Flavors {
		if rp := f.Flavors[i].RepoPolicy; rp != nil {
			readSecretFile(&rp.Token, rp.TokenFile, fmt.Sprintf("flavors[%d].repo_policy.token", i), p)
		}
	}
}

func applyRepoPolicyDefaults(rp *RepoPolicy) {
	if rp != nil && rp.Timeout == 0 {
		rp.Timeout = DefaultRepoPolicyTimeout
	}
}

func (f *File) validateRepoPolicies(p *problems) {
	f.RepoPolicy.validate("repo_policy", p)
	for i, fl := range f.Flavors {
		if fl.RepoPolicy != nil {
			fl.RepoPolicy.validate(fmt.Sprintf("flavors[%d].repo_policy", i), p)
		}
	}
}

func (rp *RepoPolicy) validate(key string, p *problems) {
	if rp.URL == "" {
		if !rp.Token.IsZero() {
			p.add(key+".url", "is required with %s.token: the token is useless without the service", key)
		}
		return
	}
	if err := bootstrapendpoint.CheckURL(rp.URL); err != nil {
		// The URL is written into the pre-job hook: the same alphabet as bootstrap.url.
		p.add(key+".url", "%q %v", rp.URL, err)
	}
	if rp.Token.IsZero() {
		p.add(key+".token", "is required with %s.url: set %s.token_file or %s (the service's CHARM_TOKEN)", key, key, EnvRepoPolicyToken)
	}
	if rp.Timeout < time.Second || rp.Timeout > 5*time.Minute {
		p.add(key+".timeout", "must be 1s to 5m (got %s)", rp.Timeout)
	}
}
