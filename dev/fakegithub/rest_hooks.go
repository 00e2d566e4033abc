package fakegithub

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// hookScope resolves which deliveries a hook deliveries request may see: every delivery
// for the org hook and the App hook, the repo's for a repo hook. ok is false for an
// unknown org, repo or hook id.
func (s *Server) hookScopeLocked(r *http.Request) (repoID int64, ok bool) {
	if strings.HasPrefix(r.URL.Path, "/app/") {
		return 0, true
	}
	hook, err := strconv.ParseInt(r.PathValue("hook"), 10, 64)
	if err != nil || hook != s.opts.HookID {
		return 0, false
	}
	rp, ok := s.scopeLocked(r)
	if !ok {
		return 0, false
	}
	if rp != nil {
		return rp.id, true
	}
	return 0, true
}

func (s *Server) handleListDeliveries(w http.ResponseWriter, r *http.Request, _ credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	repoID, ok := s.hookScopeLocked(r)
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	q := r.URL.Query()
	perPage, _ := strconv.Atoi(q.Get("per_page"))
	if perPage <= 0 {
		perPage = 30
	}
	perPage = min(perPage, 100, s.opts.MaxPerPage)
	var before int64 // cursor "v1_<id>": continue with older deliveries
	if c := q.Get("cursor"); c != "" {
		id, err := strconv.ParseInt(strings.TrimPrefix(c, "v1_"), 10, 64)
		if err != nil || !strings.HasPrefix(c, "v1_") {
			writeError(w, http.StatusBadRequest, "Invalid cursor")
			return
		}
		before = id
	}
	status := q.Get("status")
	if status != "" && status != "success" && status != "failure" {
		writeError(w, http.StatusUnprocessableEntity, "Validation Failed: status must be success or failure")
		return
	}
	items := []obj{}
	more := false
	var lastID int64
	// Newest first.
	for i := len(s.deliveries) - 1; i >= 0; i-- {
		d := s.deliveries[i]
		if !d.done || (repoID != 0 && d.repoID != repoID) || (before != 0 && d.id >= before) {
			continue
		}
		ok := d.statusCode >= 200 && d.statusCode < 300
		if (status == "success" && !ok) || (status == "failure" && ok) {
			continue
		}
		if len(items) == perPage {
			more = true
			break
		}
		items = append(items, s.deliveryJSONLocked(d, false))
		lastID = d.id
	}
	if more {
		u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path}
		nq := url.Values{"per_page": {strconv.Itoa(perPage)}, "cursor": {fmt.Sprintf("v1_%d", lastID)}}
		if status != "" {
			nq.Set("status", status)
		}
		u.RawQuery = nq.Encode()
		w.Header().Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", u.String()))
	}
	writeJSON(w, r, http.StatusOK, items)
}

func (s *Server) deliveryInScopeLocked(r *http.Request) (*delivery, bool) {
	repoID, ok := s.hookScopeLocked(r)
	if !ok {
		return nil, false
	}
	id, ok := pathID(r, "id")
	if !ok {
		return nil, false
	}
	for _, d := range s.deliveries {
		if d.id == id && d.done && (repoID == 0 || d.repoID == repoID) {
			return d, true
		}
	}
	return nil, false
}

func (s *Server) handleGetDelivery(w http.ResponseWriter, r *http.Request, _ credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deliveryInScopeLocked(r)
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, r, http.StatusOK, s.deliveryJSONLocked(d, true))
}

func (s *Server) handleRedeliver(w http.ResponseWriter, r *http.Request, _ credential) {
	s.mu.Lock()
	d, ok := s.deliveryInScopeLocked(r)
	if ok {
		s.redeliverLocked(d)
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte("null\n"))
}

// Redeliver redelivers a recorded delivery as the deliveries API does: a new attempt
// with a new id, the same GUID and payload, and redelivery=true. It returns the new
// delivery's id.
func (s *Server) Redeliver(deliveryID int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.deliveries {
		if d.id == deliveryID {
			return s.redeliverLocked(d).id, nil
		}
	}
	return 0, fmt.Errorf("redeliver %d: no such delivery", deliveryID)
}

func (s *Server) redeliverLocked(d *delivery) *delivery {
	nd := s.copyDeliveryLocked(d, true)
	s.whq.push(nd)
	return nd
}

func (s *Server) copyDeliveryLocked(d *delivery, redelivery bool) *delivery {
	nd := &delivery{
		id: s.newIDLocked(), guid: d.guid, event: d.event, action: d.action, redelivery: redelivery,
		jobID: d.jobID, repoID: d.repoID, installationID: d.installationID, payload: d.payload,
		createdAt: time.Now(),
	}
	s.deliveries = append(s.deliveries, nd)
	return nd
}
