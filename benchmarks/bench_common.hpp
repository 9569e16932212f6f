// benchmarks/bench_common.hpp - what every benchmark binary shares: the real
// layer shapes, and a single-thread read-bandwidth baseline measured in the same
// process, so kernel results can be reported as a fraction of it.
#pragma once

#include <benchmark/benchmark.h>  // counters, registration

#include <bitnet/arch.hpp>
#include <bitnet/dispatch.hpp>  // the dispatch picks recorded as context
#include <algorithm>  // std::sort
#include <chrono>     // timing the baseline
#include <cstdint>    // fixed-width integers
#include <cstdlib>    // std::aligned_alloc
#include <cstdio>     // usage text
#include <cstring>    // std::memset, std::strcmp
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
// Sum of n bytes read as two interleaved streams (two halves): one stream leaves
// memory-level parallelism unused on some cores, two reach the best plain read
// rate we measured on one thread; more streams did not read faster.
#if BITNET_X86
BITNET_TARGET_AVX2 inline std::uint64_t sum_avx2(const std::uint8_t* p, std::size_t n) {
  const std::size_t h = n / 2 / 64 * 64;
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i < h; i += 64) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + h + i)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + h + i + 32)));
  }
  alignas(32) std::uint64_t t[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  return t[0] + t[1] + t[2] + t[3];
}
#endif
inline std::uint64_t sum_scalar(const std::uint8_t* p, std::size_t n) {
  const std::size_t h = n / 2 / 32 * 32;
  std::uint64_t s0 = 0, s1 = 0;
  for (std::size_t i = 0; i < h; i += 32) {
    std::uint64_t v[4], w[4];
    std::memcpy(v, p + i, 32);
    std::memcpy(w, p + h + i, 32);
    s0 += v[0] + v[1] + v[2] + v[3];
    s1 += w[0] + w[1] + w[2] + w[3];
  }
  return s0 + s1;
}
inline std::uint64_t sum(const std::uint8_t* p, std::size_t n) {
#if BITNET_X86
  if (arch_available<arch::avx2>()) return sum_avx2(p, n);
#endif
  return sum_scalar(p, n);
}
}  // namespace detail

// Total footprint of the "dram" cases: above the L3 that this VM reports (480 MiB).
inline constexpr std::size_t kDramFootprint = std::size_t{1280} << 20;

// A large region read in chunks of the size a kernel streams per call, in turn,
// so a chunk is never in cache when it is read again.
class read_buffer {
 public:
  explicit read_buffer(std::size_t bytes) : n_(bytes) {
    // Same allocation as the kernels' weights (huge pages where the OS gives them),
    // so the baseline and the kernels read memory mapped the same way.
    p_.reset(static_cast<std::uint8_t*>(bitnet::detail::alloc_aligned_bytes((n_ + 63) / 64 * 64)));
    std::memset(p_.get(), 1, n_);
  }
  std::uint64_t sum(std::size_t offset, std::size_t bytes) const { return detail::sum(p_.get() + offset, bytes); }
  std::size_t bytes() const { return n_; }
  const std::uint8_t* data() const { return p_.get(); }

 private:
  struct del {
    void operator()(std::uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<std::uint8_t, del> p_;
  std::size_t n_;
};

// Median single-thread read bandwidth in bytes/s, reading `chunk` bytes per
// timed call through a region larger than the L3 (the way the dram cases read).
inline double measure_read_bandwidth(std::size_t chunk = std::size_t{4} << 20, int passes = 2) {
  read_buffer buf(kDramFootprint);
  const std::size_t n = buf.bytes() / chunk;
  std::vector<double> r;
  for (int p = 0; p < passes; ++p)
    for (std::size_t i = 0; i < n; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(buf.sum(i * chunk, chunk));
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      r.push_back(static_cast<double>(chunk) / s);
    }
  std::sort(r.begin(), r.end());
  return r[r.size() / 2];
}

// Registers read_bandwidth/<chunk>/dram: the same chunked read as a benchmark,
// so its statistics (median over repetitions) compare directly with the kernels'.
inline void register_bandwidth_benchmark(std::size_t chunk = std::size_t{4} << 20) {
  const std::string name = "read_bandwidth/chunk:" + std::to_string(chunk) + "/dram";
  benchmark::RegisterBenchmark(name.c_str(), [chunk](benchmark::State& st) {
    static read_buffer buf(kDramFootprint);  // benchmark-binary state only, not library state
    const std::size_t n = buf.bytes() / chunk;
    std::size_t i = 0;
    for (auto _ : st) {
      benchmark::DoNotOptimize(buf.sum(i * chunk, chunk));
      if (++i == n) i = 0;
    }
    st.counters["bytes/s"] = benchmark::Counter(static_cast<double>(chunk), benchmark::Counter::kIsIterationInvariantRate);
  })->Unit(benchmark::kMicrosecond);
}

struct bench_start {
  double bw = 0;       // read bandwidth measured at start-up, bytes/s
  bool flag = false;   // the binary's own switch was given
  bool help = false;   // --help was given: usage printed, nothing else done
  kernel_set kernels;  // what dispatch picks on this CPU (recorded as context)
};

// The common start of bench_ternary and bench_lut: takes their one switch (`flag`) and --help
// out of argv (printing `usage` and the Google Benchmark note for --help), hands the rest to
// Google Benchmark, measures the read bandwidth and records it and the kernels dispatch picks
// on this CPU as context.
inline bench_start start(int argc, char** argv, const char* flag, const char* usage) {
  bench_start r;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], flag) == 0) {
      r.flag = true;
    } else if (std::strcmp(argv[i], "--help") == 0) {
      std::printf("%s  plus every Google Benchmark flag, e.g. --benchmark_filter=REGEX, --benchmark_format=json,\n"
                  "  --benchmark_repetitions=5 --benchmark_report_aggregates_only=true\n",
                  usage);
      r.help = true;
      return r;
    } else {
      args.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  r.bw = measure_read_bandwidth();
  benchmark::AddCustomContext("read_bandwidth_GBps", std::to_string(r.bw / 1e9));
  r.kernels = select_kernels(cpu_features::detect());
  benchmark::AddCustomContext("dispatch_gemv", r.kernels.gemv.name);
  benchmark::AddCustomContext("dispatch_gemm", r.kernels.gemm.name);
  return r;
}

}  // namespace bitnet::bench
