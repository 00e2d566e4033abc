// Package lxd runs runner instances as LXD containers or virtual machines.
//
// It speaks LXD's documented REST API itself, over the local unix socket or over HTTPS
// with a client certificate and a pinned server certificate: Client is a small typed
// client for only the calls the backend needs (instances, their state, files, exec and
// background operations), and Backend implements backends.Backend for one flavor on
// top of it. Several flavors share one Client, and with it the per-server limit on
// concurrent operations.
//
// Every instance a Backend makes carries user.spawner.* config keys (deployment id,
// flavor, runner name, job id); List and Delete never see or touch an instance
// without this deployment's and this flavor's keys.
//
// The package must not read the config file, flags or the environment, and must not
// import the queue: cmd/spawner builds ClientOptions and Options from the config.
package lxd
