#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
#   1. g++      Release, -Werror, every target; CTest (kernels, formats, GGUF, tokenizers,
#               runner, tools, compile-fail caps, consumer projects)
#   2. clang-19 Release, -Werror, every target; CTest, plus the GGUF libFuzzer target
#               for BITNET_FUZZ_SECONDS (default 60)
#   3. g++      AddressSanitizer + UndefinedBehaviorSanitizer; CTest
#   4. aarch64  cross build of the kernel tests, run under qemu-aarch64 (NEON, dotprod)
# Usage: scripts/test.sh [--quick]   (--quick: stage 1 only)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scripts/setup.sh || exit 1
scripts/fetch_llama3_tokenizer.sh || true   # optional test vocab; tests skip without it
scripts/fetch_openai_sdk.sh || true         # the OpenAI SDK for the server tests; they skip without it

jobs=${BITNET_JOBS:-$(nproc)}
fuzz_seconds=${BITNET_FUZZ_SECONDS:-60}
quick=0
[ "${1:-}" = "--quick" ] && quick=1
out=${BITNET_BUILD_ROOT:-$root/build-test}
mkdir -p "$out"
passed=0; failed=0; skipped=0; status=0

stage() {  # name, build dir, extra cmake args...
  local name=$1 dir=$2; shift 2
  echo "=== $name ==="
  local t0=$SECONDS
  if ! cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DBITNET_WERROR=ON "$@" >"$dir.configure.log" 2>&1; then
    cat "$dir.configure.log"; echo "$name: configure FAILED"; status=1; failed=$((failed+1)); return
  fi
  if ! cmake --build "$dir" -j"$jobs" >"$dir.build.log" 2>&1; then
    grep -E "error|Error" "$dir.build.log" | head -40; echo "$name: build FAILED (log: $dir.build.log)"
    status=1; failed=$((failed+1)); return
  fi
  echo "$name: built in $((SECONDS-t0)) s"
  ctest --test-dir "$dir" -j"$jobs" --output-on-failure >"$dir.ctest.log" 2>&1
  local rc=$?
  grep -E "tests passed|Total Test time" "$dir.ctest.log"
  grep -A100 "The following tests FAILED" "$dir.ctest.log" | head -40
  local line p f
  line=$(grep -E "[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+" "$dir.ctest.log" | tail -1)
  f=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
  local total; total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
  local s; s=$(grep -cE "\*\*\*Skipped|Skipped +[0-9.]+ sec" "$dir.ctest.log" || true)
  p=$((total - f - s))
  passed=$((passed+p)); failed=$((failed+f)); skipped=$((skipped+s))
  [ $rc -eq 0 ] || status=1
  echo "$name: $p passed, $f failed, $s skipped ($((SECONDS-t0)) s)"
}

stage "g++ release" "$out/gcc" -DCMAKE_CXX_COMPILER=g++
if [ $quick -eq 0 ]; then
  stage "clang-19 release + fuzz" "$out/clang" -DCMAKE_CXX_COMPILER=clang++-19 -DBITNET_FUZZ=ON \
    -DBITNET_FUZZ_SECONDS="$fuzz_seconds" -DBITNET_BUILD_BENCHMARKS=OFF
  stage "g++ asan+ubsan" "$out/asan" -DCMAKE_CXX_COMPILER=g++ -DBITNET_SANITIZE=ON \
    -DBITNET_BUILD_BENCHMARKS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
  xs="$out/xsimd-headers"; mkdir -p "$xs"; ln -sfn /usr/include/xsimd "$xs/xsimd"
  stage "aarch64 (qemu)" "$out/aarch64" -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchain-aarch64.cmake" \
    -DBITNET_XSIMD_INCLUDE_DIR="$xs" -DBITNET_GTEST_SOURCE_DIR=/usr/src/googletest \
    -DBITNET_TESTS="test_kernels;test_formats;test_dense;test_lut;test_tuning" -DBITNET_BUILD_BENCHMARKS=OFF \
    -DBITNET_BUILD_EXAMPLES=OFF -DBITNET_BUILD_TOOLS=OFF
fi
echo "=== summary ==="
echo "total: $passed passed, $failed failed, $skipped skipped"
exit $status
