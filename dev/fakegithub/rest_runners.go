package fakegithub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// scope resolves the {org} or {owner}/{repo} of a request: repo is nil for the org.
func (s *Server) scopeLocked(r *http.Request) (rp *repo, ok bool) {
	if org := r.PathValue("org"); org != "" {
		return nil, strings.EqualFold(org, s.opts.Owner)
	}
	rp = s.repoLocked(r.PathValue("owner") + "/" + r.PathValue("repo"))
	return rp, rp != nil
}

func (s *Server) repoLocked(full string) *repo {
	for _, rp := range s.repos {
		if strings.EqualFold(rp.full(), full) {
			return rp
		}
	}
	return nil
}

func sameScope(r *runner, rp *repo) bool { return r.repo == rp }

type jitRequest struct {
	Name          string   `json:"name"`
	RunnerGroupID int64    `json:"runner_group_id"`
	Labels        []string `json:"labels"`
	WorkFolder    string   `json:"work_folder"`
}

func (s *Server) handleJITConfig(w http.ResponseWriter, r *http.Request, _ credential) {
	var req jitRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rp, ok := s.scopeLocked(r)
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	if req.Name == "" || len(req.Labels) == 0 || len(req.Labels) > 100 || slices.Contains(req.Labels, "") {
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed: name and 1 to 100 labels are required")
		return
	}
	group := s.groupLocked(req.RunnerGroupID)
	if rp == nil && group == nil {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("Validation Failed: runner group %d does not exist", req.RunnerGroupID))
		return
	}
	if group == nil {
		group = s.groups[0]
	}
	for _, other := range s.runners {
		if sameScope(other, rp) && strings.EqualFold(other.name, req.Name) {
			writeError(w, http.StatusConflict, fmt.Sprintf("Already exists - A runner with the name %s already exists.", req.Name))
			return
		}
	}
	rn := &runner{
		id:         s.newIDLocked(),
		name:       req.Name,
		labels:     slices.Clone(req.Labels),
		groupID:    group.id,
		repo:       rp,
		credential: "fakerunner_" + randomHex(20),
		createdAt:  time.Now(),
		notify:     make(chan struct{}),
	}
	s.runners[rn.id] = rn
	cfg := fakerunner.EncodeJITConfig(fakerunner.JITConfig{
		Fake: fakerunner.Marker, URL: s.publicURL, RunnerID: rn.id, RunnerName: rn.name,
		Credential: rn.credential, Labels: slices.Clone(rn.labels),
	})
	j := s.runnerJSONLocked(rn)
	j["os"] = "unknown"
	s.log.Info("fake github registered jit runner", logkey.Runner, rn.name, "runner_id", rn.id)
	writeJSON(w, r, http.StatusCreated, obj{"runner": j, "encoded_jit_config": cfg})
}

func (s *Server) groupLocked(id int64) *runnerGroup {
	for _, g := range s.groups {
		if g.id == id {
			return g
		}
	}
	return nil
}

func (s *Server) handleRegistrationToken(w http.ResponseWriter, r *http.Request, _ credential) {
	s.mu.Lock()
	_, ok := s.scopeLocked(r)
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, r, http.StatusCreated, obj{
		"token":      strings.ToUpper(randomHex(15)),
		"expires_at": time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
	})
}

func (s *Server) handleListRunners(w http.ResponseWriter, r *http.Request, _ credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp, ok := s.scopeLocked(r)
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	name := r.URL.Query().Get("name")
	var list []*runner
	for _, rn := range s.runners {
		if sameScope(rn, rp) && (name == "" || rn.name == name) {
			list = append(list, rn)
		}
	}
	slices.SortFunc(list, func(a, b *runner) int { return int(a.id - b.id) })
	lo, hi := s.page(w, r, len(list))
	items := make([]obj, 0, hi-lo)
	for _, rn := range list[lo:hi] {
		items = append(items, s.runnerJSONLocked(rn))
	}
	writeJSON(w, r, http.StatusOK, obj{"total_count": len(list), "runners": items})
}

func (s *Server) runnerInScopeLocked(r *http.Request) (*runner, bool) {
	rp, ok := s.scopeLocked(r)
	if !ok {
		return nil, false
	}
	id, ok := pathID(r, "id")
	if !ok {
		return nil, false
	}
	rn, ok := s.runners[id]
	if !ok || !sameScope(rn, rp) {
		return nil, false
	}
	return rn, true
}

func (s *Server) handleGetRunner(w http.ResponseWriter, r *http.Request, _ credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn, ok := s.runnerInScopeLocked(r)
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, r, http.StatusOK, s.runnerJSONLocked(rn))
}

func (s *Server) handleDeleteRunner(w http.ResponseWriter, r *http.Request, _ credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn, ok := s.runnerInScopeLocked(r)
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	if rn.busy() {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("Bad request - Runner \"%s\" is still running a job\"", rn.name))
		return
	}
	s.removeRunnerLocked(rn)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleListGroups(w http.ResponseWriter, r *http.Request, _ credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.scopeLocked(r); !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	lo, hi := s.page(w, r, len(s.groups))
	items := make([]obj, 0, hi-lo)
	for _, g := range s.groups[lo:hi] {
		items = append(items, s.groupJSONLocked(g))
	}
	writeJSON(w, r, http.StatusOK, obj{"total_count": len(s.groups), "runner_groups": items})
}
