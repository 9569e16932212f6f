// tests/kernel_grid.hpp - GoogleTest type lists built from the library's own grids.
#pragma once

#include <gtest/gtest.h>  // ::testing::Types

#include <bitnet/dispatch.hpp>
#include <bitnet/reference.hpp>
#include <cstdint>  // fixed-width integers
#include <sstream>  // describe()
#include <string>   // names
#include <vector>   // results

#include "test_data.hpp"

namespace bitnet::test {

template <class L> struct to_gtest;
template <class... C> struct to_gtest<type_list<C...>> {
  using type = ::testing::Types<C...>;
};

struct config_name {
  template <class C> static std::string GetName(int) {
    std::string n = C::name();
    for (auto& ch : n)
      if (ch == '/') ch = '_';
    return n;
  }
};

// A matrix shape of a grid test case (K inputs, M rows).
struct shape {
  std::int64_t K, M;
};

// "<kernel> K=.. M=.. seed=..": what a failing assertion prints to reproduce the case.
inline std::string describe(const std::string& name, shape s, std::uint32_t seed) {
  std::ostringstream os;
  os << name << " K=" << s.K << " M=" << s.M << " seed=" << seed;
  return os.str();
}

// Runs a typed test body only for arches compiled into this build and runnable here;
// otherwise the test is skipped with the reason (never counted as passed).
template <class C, class F> void run_on_arch(F f) {
  if constexpr (!arch_compiled<typename C::arch>()) {
    GTEST_SKIP() << C::name() << ": not compiled for this CPU family (the x86 or aarch64 build runs it)";
  } else {
    if (!arch_available<typename C::arch>()) GTEST_SKIP() << C::name() << ": this CPU cannot run " << C::arch::name;
    if constexpr (requires { C::needs_vbmi; })
      if (C::needs_vbmi && !cpu_features::detect().avx512vbmi)
        GTEST_SKIP() << C::name() << ": this CPU has no AVX-512 VBMI";
    f.template operator()<C>();
  }
}

// Reference result for per-token activations and one weight scale, from the
// ternary values directly (no packing involved), with the kernels' epilogue:
// dot over codes = d + sum_q, y = ((float)dot_c - (float)sum_q) / s_x * s_w.
inline std::vector<float> ref_per_token(const std::vector<std::int8_t>& w, std::int64_t K, std::int64_t M, float sw,
                                        const activations& X, std::int64_t n) {
  std::vector<float> y(static_cast<std::size_t>(M));
  for (std::int64_t m = 0; m < M; ++m) {
    const std::int32_t d = reference::ternary_dot_ref(w.data() + m * K, X.q(n), K);
    y[static_cast<std::size_t>(m)] =
        ((static_cast<float>(d + X.sum(n)) - static_cast<float>(X.sum(n))) / X.scale(n)) * sw;
  }
  return y;
}

}  // namespace bitnet::test
