package sim_test

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/backends/backendtest"
	"github.com/runner-spawner/runner-spawner/backends/sim"
)

func TestContract(t *testing.T) {
	cloud := sim.NewCloud(sim.CloudOptions{})
	t.Cleanup(cloud.Close)
	foreign := 0
	backendtest.Run(t, backendtest.Harness{
		Flavor: "small",
		New: func(t *testing.T) backends.Backend {
			return cloud.Backend(sim.BackendOptions{DeploymentID: "bt", Flavor: "small"})
		},
		PlantForeign: func(t *testing.T) string {
			foreign++
			name := "foreign-" + string(rune('a'+foreign))
			cloud.PlantForeign(name)
			return name
		},
		Exists: func(t *testing.T, name string) bool { return cloud.Exists(name) },
	})
}

func TestContractRemote(t *testing.T) {
	cloud := sim.NewCloud(sim.CloudOptions{})
	t.Cleanup(cloud.Close)
	srv := httptest.NewServer(cloud.Handler())
	t.Cleanup(srv.Close)
	backendtest.Run(t, backendtest.Harness{
		Flavor: "small",
		New: func(t *testing.T) backends.Backend {
			return sim.NewRemote(srv.URL, sim.BackendOptions{DeploymentID: "bt", Flavor: "small"})
		},
		PlantForeign: func(t *testing.T) string { cloud.PlantForeign("planted-by-hand"); return "planted-by-hand" },
		Exists:       func(t *testing.T, name string) bool { return cloud.Exists(name) },
	})
}

func TestFaultsCrossTheWire(t *testing.T) {
	cloud := sim.NewCloud(sim.CloudOptions{})
	t.Cleanup(cloud.Close)
	srv := httptest.NewServer(cloud.Handler())
	t.Cleanup(srv.Close)
	b := sim.NewRemote(srv.URL, sim.BackendOptions{DeploymentID: "d", Flavor: "small"})
	cloud.FailNext("small", backends.ErrQuota, 1)
	cloud.FailNext("small", backends.ErrBadSpec, 1)
	spec := backends.InstanceSpec{Name: "spawner-small-1-0", Flavor: "small"}
	if _, err := b.Create(t.Context(), spec); !errors.Is(err, backends.ErrQuota) {
		t.Errorf("first create: %v, want ErrQuota", err)
	}
	if _, err := b.Create(t.Context(), spec); !errors.Is(err, backends.ErrBadSpec) {
		t.Errorf("second create: %v, want ErrBadSpec", err)
	}
	if _, err := b.Create(t.Context(), spec); err != nil {
		t.Errorf("third create: %v", err)
	}
	if st := cloud.Stats(); st.Created != 1 || st.MaxLive["small"] != 1 {
		t.Errorf("stats %+v", st)
	}
}
