package fakegithub

import (
	"net/http"
	"time"
)

func (s *Server) handleAccessToken(w http.ResponseWriter, r *http.Request, _ credential) {
	id, ok := pathID(r, "id")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok || id != s.opts.InstallationID {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	tok := "ghs_" + randomHex(18)
	exp := time.Now().Add(s.opts.TokenTTL)
	s.tokens[tok] = installationToken{expires: exp}
	// Forget expired tokens so a long run does not grow without bound.
	for t, it := range s.tokens {
		if time.Now().After(it.expires.Add(time.Hour)) {
			delete(s.tokens, t)
		}
	}
	repos := make([]obj, 0, len(s.repos))
	for _, rp := range s.repos {
		repos = append(repos, s.repoJSONLocked(rp))
	}
	writeJSON(w, r, http.StatusCreated, obj{
		"token":                tok,
		"expires_at":           exp.UTC().Format(time.RFC3339),
		"permissions":          obj{"administration": "write", "actions": "read", "organization_self_hosted_runners": "write"},
		"repository_selection": "selected",
		"repositories":         repos,
	})
}

func (s *Server) handleGetInstallation(w http.ResponseWriter, r *http.Request, _ credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.scopeLocked(r); !ok {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, r, http.StatusOK, s.installationJSONLocked())
}

func (s *Server) handleRateLimit(w http.ResponseWriter, r *http.Request, c credential) {
	limit, remaining, used, reset := s.rate(c.key)
	core := obj{"limit": limit, "used": used, "remaining": remaining, "reset": reset.Unix()}
	fixed := func(n int) obj {
		return obj{"limit": n, "used": 0, "remaining": n, "reset": time.Now().Add(time.Hour).Unix()}
	}
	writeJSON(w, r, http.StatusOK, obj{
		"resources": obj{
			"core":                        core,
			"search":                      fixed(30),
			"graphql":                     fixed(5000),
			"integration_manifest":        fixed(5000),
			"source_import":               fixed(100),
			"actions_runner_registration": fixed(10000),
			"scim":                        fixed(15000),
			"dependency_snapshots":        fixed(100),
			"code_search":                 fixed(10),
			"code_scanning_autofix":       fixed(10),
		},
		"rate": core,
	})
}
