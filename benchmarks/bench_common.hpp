// benchmarks/bench_common.hpp - what every benchmark binary shares: the real
// layer shapes, and a single-thread read-bandwidth baseline measured in the same
// process, so kernel results can be reported as a fraction of it.
#pragma once

#include <benchmark/benchmark.h>  // counters, registration

#include <bitnet/arch.hpp>
#include <algorithm>  // std::sort
#include <chrono>     // timing the baseline
#include <cstdint>    // fixed-width integers
#include <cstdlib>    // std::aligned_alloc
#include <cstring>    // std::memset
#include <memory>     // unique_ptr
#include <string>     // names
#include <vector>     // shapes

#if BITNET_X86
#include <immintrin.h>  // AVX2 loads for the streaming sum
#endif

namespace bitnet::bench {

struct layer_shape {
  const char* model;
  const char* what;
  std::int64_t M, K;  // rows (outputs), inputs
};

// Rows x inputs of every distinct ternary matmul in the three model families.
inline const std::vector<layer_shape>& model_shapes() {
  static const std::vector<layer_shape> v{
      {"2b4t", "attn_q/o", 2560, 2560},   {"2b4t", "attn_k/v", 640, 2560}, {"2b4t", "ffn_gate/up", 6912, 2560},
      {"2b4t", "ffn_down", 2560, 6912},   {"3b", "attn", 3200, 3200},      {"3b", "ffn_gate/up", 8640, 3200},
      {"3b", "ffn_down", 3200, 8640},     {"8b", "attn_q/o", 4096, 4096},  {"8b", "ffn_gate/up", 14336, 4096},
      {"8b", "ffn_down", 4096, 14336},    {"cache", "square", 2048, 2048},
  };
  return v;
}

namespace detail {
#if BITNET_X86
BITNET_TARGET_AVX2 inline std::uint64_t sum_avx2(const std::uint8_t* p, std::size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  alignas(32) std::uint64_t t[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  return t[0] + t[1] + t[2] + t[3];
}
#endif
inline std::uint64_t sum_scalar(const std::uint8_t* p, std::size_t n) {
  std::uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (std::size_t i = 0; i + 32 <= n; i += 32) {
    std::uint64_t v[4];
    std::memcpy(v, p + i, 32);
    s0 += v[0];
    s1 += v[1];
    s2 += v[2];
    s3 += v[3];
  }
  return s0 + s1 + s2 + s3;
}
}  // namespace detail

// A buffer far larger than any L3, summed with wide loads.
class read_buffer {
 public:
  explicit read_buffer(std::size_t bytes) : n_(bytes) {
    p_.reset(static_cast<std::uint8_t*>(std::aligned_alloc(64, n_)));
    std::memset(p_.get(), 1, n_);
  }
  std::uint64_t sum() const {
#if BITNET_X86
    if (arch_available<arch::avx2>()) return detail::sum_avx2(p_.get(), n_);
#endif
    return detail::sum_scalar(p_.get(), n_);
  }
  std::size_t bytes() const { return n_; }

 private:
  struct del {
    void operator()(std::uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<std::uint8_t, del> p_;
  std::size_t n_;
};

// Median single-thread read bandwidth in bytes/s over `passes` passes.
inline double measure_read_bandwidth(std::size_t bytes = std::size_t{512} << 20, int passes = 7) {
  read_buffer buf(bytes);
  benchmark::DoNotOptimize(buf.sum());  // fault pages in, warm the TLB
  std::vector<double> r;
  for (int i = 0; i < passes; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(buf.sum());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.push_back(static_cast<double>(bytes) / s);
  }
  std::sort(r.begin(), r.end());
  return r[r.size() / 2];
}

// Registers "read_bandwidth/512MiB" so the baseline also appears in the table and JSON.
inline void register_bandwidth_benchmark() {
  benchmark::RegisterBenchmark("read_bandwidth/512MiB", [](benchmark::State& st) {
    static read_buffer buf(std::size_t{512} << 20);  // benchmark-binary state only, not library state
    for (auto _ : st) benchmark::DoNotOptimize(buf.sum());
    st.counters["bytes/s"] =
        benchmark::Counter(static_cast<double>(buf.bytes()), benchmark::Counter::kIsIterationInvariantRate);
  })->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace bitnet::bench
