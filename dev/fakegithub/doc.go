// Package fakegithub is a fake GitHub for tests and load runs: a real HTTP server that
// speaks the REST shapes of api.github.com for what runner-spawner uses, sends signed
// workflow_job webhooks, and simulates self-hosted runners the way GitHub treats them.
// It is a test tool. Nothing in production may import it, and it must not call real
// GitHub.
//
// # REST
//
// The fake serves, with GitHub's JSON shapes, status codes, Link pagination, ETag
// (If-None-Match → 304, free of rate budget), X-RateLimit-* headers and X-GitHub-Request-Id,
// the following operations (ids as GitHub names them; faults and Server.CallCount use them):
//
//	actions/generate-runner-jitconfig-for-org     POST /orgs/{org}/actions/runners/generate-jitconfig
//	actions/generate-runner-jitconfig-for-repo    POST /repos/{o}/{r}/actions/runners/generate-jitconfig
//	actions/create-registration-token-for-org     POST /orgs/{org}/actions/runners/registration-token
//	actions/create-registration-token-for-repo    POST /repos/{o}/{r}/actions/runners/registration-token
//	actions/list-self-hosted-runners-for-org      GET  /orgs/{org}/actions/runners
//	actions/list-self-hosted-runners-for-repo     GET  /repos/{o}/{r}/actions/runners
//	actions/get-self-hosted-runner-for-org        GET  /orgs/{org}/actions/runners/{id}
//	actions/get-self-hosted-runner-for-repo       GET  /repos/{o}/{r}/actions/runners/{id}
//	actions/delete-self-hosted-runner-from-org    DELETE /orgs/{org}/actions/runners/{id}  (204, 404, 422 busy)
//	actions/delete-self-hosted-runner-from-repo   DELETE /repos/{o}/{r}/actions/runners/{id}
//	actions/list-self-hosted-runner-groups-for-org GET /orgs/{org}/actions/runner-groups
//	actions/get-job-for-workflow-run              GET  /repos/{o}/{r}/actions/jobs/{id}
//	actions/list-jobs-for-workflow-run            GET  /repos/{o}/{r}/actions/runs/{id}/jobs
//	actions/list-workflow-runs-for-repo           GET  /repos/{o}/{r}/actions/runs (?status=)
//	repos/list-webhook-deliveries                 GET  /repos/{o}/{r}/hooks/{hook}/deliveries
//	repos/get-webhook-delivery                    GET  /repos/{o}/{r}/hooks/{hook}/deliveries/{id}
//	repos/redeliver-webhook-delivery              POST /repos/{o}/{r}/hooks/{hook}/deliveries/{id}/attempts
//	orgs/list-webhook-deliveries, orgs/get-webhook-delivery, orgs/redeliver-webhook-delivery
//	                                              the same under /orgs/{org}/hooks/{hook}/
//	apps/list-webhook-deliveries, apps/get-webhook-delivery, apps/redeliver-webhook-delivery
//	                                              the same under /app/hook/ (App JWT)
//	rate-limit/get                                GET  /rate_limit (free)
//	apps/create-installation-access-token         POST /app/installations/{id}/access_tokens (App JWT)
//	apps/get-org-installation                     GET  /orgs/{org}/installation (App JWT)
//	apps/get-repo-installation                    GET  /repos/{o}/{r}/installation (App JWT)
//
// Anything else answers 404 (operation "unknown"). Deliveries are listed newest first with
// cursor pagination (Link rel="next" with cursor=v1_<id>) and filter status=success|failure.
//
// Auth: Options.Token is accepted as a personal access token; with Options.AppID and
// AppPublicKey, App JWTs (RS256, iss = app id, at most 10 minutes) are verified and the
// installation tokens the fake mints are accepted until they expire (Options.TokenTTL).
// Anything else answers 401 with GitHub's basic-error body. With neither configured the
// fake is open. Each credential has its own rate budget (Options.RateLimit per
// RateLimitWindow); an exhausted budget answers 403 with X-RateLimit-Remaining: 0.
//
// # Jobs, webhooks and runners
//
// Server.CreateJob queues a job and sends workflow_job "queued". generate-jitconfig
// registers an offline ephemeral runner and returns an encoded_jit_config (base64 JSON,
// see fakerunner.JITConfig) carrying Options.PublicURL, the runner id and name and a
// runner credential. A runner program (fakerunner.Run, or "spawner dev runner") that
// connects with it goes online and idle and is given the OLDEST queued job whose labels
// are all among its labels (case-insensitive; a repo-level runner only takes its repo's
// jobs) — not necessarily the job it was minted for, so stolen runners happen as on
// GitHub. The job goes in_progress (runner_id/runner_name set, webhook sent), runs for
// Options.JobDuration (JobSpec.Duration overrides) after the runner's pre-job hook, and
// completes (success; failure when the runner reports a non-zero exit, JobSpec.Fail is
// set, or the runner is lost) with a "completed" webhook; then the ephemeral runner is
// removed. Server.CancelJob completes a queued job as cancelled without a runner, or
// tells a running job's runner to stop. Deleting a busy runner answers 422; deleting an
// idle or offline runner removes it and tells its program to exit.
//
// Webhooks are delivered by a worker pool (Options.Webhooks.Workers, default 4), signed
// with X-Hub-Signature-256 (HMAC-SHA256 of the exact body, see Signature), with
// X-GitHub-Event, X-GitHub-Delivery (a fresh GUID, kept on redelivery), X-GitHub-Hook-ID
// and User-Agent GitHub-Hookshot/fake. Each attempt is recorded with its HTTP result and
// shows up in the deliveries API, where failed ones can be redelivered (202, and a new
// attempt is really made). WebhookFaults drop (recorded as failed, never sent),
// duplicate (same GUID twice), redeliver (a manual redelivery follows) and reorder
// (held back behind the next delivery) deliveries, drawn from a seeded generator.
//
// # Runner protocol
//
// All under /_fake/runner/, authenticated with "Authorization: Bearer <credential>" from
// the JIT config. An unknown or removed registration answers 410 Gone: the runner exits.
//
//	POST /_fake/runner/connect    → 200 {"runner_id","runner_name","heartbeat_ms"}; online, idle
//	GET  /_fake/runner/poll?state=S&wait=20s
//	                              → 200 {"state","job":{job_id,run_id,run_attempt,repo,name,labels},"result"}
//	                                returns at once if the state differs from S, else on change or after wait
//	POST /_fake/runner/heartbeat  → 204 (a sign of life while hooks run)
//	POST /_fake/runner/started    {"job_id","ok"} → 204: the pre-job hook ran (ok=false fails the job)
//	POST /_fake/runner/complete   {"job_id","exit_code"} → 204: the job is over; the runner is removed
//
// States: idle → assigned (job given; run the pre-job hook, POST started) → running →
// finish (steps done, "result" success|failure; run the post-job hook, POST complete) or
// cancelled (POST complete) → removed. A runner holding a job that shows no sign of life
// (poll, heartbeat) for Options.RunnerLostAfter is lost: its job completes as failure.
//
// # Control API
//
// For the standalone fake ("spawner dev github"), unauthenticated, JSON, durations as Go
// strings:
//
//	GET    /_fake/control/jobs                      all jobs
//	POST   /_fake/control/jobs                      JobSpec fields plus "count" → created jobs
//	POST   /_fake/control/jobs/{id}/cancel
//	GET    /_fake/control/runners
//	GET    /_fake/control/deliveries
//	POST   /_fake/control/deliveries/{id}/redeliver
//	GET    /_fake/control/calls                     {"counts": {op: n}, "calls": [...]}; DELETE resets
//	GET    /_fake/control/summary                   see Summary
//	GET    /_fake/control/faults                    POST adds a Fault (→ {"id"}); DELETE clears all;
//	DELETE /_fake/control/faults/{id}               clears one
//	PUT    /_fake/control/webhook-faults            WebhookFaults
//	PUT    /_fake/control/webhook-target            {"url","secret"}
package fakegithub
