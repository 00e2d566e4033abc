// Package openstack runs runner instances as Nova servers on an OpenStack cloud,
// implementing backends.Backend with gophercloud.
//
// A Cloud is one authenticated connection (clouds.yaml entry, token reused and renewed
// on expiry, compute microversion negotiated) with one budget of concurrent and
// per-second requests toward Nova; every flavor's Backend shares it. A Backend serves
// one flavor: its image, Nova flavor, networks and security groups, resolved by name
// or id through Glance and Neutron and cached.
//
// Servers are marked ours with tags (microversion 2.52 and later) and with server
// metadata (always), naming the deployment, the flavor, the runner and the job. List
// and Delete only ever see servers carrying this deployment's and this flavor's
// markers: this package must never list, adopt or delete a server it did not make.
// It must not wait for servers to boot either: the bootstrap callbacks and the janitor
// watch that.
package openstack
