package queue

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	// StreamJobs holds job events until a consumer has handled them (work-queue
	// retention: an acked event is gone, so the stream's size is the backlog).
	StreamJobs = "SPAWNER_JOBS"
	// StreamDead holds job events whose handling was given up, with the reason,
	// for operators to inspect, retry or drop.
	StreamDead = "SPAWNER_DEAD"
	// deadMaxAge is how long a dead letter is kept; long enough for an operator
	// back from a holiday.
	deadMaxAge = 30 * 24 * time.Hour
)

func streamConfigs(o StreamOptions, replicas int) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{{
		Name:        StreamJobs,
		Description: "workflow_job events per flavor and action, until handled",
		Subjects:    []string{jobsPrefix + ".*.*"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		// Never drop silently: a full stream refuses the publish, the receiver answers
		// 503 and GitHub keeps the delivery as failed, to be redelivered.
		Discard:    jetstream.DiscardNew,
		MaxBytes:   o.MaxBytes,
		MaxMsgs:    o.MaxMsgs,
		MaxMsgSize: 64 << 10,
		Duplicates: o.DuplicateWindow,
	}, {
		Name:        StreamDead,
		Description: "job events given up on, with the reason (kept 30 days)",
		Subjects:    []string{deadPrefix + ".*"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Discard:     jetstream.DiscardOld,
		MaxAge:      deadMaxAge,
		MaxBytes:    256 << 20,
		Duplicates:  o.DuplicateWindow,
	}}
}

func bucketConfigs(replicas int) []jetstream.KeyValueConfig {
	return bucketConfigsFor(replicas)
}
