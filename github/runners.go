package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	gh "github.com/google/go-github/v62/github"

	"github.com/runner-spawner/runner-spawner/internal/secret"
)

// JITConfigRequest asks for a single-use runner config.
type JITConfigRequest struct {
	Name   string   // the runner's name, unique in the org or repo
	Labels []string // all of the runner's labels (1 to 100)
	// RunnerGroup by name ("": Options.RunnerGroup). Org paths only.
	RunnerGroup string
}

// JITConfig is a minted single-use runner: pass EncodedJITConfig to run.sh --jitconfig.
type JITConfig struct {
	RunnerID         int64
	RunnerName       string
	EncodedJITConfig secret.Value
}

// Runner is a self-hosted runner registration.
type Runner struct {
	ID        int64
	Name      string
	Status    string // online | offline
	Busy      bool
	Labels    []string
	Ephemeral bool
}

// wireRunner decodes a runner: go-github v62's Runner lacks "ephemeral".
type wireRunner struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Busy      bool   `json:"busy"`
	Ephemeral bool   `json:"ephemeral"`
	Labels    []struct {
		Name string `json:"name"`
	} `json:"labels"`
}

func (w wireRunner) runner() Runner {
	r := Runner{ID: w.ID, Name: w.Name, Status: w.Status, Busy: w.Busy, Ephemeral: w.Ephemeral}
	for _, l := range w.Labels {
		r.Labels = append(r.Labels, l.Name)
	}
	return r
}

// GenerateJITConfig mints a single-use runner at the org or repo level, per
// Options.Path. Org runners join the runner group named in req (resolved to its id over
// all pages, then cached). Errors: ErrConflict when the name is taken, ErrNotFound when
// the org, repo or group does not exist, and the usual ones. Essential priority. Not
// resent after a timeout, since GitHub may have registered the runner.
func (c *Client) GenerateJITConfig(ctx context.Context, req JITConfigRequest) (*JITConfig, error) {
	if req.Name == "" || len(req.Labels) == 0 {
		return nil, fmt.Errorf("generate jit config %q: name and labels are required", req.Name)
	}
	body := &gh.GenerateJITConfigRequest{Name: req.Name, Labels: req.Labels, WorkFolder: gh.String("_work"), RunnerGroupID: 1}
	if c.repo == "" {
		group := req.RunnerGroup
		if group == "" {
			group = c.opts.RunnerGroup
		}
		id, err := c.runnerGroupID(ctx, group)
		if err != nil {
			return nil, fmt.Errorf("generate jit config %s: %w", req.Name, err)
		}
		body.RunnerGroupID = id
	} else if req.RunnerGroup != "" && !strings.EqualFold(req.RunnerGroup, DefaultRunnerGroup) {
		return nil, fmt.Errorf("generate jit config %s: runner group %q: groups are for org paths only", req.Name, req.RunnerGroup)
	}
	var out *gh.JITRunnerConfig
	err := c.do(ctx, call{op: "generate_jit_config", prio: essential, mutating: true}, func(ctx context.Context, api *gh.Client) (resp *gh.Response, err error) {
		if c.repo == "" {
			out, resp, err = api.Actions.GenerateOrgJITConfig(ctx, c.owner, body)
		} else {
			out, resp, err = api.Actions.GenerateRepoJITConfig(ctx, c.owner, c.repo, body)
		}
		return resp, err
	})
	if err != nil {
		return nil, fmt.Errorf("generate jit config %s: %w", req.Name, err)
	}
	return &JITConfig{
		RunnerID:         out.GetRunner().GetID(),
		RunnerName:       out.GetRunner().GetName(),
		EncodedJITConfig: secret.New(out.GetEncodedJITConfig()),
	}, nil
}

// runnerGroupID resolves an org runner group name, case-insensitively.
func (c *Client) runnerGroupID(ctx context.Context, name string) (int64, error) {
	key := strings.ToLower(name)
	c.groupMu.Lock()
	defer c.groupMu.Unlock()
	if id, ok := c.groups[key]; ok {
		return id, nil
	}
	found := map[string]int64{}
	for page := 1; page != 0; {
		var groups *gh.RunnerGroups
		var next int
		err := c.do(ctx, call{op: "list_runner_groups", prio: essential, idempotent: true}, func(ctx context.Context, api *gh.Client) (*gh.Response, error) {
			g, resp, err := api.Actions.ListOrganizationRunnerGroups(ctx, c.owner, &gh.ListOrgRunnerGroupOptions{ListOptions: gh.ListOptions{Page: page, PerPage: 100}})
			groups = g
			if resp != nil {
				next = resp.NextPage
			}
			return resp, err
		})
		if err != nil {
			return 0, fmt.Errorf("list runner groups: %w", err)
		}
		for _, g := range groups.RunnerGroups {
			found[strings.ToLower(g.GetName())] = g.GetID()
		}
		page = next
	}
	c.groups = found
	id, ok := found[key]
	if !ok {
		return 0, fmt.Errorf("runner group %q: %w", name, ErrNotFound)
	}
	return id, nil
}

// runnerPage is one cached page of the runner list, for conditional requests.
type runnerPage struct {
	etag    string
	runners []Runner
	next    int
}

// ListRunners returns the registered runners whose names start with namePrefix, over all
// pages. Each page is requested with the ETag of its last answer, and GitHub answers an
// unchanged page with 304, which costs no rate budget. Optional priority.
func (c *Client) ListRunners(ctx context.Context, namePrefix string) ([]Runner, error) {
	var all []Runner
	page := 1
	for {
		c.etagMu.Lock()
		cached, haveCached := c.etags[page]
		c.etagMu.Unlock()

		var fresh runnerPage
		notModified := false
		err := c.do(ctx, call{op: "list_runners", prio: optional, idempotent: true}, func(ctx context.Context, api *gh.Client) (*gh.Response, error) {
			req, err := api.NewRequest(http.MethodGet, fmt.Sprintf("%s/actions/runners?per_page=100&page=%d", c.scope(), page), nil)
			if err != nil {
				return nil, err
			}
			if haveCached && cached.etag != "" {
				req.Header.Set("If-None-Match", cached.etag)
			}
			var body struct {
				Runners []wireRunner `json:"runners"`
			}
			resp, err := api.Do(ctx, req, &body)
			if resp != nil && resp.StatusCode == http.StatusNotModified {
				notModified = true
				return resp, nil
			}
			if err != nil {
				return resp, err
			}
			fresh = runnerPage{etag: resp.Header.Get("ETag"), next: resp.NextPage}
			for _, w := range body.Runners {
				fresh.runners = append(fresh.runners, w.runner())
			}
			return resp, nil
		})
		if err != nil {
			return nil, fmt.Errorf("list runners: %w", err)
		}
		if notModified {
			fresh = cached
		} else {
			c.etagMu.Lock()
			c.etags[page] = fresh
			c.etagMu.Unlock()
		}
		for _, r := range fresh.runners {
			if strings.HasPrefix(r.Name, namePrefix) {
				all = append(all, r)
			}
		}
		if fresh.next == 0 || fresh.next <= page {
			c.etagMu.Lock()
			for p := range c.etags {
				if p > page {
					delete(c.etags, p) // the list got shorter
				}
			}
			c.etagMu.Unlock()
			return all, nil
		}
		page = fresh.next
	}
}

// GetRunner returns one runner; ErrNotFound when it is gone. Optional priority.
func (c *Client) GetRunner(ctx context.Context, id int64) (Runner, error) {
	var w wireRunner
	err := c.do(ctx, call{op: "get_runner", prio: optional, idempotent: true}, func(ctx context.Context, api *gh.Client) (*gh.Response, error) {
		w = wireRunner{}
		req, err := api.NewRequest(http.MethodGet, fmt.Sprintf("%s/actions/runners/%d", c.scope(), id), nil)
		if err != nil {
			return nil, err
		}
		return api.Do(ctx, req, &w)
	})
	if err != nil {
		return Runner{}, fmt.Errorf("get runner %d: %w", id, err)
	}
	return w.runner(), nil
}

// DeleteRunner removes a runner registration. Gone already (404) is success; a runner
// running a job cannot be removed (422): ErrRunnerBusy. Essential priority; idempotent.
func (c *Client) DeleteRunner(ctx context.Context, id int64) error {
	err := c.do(ctx, call{op: "delete_runner", prio: essential, mutating: true, idempotent: true, on422: ErrRunnerBusy}, func(ctx context.Context, api *gh.Client) (*gh.Response, error) {
		if c.repo == "" {
			return api.Actions.RemoveOrganizationRunner(ctx, c.owner, id)
		}
		return api.Actions.RemoveRunner(ctx, c.owner, c.repo, id)
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete runner %d: %w", id, err)
	}
	return nil
}

// labelsOf copies labels (nil stays nil).
func labelsOf(l []string) []string { return slices.Clone(l) }
