package janitor_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/runner-spawner/runner-spawner/backends/sim"
	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
	"github.com/runner-spawner/runner-spawner/janitor"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
)

// TestRunStopsEverything: once Run returned, nothing the janitor started runs on:
// reconcile, control subscription, sweeper, poller, lease watch.
func TestRunStopsEverything(t *testing.T) {
	conn := queuetest.Start(t).Connect(t, queue.Options{})
	st, err := conn.State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fl, err := fleet.Open(t.Context(), conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	gh := fakegithub.NewServer(fakegithub.Options{})
	t.Cleanup(gh.Close)
	client, err := github.New(github.Options{BaseURL: gh.URL(), Path: "octo-org", Token: secret.New("x"), RatePerHour: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	cloud := sim.NewCloud(sim.CloudOptions{})
	t.Cleanup(cloud.Close)
	opts := janitor.Options{
		Conn: conn, State: st, Fleet: fl, GitHub: client, DeploymentID: "spawner", ID: "leak",
		Flavors:  []janitor.Flavor{{Name: "small", Backend: cloud.Backend(sim.BackendOptions{DeploymentID: "spawner", Flavor: "small"})}},
		Interval: 50 * time.Millisecond, Hook: &github.HookRef{Kind: github.HookOrg, HookID: 1}, SweepInterval: 50 * time.Millisecond,
		PollRepos: []string{"octo-org/octo-repo"}, PollInterval: 50 * time.Millisecond,
		Route: func([]string) (string, bool) { return "small", true },
	}
	before := goleak.IgnoreCurrent()
	j, err := janitor.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	systemtest.Eventually(t, 10*time.Second, func() error {
		var last control.PassSummary
		if err := st.Meta(t.Context(), queue.MetaLastReconcile, &last); err != nil {
			return err
		}
		if gh.CallCount("orgs/list-webhook-deliveries") < 2 || gh.CallCount("actions/list-workflow-runs-for-repo") < 2 {
			return fmt.Errorf("sweeper and poller have not run twice yet")
		}
		return nil
	})
	if _, err := control.Flush(t.Context(), conn, control.FlushRequest{Mode: "FLUSH_IDLE"}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if j.Active() {
		t.Error("still active after Run returned")
	}
	if h, _ := st.LeaseHolder(t.Context(), janitor.LeaseName); h != "" {
		t.Errorf("lease still held by %q after a clean stop", h)
	}
	// HTTP keep-alive connections (client and server side) belong to the transport
	// and the fake, and the fake starts its webhook workers lazily: none is the
	// janitor's.
	ignore := []goleak.Option{before,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*conn).serve"),
		goleak.IgnoreAnyFunction("github.com/runner-spawner/runner-spawner/dev/fakegithub.(*Server).dispatchDeliveries.func1"),
	}
	// The in-process NATS server ends a consumer's goroutines after the janitor's
	// last record scans stopped their watches, asynchronously: CI's loaded machine
	// once still had two when goleak's own retries (about a second) ran out. Such
	// goroutines go within moments; a watch the janitor never stopped keeps its
	// consumer, and its goroutines, for good.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := goleak.Find(ignore...)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines still running 20 s after Run returned: %v", err)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}
