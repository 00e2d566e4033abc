package webhook

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func FuzzParseDelivery(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "webhooks", "*", "*.json"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("application/json", b)
		f.Add("application/x-www-form-urlencoded", []byte("payload="+url.QueryEscape(string(b))))
	}
	f.Add("application/json", []byte(`{"action":"queued","workflow_job":{"id":1,"run_id":2,"labels":[]},"repository":{"full_name":"o/r"}}`))
	f.Add("application/json; charset=utf-8", []byte(`{}`))
	f.Add("", []byte(`null`))
	f.Add("multipart/form-data", []byte(`x`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		doc, err := jsonBody(contentType, body)
		if err != nil {
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		p, err := parseWorkflowJob(doc)
		if err != nil {
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// Whatever the fast parser accepts, the standard library agrees is JSON.
		if !json.Valid(doc) {
			t.Fatalf("accepted invalid JSON %q", doc)
		}
		// A payload that parses has every field buildEvent dereferences.
		if p.Action == nil || p.WorkflowJob == nil || p.WorkflowJob.ID == nil || p.WorkflowJob.RunID == nil || p.WorkflowJob.Labels == nil || p.Repository == nil {
			t.Fatalf("parsed payload lacks a required field: %+v", p)
		}
		r := NewRouter([]FlavorLabels{{Name: "a", Labels: []string{"x"}}}, "a", []string{"self-hosted"}, MatchSubset)
		flavor, _, _ := r.Route(*p.WorkflowJob.Labels)
		ev := buildEvent(p, "d", time.Time{}, "a", nil)
		if ev.JobID <= 0 || ev.Repo == "" || (flavor != "" && flavor != "a") {
			t.Fatalf("bad event %+v flavor %q", ev, flavor)
		}
	})
}
