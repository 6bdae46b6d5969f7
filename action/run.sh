#!/usr/bin/env bash
# The action's main step: `cargo guarded <command>` with the action's inputs, and with
# `export-target-dir`, the job's dir exported to later steps with its lease held until the job
# ends.
#
# Inputs arrive only as INPUT_* environment variables (action.yml maps them): they are data here,
# never shell code. The step outputs (target-dir, job-id, reclaimed-bytes, origin), the step
# summary and the annotations are written by cargo-guarded itself (src/github.rs).
set -uo pipefail

cg=${CARGO_GUARDED_BIN:-cargo-guarded}

# Workflow-command data escaping (@actions/core's escapeData), for everything from outside (the
# inputs, the holder's log) printed inside a `::error`/`::warning` line: a line break in it can
# then never start a line of its own that the runner would parse as a command.
escape_data() {
  local s=$1
  s=${s//'%'/'%25'}
  s=${s//$'\r'/'%0D'}
  s=${s//$'\n'/'%0A'}
  printf '%s' "$s"
}

fail() {
  echo "::error title=cargo-guarded::$(escape_data "$*")"
  exit 1
}

# A boolean input: `true` or `false` (empty: false); anything else fails the step.
is_true() {
  case "$2" in
    true | TRUE | True) return 0 ;;
    false | FALSE | False | '') return 1 ;;
    *) fail "$1 must be true or false, got '$2'" ;;
  esac
}

# Every option of the CLI is an input, in this one table: `input kind target`. tests/testsuite/action/inputs.rs
# keeps it equal to the CLI's options (`cargo guarded --help`) and to action.yml's inputs and
# their INPUT_* mapping. Kinds:
#   value VAR  the input, when given, sets the CLI's variable VAR (else a job-level VAR, or the
#              CLI's default, applies);
#   off VAR    `true` sets VAR=0 (the variable of a --no-* switch);
#   flag --x   `true` passes --x;
#   arg --x    the input, when given, is passed as --x=VALUE.
options='
root value CARGO_GUARDED_ROOT
job-id value CARGO_GUARDED_JOB_ID
ttl value CARGO_GUARDED_TTL
linger value CARGO_GUARDED_LINGER
reclaim-below value CARGO_GUARDED_RECLAIM_BELOW
reclaim-to value CARGO_GUARDED_RECLAIM_TO
min-free value CARGO_GUARDED_MIN_FREE
keep-expired value CARGO_GUARDED_KEEP_EXPIRED
no-adopt off CARGO_GUARDED_ADOPT
no-prune off CARGO_GUARDED_PRUNE
prune-after value CARGO_GUARDED_PRUNE_AFTER
max-warm-size value CARGO_GUARDED_MAX_WARM_SIZE
warm-budget value CARGO_GUARDED_WARM_BUDGET
max-root-size value CARGO_GUARDED_MAX_ROOT_SIZE
no-seed off CARGO_GUARDED_SEED
seed-max-size value CARGO_GUARDED_SEED_MAX_SIZE
warm-from value CARGO_GUARDED_WARM_FROM
default-branch value CARGO_GUARDED_DEFAULT_BRANCH
restore-mtimes value CARGO_GUARDED_RESTORE_MTIMES
store value CARGO_GUARDED_STORE
store-push value CARGO_GUARDED_STORE_PUSH
store-timeout value CARGO_GUARDED_STORE_TIMEOUT
wait value CARGO_GUARDED_WAIT
events value CARGO_GUARDED_EVENTS
quiet flag --quiet
verbose flag --verbose
color arg --color
'
cli_flags=()
while read -r input kind target; do
  [ -n "$input" ] || continue
  var=INPUT_$(printf '%s' "$input" | tr 'a-z-' 'A-Z_')
  value=${!var:-}
  [ -n "$value" ] || continue
  case $kind in
    value) export "$target=$value" ;;
    arg) cli_flags+=("$target=$value") ;;
    off) if is_true "$input" "$value"; then export "$target=0"; fi ;;
    flag) if is_true "$input" "$value"; then cli_flags+=("$target"); fi ;;
  esac
done <<<"$options"

export_target_dir=false
if is_true export-target-dir "${INPUT_EXPORT_TARGET_DIR:-false}"; then export_target_dir=true; fi

# sccache: the wrapper the action ships (contrib/sccache-wrapper.sh) as RUSTC_WRAPPER, so the
# per-job variables cargo guarded sets stay out of sccache's keys and jobs hit each other's
# entries; with export-target-dir, for the job's later steps too.
if is_true sccache "${INPUT_SCCACHE:-false}"; then
  wrapper=${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set}/contrib/sccache-wrapper.sh
  [ -x "$wrapper" ] || fail "sccache: the wrapper $wrapper is missing or not executable"
  export RUSTC_WRAPPER=$wrapper
  if [ "$export_target_dir" = true ] && [ "$wrapper" = "${wrapper//$'\n'/}" ]; then
    printf 'RUSTC_WRAPPER=%s\n' "$wrapper" >>"${GITHUB_ENV:?GITHUB_ENV is not set}"
  fi
fi

if [ -n "${INPUT_WORKING_DIRECTORY:-}" ]; then
  cd -- "$INPUT_WORKING_DIRECTORY" || fail "cannot enter working-directory '$INPUT_WORKING_DIRECTORY'"
fi

# Split the command into words the way a POSIX shell would, honouring quotes and backslashes,
# with no expansion of variables, globs or command substitutions: the binary does it (shell
# rules, where xargs has its own), so tests/testsuite/action/steps.rs reaches the very splitting a job gets.
[ -n "${INPUT_COMMAND//[[:space:]]/}" ] || fail "the 'command' input is empty (e.g. 'build --release')"
words=$(mktemp)
trap 'rm -f "$words"' EXIT
"$cg" __split-words -- "$INPUT_COMMAND" >"$words" 2>/dev/null ||
  fail "cannot split the 'command' input into words (unbalanced quotes?): $INPUT_COMMAND"
args=()
while IFS= read -r -d '' word; do args+=("$word"); done <"$words"

# With export-target-dir, a background `cargo guarded hold` keeps the job's lease live. The
# holder itself writes the job's environment to GITHUB_ENV (values with line breaks in the
# runner's heredoc form, so no value can define another variable), including:
# - CARGO_GUARDED_LEASE: its lease; a later `cargo guarded` step of the job runs inside it
#   rather than waiting for it;
# - CARGO_GUARDED_HOLD_PID and CARGO_GUARDED_HOLD_ID: its pid, and a random id given in its
#   environment, so that a later use of the action stops this very holder, never another
#   process that happens to have that pid now.

# Whether $1 is the live holder started with hold id $2 (its environment says so).
is_our_hold() {
  [ -n "$1" ] && [ -n "$2" ] && kill -0 "$1" 2>/dev/null &&
    tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | grep -Fqx "CARGO_GUARDED_HOLD_ID=$2"
}

stop_hold() {
  local pid=${CARGO_GUARDED_HOLD_PID:-}
  is_our_hold "$pid" "${CARGO_GUARDED_HOLD_ID:-}" || return 0
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
  local holdlog hold_id pid
  holdlog=$(mktemp "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/cargo-guarded-hold.XXXXXXXXXX") || {
    echo "::warning title=cargo-guarded::cannot create the lease holder's log; CARGO_TARGET_DIR was not exported"
    return 0
  }
  hold_id=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || printf '%s-%s' "$$" "$RANDOM$RANDOM")
  # Detached: its own session (the step's cancellation does not reach it), no inherited pipes
  # (the runner would wait for them to close). It inherits RUNNER_TRACKING_ID, so the runner's
  # end-of-job orphan cleanup kills it; the lease then expires one TTL after its last heartbeat.
  # The job id reaches it as data (the environment), never re-parsed. GITHUB_ACTIONS is blanked:
  # its outputs and summary would repeat the command's.
  CARGO_GUARDED_EXPORT_ENV=${GITHUB_ENV:?GITHUB_ENV is not set} CARGO_GUARDED_HOLD_ID=$hold_id \
    GITHUB_ACTIONS='' setsid nohup "$cg" guarded hold </dev/null >"$holdlog" 2>&1 &
  pid=$!
  # Bounded wait until it holds the lease and has written GITHUB_ENV (its first line says so),
  # so the lease is live before the next step starts; 0.1 s steps, 10 minutes at most (it may
  # have to wait for a guard).
  for _ in $(seq 6000); do
    if grep -qi 'holding the lease' "$holdlog" 2>/dev/null; then
      # Ours, a UUID: safe as a GITHUB_ENV line.
      printf 'CARGO_GUARDED_HOLD_ID=%s\n' "$hold_id" >>"$GITHUB_ENV"
      echo "holding the job's lease for the rest of the job (pid $pid); CARGO_TARGET_DIR exported"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "::warning title=cargo-guarded::the lease holder did not start; the job dir stays protected only for the linger after this step: $(escape_data "$(cat "$holdlog" 2>/dev/null)")"
}

# Without the export holder, a job holder (`hold --job-only`) holds only the job's job.lock until
# the runner's end-of-job cleanup kills it, so the job's dir lingers only until the job ends, not
# the whole linger (docs/protocol.md#linger-ends-with-the-job). One per job: a later use of the
# action finds it by its exported pid and id. The export holder holds the job lock itself.
start_job_hold() {
  [ -n "${GITHUB_ENV:-}" ] || return 0
  is_our_hold "${CARGO_GUARDED_JOB_HOLD_PID:-}" "${CARGO_GUARDED_JOB_HOLD_ID:-}" && return 0
  is_our_hold "${CARGO_GUARDED_HOLD_PID:-}" "${CARGO_GUARDED_HOLD_ID:-}" && return 0
  local hold_id pid
  hold_id=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || printf '%s-%s' "$$" "$RANDOM$RANDOM")
  # Detached like the export holder (see start_hold): the end-of-job cleanup is what stops it.
  CARGO_GUARDED_HOLD_ID=$hold_id GITHUB_ACTIONS='' \
    setsid nohup "$cg" guarded hold --job-only </dev/null >/dev/null 2>&1 &
  pid=$!
  printf 'CARGO_GUARDED_JOB_HOLD_PID=%s\nCARGO_GUARDED_JOB_HOLD_ID=%s\n' "$pid" "$hold_id" >>"$GITHUB_ENV"
}

# A live holder of this job's lease stays while CARGO_TARGET_DIR stays exported: this step's
# command then runs inside its lease. Only a step that exports again replaces it.
if [ "$export_target_dir" = true ]; then
  stop_hold
fi
"$cg" guarded "${cli_flags[@]}" "${args[@]}"
code=$?
# 75: the disk was too full to start; there is no lease worth holding.
if [ "$export_target_dir" = true ] && [ "$code" -ne 75 ]; then
  start_hold
elif [ "$code" -ne 75 ]; then
  start_job_hold
fi
exit "$code"
