package fakegithub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// The control API under /_fake/control/ drives a standalone fake the way Go tests drive
// an in-process one. It is unauthenticated: the fake is a test tool. Durations are Go
// duration strings ("250ms", "2s").
func (s *Server) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_fake/control/jobs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, r, http.StatusOK, s.Jobs())
	})
	mux.HandleFunc("POST /_fake/control/jobs", func(w http.ResponseWriter, r *http.Request) {
		var spec struct {
			JobSpec
			Duration string `json:"duration"`
			Count    int    `json:"count"`
		}
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			writeError(w, http.StatusBadRequest, "Problems parsing JSON")
			return
		}
		if spec.Duration != "" {
			d, err := time.ParseDuration(spec.Duration)
			if err != nil {
				writeError(w, http.StatusBadRequest, "bad duration")
				return
			}
			spec.JobSpec.Duration = d
		}
		jobs := []Job{}
		for range max(1, spec.Count) {
			jobs = append(jobs, s.CreateJob(spec.JobSpec))
		}
		writeJSON(w, r, http.StatusCreated, jobs)
	})
	mux.HandleFunc("POST /_fake/control/jobs/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		id, _ := pathID(r, "id")
		if err := s.CancelJob(id); err != nil {
			writeError(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_fake/control/runners", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, r, http.StatusOK, s.Runners())
	})
	mux.HandleFunc("GET /_fake/control/deliveries", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, r, http.StatusOK, s.Deliveries())
	})
	mux.HandleFunc("POST /_fake/control/deliveries/{id}/redeliver", func(w http.ResponseWriter, r *http.Request) {
		id, _ := pathID(r, "id")
		nid, err := s.Redeliver(id)
		if err != nil {
			writeError(w, http.StatusNotFound, err.Error())
			return
		}
		writeJSON(w, r, http.StatusAccepted, obj{"id": nid})
	})
	mux.HandleFunc("GET /_fake/control/calls", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, r, http.StatusOK, obj{"counts": s.CallCounts(), "calls": s.Calls()})
	})
	mux.HandleFunc("DELETE /_fake/control/calls", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetCalls()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_fake/control/summary", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, r, http.StatusOK, s.Summary())
	})
	mux.HandleFunc("GET /_fake/control/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, r, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("POST /_fake/control/faults", func(w http.ResponseWriter, r *http.Request) {
		var f faultWire
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			writeError(w, http.StatusBadRequest, "Problems parsing JSON")
			return
		}
		fault, err := f.fault()
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, r, http.StatusCreated, obj{"id": s.SetFault(fault)})
	})
	mux.HandleFunc("DELETE /_fake/control/faults", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /_fake/control/faults/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.PathValue("id"))
		s.ClearFault(id)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /_fake/control/webhook-faults", func(w http.ResponseWriter, r *http.Request) {
		var f struct {
			WebhookFaults
			ReorderHold string `json:"reorder_hold"`
		}
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			writeError(w, http.StatusBadRequest, "Problems parsing JSON")
			return
		}
		if f.ReorderHold != "" {
			d, err := time.ParseDuration(f.ReorderHold)
			if err != nil {
				writeError(w, http.StatusBadRequest, "bad reorder_hold")
				return
			}
			f.WebhookFaults.ReorderHold = d
		}
		s.SetWebhookFaults(f.WebhookFaults)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /_fake/control/webhook-target", func(w http.ResponseWriter, r *http.Request) {
		var t struct {
			URL    string `json:"url"`
			Secret string `json:"secret"`
		}
		if err := json.NewDecoder(r.Body).Decode(&t); err != nil {
			writeError(w, http.StatusBadRequest, "Problems parsing JSON")
			return
		}
		s.SetWebhookTarget(t.URL, t.Secret)
		w.WriteHeader(http.StatusNoContent)
	})
}

// faultWire is Fault with duration strings, for the control API.
type faultWire struct {
	Op         string  `json:"op"`
	Path       string  `json:"path"`
	Method     string  `json:"method"`
	Latency    string  `json:"latency"`
	Status     int     `json:"status"`
	RetryAfter string  `json:"retry_after"`
	Plain      bool    `json:"plain"`
	Message    string  `json:"message"`
	Count      int     `json:"count"`
	Rate       float64 `json:"rate"`
}

func (f faultWire) fault() (Fault, error) {
	out := Fault{Op: f.Op, Path: f.Path, Method: f.Method, Status: f.Status, Plain: f.Plain, Message: f.Message, Count: f.Count, Rate: f.Rate}
	for _, d := range []struct {
		s   string
		dst *time.Duration
	}{{f.Latency, &out.Latency}, {f.RetryAfter, &out.RetryAfter}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return Fault{}, fmt.Errorf("bad duration %q", d.s)
		}
		*d.dst = v
	}
	return out, nil
}

// Summary counts jobs, deliveries and API calls: what a load run reports.
type Summary struct {
	Jobs          int            `json:"jobs"`
	JobsByStatus  map[string]int `json:"jobs_by_status"` // queued, in_progress, completed
	Conclusions   map[string]int `json:"conclusions"`    // success, failure, cancelled
	Runners       int            `json:"runners"`        // registered now
	Deliveries    int            `json:"deliveries"`     // attempts, redeliveries included
	DeliveriesBad int            `json:"deliveries_failed"`
	Calls         map[string]int `json:"calls"` // by operation
	CallsTotal    int            `json:"calls_total"`
	CallsPerJob   float64        `json:"calls_per_job"`
}

// Summary returns counts over the fake's state.
func (s *Server) Summary() Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum := Summary{JobsByStatus: map[string]int{}, Conclusions: map[string]int{}, Calls: map[string]int{}}
	for _, j := range s.jobOrder {
		sum.Jobs++
		sum.JobsByStatus[j.status]++
		if j.conclusion != "" {
			sum.Conclusions[j.conclusion]++
		}
	}
	sum.Runners = len(s.runners)
	for _, d := range s.deliveries {
		if !d.done {
			continue
		}
		sum.Deliveries++
		if d.statusCode < 200 || d.statusCode > 299 {
			sum.DeliveriesBad++
		}
	}
	for op, n := range s.callCounts {
		sum.Calls[op] = n
		sum.CallsTotal += n
	}
	if sum.Jobs > 0 {
		sum.CallsPerJob = float64(sum.CallsTotal) / float64(sum.Jobs)
	}
	return sum
}
