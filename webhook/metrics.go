package webhook

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests          *prometheus.CounterVec
	signatureFailures *prometheus.CounterVec
	publishSeconds    prometheus.Histogram
	routed            *prometheus.CounterVec
	notForwarded      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_webhook_requests_total",
			Help: "Webhook deliveries received, by event, action and outcome (stored, duplicate, not_forwarded, ignored, pong, bad_header, bad_request, unauthorized, too_large, timeout, unavailable).",
		}, []string{"event", "action", "outcome"}),
		signatureFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_webhook_signature_failures_total",
			Help: "Deliveries rejected with 401, by reason (missing, malformed, mismatch).",
		}, []string{"reason"}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spawner_webhook_publish_seconds",
			Help:    "Time from publishing a job event to JetStream's acknowledgement.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_webhook_routed_total",
			Help: "Job events stored, by flavor and action.",
		}, []string{"flavor", "action"}),
		notForwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_webhook_not_forwarded_total",
			Help: "workflow_job deliveries answered 200 but not forwarded, by reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.signatureFailures, m.publishSeconds, m.routed, m.notForwarded)
	}
	return m
}

func signatureReason(err error) string {
	switch {
	case errors.Is(err, ErrSignatureMissing):
		return "missing"
	case errors.Is(err, ErrSignatureMalformed):
		return "malformed"
	default:
		return "mismatch"
	}
}

// eventLabel and actionLabel keep metric cardinality bounded whatever is posted.
func eventLabel(e string) string {
	switch e {
	case "workflow_job", "ping", "":
		return e
	}
	return "other"
}

func actionLabel(a string) string {
	if a == "" || knownAction(a) {
		return a
	}
	return "other"
}
