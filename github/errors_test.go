package github

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
)

// Every operation maps every error answer the same way.
func TestErrorMapping(t *testing.T) {
	type fixture struct {
		jobID, runID, runnerID, deliveryID int64
	}
	type op struct {
		name   string
		fakeOp string
		call   func(ctx context.Context, c *Client, f fixture) error
	}
	ops := []op{
		{"generate_jit_config", "actions/generate-runner-jitconfig-for-org", func(ctx context.Context, c *Client, _ fixture) error {
			_, err := c.GenerateJITConfig(ctx, JITConfigRequest{Name: "r-" + time.Now().Format("150405.000000000"), Labels: []string{"a"}})
			return err
		}},
		{"list_runners", "actions/list-self-hosted-runners-for-org", func(ctx context.Context, c *Client, _ fixture) error {
			_, err := c.ListRunners(ctx, "")
			return err
		}},
		{"get_runner", "actions/get-self-hosted-runner-for-org", func(ctx context.Context, c *Client, f fixture) error {
			_, err := c.GetRunner(ctx, f.runnerID)
			return err
		}},
		{"delete_runner", "actions/delete-self-hosted-runner-from-org", func(ctx context.Context, c *Client, f fixture) error {
			return c.DeleteRunner(ctx, f.runnerID)
		}},
		{"get_job", "actions/get-job-for-workflow-run", func(ctx context.Context, c *Client, f fixture) error {
			_, err := c.GetJob(ctx, "octo-org/octo-repo", f.jobID)
			return err
		}},
		{"list_run_jobs", "actions/list-jobs-for-workflow-run", func(ctx context.Context, c *Client, f fixture) error {
			_, err := c.ListRunJobs(ctx, "octo-org/octo-repo", f.runID)
			return err
		}},
		{"list_queued_jobs", "actions/list-workflow-runs-for-repo", func(ctx context.Context, c *Client, _ fixture) error {
			_, err := c.ListQueuedJobs(ctx, "octo-org/octo-repo")
			return err
		}},
		{"list_deliveries", "repos/list-webhook-deliveries", func(ctx context.Context, c *Client, _ fixture) error {
			_, err := c.ListDeliveries(ctx, HookRef{Kind: HookRepo, Repo: "octo-org/octo-repo", HookID: 1}, time.Time{})
			return err
		}},
		{"redeliver", "orgs/redeliver-webhook-delivery", func(ctx context.Context, c *Client, f fixture) error {
			return c.Redeliver(ctx, HookRef{Kind: HookOrg, HookID: 1}, f.deliveryID)
		}},
	}
	faults := []struct {
		name     string
		fault    fakegithub.Fault
		wantErr  error // errors.Is target; nil: success
		wantCode int   // status in *APIError / *RateLimitError
		calls    int   // requests the faulted operation must see
	}{
		{"401 expired token", fakegithub.Fault{Status: 401}, ErrUnauthorized, 401, 1},
		{"403 forbidden", fakegithub.Fault{Status: 403, Plain: true}, ErrUnauthorized, 403, 1},
		{"404", fakegithub.Fault{Status: 404}, ErrNotFound, 404, 1},
		{"403 rate limit, reset beyond ctx", fakegithub.Fault{Status: 403}, ErrRateLimited, 403, 1},
		{"429 retry-after beyond ctx", fakegithub.Fault{Status: 429, RetryAfter: 30 * time.Second}, ErrRateLimited, 429, 1},
		{"502 once is retried", fakegithub.Fault{Status: 502, Count: 1}, nil, 0, 2},
		{"500 always", fakegithub.Fault{Status: 500}, errAPI, 500, 3},
	}
	for _, o := range ops {
		for _, f := range faults {
			t.Run(o.name+"/"+f.name, func(t *testing.T) {
				srv := newFake(t, fakegithub.Options{Token: "pat"})
				c := newClient(t, srv, nil)
				job := srv.CreateJob(fakegithub.JobSpec{})
				jit, err := c.GenerateJITConfig(t.Context(), JITConfigRequest{Name: "fixture", Labels: []string{"a"}})
				if err != nil {
					t.Fatal(err)
				}
				eventually(t, 30*time.Second, "delivery recorded", func() bool {
					d := srv.Deliveries()
					return len(d) == 1 && d[0].Done
				})
				fx := fixture{jobID: job.ID, runID: job.RunID, runnerID: jit.RunnerID, deliveryID: srv.Deliveries()[0].ID}

				wantErr, wantCalls := f.wantErr, f.calls
				if o.name == "delete_runner" && f.name == "404" {
					wantErr = nil // gone is what delete wanted
				}
				if o.name == "list_queued_jobs" && f.wantErr == nil {
					wantCalls++ // then the in_progress runs are listed
				}
				before := srv.CallCount(o.fakeOp)
				fault := f.fault
				fault.Op = o.fakeOp
				srv.SetFault(fault)
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				err = o.call(ctx, c.Client, fx)

				var ae *APIError
				var re *RateLimitError
				switch {
				case wantErr == nil:
					if err != nil {
						t.Fatalf("err = %v, want success", err)
					}
				case wantErr == errAPI:
					if !errors.As(err, &ae) || ae.StatusCode != f.wantCode || ae.RequestID == "" || ae.Op != o.name && o.name != "list_queued_jobs" {
						t.Fatalf("err = %#v, want *APIError %d with request id", err, f.wantCode)
					}
				case !errors.Is(err, wantErr):
					t.Fatalf("err = %v, want %v", err, wantErr)
				case errors.As(err, &re):
					if re.StatusCode != f.wantCode || re.Reset.Before(time.Now()) || re.RequestID == "" {
						t.Errorf("RateLimitError = %+v", re)
					}
				case errors.As(err, &ae):
					if ae.StatusCode != f.wantCode || ae.RequestID == "" {
						t.Errorf("APIError = %+v", ae)
					}
				default:
					t.Errorf("err %T is neither *APIError nor *RateLimitError", err)
				}
				if n := srv.CallCount(o.fakeOp) - before; n != wantCalls {
					t.Errorf("%s saw %d requests, want %d", o.fakeOp, n, wantCalls)
				}
			})
		}
	}
}

// errAPI in the table above: any *APIError, checked by status.
var errAPI = errors.New("api error")

// A delete of a runner that is already gone succeeds, whatever said 404.
func TestDeleteRunnerNotFoundIsSuccess(t *testing.T) {
	srv := newFake(t, fakegithub.Options{Token: "pat"})
	c := newClient(t, srv, nil)
	srv.SetFault(fakegithub.Fault{Op: "actions/delete-self-hosted-runner-from-org", Status: 404})
	if err := c.DeleteRunner(t.Context(), 5); err != nil {
		t.Errorf("DeleteRunner(404) = %v, want nil", err)
	}
	srv.ClearFaults()
	srv.SetFault(fakegithub.Fault{Op: "actions/delete-self-hosted-runner-from-org", Status: 422})
	if err := c.DeleteRunner(t.Context(), 5); !errors.Is(err, ErrRunnerBusy) {
		t.Errorf("DeleteRunner(422) = %v, want ErrRunnerBusy", err)
	}
	// 422 elsewhere is not "busy".
	srv.SetFault(fakegithub.Fault{Op: "actions/generate-runner-jitconfig-for-org", Status: 422})
	if _, err := c.GenerateJITConfig(t.Context(), JITConfigRequest{Name: "x", Labels: []string{"a"}}); err == nil || errors.Is(err, ErrRunnerBusy) {
		t.Errorf("GenerateJITConfig(422) = %v, want a plain *APIError", err)
	}
}

// A hanging endpoint cannot hang a call, even when ctx has no deadline.
func TestTimeouts(t *testing.T) {
	tests := []struct {
		name      string
		fakeOp    string
		call      func(ctx context.Context, c *Client) error
		wantCalls int // GETs are resent, a POST that may have taken effect is not
	}{
		{"get_runner", "actions/get-self-hosted-runner-for-org", func(ctx context.Context, c *Client) error {
			_, err := c.GetRunner(ctx, 1)
			return err
		}, 3},
		{"generate_jit_config", "actions/generate-runner-jitconfig-for-org", func(ctx context.Context, c *Client) error {
			_, err := c.GenerateJITConfig(ctx, JITConfigRequest{Name: "r", Labels: []string{"a"}})
			return err
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFake(t, fakegithub.Options{Token: "pat"})
			c := newClient(t, srv, func(o *Options) { o.Timeout = 100 * time.Millisecond })
			srv.SetFault(fakegithub.Fault{Op: tt.fakeOp, Latency: time.Hour})
			start := time.Now()
			err := tt.call(context.Background(), c.Client)
			took := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want a deadline error", err)
			}
			if took > 2*time.Second {
				t.Errorf("call took %s with a 100ms timeout", took)
			}
			eventually(t, 2*time.Second, "requests recorded", func() bool { return srv.CallCount(tt.fakeOp) == tt.wantCalls })
		})
	}
	t.Run("caller's ctx ends first", func(t *testing.T) {
		srv := newFake(t, fakegithub.Options{Token: "pat"})
		c := newClient(t, srv, nil)
		srv.SetFault(fakegithub.Fault{Latency: time.Hour})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if _, err := c.GetRunner(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want ctx's deadline", err)
		}
	})
}
