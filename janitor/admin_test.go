package janitor_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/internal/secret"
)

func TestAdminHandlerNeedsAToken(t *testing.T) {
	s := system(t, fakegithub.Options{})
	if _, err := control.AdminHandler(control.AdminOptions{Conn: s.Conn, State: s.State, Fleet: s.Fleet}); err == nil {
		t.Fatal("an admin endpoint without a token was built")
	}
}

func TestAdminHandler(t *testing.T) {
	s := system(t, fakegithub.Options{})
	const token = "admin-token-0123456789"
	h, err := control.AdminHandler(control.AdminOptions{Conn: s.Conn, State: s.State, Fleet: s.Fleet, Token: secret.New(token), Flavors: []string{"small", "slow", "big"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	do := func(method, path, auth, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: not JSON: %s", method, path, data)
		}
		return resp.StatusCode, out
	}
	bearer := "Bearer " + token
	tests := []struct {
		name      string
		method    string
		path      string
		auth      string
		body      string
		janitor   bool // an active janitor runs
		wantCode  int
		wantField string // a top-level field the answer must have
	}{
		{"no token", "GET", "/admin/v1/status", "", "", false, 401, "error"},
		{"wrong token", "GET", "/admin/v1/status", "Bearer nope", "", false, 401, "error"},
		{"token of another scheme", "GET", "/admin/v1/status", "Basic " + token, "", false, 401, "error"},
		{"status", "GET", "/admin/v1/status", bearer, "", false, 200, "flavors"},
		{"bad mode", "POST", "/admin/v1/flush", bearer, `{"mode":"FLUSH_EVERYTHING"}`, false, 400, "error"},
		{"bad body", "POST", "/admin/v1/flush", bearer, `{`, false, 400, "error"},
		{"flush with no janitor", "POST", "/admin/v1/flush", bearer, `{"mode":"flush-idle"}`, false, 503, "error"},
		{"reconcile with no janitor", "POST", "/admin/v1/reconcile", bearer, "", false, 503, "error"},
		{"reconcile without a token", "POST", "/admin/v1/reconcile", "", "", false, 401, "error"},
		{"flush", "POST", "/admin/v1/flush", bearer, `{"mode":"flush-idle","flavor":"small"}`, true, 200, "removed"},
		{"unknown flavor", "POST", "/admin/v1/flush", bearer, `{"mode":"FLUSH_BUSY","flavor":"huge"}`, true, 502, "error"},
		{"status with a janitor", "GET", "/admin/v1/status", bearer, "", true, 200, "janitor"},
		{"reconcile", "POST", "/admin/v1/reconcile", bearer, "", true, 200, "instances"},
	}
	started := false
	for _, tc := range tests {
		if tc.janitor && !started {
			startJanitor(t, s, nil) // for the rest of the test, not one case
			started = true
		}
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(tc.method, tc.path, tc.auth, tc.body)
			if code != tc.wantCode {
				t.Fatalf("status %d, want %d: %v", code, tc.wantCode, body)
			}
			if _, ok := body[tc.wantField]; !ok {
				t.Errorf("answer lacks %q: %v", tc.wantField, body)
			}
		})
	}
	_, body := do("GET", "/admin/v1/status", bearer, "")
	if active := body["janitor"].(map[string]any)["active"]; active != "janitor-1" {
		t.Errorf("status names %v as the active janitor", active)
	}
	if n := len(body["flavors"].([]any)); n != 3 {
		t.Errorf("status lists %d flavors, want 3", n)
	}
}
