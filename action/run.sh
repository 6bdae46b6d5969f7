#!/usr/bin/env bash
# The action's main step: `cargo guarded <command>` with the action's inputs, and with
# `export-target-dir`, the job's dir exported to later steps with its lease held until the job
# ends.
#
# Inputs arrive only as INPUT_* environment variables (action.yml maps them): they are data here,
# never shell code. The step outputs (target-dir, job-id, reclaimed-bytes), the step summary and
# the annotations are written by cargo-guarded itself (src/github.rs).
set -uo pipefail

cg=${CARGO_GUARDED_BIN:-cargo-guarded}

fail() {
  echo "::error title=cargo-guarded::$*"
  exit 1
}

# An input overrides the CLI's environment variable only when given, so job-level
# CARGO_GUARDED_* settings and the CLI's defaults apply otherwise.
from_input() {
  if [ -n "${2:-}" ]; then export "$1=$2"; fi
}
from_input CARGO_GUARDED_ROOT "${INPUT_ROOT:-}"
from_input CARGO_GUARDED_JOB_ID "${INPUT_JOB_ID:-}"
from_input CARGO_GUARDED_MIN_FREE "${INPUT_MIN_FREE:-}"
from_input CARGO_GUARDED_RECLAIM_BELOW "${INPUT_RECLAIM_BELOW:-}"
from_input CARGO_GUARDED_TTL "${INPUT_TTL:-}"
from_input CARGO_GUARDED_LINGER "${INPUT_LINGER:-}"

case "${INPUT_EXPORT_TARGET_DIR:-false}" in
  true | TRUE | True) export_target_dir=true ;;
  false | FALSE | False | '') export_target_dir=false ;;
  *) fail "export-target-dir must be true or false, got '${INPUT_EXPORT_TARGET_DIR}'" ;;
esac

if [ -n "${INPUT_WORKING_DIRECTORY:-}" ]; then
  cd -- "$INPUT_WORKING_DIRECTORY" || fail "cannot enter working-directory '$INPUT_WORKING_DIRECTORY'"
fi

# Split the command into words the way a shell would, honouring quotes and backslashes, but with
# no expansion of variables, globs or command substitutions: exactly what xargs does.
[ -n "${INPUT_COMMAND//[[:space:]]/}" ] || fail "the 'command' input is empty (e.g. 'build --release')"
words=$(mktemp)
trap 'rm -f "$words"' EXIT
printf '%s\n' "$INPUT_COMMAND" | xargs printf '%s\0' >"$words" ||
  fail "cannot split the 'command' input into words (unbalanced quotes?): $INPUT_COMMAND"
args=()
while IFS= read -r -d '' word; do args+=("$word"); done <"$words"

# With export-target-dir, a background `cargo guarded hold` keeps the job's lease live. It is
# found again through a pid file named after its job id and root, so that a later use of the
# action in the same job (which sees the exported CARGO_GUARDED_JOB_ID) can stop it first: while
# it holds the lease, `cargo guarded` of the same job would wait for it.
state_dir=${RUNNER_TEMP:-${TMPDIR:-/tmp}}
hold_file() { # $1: job id, $2: extension
  local key
  key=$(printf '%s\n%s\n' "$1" "${CARGO_GUARDED_ROOT:-}" | cksum | cut -d ' ' -f 1)
  echo "$state_dir/cargo-guarded-hold-$key.$2"
}

# Whether $1 is a live `cargo-guarded ... hold` (not a recycled pid).
is_hold() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'cargo-guarded.* hold'
}

stop_hold() {
  [ -n "${CARGO_GUARDED_JOB_ID:-}" ] || return 0
  local pidfile pid
  pidfile=$(hold_file "$CARGO_GUARDED_JOB_ID" pid)
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  rm -f "$pidfile"
  is_hold "$pid" || return 0
  echo "stopping the lease holder of an earlier step (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || return 0
  # It releases the lease (protected for the linger) and exits; bounded, in 0.1 s steps.
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "::warning title=cargo-guarded::the lease holder (pid $pid) did not stop; this step may wait for it"
}

start_hold() {
  local env_lines
  # GITHUB_ACTIONS is blanked for these two: their outputs and summary would repeat the command's.
  if ! env_lines=$(GITHUB_ACTIONS='' "$cg" guarded --quiet env); then
    echo "::warning title=cargo-guarded::could not read the job's environment; CARGO_TARGET_DIR was not exported"
    return 0
  fi
  printf '%s\n' "$env_lines" | grep -E '^[A-Z_][A-Z0-9_]*=' >>"${GITHUB_ENV:?GITHUB_ENV is not set}"
  if [ -n "${CARGO_GUARDED_ROOT:-}" ]; then
    printf 'CARGO_GUARDED_ROOT=%s\n' "$CARGO_GUARDED_ROOT" >>"$GITHUB_ENV"
  fi
  local job_id pidfile holdlog
  job_id=$(printf '%s\n' "$env_lines" | sed -n 's/^CARGO_GUARDED_JOB_ID=//p')
  pidfile=$(hold_file "$job_id" pid)
  holdlog=$(hold_file "$job_id" log)
  # Detached: its own session (the step's cancellation does not reach it), no inherited pipes
  # (the runner would wait for them to close). It inherits RUNNER_TRACKING_ID, so the runner's
  # end-of-job orphan cleanup kills it; the lease then expires one TTL after its last heartbeat.
  CARGO_GUARDED_JOB_ID=$job_id GITHUB_ACTIONS='' setsid nohup "$cg" guarded hold \
    </dev/null >"$holdlog" 2>&1 &
  local pid=$!
  echo "$pid" >"$pidfile"
  # Bounded wait until it holds the lease (its first line says so), so the lease is live before
  # the next step starts; 0.1 s steps, 10 minutes at most (it may have to wait for a guard).
  for _ in $(seq 6000); do
    if grep -q 'holding the lease' "$holdlog" 2>/dev/null; then
      echo "holding the lease on ${job_id} for the rest of the job (pid $pid); CARGO_TARGET_DIR exported"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "::warning title=cargo-guarded::the lease holder did not start; the job dir stays protected only for the linger after this step: $(tr '\n' ' ' <"$holdlog" 2>/dev/null)"
}

stop_hold
"$cg" guarded "${args[@]}"
code=$?
# 75: the disk was too full to start; there is no lease worth holding.
if [ "$export_target_dir" = true ] && [ "$code" -ne 75 ]; then
  start_hold
fi
exit "$code"
