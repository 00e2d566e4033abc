package lxd

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
)

// Launch benchmarks on the real daemon (image "tiny"). Run about 20 launches each:
//
//	go test -run '^$' -bench 'Launch|BackendCreate' -benchtime 20x ./backends/lxd
//
// ns/op is the mean create+start; p50-ms and p99-ms are over the launches of the
// run. The delete after each launch is not timed.

// BenchmarkRawLaunch is LXD's own cost: create+start of tiny straight through the
// REST API, nothing of ours around it. It is the "a" of the b/a ratio.
func BenchmarkRawLaunch(b *testing.B) {
	c := realClient(b)
	ctx := context.Background()
	prefix := "bench-raw-" + randHex(2)
	launch := func(name string) error {
		err := c.CreateInstance(ctx, InstancesPost{Name: name, Source: InstanceSource{Type: "image", Alias: testImage}})
		if err != nil {
			return err
		}
		return c.SetInstanceState(ctx, name, InstanceStatePut{Action: "start", Timeout: -1})
	}
	benchLaunches(b, prefix, launch, func(name string) { rawDelete(c, name) })
}

// BenchmarkBackendCreate is the same launch through Backend.Create (create and
// start; the exec mode adds the script push and the exec).
func BenchmarkBackendCreate(b *testing.B) {
	c := realClient(b)
	for _, mode := range []string{BootstrapCloudInit, BootstrapExec} {
		b.Run(mode, func(b *testing.B) {
			be := realBackend(b, c, Options{DeploymentID: testDeployment(), Flavor: "bench", Bootstrap: mode})
			prefix := "bench-" + randHex(2)
			launch := func(name string) error {
				_, err := be.Create(context.Background(), backends.InstanceSpec{
					Name: name, Flavor: "bench", JobID: 1,
					UserData: "#!/bin/sh\ntrue\n", Script: "#!/bin/sh\ntrue\n",
					Env: map[string]string{"SPAWNER_BOOTSTRAP_TOKEN": "t"},
				})
				return err
			}
			benchLaunches(b, prefix, launch, func(name string) { _ = be.Delete(context.Background(), name) })
		})
	}
}

func benchLaunches(b *testing.B, prefix string, launch func(name string) error, remove func(name string)) {
	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("%s-%d", prefix, i)
		start := time.Now()
		err := launch(name)
		took = append(took, time.Since(start))
		b.StopTimer()
		remove(name)
		if err != nil {
			b.Fatalf("launch %s: %v", name, err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(ms(percentile(took, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(took, 99)), "p99-ms")
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (p*len(sorted) + 99) / 100 // ceil(p/100 * n), 1-based
	return sorted[max(i, 1)-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
