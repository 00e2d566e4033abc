package janitor_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
	"github.com/runner-spawner/runner-spawner/janitor"
	"github.com/runner-spawner/runner-spawner/queue"
)

// actors counts the janitors acting at each moment.
type actors struct {
	mu      sync.Mutex
	now     int
	most    int
	history []string // "+id" when one starts acting, "-id" when it stopped
}

func (a *actors) hooks(id string) janitor.TestHooks {
	return janitor.TestHooks{ActiveChanged: func(on bool) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if on {
			a.now++
			a.history = append(a.history, "+"+id)
		} else {
			a.now--
			a.history = append(a.history, "-"+id)
		}
		a.most = max(a.most, a.now)
	}}
}

func (a *actors) snapshot() (int, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.most, slices.Clone(a.history)
}

// TestFailover: any number of janitors run, one acts. A janitor stopped cleanly hands
// over at once; one that dies (its connection gone) stops acting as soon as it
// cannot renew, and another takes over once the lease expired. Two never act at once.
func TestFailover(t *testing.T) {
	s := system(t, fakegithub.Options{})
	var acts actors
	start := func(id string) (*systemtest.RunningJanitor, janitor.Options) {
		o := s.JanitorOptions(t, id)
		janitor.SetTestHooks(&o, acts.hooks(id))
		return systemtest.StartJanitor(t, o), o
	}
	holder := func() string {
		h, err := s.State.LeaseHolder(t.Context(), janitor.LeaseName)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	a, _ := start("a")
	a.WaitActive(t, 10*time.Second)
	b, bOpts := start("b")
	// While a renews, b only stands by.
	first, err := s.State.LeaseInfo(t.Context(), janitor.LeaseName)
	if err != nil {
		t.Fatal(err)
	}
	systemtest.Eventually(t, 10*time.Second, func() error {
		l, err := s.State.LeaseInfo(t.Context(), janitor.LeaseName)
		if err != nil || !l.RenewedAt.After(first.RenewedAt) {
			return fmt.Errorf("lease not renewed yet: %+v %v", l, err)
		}
		return nil
	})
	if b.Active() || holder() != "a" {
		t.Fatalf("b active=%v, holder %q: want a alone", b.Active(), holder())
	}

	// A clean stop releases the lease: b takes over within a second or two.
	stopped := time.Now()
	a.Stop(t)
	if h := holder(); h == "a" {
		t.Fatalf("a stopped cleanly but still holds the lease: it was not released")
	}
	// The handover itself is b's watch firing and one compare-and-set: a second or two
	// alone, longer on a loaded CI machine, well under the 15 s of an expiry.
	b.WaitActive(t, 10*time.Second)
	t.Logf("clean stop: b active %s after a stopped", time.Since(stopped).Round(time.Millisecond))
	if h := holder(); h != "b" {
		t.Fatalf("holder %q after the handover, want b", h)
	}
	if _, err := flush(t, s, control.FlushIdle, ""); err != nil {
		t.Fatalf("flush after the handover: %v", err)
	}

	// b dies: its connection goes, it cannot renew, and it stops acting at once; c
	// takes over only once the lease expired.
	c, _ := start("c")
	bOpts.Conn.Close()
	died := time.Now()
	systemtest.Eventually(t, 10*time.Second, func() error {
		if b.Active() {
			return fmt.Errorf("b still acts")
		}
		return nil
	})
	t.Logf("crash: b stopped acting %s after losing its connection", time.Since(died).Round(time.Millisecond))
	c.WaitActive(t, queue.LeaseTTL()+10*time.Second)
	t.Logf("crash: c active %s after b lost its connection", time.Since(died).Round(time.Millisecond))

	most, history := acts.snapshot()
	if most != 1 {
		t.Errorf("%d janitors acted at once; history %v", most, history)
	}
	if want := []string{"+a", "-a", "+b", "-b", "+c"}; !slices.Equal(history, want) {
		t.Errorf("history %v, want %v", history, want)
	}
}
