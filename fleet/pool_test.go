package fleet_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

// Three keepers (three consumer processes) racing to fill a pool of 4 in a flavor of
// 6 never make it larger than 4; a job's runner leaves the pool when it takes a
// job, which lets the keepers make another, still within max_runners.
func TestPoolClaimsKeepMinIdleAcrossConnections(t *testing.T) {
	srv := queuetest.Start(t)
	var fleets []*fleet.Fleet
	for range 3 {
		fleets = append(fleets, open(t, srv.Connect(t, queue.Options{})))
	}
	const minIdle, max = 4, 6
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			ok, err := fleets[i%3].ClaimPool(t.Context(), "small", fmt.Sprintf("pool-%d", i), minIdle, max)
			if err != nil {
				t.Errorf("claim %d: %v", i, err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	capRec, err := fleets[0].Capacity(t.Context(), "small")
	if err != nil {
		t.Fatal(err)
	}
	if won.Load() != minIdle || capRec.PoolSize() != minIdle || len(capRec.Slots) != minIdle {
		t.Fatalf("%d pool claims won, pool %d, slots %d; want %d each", won.Load(), capRec.PoolSize(), len(capRec.Slots), minIdle)
	}

	// Jobs' runners fill the flavor to max: then no pool runner may be added, even
	// when the pool is short.
	for i := range max - minIdle {
		if ok, err := fleets[0].Claim(t.Context(), "small", fmt.Sprintf("job-%d", i), int64(100+i), max); !ok || err != nil {
			t.Fatalf("job claim %d: %v %v", i, ok, err)
		}
	}
	var pooled string
	for name := range capRec.Slots {
		pooled = name
		break
	}
	// The pool runner takes a job: it leaves the pool (its slot now holds the job).
	if err := fleets[1].StartPoolCreate(t.Context(), &fleet.RunnerRecord{Name: pooled, Flavor: "small", Backend: "sim", CreatingUntil: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if spares, err := fleets[2].Spares(t.Context(), "small"); err != nil || len(spares) != 1 {
		t.Fatalf("spare index after a pool create: %v %v, want the pool runner", spares, err)
	}
	if err := fleets[1].Created(t.Context(), pooled, "i-1"); err != nil {
		t.Fatal(err)
	}
	rec, err := fleets[2].Busy(t.Context(), pooled, 777, false)
	if err != nil || rec.TookJob != 777 || rec.Spare || !rec.Pool {
		t.Fatalf("busy: %+v %v", rec, err)
	}
	capRec, err = fleets[0].Capacity(t.Context(), "small")
	if err != nil {
		t.Fatal(err)
	}
	if got := capRec.PoolSize(); got != minIdle-1 {
		t.Fatalf("pool %d after a pool runner took a job, want %d", got, minIdle-1)
	}
	if s := capRec.Slots[pooled]; s.Pool || s.Job != 777 {
		t.Fatalf("the taken runner's slot is %+v, want job 777 and not pool", s)
	}
	if ok, err := fleets[0].ClaimPool(t.Context(), "small", "pool-late", minIdle, max); ok || err != nil {
		t.Fatalf("pool claim in a full flavor: %v %v, want refused", ok, err)
	}
	if err := fleets[0].Unclaim(t.Context(), "small", "job-0"); err != nil {
		t.Fatal(err)
	}
	if ok, err := fleets[0].ClaimPool(t.Context(), "small", "pool-late", minIdle, max); !ok || err != nil {
		t.Fatalf("pool claim once a slot freed: %v %v, want it", ok, err)
	}

	// A flush's pause holds the pool back like any new runner.
	if err := fleets[0].Pause(t.Context(), "large", "flush", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := fleets[1].ClaimPool(t.Context(), "large", "pool-x", 1, 2); err == nil {
		t.Fatal("pool claim in a paused flavor succeeded")
	}
}
