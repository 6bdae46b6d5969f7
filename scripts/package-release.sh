#!/usr/bin/env bash
# Build and archive one release target: `scripts/package-release.sh TARGET [DIST_DIR]`.
#
# Writes DIST_DIR/cargo-guarded-vVERSION-TARGET.tar.gz (one top-level dir holding the binary, both
# licences, README.md and CHANGELOG.md) and its `.sha256` (sha256sum format). The release workflow
# runs it for each target; CI runs it for the host target and checks the result (tests/testsuite/release.rs).
# CARGO_GUARDED_PREBUILT=PATH packages that binary instead of building one.
set -euo pipefail

target=${1:?usage: scripts/package-release.sh TARGET [DIST_DIR]}
root=$(cd "$(dirname "$0")/.." && pwd)
dist=${2:-$root/dist}
version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$version" ] || { echo "error: cannot read the version from $root/Cargo.toml" >&2; exit 1; }

if [ -n "${CARGO_GUARDED_PREBUILT:-}" ]; then
  bin=$CARGO_GUARDED_PREBUILT
else
  # Release binaries (what the action installs) include the object store (`--store`).
  (cd "$root" && cargo build --release --locked --features store --target "$target")
  target_dir=${CARGO_TARGET_DIR:-$root/target}
  bin="$target_dir/$target/release/cargo-guarded"
fi
[ -x "$bin" ] || { echo "error: $bin is not an executable" >&2; exit 1; }

stem="cargo-guarded-v$version-$target"
mkdir -p "$dist"
dist=$(cd "$dist" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/$stem"
cp "$bin" "$work/$stem/cargo-guarded"
cp "$root/LICENSE-MIT" "$root/LICENSE-APACHE" "$root/README.md" "$root/CHANGELOG.md" "$work/$stem/"
chmod 755 "$work/$stem/cargo-guarded"
# Reproducible metadata: sorted names, no owner names, the commit's time if known.
mtime=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" -C "$work" -cf - "$stem" |
  gzip -9n >"$dist/$stem.tar.gz"
(cd "$dist" && sha256sum "$stem.tar.gz" >"$stem.tar.gz.sha256")
echo "$dist/$stem.tar.gz"
