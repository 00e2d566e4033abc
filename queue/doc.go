// Package queue is the spawner's transport and storage on NATS JetStream: the
// embedded server, the connection, the streams and their subjects, the job-event
// envelope the receiver publishes, the dead-letter stream, request/reply for
// commands, and typed compare-and-set KV buckets (Bucket) with the janitor's own
// bookkeeping (leases, status documents, the sweeper's memory).
//
// It knows no job or runner record (package fleet owns them) and must not import
// the backends or the GitHub client: the queue is tested without a cloud, and a
// backend without NATS.
package queue
