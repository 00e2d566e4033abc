package github

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/internal/secret"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newFake(t *testing.T, opts fakegithub.Options) *fakegithub.Server {
	t.Helper()
	srv := fakegithub.NewServer(opts)
	t.Cleanup(srv.Close)
	return srv
}

// countingTransport counts requests and the most in flight at once.
type countingTransport struct {
	next           http.RoundTripper
	inFlight, peak atomic.Int64
	requests       atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.requests.Add(1)
	n := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return c.next.RoundTrip(r)
}

type testClient struct {
	*Client
	reg *prometheus.Registry
	tr  *countingTransport
}

// newClient returns a client of the fake for org octo-org with a PAT; mod adjusts options.
func newClient(t *testing.T, srv *fakegithub.Server, mod func(*Options)) testClient {
	t.Helper()
	return newClockedClient(t, srv, wallClock{}, mod)
}

// newClockedClient is newClient pacing on clk.
func newClockedClient(t *testing.T, srv *fakegithub.Server, clk clock, mod func(*Options)) testClient {
	t.Helper()
	base := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	tr := &countingTransport{next: base}
	reg := prometheus.NewRegistry()
	opts := Options{
		BaseURL:    srv.URL(),
		Path:       "octo-org",
		Token:      secret.New("pat"),
		HTTPClient: &http.Client{Transport: tr},
		Registerer: reg,
		// The secondary limit's pacing is tested on its own.
		SecondaryPointsPerMinute: SecondaryPacingOff,
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := newWithClock(opts, clk)
	if err != nil {
		t.Fatal(err)
	}
	c.retryBase = 20 * time.Millisecond
	return testClient{Client: c, reg: reg, tr: tr}
}

// metric returns the value of a counter or gauge with the given labels (0 if absent).
func (tc testClient) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := tc.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

func eventually(t *testing.T, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
