package openstack

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gcopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"

	"github.com/runner-spawner/runner-spawner/backends"
)

// benchPoll is how often both paths look whether a server is ACTIVE yet.
const benchPoll = 100 * time.Millisecond

// BenchmarkRealCreateToActive compares, on the local test cloud, the time from asking
// for a server to seeing it ACTIVE: plain gophercloud (create, then GET until ACTIVE)
// against this package (Backend.Create, then Backend.List until running), one server
// at a time. Run it with a fixed count, e.g.
//
//	go test -run '^$' -bench RealCreateToActive -benchtime 20x ./backends/openstack/
//
// It reports p50 and p99 in milliseconds over the servers of the last round.
func BenchmarkRealCreateToActive(b *testing.B) {
	c := realCloud(b, realAdminCloud)
	b.Run("gophercloud", func(b *testing.B) {
		compute := rawCompute(b)
		imageID, err := c.resolver.image(b.Context(), realImage)
		if err != nil {
			b.Fatal(err)
		}
		netID, err := c.resolver.network(b.Context(), realNetwork)
		if err != nil {
			b.Fatal(err)
		}
		prefix := "bench-raw-" + randomID(3)
		var ids []string
		b.Cleanup(func() { deleteAll(b, compute, ids) })
		samples := make([]time.Duration, 0, b.N)
		for i := range b.N {
			start := time.Now()
			s, err := servers.Create(b.Context(), compute, servers.CreateOpts{
				Name: fmt.Sprintf("%s-%d", prefix, i), ImageRef: imageID, FlavorRef: "1",
				Networks: []servers.Network{{UUID: netID}}, UserData: []byte("#!/bin/sh\ntrue\n"),
			}, nil).Extract()
			if err != nil {
				b.Fatalf("create: %v", err)
			}
			ids = append(ids, s.ID)
			for {
				got, err := servers.Get(b.Context(), compute, s.ID).Extract()
				if err != nil {
					b.Fatalf("get: %v", err)
				}
				if got.Status == "ACTIVE" {
					break
				}
				if got.Status == "ERROR" {
					b.Fatalf("server %s went to ERROR: %s", s.ID, got.Fault.Message)
				}
				time.Sleep(benchPoll)
			}
			samples = append(samples, time.Since(start))
		}
		reportPercentiles(b, samples)
	})
	b.Run("backend", func(b *testing.B) {
		opts := realOptions("bench")
		be := mustNew(b, c, opts)
		var names []string
		b.Cleanup(func() {
			for _, n := range names {
				_ = be.Delete(context.Background(), n)
			}
		})
		samples := make([]time.Duration, 0, b.N)
		for i := range b.N {
			sp := backends.InstanceSpec{Name: fmt.Sprintf("%s-bench-%d", opts.DeploymentID, i), Flavor: opts.Flavor,
				JobID: int64(i), UserData: "#!/bin/sh\ntrue\n"}
			start := time.Now()
			if _, err := be.Create(b.Context(), sp); err != nil {
				b.Fatalf("Create: %v", err)
			}
			names = append(names, sp.Name)
			for running := false; !running; {
				list, err := be.List(b.Context())
				if err != nil {
					b.Fatalf("List: %v", err)
				}
				for _, in := range list {
					if in.Name == sp.Name && in.State == backends.StateError {
						b.Fatalf("server %s went to ERROR: %s", sp.Name, in.Fault)
					}
					running = running || (in.Name == sp.Name && in.State == backends.StateRunning)
				}
				if !running {
					time.Sleep(benchPoll)
				}
			}
			samples = append(samples, time.Since(start))
		}
		reportPercentiles(b, samples)
	})
}

// rawCompute is a compute client made the plain gophercloud way, without this
// package's limits, sharing nothing with the Backend's connection.
func rawCompute(b *testing.B) *gophercloud.ServiceClient {
	ao, eo, _, err := clouds.Parse(clouds.WithCloudName(realAdminCloud), clouds.WithLocations(realCloudsFile()))
	if err != nil {
		b.Fatal(err)
	}
	provider, err := gcopenstack.AuthenticatedClient(b.Context(), ao)
	if err != nil {
		b.Fatal(err)
	}
	compute, err := gcopenstack.NewComputeV2(provider, eo)
	if err != nil {
		b.Fatal(err)
	}
	compute.Microversion = tagsMicroversion
	return compute
}

func deleteAll(b *testing.B, compute *gophercloud.ServiceClient, ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, id := range ids {
		if err := servers.Delete(ctx, compute, id).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, 404) {
			b.Logf("delete server %s: %v", id, err)
		}
	}
}

func reportPercentiles(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	pct := func(p float64) float64 {
		i := int(p*float64(len(samples))+0.5) - 1
		i = min(max(i, 0), len(samples)-1)
		return float64(samples[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}
