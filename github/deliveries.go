package github

import (
	"context"
	"fmt"
	"time"

	gh "github.com/google/go-github/v62/github"
)

// Hook kinds for HookRef.Kind.
const (
	HookRepo = "repo"
	HookOrg  = "org"
	HookApp  = "app"
)

// HookRef names a webhook whose deliveries to read: a repo hook (Repo "owner/name",
// default the repo of Options.Path), an org hook (Org, default the owner of
// Options.Path) or the GitHub App's hook (authenticated with the App JWT; no HookID).
type HookRef struct {
	Kind   string // "repo", "org" or "app"
	Repo   string
	Org    string
	HookID int64
}

// Delivery is one webhook delivery attempt as GitHub recorded it.
type Delivery struct {
	ID          int64
	GUID        string // X-GitHub-Delivery; shared by redeliveries
	DeliveredAt time.Time
	Redelivery  bool
	Status      string // "OK" or GitHub's failure text
	StatusCode  int    // the receiver's answer; 0 when there was none
	Event       string
	Action      string
}

// Failed reports whether the receiver did not answer 2xx.
func (d Delivery) Failed() bool { return d.StatusCode < 200 || d.StatusCode > 299 }

func (c *Client) hookTarget(ref HookRef) (owner, repo string, err error) {
	switch ref.Kind {
	case HookApp:
		return "", "", nil
	case HookOrg:
		owner = ref.Org
		if owner == "" {
			owner = c.owner
		}
	case HookRepo:
		r := ref.Repo
		if r == "" && c.repo != "" {
			r = c.owner + "/" + c.repo
		}
		if owner, repo, err = splitRepo(r); err != nil {
			return "", "", err
		}
	default:
		return "", "", fmt.Errorf("hook kind %q is not repo, org or app", ref.Kind)
	}
	if ref.HookID <= 0 {
		return "", "", fmt.Errorf("%s hook needs a hook id", ref.Kind)
	}
	return owner, repo, nil
}

// ListDeliveries returns the hook's deliveries delivered at or after since, newest
// first, following the cursor over pages and stopping at the first older one. Optional
// priority; App hook calls use the App JWT.
func (c *Client) ListDeliveries(ctx context.Context, ref HookRef, since time.Time) ([]Delivery, error) {
	owner, repo, err := c.hookTarget(ref)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	var out []Delivery
	cursor := ""
	for {
		var items []*gh.HookDelivery
		var next string
		err := c.do(ctx, call{op: "list_deliveries", prio: optional, app: ref.Kind == HookApp, idempotent: true}, func(ctx context.Context, api *gh.Client) (resp *gh.Response, err error) {
			opts := &gh.ListCursorOptions{PerPage: 100, Cursor: cursor}
			switch ref.Kind {
			case HookApp:
				items, resp, err = api.Apps.ListHookDeliveries(ctx, opts)
			case HookOrg:
				items, resp, err = api.Organizations.ListHookDeliveries(ctx, owner, ref.HookID, opts)
			default:
				items, resp, err = api.Repositories.ListHookDeliveries(ctx, owner, repo, ref.HookID, opts)
			}
			if resp != nil {
				next = resp.Cursor
			}
			return resp, err
		})
		if err != nil {
			return nil, fmt.Errorf("list %s hook deliveries: %w", ref.Kind, err)
		}
		for _, d := range items {
			if d.GetDeliveredAt().Before(since) {
				return out, nil
			}
			out = append(out, Delivery{
				ID: d.GetID(), GUID: d.GetGUID(), DeliveredAt: d.GetDeliveredAt().Time, Redelivery: d.GetRedelivery(),
				Status: d.GetStatus(), StatusCode: d.GetStatusCode(), Event: d.GetEvent(), Action: d.GetAction(),
			})
		}
		if next == "" || next == cursor {
			return out, nil
		}
		cursor = next
	}
}

// Redeliver asks GitHub to deliver a recorded delivery again (same GUID). Essential
// priority; not resent after a timeout (that could deliver twice).
func (c *Client) Redeliver(ctx context.Context, ref HookRef, deliveryID int64) error {
	owner, repo, err := c.hookTarget(ref)
	if err != nil {
		return fmt.Errorf("redeliver %d: %w", deliveryID, err)
	}
	err = c.do(ctx, call{op: "redeliver", prio: essential, mutating: true, app: ref.Kind == HookApp}, func(ctx context.Context, api *gh.Client) (resp *gh.Response, err error) {
		switch ref.Kind {
		case HookApp:
			_, resp, err = api.Apps.RedeliverHookDelivery(ctx, deliveryID)
		case HookOrg:
			_, resp, err = api.Organizations.RedeliverHookDelivery(ctx, owner, ref.HookID, deliveryID)
		default:
			_, resp, err = api.Repositories.RedeliverHookDelivery(ctx, owner, repo, ref.HookID, deliveryID)
		}
		return resp, err
	})
	if err != nil {
		return fmt.Errorf("redeliver %s hook delivery %d: %w", ref.Kind, deliveryID, err)
	}
	return nil
}
