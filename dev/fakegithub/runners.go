package fakegithub

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// The runner protocol under /_fake/runner/ (documented in doc.go). It stands in for the
// Actions service a real runner talks to; its calls are not GitHub REST calls and are
// not recorded.
func (s *Server) runnerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /"+fakerunner.PathConnect, s.runnerCall(s.handleRunnerConnect))
	mux.HandleFunc("GET /"+fakerunner.PathPoll, s.runnerCall(s.handleRunnerPoll))
	mux.HandleFunc("POST /"+fakerunner.PathHeartbeat, s.runnerCall(func(w http.ResponseWriter, _ *http.Request, _ *runner) {
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /"+fakerunner.PathStarted, s.runnerCall(s.handleRunnerStarted))
	mux.HandleFunc("POST /"+fakerunner.PathComplete, s.runnerCall(s.handleRunnerComplete))
}

// runnerCall authenticates the runner by its credential, counts the call as a sign of
// life, and answers 410 once the registration is gone.
func (s *Server) runnerCall(h func(http.ResponseWriter, *http.Request, *runner)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		s.mu.Lock()
		var rn *runner
		for _, c := range s.runners {
			if cred != "" && c.credential == cred {
				rn = c
				break
			}
		}
		if rn == nil {
			s.mu.Unlock()
			// Unknown credential: either never minted or removed since. A runner cannot
			// tell the difference on GitHub either; it just stops.
			writeError(w, http.StatusGone, "Runner registration not found")
			return
		}
		rn.lastSeen = time.Now()
		s.mu.Unlock()
		h(w, r, rn)
	}
}

func (s *Server) handleRunnerConnect(w http.ResponseWriter, r *http.Request, rn *runner) {
	s.mu.Lock()
	rn.connected = true
	rn.online = true
	if rn.state == "" {
		rn.state = fakerunner.StateIdle
		rn.idleSince = time.Now()
		rn.changed()
	}
	resp := fakerunner.ConnectResponse{RunnerID: rn.id, RunnerName: rn.name, HeartbeatMS: (s.opts.RunnerLostAfter / 3).Milliseconds()}
	s.log.Info("fake runner connected", logkey.Runner, rn.name)
	s.scheduleLocked()
	s.mu.Unlock()
	writeJSON(w, r, http.StatusOK, resp)
}

func (s *Server) handleRunnerPoll(w http.ResponseWriter, r *http.Request, rn *runner) {
	wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
	if err != nil || wait <= 0 || wait > s.opts.PollWait {
		wait = s.opts.PollWait
	}
	known := r.URL.Query().Get("state")
	deadline := time.Now().Add(wait)

	s.mu.Lock()
	rn.polling++
	if rn.connected && !rn.online {
		// Back after a silence: online again, and maybe there is work.
		rn.online = true
		s.scheduleLocked()
	}
	for rn.state == known && !s.closed && r.Context().Err() == nil {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		ch := rn.notify
		s.mu.Unlock()
		t := time.NewTimer(left)
		select {
		case <-ch:
		case <-t.C:
		case <-r.Context().Done():
		case <-s.done:
		}
		t.Stop()
		s.mu.Lock()
	}
	rn.polling--
	rn.lastSeen = time.Now()
	resp := fakerunner.PollResponse{State: rn.state}
	if j, ok := s.jobs[rn.jobID]; ok && rn.state != fakerunner.StateIdle {
		resp.Job = &fakerunner.Assignment{JobID: j.id, RunID: j.runID, RunAttempt: j.attempt, Repo: j.repo.full(), Name: j.name, Labels: append([]string{}, j.labels...),
			Event: j.event, EventPayload: j.payload}
	}
	if rn.state == fakerunner.StateFinish {
		resp.Result = rn.result
	}
	s.mu.Unlock()
	writeJSON(w, r, http.StatusOK, resp)
}

func (s *Server) runnerJobLocked(w http.ResponseWriter, rn *runner, jobID int64) (*job, bool) {
	j, ok := s.jobs[jobID]
	if !ok || rn.jobID != jobID {
		writeError(w, http.StatusConflict, "job is not assigned to this runner")
		return nil, false
	}
	return j, true
}

func (s *Server) handleRunnerStarted(w http.ResponseWriter, r *http.Request, rn *runner) {
	var req fakerunner.StartedRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.runnerJobLocked(w, rn, req.JobID)
	if !ok {
		return
	}
	if rn.state == fakerunner.StateAssigned {
		s.startStepsLocked(j, rn, req.OK)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRunnerComplete(w http.ResponseWriter, r *http.Request, rn *runner) {
	var req fakerunner.CompleteRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.runnerJobLocked(w, rn, req.JobID)
	if !ok {
		return
	}
	conclusion := conclusionSuccess
	switch {
	case j.cancelling:
		conclusion = conclusionCancelled
	case req.ExitCode != 0:
		conclusion = conclusionFailure
	}
	s.completeJobLocked(j, conclusion)
	w.WriteHeader(http.StatusNoContent)
}

// watchRunners declares runners lost, as GitHub does when a runner's machine dies: a
// runner holding a job that showed no sign of life for RunnerLostAfter fails its job;
// an idle one goes offline.
func (s *Server) watchRunners() {
	tick := min(max(s.opts.RunnerLostAfter/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		now := time.Now()
		for _, rn := range s.runners {
			if !rn.connected || rn.polling > 0 || now.Sub(rn.lastSeen) < s.opts.RunnerLostAfter {
				continue
			}
			if j, ok := s.jobs[rn.jobID]; ok && rn.busy() {
				s.log.Info("fake github lost runner", logkey.Runner, rn.name, logkey.JobID, j.id)
				conclusion := conclusionFailure
				if j.cancelling {
					conclusion = conclusionCancelled
				}
				s.completeJobLocked(j, conclusion)
				continue
			}
			if rn.online {
				rn.online = false
			}
		}
		s.mu.Unlock()
	}
}
