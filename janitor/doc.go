// Package janitor keeps the fleet clean whatever happened: one active janitor (a
// leader lease in JetStream KV; any number may stand by) reconciles three views —
// the backends' instances, GitHub's runner registrations and the runner records —
// and deletes what a crash, a lost webhook or a stuck boot left behind; it applies
// the flush modes sent as commands (package control carries them to it); and it
// recovers jobs whose webhooks never arrived (redelivering failed deliveries,
// optionally polling for queued jobs). It holds only the leader's loops: the
// commands' clients, the admin endpoint and the status queries are package control's,
// and the records and their moves package fleet's.
//
// It must not touch anything without this deployment's tag (backends list only
// ours) or anything protected (an instance tag, a protected record, a name in
// Options.ProtectedRunners); it must not act without holding the lease, and it stops
// acting before the lease could expire. It never spawns runners itself: a job that
// lost its runner gets a replacement request on the queue, and the consumer decides.
package janitor
