package janitor

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	deleted       *prometheus.CounterVec
	registrations *prometheus.CounterVec
	released      *prometheus.CounterVec
	resumed       *prometheus.CounterVec
	replacements  *prometheus.CounterVec
	kept          *prometheus.CounterVec
	passSeconds   prometheus.Histogram
	passes        *prometheus.CounterVec
	active        prometheus.Gauge
	lastReconcile prometheus.Gauge
	lease         *prometheus.CounterVec
	flushes       *prometheus.CounterVec
	redelivered   prometheus.Counter
	polled        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_janitor_deleted_total",
			Help: "Instances deleted by the janitor, by flavor and reason (finished, runner_gone, runner_offline, boot_timeout, stopped_while_booting, stopped_while_idle, instance_error, idle_ttl, orphan, crashed_create, flush).",
		}, []string{"flavor", "reason"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_janitor_registrations_removed_total",
			Help: "GitHub runner registrations removed, by reason (orphan: offline with no instance; stopped_while_booting, stopped_while_idle: left by a runner whose instance powered off).",
		}, []string{"reason"}),
		released: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_janitor_slots_released_total",
			Help: "Capacity slots released that nobody else would have released (leaked slots, vanished instances, abandoned creates).",
		}, []string{"flavor"}),
		resumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_janitor_resumed_creates_total",
			Help: "Creates abandoned by a crashed process that were handed back to the consumers.",
		}, []string{"flavor"}),
		replacements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_janitor_replacements_total",
			Help: "Replacement runners requested for queued jobs whose runner the janitor removed.",
		}, []string{"flavor"}),
		kept: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_janitor_kept_total",
			Help: "Leftovers the janitor chose not to touch, by reason (protected, busy, bound).",
		}, []string{"reason"}),
		passSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spawner_janitor_pass_seconds",
			Help:    "Duration of one reconcile pass.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_janitor_passes_total",
			Help: "Reconcile passes, by result (ok, partial: some part failed, error: nothing done).",
		}, []string{"result"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spawner_janitor_active",
			Help: "1 while this janitor holds the lease and acts, else 0.",
		}),
		lastReconcile: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spawner_janitor_last_reconcile_timestamp_seconds",
			Help: "When this janitor's last reconcile pass ended (Unix time).",
		}),
		lease: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_janitor_lease_events_total",
			Help: "Lease events of this janitor (acquired, lost, released).",
		}, []string{"event"}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_janitor_flushes_total",
			Help: "Flush commands carried out, by mode and result (ok, incomplete).",
		}, []string{"mode", "result"}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spawner_janitor_redelivered_total",
			Help: "Failed workflow_job webhook deliveries asked to be redelivered.",
		}),
		polled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_janitor_polled_jobs_total",
			Help: "Queued jobs found by polling that no webhook had announced, by flavor.",
		}, []string{"flavor"}),
	}
	if reg != nil {
		reg.MustRegister(m.deleted, m.registrations, m.released, m.resumed, m.replacements, m.kept,
			m.passSeconds, m.passes, m.active, m.lastReconcile, m.lease, m.flushes, m.redelivered, m.polled)
	}
	return m
}
