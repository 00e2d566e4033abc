package fakerunner

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Marker is the value of JITConfig.Fake. A real Actions runner config never carries it,
// so a config minted by the fake cannot be mistaken for a real one (and the other way).
const Marker = "runner-spawner fakegithub"

// JITConfig is what the fake GitHub puts, as base64 of this JSON, into the
// encoded_jit_config of a generate-jitconfig answer: everything the runner program needs.
type JITConfig struct {
	Fake       string   `json:"fake"`        // always Marker
	URL        string   `json:"url"`         // base URL of the fake as the runner reaches it (ends in "/")
	RunnerID   int64    `json:"runner_id"`   // the registration this config belongs to
	RunnerName string   `json:"runner_name"` // as given to generate-jitconfig
	Credential string   `json:"credential"`  // runner credential for the /_fake/runner/ endpoints
	Labels     []string `json:"labels"`      // as registered
}

// EncodeJITConfig returns the encoded_jit_config string for c.
func EncodeJITConfig(c JITConfig) string {
	b, err := json.Marshal(c)
	if err != nil {
		// A struct of strings and ints always marshals.
		panic(fmt.Sprintf("marshal jit config: %v", err))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// ErrNotFakeConfig is returned by DecodeJITConfig for input that is not a config minted
// by the fake (for example a real GitHub JIT config).
var ErrNotFakeConfig = errors.New("not a jit config of the fake github")

// DecodeJITConfig parses an encoded_jit_config minted by the fake.
func DecodeJITConfig(s string) (JITConfig, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return JITConfig{}, fmt.Errorf("decode jit config: %w", ErrNotFakeConfig)
	}
	var c JITConfig
	if err := json.Unmarshal(b, &c); err != nil || c.Fake != Marker {
		return JITConfig{}, fmt.Errorf("decode jit config: %w", ErrNotFakeConfig)
	}
	if c.URL == "" || c.Credential == "" || c.RunnerID == 0 {
		return JITConfig{}, fmt.Errorf("decode jit config: missing url, credential or runner id: %w", ErrNotFakeConfig)
	}
	return c, nil
}

// Protocol paths, relative to the fake's base URL. Every request carries
// "Authorization: Bearer <JITConfig.Credential>".
const (
	PathConnect   = "_fake/runner/connect"   // POST, no body → ConnectResponse
	PathPoll      = "_fake/runner/poll"      // GET ?state=S&wait=D → PollResponse
	PathHeartbeat = "_fake/runner/heartbeat" // POST, no body → 204
	PathStarted   = "_fake/runner/started"   // POST StartedRequest → 204
	PathComplete  = "_fake/runner/complete"  // POST CompleteRequest → 204
)

// Runner states, as the fake reports them in PollResponse.State.
const (
	StateIdle      = "idle"      // online, waiting for a job
	StateAssigned  = "assigned"  // a job was given to this runner; run the pre-job hook, then POST started
	StateRunning   = "running"   // the job's steps are running
	StateFinish    = "finish"    // the steps are done (PollResponse.Result); run the post-job hook, then POST complete
	StateCancelled = "cancelled" // the job was cancelled; run the post-job hook, then POST complete
	StateRemoved   = "removed"   // the registration is gone (deleted, completed or lost): exit
)

// ConnectResponse answers PathConnect.
type ConnectResponse struct {
	RunnerID   int64  `json:"runner_id"`
	RunnerName string `json:"runner_name"`
	// HeartbeatMS is how often the runner must show a sign of life (a poll or a
	// heartbeat) while it holds a job; silence for longer than the fake's
	// RunnerLostAfter fails the job as lost.
	HeartbeatMS int64 `json:"heartbeat_ms"`
}

// Assignment describes the job a runner was given.
type Assignment struct {
	JobID      int64    `json:"job_id"`
	RunID      int64    `json:"run_id"`
	RunAttempt int      `json:"run_attempt"`
	Repo       string   `json:"repo"` // owner/name
	Name       string   `json:"name"`
	Labels     []string `json:"labels"`
	// Event started the workflow (default push); EventPayload is its payload, which
	// the runner writes to the file GITHUB_EVENT_PATH names for the hooks.
	Event        string          `json:"event,omitempty"`
	EventPayload json.RawMessage `json:"event_payload,omitempty"`
}

// PollResponse answers PathPoll. The poll returns at once when the runner's state differs
// from the state query parameter, else when it changes or the wait elapses.
type PollResponse struct {
	State  string      `json:"state"`
	Job    *Assignment `json:"job,omitempty"`
	Result string      `json:"result,omitempty"` // with StateFinish: "success" or "failure"
}

// StartedRequest is the body of PathStarted: the pre-job hook's outcome.
type StartedRequest struct {
	JobID int64 `json:"job_id"`
	OK    bool  `json:"ok"`
}

// CompleteRequest is the body of PathComplete: the job's exit status as the runner saw it.
type CompleteRequest struct {
	JobID    int64 `json:"job_id"`
	ExitCode int   `json:"exit_code"`
}
