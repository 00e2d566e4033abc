// Package queue owns everything that travels through NATS JetStream: the embedded
// server, the connection, the streams and their subjects, the job-event envelope, and
// (for the consumer and janitor) the KV records of jobs and runners and the leases.
// It is the shared vocabulary of the webhook receiver, the consumers and the janitor.
//
// It must not import the backends or the GitHub client: the queue is tested without a
// cloud, and a backend without NATS.
package queue
