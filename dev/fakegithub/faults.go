package fakegithub

import (
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"time"
)

// Fault disturbs REST calls that match it: added latency, then (if Status is set) an
// error answer instead of the real one. Faults match in the order they were set; the
// first match applies.
type Fault struct {
	// Op is an operation id or a glob over them ("actions/*"); "" matches any.
	// Operation ids are GitHub's (see the package doc), e.g.
	// "actions/generate-runner-jitconfig-for-org", "apps/create-installation-access-token".
	Op string `json:"op,omitempty"`
	// Path is a glob over the URL path (path.Match: "*" stops at "/"); "" matches any.
	Path string `json:"path,omitempty"`
	// Method, e.g. "GET"; "" matches any.
	Method string `json:"method,omitempty"`

	// Latency is added before answering (a call that outlives it is cut by the
	// client's own timeout: that is how a hanging endpoint is simulated).
	Latency time.Duration `json:"latency,omitempty"`
	// Status answers with this code instead of the real answer (0: none).
	// 403 and 429 answer as GitHub's rate limiting does: X-RateLimit-Remaining: 0,
	// X-RateLimit-Reset and, when RetryAfter is set, Retry-After. 401 answers "Bad
	// credentials" (an expired token), 404, 422 and 5xx answer basic-error bodies.
	Status int `json:"status,omitempty"`
	// RetryAfter with 403/429: the Retry-After header and the reset (default: reset in 60s,
	// no Retry-After).
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	// Plain makes a 403 a plain "forbidden" (no rate-limit headers).
	Plain bool `json:"plain,omitempty"`
	// Message overrides the error body's message.
	Message string `json:"message,omitempty"`

	// Count limits the fault to the next Count matching calls (0: until cleared).
	Count int `json:"count,omitempty"`
	// Rate applies the fault to this fraction of matching calls (0: all), drawn from a
	// generator seeded by Options.Webhooks.Faults.Seed.
	Rate float64 `json:"rate,omitempty"`
}

type faultEntry struct {
	id int
	Fault
	left int
}

// FaultInfo is a set fault with its id and remaining count.
type FaultInfo struct {
	ID int `json:"id"`
	Fault
	Left int `json:"left"` // remaining matches when Count was set
}

// SetFault adds a fault and returns its id (for ClearFault).
func (s *Server) SetFault(f Fault) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultSeq++
	id := s.faultSeq
	s.faults = append(s.faults, &faultEntry{id: id, Fault: f, left: f.Count})
	return id
}

// ClearFault removes one fault.
func (s *Server) ClearFault(id int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = slices.DeleteFunc(s.faults, func(f *faultEntry) bool { return f.id == id })
}

// ClearFaults removes all faults.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Faults lists the set faults.
func (s *Server) Faults() []FaultInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FaultInfo, 0, len(s.faults))
	for _, f := range s.faults {
		out = append(out, FaultInfo{ID: f.id, Fault: f.Fault, Left: f.left})
	}
	return out
}

func (s *Server) matchFault(op string, r *http.Request) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Method != "" && f.Method != r.Method {
			continue
		}
		if f.Op != "" {
			if ok, _ := path.Match(f.Op, op); !ok {
				continue
			}
		}
		if f.Path != "" {
			if ok, _ := path.Match(f.Path, r.URL.Path); !ok {
				continue
			}
		}
		if f.Rate > 0 && s.faultRand.Float64() >= f.Rate {
			continue
		}
		if f.Count > 0 {
			f.left--
			if f.left <= 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		return f.Fault, true
	}
	return Fault{}, false
}

func (s *Server) writeFault(w http.ResponseWriter, f Fault) {
	msg := f.Message
	switch {
	case (f.Status == http.StatusForbidden && !f.Plain) || f.Status == http.StatusTooManyRequests:
		reset := 60 * time.Second
		if f.RetryAfter > 0 {
			reset = f.RetryAfter
			secs := int64((f.RetryAfter + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		}
		s.rateMu.Lock()
		limit := s.rateLimit
		s.rateMu.Unlock()
		w.Header().Set("X-RateLimit-Limit", strconv.Itoa(limit))
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Used", strconv.Itoa(limit))
		w.Header().Set("X-RateLimit-Reset", resetHeader(s.clock.Now().Add(reset)))
		w.Header().Set("X-RateLimit-Resource", "core")
		doc := "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits"
		if msg == "" {
			msg = "API rate limit exceeded. If you reach out to GitHub Support for help, please include the request ID."
			if f.RetryAfter > 0 {
				msg = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
				doc = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
			}
		}
		writeError(w, f.Status, msg, doc)
		return
	case msg != "":
	case f.Status == http.StatusUnauthorized:
		msg = "Bad credentials"
	case f.Status == http.StatusForbidden:
		msg = "Resource not accessible by integration"
	case f.Status == http.StatusNotFound:
		msg = "Not Found"
	case f.Status == http.StatusUnprocessableEntity:
		msg = "Validation Failed"
	case f.Status >= 500:
		msg = "Server Error"
	default:
		msg = fmt.Sprintf("Fault %d", f.Status)
	}
	writeError(w, f.Status, msg)
}
