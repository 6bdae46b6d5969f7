#!/usr/bin/env bash
# The action's first step: make a cargo-guarded of the action's own version available, and say
# where it is (step output `bin`; its directory also goes to GITHUB_PATH for later steps).
#
#   1. the release binary cached on this runner by an earlier job (RUNNER_TOOL_CACHE survives
#      jobs on self-hosted runners), if its SHA-256 is the one action/checksums.txt lists;
#   2. a `cargo-guarded` on PATH, only if its SHA-256 is that same release binary's: a binary that
#      merely prints the right version string is not trusted (issue 14.16);
#   3. the release archive for this version and the runner's architecture, downloaded and checked
#      against action/checksums.txt (shipped inside the action, so a tampered release asset
#      cannot bring its own checksum). A mismatch is an error, never a fallback;
#   4. only when no binary exists for this platform or the download fails: `cargo install
#      --locked --path "$GITHUB_ACTION_PATH"` (the action ships its source) with a scrubbed
#      environment, cached under a key of what the build depends on.
# Installs go to a temp dir first and are renamed into place, so two runners of one host
# installing at once never see a half-written binary.
#
# CARGO_GUARDED_INSTALL_BASE_URL and CARGO_GUARDED_INSTALL_CHECKSUMS exist for tests only (a
# loopback server, a checksum list for a test build); workflows must not set them.
set -euo pipefail

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

sha256() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | cut -d ' ' -f 1
  else
    shasum -a 256 "$1" | cut -d ' ' -f 1
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
if [ -n "$bin_sum" ]; then
  if [ -f "$release_bin" ] && [ "$(sha256 "$release_bin")" = "$bin_sum" ]; then
    echo "using $release_bin (cargo-guarded $want, release binary) cached on this runner"
    found "$release_bin"
  fi
  if on_path=$(command -v cargo-guarded) && [ "$(sha256 "$on_path")" = "$bin_sum" ]; then
    echo "using $on_path (cargo-guarded $want, release binary) from PATH"
    found "$on_path"
  fi
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
notice "$why_build; building cargo-guarded $want from source with cargo install"
command -v cargo >/dev/null || fail "cargo is not on PATH; install a Rust toolchain before this action"

# Whether $1 is a cargo-guarded of the version we want (it is our own build, in our cache).
is_wanted() {
  local version
  version=$("$1" guarded --version 2>/dev/null) || return 1
  [ "$version" = "cargo-guarded $want" ]
}

# The build runs with a scrubbed environment (issue 14.13: a job's RUSTFLAGS=-C
# instrument-coverage once cached an instrumented binary that littered later jobs with
# .profraw files), so the key is what is left: the source, the toolchain, and cargo's own config.
clean_env=(env -i "PATH=$PATH" "HOME=$HOME")
for var in CARGO_HOME RUSTUP_HOME RUSTUP_TOOLCHAIN http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  if [ -n "${!var:-}" ]; then clean_env+=("$var=${!var}"); fi
done
build_key=$(
  cd "$action_path"
  {
    find Cargo.toml Cargo.lock src -type f -print0 2>/dev/null | LC_ALL=C sort -z | xargs -0 cat
    # The toolchain the scrubbed environment resolves, and the config cargo reads from
    # CARGO_HOME (the build runs from a dir with no .cargo/config.toml above it).
    cd / && "${clean_env[@]}" rustc -vV 2>/dev/null || true
    cat "${CARGO_HOME:-$HOME/.cargo}"/config "${CARGO_HOME:-$HOME/.cargo}"/config.toml 2>/dev/null || true
  } | cksum | cut -d ' ' -f 1
)
cache="$cache_base/cargo-guarded/$want-source-$build_key/$(uname -m)"
bin="$cache/bin/cargo-guarded"
# The SHA-256 of the binary as it was built, beside it. A cached binary is reused only if it
# still has it (and reports the version): that catches accidents (a truncated or half-copied
# file, a disk error, another tool writing over it), NOT tampering: whoever can write the cache
# can write this file too. The release path (above) is the one checked against checksums
# shipped with the action.
sum_file="$bin.sha256"

cached_source_build() {
  [ -x "$bin" ] && [ -f "$sum_file" ] || return 1
  if [ "$(sha256 "$bin")" != "$(cat "$sum_file")" ]; then
    notice "$bin does not match the SHA-256 recorded when it was built ($sum_file); building it again"
    return 1
  fi
  is_wanted "$bin"
}

if cached_source_build; then
  echo "using $bin (cargo-guarded $want built from source, sha256 $(cat "$sum_file")) cached on this runner"
else
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
    cargo install --locked --features store --path "$action_path" --root "$build") ||
    fail "cargo install --locked --features store --path $action_path failed (see the log above)"
  echo "::endgroup::"
  # The sum is recorded after the binary is in place: a reader in between finds no sum (or the
  # previous build's) and builds again, never trusts an unrecorded binary.
  rm -f "$sum_file"
  mv -f "$build/bin/cargo-guarded" "$bin.$$"
  mv -f "$bin.$$" "$bin"
  is_wanted "$bin" || fail "$bin does not report version $want after installing"
  sha256 "$bin" >"$sum_file.$$"
  mv -f "$sum_file.$$" "$sum_file"
fi
found "$bin"
