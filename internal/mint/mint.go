// Package mint adapts the GitHub client to the bootstrap endpoint's Minter: it mints
// a runner's JIT config and turns GitHub's rate limits into "come back later".
//
// It holds no state; it exists so that neither bootstrap nor github imports the other.
package mint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runner-spawner/runner-spawner/bootstrap"
	"github.com/runner-spawner/runner-spawner/github"
)

// Client is the part of *github.Client used here.
type Client interface {
	GenerateJITConfig(ctx context.Context, req github.JITConfigRequest) (*github.JITConfig, error)
	ListRunners(ctx context.Context, namePrefix string) ([]github.Runner, error)
	DeleteRunner(ctx context.Context, id int64) error
}

// Minter mints JIT configs with a GitHub client.
type Minter struct {
	Client Client
	// RunnerGroup overrides the client's runner group ("" = the client's).
	RunnerGroup string
}

var _ bootstrap.Minter = Minter{}

// MintJITConfig implements bootstrap.Minter.
func (m Minter) MintJITConfig(ctx context.Context, name string, labels []string) (int64, string, error) {
	req := github.JITConfigRequest{Name: name, Labels: labels, RunnerGroup: m.RunnerGroup}
	cfg, err := m.Client.GenerateJITConfig(ctx, req)
	if errors.Is(err, github.ErrConflict) {
		// A registration with this name exists: an earlier mint whose answer never
		// reached the instance. It never ran a job (the runner never got its config),
		// so remove it and mint again.
		if rerr := m.removeStale(ctx, name); rerr != nil {
			return 0, "", fmt.Errorf("mint %s: name taken and the old registration not removed: %w", name, rerr)
		}
		cfg, err = m.Client.GenerateJITConfig(ctx, req)
	}
	if err != nil {
		var rl *github.RateLimitError
		if errors.As(err, &rl) {
			wait := rl.RetryAfter
			if wait == 0 && !rl.Reset.IsZero() {
				wait = time.Until(rl.Reset)
			}
			return 0, "", &bootstrap.BusyError{RetryAfter: max(wait, time.Second), Err: err}
		}
		return 0, "", err
	}
	return cfg.RunnerID, cfg.EncodedJITConfig.Reveal(), nil
}

func (m Minter) removeStale(ctx context.Context, name string) error {
	runners, err := m.Client.ListRunners(ctx, name)
	if err != nil {
		return err
	}
	for _, r := range runners {
		if r.Name == name && !r.Busy {
			if err := m.Client.DeleteRunner(ctx, r.ID); err != nil {
				return err
			}
		}
	}
	return nil
}
