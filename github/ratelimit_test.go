package github

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
)

// burst runs n GetRunner calls at once and returns their errors.
func burst(ctx context.Context, c *Client, n int, id int64) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = c.GetRunner(ctx, id)
		})
	}
	wg.Wait()
	return errs
}

// A retry storm is impossible: 500 concurrent calls into a GitHub that keeps answering
// 429 make a handful of requests (the first wave, bounded by MaxInFlight, then one probe
// per reset), and 500 calls into a small real budget make little more than 500.
func TestBurstIntoRateLimitedFake(t *testing.T) {
	const calls = 500
	t.Run("always 429", func(t *testing.T) {
		srv := newFake(t, fakegithub.Options{Token: "pat"})
		srv.SetFault(fakegithub.Fault{Op: "actions/get-self-hosted-runner-for-org", Status: 429, RetryAfter: time.Second})
		c := newClient(t, srv, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 2500*time.Millisecond)
		defer cancel()
		for i, err := range burst(ctx, c.Client, calls, 1) {
			if !errors.Is(err, ErrRateLimited) {
				t.Fatalf("call %d: err = %v, want ErrRateLimited", i, err)
			}
		}
		n := srv.CallCount("actions/get-self-hosted-runner-for-org")
		t.Logf("%d concurrent calls into an always-429 fake (Retry-After 1s, 2.5s deadline) made %d requests (MaxInFlight %d)", calls, n, DefaultMaxInFlight)
		if bound := DefaultMaxInFlight + 4; n > bound {
			t.Errorf("%d requests, want at most %d", n, bound)
		}
		if d := c.metric(t, "spawner_github_deferred_calls_total", map[string]string{"reason": "exhausted"}); d < calls-DefaultMaxInFlight {
			t.Errorf("deferred metric = %v, want about %d", d, calls)
		}
	})
	t.Run("small real budget", func(t *testing.T) {
		srv := newFake(t, fakegithub.Options{Token: "pat", RateLimit: 200, RateLimitWindow: time.Second})
		c := newClient(t, srv, func(o *Options) { o.ReserveThreshold = 1 })
		jit, err := c.GenerateJITConfig(t.Context(), JITConfigRequest{Name: "r", Labels: []string{"a"}})
		if err != nil {
			t.Fatal(err)
		}
		srv.ResetCalls()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		for i, err := range burst(ctx, c.Client, calls, jit.RunnerID) {
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		n := srv.CallCount("actions/get-self-hosted-runner-for-org")
		limited := 0
		for _, call := range srv.Calls() {
			if call.Status == 403 {
				limited++
			}
		}
		t.Logf("%d concurrent calls into a budget of 200/s made %d requests, %d of them answered 403", calls, n, limited)
		if bound := calls + 4*(DefaultMaxInFlight+1); n > bound {
			t.Errorf("%d requests, want at most %d", n, bound)
		}
	})
}

// While GitHub says the budget is exhausted, no request is sent: every caller waits for
// the reset.
func TestExhaustedBudgetHoldsEveryCaller(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat", RateLimit: 3, RateLimitWindow: time.Second})
	c := newClient(t, srv, func(o *Options) { o.ReserveThreshold = 1 })
	for range 3 {
		if _, err := c.GetRunner(t.Context(), 1); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	info := c.RateLimit()
	if info.Remaining != 0 {
		t.Fatalf("remaining = %d, want 0", info.Remaining)
	}
	// The fake would now accept calls again: only the client's own hold keeps them back.
	srv.SetRateLimit(1000, time.Hour)
	srv.ResetCalls()
	errs := burst(t.Context(), c.Client, 20, 1)
	for _, err := range errs {
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	}
	calls := srv.Calls()
	if len(calls) == 0 {
		t.Fatal("no calls after the reset")
	}
	for _, call := range calls {
		if call.Time.Before(info.Reset) || call.Status == 403 {
			t.Errorf("request at %s (status %d) while the budget was exhausted until %s", call.Time.Format(time.StampMilli), call.Status, info.Reset.Format(time.StampMilli))
		}
	}
}

func TestRetryAfterIsWaitedFor(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat"})
	c := newClient(t, srv, nil)
	jit, err := c.GenerateJITConfig(t.Context(), JITConfigRequest{Name: "r", Labels: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetFault(fakegithub.Fault{Op: "actions/get-self-hosted-runner-for-org", Status: 429, RetryAfter: time.Second, Count: 1})
	start := time.Now()
	if _, err := c.GetRunner(t.Context(), jit.RunnerID); err != nil {
		t.Fatalf("GetRunner after a 429 = %v, want success once Retry-After passed", err)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("retried after %s, before Retry-After (1s)", took)
	}
	if n := srv.CallCount("actions/get-self-hosted-runner-for-org"); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

// Below the reserve, optional calls wait for the reset and essential ones go ahead.
func TestReserveGuard(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat", RateLimit: 20, RateLimitWindow: 2 * time.Second})
	c := newClient(t, srv, func(o *Options) { o.ReserveThreshold = 15 })
	jit, err := c.GenerateJITConfig(t.Context(), JITConfigRequest{Name: "r", Labels: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	for c.RateLimit().Remaining >= 15 {
		if _, err := c.GetRunner(t.Context(), jit.RunnerID); err != nil {
			t.Fatal(err)
		}
	}
	reset := c.RateLimit().Reset
	getOp := "actions/get-self-hosted-runner-for-org"
	before := srv.CallCount(getOp)

	// An optional call whose deadline comes before the reset fails at once, unsent.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.GetRunner(ctx, jit.RunnerID)
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.StatusCode != 0 || time.Since(start) > 200*time.Millisecond {
		t.Fatalf("optional call under the reserve: %v after %s, want an immediate *RateLimitError", err, time.Since(start))
	}
	if n := srv.CallCount(getOp); n != before {
		t.Errorf("optional call was sent (%d requests)", n-before)
	}
	if d := c.metric(t, "spawner_github_deferred_calls_total", map[string]string{"operation": "get_runner", "reason": "reserve"}); d != 1 {
		t.Errorf("deferred metric = %v, want 1", d)
	}

	// An essential call goes ahead.
	if err := c.DeleteRunner(t.Context(), jit.RunnerID); err != nil {
		t.Fatalf("essential call under the reserve: %v", err)
	}
	if !time.Now().Before(reset) {
		t.Fatal("the window reset before the essential call; the test is too slow to tell")
	}

	// An optional call with time to spare waits for the reset, then goes.
	if _, err := c.ListRunners(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	for _, call := range srv.Calls() {
		if call.Op == "actions/list-self-hosted-runners-for-org" && call.Time.Before(reset.Add(-time.Second)) {
			t.Errorf("optional call sent at %s, before the reset %s", call.Time.Format(time.StampMilli), reset.Format(time.StampMilli))
		}
	}
}

// RatePerHour is a ceiling, not a smoothed rate: the hour's calls go at once, the
// next waits until the oldest is an hour old, and optional calls leave the last tenth
// to essential ones.
func TestCeiling(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat"})
	clk := fakegithub.NewScaledClock(3600) // an hour passes in a second
	c := newClockedClient(t, srv, clk, func(o *Options) { o.RatePerHour = 20 })
	start := clk.Now()
	for i := range 18 {
		if _, err := c.ListRunners(t.Context(), ""); err != nil {
			t.Fatalf("call %d within the ceiling: %v", i, err)
		}
	}
	if took := clk.Now().Sub(start); took > 30*time.Minute {
		t.Errorf("18 calls under a ceiling of 20/h took %s: paced, not spent freely", took)
	}
	// The last tenth is for essential calls: an optional one would wait an hour.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	var rl *RateLimitError
	if _, err := c.ListRunners(ctx, ""); !errors.As(err, &rl) || rl.StatusCode != 0 {
		t.Fatalf("optional call past the ceiling's reserve = %v, want an unsent *RateLimitError", err)
	}
	for range 2 {
		if err := c.DeleteRunner(t.Context(), 1); err != nil {
			t.Fatalf("essential call within the ceiling: %v", err)
		}
	}
	if n := srv.CallCount(""); n != 20 {
		t.Errorf("%d requests, want 20", n)
	}
}

func TestMaxInFlight(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat"})
	srv.SetFault(fakegithub.Fault{Op: "actions/get-self-hosted-runner-for-org", Latency: 50 * time.Millisecond})
	c := newClient(t, srv, func(o *Options) { o.MaxInFlight = 3 })
	burst(t.Context(), c.Client, 20, 1)
	if p := c.tr.peak.Load(); p != 3 {
		t.Errorf("peak in flight = %d, want 3", p)
	}
}

// Essential calls get the next free request slot before optional ones that queued first.
func TestEssentialCallsGoFirst(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat"})
	c := newClient(t, srv, func(o *Options) { o.MaxInFlight = 1 })
	// The test holds the only slot itself while the calls queue, so that the order
	// they queue in does not depend on how fast a loaded machine answers the first.
	if err := c.sem.acquire(t.Context(), essential); err != nil {
		t.Fatal(err)
	}
	waiting := func(p priority, n int) func() bool {
		return func() bool {
			c.sem.mu.Lock()
			defer c.sem.mu.Unlock()
			return len(c.sem.waiters[p]) == n
		}
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _, _ = c.ListRunners(t.Context(), "") })
	}
	eventually(t, 30*time.Second, "optional calls queued", waiting(optional, 4))
	wg.Go(func() { _ = c.DeleteRunner(t.Context(), 1) })
	eventually(t, 30*time.Second, "the essential call queued", waiting(essential, 1))
	c.sem.release()
	wg.Wait()
	calls := srv.Calls()
	if len(calls) != 5 || calls[0].Op != "actions/delete-self-hosted-runner-from-org" {
		var ops []string
		for _, c := range calls {
			ops = append(ops, c.Op)
		}
		t.Errorf("order %v, want the delete first", ops)
	}
}
