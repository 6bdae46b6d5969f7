#!/usr/bin/env bash
# Record a release's checksums in action/checksums.txt: `scripts/update-checksums.sh DIR`, where
# DIR holds the release's `cargo-guarded-vVERSION-TARGET.tar.gz` archives and their `.sha256`
# files (from scripts/package-release.sh, or downloaded from the GitHub release).
#
# For each archive it verifies the `.sha256`, then writes two lines: the archive's SHA-256 (what
# action/install.sh checks after downloading) and the SHA-256 of the binary inside (what it checks
# for a binary already cached or on PATH). Lines of the same names are replaced; others are kept.
# CHECKSUMS=FILE writes elsewhere (tests).
set -euo pipefail

dir=${1:?usage: scripts/update-checksums.sh DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${CHECKSUMS:-$root/action/checksums.txt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

shopt -s nullglob
archives=("$dir"/cargo-guarded-v*.tar.gz)
[ ${#archives[@]} -gt 0 ] || { echo "error: no cargo-guarded-v*.tar.gz in $dir" >&2; exit 1; }
: >"$work/new"
for a in "${archives[@]}"; do
  name=$(basename "$a")
  stem=${name%.tar.gz}
  (cd "$(dirname "$a")" && sha256sum --check --quiet "$name.sha256") ||
    { echo "error: $a does not match $name.sha256" >&2; exit 1; }
  tar -xzf "$a" -C "$work" "$stem/cargo-guarded"
  printf '%s  %s\n' "$(sha256sum "$a" | cut -d ' ' -f 1)" "$name" >>"$work/new"
  printf '%s  %s\n' "$(sha256sum "$work/$stem/cargo-guarded" | cut -d ' ' -f 1)" "$stem/cargo-guarded" >>"$work/new"
done
touch "$out"
# Keep comments and other releases' lines; replace the ones just computed.
awk 'NR == FNR { seen[$2] = 1; next } !($2 in seen)' "$work/new" "$out" >"$work/kept"
{ grep '^#' "$work/kept" || true; grep -v '^#' "$work/kept" | grep . || true; cat "$work/new"; } >"$out.tmp"
mv "$out.tmp" "$out"
echo "updated $out ($(wc -l <"$work/new") lines)"
