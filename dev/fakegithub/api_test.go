package fakegithub_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
)

func TestRunnerListPaginationAndETag(t *testing.T) {
	srv, _ := newServer(t, fakegithub.Options{MaxPerPage: 2})
	for i := range 5 {
		mintJIT(t, srv, fmt.Sprintf("r%d", i), "self-hosted")
	}
	var names []string
	next := "orgs/octo-org/actions/runners?per_page=100"
	pages := 0
	for next != "" {
		var body struct {
			TotalCount int `json:"total_count"`
			Runners    []struct {
				Name string `json:"name"`
			} `json:"runners"`
		}
		resp := api(t, srv, "GET", next, "", nil, &body)
		pages++
		if body.TotalCount != 5 {
			t.Errorf("total_count = %d, want 5", body.TotalCount)
		}
		for _, r := range body.Runners {
			names = append(names, r.Name)
		}
		next = ""
		for _, l := range strings.Split(resp.Header.Get("Link"), ",") {
			if strings.Contains(l, `rel="next"`) {
				u := strings.Trim(strings.TrimSpace(strings.Split(l, ";")[0]), "<>")
				next = strings.TrimPrefix(u, strings.TrimSuffix(srv.URL(), "/")+"/")
			}
		}
	}
	if pages != 3 || len(names) != 5 {
		t.Errorf("got %d pages and %v, want 3 pages of 5 runners", pages, names)
	}

	first := api(t, srv, "GET", "orgs/octo-org/actions/runners", "", nil, nil)
	etag := first.Header.Get("ETag")
	remaining := first.Header.Get("X-RateLimit-Remaining")
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL()+"orgs/octo-org/actions/runners", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional GET = %d, want 304", resp.StatusCode)
	}
	if got := resp.Header.Get("X-RateLimit-Remaining"); got != remaining {
		t.Errorf("304 changed remaining from %s to %s: it must be free", remaining, got)
	}
	mintJIT(t, srv, "r5", "self-hosted")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusOK {
		t.Errorf("conditional GET after a change = %d, want 200", resp2.StatusCode)
	}
}

func TestRateBudgetPerCredential(t *testing.T) {
	srv, _ := newServer(t, fakegithub.Options{Token: "pat", RateLimit: 3, RateLimitWindow: time.Hour})
	for i := range 3 {
		resp := api(t, srv, "GET", "orgs/octo-org/actions/runners", "pat", nil, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-RateLimit-Remaining") != strconv.Itoa(2-i) {
			t.Fatalf("call %d: %d remaining %s", i, resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"))
		}
	}
	resp := api(t, srv, "GET", "orgs/octo-org/actions/runners", "pat", nil, nil)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-RateLimit-Remaining") != "0" || resp.Header.Get("X-RateLimit-Reset") == "" {
		t.Errorf("exhausted: %d remaining %q reset %q, want 403 with headers", resp.StatusCode, resp.Header.Get("X-RateLimit-Remaining"), resp.Header.Get("X-RateLimit-Reset"))
	}
	// GET /rate_limit is free and still answers.
	var rl struct {
		Resources struct {
			Core struct {
				Remaining int `json:"remaining"`
				Limit     int `json:"limit"`
			} `json:"core"`
		} `json:"resources"`
	}
	if got := api(t, srv, "GET", "rate_limit", "pat", nil, &rl).StatusCode; got != http.StatusOK || rl.Resources.Core.Remaining != 0 || rl.Resources.Core.Limit != 3 {
		t.Errorf("rate_limit: %d %+v", got, rl)
	}
}

func TestAuth(t *testing.T) {
	key, err := fakegithub.GenerateAppKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := fakegithub.GenerateAppKey()
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := newServer(t, fakegithub.Options{Token: "pat", AppID: 77, AppPublicKey: key.PublicKey, TokenTTL: 300 * time.Millisecond})
	sign := func(k fakegithub.AppKey, iss any, life time.Duration) string {
		pk, err := jwt.ParseRSAPrivateKeyFromPEM(k.PrivateKeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": iss, "iat": now.Add(-30 * time.Second).Unix(), "exp": now.Add(life).Unix()}).SignedString(pk)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tokenPath := "app/installations/1/access_tokens"
	tests := []struct {
		name   string
		method string
		path   string
		token  string
		want   int
	}{
		{"no credentials", "GET", "orgs/octo-org/actions/runners", "", 401},
		{"wrong token", "GET", "orgs/octo-org/actions/runners", "nope", 401},
		{"pat", "GET", "orgs/octo-org/actions/runners", "pat", 200},
		{"jwt for installation token", "POST", tokenPath, sign(key, "77", 5*time.Minute), 201},
		{"numeric iss", "POST", tokenPath, sign(key, 77, 5*time.Minute), 201},
		{"jwt signed by another key", "POST", tokenPath, sign(other, "77", 5*time.Minute), 401},
		{"jwt of another app", "POST", tokenPath, sign(key, "78", 5*time.Minute), 401},
		{"jwt living too long", "POST", tokenPath, sign(key, "77", time.Hour), 401},
		{"pat on app endpoint", "POST", tokenPath, "pat", 401},
		{"unknown installation", "POST", "app/installations/9/access_tokens", sign(key, "77", 5*time.Minute), 404},
		{"jwt on installation endpoint", "GET", "orgs/octo-org/actions/runners", sign(key, "77", 5*time.Minute), 401},
		{"org installation lookup", "GET", "orgs/octo-org/installation", sign(key, "77", 5*time.Minute), 200},
		{"repo installation lookup", "GET", "repos/octo-org/octo-repo/installation", sign(key, "77", 5*time.Minute), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := api(t, srv, tt.method, tt.path, tt.token, nil, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == 401 {
				var body struct {
					Message, DocumentationURL, Status string
				}
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Message == "" || body.Status != "401" {
					t.Errorf("401 body = %+v (%v), want GitHub's basic-error", body, err)
				}
			}
		})
	}

	t.Run("installation token expires", func(t *testing.T) {
		var tok struct {
			Token string `json:"token"`
		}
		api(t, srv, "POST", tokenPath, sign(key, "77", 5*time.Minute), nil, &tok)
		if got := api(t, srv, "GET", "orgs/octo-org/actions/runners", tok.Token, nil, nil).StatusCode; got != 200 {
			t.Fatalf("fresh token: %d", got)
		}
		eventually(t, 5*time.Second, "token expiry", func() bool {
			return api(t, srv, "GET", "orgs/octo-org/actions/runners", tok.Token, nil, nil).StatusCode == 401
		})
	})
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name    string
		fault   fakegithub.Fault
		path    string
		want    int
		headers map[string]string
	}{
		{"429 retry-after", fakegithub.Fault{Op: "actions/get-self-hosted-runner-for-org", Status: 429, RetryAfter: 3 * time.Second}, "orgs/octo-org/actions/runners/1", 429,
			map[string]string{"Retry-After": "3", "X-RateLimit-Remaining": "0"}},
		{"403 primary limit", fakegithub.Fault{Op: "actions/*", Status: 403}, "orgs/octo-org/actions/runners", 403,
			map[string]string{"X-RateLimit-Remaining": "0"}},
		{"403 plain", fakegithub.Fault{Status: 403, Plain: true}, "orgs/octo-org/actions/runners", 403,
			map[string]string{"X-RateLimit-Remaining": ""}},
		{"401 by path", fakegithub.Fault{Path: "/orgs/*/actions/runners", Status: 401}, "orgs/octo-org/actions/runners", 401, nil},
		{"path glob does not match", fakegithub.Fault{Path: "/repos/*/*/actions/runners", Status: 401}, "orgs/octo-org/actions/runners", 200, nil},
		{"method filter", fakegithub.Fault{Method: "DELETE", Status: 500}, "orgs/octo-org/actions/runners", 200, nil},
		{"404", fakegithub.Fault{Status: 404}, "rate_limit", 404, nil},
		{"422", fakegithub.Fault{Status: 422}, "rate_limit", 422, nil},
		{"502", fakegithub.Fault{Status: 502}, "rate_limit", 502, nil},
		{"latency only", fakegithub.Fault{Latency: 20 * time.Millisecond}, "rate_limit", 200, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newServer(t, fakegithub.Options{})
			srv.SetFault(tt.fault)
			resp := api(t, srv, "GET", tt.path, "", nil, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			for h, v := range tt.headers {
				if got := resp.Header.Get(h); got != v {
					t.Errorf("%s = %q, want %q", h, got, v)
				}
			}
			if resp.Header.Get("X-GitHub-Request-Id") == "" {
				t.Error("no X-GitHub-Request-Id")
			}
		})
	}

	t.Run("count and clear", func(t *testing.T) {
		srv, _ := newServer(t, fakegithub.Options{})
		srv.SetFault(fakegithub.Fault{Status: 500, Count: 2})
		var got []int
		for range 3 {
			got = append(got, api(t, srv, "GET", "rate_limit", "", nil, nil).StatusCode)
		}
		if fmt.Sprint(got) != "[500 500 200]" {
			t.Errorf("statuses %v, want [500 500 200]", got)
		}
		id := srv.SetFault(fakegithub.Fault{Status: 500})
		srv.ClearFault(id)
		if s := api(t, srv, "GET", "rate_limit", "", nil, nil).StatusCode; s != 200 {
			t.Errorf("after ClearFault: %d", s)
		}
		if n := srv.CallCount("rate-limit/get"); n != 4 {
			t.Errorf("CallCount = %d, want 4", n)
		}
	})
}

func TestControlAPI(t *testing.T) {
	srv, rcv := newServer(t, fakegithub.Options{})
	post := func(path, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL()+path, bytes.NewBufferString(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post("_fake/control/faults", `{"op":"rate-limit/get","status":429,"retry_after":"2s","count":1}`); r.StatusCode != http.StatusCreated {
		t.Fatalf("add fault: %d", r.StatusCode)
	}
	resp := api(t, srv, "GET", "rate_limit", "", nil, nil)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("faulted call: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if r := post("_fake/control/jobs", `{"labels":["self-hosted","x"],"count":3}`); r.StatusCode != http.StatusCreated {
		t.Fatalf("create jobs: %d", r.StatusCode)
	}
	if n := len(srv.Jobs()); n != 3 {
		t.Fatalf("%d jobs, want 3", n)
	}
	eventually(t, 5*time.Second, "webhooks", func() bool { return len(rcv.all()) == 3 })
	if r := post("_fake/control/jobs/"+itoa(srv.Jobs()[0].ID)+"/cancel", ""); r.StatusCode != http.StatusNoContent {
		t.Errorf("cancel: %d", r.StatusCode)
	}
	var sum fakegithub.Summary
	api(t, srv, "GET", "_fake/control/summary", "", nil, &sum)
	if sum.Jobs != 3 || sum.Conclusions["cancelled"] != 1 || sum.Calls["rate-limit/get"] != 1 {
		t.Errorf("summary = %+v", sum)
	}
}

// The secondary limit answers 403 with Retry-After and the primary budget as it is,
// counts 5 points for a mutating call and 1 for a GET, and forgets points a minute
// later (on the fake's clock).
func TestSecondaryLimit(t *testing.T) {
	clk := fakegithub.NewScaledClock(600) // a minute passes in 100ms
	srv, _ := newServer(t, fakegithub.Options{Token: "pat", Clock: clk, Secondary: fakegithub.SecondaryLimit{PointsPerMinute: 11}})
	// 5 + 5 + 1 = 11 points: all accepted.
	for _, c := range []struct{ method, path string }{
		{"DELETE", "orgs/octo-org/actions/runners/1"}, {"DELETE", "orgs/octo-org/actions/runners/2"}, {"GET", "orgs/octo-org/actions/runners"},
	} {
		if resp := api(t, srv, c.method, c.path, "pat", nil, nil); resp.StatusCode == http.StatusForbidden {
			t.Fatalf("%s %s within the points: 403", c.method, c.path)
		}
	}
	resp := api(t, srv, "GET", "orgs/octo-org/actions/runners", "pat", nil, nil)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Retry-After") != "60" || resp.Header.Get("X-RateLimit-Remaining") == "0" {
		t.Fatalf("over the points: %d Retry-After %q remaining %q, want 403, 60, the real budget",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("X-RateLimit-Remaining"))
	}
	time.Sleep(clk.Real(61 * time.Second))
	if resp := api(t, srv, "GET", "orgs/octo-org/actions/runners", "pat", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a minute later: %d, want 200", resp.StatusCode)
	}
}
