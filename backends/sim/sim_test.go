package sim_test

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
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

// The faults a capacity test needs: a create that fails after making its instance,
// deletes that fail until healed, and a create whose outcome is unknown. They act on
// the cloud, so local and remote backends see the same.
func TestLeftoverFaults(t *testing.T) {
	cloud := sim.NewCloud(sim.CloudOptions{})
	t.Cleanup(cloud.Close)
	srv := httptest.NewServer(cloud.Handler())
	t.Cleanup(srv.Close)
	for name, b := range map[string]backends.Backend{
		"local":  cloud.Backend(sim.BackendOptions{DeploymentID: "d", Flavor: "small"}),
		"remote": sim.NewRemote(srv.URL, sim.BackendOptions{DeploymentID: "d", Flavor: "small"}),
	} {
		t.Run(name, func(t *testing.T) {
			spec := backends.InstanceSpec{Name: "spawner-small-" + name + "-0", Flavor: "small"}
			boom := errors.New("half-made instance not deleted")
			cloud.FailNextLeaving("small", boom, 1)
			if _, err := b.Create(t.Context(), spec); err == nil || !strings.Contains(err.Error(), boom.Error()) {
				t.Fatalf("create: %v, want %v", err, boom)
			}
			if !cloud.Exists(spec.Name) {
				t.Fatal("the failed create left no instance")
			}
			cloud.SetDeleteFault("small", errors.New("delete refused"))
			if err := b.Delete(t.Context(), spec.Name); err == nil || !cloud.Exists(spec.Name) {
				t.Fatalf("delete under a fault: %v, exists %v", err, cloud.Exists(spec.Name))
			}
			if err := b.Delete(t.Context(), "spawner-small-none-0"); err != nil {
				t.Errorf("delete of nothing under a fault: %v, want nil", err)
			}
			cloud.SetDeleteFault("small", nil)
			if err := b.Delete(t.Context(), spec.Name); err != nil || cloud.Exists(spec.Name) {
				t.Fatalf("delete once healed: %v, exists %v", err, cloud.Exists(spec.Name))
			}
			cloud.FailNext("small", fmt.Errorf("%w: answer lost", backends.ErrOutcomeUnknown), 1)
			if _, err := b.Create(t.Context(), spec); !errors.Is(err, backends.ErrOutcomeUnknown) || cloud.Exists(spec.Name) {
				t.Errorf("create: %v, exists %v; want ErrOutcomeUnknown and no instance", err, cloud.Exists(spec.Name))
			}
		})
	}
}
