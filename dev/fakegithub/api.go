package fakegithub

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// authKind is what credential an operation takes.
type authKind int

const (
	authAPI authKind = iota // personal access token or installation token
	authJWT                 // the App's JWT (/app/..., installation lookups)
)

type credential struct {
	label string // recorded on calls
	key   string // rate budget
}

type handler func(w http.ResponseWriter, r *http.Request, c credential)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern, op string, need authKind, h handler) {
		mux.Handle(pattern, s.api(op, need, h))
	}
	// Runners, org and repo level.
	api("POST /orgs/{org}/actions/runners/generate-jitconfig", "actions/generate-runner-jitconfig-for-org", authAPI, s.handleJITConfig)
	api("POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig", "actions/generate-runner-jitconfig-for-repo", authAPI, s.handleJITConfig)
	api("POST /orgs/{org}/actions/runners/registration-token", "actions/create-registration-token-for-org", authAPI, s.handleRegistrationToken)
	api("POST /repos/{owner}/{repo}/actions/runners/registration-token", "actions/create-registration-token-for-repo", authAPI, s.handleRegistrationToken)
	api("GET /orgs/{org}/actions/runners", "actions/list-self-hosted-runners-for-org", authAPI, s.handleListRunners)
	api("GET /repos/{owner}/{repo}/actions/runners", "actions/list-self-hosted-runners-for-repo", authAPI, s.handleListRunners)
	api("GET /orgs/{org}/actions/runners/{id}", "actions/get-self-hosted-runner-for-org", authAPI, s.handleGetRunner)
	api("GET /repos/{owner}/{repo}/actions/runners/{id}", "actions/get-self-hosted-runner-for-repo", authAPI, s.handleGetRunner)
	api("DELETE /orgs/{org}/actions/runners/{id}", "actions/delete-self-hosted-runner-from-org", authAPI, s.handleDeleteRunner)
	api("DELETE /repos/{owner}/{repo}/actions/runners/{id}", "actions/delete-self-hosted-runner-from-repo", authAPI, s.handleDeleteRunner)
	api("GET /orgs/{org}/actions/runner-groups", "actions/list-self-hosted-runner-groups-for-org", authAPI, s.handleListGroups)
	// Jobs and runs.
	api("GET /repos/{owner}/{repo}/actions/jobs/{id}", "actions/get-job-for-workflow-run", authAPI, s.handleGetJob)
	api("GET /repos/{owner}/{repo}/actions/runs/{id}/jobs", "actions/list-jobs-for-workflow-run", authAPI, s.handleListRunJobs)
	api("GET /repos/{owner}/{repo}/actions/runs", "actions/list-workflow-runs-for-repo", authAPI, s.handleListRuns)
	// Hook deliveries.
	api("GET /repos/{owner}/{repo}/hooks/{hook}/deliveries", "repos/list-webhook-deliveries", authAPI, s.handleListDeliveries)
	api("GET /repos/{owner}/{repo}/hooks/{hook}/deliveries/{id}", "repos/get-webhook-delivery", authAPI, s.handleGetDelivery)
	api("POST /repos/{owner}/{repo}/hooks/{hook}/deliveries/{id}/attempts", "repos/redeliver-webhook-delivery", authAPI, s.handleRedeliver)
	api("GET /orgs/{org}/hooks/{hook}/deliveries", "orgs/list-webhook-deliveries", authAPI, s.handleListDeliveries)
	api("GET /orgs/{org}/hooks/{hook}/deliveries/{id}", "orgs/get-webhook-delivery", authAPI, s.handleGetDelivery)
	api("POST /orgs/{org}/hooks/{hook}/deliveries/{id}/attempts", "orgs/redeliver-webhook-delivery", authAPI, s.handleRedeliver)
	api("GET /app/hook/deliveries", "apps/list-webhook-deliveries", authJWT, s.handleListDeliveries)
	api("GET /app/hook/deliveries/{id}", "apps/get-webhook-delivery", authJWT, s.handleGetDelivery)
	api("POST /app/hook/deliveries/{id}/attempts", "apps/redeliver-webhook-delivery", authJWT, s.handleRedeliver)
	// Rate limit and App auth.
	api("GET /rate_limit", "rate-limit/get", authAPI, s.handleRateLimit)
	api("POST /app/installations/{id}/access_tokens", "apps/create-installation-access-token", authJWT, s.handleAccessToken)
	api("GET /orgs/{org}/installation", "apps/get-org-installation", authJWT, s.handleGetInstallation)
	api("GET /repos/{owner}/{repo}/installation", "apps/get-repo-installation", authJWT, s.handleGetInstallation)
	// The runner protocol and the control API (not GitHub; not recorded as calls).
	s.runnerRoutes(mux)
	s.controlRoutes(mux)
	mux.Handle("/", s.api("unknown", authAPI, func(w http.ResponseWriter, r *http.Request, _ credential) {
		writeError(w, http.StatusNotFound, "Not Found")
	}))
	return mux
}

// statusWriter remembers the status and sets the rate-limit headers just before the
// header goes out, when it is known whether the answer is a free 304.
type statusWriter struct {
	http.ResponseWriter
	status   int
	onHeader func(status int)
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	if w.onHeader != nil {
		w.onHeader(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// api wraps an operation: faults, auth, the rate budget, headers and call recording.
func (s *Server) api(op string, need authKind, h handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w := &statusWriter{ResponseWriter: rw}
		var cred credential
		defer func() {
			status := w.status
			if status == 0 {
				status = http.StatusOK
			}
			s.recordCall(Call{Time: start, Method: r.Method, Path: r.URL.Path, Op: op, Status: status, Credential: cred.label, Duration: time.Since(start)})
		}()
		w.Header().Set("X-GitHub-Request-Id", strings.ToUpper(randomHex(4)+":"+randomHex(4)+":"+randomHex(6)))
		w.Header().Set("X-GitHub-Api-Version-Selected", "2022-11-28")
		w.Header().Set("Content-Type", "application/json; charset=utf-8")

		if f, ok := s.matchFault(op, r); ok {
			if f.Latency > 0 {
				// Read the body first: until it is read, the server does not notice a
				// client that gave up, and the handler would wait out the latency.
				body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
				r.Body = io.NopCloser(bytes.NewReader(body))
				t := time.NewTimer(f.Latency)
				select {
				case <-t.C:
				case <-r.Context().Done():
					t.Stop()
					w.status = 499 // client went away; recorded only
					return
				case <-s.done:
					t.Stop()
					return
				}
			}
			if f.Status != 0 {
				s.writeFault(w, f)
				return
			}
		}

		c, msg := s.authenticate(r, need)
		if msg != "" {
			writeError(w, http.StatusUnauthorized, msg)
			return
		}
		cred = c
		// GET /rate_limit is free, and answers even when the budget is exhausted.
		charged := op != "rate-limit/get"
		if charged {
			done, ok := s.second.admit(cred.key, r.Method, s.clock.Now())
			if !ok {
				s.writeSecondary(w, cred.key)
				return
			}
			defer done()
		}
		if charged && !s.takeBudget(cred.key, true) {
			s.setRateHeaders(w.Header(), cred.key)
			writeError(w, http.StatusForbidden, fmt.Sprintf("API rate limit exceeded for %s. If you reach out to GitHub Support for help, please include the request ID.", cred.label),
				"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits")
			return
		}
		w.onHeader = func(status int) {
			if charged && status == http.StatusNotModified {
				s.refundBudget(cred.key) // conditional requests that match cost nothing
			}
			s.setRateHeaders(w.Header(), cred.key)
		}
		h(w, r, cred)
	})
}

// authenticate returns the caller's credential, or GitHub's 401 message.
func (s *Server) authenticate(r *http.Request, need authKind) (credential, string) {
	s.mu.Lock()
	open := s.opts.Token == "" && s.opts.AppID == 0
	s.mu.Unlock()
	if open {
		return credential{label: "anonymous", key: "anonymous"}, ""
	}
	auth := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(auth, " ")
	if tok == "" || (!strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "token")) {
		return credential{}, "Requires authentication"
	}
	if need == authJWT {
		if s.opts.AppID == 0 || s.opts.AppPublicKey == nil {
			return credential{}, "A JSON web token could not be decoded"
		}
		if err := verifyAppJWT(tok, s.opts.AppID, s.opts.AppPublicKey); err != nil {
			return credential{}, "A JSON web token could not be decoded"
		}
		label := fmt.Sprintf("app:%d", s.opts.AppID)
		return credential{label: label, key: label}, ""
	}
	if s.opts.Token != "" && tok == s.opts.Token {
		return credential{label: "pat", key: "pat"}, ""
	}
	s.mu.Lock()
	it, ok := s.tokens[tok]
	s.mu.Unlock()
	if ok && time.Now().Before(it.expires) {
		label := fmt.Sprintf("installation:%d", s.opts.InstallationID)
		return credential{label: label, key: label}, ""
	}
	return credential{}, "Bad credentials"
}

// verifyAppJWT checks an App JWT as GitHub does: RS256 signed by the App's key, issued
// by the App id, not expired, and living at most 10 minutes.
func verifyAppJWT(tok string, appID int64, key *rsa.PublicKey) error {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuedAt(), jwt.WithExpirationRequired(), jwt.WithLeeway(time.Minute))
	if err != nil {
		return err
	}
	var iss string
	switch v := claims["iss"].(type) {
	case string:
		iss = v
	case float64:
		iss = strconv.FormatInt(int64(v), 10)
	}
	if iss != strconv.FormatInt(appID, 10) {
		return fmt.Errorf("issuer %q is not app %d", iss, appID)
	}
	exp, _ := claims.GetExpirationTime()
	iat, _ := claims.GetIssuedAt()
	if exp != nil && iat != nil && exp.Sub(iat.Time) > 10*time.Minute+time.Second {
		return fmt.Errorf("jwt lives longer than 10 minutes")
	}
	return nil
}

// rateBudget is GitHub's primary rate limit for one credential.
type rateBudget struct {
	used  int
	start time.Time
}

// The rate budgets have their own lock: headers are set while a handler may hold s.mu.
func (s *Server) budgetRateLocked(key string) *rateBudget {
	b, ok := s.budgets[key]
	now := s.clock.Now()
	if !ok {
		b = &rateBudget{start: now}
		s.budgets[key] = b
	}
	if now.Sub(b.start) >= s.rateWindow {
		b.start, b.used = now, 0
	}
	return b
}

// takeBudget reserves one request (when charged) and reports whether the budget allows it.
func (s *Server) takeBudget(key string, charged bool) bool {
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	b := s.budgetRateLocked(key)
	if b.used >= s.rateLimit {
		return false
	}
	if charged {
		b.used++
	}
	return true
}

func (s *Server) refundBudget(key string) {
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	if b := s.budgetRateLocked(key); b.used > 0 {
		b.used--
	}
}

// rate returns limit, remaining, used and the reset time of key's budget.
func (s *Server) rate(key string) (limit, remaining, used int, reset time.Time) {
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	b := s.budgetRateLocked(key)
	return s.rateLimit, max(0, s.rateLimit-b.used), b.used, b.start.Add(s.rateWindow)
}

// resetHeader rounds up, so a client that waits until the header's second never
// arrives before the window really ends.
func resetHeader(t time.Time) string {
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return strconv.FormatInt(sec, 10)
}

func (s *Server) setRateHeaders(h http.Header, key string) {
	limit, remaining, used, reset := s.rate(key)
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Used", strconv.Itoa(used))
	h.Set("X-RateLimit-Reset", resetHeader(reset))
	h.Set("X-RateLimit-Resource", "core")
}

// writeError writes GitHub's basic-error body.
func writeError(w http.ResponseWriter, status int, msg string, docURL ...string) {
	doc := "https://docs.github.com/rest"
	if len(docURL) > 0 {
		doc = docURL[0]
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(obj{"message": msg, "documentation_url": doc, "status": strconv.Itoa(status)})
}

// writeJSON writes v; GET answers carry an ETag and answer 304 to a matching If-None-Match.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "Server Error")
		return
	}
	if r.Method == http.MethodGet && status == http.StatusOK {
		sum := sha256.Sum256(b)
		etag := `W/"` + hex.EncodeToString(sum[:16]) + `"`
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "private, max-age=60, s-maxage=60")
		w.Header().Set("Vary", "Accept, Authorization, Cookie, X-GitHub-OTP")
		if inm := r.Header.Get("If-None-Match"); inm != "" && (inm == etag || strings.TrimPrefix(inm, "W/") == strings.TrimPrefix(etag, "W/")) {
			w.Header().Del("Content-Type")
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// page reads per_page and page (GitHub's defaults: 30 and 1), sets the Link header for
// total items and returns the slice bounds of the page.
func (s *Server) page(w http.ResponseWriter, r *http.Request, total int) (lo, hi int) {
	perPage, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if perPage <= 0 {
		perPage = 30
	}
	perPage = min(perPage, 100, s.opts.MaxPerPage)
	pg, _ := strconv.Atoi(r.URL.Query().Get("page"))
	if pg <= 0 {
		pg = 1
	}
	last := max(1, (total+perPage-1)/perPage)
	link := func(p int, rel string) string {
		u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path}
		q := r.URL.Query()
		q.Set("per_page", strconv.Itoa(perPage))
		q.Set("page", strconv.Itoa(p))
		u.RawQuery = q.Encode()
		return fmt.Sprintf("<%s>; rel=%q", u.String(), rel)
	}
	var links []string
	if pg < last {
		links = append(links, link(pg+1, "next"), link(last, "last"))
	}
	if pg > 1 {
		links = append(links, link(1, "first"), link(min(pg-1, last), "prev"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	lo = min((pg-1)*perPage, total)
	return lo, min(lo+perPage, total)
}

func pathID(r *http.Request, name string) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	return id, err == nil && id > 0
}
