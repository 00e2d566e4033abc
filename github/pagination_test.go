package github

import (
	"fmt"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
)

// The fake serves two items per page, so five of anything take three requests.
func TestPagination(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat", MaxPerPage: 2, JobDuration: time.Hour})
	c := newClient(t, srv, nil)
	ctx := t.Context()
	for i := range 5 {
		srv.AddRunnerGroup(fmt.Sprintf("group-%d", i))
	}
	first := srv.CreateJob(fakegithub.JobSpec{Name: "job-0"})
	for i := 1; i < 5; i++ {
		srv.CreateJob(fakegithub.JobSpec{Name: fmt.Sprintf("job-%d", i), RunID: first.RunID})
	}
	for range 4 {
		srv.CreateJob(fakegithub.JobSpec{}) // four more runs, queued
	}

	tests := []struct {
		name   string
		fakeOp string
		pages  int
		run    func() (int, error)
	}{
		{"runner groups", "actions/list-self-hosted-runner-groups-for-org", 3, func() (int, error) {
			// "group-4" is on the last page (Default, group-0..4 = 6 groups).
			j, err := c.GenerateJITConfig(ctx, JITConfigRequest{Name: "r-grouped", Labels: []string{"a"}, RunnerGroup: "group-4"})
			if err != nil {
				return 0, err
			}
			for _, r := range srv.Runners() {
				if r.ID == j.RunnerID && r.GroupID != 6 {
					return 0, fmt.Errorf("runner in group %d, want 6", r.GroupID)
				}
			}
			return 6, nil
		}},
		{"runners", "actions/list-self-hosted-runners-for-org", 3, func() (int, error) {
			for i := range 4 {
				if _, err := c.GenerateJITConfig(ctx, JITConfigRequest{Name: fmt.Sprintf("r-%d", i), Labels: []string{"a"}}); err != nil {
					return 0, err
				}
			}
			rs, err := c.ListRunners(ctx, "r-")
			return len(rs), err
		}},
		{"run jobs", "actions/list-jobs-for-workflow-run", 3, func() (int, error) {
			js, err := c.ListRunJobs(ctx, "octo-org/octo-repo", first.RunID)
			return len(js), err
		}},
		{"deliveries", "orgs/list-webhook-deliveries", 5, func() (int, error) {
			eventually(t, 30*time.Second, "deliveries done", func() bool {
				for _, d := range srv.Deliveries() {
					if !d.Done {
						return false
					}
				}
				return len(srv.Deliveries()) == 9
			})
			ds, err := c.ListDeliveries(ctx, HookRef{Kind: HookOrg, HookID: 1}, time.Time{})
			return len(ds), err
		}},
		{"workflow runs", "actions/list-workflow-runs-for-repo", 3 + 1, func() (int, error) {
			// Five queued runs take three pages; the in-progress listing is one empty page.
			js, err := c.ListQueuedJobs(ctx, "octo-org/octo-repo")
			return len(js), err
		}},
	}
	want := map[string]int{"runner groups": 6, "runners": 5, "run jobs": 5, "deliveries": 9, "workflow runs": 9}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.CallCount(tt.fakeOp)
			n, err := tt.run()
			if err != nil {
				t.Fatal(err)
			}
			if n != want[tt.name] {
				t.Errorf("got %d items, want %d", n, want[tt.name])
			}
			if got := srv.CallCount(tt.fakeOp) - before; got != tt.pages {
				t.Errorf("%d requests, want %d pages", got, tt.pages)
			}
		})
	}
}

// An unchanged runner list costs no rate budget: every page comes back 304.
func TestListRunnersETag(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat", MaxPerPage: 2})
	c := newClient(t, srv, nil)
	ctx := t.Context()
	var ids []int64
	for i := range 5 {
		j, err := c.GenerateJITConfig(ctx, JITConfigRequest{Name: fmt.Sprintf("r-%d", i), Labels: []string{"a"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.RunnerID)
	}
	list := func() int {
		t.Helper()
		rs, err := c.ListRunners(ctx, "r-")
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}
	code := func(status string) float64 {
		return c.metric(t, "spawner_github_requests_total", map[string]string{"operation": "list_runners", "code": status})
	}

	if n := list(); n != 5 || code("200") != 3 {
		t.Fatalf("first listing: %d runners, %v answers 200", n, code("200"))
	}
	remaining := c.RateLimit().Remaining
	if n := list(); n != 5 || code("304") != 3 {
		t.Errorf("unchanged listing: %d runners, %v answers 304, want 5 and 3", n, code("304"))
	}
	if got := c.RateLimit().Remaining; got != remaining {
		t.Errorf("unchanged listing spent budget: remaining %d → %d", remaining, got)
	}

	// A new runner changes every page (each carries total_count), so all are fetched.
	if _, err := c.GenerateJITConfig(ctx, JITConfigRequest{Name: "r-5", Labels: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if n := list(); n != 6 || code("304") != 3 || code("200") != 6 {
		t.Errorf("after one new runner: %d runners, 304s %v, 200s %v; want 6, 3, 6", n, code("304"), code("200"))
	}
	// Fewer runners: the list shrinks and stale pages are not served.
	for _, id := range ids[:4] {
		if err := c.DeleteRunner(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := list(); n != 2 {
		t.Errorf("after deleting 4 of 6: %d runners", n)
	}
}
