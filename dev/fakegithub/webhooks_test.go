package fakegithub_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
)

var guidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestWebhookHeadersAndSignature(t *testing.T) {
	srv, rcv := newServer(t, fakegithub.Options{})
	j := srv.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "linux"}})
	eventually(t, 5*time.Second, "queued webhook", func() bool { return len(rcv.all()) == 1 })
	g := rcv.all()[0]
	if !g.SigOK {
		t.Errorf("X-Hub-Signature-256 %q does not verify over the body", g.Header.Get("X-Hub-Signature-256"))
	}
	checks := []struct {
		header string
		ok     func(string) bool
	}{
		{"X-GitHub-Event", func(v string) bool { return v == "workflow_job" }},
		{"X-GitHub-Delivery", guidRE.MatchString},
		{"User-Agent", func(v string) bool { return strings.HasPrefix(v, "GitHub-Hookshot/") }},
		{"Content-Type", func(v string) bool { return v == "application/json" }},
		{"X-GitHub-Hook-ID", func(v string) bool { return v == "1" }},
	}
	for _, c := range checks {
		if v := g.Header.Get(c.header); !c.ok(v) {
			t.Errorf("%s = %q", c.header, v)
		}
	}
	if g.Action != "queued" || g.JobID != j.ID || g.Status != "queued" {
		t.Errorf("payload action/job/status = %s/%d/%s, want queued/%d/queued", g.Action, g.JobID, g.Status, j.ID)
	}
	// A wrong secret does not verify: the signature covers the exact bytes.
	if hmacSHA256("other", g.Body) == g.Header.Get("X-Hub-Signature-256") {
		t.Error("signature verifies with another secret")
	}
}

func TestFailedDeliveryIsListedAndRedelivered(t *testing.T) {
	srv, rcv := newServer(t, fakegithub.Options{})
	rcv.setStatus(http.StatusInternalServerError)
	j := srv.CreateJob(fakegithub.JobSpec{})
	eventually(t, 5*time.Second, "failed attempt recorded", func() bool {
		d := srv.Deliveries()
		return len(d) == 1 && d[0].Done
	})
	first := srv.Deliveries()[0]
	if first.StatusCode != 500 || first.OK() || first.Status != "Invalid HTTP Response: 500" {
		t.Fatalf("delivery = %d %q, want a recorded 500", first.StatusCode, first.Status)
	}

	type item struct {
		ID         int64  `json:"id"`
		GUID       string `json:"guid"`
		Status     string `json:"status"`
		StatusCode int    `json:"status_code"`
		Redelivery bool   `json:"redelivery"`
		Action     string `json:"action"`
	}
	var failed []item
	api(t, srv, "GET", "repos/octo-org/octo-repo/hooks/1/deliveries?status=failure", "", nil, &failed)
	if len(failed) != 1 || failed[0].ID != first.ID || failed[0].StatusCode != 500 {
		t.Fatalf("failed deliveries = %+v", failed)
	}

	rcv.setStatus(http.StatusOK)
	if got := api(t, srv, "POST", "repos/octo-org/octo-repo/hooks/1/deliveries/"+itoa(first.ID)+"/attempts", "", nil, nil).StatusCode; got != http.StatusAccepted {
		t.Fatalf("redeliver = %d, want 202", got)
	}
	eventually(t, 5*time.Second, "redelivery arrives", func() bool { return len(rcv.all()) == 2 })
	got := rcv.all()
	if got[0].Delivery != got[1].Delivery || got[1].JobID != j.ID {
		t.Errorf("redelivery GUID %q, original %q: want the same", got[1].Delivery, got[0].Delivery)
	}
	var all []item
	eventually(t, 5*time.Second, "redelivery recorded", func() bool {
		all = nil
		api(t, srv, "GET", "orgs/octo-org/hooks/1/deliveries", "", nil, &all)
		return len(all) == 2
	})
	if len(all) != 2 || !all[0].Redelivery || all[0].StatusCode != 200 || all[0].GUID != first.GUID {
		t.Errorf("deliveries after redelivery = %+v, want the OK redelivery first", all)
	}
}

func TestWebhookFaults(t *testing.T) {
	tests := []struct {
		name   string
		faults fakegithub.WebhookFaults
		jobs   int
		check  func(t *testing.T, srv *fakegithub.Server, rcv *receiver, ids []int64)
	}{
		{"drop next", fakegithub.WebhookFaults{DropNext: 1}, 2, func(t *testing.T, srv *fakegithub.Server, rcv *receiver, ids []int64) {
			eventually(t, 5*time.Second, "second job's webhook", func() bool { return len(rcv.actions(ids[1])) == 1 })
			if n := len(rcv.actions(ids[0])); n != 0 {
				t.Errorf("dropped delivery arrived %d times", n)
			}
			d := srv.Deliveries()[0]
			if !d.Done || !d.Dropped || d.OK() {
				t.Errorf("dropped delivery recorded as %+v, want done, dropped, failed", d)
			}
		}},
		{"duplicate", fakegithub.WebhookFaults{DuplicateRate: 1}, 1, func(t *testing.T, _ *fakegithub.Server, rcv *receiver, ids []int64) {
			eventually(t, 5*time.Second, "two copies", func() bool { return len(rcv.all()) == 2 })
			got := rcv.all()
			if got[0].Delivery != got[1].Delivery {
				t.Errorf("duplicate GUIDs %q and %q differ", got[0].Delivery, got[1].Delivery)
			}
		}},
		{"manual redelivery", fakegithub.WebhookFaults{RedeliverRate: 1}, 1, func(t *testing.T, srv *fakegithub.Server, rcv *receiver, ids []int64) {
			eventually(t, 5*time.Second, "two copies", func() bool { return len(rcv.all()) == 2 })
			d := srv.Deliveries()
			if len(d) != 2 || !d[1].Redelivery || d[0].GUID != d[1].GUID {
				t.Errorf("deliveries = %+v, want original and redelivery with one GUID", d)
			}
		}},
		{"reorder", fakegithub.WebhookFaults{ReorderRate: 1}, 2, func(t *testing.T, _ *fakegithub.Server, rcv *receiver, ids []int64) {
			eventually(t, 5*time.Second, "both webhooks", func() bool { return len(rcv.all()) == 2 })
			var order []int64
			for _, g := range rcv.all() {
				order = append(order, g.JobID)
			}
			if diff := cmp.Diff([]int64{ids[1], ids[0]}, order); diff != "" {
				t.Errorf("arrival order (-want +got):\n%s", diff)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, rcv := newServer(t, fakegithub.Options{Webhooks: fakegithub.WebhookOptions{Workers: 1, Faults: tt.faults}})
			var ids []int64
			for range tt.jobs {
				ids = append(ids, srv.CreateJob(fakegithub.JobSpec{}).ID)
			}
			tt.check(t, srv, rcv, ids)
		})
	}
}

// The same seed drops the same deliveries.
func TestWebhookFaultsAreSeeded(t *testing.T) {
	dropped := func() []bool {
		srv, _ := newServer(t, fakegithub.Options{Webhooks: fakegithub.WebhookOptions{Faults: fakegithub.WebhookFaults{Seed: 42, DropRate: 0.5}}})
		for range 20 {
			srv.CreateJob(fakegithub.JobSpec{})
		}
		eventually(t, 5*time.Second, "all attempts done", func() bool {
			for _, d := range srv.Deliveries() {
				if !d.Done {
					return false
				}
			}
			return true
		})
		var out []bool
		for _, d := range srv.Deliveries() {
			out = append(out, d.Dropped)
		}
		return out
	}
	a, b := dropped(), dropped()
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("drops differ between runs with one seed:\n%s", diff)
	}
	n := 0
	for _, d := range a {
		if d {
			n++
		}
	}
	if n == 0 || n == len(a) {
		t.Errorf("%d of %d dropped at rate 0.5", n, len(a))
	}
}
