package openstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"

	"github.com/runner-spawner/runner-spawner/backends"
)

// resolveTTL is how long a name → id lookup is trusted. An operator who uploads a new
// image under the same name sees it used within this time, without a restart.
const resolveTTL = 5 * time.Minute

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// resolver turns the names or ids of a flavor's settings into ids, through Glance,
// Nova and Neutron, and caches the answers for every Backend of the cloud. Only
// successes are cached: a missing image is looked up again on the next create.
type resolver struct {
	c   *Cloud
	now func() time.Time
	mu  sync.Mutex
	ids map[string]cached
}

type cached struct {
	id      string
	expires time.Time
}

func newResolver(c *Cloud) *resolver {
	return &resolver{c: c, now: time.Now, ids: map[string]cached{}}
}

// lookup returns the cached id for key, or calls find and caches its answer.
func (r *resolver) lookup(ctx context.Context, key string, find func(context.Context) (string, error)) (string, error) {
	r.mu.Lock()
	e, ok := r.ids[key]
	r.mu.Unlock()
	if ok && r.now().Before(e.expires) {
		return e.id, nil
	}
	id, err := find(ctx)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.ids[key] = cached{id: id, expires: r.now().Add(resolveTTL)}
	r.mu.Unlock()
	return id, nil
}

// forget drops every cached id, after Nova said one of them does not exist (an
// image deleted and uploaded anew under the same name).
func (r *resolver) forget() {
	r.mu.Lock()
	clear(r.ids)
	r.mu.Unlock()
}

func badSpec(kind, ref, why string) error {
	return fmt.Errorf("%w: %s %q: %s", backends.ErrBadSpec, kind, ref, why)
}

// image resolves an image name or id. When several active images share the name
// (a new build uploaded beside the old one), the newest wins.
func (r *resolver) image(ctx context.Context, ref string) (string, error) {
	return r.lookup(ctx, "image\x00"+ref, func(ctx context.Context) (string, error) {
		if uuidRE.MatchString(ref) {
			img, err := images.Get(ctx, r.c.image, ref).Extract()
			switch {
			case err == nil && img.Status == images.ImageStatusActive:
				return img.ID, nil
			case err == nil:
				return "", badSpec("image", ref, fmt.Sprintf("is %s, not active", img.Status))
			case statusOf(describe(err)) != http.StatusNotFound:
				return "", fmt.Errorf("get image %s: %w", ref, describe(err))
			}
		}
		pages, err := images.List(r.c.image, images.ListOpts{Name: ref, Status: images.ImageStatusActive, Sort: "created_at:desc"}).AllPages(ctx)
		if err != nil {
			return "", fmt.Errorf("list images named %q: %w", ref, describe(err))
		}
		all, err := images.ExtractImages(pages)
		if err != nil {
			return "", fmt.Errorf("read images named %q: %w", ref, err)
		}
		all = slices.DeleteFunc(all, func(i images.Image) bool { return i.Name != ref || i.Status != images.ImageStatusActive })
		if len(all) == 0 {
			return "", badSpec("image", ref, "no active image has that name or id")
		}
		newest := slices.MaxFunc(all, func(a, b images.Image) int { return a.CreatedAt.Compare(b.CreatedAt) })
		return newest.ID, nil
	})
}

// flavor resolves a Nova flavor id or name. Nova flavor ids are free-form ("1",
// "m1.tiny" or a UUID), so the id is tried first, then the names.
func (r *resolver) flavor(ctx context.Context, ref string) (string, error) {
	return r.lookup(ctx, "flavor\x00"+ref, func(ctx context.Context) (string, error) {
		fl, err := flavors.Get(ctx, r.c.compute, ref).Extract()
		if err == nil {
			return fl.ID, nil
		}
		if statusOf(describe(err)) != http.StatusNotFound {
			return "", fmt.Errorf("get flavor %s: %w", ref, describe(err))
		}
		pages, err := flavors.ListDetail(r.c.compute, flavors.ListOpts{}).AllPages(ctx)
		if err != nil {
			return "", fmt.Errorf("list flavors: %w", describe(err))
		}
		all, err := flavors.ExtractFlavors(pages)
		if err != nil {
			return "", fmt.Errorf("read flavors: %w", err)
		}
		var ids []string
		for _, f := range all {
			if f.Name == ref {
				ids = append(ids, f.ID)
			}
		}
		switch len(ids) {
		case 0:
			return "", badSpec("nova flavor", ref, "no flavor has that name or id")
		case 1:
			return ids[0], nil
		}
		return "", badSpec("nova flavor", ref, fmt.Sprintf("%d flavors have that name; use the id", len(ids)))
	})
}

// network resolves a Neutron network name or id. A name seen in several projects (an
// admin's view) resolves to the one in our project, else to the one shared network.
func (r *resolver) network(ctx context.Context, ref string) (string, error) {
	return r.lookup(ctx, "network\x00"+ref, func(ctx context.Context) (string, error) {
		if uuidRE.MatchString(ref) {
			n, err := networks.Get(ctx, r.c.network, ref).Extract()
			if err == nil {
				return n.ID, nil
			}
			if statusOf(describe(err)) != http.StatusNotFound {
				return "", fmt.Errorf("get network %s: %w", ref, describe(err))
			}
		}
		pages, err := networks.List(r.c.network, networks.ListOpts{Name: ref}).AllPages(ctx)
		if err != nil {
			return "", fmt.Errorf("list networks named %q: %w", ref, describe(err))
		}
		all, err := networks.ExtractNetworks(pages)
		if err != nil {
			return "", fmt.Errorf("read networks named %q: %w", ref, err)
		}
		type cand struct {
			id      string
			project string
			shared  bool
		}
		var cands []cand
		for _, n := range all {
			if n.Name == ref {
				cands = append(cands, cand{n.ID, n.ProjectID, n.Shared})
			}
		}
		pick := func(keep func(cand) bool) []cand {
			var out []cand
			for _, c := range cands {
				if keep(c) {
					out = append(out, c)
				}
			}
			return out
		}
		if len(cands) > 1 && r.c.projectID != "" {
			if own := pick(func(c cand) bool { return c.project == r.c.projectID }); len(own) > 0 {
				cands = own
			} else {
				cands = pick(func(c cand) bool { return c.shared })
			}
		}
		switch len(cands) {
		case 0:
			return "", badSpec("network", ref, "no network has that name or id")
		case 1:
			return cands[0].id, nil
		}
		return "", badSpec("network", ref, fmt.Sprintf("%d networks have that name; use the id", len(cands)))
	})
}

// securityGroup resolves a security group name or id. Every project has a group named
// "default", so a name is looked up in our own project when the token says which.
func (r *resolver) securityGroup(ctx context.Context, ref string) (string, error) {
	return r.lookup(ctx, "secgroup\x00"+ref, func(ctx context.Context) (string, error) {
		if uuidRE.MatchString(ref) {
			g, err := groups.Get(ctx, r.c.network, ref).Extract()
			if err == nil {
				return g.ID, nil
			}
			if statusOf(describe(err)) != http.StatusNotFound {
				return "", fmt.Errorf("get security group %s: %w", ref, describe(err))
			}
		}
		pages, err := groups.List(r.c.network, groups.ListOpts{Name: ref, ProjectID: r.c.projectID}).AllPages(ctx)
		if err != nil {
			return "", fmt.Errorf("list security groups named %q: %w", ref, describe(err))
		}
		all, err := groups.ExtractGroups(pages)
		if err != nil {
			return "", fmt.Errorf("read security groups named %q: %w", ref, err)
		}
		all = slices.DeleteFunc(all, func(g groups.SecGroup) bool { return g.Name != ref })
		switch len(all) {
		case 0:
			return "", badSpec("security group", ref, "no security group of the project has that name or id")
		case 1:
			return all[0].ID, nil
		}
		return "", badSpec("security group", ref, fmt.Sprintf("%d security groups have that name; use the id", len(all)))
	})
}

// isMissingResource tells Nova's 400s about an image, flavor or network that vanished
// since it was resolved, so the cache is dropped and the next create looks again.
func isMissingResource(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		return false
	}
	msg := strings.ToLower(ae.Message)
	return strings.Contains(msg, "could not be found") || strings.Contains(msg, "not found")
}
