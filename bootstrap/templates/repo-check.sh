#!/bin/sh
# runner-spawner's pre-job checks (docs/repo-policy.md). The pre-job hook runs this
# as the runner user before the job's first step; a non-zero exit fails the job.
#
#   repo-check.sh RESULT_FILE
#
# On a refusal it writes the JSON members the hook adds to its pre_job_done report
# (,"outcome":…,"http_code":…,"reason":…) to RESULT_FILE and exits 1.
#
# Environment: GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_REPOSITORY (the runner
# sets them), and from the spawner's hook:
#   SPAWNER_FORK_CHECK=1         refuse forks' pull requests by non-members
#   SPAWNER_POLICY_URL           the repo-policy-compliance service ("": no check)
#   SPAWNER_POLICY_TOKEN_FILE    its one-time token, removed once read
#   SPAWNER_POLICY_TIMEOUT       seconds for the check call
#   SPAWNER_POLICY_FAIL_OPEN=1   a service error (5xx, unreachable) lets the job run
#
# Everything read from the event file is attacker-controlled (a pull request's
# branch names, its author's association): each value is checked against an
# alphabet before it goes into a request, and nothing read is ever run as shell.
set -u
result=${1:?usage: repo-check.sh RESULT_FILE}
: >"$result"
log() { echo "spawner-check: $*" >&2; }

# refuse OUTCOME HTTP_CODE REASON: the job must not run.
refuse() {
  # The reason may come from the service: printable ASCII without quotes or
  # backslashes, cut, so it goes into JSON and logs as it is.
  _reason=$(printf '%s' "$3" | tr -cd ' -~' | tr -d '"\\' | cut -c 1-200)
  printf ',"outcome":"%s","http_code":%d,"reason":"%s"' "$1" "$2" "$_reason" >"$result"
  log "the job is refused: $1 (HTTP $2): $_reason"
  exit 1
}

# json_fields FILE PATH...: prints "PATH<tab>VALUE" for each wanted scalar member of
# the JSON document in FILE, PATH being the dotted member names from the top
# (array elements by index). VALUE is as written in the file: a string's content
# with its escapes (so still valid inside a JSON string), or a literal. awk splits
# the file at double quotes, so records alternate between outside and inside
# strings and one pass reads any layout in linear time, with busybox awk too.
json_fields() {
  _file=$1
  shift
  awk -v want="$*" '
function join(a, b) { return a == "" ? b : a "." b }
function here() {
  if (depth == 0) return ""
  if (kind[depth] == "[") return join(path[depth], idx[depth])
  return join(path[depth], key)
}
function emit(v,   p) { p = here(); if (p in wanted) print p "\t" v }
function flush() {
  if (have) emit(str)
  else if (lit != "") emit(lit)
  have = 0; lit = ""
}
BEGIN {
  RS = "\""
  n = split(want, w, " ")
  for (i = 1; i <= n; i++) wanted[w[i]] = 1
  depth = 0; instr = 0; have = 0; buf = ""; lit = ""; key = ""
}
{
  if (instr) {
    # A record ending in an odd run of backslashes ended at an escaped quote.
    if (match($0, /\\+$/) && RLENGTH % 2 == 1) { buf = buf $0 "\""; next }
    str = buf $0; buf = ""; instr = 0; have = 1
    next
  }
  m = length($0)
  for (i = 1; i <= m; i++) {
    c = substr($0, i, 1)
    if (c == ":") { if (have) key = str; have = 0; continue }
    if (c == "{" || c == "[") {
      p = here(); depth++; path[depth] = p; kind[depth] = c; idx[depth] = 0; key = ""
      continue
    }
    if (c == "," || c == "}" || c == "]") {
      flush()
      if (c == ",") { if (kind[depth] == "[") idx[depth]++ }
      else depth--
      key = ""
      continue
    }
    if (c == " " || c == "\t" || c == "\n" || c == "\r") { if (lit != "") { emit(lit); lit = "" }; continue }
    lit = lit c
  }
  instr = 1
}' "$_file"
}

tab=$(printf '\t')
field() { printf '%s\n' "$fields" | sed -n "s/^$1$tab//p" | head -n 1; }

is_repo() { # owner/name as GitHub spells them
  case "$1" in
    */*/* | /* | */ | '' | *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-]*) return 1 ;;
    */*) return 0 ;;
  esac
  return 1
}
is_sha() {
  case "$1" in '' | *[!0123456789abcdef]*) return 1 ;; esac
  [ ${#1} -eq 40 ] || [ ${#1} -eq 64 ]
}
is_ref() { # a branch name as the event file escapes it: printable ASCII only
  [ -n "$1" ] && [ ${#1} -le 255 ] && [ -z "$(printf '%s' "$1" | tr -d ' -~')" ] && [ "${1%\\}" = "$1" ]
}
is_token() {
  case "$1" in '' | *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-]*) return 1 ;; esac
}

event=${GITHUB_EVENT_NAME:-}
case "$event" in '' | *[!abcdefghijklmnopqrstuvwxyz_]*) refuse repo-policy-check-failure 0 "the event name is missing or malformed" ;; esac
fields=""
if [ -r "${GITHUB_EVENT_PATH:-}" ]; then
  fields=$(json_fields "$GITHUB_EVENT_PATH" repository.full_name repository.private \
    pull_request.head.repo.full_name pull_request.head.ref pull_request.head.sha \
    pull_request.base.ref pull_request.author_association \
    issue.pull_request.url comment.author_association)
fi
repo=${GITHUB_REPOSITORY:-$(field repository.full_name)}
is_repo "$repo" || refuse repo-policy-check-failure 0 "the repository name is missing or malformed"

# The built-in check: a fork's pull request runs only for the repository's own
# people. Which association counts is the table in docs/repo-policy.md.
trusted() {
  case "$1" in
    OWNER | MEMBER | COLLABORATOR) return 0 ;;
    CONTRIBUTOR) [ "$(field repository.private)" = true ] ;;
    *) return 1 ;;
  esac
}
if [ "${SPAWNER_FORK_CHECK:-0}" = 1 ]; then
  case "$event" in
    pull_request | pull_request_target | pull_request_review | pull_request_review_comment)
      # A deleted fork has no head repository: it counts as a fork.
      head=$(field pull_request.head.repo.full_name)
      assoc=$(field pull_request.author_association)
      if [ "$head" != "$repo" ] && ! trusted "$assoc"; then
        refuse external-contributor-check-failure 0 "a pull request from a fork by an author who is not a member (author_association ${assoc:-unknown}); runner.allow_external_contributors is false"
      fi
      ;;
    issue_comment)
      # A comment on a pull request starts the job; the event does not say whether the
      # pull request comes from a fork, so the commenter must be a member.
      if [ -n "$(field issue.pull_request.url)" ]; then
        assoc=$(field comment.author_association)
        trusted "$assoc" ||
          refuse external-contributor-check-failure 0 "a comment on a pull request by a user who is not a member (author_association ${assoc:-unknown}); runner.allow_external_contributors is false"
      fi
      ;;
  esac
fi

[ -n "${SPAWNER_POLICY_URL:-}" ] || exit 0

# service_error CODE REASON: the service failed (5xx, unreachable), it did not refuse.
service_error() {
  if [ "${SPAWNER_POLICY_FAIL_OPEN:-0}" = 1 ]; then
    log "warning: the repo-policy check could not be made (HTTP $1): $2; repo_policy.fail_open lets the job run"
    echo "::warning::runner-spawner: the repository policy check could not be made (HTTP $1); the job runs because repo_policy.fail_open is set"
    exit 0
  fi
  refuse repo-policy-check-failure "$1" "the repo-policy service could not check the job: $2"
}

token=$(cat "${SPAWNER_POLICY_TOKEN_FILE:-/nonexistent}" 2>/dev/null)
# Single use: the service forgets it once spent; nothing on the instance keeps it.
rm -f "${SPAWNER_POLICY_TOKEN_FILE:-/nonexistent}" 2>/dev/null
is_token "$token" || service_error 0 "no one-time token (the spawner could not mint one, or it was used)"

case "$event" in
  pull_request | pull_request_target)
    check=pull_request
    src=$(field pull_request.head.repo.full_name)
    src_branch=$(field pull_request.head.ref)
    dst_branch=$(field pull_request.base.ref)
    sha=$(field pull_request.head.sha)
    is_repo "$src" || refuse repo-policy-check-failure 0 "the pull request's head repository is missing or malformed"
    is_ref "$src_branch" && is_ref "$dst_branch" || refuse repo-policy-check-failure 0 "the pull request's branch names are missing or not printable ASCII"
    is_sha "$sha" || refuse repo-policy-check-failure 0 "the pull request's head commit is missing or malformed"
    body="{\"repository_name\":\"$repo\",\"source_repository_name\":\"$src\",\"target_branch_name\":\"$dst_branch\",\"source_branch_name\":\"$src_branch\",\"commit_sha\":\"$sha\"}"
    ;;
  workflow_dispatch | push | schedule)
    check=$event
    body="{\"repository_name\":\"$repo\"}"
    ;;
  *)
    check=default
    body="{\"repository_name\":\"$repo\"}"
    ;;
esac

url="${SPAWNER_POLICY_URL%/}/$check/check-run"
timeout=${SPAWNER_POLICY_TIMEOUT:-30}
answer="${TMPDIR:-/tmp}/spawner-check-answer.$$"
code=000
if command -v curl >/dev/null 2>&1; then
  code=$(curl -sS --noproxy '*' -m "$timeout" -X POST -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' --data "$body" -o "$answer" -w '%{http_code}' "$url")
elif [ "${url#https:}" != "$url" ]; then
  # busybox wget verifies no certificate: the token goes over verified TLS or not at all.
  rm -f "$answer"
  service_error 0 "the service is https and this image has no curl (busybox wget cannot verify certificates)"
else
  # busybox wget, or GNU wget (Debian's minimal images): -S prints the status line
  # with either, even with -q; GNU wget keeps an error's body only when told. No
  # proxy for the service; timeout(1), not wget -T (busybox wget crashes on -T).
  keep=""
  wget --version 2>/dev/null | grep -q 'GNU Wget' && keep=--content-on-error
  headers=$(unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
    timeout "$timeout" wget -q -S $keep -O "$answer" --header "Authorization: Bearer $token" \
      --header 'Content-Type: application/json' --post-data "$body" "$url" 2>&1)
  code=$(printf '%s\n' "$headers" | sed -n 's/^ *HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' | tail -n 1)
fi
unset token
reason=$(head -c 2048 "$answer" 2>/dev/null)
rm -f "$answer"
case "${code:-000}" in
  2??) log "the repo-policy service allows the job ($check)"; exit 0 ;;
  5?? | 000) service_error "${code:-0}" "${reason:-no answer}" ;;
  403) refuse repo-policy-check-failure 403 "${reason:-not compliant}" ;;
  *) refuse repo-policy-check-failure "$code" "${reason:-the service refused the check}" ;;
esac
