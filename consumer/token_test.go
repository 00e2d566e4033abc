package consumer_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/consumer"
	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/fleet/fleettest"
	"github.com/runner-spawner/runner-spawner/internal/systemtest"
	"github.com/runner-spawner/runner-spawner/queue"
)

// tokenSpy records the bootstrap token each instance is given.
type tokenSpy struct {
	backends.Backend
	mu     sync.Mutex
	tokens map[string]string // runner name → bootstrap token
}

func (s *tokenSpy) Create(ctx context.Context, spec backends.InstanceSpec) (backends.Instance, error) {
	s.mu.Lock()
	s.tokens[spec.Name] = spec.Env[bootstrap.EnvToken]
	s.mu.Unlock()
	return s.Backend.Create(ctx, spec)
}

// The consumer stores the one-time bootstrap token as a hash only: whoever reads the
// KV store cannot fetch a runner's config. The record is read as the store holds it,
// through the real NATS server.
func TestBootstrapTokenIsStoredHashed(t *testing.T) {
	spy := &tokenSpy{tokens: map[string]string{}}
	s := systemtest.Start(t, systemtest.Options{
		Flavors: []systemtest.FlavorSpec{{Name: "small", Labels: []string{"small"}, MaxRunners: 2}},
		GitHub:  fakegithub.Options{JobDuration: 10 * time.Millisecond},
		Consumer: func(o *consumer.Options) {
			spy.Backend = o.Flavors[0].Backend
			o.Flavors[0].Backend = spy
		},
	})
	s.GH.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "small"}})
	// The record is written before the instance is created: once the backend was
	// asked, the record is there to read.
	systemtest.Eventually(t, 30*time.Second, func() error {
		spy.mu.Lock()
		defer spy.mu.Unlock()
		if len(spy.tokens) == 0 {
			return errors.New("no instance created yet")
		}
		return nil
	})

	spy.mu.Lock()
	defer spy.mu.Unlock()
	for name, token := range spy.tokens {
		if token == "" {
			t.Fatalf("instance %s got no bootstrap token", name)
		}
		raw := string(fleettest.Raw(t, s.Conn, queue.BucketRunners, name))
		if strings.Contains(raw, token) {
			t.Errorf("runner %s: the bootstrap token is in the stored record: %s", name, raw)
		}
		if !strings.Contains(raw, `"token_hash":"`+bootstrap.HashToken(token)+`"`) {
			t.Errorf("runner %s: the stored record does not hold the token's hash: %s", name, raw)
		}
	}
}
