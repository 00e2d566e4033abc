package github

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	gh "github.com/google/go-github/v62/github"

	"github.com/runner-spawner/runner-spawner/internal/ghname"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
)

// Client talks to the GitHub REST API for one org or repo. It is safe for concurrent use.
type Client struct {
	opts        Options
	log         *slog.Logger
	owner, repo string // repo is "" for an org Path
	baseURL     *url.URL
	transport   http.RoundTripper

	appsTransport *ghinstallation.AppsTransport // nil with token auth
	app           *gh.Client                    // App JWT client, nil with token auth

	apiMu sync.Mutex
	api   *gh.Client // token or installation client; made on first use when the installation is looked up

	clock     clock
	sem       *prioritySem
	mutating  chan struct{} // MaxMutatingInFlight slots
	ceiling   *ceiling      // nil: no RatePerHour
	points    *pointsPacer  // nil: no secondary pacing
	apiBudget *budget
	appBudget *budget
	metrics   *metrics
	retryBase time.Duration

	groupMu sync.Mutex       // one group listing at a time
	groups  map[string]int64 // lower-case group name → id

	etagMu sync.Mutex
	etags  map[int]runnerPage // ListRunners page → last answer
}

// RateLimitInfo is what GitHub's X-RateLimit-* headers last said.
type RateLimitInfo struct {
	Limit, Remaining, Used int
	Reset                  time.Time
	Updated                time.Time // when the headers were read; zero before any answer
}

// New returns a client. It does no I/O: an App installation id left 0 is looked up on
// the first call.
func New(opts Options) (*Client, error) { return newWithClock(opts, wallClock{}) }

// newWithClock is New on a given clock (tests compress time with it).
func newWithClock(opts Options, clk clock) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("github options: %w", err)
	}
	opts = opts.withDefaults()
	base, err := url.Parse(opts.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse base url: %w", err)
	}
	c := &Client{
		opts:      opts,
		log:       opts.Logger,
		baseURL:   base,
		clock:     clk,
		sem:       newPrioritySem(opts.MaxInFlight),
		mutating:  make(chan struct{}, opts.MaxMutatingInFlight),
		apiBudget: &budget{name: "api"},
		appBudget: &budget{name: "app"},
		retryBase: 250 * time.Millisecond,
		groups:    map[string]int64{},
		etags:     map[int]runnerPage{},
	}
	if opts.RatePerHour > 0 {
		c.ceiling = &ceiling{per: opts.RatePerHour}
	}
	if opts.SecondaryPointsPerMinute > 0 {
		c.points = newPointsPacer(opts.SecondaryPointsPerMinute)
	}
	c.owner, c.repo, _ = strings.Cut(opts.Path, "/")
	if c.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	if opts.HTTPClient != nil && opts.HTTPClient.Transport != nil {
		c.transport = opts.HTTPClient.Transport
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = opts.MaxInFlight
		c.transport = t
	}

	if !opts.Token.IsZero() {
		c.api = c.newGitHub(&tokenTransport{next: c.transport, token: opts.Token})
		return c, nil
	}
	atr, err := ghinstallation.NewAppsTransport(c.transport, opts.AppID, opts.AppPrivateKey)
	if err != nil {
		return nil, fmt.Errorf("load app key: %w", err)
	}
	atr.BaseURL = strings.TrimSuffix(opts.BaseURL, "/")
	c.appsTransport = atr
	c.app = c.newGitHub(atr)
	if opts.InstallationID != 0 {
		c.api = c.newGitHub(c.installationTransport(opts.InstallationID))
	}
	return c, nil
}

func (c *Client) newGitHub(rt http.RoundTripper) *gh.Client {
	g := gh.NewClient(&http.Client{Transport: rt})
	g.BaseURL = c.baseURL
	g.UserAgent = "runner-spawner"
	return g
}

func (c *Client) installationTransport(id int64) *ghinstallation.Transport {
	itr := ghinstallation.NewFromAppsTransport(c.appsTransport, id)
	itr.BaseURL = strings.TrimSuffix(c.opts.BaseURL, "/")
	return itr
}

// apiClient returns the client for installation (or token) calls, looking up the App's
// installation on the org or repo first if its id was not given.
func (c *Client) apiClient(ctx context.Context) (*gh.Client, error) {
	c.apiMu.Lock()
	defer c.apiMu.Unlock()
	if c.api != nil {
		return c.api, nil
	}
	var inst *gh.Installation
	// No installation on the org or repo means this App cannot act there at all.
	err := c.do(ctx, call{op: "find_installation", prio: essential, app: true, idempotent: true, on404: ErrUnauthorized},
		func(ctx context.Context, app *gh.Client) (resp *gh.Response, err error) {
			if c.repo != "" {
				inst, resp, err = app.Apps.FindRepositoryInstallation(ctx, c.owner, c.repo)
			} else {
				inst, resp, err = app.Apps.FindOrganizationInstallation(ctx, c.owner)
			}
			return resp, err
		})
	if err != nil {
		return nil, fmt.Errorf("find app installation on %s: %w", c.opts.Path, err)
	}
	c.log.Info("found github app installation", "installation_id", inst.GetID(), "path", c.opts.Path)
	c.api = c.newGitHub(c.installationTransport(inst.GetID()))
	return c.api, nil
}

// RateLimit returns what GitHub's rate-limit headers last said for the installation or
// token credential. It makes no API call.
func (c *Client) RateLimit() RateLimitInfo { return c.apiBudget.info() }

// tokenTransport adds a bearer token.
type tokenTransport struct {
	next  http.RoundTripper
	token secret.Value
}

func (t *tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+t.token.Reveal())
	return t.next.RoundTrip(r)
}

// scope returns the URL prefix for runner calls: "orgs/ORG" or "repos/OWNER/REPO".
func (c *Client) scope() string {
	if c.repo == "" {
		return "orgs/" + url.PathEscape(c.owner)
	}
	return "repos/" + url.PathEscape(c.owner) + "/" + url.PathEscape(c.repo)
}

// splitRepo checks repo before it goes into an API path: go-github puts owner and name
// into the path as they are, so "../.." would reach another endpoint.
func splitRepo(repo string) (owner, name string, err error) {
	owner, name, err = ghname.SplitRepo(repo)
	if err != nil {
		return "", "", fmt.Errorf("repo %q: %w", untrusted.Log(repo), err)
	}
	return owner, name, nil
}
