// Package deployments holds runner-spawner's deployment artifacts — the NATS cluster
// config, systemd units, Kubernetes manifests, docker-compose files and monitoring —
// and, in its tests, their validation: each file is parsed by the library of the tool
// that reads it (compose-spec, kustomize and the Kubernetes types, nats-server,
// Prometheus), each spawner command they run is checked against the binary's own
// --help, each spawner config against config.Parse, and each metric against the
// collectors declared in the code, so a typo anywhere fails the tests.
//
// It is a module of its own (go.mod here, the product's code taken from ../ by a
// replace) so that those tools' libraries stay out of the product's go.mod; run its
// tests with `go test -C deployments ./...` from the repository's top.
//
// It has no code of its own and nothing imports it.
package deployments
