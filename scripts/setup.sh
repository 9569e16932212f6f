#!/usr/bin/env bash
# Installs what bitnet needs on Debian 12, and only what is missing (a no-op on a machine that
# has everything). Needs root (or sudo) for apt.
#   scripts/setup.sh        everything: build, tests, benchmarks, second compiler, sanitizers,
#                           fuzzer, aarch64 cross build under qemu, the npm tokenizer fetch
#                           (scripts/test.sh runs this)
#   scripts/setup.sh run    only what building and running bitnet-generate needs
#                           (scripts/run.sh runs this)
set -euo pipefail

run_pkgs=(
  cmake g++ make                      # build
  libxsimd-dev                        # SIMD arch tags (xsimd 8.1 on Debian 12)
)
all_pkgs=(
  "${run_pkgs[@]}"
  googletest libgtest-dev libgmock-dev  # tests (googletest = sources, for cross builds)
  libbenchmark-dev                    # benchmarks
  clang-19 libclang-rt-19-dev         # second compiler, sanitizers, libFuzzer
  nlohmann-json3-dev                  # JSON: bitnet-server; the Llama-3 tokenizer.json in tests
  libcpp-httplib-dev pkg-config       # bitnet-server's HTTP (found through its pkg-config file)
  curl                                # the server tests check SSE framing with curl
  g++-aarch64-linux-gnu qemu-user     # aarch64 cross build, run under qemu
  npm                                 # fetches test data (Llama-3 vocab, OpenAI SDK); node runs the server tests
)
case "${1:-all}" in
  run) pkgs=("${run_pkgs[@]}") ;;
  all) pkgs=("${all_pkgs[@]}") ;;
  *) echo "usage: scripts/setup.sh [run|all]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm may come from a non-Debian Node install; accept any working npm.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/npm/}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: all dependencies present (${1:-all})" >&2
