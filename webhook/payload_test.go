package webhook

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/ghname"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
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
	f.Add("application/json", []byte(`{"action":"queued","workflow_job":{"id":1,"run_id":2,"labels":[]},"repository":{"full_name":"../.."}}`))
	f.Add("application/json", []byte(`{"action":"queued","workflow_job":{"id":1,"run_id":2,"labels":[]},"repository":{"full_name":"o/r\n\u001b[2J"}}`))
	f.Add("application/json", []byte(`{"action":"queued","workflow_job":{"id":1,"run_id":2,"labels":[`+strings.Repeat(`"l",`, MaxLabels)+`"l"]},"repository":{"full_name":"o/r"}}`))
	f.Add("application/json", []byte(`{"action":"queued","workflow_job":{"id":1,"run_id":2,"labels":["`+strings.Repeat("x", MaxLabelLen+1)+`"]},"repository":{"full_name":"o/r"}}`))
	f.Add(strings.Repeat("x", 1000)+"/json", []byte(`{}`))
	f.Add("application/json; charset=utf-8", []byte(`{}`))
	f.Add("", []byte(`null`))
	f.Add("multipart/form-data", []byte(`x`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		doc, err := jsonBody(contentType, body)
		if err != nil {
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("untyped error %v", err)
			}
			if len(err.Error()) > 2*untrusted.LogMax {
				t.Fatalf("the error repeats the content type: %d bytes", len(err.Error()))
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
		// What parses is within the limits and names a repository safe for API paths.
		if err := ghname.ValidRepo(p.Repository.FullName); err != nil {
			t.Fatalf("accepted repository.full_name %q: %v", p.Repository.FullName, err)
		}
		if n := len(*p.WorkflowJob.Labels); n > MaxLabels {
			t.Fatalf("accepted %d labels", n)
		}
		for _, l := range *p.WorkflowJob.Labels {
			if len(l) > MaxLabelLen {
				t.Fatalf("accepted a label of %d bytes", len(l))
			}
		}
		r := NewRouter([]FlavorLabels{{Name: "a", Labels: []string{"x"}}}, "a", []string{"self-hosted"}, MatchSubset)
		flavor, _, _ := r.Route(*p.WorkflowJob.Labels)
		ev := buildEvent(p, "d", time.Time{}, "a", nil)
		if ev.JobID <= 0 || ev.Repo == "" || (flavor != "" && flavor != "a") {
			t.Fatalf("bad event %+v flavor %q", ev, flavor)
		}
	})
}

func FuzzCheckHeaders(f *testing.F) {
	f.Add("workflow_job", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	f.Add("projects_v2_item", "bench-1-2")
	f.Add("", "")
	f.Add("ping", strings.Repeat("a", MaxDeliveryIDLen+1))
	f.Add("Ping\n", "x\x1b[2J")
	f.Fuzz(func(t *testing.T, event, deliveryID string) {
		reason := checkHeaders(event, deliveryID)
		if reason == "" {
			// Accepted values are short and printable as they are.
			for _, v := range []string{event, deliveryID} {
				if v == "" || len(v) > 64 || strings.ContainsFunc(v, func(r rune) bool {
					return !(r == '-' || r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
				}) {
					t.Fatalf("accepted event %q delivery %q", event, deliveryID)
				}
			}
			return
		}
		if len(reason) > 128 {
			t.Fatalf("reason of %d bytes: %q", len(reason), reason)
		}
	})
}
