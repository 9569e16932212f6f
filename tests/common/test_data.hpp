// tests/test_data.hpp - deterministic random inputs shared by tests and benchmarks.
#pragma once

#include <cstdint>  // fixed-width integers
#include <random>   // std::mt19937
#include <vector>   // data

namespace bitnet::test {

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
