package fakegithub

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// CreateJob queues a workflow job and delivers its workflow_job "queued" webhook. An idle
// runner whose labels include all of the job's takes it at once.
func (s *Server) CreateJob(spec JobSpec) Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp := s.repos[0]
	if spec.Repo != "" {
		full := spec.Repo
		if !strings.Contains(full, "/") {
			full = s.opts.Owner + "/" + full
		}
		if rp = s.repoLocked(full); rp == nil {
			owner, name, _ := strings.Cut(full, "/")
			rp = &repo{id: s.repos[len(s.repos)-1].id + 1, owner: owner, name: name}
			s.repos = append(s.repos, rp)
		}
	}
	if len(spec.Labels) == 0 {
		spec.Labels = []string{"self-hosted"}
	}
	if spec.Name == "" {
		spec.Name = "build"
	}
	if spec.RunAttempt <= 0 {
		spec.RunAttempt = 1
	}
	now := time.Now()
	rn, ok := s.runs[spec.RunID]
	if !ok || rn.repo != rp {
		id := spec.RunID
		if id == 0 || ok {
			id = s.newIDLocked()
		}
		rn = &run{id: id, repo: rp, number: len(s.runs) + 1, workflow: "CI", headSHA: randomHex(20), createdAt: now}
		s.runs[id] = rn
	}
	rn.attempt = max(rn.attempt, spec.RunAttempt)
	rn.updatedAt = now
	j := &job{
		id: s.newIDLocked(), runID: rn.id, attempt: spec.RunAttempt, repo: rp, name: spec.Name,
		workflow: rn.workflow, labels: slices.Clone(spec.Labels), headSHA: rn.headSHA,
		duration: max(spec.Duration, 0), hasDur: spec.Duration != 0, fail: spec.Fail,
		event: spec.Event, payload: spec.EventPayload,
		status: statusQueued, createdAt: now,
	}
	rn.jobs = append(rn.jobs, j)
	s.jobs[j.id] = j
	s.jobOrder = append(s.jobOrder, j)
	s.log.Info("fake github queued job", logkey.JobID, j.id, logkey.RunID, j.runID, logkey.Repo, rp.full(), "labels", j.labels)
	s.sendJobEventLocked("queued", j)
	s.scheduleLocked()
	return j.snapshot()
}

// CancelJob cancels a job. A queued job completes at once with conclusion cancelled and
// no runner; a running job's runner is told to stop, and the job completes cancelled when
// the runner reports back (or is lost).
func (s *Server) CancelJob(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return fmt.Errorf("cancel job %d: no such job", id)
	}
	switch j.status {
	case statusQueued:
		s.completeJobLocked(j, conclusionCancelled)
	case statusInProgress:
		j.cancelling = true
		if rn, ok := s.runners[j.runnerID]; ok {
			if t, ok := s.timers[j.id]; ok {
				t.Stop()
				delete(s.timers, j.id)
			}
			rn.state = fakerunner.StateCancelled
			rn.changed()
		}
	default:
		return fmt.Errorf("cancel job %d: already %s", id, j.status)
	}
	return nil
}

// labelsMatch is GitHub's rule: every job label is among the runner's labels
// (case-insensitively). "self-hosted" and friends are labels like any other.
func labelsMatch(jobLabels, runnerLabels []string) bool {
	for _, jl := range jobLabels {
		if !slices.ContainsFunc(runnerLabels, func(rl string) bool { return strings.EqualFold(jl, rl) }) {
			return false
		}
	}
	return true
}

// scheduleLocked gives queued jobs, oldest first, to idle online runners that may take
// them. A runner is not bound to the job it was started for: it takes the oldest job it
// matches, so the job it was meant for may stay queued ("stolen runner").
func (s *Server) scheduleLocked() {
	if s.closed {
		return
	}
	for _, j := range s.jobOrder {
		if j.status != statusQueued {
			continue
		}
		var best *runner
		for _, rn := range s.runners {
			if rn.state != fakerunner.StateIdle || !rn.online {
				continue
			}
			if rn.repo != nil && rn.repo != j.repo {
				continue
			}
			if !labelsMatch(j.labels, rn.labels) {
				continue
			}
			// The runner idle longest goes first; ids break ties so runs are repeatable.
			if best == nil || rn.idleSince.Before(best.idleSince) || (rn.idleSince.Equal(best.idleSince) && rn.id < best.id) {
				best = rn
			}
		}
		if best != nil {
			s.assignLocked(j, best)
		}
	}
}

func (s *Server) assignLocked(j *job, rn *runner) {
	g := s.groupLocked(rn.groupID)
	if g == nil {
		g = s.groups[0]
	}
	j.status = statusInProgress
	j.startedAt = time.Now()
	j.runnerID, j.runnerName = rn.id, rn.name
	j.groupID, j.groupName = g.id, g.name
	rn.state = fakerunner.StateAssigned
	rn.jobID = j.id
	rn.changed()
	if r, ok := s.runs[j.runID]; ok {
		r.updatedAt = j.startedAt
	}
	s.log.Info("fake github assigned job", logkey.JobID, j.id, logkey.Runner, rn.name)
	s.sendJobEventLocked("in_progress", j)
}

// startStepsLocked starts the job's steps once the runner's pre-job hook ran.
func (s *Server) startStepsLocked(j *job, rn *runner, hookOK bool) {
	rn.state = fakerunner.StateRunning
	rn.changed()
	if !hookOK {
		// The runner fails the job itself and reports complete.
		return
	}
	d := s.opts.JobDuration
	if j.hasDur {
		d = j.duration
	}
	finish := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.timers, j.id)
		if s.closed || rn.state != fakerunner.StateRunning || rn.jobID != j.id {
			return
		}
		rn.state = fakerunner.StateFinish
		rn.result = conclusionSuccess
		if j.fail {
			rn.result = conclusionFailure
		}
		rn.changed()
	}
	if d <= 0 {
		rn.state = fakerunner.StateFinish
		rn.result = conclusionSuccess
		if j.fail {
			rn.result = conclusionFailure
		}
		rn.changed()
		return
	}
	s.timers[j.id] = time.AfterFunc(d, finish)
}

// completeJobLocked ends a job, sends "completed" and removes its ephemeral runner.
func (s *Server) completeJobLocked(j *job, conclusion string) {
	if j.status == statusCompleted {
		return
	}
	j.status = statusCompleted
	j.conclusion = conclusion
	j.completedAt = time.Now()
	if j.startedAt.IsZero() {
		j.startedAt = j.completedAt
	}
	if t, ok := s.timers[j.id]; ok {
		t.Stop()
		delete(s.timers, j.id)
	}
	if r, ok := s.runs[j.runID]; ok {
		r.updatedAt = j.completedAt
	}
	s.log.Info("fake github completed job", logkey.JobID, j.id, "conclusion", conclusion, logkey.Runner, j.runnerName)
	s.sendJobEventLocked("completed", j)
	if rn, ok := s.runners[j.runnerID]; ok && rn.jobID == j.id {
		s.removeRunnerLocked(rn)
	}
}

// removeRunnerLocked deletes a registration; a connected runner program is told to exit.
func (s *Server) removeRunnerLocked(rn *runner) {
	delete(s.runners, rn.id)
	rn.state = fakerunner.StateRemoved
	rn.online = false
	rn.changed()
}
