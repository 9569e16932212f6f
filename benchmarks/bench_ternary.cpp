// bench_ternary - every GEMV/GEMM variant of the grid on the real layer shapes.
//
// Names: <kernel name>/M:<rows>/K:<inputs>/N:<batch>/<cache|dram>
//   cache: one matrix, reused every iteration (it stays in L2/L3 when it fits)
//   dram:  enough copies to fill 1.25 GiB, one per iteration in turn, so the
//          weights stream from memory as in a real decode step
// Counters: W/s (weights x batch per second), bytes/s (packed weight bytes per
// second) and bw_frac (bytes/s as a fraction of the read bandwidth measured at
// start-up in this same process). Each variant's result is checked once against
// the scalar variant before timing.
//
//   bench_ternary --benchmark_filter='gemv_t2_q8/avx2/.*/K:2560/N:1/dram'
//   bench_ternary --default-only      # only the kernels dispatch picks here
#include <benchmark/benchmark.h>

#include <bitnet/bitnet.hpp>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "test_data.hpp"

using namespace bitnet;

namespace {


// Inputs for one shape and block, built lazily and shared by all variants.
struct fixture {
  std::vector<ternary_matrix> copies;  // copies[0] is the cache case
  activations x1, xb;                  // batch 1 and the GEMM batch
  std::vector<float> ref1, refb;       // scalar results for checking
};

struct fixtures {
  std::map<std::string, std::unique_ptr<fixture>> by_key;
  fixture& get(std::int64_t M, std::int64_t K, int block, std::int64_t batch, bool dram) {
    const std::string key = std::to_string(M) + "x" + std::to_string(K) + "/" + std::to_string(block) + "/" +
                            std::to_string(batch) + (dram ? "d" : "c");
    auto& f = by_key[key];
    if (f) return *f;
    f = std::make_unique<fixture>();
    const auto w = test::random_ternary(static_cast<std::size_t>(M * K), 42);
    ternary_weights tw{K, M, w, 0.02f, {}};
    f->copies.push_back(repack(tw, block));
    if (dram) {
      const std::size_t per = f->copies[0].packed_bytes();
      const std::size_t n = (bench::kDramFootprint + per - 1) / per;
      for (std::size_t i = 1; i < n; ++i) f->copies.push_back(f->copies[0].clone());
    }
    const auto x = test::random_floats(static_cast<std::size_t>(K * batch), 43);
    f->x1.quantize(x.data(), 1, K, K, act_quant::per_token);
    f->xb.quantize(x.data(), batch, K, K, act_quant::per_token);
    // References from the scalar kernels (themselves tested against the spec references).
    const ternary_matrix W128 = block == 128 ? f->copies[0].clone() : repack(tw, 128);
    f->ref1.resize(static_cast<std::size_t>(M));
    gemv<gemv_config<arch::scalar, 128, 1, 1>>(W128, f->x1, 0, f->ref1.data(), 0, M);
    if (batch > 1) {
      f->refb.resize(static_cast<std::size_t>(M * batch));
      gemm<gemm_config<arch::scalar, 128, 2, 4>>(W128, f->xb, f->refb.data(), M, 0, M);
    }
    return *f;
  }
};

void set_counters(benchmark::State& st, double weights, double bytes, double bw) {
  st.counters["W/s"] = benchmark::Counter(weights, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["bytes/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["bw_frac"] = benchmark::Counter(bytes / bw, benchmark::Counter::kIsIterationInvariantRate);
}

template <class C> void register_gemv(std::shared_ptr<fixtures> fx, double bw, bool default_only, std::string_view def) {
  if constexpr (arch_compiled<typename C::arch>()) {
    if (default_only && C::name() != def) return;
    for (const auto& s : bench::model_shapes()) {
      for (bool dram : {false, true}) {
        const std::string name = C::name() + "/M:" + std::to_string(s.M) + "/K:" + std::to_string(s.K) + "/N:1/" +
                                 (dram ? "dram" : "cache");
        benchmark::RegisterBenchmark(name.c_str(), [fx, bw, s, dram](benchmark::State& st) {
          if (!arch_available<typename C::arch>()) {
            st.SkipWithError("this CPU cannot run this arch");
            return;
          }
          fixture& f = fx->get(s.M, s.K, C::block, 1, dram);
          std::vector<float> y(static_cast<std::size_t>(s.M));
          gemv<C>(f.copies[0], f.x1, 0, y.data(), 0, s.M);
          if (std::memcmp(y.data(), f.ref1.data(), y.size() * sizeof(float)) != 0) {
            st.SkipWithError("result differs from the scalar kernel");
            return;
          }
          std::size_t i = 0;
          for (auto _ : st) {
            gemv<C>(f.copies[i], f.x1, 0, y.data(), 0, s.M);
            benchmark::ClobberMemory();
            if (++i == f.copies.size()) i = 0;
          }
          set_counters(st, static_cast<double>(s.M * s.K), static_cast<double>(f.copies[0].packed_bytes()), bw);
        })->Unit(benchmark::kMicrosecond);
      }
    }
  }
}

template <class C> void register_gemm(std::shared_ptr<fixtures> fx, double bw, bool default_only, std::string_view def) {
  if constexpr (arch_compiled<typename C::arch>()) {
    if (default_only && C::name() != def) return;
    constexpr std::int64_t N = 128;
    for (const auto& s : bench::model_shapes()) {
      const std::string name =
          C::name() + "/M:" + std::to_string(s.M) + "/K:" + std::to_string(s.K) + "/N:" + std::to_string(N) + "/cache";
      benchmark::RegisterBenchmark(name.c_str(), [fx, bw, s](benchmark::State& st) {
        if (!arch_available<typename C::arch>()) {
          st.SkipWithError("this CPU cannot run this arch");
          return;
        }
        fixture& f = fx->get(s.M, s.K, C::block, N, false);
        std::vector<float> Y(static_cast<std::size_t>(s.M * N));
        gemm<C>(f.copies[0], f.xb, Y.data(), s.M, 0, s.M);
        if (std::memcmp(Y.data(), f.refb.data(), Y.size() * sizeof(float)) != 0) {
          st.SkipWithError("result differs from the scalar kernel");
          return;
        }
        for (auto _ : st) {
          gemm<C>(f.copies[0], f.xb, Y.data(), s.M, 0, s.M);
          benchmark::ClobberMemory();
        }
        set_counters(st, static_cast<double>(s.M * s.K * N), static_cast<double>(f.copies[0].packed_bytes()), bw);
      })->Unit(benchmark::kMillisecond);
    }
  }
}

template <class... C> void register_all_gemv(type_list<C...>, std::shared_ptr<fixtures> fx, double bw, bool d,
                                             std::string_view def) {
  (register_gemv<C>(fx, bw, d, def), ...);
}
template <class... C> void register_all_gemm(type_list<C...>, std::shared_ptr<fixtures> fx, double bw, bool d,
                                             std::string_view def) {
  (register_gemm<C>(fx, bw, d, def), ...);
}

}  // namespace

int main(int argc, char** argv) {
  const bench::bench_start st = bench::start(argc, argv, "--default-only",
                                             "bench_ternary: the ternary GEMV/GEMM grid on real BitNet layer shapes.\n"
                                             "  --default-only   only the variants runtime dispatch selects on this CPU\n");
  if (st.help) return 0;
  const double bw = st.bw;
  const bool default_only = st.flag;
  const kernel_set& ks = st.kernels;
  auto fx = std::make_shared<fixtures>();
  bench::register_bandwidth_benchmark(4423680);  // the size of one 6912x2560 matrix
  register_all_gemv(gemv_grid{}, fx, bw, default_only, ks.gemv.name);
  register_all_gemm(gemm_grid{}, fx, bw, default_only, ks.gemm.name);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
