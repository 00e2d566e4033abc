// Package backendtest is the contract suite every backends.Backend implementation
// must pass: the simulator always, LXD where a daemon answers, OpenStack where a
// cloud is configured. It checks behaviour only through the Backend methods plus a
// few raw probes the harness supplies (does an instance exist at all, plant one that
// is not ours), so the same assertions hold on every infrastructure.
//
// It is a test helper: it must not be imported by non-test code.
package backendtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
)

// Harness describes one backend under test.
type Harness struct {
	// Flavor is the flavor the backends returned by New serve.
	Flavor string
	// New returns a working backend for Flavor.
	New func(t *testing.T) backends.Backend
	// BadSettings are backends for Flavor whose settings cannot work (a missing
	// image, a missing profile, …), by case name. Create must fail with ErrBadSpec
	// and leave no instance behind. nil: the backend has no settings that can be
	// wrong (sim), and the suite has no BadSettings case for it rather than a skip
	// that would read like a missing service.
	BadSettings map[string]func(t *testing.T) backends.Backend
	// PlantForeign makes an instance that is not ours (no spawner tags, or another
	// deployment's) and returns its name; it registers its own cleanup. nil: the
	// foreign-instance cases are skipped.
	PlantForeign func(t *testing.T) string
	// Exists reports whether any instance by that name exists on the infrastructure,
	// ours or not.
	Exists func(t *testing.T, name string) bool
	// Settle bounds how long what a failed Create made may take to go, and how long
	// a foreign instance is watched after a Delete that must not touch it. (Delete
	// itself returns only once its instance is gone.) Zero means 30 s.
	Settle time.Duration
	// Parallel is how many creates the concurrency case runs at once (default 4).
	Parallel int
}

// Run runs the contract suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil || h.Exists == nil || h.Flavor == "" {
		panic("backendtest: Harness needs Flavor, New and Exists")
	}
	if h.Settle == 0 {
		h.Settle = 30 * time.Second
	}
	if h.Parallel == 0 {
		h.Parallel = 4
	}
	s := &suite{h: h, prefix: "bt-" + randHex(3)}
	t.Run("CreateListDelete", s.createListDelete)
	t.Run("CreateIsIdempotent", s.createIsIdempotent)
	t.Run("DeleteMissingIsNil", s.deleteMissing)
	t.Run("InvalidSpec", s.invalidSpec)
	if len(h.BadSettings) > 0 {
		t.Run("BadSettings", s.badSettings)
	}
	t.Run("ForeignNeverTouched", s.foreign)
	t.Run("ConcurrentCreates", s.concurrent)
}

type suite struct {
	h      Harness
	prefix string
	mu     sync.Mutex
	n      int
}

func (s *suite) spec(t *testing.T) backends.InstanceSpec {
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	name := fmt.Sprintf("%s-%d", s.prefix, n)
	return backends.InstanceSpec{
		Name:   name,
		Flavor: s.h.Flavor,
		JobID:  int64(1000 + n),
		// A harmless script: minimal images run it, cloud-init runs it as a user script.
		UserData: "#!/bin/sh\necho backendtest " + name + "\n",
		Script:   "#!/bin/sh\necho backendtest " + name + "\n",
		Env: map[string]string{
			"SPAWNER_BOOTSTRAP_URL":   "http://127.0.0.1:1/unreachable",
			"SPAWNER_BOOTSTRAP_TOKEN": "backendtest-token",
			"SPAWNER_RUNNER_NAME":     name,
		},
	}
}

// cleanup deletes name when the test ends, whatever happened.
func (s *suite) cleanup(t *testing.T, b backends.Backend, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := b.Delete(ctx, name); err != nil {
			t.Logf("cleanup: delete %s: %v", name, err)
		}
	})
}

func (s *suite) createListDelete(t *testing.T) {
	ctx := t.Context()
	b := s.h.New(t)
	spec := s.spec(t)
	s.cleanup(t, b, spec.Name)

	inst, err := b.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create(%s): %v", spec.Name, err)
	}
	if inst.Name != spec.Name || inst.Flavor != spec.Flavor || inst.JobID != spec.JobID {
		t.Errorf("Create returned %+v; want name %s flavor %s job %d", inst, spec.Name, spec.Flavor, spec.JobID)
	}
	if inst.ID == "" || inst.Backend == "" {
		t.Errorf("Create returned no ID or Backend: %+v", inst)
	}
	if !s.h.Exists(t, spec.Name) {
		t.Errorf("instance %s does not exist after Create", spec.Name)
	}
	listed := s.find(t, b, spec.Name)
	if listed == nil {
		t.Fatalf("List does not show %s", spec.Name)
	}
	if listed.ID != inst.ID || listed.Flavor != spec.Flavor || listed.JobID != spec.JobID {
		t.Errorf("List shows %+v; Create returned %+v", *listed, inst)
	}
	if listed.Protected {
		t.Errorf("a fresh instance must not be protected: %+v", *listed)
	}

	if err := b.Delete(ctx, spec.Name); err != nil {
		t.Fatalf("Delete(%s): %v", spec.Name, err)
	}
	// Gone when Delete returns, not some time later: the caller frees the instance's
	// capacity on nil, so an instance still there would exceed it.
	if s.find(t, b, spec.Name) != nil || s.h.Exists(t, spec.Name) {
		t.Errorf("instance %s still exists after Delete returned nil", spec.Name)
	}
	if err := b.Delete(ctx, spec.Name); err != nil {
		t.Errorf("second Delete(%s) = %v, want nil (already gone is success)", spec.Name, err)
	}
}

func (s *suite) createIsIdempotent(t *testing.T) {
	ctx := t.Context()
	b := s.h.New(t)
	spec := s.spec(t)
	s.cleanup(t, b, spec.Name)

	first, err := b.Create(ctx, spec)
	if err != nil {
		t.Fatalf("first Create: %v", err)
	}
	second, err := b.Create(ctx, spec)
	if err != nil {
		t.Fatalf("second Create of the same name: %v", err)
	}
	if first.ID != second.ID {
		t.Errorf("second Create made a new instance: ids %s and %s", first.ID, second.ID)
	}
	// A fresh Backend value (a restarted process) must also find it, not duplicate it.
	third, err := s.h.New(t).Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create from a new Backend value: %v", err)
	}
	if third.ID != first.ID {
		t.Errorf("Create from a new Backend value made a new instance: ids %s and %s", first.ID, third.ID)
	}
	list, err := b.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	count := 0
	for _, in := range list {
		if in.Name == spec.Name {
			count++
		}
	}
	if count != 1 {
		t.Errorf("List shows %d instances named %s, want 1", count, spec.Name)
	}
}

func (s *suite) deleteMissing(t *testing.T) {
	b := s.h.New(t)
	if err := b.Delete(t.Context(), s.prefix+"-never-created"); err != nil {
		t.Errorf("Delete of a name that never existed = %v, want nil", err)
	}
}

func (s *suite) invalidSpec(t *testing.T) {
	b := s.h.New(t)
	good := s.spec(t)
	tests := []struct {
		name string
		edit func(*backends.InstanceSpec)
	}{
		{"upper-case name", func(sp *backends.InstanceSpec) { sp.Name = "Bad-Name" }},
		{"name with underscore", func(sp *backends.InstanceSpec) { sp.Name = "bad_name" }},
		{"other flavor", func(sp *backends.InstanceSpec) { sp.Flavor = s.h.Flavor + "-other" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := good
			tt.edit(&spec)
			_, err := b.Create(t.Context(), spec)
			if !errors.Is(err, backends.ErrBadSpec) {
				t.Fatalf("Create = %v, want ErrBadSpec", err)
			}
			if spec.Name == good.Name && s.h.Exists(t, spec.Name) {
				t.Errorf("a rejected spec left instance %s", spec.Name)
			}
		})
	}
}

func (s *suite) badSettings(t *testing.T) {
	for name, newBad := range s.h.BadSettings {
		t.Run(name, func(t *testing.T) {
			b := newBad(t)
			spec := s.spec(t)
			s.cleanup(t, b, spec.Name)
			_, err := b.Create(t.Context(), spec)
			if !errors.Is(err, backends.ErrBadSpec) {
				t.Fatalf("Create = %v, want ErrBadSpec", err)
			}
			// A failed create removes what it half-made.
			deadline := time.Now().Add(s.h.Settle)
			for s.h.Exists(t, spec.Name) {
				if time.Now().After(deadline) {
					t.Fatalf("failed Create left instance %s behind", spec.Name)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

func (s *suite) foreign(t *testing.T) {
	if s.h.PlantForeign == nil {
		t.Skip("harness cannot plant a foreign instance")
	}
	ctx := t.Context()
	b := s.h.New(t)
	foreign := s.h.PlantForeign(t)
	if !s.h.Exists(t, foreign) {
		t.Fatalf("planted instance %s does not exist", foreign)
	}
	list, err := b.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, in := range list {
		if in.Name == foreign {
			t.Errorf("List shows foreign instance %s", foreign)
		}
	}
	err = b.Delete(ctx, foreign)
	if err != nil && !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("Delete(foreign) = %v, want ErrNotFound or nil", err)
	}
	// Give an asynchronous delete time to act, then check it did not.
	time.Sleep(min(s.h.Settle/10, 2*time.Second))
	if !s.h.Exists(t, foreign) {
		t.Errorf("Delete removed foreign instance %s", foreign)
	}
	// Create with the foreign name must not adopt it as ours.
	spec := s.spec(t)
	spec.Name = foreign
	if in, err := b.Create(ctx, spec); err == nil {
		t.Errorf("Create over a foreign instance's name returned %+v, want an error", in)
	}
	if !s.h.Exists(t, foreign) {
		t.Errorf("Create over the foreign name removed foreign instance %s", foreign)
	}
}

func (s *suite) concurrent(t *testing.T) {
	ctx := t.Context()
	b := s.h.New(t)
	specs := make([]backends.InstanceSpec, s.h.Parallel)
	for i := range specs {
		specs[i] = s.spec(t)
		s.cleanup(t, b, specs[i].Name)
	}
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, sp := range specs {
		wg.Go(func() { _, errs[i] = b.Create(ctx, sp) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Create(%s): %v", specs[i].Name, err)
		}
	}
	for _, sp := range specs {
		if s.find(t, b, sp.Name) == nil {
			t.Errorf("List does not show %s after concurrent creates", sp.Name)
		}
	}
	for i, sp := range specs {
		wg.Go(func() { errs[i] = b.Delete(ctx, sp.Name) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Delete(%s): %v", specs[i].Name, err)
		}
	}
	for _, sp := range specs {
		if s.find(t, b, sp.Name) != nil || s.h.Exists(t, sp.Name) {
			t.Errorf("instance %s still exists after Delete returned nil", sp.Name)
		}
	}
}

func (s *suite) find(t *testing.T, b backends.Backend, name string) *backends.Instance {
	t.Helper()
	list, err := b.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
