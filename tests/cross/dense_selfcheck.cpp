// tests/cross/dense_selfcheck.cpp - gtest-free self-check of the dense GEMV kernels
// for every arch this build and CPU can run. Used to test the NEON bodies without
// an arm64 GoogleTest:
//
//   aarch64-linux-gnu-g++ -std=c++20 -O2 -Wall -Wextra -Wpedantic -Werror
//       -I include -I /usr/include -I tests tests/cross/dense_selfcheck.cpp -o dense_selfcheck
//   qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu ./dense_selfcheck
//
// (tests/cross/run_dense_neon.sh does exactly this.) The same checks run natively
// inside tests/test_dense.cpp. Exit status 0 = all checks passed.
#include <cstdio>  // std::printf
#include <string>  // messages
#include <vector>  // failures

#include "dense_check.hpp"

namespace {

template <class A> int check_arch(std::uint64_t seed) {
  if (!bitnet::arch_available<A>()) {
    std::printf("SKIP %s (not supported by this CPU)\n", std::string(A::name).c_str());
    return 0;
  }
  const bitnet::dense_kernels k = bitnet::dense_kernels_for<A>();
  int bad = 0;
  for (auto t : dense_check::kDenseTypes) {
    const auto fails = dense_check::run_type_suite(k, t, seed + static_cast<std::uint64_t>(t) * 1000);
    for (const auto& f : fails) std::printf("FAIL %s\n", f.c_str());
    std::printf("%s %s\n", fails.empty() ? "PASS" : "FAIL", std::string(k.kernel_name(t)).c_str());
    bad += static_cast<int>(fails.size());
  }
  // dispatch: the forced override must select this arch
  const auto sel = bitnet::select_dense_kernels(bitnet::cpu_features::detect(), A::name);
  if (sel.arch_name != A::name || sel.q6_k.fn != k.q6_k.fn) {
    std::printf("FAIL override %s selected %s\n", std::string(A::name).c_str(), std::string(sel.arch_name).c_str());
    ++bad;
  }
  return bad;
}

}  // namespace

int main() {
  const std::uint64_t seed = 20250601;
  int bad = check_arch<bitnet::arch::scalar>(seed);
#if BITNET_X86
  bad += check_arch<bitnet::arch::avx2>(seed);
  bad += check_arch<bitnet::arch::avx512bw>(seed);
#endif
#if BITNET_ARM64
  bad += check_arch<bitnet::arch::neon64>(seed);
  bad += check_arch<bitnet::arch::neon64_dotprod>(seed);
#endif
  const auto best = bitnet::select_dense_kernels(bitnet::cpu_features::detect());
  std::printf("default selection: %s\n", std::string(best.arch_name).c_str());
  std::printf("%s: %d failing checks\n", bad == 0 ? "OK" : "FAILED", bad);
  return bad == 0 ? 0 : 1;
}
