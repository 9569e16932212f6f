// tests/kernel_grid.hpp - helpers shared by the kernel tests and benchmarks:
// GoogleTest type lists built from the library's own grids, and random data.
#pragma once

#include <gtest/gtest.h>  // ::testing::Types

#include <bitnet/dispatch.hpp>
#include <cstdint>  // fixed-width integers
#include <random>   // std::mt19937
#include <string>   // names
#include <vector>   // data

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

inline std::vector<std::int8_t> random_ternary(std::size_t n, std::uint32_t seed, int p_zero_percent = 34) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(0, 99), s(0, 1);
  std::vector<std::int8_t> w(n);
  for (auto& v : w) v = d(rng) < p_zero_percent ? 0 : (s(rng) ? 1 : -1);
  return w;
}

inline std::vector<float> random_floats(std::size_t n, std::uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> x(n);
  for (auto& v : x) v = d(rng);
  return x;
}

}  // namespace bitnet::test
