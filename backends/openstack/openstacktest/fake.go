// Package openstacktest is a small, stateful fake of the few Keystone, Nova, Glance
// and Neutron endpoints the OpenStack backend uses, speaking their real response
// shapes (error bodies, pagination links, microversion headers), with knobs for the
// failures a real cloud produces: over quota, no valid host, expired tokens, 5xx,
// slow answers.
//
// It is a test helper, like net/http/httptest: it backs fast unit tests and must not
// be imported by non-test code. It does not replace the tests against a real cloud.
package openstacktest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fixed credentials and names of the fake cloud.
const (
	Username     = "spawner"
	Password     = "secret-password"
	AppCredID    = "4b7d2f0c9e1a4d52a1b3c5d7e9f01234"
	AppCredSecr  = "app-cred-secret"
	ProjectID    = "0c2a9f4e6b8d4a1c9e3f5b7d9a1c3e5f"
	ProjectName  = "spawner-ci"
	Region       = "RegionOne"
	CloudName    = "fake"
	AppCredCloud = "fake-appcred"
)

// Options shape a fake cloud.
type Options struct {
	// MaxMicroversion is the newest compute microversion announced ("" = "2.93").
	MaxMicroversion string
	// InstanceQuota is the project's instance quota (0 = unlimited).
	InstanceQuota int
	// PageSize caps servers, images and networks per page (0 = 1000, Nova's default).
	PageSize int
	// TLS serves HTTPS with a self-signed certificate (see CAFile).
	TLS bool
	// TokenTTL is how long an issued token is valid (0 = an hour).
	TokenTTL time.Duration
}

// Cloud is a running fake. All methods are safe for concurrent use.
type Cloud struct {
	// URL is the base URL; Keystone is at URL+"/identity/v3".
	URL  string
	srv  *httptest.Server
	opts Options

	mu        sync.Mutex
	now       func() time.Time
	tokens    map[string]time.Time
	issued    int
	requests  map[string]int
	images    []Image
	flavors   []Flavor
	networks  []Network
	secgroups []SecGroup
	keypairs  []string
	servers   []*Server
	faults    []injected
	// ErrorFlavors: servers booted with these flavor ids go to ERROR with this fault.
	errorFlavors map[string]string
	createDelay  time.Duration
	deleteDelay  time.Duration
}

// Image, Flavor, Network and SecGroup are the fake's catalogue entries.
type Image struct {
	ID, Name, Status string
	Created          time.Time
}

type Flavor struct{ ID, Name string }

type Network struct {
	ID, Name, ProjectID string
	Shared              bool
}

type SecGroup struct{ ID, Name, ProjectID string }

// Server is a server as the fake stores it.
type Server struct {
	ID, Name, Status, TaskState string
	FlavorID, ImageID           string
	Networks, SecurityGroups    []string
	KeyName, AvailabilityZone   string
	UserData                    string // base64, as sent
	Metadata                    map[string]string
	Tags                        []string
	ConfigDrive                 bool
	BlockDevices                []map[string]any
	Fault                       string
	Created                     time.Time
	// Microversion is the one the create request used.
	Microversion string
	goneAt       time.Time
}

type injected struct {
	method, pathPart string
	status           int
	body             string
	times            int
}

// New starts a fake cloud with one active image "cirros" (and an older one of the same
// name), flavors "m1.tiny" (id "1") and "m1.novalidhost" (id "98", boots go to ERROR
// "No valid host was found. "), networks "private" (ours) and "public" (shared), and
// the security group "default". It stops when t ends.
func New(t testing.TB, opts Options) *Cloud {
	t.Helper()
	if opts.MaxMicroversion == "" {
		opts.MaxMicroversion = "2.93"
	}
	if opts.PageSize == 0 {
		opts.PageSize = 1000
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = time.Hour
	}
	c := &Cloud{
		opts:     opts,
		now:      time.Now,
		tokens:   map[string]time.Time{},
		requests: map[string]int{},
		flavors:  []Flavor{{"1", "m1.tiny"}, {"98", "m1.novalidhost"}},
		networks: []Network{
			{ID: "6d0a3f4e-1111-4a2b-9c3d-000000000001", Name: "private", ProjectID: ProjectID},
			{ID: "6d0a3f4e-1111-4a2b-9c3d-000000000002", Name: "public", ProjectID: "other", Shared: true},
		},
		secgroups: []SecGroup{
			{ID: "9a8b7c6d-2222-4e3f-8a9b-000000000001", Name: "default", ProjectID: ProjectID},
			{ID: "9a8b7c6d-2222-4e3f-8a9b-000000000002", Name: "default", ProjectID: "other"},
		},
		keypairs:     []string{"ops"},
		errorFlavors: map[string]string{"98": "No valid host was found. "},
	}
	base := time.Now().Add(-time.Hour)
	c.images = []Image{
		{ID: "11111111-aaaa-4bbb-8ccc-000000000001", Name: "cirros", Status: "active", Created: base},
		{ID: "11111111-aaaa-4bbb-8ccc-000000000002", Name: "cirros", Status: "active", Created: base.Add(time.Minute)},
		{ID: "11111111-aaaa-4bbb-8ccc-000000000003", Name: "cirros", Status: "queued", Created: base.Add(2 * time.Minute)},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/identity/v3/auth/tokens", c.tokensHandler)
	mux.HandleFunc("/compute/v2.1/", c.authed(c.compute))
	mux.HandleFunc("/image/", c.authed(c.image))
	mux.HandleFunc("/network/", c.authed(c.network))
	h := c.count(c.inject(mux))
	if opts.TLS {
		c.srv = httptest.NewTLSServer(h)
	} else {
		c.srv = httptest.NewServer(h)
	}
	c.URL = c.srv.URL
	t.Cleanup(c.srv.Close)
	return c
}

// CloudsYAML writes a clouds.yaml naming the fake twice, CloudName with password auth
// and AppCredCloud with an application credential, and returns its path.
func (c *Cloud) CloudsYAML(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	doc := fmt.Sprintf(`clouds:
  %[1]s:
    auth:
      auth_url: %[2]s/identity/v3
      username: %[3]s
      password: %[4]s
      project_name: %[5]s
      user_domain_name: Default
      project_domain_name: Default
    region_name: %[6]s
    interface: public
    identity_api_version: 3
  %[7]s:
    auth_type: v3applicationcredential
    auth:
      auth_url: %[2]s/identity/v3
      application_credential_id: %[8]s
      application_credential_secret: %[9]s
    region_name: %[6]s
`, CloudName, c.URL, Username, Password, ProjectName, Region, AppCredCloud, AppCredID, AppCredSecr)
	p := filepath.Join(dir, "clouds.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// CAFile writes the TLS fake's certificate as a PEM file and returns its path.
func (c *Cloud) CAFile(t testing.TB) string {
	t.Helper()
	if c.srv.Certificate() == nil {
		t.Fatal("openstacktest: CAFile needs Options.TLS")
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.srv.Certificate().Raw})
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Fail makes the next times requests whose method matches and whose path contains
// pathPart get status and body instead of their answer.
func (c *Cloud) Fail(method, pathPart string, times, status int, body string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = append(c.faults, injected{method, pathPart, status, body, times})
}

// ExpireTokens invalidates every token issued so far, as a token's end of life does.
func (c *Cloud) ExpireTokens() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.tokens)
}

// TokensIssued counts the logins so far.
func (c *Cloud) TokensIssued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.issued
}

// Requests counts the requests whose "METHOD /path" (path without query) starts with
// prefix.
func (c *Cloud) Requests(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.requests {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// SetCreateDelay makes every server create wait d after the server is recorded and
// before the answer, as an overloaded Nova does.
func (c *Cloud) SetCreateDelay(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.createDelay = d
}

// AddImage adds an image and returns its id.
func (c *Cloud) AddImage(name, status string, created time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := newUUID()
	c.images = append(c.images, Image{ID: id, Name: name, Status: status, Created: created})
	return id
}

// AddNetwork adds a network and returns its id.
func (c *Cloud) AddNetwork(name, projectID string, shared bool) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := newUUID()
	c.networks = append(c.networks, Network{ID: id, Name: name, ProjectID: projectID, Shared: shared})
	return id
}

// PutServer stores a server as if made by someone else (no spawner markers unless
// given) and returns its id.
func (c *Cloud) PutServer(s Server) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.ID == "" {
		s.ID = newUUID()
	}
	if s.Status == "" {
		s.Status = "ACTIVE"
	}
	if s.Created.IsZero() {
		s.Created = c.now().UTC()
	}
	c.servers = append(c.servers, &s)
	return s.ID
}

// Servers returns a copy of every server not yet gone.
func (c *Cloud) Servers() []Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reapLocked()
	out := make([]Server, 0, len(c.servers))
	for _, s := range c.servers {
		out = append(out, *s)
	}
	return out
}

// SetServer changes a stored server (status, task state, fault) by id.
func (c *Cloud) SetServer(id string, edit func(*Server)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.servers {
		if s.ID == id {
			edit(s)
		}
	}
}

// reapLocked forgets servers whose asynchronous delete has finished.
func (c *Cloud) reapLocked() {
	now := c.now()
	kept := c.servers[:0]
	for _, s := range c.servers {
		if s.TaskState == "deleting" && !s.goneAt.IsZero() && !now.Before(s.goneAt) {
			continue
		}
		kept = append(kept, s)
	}
	c.servers = kept
}

func (c *Cloud) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.requests[r.Method+" "+r.URL.Path]++
		c.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (c *Cloud) inject(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		var hit *injected
		for i := range c.faults {
			f := &c.faults[i]
			if f.times > 0 && f.method == r.Method && strings.Contains(r.URL.Path, f.pathPart) {
				f.times--
				hit = f
				break
			}
		}
		c.mu.Unlock()
		if hit == nil {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Openstack-Request-Id", "req-"+newUUID())
		w.WriteHeader(hit.status)
		_, _ = w.Write([]byte(hit.body))
	})
}

// authed answers 401 as Keystone middleware does for a missing or expired token.
func (c *Cloud) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		exp, ok := c.tokens[r.Header.Get("X-Auth-Token")]
		valid := ok && c.now().Before(exp)
		c.mu.Unlock()
		if !valid {
			w.Header().Set("WWW-Authenticate", `Keystone uri="`+c.URL+`/identity"`)
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
				"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}})
			return
		}
		w.Header().Set("X-Openstack-Request-Id", "req-"+newUUID())
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// novaError writes Nova's error envelope: {"badRequest": {"code": 400, "message": …}}.
func novaError(w http.ResponseWriter, status int, message string) {
	key := map[int]string{400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest"}[status]
	if key == "" {
		key = "computeFault"
	}
	writeJSON(w, status, map[string]any{key: map[string]any{"code": status, "message": message}})
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-8" + h[17:20] + "-" + h[20:]
}
