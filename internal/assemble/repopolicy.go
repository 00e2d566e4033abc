package assemble

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/config"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/repopolicy"
)

// withChecks adds a flavor's pre-job checks to its runner settings: the
// repo-policy service (its URL, timeout and fail_open; never its token) and the
// built-in fork check.
func (a *Assembly) withChecks(f config.Flavor, s bootstrap.RunnerSettings) bootstrap.RunnerSettings {
	if rp := a.cfg.RepoPolicyFor(f.Name); rp != nil {
		s.RepoPolicy = &bootstrap.RepoPolicy{URL: rp.URL, Timeout: rp.Timeout, FailOpen: rp.FailOpen}
	}
	s.RefuseExternalContributors = f.Runner.AllowExternalContributors != nil && !*f.Runner.AllowExternalContributors
	return s
}

// policyMinter mints each flavor's one-time tokens from its service.
type policyMinter map[string]*repopolicy.Client

func (m policyMinter) PolicyToken(ctx context.Context, flavor string) (string, bool, error) {
	c := m[flavor]
	if c == nil {
		return "", false, nil
	}
	tok, err := c.OneTimeToken(ctx)
	return tok, true, err
}

// policyMinter is the bootstrap endpoint's minter (nil: no flavor has the check).
func (a *Assembly) policyMinter() bootstrap.PolicyMinter {
	m := policyMinter{}
	for _, f := range a.cfg.Flavors {
		if rp := a.cfg.RepoPolicyFor(f.Name); rp != nil {
			m[f.Name] = &repopolicy.Client{URL: rp.URL, Token: rp.Token, Timeout: rp.Timeout}
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// runnerStops counts the runs that end, by flavor and outcome
// (spawner_runner_stops_total), registered once however many fleets are opened.
func (a *Assembly) runnerStops() func(flavor string, o fleet.Outcome) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stops == nil {
		a.stops = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_runner_stops_total",
			Help: "Runs that ended, by flavor and status (normal, abnormal, repo-policy-check-failure, external-contributor-check-failure), counted by the process that recorded the end.",
		}, []string{"flavor", "status"})
		a.opts.Registry.MustRegister(a.stops)
	}
	stops := a.stops
	return func(flavor string, o fleet.Outcome) { stops.WithLabelValues(flavor, string(o)).Inc() }
}
