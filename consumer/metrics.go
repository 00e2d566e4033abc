package consumer

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	events        *prometheus.CounterVec
	spawnLatency  *prometheus.HistogramVec
	createSeconds *prometheus.HistogramVec
	capacityFull  *prometheus.CounterVec
	deadLetters   *prometheus.CounterVec
	replacements  *prometheus.CounterVec
	adopted       *prometheus.CounterVec
	githubChecks  *prometheus.CounterVec
	deleted       *prometheus.CounterVec
	poolRunners   *prometheus.GaugeVec
	poolTarget    *prometheus.GaugeVec
	poolCreates   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_consumer_events_total",
			Help: "Job events handled, by flavor, action and outcome.",
		}, []string{"flavor", "action", "outcome"}),
		spawnLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spawner_consumer_spawn_latency_seconds",
			Help:    "Time from the webhook's arrival to the backend create call.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"flavor"}),
		createSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spawner_consumer_create_seconds",
			Help:    "Backend create duration, by flavor, backend and result.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"flavor", "backend", "result"}),
		capacityFull: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_consumer_capacity_full_total",
			Help: "Times a job had to wait because its flavor was at max_runners.",
		}, []string{"flavor"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_consumer_dead_letters_total",
			Help: "Jobs given up on, by flavor and reason.",
		}, []string{"flavor", "reason"}),
		replacements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_consumer_replacements_total",
			Help: "Extra runners spawned for jobs whose runner another job took.",
		}, []string{"flavor"}),
		adopted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_consumer_spares_adopted_total",
			Help: "Spare runners given to a waiting job instead of spawning a new one.",
		}, []string{"flavor"}),
		githubChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_consumer_github_checks_total",
			Help: "Job status checks with GitHub, by result (queued, in_progress, completed, gone, error).",
		}, []string{"result"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_consumer_instances_deleted_total",
			Help: "Instances deleted as soon as their job finished.",
		}, []string{"flavor"}),
		poolRunners: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spawner_pool_runners",
			Help: "Warm pool runners that have not taken a job yet (creating, booting or idle), as this process last read them.",
		}, []string{"flavor"}),
		poolTarget: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spawner_pool_target_runners",
			Help: "The warm pool's size the flavor is kept at (min_idle).",
		}, []string{"flavor"}),
		poolCreates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_pool_creates_total",
			Help: "Warm pool runners created by this process, by flavor and result (ok, error).",
		}, []string{"flavor", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.spawnLatency, m.createSeconds, m.capacityFull, m.deadLetters, m.replacements, m.adopted, m.githubChecks, m.deleted, m.poolRunners, m.poolTarget, m.poolCreates)
	}
	return m
}
