#!/usr/bin/env bash
# Installs the official OpenAI SDK for Node (npm package `openai`, pinned) for the server tests,
# which drive bitnet-server with it (tests/server/openai_sdk.mjs).
#
#   scripts/fetch_openai_sdk.sh [DEST_DIR]
#
# DEST_DIR defaults to third_party/downloads (gitignored); the package lands in
# DEST_DIR/node_modules/openai, where the tests look by default (or point BITNET_OPENAI_SDK_DIR at
# the folder holding node_modules/). The tarball's sha256 is checked: a mismatch installs nothing.
# Idempotent and quiet: nothing happens when the pinned version is already there; it exits 0 with
# a note when npm or the network is unavailable (the SDK test then reports itself skipped).
#
# Version: 6.49.0, the last release without an engines constraint; 7.x needs Node >= 22, and
# Debian 12 / NodeSource 20 is what the machines have. It has no runtime dependencies (its peer
# dependencies ws, zod and the AWS signers are optional and not needed here). Licence Apache-2.0;
# downloaded for local testing only and never committed.
set -euo pipefail

VERSION="6.49.0"
SHA256="e48de0f4c5dbecebdeb864233f5ea49be07cd3e0ff3bd3e1e6745dc5e168cced"  # openai-6.49.0.tgz

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/third_party/downloads}/node_modules/openai"

note() { echo "fetch_openai_sdk: $*" >&2; }

if [[ -f "$dest/package.json" ]] && grep -q "\"version\": \"$VERSION\"" "$dest/package.json"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  note "npm not found; skipping (the OpenAI SDK test will report itself skipped)"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! (cd "$work" && timeout 300 npm pack --silent "openai@$VERSION" >/dev/null 2>"$work/npm.log"); then
  note "npm pack openai@$VERSION failed (offline?); skipping. npm said: $(tail -n 3 "$work/npm.log" | tr '\n' ' ')"
  exit 0
fi
tarball="$work/openai-$VERSION.tgz"
got="$(sha256sum "$tarball" | cut -d' ' -f1)"
if [[ "$got" != "$SHA256" ]]; then
  note "openai-$VERSION.tgz has sha256 $got, expected $SHA256; not installing it"
  exit 0
fi
mkdir -p "$work/pkg"
tar -xzf "$tarball" -C "$work/pkg" --strip-components=1
rm -rf "$dest.tmp" "$dest"
mkdir -p "$(dirname "$dest")"
mv "$work/pkg" "$dest.tmp"
mv "$dest.tmp" "$dest"
