package fakegithub

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Clock is the fake's time for its rate budgets (the primary window, the secondary
// limit's minute and the headers that report them). A test that paces thousands of
// calls against an hourly budget passes a compressed clock (NewScaledClock) to the fake
// and to the client, so an hour of GitHub's budget passes in seconds.
type Clock interface {
	Now() time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// ScaledClock runs Factor times faster than the wall clock from its start. Its Sleep
// waits the matching fraction of real time, so code that sleeps on it and reads it
// sees a consistent, compressed time.
type ScaledClock struct {
	start  time.Time
	Factor float64
}

// NewScaledClock starts a clock at the wall clock's now that runs factor times faster.
func NewScaledClock(factor float64) *ScaledClock {
	return &ScaledClock{start: time.Now(), Factor: factor}
}

// Now is the compressed time.
func (c *ScaledClock) Now() time.Time {
	return c.start.Add(time.Duration(float64(time.Since(c.start)) * c.Factor))
}

// Real converts a duration of this clock into wall-clock time.
func (c *ScaledClock) Real(d time.Duration) time.Duration {
	return time.Duration(float64(d) / c.Factor)
}

// SecondaryLimit simulates GitHub's secondary rate limits, as documented under
// "About secondary rate limits": at most MaxConcurrent requests in flight per
// credential, and at most PointsPerMinute points in any 60 s (a GET, HEAD or OPTIONS
// costs 1 point, any other method 5). A request over either is answered 403 with
// "You have exceeded a secondary rate limit" and Retry-After (RetryAfter, default
// 60s), the X-RateLimit-* headers showing the primary budget as it is (not 0): that
// is how a client tells the two apart. The zero value disables it.
type SecondaryLimit struct {
	PointsPerMinute int           `json:"points_per_minute,omitempty"`
	MaxConcurrent   int           `json:"max_concurrent,omitempty"`
	RetryAfter      time.Duration `json:"retry_after,omitempty"`
}

// GitHub's documented secondary limits (REST): 900 points a minute, 100 concurrent.
const (
	GitHubSecondaryPointsPerMinute = 900
	GitHubSecondaryMaxConcurrent   = 100
)

// secondary is the secondary limit's state, per credential.
type secondary struct {
	mu       sync.Mutex
	limit    SecondaryLimit
	inFlight map[string]int
	spent    map[string][]spend // credential → the last minute's requests, oldest first
}

type spend struct {
	at     time.Time
	points int
}

func points(method string) int {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return 1
	}
	return 5
}

// admit takes the request into the credential's secondary budget. ok false: the
// request is over the limit (it costs nothing then, as on GitHub an answered 403
// does not count toward the points). done must be called when the request ends.
func (s *secondary) admit(key, method string, now time.Time) (done func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.limit
	if l.PointsPerMinute <= 0 && l.MaxConcurrent <= 0 {
		return func() {}, true
	}
	if l.MaxConcurrent > 0 && s.inFlight[key] >= l.MaxConcurrent {
		return nil, false
	}
	if l.PointsPerMinute > 0 {
		window := s.spent[key]
		i := 0
		for i < len(window) && now.Sub(window[i].at) >= time.Minute {
			i++
		}
		window = window[i:]
		sum := 0
		for _, sp := range window {
			sum += sp.points
		}
		p := points(method)
		if sum+p > l.PointsPerMinute {
			s.spent[key] = window
			return nil, false
		}
		s.spent[key] = append(window, spend{at: now, points: p})
	}
	s.inFlight[key]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.inFlight[key]--
	}, true
}

// SetSecondaryLimit changes the simulated secondary limit (the zero value disables it).
func (s *Server) SetSecondaryLimit(l SecondaryLimit) {
	s.second.mu.Lock()
	defer s.second.mu.Unlock()
	s.second.limit = l
}

// writeSecondary answers as GitHub does when a secondary limit is hit.
func (s *Server) writeSecondary(w http.ResponseWriter, key string) {
	s.second.mu.Lock()
	ra := s.second.limit.RetryAfter
	s.second.mu.Unlock()
	if ra <= 0 {
		ra = time.Minute
	}
	w.Header().Set("Retry-After", strconv.FormatInt(int64((ra+time.Second-1)/time.Second), 10))
	s.setRateHeaders(w.Header(), key)
	writeError(w, http.StatusForbidden, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
		"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits")
}
