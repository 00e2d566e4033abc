package janitor_test

import (
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends/sim"
	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/github"
	"github.com/runner-spawner/runner-spawner/janitor"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    control.Mode
		wantErr bool
	}{
		{"FLUSH_IDLE", control.FlushIdle, false},
		{"flush-idle", control.FlushIdle, false},
		{"flush-idle-wait-repo-check", control.FlushIdleWaitRepoCheck, false},
		{"FLUSH_BUSY", control.FlushBusy, false},
		{"flush-busy-wait-repo-check", control.FlushBusyWaitRepoCheck, false},
		{"force-flush-wait-repo-check", control.ForceFlushWaitRepoCheck, false},
		{" FORCE_FLUSH_WAIT_REPO_CHECK ", control.ForceFlushWaitRepoCheck, false},
		{"force-flush", "", true},
		{"", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := control.ParseMode(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("control.ParseMode(%q) = %q, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	backend := sim.NewCloud(sim.CloudOptions{}).Backend(sim.BackendOptions{DeploymentID: "d", Flavor: "small"})
	valid := func() janitor.Options {
		return janitor.Options{DeploymentID: "d", Flavors: []janitor.Flavor{{Name: "small", Backend: backend}}}
	}
	tests := []struct {
		name string
		edit func(*janitor.Options)
		want []string // substrings of the error; none: valid
	}{
		{"defaults", func(*janitor.Options) {}, nil},
		{"everything set", func(o *janitor.Options) {
			o.Interval, o.SweepLookback = time.Minute, 72*time.Hour
			o.Hook = &github.HookRef{Kind: github.HookOrg, HookID: 7}
			o.PollRepos = []string{"octo-org/octo-repo"}
			o.Route = func([]string) (string, bool) { return "small", true }
		}, nil},
		{"no deployment, no flavors", func(o *janitor.Options) { o.DeploymentID, o.Flavors = "", nil },
			[]string{"deployment_id: must not be empty", "flavors: at least one flavor"}},
		{"flavor problems", func(o *janitor.Options) {
			o.Flavors = append(o.Flavors, janitor.Flavor{Name: "small"}, janitor.Flavor{BootTimeout: -time.Second, Backend: backend})
		}, []string{`flavors[1].name: duplicate flavor "small"`, "flavors[1].backend", "flavors[2].name: must not be empty", "flavors[2].boot_timeout: must not be negative"}},
		{"lookback beyond GitHub's retention", func(o *janitor.Options) { o.SweepLookback = 73 * time.Hour },
			[]string{"sweep_lookback: must be between 0 and 72h"}},
		{"bad hook", func(o *janitor.Options) { o.Hook = &github.HookRef{Kind: "repo"} }, []string{"hook.id: a repo hook needs its id"}},
		{"polling without a router", func(o *janitor.Options) { o.PollRepos = []string{"octo-repo"} },
			[]string{`poll_repos[0]: must be owner/name (got "octo-repo")`, "route: polling repositories needs a label router"}},
		{"negative bounds", func(o *janitor.Options) { o.MaxDeletesPerPass, o.FlushWaitAttempts, o.Interval = -1, -1, -time.Second },
			[]string{"max_deletes_per_pass", "flush_wait_attempts", "interval"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.edit(&o)
			err := o.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
