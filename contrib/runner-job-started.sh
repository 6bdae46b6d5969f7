#!/usr/bin/env bash
# GitHub Actions runner pre-job hook: reclaim expired cargo-guarded job dirs on this host before
# each job starts. The drop-in replacement for an `rm -rf` disk guard: it only ever removes dirs
# whose lease has expired, never the dir of a build running on a sibling runner.
#
# Install (in each runner's .env file, or the service's environment):
#   ACTIONS_RUNNER_HOOK_JOB_STARTED=/opt/cargo-guarded/runner-job-started.sh
#   CARGO_GUARDED_ROOT=/srv/cargo-guarded      # the host's shared root (default: the CLI's,
#                                              # ~/.cache/cargo-guarded of the runner's user)
#
# Runners that take untrusted events (fork pull requests) run as a user of their own with a root
# of their own (another CARGO_GUARDED_ROOT, owned by that user): a job of the same user can write
# into any job dir of a root (docs/warmth.md, "Trust: whose dirs a job starts from").
#
# Every runner of a host may run it at the same moment: sweeps take turns on the root's
# .guard.lock and claim each dir under its own lock. It never fails the job (a hook that exits
# non-zero fails it, and a disk guard must not take jobs down with it); problems are printed.
#
# Optional settings:
#   CARGO_GUARDED_BIN            the binary (default: cargo-guarded on PATH, else ~/.cargo/bin)
#   CARGO_GUARDED_HOOK_MAX_TIME  start no new deletion after this long (default 2m)
#   CARGO_GUARDED_HOOK_TIMEOUT   stop the sweep after this long (default 5m; a sweep killed
#                                mid-delete is finished by the next one)
#   CARGO_GUARDED_RECLAIM_BELOW, CARGO_GUARDED_RECLAIM_TO, CARGO_GUARDED_KEEP_EXPIRED: as for
#                                the CLI
#
# The runner runs it as `bash -e runner-job-started.sh`: `set +e` first, so that no failing
# command (a root that is a file, a bad setting, a missing binary, a timeout) can end it before
# it prints its warning and exits 0. No `set -u` either: an unset variable must not abort it.
set +e

# A warning in the job's log and annotations (workflow commands work in hook output).
warn() { echo "::warning::cargo-guarded hook: $*"; }

# Without CARGO_GUARDED_ROOT the CLI's own default root is used (as for the jobs of this runner's
# user), so the hook cleans the root the jobs actually use.
root_args=()
if [ -n "${CARGO_GUARDED_ROOT:-}" ]; then
  root_args=(--root "$CARGO_GUARDED_ROOT")
fi
cg=${CARGO_GUARDED_BIN:-}
if [ -z "$cg" ]; then
  cg=$(command -v cargo-guarded 2>/dev/null) ||
    { [ -x "${HOME:-/nonexistent}/.cargo/bin/cargo-guarded" ] && cg="$HOME/.cargo/bin/cargo-guarded"; } ||
    cg=""
fi
if [ -z "$cg" ]; then
  warn "cargo-guarded not found (set CARGO_GUARDED_BIN); skipping the disk guard"
  exit 0
fi

cmd=("$cg" guarded "${root_args[@]}" gc --hook --max-time "${CARGO_GUARDED_HOOK_MAX_TIME:-2m}")
if command -v timeout >/dev/null 2>&1; then
  cmd=(timeout --kill-after=30s "${CARGO_GUARDED_HOOK_TIMEOUT:-5m}" "${cmd[@]}")
fi
# `gc --hook` itself exits 0 with a `warning:` line for whatever is wrong (a root that is a
# file, a bad setting): each becomes an annotation too. Its stderr is passed on as it was.
err=$(mktemp 2>/dev/null || echo "/tmp/cargo-guarded-hook.$$")
code=0
"${cmd[@]}" 2>"$err" || code=$?
cat "$err" >&2
while IFS= read -r line; do
  case $line in
    "warning: "*) warn "${line#warning: }; the job goes on" ;;
  esac
done <"$err"
rm -f "$err"
if [ "$code" -ne 0 ]; then
  warn "the sweep of ${CARGO_GUARDED_ROOT:-the default root} exited with status $code; the job goes on"
fi
exit 0
