package fakegithub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Server is a running fake GitHub. Create it with NewServer; all methods are safe for
// concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger
	ln   net.Listener
	hs   *http.Server
	url  string

	done      chan struct{} // closed by Close: long polls and workers end
	wg        sync.WaitGroup
	closeOnce sync.Once
	whq       *deliveryQueue

	mu            sync.Mutex
	closed        bool
	publicURL     string
	webhookURL    string
	webhookSecret string
	whFaults      WebhookFaults
	whRand        *mrand.Rand
	faultRand     *mrand.Rand

	lastID     int64 // one id sequence for everything keeps ids unique across kinds
	repos      []*repo
	groups     []*runnerGroup
	labelIDs   map[string]int64
	runners    map[int64]*runner
	jobs       map[int64]*job
	jobOrder   []*job // creation order: the oldest queued job is the first match
	runs       map[int64]*run
	deliveries []*delivery
	tokens     map[string]installationToken
	faults     []*faultEntry
	faultSeq   int
	calls      []Call
	callCounts map[string]int
	timers     map[int64]*time.Timer // job id → its step timer

	rateMu     sync.Mutex // never held while taking mu
	rateLimit  int
	rateWindow time.Duration
	budgets    map[string]*rateBudget
	clock      Clock
	second     secondary
}

// NewServer starts a fake GitHub listening on opts.Addr. It panics if it cannot listen,
// like httptest.NewServer. Call Close when done (in tests: t.Cleanup(srv.Close)).
func NewServer(opts Options) *Server {
	opts = opts.withDefaults()
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		panic(fmt.Sprintf("fakegithub: listen on %s: %v", opts.Addr, err))
	}
	s := &Server{
		opts:          opts,
		log:           opts.Logger,
		ln:            ln,
		url:           "http://" + ln.Addr().String() + "/",
		done:          make(chan struct{}),
		webhookURL:    opts.WebhookURL,
		webhookSecret: opts.WebhookSecret,
		labelIDs:      map[string]int64{},
		runners:       map[int64]*runner{},
		jobs:          map[int64]*job{},
		runs:          map[int64]*run{},
		tokens:        map[string]installationToken{},
		budgets:       map[string]*rateBudget{},
		callCounts:    map[string]int{},
		timers:        map[int64]*time.Timer{},
		lastID:        1000,
		rateLimit:     opts.RateLimit,
		rateWindow:    opts.RateLimitWindow,
		clock:         opts.Clock,
		second: secondary{
			limit: opts.Secondary, inFlight: map[string]int{}, spent: map[string][]spend{},
		},
	}
	s.publicURL = s.url
	if opts.PublicURL != "" {
		s.publicURL = strings.TrimSuffix(opts.PublicURL, "/") + "/"
	}
	s.setWebhookFaultsLocked(opts.Webhooks.Faults)
	s.faultRand = mrand.New(mrand.NewPCG(uint64(opts.Webhooks.Faults.Seed), 0x5eed))
	for i, name := range opts.Repos {
		owner, rn, _ := strings.Cut(name, "/")
		s.repos = append(s.repos, &repo{id: int64(1296269 + i), owner: owner, name: rn})
	}
	s.groups = append(s.groups, &runnerGroup{id: 1, name: "Default", isDefault: true})
	for i, g := range opts.RunnerGroups {
		s.groups = append(s.groups, &runnerGroup{id: int64(2 + i), name: g})
	}
	s.whq = newDeliveryQueue()

	s.hs = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Go(func() { _ = s.hs.Serve(ln) })
	s.wg.Go(s.dispatchDeliveries)
	s.wg.Go(s.watchRunners)
	s.log.Info("fake github listening", "url", s.url, "public_url", s.publicURL)
	return s
}

// URL is the base URL of the REST API, with a trailing slash (a client's BaseURL).
func (s *Server) URL() string { return s.url }

// PublicURL is the base URL advertised to runners (Options.PublicURL, default URL()).
func (s *Server) PublicURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.publicURL
}

// Close stops the server, its webhook workers and timers, and waits for them.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		for id, t := range s.timers {
			t.Stop()
			delete(s.timers, id)
		}
		s.mu.Unlock()
		close(s.done)
		s.whq.close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.hs.Shutdown(ctx)
		cancel()
		_ = s.hs.Close()
		s.wg.Wait()
	})
}

// SetWebhookTarget changes where webhooks go (an empty url records deliveries as failed).
func (s *Server) SetWebhookTarget(url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhookURL, s.webhookSecret = url, secret
}

// SetWebhookFaults replaces the webhook delivery faults (and reseeds their generator).
func (s *Server) SetWebhookFaults(f WebhookFaults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setWebhookFaultsLocked(f)
}

func (s *Server) setWebhookFaultsLocked(f WebhookFaults) {
	if f.ReorderHold <= 0 {
		f.ReorderHold = 500 * time.Millisecond
	}
	s.whFaults = f
	s.whRand = mrand.New(mrand.NewPCG(uint64(f.Seed), 0xdeadbeef))
}

// AddRunnerGroup adds an org runner group and returns its id.
func (s *Server) AddRunnerGroup(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.groups[len(s.groups)-1].id + 1
	s.groups = append(s.groups, &runnerGroup{id: id, name: name})
	return id
}

// SetRateLimit changes the per-credential budget and starts fresh windows.
func (s *Server) SetRateLimit(limit int, window time.Duration) {
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	if limit > 0 {
		s.rateLimit = limit
	}
	if window > 0 {
		s.rateWindow = window
	}
	s.budgets = map[string]*rateBudget{}
}

func (s *Server) newIDLocked() int64 {
	s.lastID++
	return s.lastID
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newGUID() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// apiBase is the API URL used inside JSON bodies (no trailing slash).
func (s *Server) apiBaseLocked() string { return strings.TrimSuffix(s.publicURL, "/") }

// htmlBase stands in for https://github.com in html_url fields.
const htmlBase = "https://github.com"
