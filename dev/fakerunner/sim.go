package fakerunner

import (
	"context"
	"errors"
	"log/slog"

	"github.com/runner-spawner/runner-spawner/backends/sim"
)

// SimRunner plays the runner in simulated instances (backends/sim): Run with the JIT
// config the instance got, reporting the pre-job phase through the instance's
// bootstrap hooks. It ends as a runner process would: exit status 0 when the job
// succeeded, 1 when it failed or was cancelled, 2 with the error otherwise. With a real
// GitHub's JIT config it ends at once, running nothing.
func SimRunner(logger *slog.Logger) sim.RunnerFunc {
	return func(ctx context.Context, jit string, hooks sim.Hooks) (int, error) {
		err := Run(ctx, Options{JITConfig: jit, Logger: logger, OnJobStarted: hooks.JobStarted})
		switch {
		case err == nil:
			return 0, nil
		case errors.Is(err, ErrJobFailed), errors.Is(err, ErrJobCancelled):
			return 1, nil
		}
		return 2, err
	}
}
