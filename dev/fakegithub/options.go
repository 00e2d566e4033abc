package fakegithub

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Options configure a Server. The zero value serves an open (no auth) fake for one org
// with one repository.
type Options struct {
	// Addr to listen on (default 127.0.0.1:0, a random port).
	Addr string
	// PublicURL is the base URL runners and webhook payloads are given (default: URL()).
	// Instances in containers reach the fake on a bridge address, not on 127.0.0.1.
	PublicURL string

	// Owner is the organisation (default "octo-org").
	Owner string
	// Repos are "owner/name" or bare "name" (then under Owner); default ["<Owner>/octo-repo"].
	Repos []string
	// RunnerGroups are extra org runner groups besides "Default" (id 1).
	RunnerGroups []string

	// Token is an accepted personal access token.
	Token string
	// AppID and AppPublicKey enable GitHub App auth: App JWTs are verified against the
	// key, and installation tokens minted by POST /app/installations/{id}/access_tokens
	// are accepted. See GenerateAppKey.
	AppID        int64
	AppPublicKey *rsa.PublicKey
	// InstallationID of the App on Owner (default 1).
	InstallationID int64
	// TokenTTL is the lifetime of installation tokens (default 1h). Clients refresh a
	// minute before expiry, so 61s makes a client refresh after about a second.
	TokenTTL time.Duration
	// When Token is empty and AppID is 0 the fake is open: any request is accepted.

	// RateLimit is the budget per credential and window (default 5000), RateLimitWindow
	// its window (default 1h). Every answer carries X-RateLimit-* headers; an exhausted
	// budget answers 403 as GitHub does. 304 answers cost nothing.
	RateLimit       int
	RateLimitWindow time.Duration
	// Secondary simulates GitHub's secondary rate limits (zero: none).
	Secondary SecondaryLimit
	// Clock is the time of the rate budgets (default the wall clock); see ScaledClock.
	Clock Clock
	// MaxPerPage caps per_page (default 100, as GitHub). Tests lower it to get many pages.
	MaxPerPage int

	// WebhookURL and WebhookSecret: where signed webhooks go (SetWebhookTarget changes them).
	WebhookURL    string
	WebhookSecret string
	// HookID is the id of the one webhook the fake delivers through, visible as a repo
	// hook (every repo), an org hook and the App hook (default 1).
	HookID int64
	// Webhooks tunes delivery (workers, timeout, faults).
	Webhooks WebhookOptions

	// JobDuration is how long a job runs once its runner started it (default 0).
	JobDuration time.Duration
	// RunnerLostAfter: a runner holding a job that shows no sign of life this long is
	// lost; its job completes with conclusion failure (default 5s).
	RunnerLostAfter time.Duration
	// PollWait caps one runner long poll (default 20s).
	PollWait time.Duration

	Logger *slog.Logger
}

// WebhookOptions tune webhook delivery. Fault rates are probabilities in [0,1], drawn
// from a generator seeded with Seed, so a run is repeatable.
type WebhookOptions struct {
	// Workers deliver concurrently, as GitHub does (default 4; 1 keeps order).
	Workers int
	// Timeout per delivery (default 10s, GitHub's).
	Timeout time.Duration
	// Faults applied to new deliveries.
	Faults WebhookFaults
}

// WebhookFaults disturb deliveries the way GitHub's do.
type WebhookFaults struct {
	Seed int64 `json:"seed"`
	// DropRate: the delivery is recorded as failed and never sent.
	DropRate float64 `json:"drop_rate"`
	// DropNext drops the next N deliveries.
	DropNext int `json:"drop_next"`
	// DuplicateRate: the same delivery (same GUID) is sent twice.
	DuplicateRate float64 `json:"duplicate_rate"`
	// RedeliverRate: a manual redelivery (same GUID, redelivery=true) follows.
	RedeliverRate float64 `json:"redeliver_rate"`
	// ReorderRate: the delivery is held back and sent after the next one (or after
	// ReorderHold, default 500ms, if none comes), so in_progress can beat queued.
	ReorderRate float64       `json:"reorder_rate"`
	ReorderHold time.Duration `json:"reorder_hold"`
}

func (o Options) withDefaults() Options {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Owner == "" {
		o.Owner = "octo-org"
	}
	if len(o.Repos) == 0 {
		o.Repos = []string{"octo-repo"}
	}
	repos := make([]string, 0, len(o.Repos))
	for _, r := range o.Repos {
		if !strings.Contains(r, "/") {
			r = o.Owner + "/" + r
		}
		repos = append(repos, r)
	}
	o.Repos = repos
	if o.InstallationID == 0 {
		o.InstallationID = 1
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = time.Hour
	}
	if o.RateLimit <= 0 {
		o.RateLimit = 5000
	}
	if o.RateLimitWindow <= 0 {
		o.RateLimitWindow = time.Hour
	}
	if o.Clock == nil {
		o.Clock = wallClock{}
	}
	if o.MaxPerPage <= 0 {
		o.MaxPerPage = 100
	}
	if o.HookID == 0 {
		o.HookID = 1
	}
	if o.Webhooks.Workers <= 0 {
		o.Webhooks.Workers = 4
	}
	if o.Webhooks.Timeout <= 0 {
		o.Webhooks.Timeout = 10 * time.Second
	}
	if o.RunnerLostAfter <= 0 {
		o.RunnerLostAfter = 5 * time.Second
	}
	if o.PollWait <= 0 {
		o.PollWait = 20 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// AppKey is a test GitHub App keypair: give PrivateKeyPEM to the client and PublicKey to
// the fake.
type AppKey struct {
	PrivateKeyPEM []byte
	PublicKey     *rsa.PublicKey
}

// GenerateAppKey makes a fresh 2048-bit RSA App key (PKCS#1 PEM, as GitHub hands out).
func GenerateAppKey() (AppKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return AppKey{}, fmt.Errorf("generate app key: %w", err)
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	return AppKey{PrivateKeyPEM: p, PublicKey: &k.PublicKey}, nil
}

// ParsePublicKeyPEM reads an App public key (PKIX or PKCS#1 PEM), or the public half of
// a private key PEM, for the standalone fake.
func ParsePublicKeyPEM(b []byte) (*rsa.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("parse app key: no PEM block")
	}
	switch blk.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse app key: %w", err)
		}
		rk, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("parse app key: not an RSA key")
		}
		return rk, nil
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse app key: %w", err)
		}
		return k, nil
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse app key: %w", err)
		}
		return &k.PublicKey, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse app key: %w", err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("parse app key: not an RSA key")
		}
		return &rk.PublicKey, nil
	}
	return nil, fmt.Errorf("parse app key: unexpected PEM block %q", blk.Type)
}
