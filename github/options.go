package github

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runner-spawner/runner-spawner/internal/secret"
)

// Defaults for Options fields left zero.
const (
	DefaultBaseURL          = "https://api.github.com/"
	DefaultRunnerGroup      = "default"
	DefaultTimeout          = 10 * time.Second
	DefaultMaxInFlight      = 8
	DefaultReserveThreshold = 500
	// DefaultSecondaryPointsPerMinute is 80% of the 900 points a minute GitHub
	// documents for REST calls: the rest is left for other users of the credential.
	DefaultSecondaryPointsPerMinute = 720
	// DefaultMaxMutatingInFlight: GitHub asks for mutating calls to be made serially;
	// two at once hides one call's latency without crowding its secondary limit.
	DefaultMaxMutatingInFlight = 2
	DefaultMaxWait             = time.Minute
	// SecondaryPacingOff as SecondaryPointsPerMinute sends calls without pacing them
	// to a points budget.
	SecondaryPacingOff = -1
)

// Options configure a Client. Authenticate with Token, or with a GitHub App (AppID,
// AppPrivateKey and optionally InstallationID), not both.
type Options struct {
	// BaseURL of the REST API (default https://api.github.com/; GitHub Enterprise
	// Server: https://HOST/api/v3/).
	BaseURL string
	// Path is where runners are registered: "org" or "owner/repo".
	Path string
	// RunnerGroup is the org runner group new runners join (default "default", matched
	// case-insensitively, so GitHub's "Default" group). Org only.
	RunnerGroup string

	// Token is a personal access token (or any bearer token GitHub accepts).
	Token secret.Value
	// AppID and AppPrivateKey (PEM) authenticate as a GitHub App; installation tokens
	// are minted, cached and refreshed a minute before they expire.
	AppID         int64
	AppPrivateKey []byte
	// InstallationID of the App on the org or repo; 0 looks it up from Path.
	InstallationID int64

	// Timeout bounds each HTTP request (default 10s), whether or not ctx has a deadline.
	Timeout time.Duration
	// MaxWait bounds how long a call waits for rate-limit budget (GitHub's reset, the
	// reserve guard, the ceiling, the secondary limit) when ctx has no earlier deadline
	// (default 1m). A wait that would end later fails at once with a *RateLimitError.
	MaxWait time.Duration
	// MaxInFlight bounds concurrent requests (default 8).
	MaxInFlight int
	// MaxMutatingInFlight bounds concurrent mutating requests (minting, deleting,
	// redelivering; default 2): GitHub's secondary limits punish concurrent writes.
	MaxMutatingInFlight int
	// RatePerHour is a ceiling for operators who share a credential: at most this many
	// calls in any hour, spent as they come (not a smoothed rate). 0 (the default): no
	// ceiling; GitHub's own budget, read from every answer, decides.
	RatePerHour int
	// RateBurst is no longer used (the smoothed token bucket it sized is gone); it is
	// accepted so that existing settings still validate.
	RateBurst int
	// SecondaryPointsPerMinute paces calls under GitHub's secondary limit on points
	// (a GET costs 1, a mutating call 5; default 720, 80% of GitHub's 900).
	// SecondaryPacingOff (-1) turns the pacing off, for a GitHub Enterprise Server
	// whose secondary limits are disabled: 403/429 answers are still honoured.
	SecondaryPointsPerMinute int
	// ReserveThreshold: while GitHub's remaining budget is below it, optional calls
	// (listings, job checks) wait for the reset and essential ones (minting runner
	// configs, deleting runners, redelivering) go ahead (default 500).
	ReserveThreshold int

	// HTTPClient's Transport is used when set (tests); its Timeout is ignored in favour
	// of Timeout.
	HTTPClient *http.Client
	// Logger (nil: discard).
	Logger *slog.Logger
	// Registerer receives the spawner_github_* metrics (nil: not registered).
	Registerer prometheus.Registerer
}

// OptionError is one problem Validate found.
type OptionError struct {
	Option string // the Options field
	Reason string
}

func (e *OptionError) Error() string { return e.Option + ": " + e.Reason }

// Validate returns every problem with o at once, as errors.Join of *OptionError.
func (o Options) Validate() error {
	var errs []error
	bad := func(opt, format string, args ...any) {
		errs = append(errs, &OptionError{Option: opt, Reason: fmt.Sprintf(format, args...)})
	}
	if o.BaseURL != "" {
		u, err := url.Parse(o.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("BaseURL", "must be an absolute http(s) URL (got %q)", o.BaseURL)
		}
	}
	owner, repo, isRepo := strings.Cut(o.Path, "/")
	switch {
	case o.Path == "":
		bad("Path", `must be "org" or "owner/repo"`)
	case owner == "" || (isRepo && (repo == "" || strings.Contains(repo, "/"))) || strings.ContainsAny(o.Path, " ?#"):
		bad("Path", `must be "org" or "owner/repo" (got %q)`, o.Path)
	}
	if isRepo && o.RunnerGroup != "" && !strings.EqualFold(o.RunnerGroup, DefaultRunnerGroup) {
		bad("RunnerGroup", "runner groups are for org paths only (got %q with repo %q)", o.RunnerGroup, o.Path)
	}
	app := o.AppID != 0 || len(o.AppPrivateKey) > 0 || o.InstallationID != 0
	switch {
	case !o.Token.IsZero() && app:
		bad("Token", "set either Token or the App (AppID, AppPrivateKey), not both")
	case o.Token.IsZero() && !app:
		bad("Token", "set Token or the App (AppID, AppPrivateKey)")
	case app:
		if o.AppID <= 0 {
			bad("AppID", "must be positive (got %d)", o.AppID)
		}
		if len(o.AppPrivateKey) == 0 {
			bad("AppPrivateKey", "must be set with AppID")
		} else if err := checkPEMKey(o.AppPrivateKey); err != nil {
			bad("AppPrivateKey", "%v", err)
		}
		if o.InstallationID < 0 {
			bad("InstallationID", "must not be negative (got %d)", o.InstallationID)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Timeout", o.Timeout}, {"MaxWait", o.MaxWait}} {
		if d.v < 0 {
			bad(d.name, "must not be negative (got %s)", d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"MaxInFlight", o.MaxInFlight}, {"MaxMutatingInFlight", o.MaxMutatingInFlight}, {"RatePerHour", o.RatePerHour}, {"RateBurst", o.RateBurst}, {"ReserveThreshold", o.ReserveThreshold}} {
		if n.v < 0 {
			bad(n.name, "must not be negative (got %d)", n.v)
		}
	}
	if o.SecondaryPointsPerMinute < SecondaryPacingOff {
		bad("SecondaryPointsPerMinute", "must be positive, 0 (the default) or -1 (off) (got %d)", o.SecondaryPointsPerMinute)
	}
	return errors.Join(errs...)
}

func checkPEMKey(b []byte) error {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return errors.New("no PEM block found")
	}
	if _, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return nil
	}
	if _, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		return nil
	}
	return fmt.Errorf("PEM block %q is not an RSA private key", blk.Type)
}

func (o Options) withDefaults() Options {
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	if !strings.HasSuffix(o.BaseURL, "/") {
		o.BaseURL += "/"
	}
	if o.RunnerGroup == "" {
		o.RunnerGroup = DefaultRunnerGroup
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxWait == 0 {
		o.MaxWait = DefaultMaxWait
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxMutatingInFlight == 0 {
		o.MaxMutatingInFlight = min(DefaultMaxMutatingInFlight, o.MaxInFlight)
	}
	if o.SecondaryPointsPerMinute == 0 {
		o.SecondaryPointsPerMinute = DefaultSecondaryPointsPerMinute
	}
	if o.ReserveThreshold == 0 {
		o.ReserveThreshold = DefaultReserveThreshold
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
