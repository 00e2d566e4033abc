#!/bin/bash
# Intake throughput as an operator would measure it: the built binary
# (`spawner serve --roles webhook`, embedded file-backed JetStream) loaded by wrk, a
# separate C process, with signed `queued` payloads of the fixture's size and a unique
# X-GitHub-Delivery per request (each one is stored). Complements the in-process Go
# benchmark (`go test -bench Ingest ./webhook/`), whose HTTP client shares the process.
#
# Usage: scripts/bench-intake-wrk.sh [seconds per step] [concurrency...]
#        default: 8 s at 1 8 32 64 connections. Needs wrk (apt-get install wrk) and Go.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}; shift || true
CONNS=${*:-1 8 32 64}
command -v wrk >/dev/null || { echo "$0: wrk is needed: apt-get install wrk" >&2; exit 1; }
command -v openssl >/dev/null || { echo "$0: openssl is needed" >&2; exit 1; }

W=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WEB=$(port); NATS=$(port)
SECRET=bench-intake-secret-0123456789abcdef
BODY=$PWD/testdata/webhooks/workflow_job/queued.payload.json
SIG="sha256=$(openssl dgst -sha256 -hmac "$SECRET" -r <"$BODY" | cut -d' ' -f1)"

CGO_ENABLED=0 go build -o "$W/spawner" ./cmd/spawner
cat >"$W/spawner.yaml" <<Y
state_dir: $W/state
log: {level: warn}
nats: {listen: "127.0.0.1:$NATS", stream_max_bytes: 8GiB}
webhook: {listen: "127.0.0.1:$WEB"}
routing: {default_flavor: ubuntu}
flavors:
  - {name: ubuntu, labels: [ubuntu-latest], max_runners: 2}
Y
cat >"$W/post.lua" <<L
local f = io.open("$BODY", "rb"); local body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-GitHub-Event"] = "workflow_job"
wrk.headers["X-Hub-Signature-256"] = "$SIG"
local n, tid = 0, tostring(math.random(1, 1e9))
function request()
  n = n + 1
  wrk.headers["X-GitHub-Delivery"] = "wrk-" .. tid .. "-" .. n
  return wrk.format()
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.2f %.2f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
L
SPAWNER_WEBHOOK_SECRETS=$SECRET "$W/spawner" serve --config "$W/spawner.yaml" --roles webhook >"$W/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$WEB/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$WEB/readyz" >/dev/null || { cat "$W/serve.log" >&2; exit 1; }

echo "| connections | req/s | p50 | p99 | non-2xx |"
echo "| --- | --- | --- | --- | --- |"
for c in $CONNS; do
  r=$(wrk -t1 -c"$c" -d"${SECS}s" -s "$W/post.lua" "http://127.0.0.1:$WEB/webhook" | awk '/^RESULT/ {print $2, $3, $4, $5}')
  read -r rps p50 p99 bad <<<"$r"
  echo "| $c | $rps | $p50 ms | $p99 ms | $bad |"
done
