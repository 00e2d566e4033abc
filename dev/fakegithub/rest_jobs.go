package fakegithub

import (
	"net/http"
	"slices"
)

func (s *Server) handleGetJob(w http.ResponseWriter, r *http.Request, _ credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp, ok := s.scopeLocked(r)
	id, idOK := pathID(r, "id")
	j, found := s.jobs[id]
	if !ok || !idOK || !found || j.repo != rp {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, r, http.StatusOK, s.jobJSONLocked(j))
}

func (s *Server) handleListRunJobs(w http.ResponseWriter, r *http.Request, _ credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp, ok := s.scopeLocked(r)
	id, idOK := pathID(r, "id")
	rn, found := s.runs[id]
	if !ok || !idOK || !found || rn.repo != rp {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	all := r.URL.Query().Get("filter") == "all"
	var list []*job
	for _, j := range rn.jobs {
		if all || j.attempt == rn.attempt {
			list = append(list, j)
		}
	}
	lo, hi := s.page(w, r, len(list))
	items := make([]obj, 0, hi-lo)
	for _, j := range list[lo:hi] {
		items = append(items, s.jobJSONLocked(j))
	}
	writeJSON(w, r, http.StatusOK, obj{"total_count": len(list), "jobs": items})
}

func (s *Server) handleListRuns(w http.ResponseWriter, r *http.Request, _ credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rp, ok := s.scopeLocked(r)
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	want := r.URL.Query().Get("status")
	var list []*run
	for _, rn := range s.runs {
		if rn.repo != rp {
			continue
		}
		status, conclusion := rn.state()
		if want != "" && want != status && want != conclusion {
			continue
		}
		list = append(list, rn)
	}
	// Newest first, as GitHub lists runs.
	slices.SortFunc(list, func(a, b *run) int { return int(b.id - a.id) })
	lo, hi := s.page(w, r, len(list))
	items := make([]obj, 0, hi-lo)
	for _, rn := range list[lo:hi] {
		items = append(items, s.runJSONLocked(rn))
	}
	writeJSON(w, r, http.StatusOK, obj{"total_count": len(list), "workflow_runs": items})
}
