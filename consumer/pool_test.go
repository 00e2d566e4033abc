package consumer_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/poolschedule"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
)

// poolReady waits until the flavor's pool holds want runners, all idle and online on
// GitHub, and no other instance or capacity slot exists.
func poolReady(t *testing.T, s *systemtest.System, flavor string, want int) {
	t.Helper()
	systemtest.Eventually(t, 20*time.Second, func() error {
		capRec, err := s.Fleet.Capacity(t.Context(), flavor)
		if err != nil {
			return err
		}
		if n := capRec.PoolSize(); n != want {
			return fmt.Errorf("pool holds %d, want %d", n, want)
		}
		online := map[string]bool{}
		for _, r := range s.GH.Runners() {
			online[r.Name] = r.Status == "online" && !r.Busy
		}
		idle := 0
		for name, slot := range capRec.Slots {
			if slot.Pool && online[name] {
				idle++
			}
		}
		if idle != want {
			var states []string
			for name := range capRec.Slots {
				r, err := s.Fleet.Runner(t.Context(), name)
				if err != nil {
					states = append(states, name+": "+err.Error())
					continue
				}
				states = append(states, fmt.Sprintf("%s: %s pool=%v spare=%v for=%d took=%d", name, r.State, r.Pool, r.Spare, r.ForJob, r.TookJob))
			}
			return fmt.Errorf("%d of the pool's runners idle and online on GitHub, want %d; slots: %s", idle, want, strings.Join(states, "; "))
		}
		if n := len(s.Cloud.All()); n != want {
			return fmt.Errorf("%d instances, want the %d of the pool", n, want)
		}
		// A finished runner's slot is released a moment after its instance is
		// deleted: wait for that too, so that "only the pool is left" holds.
		if n := len(capRec.Slots); n != want {
			return fmt.Errorf("%d slots taken, want the %d of the pool", n, want)
		}
		return nil
	})
}

// TestWarmPool: a flavor with min_idle 3 of max 5 starts 3 runners before any job;
// jobs are served by them (runners started before the job was queued, no create
// on the job's path), the pool is refilled as they are taken, a burst larger than
// max_runners still runs every job within max_runners, and afterwards exactly the
// pool is left.
func TestWarmPool(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 5, MinIdle: 3, BootTime: 100 * time.Millisecond}},
		GitHub:  fakegithub.Options{JobDuration: 300 * time.Millisecond},
	})
	// The janitor reaps spares after idle_ttl (1 s here) and must keep the pool's
	// runners however long they idle.
	systemtest.StartJanitor(t, s.JanitorOptions(t, "janitor-1"))
	poolReady(t, s, "small", 3)
	time.Sleep(2 * time.Second) // past idle_ttl: the janitor must leave the pool alone
	poolReady(t, s, "small", 3)
	if n := s.Cloud.Stats().Created; n != 3 {
		t.Fatalf("%d instances created before any job, want the pool's 3", n)
	}

	var first []fakegithub.Job
	for range 2 {
		first = append(first, s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}}))
	}
	s.AllJobsDone(t, 20*time.Second)
	for _, j := range first {
		got, _ := s.GH.Job(j.ID)
		r, err := s.Fleet.Runner(t.Context(), got.RunnerName)
		if err != nil {
			t.Fatalf("job %d's runner %q: %v", j.ID, got.RunnerName, err)
		}
		if got.Conclusion != "success" || !r.Pool || !r.CreatedAt.Before(got.CreatedAt) {
			t.Errorf("job %d: %s on %q (pool %v, created %s, job queued %s); want a pool runner started before the job",
				j.ID, got.Conclusion, got.RunnerName, r.Pool, r.CreatedAt, got.CreatedAt)
		}
	}
	poolReady(t, s, "small", 3)

	// A burst of 12 in a flavor of 5: every job runs, the flavor never holds more
	// than 5 instances, and the pool is whole again afterwards.
	stop := make(chan struct{})
	peak := make(chan int, 1)
	go func() {
		most := 0
		for {
			select {
			case <-stop:
				peak <- most
				return
			case <-time.After(5 * time.Millisecond):
				most = max(most, len(s.Cloud.All()))
			}
		}
	}()
	for range 12 {
		s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"small"}})
	}
	s.AllJobsDone(t, 60*time.Second)
	poolReady(t, s, "small", 3)
	close(stop)
	if p := <-peak; p > 5 {
		t.Errorf("%d instances at once in a flavor of max_runners 5", p)
	}
	for _, j := range s.GH.Jobs() {
		if j.Conclusion != "success" {
			t.Errorf("job %d: %s on %q", j.ID, j.Conclusion, j.RunnerName)
		}
	}
	capRec, err := s.Fleet.Capacity(t.Context(), "small")
	if err != nil {
		t.Fatal(err)
	}
	for name, slot := range capRec.Slots {
		r, err := s.Fleet.Runner(t.Context(), name)
		if err != nil || !r.Pool || !slot.Pool || r.TookJob != 0 || r.State == fleet.RunnerBusy {
			t.Errorf("slot %s (%+v) after the burst: runner %+v %v; want only untaken pool runners", name, slot, r, err)
		}
	}
}

// TestPoolMadeSmallerIsReapedToMinIdle: when min_idle is lowered (here the janitor
// is told 1 while the pool holds 3, and no keeper refills it), the janitor reaps the
// idle pool runners beyond the new size after idle_ttl, and keeps the rest.
func TestPoolMadeSmallerIsReapedToMinIdle(t *testing.T) {
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 5, MinIdle: 3, BootTime: 100 * time.Millisecond}},
	})
	poolReady(t, s, "small", 3)
	s.Stop(t)
	opts := s.JanitorOptions(t, "janitor-1")
	opts.Flavors[0].MinIdle = poolschedule.Constant(1)
	systemtest.StartJanitor(t, opts)
	systemtest.Eventually(t, 20*time.Second, func() error {
		if n := len(s.Cloud.All()); n != 1 {
			return fmt.Errorf("%d instances, want the 1 the smaller pool keeps", n)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // two idle_ttl more: the last one stays
	if n := len(s.Cloud.All()); n != 1 {
		t.Fatalf("%d instances after more idle time, want 1", n)
	}
}

// windowsNow are two min_idle_schedule windows, in YAML, that are open and closed now
// for the length of a test: one started within the last minute (every minute, for an
// hour), one that opens twelve hours from now.
func windowsNow(openMinIdle, closedMinIdle int) (yaml string, open, closed poolschedule.Window) {
	open = poolschedule.Window{Start: "* * * * *", Duration: time.Hour, MinIdle: openMinIdle}
	closed = poolschedule.Window{Start: fmt.Sprintf("0 %d * * *", (time.Now().UTC().Hour()+12)%24), Duration: time.Hour, MinIdle: closedMinIdle}
	yaml = fmt.Sprintf("[{start: %q, duration: %s, min_idle: %d}, {start: %q, duration: %s, min_idle: %d}]",
		open.Start, open.Duration, open.MinIdle, closed.Start, closed.Duration, closed.MinIdle)
	return yaml, open, closed
}

// TestPoolScheduleWindows: the pool holds the min_idle of the min_idle_schedule
// window open now (3), not the flavor's min_idle (1) nor a closed window's (5); the
// janitor, told the first window's min_idle is 2, reaps the pool down to it after
// idle_ttl, not to the base min_idle nor to the largest of the schedule.
func TestPoolScheduleWindows(t *testing.T) {
	schedule, open, closed := windowsNow(3, 5)
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 5, MinIdle: 1, MinIdleSchedule: schedule, BootTime: 100 * time.Millisecond}},
	})
	poolReady(t, s, "small", 3)
	time.Sleep(2 * time.Second) // the keeper looks again: the pool stays at 3
	poolReady(t, s, "small", 3)
	s.Stop(t)

	opts := s.JanitorOptions(t, "janitor-1")
	open.MinIdle = 2
	pool, err := poolschedule.New(1, []poolschedule.Window{open, closed})
	if err != nil {
		t.Fatal(err)
	}
	opts.Flavors[0].MinIdle = pool
	systemtest.StartJanitor(t, opts)
	systemtest.Eventually(t, 20*time.Second, func() error {
		if n := len(s.Cloud.All()); n != 2 {
			return fmt.Errorf("%d instances, want the 2 of the open window", n)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // two idle_ttl more: the window's 2 stay
	if n := len(s.Cloud.All()); n != 2 {
		t.Fatalf("%d instances after more idle time, want 2", n)
	}
}
