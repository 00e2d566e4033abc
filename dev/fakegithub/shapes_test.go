package fakegithub_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
)

// freeForm are objects whose keys are data, not shape: GitHub's examples show some
// permissions, headers and an issues payload; ours hold others.
var freeForm = map[string]bool{
	"$.permissions":      true,
	"$.request.headers":  true,
	"$.request.payload":  true,
	"$.response.headers": true,
}

// missingFields lists what got lacks of want's shape: every key of every object in want,
// recursively. Arrays of objects are checked element by element against the keys all of
// want's elements share. A null in want only asks for the key; a value in want and got
// must be of the same JSON kind (null in got is allowed where want has a scalar).
func missingFields(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: object in fixture, %s in fake", path, kind(got))}
		}
		if freeForm[path] {
			return nil
		}
		var out []string
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				out = append(out, path+"."+k+": missing")
				continue
			}
			out = append(out, missingFields(path+"."+k, wv, gv)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: array in fixture, %s in fake", path, kind(got))}
		}
		elem := commonShape(w)
		if elem == nil {
			return nil
		}
		if len(g) == 0 {
			return []string{path + ": empty array, cannot check the element shape (set up more state)"}
		}
		var out []string
		for i, gv := range g {
			out = append(out, missingFields(fmt.Sprintf("%s[%d]", path, i), elem, gv)...)
		}
		return out
	case nil:
		return nil
	default:
		if got != nil && kind(want) != kind(got) {
			return []string{fmt.Sprintf("%s: %s in fixture, %s in fake", path, kind(want), kind(got))}
		}
		return nil
	}
}

// commonShape merges the object elements of an array into one object holding the keys
// they all have (values from the first non-null); nil for arrays of scalars.
func commonShape(elems []any) map[string]any {
	var out map[string]any
	for _, e := range elems {
		m, ok := e.(map[string]any)
		if !ok {
			return nil
		}
		if out == nil {
			out = map[string]any{}
			for k, v := range m {
				out[k] = v
			}
			continue
		}
		for k := range out {
			v, ok := m[k]
			if !ok {
				delete(out, k)
			} else if out[k] == nil {
				out[k] = v
			}
		}
	}
	return out
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	}
	return fmt.Sprintf("%T", v)
}

func TestMissingFields(t *testing.T) {
	var want, got any
	_ = json.Unmarshal([]byte(`{"a":1,"b":{"c":"x","d":null},"e":[{"f":1,"g":2},{"f":3}],"h":[1]}`), &want)
	_ = json.Unmarshal([]byte(`{"a":"1","b":{"c":"y"},"e":[{"g":1}],"h":[]}`), &got)
	m := missingFields("$", want, got)
	sort.Strings(m)
	wantMissing := []string{"$.a: number in fixture, string in fake", "$.b.d: missing", "$.e[0].f: missing"}
	if !slices.Equal(m, wantMissing) {
		t.Errorf("missingFields = %q, want %q", m, wantMissing)
	}
}

// shapeFixture runs the fake through a job, runners and deliveries, so every listing has
// content, and returns what each REST fixture's request answers.
func TestRESTShapesMatchFixtures(t *testing.T) {
	key, err := fakegithub.GenerateAppKey()
	if err != nil {
		t.Fatal(err)
	}
	srv, rcv := newServer(t, fakegithub.Options{Token: "pat", AppID: 77, AppPublicKey: key.PublicKey, RunnerGroups: []string{"big"}})
	appJWT := signJWT(t, key, 77)

	// A job run to completion by an org runner, a registered idle org runner, a repo runner.
	job := srv.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted"}})
	done := mintJITWith(t, srv, "pat", "orgs/octo-org", "done", "self-hosted")
	wait := startRunner(t, t.Context(), fakerunner.Options{JITConfig: done.EncodedJITConfig})
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	idle := mintJITWith(t, srv, "pat", "orgs/octo-org", "idle", "self-hosted", "gpu")
	mintJITWith(t, srv, "pat", "repos/octo-org/octo-repo", "repo-runner", "self-hosted")
	eventually(t, 5*time.Second, "three webhooks", func() bool { return len(rcv.all()) == 3 })
	eventually(t, 5*time.Second, "deliveries recorded", func() bool {
		for _, d := range srv.Deliveries() {
			if !d.Done {
				return false
			}
		}
		return true
	})
	deliveryID := srv.Deliveries()[0].ID

	type request struct {
		method, path, token string
		body                any
		status              int
	}
	jit := map[string]any{"name": "shape-runner", "runner_group_id": 1, "labels": []string{"self-hosted", "X64"}, "work_folder": "_work"}
	requests := map[string]request{
		"actions-create-registration-token-for-org.response.json":      {"POST", "orgs/octo-org/actions/runners/registration-token", "pat", nil, 201},
		"actions-create-registration-token-for-repo.response.json":     {"POST", "repos/octo-org/octo-repo/actions/runners/registration-token", "pat", nil, 201},
		"actions-generate-runner-jitconfig-for-org.response.json":      {"POST", "orgs/octo-org/actions/runners/generate-jitconfig", "pat", jit, 201},
		"actions-generate-runner-jitconfig-for-repo.response.json":     {"POST", "repos/octo-org/octo-repo/actions/runners/generate-jitconfig", "pat", jit, 201},
		"actions-get-job-for-workflow-run.response.json":               {"GET", "repos/octo-org/octo-repo/actions/jobs/" + itoa(job.ID), "pat", nil, 200},
		"actions-get-self-hosted-runner-for-org.response.json":         {"GET", "orgs/octo-org/actions/runners/" + itoa(idle.Runner.ID), "pat", nil, 200},
		"actions-list-jobs-for-workflow-run.response.json":             {"GET", "repos/octo-org/octo-repo/actions/runs/" + itoa(job.RunID) + "/jobs", "pat", nil, 200},
		"actions-list-self-hosted-runner-groups-for-org.response.json": {"GET", "orgs/octo-org/actions/runner-groups", "pat", nil, 200},
		"actions-list-self-hosted-runners-for-org.response.json":       {"GET", "orgs/octo-org/actions/runners", "pat", nil, 200},
		"actions-list-self-hosted-runners-for-repo.response.json":      {"GET", "repos/octo-org/octo-repo/actions/runners", "pat", nil, 200},
		"actions-list-workflow-runs-for-repo.response.json":            {"GET", "repos/octo-org/octo-repo/actions/runs", "pat", nil, 200},
		"apps-create-installation-access-token.response.json":          {"POST", "app/installations/1/access_tokens", appJWT, nil, 201},
		"apps-get-webhook-delivery.response.json":                      {"GET", "app/hook/deliveries/" + itoa(deliveryID), appJWT, nil, 200},
		"apps-list-webhook-deliveries.response.json":                   {"GET", "app/hook/deliveries", appJWT, nil, 200},
		"apps-redeliver-webhook-delivery.response.json":                {"POST", "app/hook/deliveries/" + itoa(deliveryID) + "/attempts", appJWT, nil, 202},
		"orgs-list-webhook-deliveries.response.json":                   {"GET", "orgs/octo-org/hooks/1/deliveries", "pat", nil, 200},
		"repos-list-webhook-deliveries.response.json":                  {"GET", "repos/octo-org/octo-repo/hooks/1/deliveries", "pat", nil, 200},
		"repos-redeliver-webhook-delivery.response.json":               {"POST", "repos/octo-org/octo-repo/hooks/1/deliveries/" + itoa(deliveryID) + "/attempts", "pat", nil, 202},
		"rate-limit-get.response.json":                                 {"GET", "rate_limit", "pat", nil, 200},
	}

	files, err := filepath.Glob("../../testdata/rest/*.response.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures found (%v)", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			req, ok := requests[name]
			if !ok {
				t.Fatalf("no request for fixture %s: add one so its shape is checked", name)
			}
			want := readJSON(t, f)
			if strings.Contains(name, "jitconfig") {
				// Names are unique per scope; each fixture gets a fresh one.
				req.body.(map[string]any)["name"] = "shape-" + name
			}
			resp := api(t, srv, req.method, req.path, req.token, req.body, nil)
			if resp.StatusCode != req.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("%s %s = %d %s, want %d", req.method, req.path, resp.StatusCode, b, req.status)
			}
			var got any
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatalf("decode answer: %v", err)
			}
			for _, m := range missingFields("$", want, got) {
				t.Error(m)
			}
		})
	}
}

func TestWebhookShapesMatchFixtures(t *testing.T) {
	key, err := fakegithub.GenerateAppKey()
	if err != nil {
		t.Fatal(err)
	}
	srv, rcv := newServer(t, fakegithub.Options{AppID: 77, AppPublicKey: key.PublicKey, Token: "pat"})
	srv.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted"}})
	jit := mintJITWith(t, srv, "pat", "orgs/octo-org", "r", "self-hosted")
	if err := startRunner(t, t.Context(), fakerunner.Options{JITConfig: jit.EncodedJITConfig})(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "three webhooks", func() bool { return len(rcv.all()) == 3 })
	byAction := map[string]any{}
	for _, g := range rcv.all() {
		var v any
		if err := json.Unmarshal(g.Body, &v); err != nil {
			t.Fatal(err)
		}
		byAction[g.Action] = v
	}
	files, _ := filepath.Glob("../../testdata/webhooks/workflow_job/*.json")
	if len(files) == 0 {
		t.Fatal("no webhook fixtures found")
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			action, _, _ := strings.Cut(name, ".")
			if action == "waiting" {
				action = "queued" // the fake has no environments; a waiting job has a queued job's shape
			}
			got, ok := byAction[action]
			if !ok {
				t.Fatalf("no %s webhook from the fake", action)
			}
			want := readJSON(t, f).(map[string]any)
			delete(want, "deployment") // only jobs with environments carry it
			for _, m := range missingFields("$", want, got) {
				t.Error(m)
			}
		})
	}
}

func readJSON(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func signJWT(t *testing.T, key fakegithub.AppKey, appID int64) string {
	t.Helper()
	pk, err := jwt.ParseRSAPrivateKeyFromPEM(key.PrivateKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": fmt.Sprint(appID), "iat": now.Add(-30 * time.Second).Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}).SignedString(pk)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mintJITWith(t *testing.T, srv *fakegithub.Server, token, scope, name string, labels ...string) jitAnswer {
	t.Helper()
	var a jitAnswer
	resp := api(t, srv, "POST", scope+"/actions/runners/generate-jitconfig", token, map[string]any{
		"name": name, "runner_group_id": 1, "labels": labels,
	}, &a)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("generate-jitconfig %s: status %d", name, resp.StatusCode)
	}
	return a
}
