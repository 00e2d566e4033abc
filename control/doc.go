// Package control is operator control of a running fleet, shared by the CLI
// (`spawner flush`, `reconcile`, `status`, `runners list`, `jobs list`,
// `dead-letters …`) and the admin HTTP endpoint: the flush modes (a typed Mode, parsed
// once where it enters), the command wire types and their request/reply over NATS,
// the responder the active janitor plugs into, the status queries and the dead-letter
// operations.
//
// It must not import the janitor (the janitor carries commands out by implementing
// Responder), the consumer or the config: it speaks to a fleet only through NATS
// and the records.
package control
