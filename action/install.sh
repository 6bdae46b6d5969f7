#!/usr/bin/env bash
# The action's first step: make a cargo-guarded of the action's own version available, and say
# where it is (step output `bin`; its directory also goes to GITHUB_PATH for later steps).
#
#   1. `cargo-guarded` on PATH, if `cargo-guarded guarded --version` is this action's version
#      (a runner image or an admin may have installed it);
#   2. else the copy cached on this runner from an earlier job (RUNNER_TOOL_CACHE survives jobs
#      on self-hosted runners), keyed by version and a hash of the action's source;
#   3. else `cargo install --locked --path "$GITHUB_ACTION_PATH"` (the action ships its source)
#      into that cache. Installs go to a temp root first and are renamed into place, so two
#      runners of one host installing at once never see a half-written binary.
set -euo pipefail

action_path=${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set; run this script as the install step of action.yml}
: "${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"

fail() {
  echo "::error title=cargo-guarded install::$*"
  exit 1
}

want=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' "$action_path/Cargo.toml" | head -n 1)
[ -n "$want" ] || fail "cannot read the version from $action_path/Cargo.toml"

# Whether $1 is a cargo-guarded of the version we want.
is_wanted() {
  local version
  version=$("$1" guarded --version 2>/dev/null) || return 1
  [ "$version" = "cargo-guarded $want" ]
}

if found=$(command -v cargo-guarded) && is_wanted "$found"; then
  echo "using $found (cargo-guarded $want) from PATH"
  echo "bin=$found" >>"$GITHUB_OUTPUT"
  exit 0
fi

# The source hash keeps a branch or `uses: ./` build from reusing a binary of the same version
# built from other code.
source_hash=$(
  cd "$action_path"
  find Cargo.toml Cargo.lock src -type f -print0 2>/dev/null | LC_ALL=C sort -z |
    xargs -0 cat | cksum | cut -d ' ' -f 1
)
cache_base=${RUNNER_TOOL_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}}
cache="$cache_base/cargo-guarded/$want-$source_hash/$(uname -m)"
bin="$cache/bin/cargo-guarded"

if [ -x "$bin" ] && is_wanted "$bin"; then
  echo "using $bin (cargo-guarded $want) cached on this runner"
else
  command -v cargo >/dev/null || fail "cargo is not on PATH; install a Rust toolchain before this action"
  mkdir -p "$cache/bin"
  staging=$(mktemp -d "$cache/.install.XXXXXX")
  trap 'rm -rf "$staging"' EXIT
  echo "::group::cargo install cargo-guarded $want from $action_path"
  # An exported CARGO_TARGET_DIR (a job dir, say) is not where the tool itself should be built;
  # without one, cargo install builds in a temp dir it removes afterwards.
  env -u CARGO_TARGET_DIR cargo install --locked --path "$action_path" --root "$staging" ||
    fail "cargo install --locked --path $action_path failed (see the log above)"
  echo "::endgroup::"
  mv -f "$staging/bin/cargo-guarded" "$bin.$$"
  mv -f "$bin.$$" "$bin"
  is_wanted "$bin" || fail "$bin does not report version $want after installing"
fi
echo "$cache/bin" >>"${GITHUB_PATH:-/dev/null}"
echo "bin=$bin" >>"$GITHUB_OUTPUT"
