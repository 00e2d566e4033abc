package openstack

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"

	"golang.org/x/time/rate"
)

// limiter is the budget of one cloud toward Nova: at most n requests in flight and a
// steady rate, whichever binds first. A burst of queued jobs then queues here, inside
// the spawner, instead of tripping the cloud's own API rate limit (which answers 429
// or, on some clouds, 403 for everybody in the project).
type limiter struct {
	slots chan struct{}
	rate  *rate.Limiter
}

func newLimiter(concurrent int, perSecond float64) *limiter {
	burst := max(1, min(concurrent, int(math.Ceil(perSecond))))
	return &limiter{
		slots: make(chan struct{}, concurrent),
		rate:  rate.NewLimiter(rate.Limit(perSecond), burst),
	}
}

// acquire waits for a slot and a rate token; release gives the slot back.
func (l *limiter) acquire(ctx context.Context) (release func(), err error) {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := l.rate.Wait(ctx); err != nil {
		<-l.slots
		return nil, err
	}
	return func() { <-l.slots }, nil
}

// limitedTransport applies a limiter to the requests whose URL starts with prefix
// (the compute endpoint). Limiting at the transport counts every request, including
// each page of a list and the retry after a token renewal.
type limitedTransport struct {
	base   http.RoundTripper
	limits *limiter
	// prefix is set once, after login and before the Cloud is shared.
	prefix string
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.prefix == "" || !strings.HasPrefix(req.URL.String(), t.prefix) {
		return t.base.RoundTrip(req)
	}
	release, err := t.limits.acquire(req.Context())
	if err != nil {
		return nil, fmt.Errorf("wait for a compute request slot: %w", err)
	}
	// Nova has done its work once it answers; holding the slot while the caller reads
	// the body would only make the budget depend on how the body is consumed.
	defer release()
	return t.base.RoundTrip(req)
}
