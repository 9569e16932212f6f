// bench_lut - LUT kernels against the MAD (t2) kernels on the real layer shapes.
//
// Names: <kernel name>/M:<rows>/K:<inputs>/N:<batch>/<cache|dram>, as in bench_ternary:
//   cache: one matrix reused every iteration; dram: copies filling 1.25 GiB, one per
//   iteration in turn (weights stream from memory as in a decode step). GEMV (N:1) runs
//   both; GEMM (N:128) runs in cache, where it is compute-bound.
// Counters: W/s (weights x batch per second), bytes/s (bytes of the kernel's own weight
// layout per second: 2 bits/weight for t2, 2 or 1.67 for the shuffle LUT, 2.67 for the
// vector LUT) and bw_frac (bytes/s over the read bandwidth measured at start-up in this
// process). Every kernel's output is checked bit for bit against the scalar t2 kernel
// before timing. Only kernels this CPU runs are registered; scalar ones only with
// --include-scalar.
//
//   bench_lut --benchmark_filter='/avx2/.*K:2560/N:128'
//   bench_lut --benchmark_filter='(gemv_t2_q8/avx2/b128/r4/u1|gemv_lut_q8/avx2/g3).*/dram'
#include <benchmark/benchmark.h>

#include <bitnet/bitnet.hpp>
#include <bitnet/lut.hpp>
#include <bitnet/tuning.hpp>
#include <algorithm>
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

struct kernel {
  named_kernel k;
  int rank;
  std::string layout_key() const { return k.lut ? k.layout.name() : "t2/b" + std::to_string(k.block); }
};

// Weights of one shape in one layout (copies for the dram case) plus inputs and references.
struct fixture {
  std::vector<ternary_matrix> t2;
  std::vector<lut_matrix> lut;
  std::size_t count() const { return t2.empty() ? lut.size() : t2.size(); }
  std::size_t bytes() const { return t2.empty() ? lut[0].packed_bytes() : t2[0].packed_bytes(); }
};

struct inputs {
  ternary_weights w;
  activations x1, xb;
  std::vector<float> ref1, refb;
};

// Lazily built state; a single dram fixture is alive at a time (1.25 GiB each), and
// benchmarks run in registration order, grouped by shape and layout.
struct state {
  std::map<std::string, std::unique_ptr<inputs>> in;
  std::map<std::string, std::unique_ptr<fixture>> cache;
  std::string dram_key;
  std::unique_ptr<fixture> streamed;

  inputs& get_inputs(std::int64_t M, std::int64_t K, std::int64_t batch) {
    auto& p = in[std::to_string(M) + "x" + std::to_string(K)];
    if (p) return *p;
    p = std::make_unique<inputs>();
    p->w = ternary_weights{K, M, test::random_ternary(static_cast<std::size_t>(M * K), 42), 0.02f, {}};
    const auto x = test::random_floats(static_cast<std::size_t>(K * batch), 43);
    p->x1.quantize(x.data(), 1, K, K, act_quant::per_token);
    p->xb.quantize(x.data(), batch, K, K, act_quant::per_token);
    const auto W = repack(p->w, 128);
    p->ref1.resize(static_cast<std::size_t>(M));
    gemv<gemv_config<arch::scalar, 128, 1, 1>>(W, p->x1, 0, p->ref1.data(), 0, M);
    p->refb.resize(static_cast<std::size_t>(M * batch));
    gemm<gemm_config<arch::scalar, 128, 2, 4>>(W, p->xb, p->refb.data(), M, 0, M);
    return *p;
  }

  fixture& get(const kernel& k, const inputs& in_, bool dram) {
    const std::string key = std::to_string(in_.w.M) + "x" + std::to_string(in_.w.K) + "/" + k.layout_key();
    if (!dram) {
      auto& f = cache[key];
      if (!f) f = make(k, in_, false);
      return *f;
    }
    if (dram_key != key) {
      streamed.reset();
      streamed = make(k, in_, true);
      dram_key = key;
    }
    return *streamed;
  }

  static std::unique_ptr<fixture> make(const kernel& k, const inputs& in_, bool dram) {
    auto f = std::make_unique<fixture>();
    if (k.k.lut)
      f->lut.push_back(repack_lut(in_.w, k.k.layout));
    else
      f->t2.push_back(repack(in_.w, k.k.block));
    if (dram) {
      const std::size_t n = (bench::kDramFootprint + f->bytes() - 1) / f->bytes();
      for (std::size_t i = 1; i < n; ++i) {
        if (k.k.lut)
          f->lut.push_back(f->lut[0].clone());
        else
          f->t2.push_back(f->t2[0].clone());
      }
    }
    return f;
  }
};

void call(const kernel& k, const fixture& f, std::size_t c, const activations& X, float* Y, std::int64_t M) {
  if (k.k.lut_gemv) k.k.lut_gemv(f.lut[c], X, 0, Y, 0, M);
  if (k.k.lut_gemm) k.k.lut_gemm(f.lut[c], X, Y, M, 0, M);
  if (k.k.mad_gemv) k.k.mad_gemv(f.t2[c], X, 0, Y, 0, M);
  if (k.k.mad_gemm) k.k.mad_gemm(f.t2[c], X, Y, M, 0, M);
}

void set_counters(benchmark::State& st, double weights, double bytes, double bw) {
  st.counters["W/s"] = benchmark::Counter(weights, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["bytes/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["bw_frac"] = benchmark::Counter(bytes / bw, benchmark::Counter::kIsIterationInvariantRate);
}

void register_case(std::shared_ptr<state> S, const kernel& k, const bench::layer_shape& s, std::int64_t N, bool dram,
                   double bw) {
  const std::string name = k.k.name + "/M:" + std::to_string(s.M) + "/K:" + std::to_string(s.K) + "/N:" +
                           std::to_string(N) + "/" + (dram ? "dram" : "cache");
  benchmark::RegisterBenchmark(name.c_str(), [S, k, s, N, dram, bw](benchmark::State& st) {
    inputs& in = S->get_inputs(s.M, s.K, 128);
    fixture& f = S->get(k, in, dram);
    const activations& X = N == 1 ? in.x1 : in.xb;
    const std::vector<float>& ref = N == 1 ? in.ref1 : in.refb;
    std::vector<float> Y(ref.size());
    call(k, f, 0, X, Y.data(), s.M);
    if (std::memcmp(Y.data(), ref.data(), Y.size() * sizeof(float)) != 0) {
      st.SkipWithError("result differs from the scalar t2 kernel");
      return;
    }
    std::size_t i = 0;
    for (auto _ : st) {
      call(k, f, i, X, Y.data(), s.M);
      benchmark::ClobberMemory();
      if (++i == f.count()) i = 0;
    }
    set_counters(st, static_cast<double>(s.M * s.K * N), static_cast<double>(f.bytes()), bw);
  })->Unit(N == 1 ? benchmark::kMicrosecond : benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  const bench::bench_start st = bench::start(
      argc, argv, "--include-scalar",
      "bench_lut: LUT (gemv_lut_q8, gemm_lut_q8, gemm_lutv_q8) against t2 (MAD) kernels on real layer shapes,\n"
      "batch 1 (cache and dram) and 128 (cache).\n"
      "  --include-scalar  also the scalar kernels (slow)\n");
  if (st.help) return 0;
  const double bw = st.bw;
  const bool include_scalar = st.flag;
  const auto f = cpu_features::detect();
  benchmark::AddCustomContext("cpu", cpu_fingerprint(f));

  // Every kernel this build has and this CPU runs (find_kernel checks both).
  std::vector<kernel> gemvs, gemms;
  auto add = [&](std::vector<kernel>& v, const std::string& name, int rank) {
    if (rank == 0 && !include_scalar) return;
    if (auto k = find_kernel(name, f)) v.push_back({*k, rank});
  };
  for (const auto& e : gemv_variants()) add(gemvs, e.name, e.rank);
  for (const auto& e : lut_gemv_variants()) add(gemvs, e.name, e.rank);
  for (const auto& e : gemm_variants()) add(gemms, e.name, e.rank);
  for (const auto& e : lut_gemm_variants()) add(gemms, e.name, e.rank);
  auto by_layout = [](const kernel& a, const kernel& b) {
    return a.layout_key() != b.layout_key() ? a.layout_key() < b.layout_key() : a.k.name < b.k.name;
  };
  std::sort(gemvs.begin(), gemvs.end(), by_layout);
  std::sort(gemms.begin(), gemms.end(), by_layout);

  auto S = std::make_shared<state>();
  bench::register_bandwidth_benchmark(4423680);  // one 6912x2560 t2 matrix
  for (const auto& s : bench::model_shapes())
    for (bool dram : {false, true})
      for (const auto& k : gemvs) register_case(S, k, s, 1, dram, bw);
  for (const auto& s : bench::model_shapes())
    for (const auto& k : gemms) register_case(S, k, s, 128, false, bw);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
