#!/usr/bin/env bash
# The action's install step: make a cargo-guarded of the action's own version available, and say
# where it is (step output `bin`; its directory also goes to GITHUB_PATH for later steps).
#
#   1. the release binary cached on this runner by an earlier job (RUNNER_TOOL_CACHE survives
#      jobs on self-hosted runners), if its SHA-256 is the one action/checksums.txt lists;
#   2. a `cargo-guarded` on PATH, only if its SHA-256 is that same release binary's: a binary that
#      merely prints the right version string is not trusted;
#   3. the release archive for this version and the runner's architecture, downloaded and checked
#      against action/checksums.txt (shipped inside the action, so a tampered release asset
#      cannot bring its own checksum). A mismatch is an error, never a fallback;
#   4. only when no binary exists for this platform or the download fails: `cargo install
#      --locked --path "$GITHUB_ACTION_PATH"` (the action ships its source) with a scrubbed
#      environment, cached under a key of what the build depends on (step output `built=true`
#      when it compiled).
# Installs go to a temp dir first and are renamed into place, so two runners of one host
# installing at once never see a half-written binary.
#
# `install.sh plan` runs first (action.yml's `plan` step) and installs nothing: when the run will
# take path 4 and no build is cached on this runner, it names the cache entry that
# actions/cache/restore fetches before the install step and actions/cache/save stores after it
# (outputs `cache-key`, `cache-path`, `cache-restore`, `cache-save`), so ephemeral runners build
# from source once per action version and toolchain, not once per job. A source build has no
# checksum anyone vouches for; what protects it is the cache service's scoping (an entry saved by
# a pull request's run is visible only to that pull request, never to the default branch) and
# saving only from runs of the default branch's own code (`trusted_run` below).
#
# CARGO_GUARDED_INSTALL_BASE_URL and CARGO_GUARDED_INSTALL_CHECKSUMS exist for tests only (a
# loopback server, a checksum list for a test build); workflows must not set them.
set -euo pipefail

mode=${1:-install}
case "$mode" in
  plan | install) ;;
  *) echo "::error title=cargo-guarded install::unknown mode '$mode' (plan or install)"; exit 1 ;;
esac
action_path=${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set; run this script as the install step of action.yml}
: "${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"

fail() {
  echo "::error title=cargo-guarded install::$*"
  exit 1
}

notice() {
  echo "::notice title=cargo-guarded install::$*"
}

want=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' "$action_path/Cargo.toml" | head -n 1)
[ -n "$want" ] || fail "cannot read the version from $action_path/Cargo.toml"

# The SHA-256 of file $1, or of stdin without an argument.
sha256() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$@" | cut -d ' ' -f 1
  else
    shasum -a 256 "$@" | cut -d ' ' -f 1
  fi
}

# The release target for this runner: the static musl builds run on any distribution and in any
# job container.
target=
if [ "$(uname -s)" = Linux ]; then
  case "$(uname -m)" in
    x86_64 | amd64) target=x86_64-unknown-linux-musl ;;
    aarch64 | arm64) target=aarch64-unknown-linux-musl ;;
  esac
fi

# action/checksums.txt: `SHA256  NAME` lines (sha256sum format) for each release archive and for
# the binary inside it; scripts/update-checksums.sh writes them at release time.
checksums=${CARGO_GUARDED_INSTALL_CHECKSUMS:-$action_path/action/checksums.txt}
stem="cargo-guarded-v$want-$target"
archive="$stem.tar.gz"
listed() {
  [ -f "$checksums" ] || return 0
  awk -v name="$1" '$2 == name && length($1) == 64 && $1 !~ /[^0-9a-f]/ { print $1; exit }' "$checksums"
}
archive_sum=
bin_sum=
if [ -n "$target" ]; then
  archive_sum=$(listed "$archive")
  bin_sum=$(listed "$stem/cargo-guarded")
fi

cache_base=${RUNNER_TOOL_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}}
found() {
  echo "$(dirname "$1")" >>"${GITHUB_PATH:-/dev/null}"
  echo "bin=$1" >>"$GITHUB_OUTPUT"
  exit 0
}

release_dir="$cache_base/cargo-guarded/$want/$target"
release_bin="$release_dir/cargo-guarded"
release_cached() {
  [ -n "$bin_sum" ] && [ -f "$release_bin" ] && [ "$(sha256 "$release_bin")" = "$bin_sum" ]
}
release_on_path() {
  [ -n "$bin_sum" ] && on_path=$(command -v cargo-guarded) && [ "$(sha256 "$on_path")" = "$bin_sum" ]
}

# --- the source build: what it depends on, and where it is kept --------------------------------
# The build runs with a scrubbed environment (a job's RUSTFLAGS=-C instrument-coverage once
# cached an instrumented binary that littered later jobs with .profraw files), so the key is what
# is left: the source, the toolchain, the features, and cargo's own config.
features=store
# Sets clean_env, rustc_vv, build_key, cache, bin and sum_file. Only a run that may build from
# source pays for it (a `rustc -vV` and a digest of the source).
source_build_setup() {
  clean_env=(env -i "PATH=$PATH" "HOME=$HOME")
  for var in CARGO_HOME RUSTUP_HOME RUSTUP_TOOLCHAIN http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    if [ -n "${!var:-}" ]; then clean_env+=("$var=${!var}"); fi
  done
  # The toolchain the scrubbed environment resolves (the build runs from a dir with no
  # .cargo/config.toml or rust-toolchain.toml above it).
  rustc_vv=$(cd / && "${clean_env[@]}" rustc -vV 2>/dev/null) || rustc_vv=
  # The action's commit, by content: a moving tag (`@v0`) names no commit, `uses: ./` builds
  # whatever the checkout holds, and the runner's copy of an action has no .git to ask. SHA-256,
  # not a checksum: the key also names an entry in the repository's shared cache service.
  build_key=$(
    cd "$action_path"
    {
      find Cargo.toml Cargo.lock src -type f -print0 2>/dev/null | LC_ALL=C sort -z | xargs -0 cat
      printf '%s\n' "$rustc_vv" "features: $features"
      cat "${CARGO_HOME:-$HOME/.cargo}"/config "${CARGO_HOME:-$HOME/.cargo}"/config.toml 2>/dev/null || true
    } | sha256 | cut -c 1-32
  )
  cache="$cache_base/cargo-guarded/$want-source-$build_key/$(uname -m)"
  bin="$cache/bin/cargo-guarded"
  # The SHA-256 of the binary as it was built, beside it (and in the cache service's entry). A
  # cached binary is reused only if it still has it (and reports the version): that catches
  # accidents (a truncated or half-copied file, a disk error, another tool writing over it), NOT
  # tampering: whoever can write the cache can write this file too. The release path is the one
  # checked against checksums shipped with the action.
  sum_file="$bin.sha256"
}

# A field of `rustc -vV` (host, release).
rustc_field() { sed -n "s/^$1: //p" <<<"$rustc_vv"; }

# Whether $1 is a cargo-guarded of the version we want.
is_wanted() {
  local version
  version=$("$1" guarded --version 2>/dev/null) || return 1
  [ "$version" = "cargo-guarded $want" ]
}

cached_source_build() {
  [ -x "$bin" ] && [ -f "$sum_file" ] || return 1
  if [ "$(sha256 "$bin")" != "$(cat "$sum_file")" ]; then
    notice "$bin does not match the SHA-256 recorded when it was built ($sum_file); building it again"
    return 1
  fi
  is_wanted "$bin"
}

# Whether this run may save a source build where every later run of the repository restores it
# from: only a run of the default branch's own code, started by a push to it, a schedule or a
# manual dispatch. A pull request's run (`pull_request*`, and `workflow_run`, which may run on
# its behalf) never saves: `pull_request_target` runs with the base branch's ref, so its entry
# would be in the default branch's scope, which every branch and pull request restores from.
trusted_run() {
  local default=${INPUT_DEFAULT_BRANCH:-${EVENT_DEFAULT_BRANCH:-}}
  case "${GITHUB_EVENT_NAME:-}" in
    push | schedule | workflow_dispatch) ;;
    *) return 1 ;;
  esac
  [ -n "$default" ] && [ "${GITHUB_REF:-}" = "refs/heads/$default" ]
}

# --- plan: whether the install step will build, and the cache entry that spares it -------------
if [ "$mode" = plan ]; then
  restore=false
  save=false
  if [ -n "$bin_sum" ] && [ -n "$archive_sum" ] && command -v curl >/dev/null; then
    echo "a release binary of cargo-guarded $want is checked against action/checksums.txt: no source build to cache"
  elif release_cached || release_on_path; then
    echo "the release binary of cargo-guarded $want is on this runner: no source build to cache"
  elif source_build_setup && cached_source_build; then
    echo "cargo-guarded $want built from source is cached on this runner: $bin"
  else
    restore=true
    if trusted_run; then
      save=true
      echo "no release binary for cargo-guarded $want: a source build is restored from the Actions cache, or built and saved there (a run of the default branch)"
    else
      echo "no release binary for cargo-guarded $want: a source build is restored from the Actions cache, or built (not saved: ${GITHUB_EVENT_NAME:-no event} on ${GITHUB_REF:-no ref} is not a push, schedule or dispatch of the default branch)"
    fi
  fi
  {
    echo "cache-restore=$restore"
    echo "cache-save=$save"
    if [ "$restore" = true ]; then
      # Readable parts first (the cache service's list shows keys); the digest decides.
      host=$(rustc_field host)
      release=$(rustc_field release)
      echo "cache-key=cargo-guarded-$want-${host:-unknown}-rustc-${release:-unknown}-$features-$build_key"
      echo "cache-path=$cache"
    fi
  } >>"$GITHUB_OUTPUT"
  exit 0
fi

# --- install ------------------------------------------------------------------------------------
if release_cached; then
  echo "using $release_bin (cargo-guarded $want, release binary) cached on this runner"
  found "$release_bin"
fi
if release_on_path; then
  echo "using $on_path (cargo-guarded $want, release binary) from PATH"
  found "$on_path"
fi

why_build=
if [ -z "$target" ]; then
  why_build="no prebuilt binary for $(uname -s) $(uname -m)"
elif [ -z "$archive_sum" ] || [ -z "$bin_sum" ]; then
  why_build="no checksum for $archive in action/checksums.txt (an unreleased version?)"
elif ! command -v curl >/dev/null; then
  why_build="curl is not installed"
else
  base=${CARGO_GUARDED_INSTALL_BASE_URL:-https://github.com/cargo-guarded/cargo-guarded/releases/download}
  url="$base/v$want/$archive"
  mkdir -p "$release_dir"
  staging=$(mktemp -d "$release_dir.XXXXXX")
  trap 'rm -rf "$staging"' EXIT
  echo "downloading $url"
  # --retry covers timeouts and 5xx (not a 404: a missing archive does not come back).
  if curl --fail --silent --show-error --location --proto '=https,http' \
    --retry 3 --retry-delay 2 --retry-connrefused --connect-timeout 10 --max-time 120 \
    --output "$staging/$archive" "$url"; then
    got=$(sha256 "$staging/$archive")
    [ "$got" = "$archive_sum" ] ||
      fail "checksum mismatch for $url: got $got, action/checksums.txt says $archive_sum; refusing to install it"
    tar -xzf "$staging/$archive" -C "$staging" "$stem/cargo-guarded" ||
      fail "cannot unpack $stem/cargo-guarded from $archive"
    got=$(sha256 "$staging/$stem/cargo-guarded")
    [ "$got" = "$bin_sum" ] ||
      fail "checksum mismatch for $stem/cargo-guarded in $archive: got $got, expected $bin_sum"
    chmod 755 "$staging/$stem/cargo-guarded"
    mv -f "$staging/$stem/cargo-guarded" "$release_bin.$$"
    mv -f "$release_bin.$$" "$release_bin"
    echo "installed $release_bin (cargo-guarded $want, sha256 $bin_sum)"
    found "$release_bin"
  fi
  why_build="downloading $url failed"
fi

# --- fallback: build from the action's source --------------------------------------------------
source_build_setup
if cached_source_build; then
  # On this runner from an earlier job, or restored by the plan's actions/cache/restore step.
  echo "using $bin (cargo-guarded $want built from source, sha256 $(cat "$sum_file")), cached on this runner or restored from the Actions cache"
  found "$bin"
fi
notice "$why_build; building cargo-guarded $want from source with cargo install"
command -v cargo >/dev/null || fail "cargo is not on PATH; install a Rust toolchain before this action"
mkdir -p "$cache/bin"
build=$(mktemp -d "$cache/.install.XXXXXX")
trap 'rm -rf "$build" "${staging:-}"' EXIT
echo "::group::cargo install cargo-guarded $want from $action_path"
# From inside the temp dir, so no .cargo/config.toml of the job's workspace applies. The
# target dir is ours too: `cargo install --path` would otherwise build in the action's own
# `target/` (read-only, or shared by every runner of the host), and a job's CARGO_TARGET_DIR
# (a job dir) is not where the tool should be built. It goes with the temp dir. With the
# `store` feature, as the release binaries are built, so the `store` input works either way.
(cd "$build" && "${clean_env[@]}" CARGO_TARGET_DIR="$build/target" \
  cargo install --locked --features "$features" --path "$action_path" --root "$build") ||
  fail "cargo install --locked --features $features --path $action_path failed (see the log above)"
echo "::endgroup::"
# The sum is recorded after the binary is in place: a reader in between finds no sum (or the
# previous build's) and builds again, never trusts an unrecorded binary.
rm -f "$sum_file"
mv -f "$build/bin/cargo-guarded" "$bin.$$"
mv -f "$bin.$$" "$bin"
is_wanted "$bin" || fail "$bin does not report version $want after installing"
sha256 "$bin" >"$sum_file.$$"
mv -f "$sum_file.$$" "$sum_file"
# The build's temp dir goes now, not at exit: the save step stores the whole of $cache.
rm -rf "$build"
echo "built=true" >>"$GITHUB_OUTPUT"
found "$bin"
