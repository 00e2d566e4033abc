package sim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// PlayOptions configure Play.
type PlayOptions struct {
	// Runner plays the runner once the config is fetched (nil: report a job that
	// finished at once).
	Runner RunnerFunc
	// HTTPClient reaches the bootstrap endpoint (default: 30 s timeout).
	HTTPClient *http.Client
	// Started, when set, is called as the runner starts.
	Started func()
}

// Play does what an instance does after it boots, in Go: the bootstrap protocol
// against the spawner (booted, fetch the one-time config, job callbacks) and the
// runner. env carries SPAWNER_BOOTSTRAP_URL, SPAWNER_BOOTSTRAP_TOKEN and
// SPAWNER_RUNNER_NAME, and SPAWNER_BOOTSTRAP_CA (the PEM to pin) when the endpoint is
// https. Tests use it to play the instances of a real backend whose servers never
// really boot (OpenStack's fake compute driver).
func Play(ctx context.Context, env map[string]string, opts PlayOptions) error {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	c := &Cloud{opts: CloudOptions{Runner: opts.Runner, HTTPClient: opts.HTTPClient}}
	return c.play(ctx, env, opts.Started)
}

func (c *Cloud) bootstrap(ctx context.Context, name string, env map[string]string) error {
	return c.play(ctx, env, func() {
		c.mu.Lock()
		c.stats.RunnerStarted[name] = time.Now()
		c.mu.Unlock()
	})
}

// play is the bootstrap protocol as an instance speaks it (see package bootstrap): the
// same calls the shell script makes.
func (cl *Cloud) play(ctx context.Context, env map[string]string, started func()) error {
	base, token, runner := env["SPAWNER_BOOTSTRAP_URL"], env["SPAWNER_BOOTSTRAP_TOKEN"], env["SPAWNER_RUNNER_NAME"]
	if base == "" || token == "" || runner == "" {
		return errNoBootstrap
	}
	c := caller{client: cl.opts.HTTPClient}
	if ca := env["SPAWNER_BOOTSTRAP_CA"]; ca != "" {
		// As the script does with curl --cacert: this certificate and nothing else.
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(ca)) {
			return fmt.Errorf("SPAWNER_BOOTSTRAP_CA holds no certificate")
		}
		c.client = &http.Client{
			Timeout:   cl.opts.HTTPClient.Timeout,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		}
		defer c.client.CloseIdleConnections()
	}
	url := strings.TrimRight(base, "/") + "/bootstrap/v1/runners/" + runner
	_ = c.post(ctx, url+"/status", token, map[string]any{"event": "booted"}, nil)

	// The root token reports job_finished; the hook token, which the script hands to
	// the pre-job hook, only the pre-job events.
	var cfg struct {
		JITConfig     string `json:"jit_config"`
		CallbackToken string `json:"callback_token"`
		HookToken     string `json:"hook_token"`
	}
	for attempt := 0; ; attempt++ {
		code, err := c.postCode(ctx, url+"/config", token, map[string]any{}, &cfg)
		if err == nil {
			break
		}
		if code >= 400 && code < 500 || attempt >= 60 || ctx.Err() != nil {
			return fmt.Errorf("fetch config: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if started != nil {
		started()
	}

	exit := 0
	if cl.opts.Runner != nil {
		hooks := Hooks{JobStarted: func(ctx context.Context) error {
			if err := c.post(ctx, url+"/status", cfg.HookToken, map[string]any{"event": "job_started"}, nil); err != nil {
				return err
			}
			return c.post(ctx, url+"/status", cfg.HookToken, map[string]any{"event": "pre_job_done"}, nil)
		}}
		var err error
		exit, err = cl.opts.Runner(ctx, cfg.JITConfig, hooks)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && exit == 0 {
			exit = 1
		}
	}
	return c.post(ctx, url+"/status", cfg.CallbackToken, map[string]any{"event": "job_finished", "exit_code": exit}, nil)
}

// caller makes the instance's HTTP calls.
type caller struct{ client *http.Client }

func (c caller) post(ctx context.Context, url, token string, body, out any) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var code int
		code, err = c.postCode(ctx, url, token, body, out)
		if err == nil || (code >= 400 && code < 500) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	return err
}

func (c caller) postCode(ctx context.Context, url, token string, body, out any) (int, error) {
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return resp.StatusCode, fmt.Errorf("%s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
