package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/queue"
	"github.com/runner-spawner/runner-spawner/queue/queuetest"
	"github.com/runner-spawner/runner-spawner/webhook"
)

// The ingest benchmarks post signed workflow_job payloads of the fixtures' size to the
// receiver over real HTTP, with a file-backed JetStream, and publish the same payloads
// straight to JetStream at the same concurrency, so the two figures come from one run
// on one machine. Reproduce with:
//
//	go test -run '^$' -bench 'Ingest' -benchtime 3s ./webhook/
//
// Each reports req/s and p50/p99 latency in ms.

type benchEnv struct {
	conn    *queue.Conn
	js      jetstream.JetStream // a plain client, for the raw JetStream figure
	srv     *httptest.Server
	body    []byte
	sig     string
	payload []byte
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	ns := queuetest.Start(b)
	conn := ns.Connect(b, queue.Options{Streams: queue.StreamOptions{MaxBytes: 8 << 30}})
	h, err := webhook.New(webhook.Options{
		Secrets:   []secret.Value{secret.New(testSecret)},
		Router:    webhook.NewRouter([]webhook.FlavorLabels{{Name: "ubuntu", Labels: []string{"ubuntu-latest"}}}, "", []string{"self-hosted"}, webhook.MatchSubset),
		Publisher: conn,
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	body, err := os.ReadFile(filepath.Join("..", "testdata", "webhooks", "workflow_job", "queued.payload.json"))
	if err != nil {
		b.Fatal(err)
	}
	// A raw stream beside ours, same settings, for the JetStream-only figure.
	js := ns.JetStream(b)
	_, err = js.CreateOrUpdateStream(b.Context(), jetstream.StreamConfig{
		Name: "BENCH_RAW", Subjects: []string{"bench.raw"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Discard: jetstream.DiscardNew, MaxBytes: 8 << 30, Duplicates: 10 * time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	return &benchEnv{conn: conn, js: js, srv: srv, body: body, sig: webhook.Sign(body, testSecret)}
}

func (e *benchEnv) purge(b *testing.B) {
	for _, name := range []string{queue.StreamJobs, "BENCH_RAW"} {
		st, err := e.js.Stream(context.Background(), name)
		if err == nil {
			_ = st.Purge(context.Background())
		}
	}
}

// runConcurrent runs n operations on c workers and reports throughput and latency.
func runConcurrent(b *testing.B, c int, op func(i int64) error) {
	b.Helper()
	var next atomic.Int64
	lat := make([][]time.Duration, c)
	var wg sync.WaitGroup
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for w := range c {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					failed.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d operations failed", f, b.N)
	}
	reportLatency(b, slices.Concat(lat...), float64(b.N)/elapsed.Seconds())
}

func reportLatency(b *testing.B, all []time.Duration, rate float64) {
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))]) / 1e6
	}
	b.ReportMetric(rate, "req/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}

func (e *benchEnv) post(client *http.Client, i int64) error {
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL, bytes.NewReader(e.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "workflow_job")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i))
	req.Header.Set("X-Hub-Signature-256", e.sig)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	// Read the body to the end so the connection is reused (as GitHub's is not, but
	// a load balancer's is).
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func (e *benchEnv) rawPublish(i int64) error {
	_, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: "bench.raw", Data: e.body},
		jetstream.WithMsgID(fmt.Sprintf("raw-%d-%d", time.Now().UnixNano(), i)))
	return err
}

func BenchmarkIngest(b *testing.B) {
	env := newBenchEnv(b)
	for _, c := range []int{1, 8, 32, 64} {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}}
		b.Run(fmt.Sprintf("webhook/c=%d", c), func(b *testing.B) {
			runConcurrent(b, c, func(i int64) error { return env.post(client, i) })
			env.purge(b)
		})
		b.Run(fmt.Sprintf("raw-jetstream/c=%d", c), func(b *testing.B) {
			runConcurrent(b, c, env.rawPublish)
			env.purge(b)
		})
	}
}

// BenchmarkIngestRate1000 offers a steady 1,000 requests/s (an open loop: requests
// are sent on schedule whether or not earlier ones finished) and reports the latency
// distribution; b.N is the number of requests.
func BenchmarkIngestRate1000(b *testing.B) {
	env := newBenchEnv(b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	const rate = 1000
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	lat := make([]time.Duration, b.N)
	var failed atomic.Int64
	for i := range b.N {
		due := start.Add(time.Duration(i) * time.Second / rate)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		wg.Go(func() {
			t0 := time.Now()
			if err := env.post(client, int64(i)); err != nil {
				failed.Add(1)
			}
			// Latency counts from the scheduled send time, so a stalled sender shows.
			lat[i] = time.Since(earliest(t0, due))
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d requests failed", f)
	}
	reportLatency(b, lat, float64(b.N)/elapsed.Seconds())
	env.purge(b)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// BenchmarkServeHTTP is the receiver's own cost per delivery, in process and without
// JetStream (a publisher that stores nothing): the middleware chain, the parse and
// the route of a signed queued fixture. The Ingest figures above are dominated by
// HTTP and JetStream; this one shows what the receiver itself adds.
func BenchmarkServeHTTP(b *testing.B) {
	h, err := webhook.New(webhook.Options{
		Secrets:   []secret.Value{secret.New(testSecret)},
		Router:    webhook.NewRouter([]webhook.FlavorLabels{{Name: "ubuntu", Labels: []string{"ubuntu-latest"}}}, "", []string{"self-hosted"}, webhook.MatchSubset),
		Publisher: nopPublisher{},
	})
	if err != nil {
		b.Fatal(err)
	}
	body, err := os.ReadFile(filepath.Join("..", "testdata", "webhooks", "workflow_job", "queued.payload.json"))
	if err != nil {
		b.Fatal(err)
	}
	sig := webhook.Sign(body, testSecret)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "workflow_job")
		req.Header.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
		req.Header.Set("X-Hub-Signature-256", sig)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
