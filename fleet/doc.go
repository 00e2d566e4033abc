// Package fleet is the one home of the job and runner lifecycle: the records the
// spawner keeps of every GitHub job and every runner (JetStream KV, through package
// queue's compare-and-set buckets), the state machines they follow (transitions.go),
// each flavor's capacity slots and spare runners, and the verbs that move them:
// Claim, StartCreate, Created, Report (booted, job started, pre-job done, finished),
// Busy, Spare, Adopt, Fail, Retire, InstanceGone, Replace.
//
// The consumer, the bootstrap endpoint and the janitor call these verbs; none of
// them edits a record's fields. Every decision about a write that may fail is made
// here: the verb returns the error (the caller retries or answers), or, where
// nothing can be done but wait for the janitor, says so in its comment.
//
// It must not import a backend, the GitHub client, the config or any role's
// package: it is the vocabulary they share, and it is tested with the real NATS
// server alone.
package fleet
