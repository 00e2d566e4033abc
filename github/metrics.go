package github

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	remaining *prometheus.GaugeVec
	reset     *prometheus.GaugeVec
	deferred  *prometheus.CounterVec
	retries   *prometheus.CounterVec
}

// newMetrics makes the client's metrics and registers them on reg (nil: unregistered,
// still counted). Each client has its own collectors, so several clients live in one
// process as long as each has its own registry.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_github_requests_total",
			Help: "GitHub API requests by operation and answer status code (\"error\": no answer).",
		}, []string{"operation", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spawner_github_request_duration_seconds",
			Help:    "GitHub API request latency by operation.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation"}),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spawner_github_rate_limit_remaining",
			Help: "GitHub's X-RateLimit-Remaining as last seen, by credential (api: token or installation; app: App JWT).",
		}, []string{"credential"}),
		reset: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spawner_github_rate_limit_reset_timestamp_seconds",
			Help: "GitHub's X-RateLimit-Reset (unix seconds) as last seen, by credential.",
		}, []string{"credential"}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_github_deferred_calls_total",
			Help: "Calls the budget guard held back, by operation and reason (exhausted, reserve, bucket).",
		}, []string{"operation", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_github_retries_total",
			Help: "Requests sent again, by operation and reason (rate_limited, server_error, timeout, transport).",
		}, []string{"operation", "reason"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.remaining, m.reset, m.deferred, m.retries} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register github metrics: %w", err)
		}
	}
	return m, nil
}
