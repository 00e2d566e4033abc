package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
)

// blackHoleCloud is a simulated cloud (sim.url) that never answers: a create or
// delete sent to it waits until the caller gives up, as a cloud API that hangs does.
// started receives one value per request.
func blackHoleCloud(t *testing.T) (url string, started chan string) {
	started = make(chan string, 100)
	quit := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case started <- r.Method + " " + r.URL.Path:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-quit:
		}
	}))
	t.Cleanup(func() { close(quit); srv.Close() })
	return srv.URL, started
}

// hangingConsumer starts serve --roles webhook (the embedded NATS), a janitor and a
// consumer whose flavor's cloud never answers, and sends one job: the consumer is
// then stuck in a create when the test stops things.
func hangingConsumer(t *testing.T, shutdownTimeout string) (serve, janitor, cons *proc) {
	t.Helper()
	w := newE2EWorld(t, fakegithub.Options{JobDuration: 100 * time.Millisecond})
	var started chan string
	w.cloudURL, started = blackHoleCloud(t)
	dir := t.TempDir()
	cfg, webhookURL, _ := w.config(t, dir, []e2eFlavor{{"small", "small", 4}}, "shutdown_timeout: "+shutdownTimeout+"\n")
	serve = startProc(t, nil, "serve", "--config", cfg, "--roles", "webhook", "--bootstrap-listen", "off")
	waitReady(t, strings.TrimSuffix(webhookURL, "/webhook"), 30*time.Second)
	janitor = startProc(t, nil, "janitor", "--config", cfg)
	cons = startProc(t, nil, "consumer", "--config", cfg)
	w.gh.SetWebhookTarget(webhookURL, e2eSecret)
	w.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux", "small"}})
	for {
		select {
		case req := <-started:
			if strings.HasPrefix(req, "POST") {
				return serve, janitor, cons
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("the consumer never called the cloud; its log:\n%s", tail(cons.out.String(), 30))
		}
	}
}

// sigterm sends SIGTERM and returns how long the process took to exit, failing the
// test when it took longer than bound.
func sigterm(t *testing.T, p *proc, role string, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(bound + 30*time.Second):
		p.kill()
	}
	took := time.Since(start)
	if took > bound {
		t.Errorf("%s exited %s after SIGTERM, want within %s", role, took.Round(time.Millisecond), bound)
	}
	return took
}

// TestStopIsBoundedWithNATSGone: with NATS stopped and a create hanging in the cloud,
// every role exits within shutdown_timeout after SIGTERM, and the consumer logs what
// it leaves for the janitor once, with a count. Before issue 17 the consumer waited
// for the create's 5-minute timeout and more.
func TestStopIsBoundedWithNATSGone(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	const timeout = 4 * time.Second
	serve, janitor, cons := hangingConsumer(t, "4s")
	slack := 1500 * time.Millisecond
	took := map[string]time.Duration{}
	took["serve --roles webhook (NATS)"] = sigterm(t, serve, "serve --roles webhook", timeout+slack)
	took["janitor"] = sigterm(t, janitor, "janitor", timeout+slack)
	took["consumer"] = sigterm(t, cons, "consumer", timeout+slack)
	out := cons.out.String()
	if n := strings.Count(out, "left for the janitor"); n != 1 {
		t.Errorf("the consumer logged what it left %d times, want once:\n%s", n, tail(out, 20))
	} else if !strings.Contains(out, "events_in_flight=1") {
		t.Errorf("the consumer did not count the create it left:\n%s", tail(out, 20))
	}
	t.Logf("exit after SIGTERM with NATS gone (shutdown_timeout %s): %v", timeout, took)
}

// TestSecondSignalExitsAtOnce: a process stopping slowly (a create hanging, NATS gone,
// a long shutdown_timeout) exits at once on a second signal, non-zero, and says so.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	serve, _, cons := hangingConsumer(t, "2m")
	serve.kill()
	_ = cons.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(time.Second)
	select {
	case <-cons.done:
		t.Fatalf("the consumer exited on the first signal already; the test needs it stuck:\n%s", tail(cons.out.String(), 20))
	default:
	}
	took := sigterm(t, cons, "consumer (second signal)", 2*time.Second)
	var ee *exec.ExitError
	if !errors.As(cons.err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Errorf("exit after a second SIGTERM: %v, want code %d", cons.err, 128+int(syscall.SIGTERM))
	}
	if !strings.Contains(cons.out.String(), "second signal") {
		t.Errorf("no log line for the second signal:\n%s", tail(cons.out.String(), 10))
	}
	t.Logf("exited %s after the second SIGTERM", took.Round(time.Millisecond))
}

// TestConsumerWithoutItsOwnBootstrapListener is issue 17's first problem: a second
// consumer on a host, started with --bootstrap-listen off and a config whose
// bootstrap.listen names the endpoint (no bootstrap.url), must start and tell its
// instances that endpoint, served by another consumer.
func TestConsumerWithoutItsOwnBootstrapListener(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	w := newE2EWorld(t, fakegithub.Options{JobDuration: 100 * time.Millisecond})
	dir := t.TempDir()
	cfg, webhookURL, boot := w.config(t, dir, []e2eFlavor{{"small", "small", 6}}, "")
	// Only bootstrap.listen: the URL is derived from it.
	writeFile(t, dir, "spawner.yaml", strings.Replace(readFile(t, cfg), fmt.Sprintf(`, url: "http://%s"`, boot), "", 1))
	startProc(t, nil, "serve", "--config", cfg, "--roles", "webhook,janitor")
	waitReady(t, strings.TrimSuffix(webhookURL, "/webhook"), 30*time.Second)
	startProc(t, nil, "consumer", "--config", cfg)
	off := startProc(t, nil, "consumer", "--config", cfg, "--bootstrap-listen", "off")
	eventually(t, 30*time.Second, func() error {
		select {
		case <-off.done:
			return fmt.Errorf("the consumer without a listener exited: %v\n%s", off.err, tail(off.out.String(), 10))
		default:
		}
		if !strings.Contains(off.out.String(), "consumer running") {
			return fmt.Errorf("the consumer without a listener is not running yet")
		}
		return nil
	})
	w.gh.SetWebhookTarget(webhookURL, e2eSecret)
	for range 12 {
		w.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux", "small"}})
	}
	w.waitAllCompleted(t, cfg, 60*time.Second)
	if !strings.Contains(off.out.String(), "runner created") {
		t.Errorf("the consumer without a listener created no runner:\n%s", tail(off.out.String(), 20))
	}
}
