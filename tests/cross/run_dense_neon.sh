#!/bin/sh
# Cross-compile the dense kernel self-check for AArch64 and run it under qemu
# (-cpu max has asimd and dotprod, so neon64 and neon64dp both run).
# Usage: tests/cross/run_dense_neon.sh [output-dir]   (from anywhere)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-"$root/build-dense/cross"}
mkdir -p "$out"
for cxx in aarch64-linux-gnu-g++; do
  "$cxx" -std=c++20 -O2 -Wall -Wextra -Wpedantic -Werror -I "$root/include" -I /usr/include -I "$root/tests" \
    "$root/tests/cross/dense_selfcheck.cpp" -o "$out/dense_selfcheck"
done
qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu "$out/dense_selfcheck"
