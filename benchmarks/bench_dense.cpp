// Benchmarks for the dense GEMV kernels on the BitNet b1.58 2B4T output head
// (128256 rows x 2560), single thread, in F16, Q8_0, Q6_K, BF16 and F32, for every
// arch this binary has kernels for (missing ISAs are reported as errors/skips).
//
// Counters: weights/s, bytes/s (weight bytes streamed) and bw_frac = bytes/s divided
// by the read bandwidth measured by the `read_bw` baselines in this same binary (the
// best median of a scalar sum and SSE2/AVX2 sums with and without software prefetch
// over a 1 GiB buffer). All rates use this thread's CPU time: the machine is shared
// (see thread_seconds), so the "Time" column (wall clock) can be much larger than
// "CPU" when other processes run. Weights are kept in several
// copies that are used in turn, so a rotation streams at least 1 GiB: nothing can be
// served from a last-level cache (this VM reports 480 MiB of L3).
//
// Suggested run:
//   build-dense/benchmarks/bench_dense --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <bitnet/dense.hpp>

#include <algorithm>  // std::sort, std::max
#include <ctime>      // clock_gettime(CLOCK_THREAD_CPUTIME_ID)
#include <cmath>      // std::fabs
#include <cstdint>    // fixed-width integers
#include <cstdlib>    // std::aligned_alloc, std::free
#include <cstring>    // std::memcpy, std::memset
#include <memory>     // std::unique_ptr
#include <new>        // std::bad_alloc
#include <string>     // names
#include <vector>     // buffers

#if BITNET_X86
#include <immintrin.h>  // SSE2/AVX2 read baselines
#endif
#if defined(__linux__)
#include <sys/mman.h>  // madvise(MADV_HUGEPAGE) for big buffers
#endif

namespace {

using bitnet::tensor_type;

constexpr std::int64_t kM = 128256;                         // vocabulary
constexpr std::int64_t kK = 2560;                           // hidden size
constexpr std::size_t kStreamBytes = std::size_t{1} << 30;  // >= this much per rotation of copies

struct free_deleter {
  void operator()(std::uint8_t* p) const noexcept { std::free(p); }
};
using big_buffer = std::unique_ptr<std::uint8_t, free_deleter>;

big_buffer alloc_big(std::size_t n) {
  constexpr std::size_t align = std::size_t{2} << 20;
  const std::size_t size = (n + align - 1) / align * align;
  auto* p = static_cast<std::uint8_t*>(std::aligned_alloc(align, size));
  if (!p) throw std::bad_alloc();
#if defined(__linux__)
  madvise(p, size, MADV_HUGEPAGE);
#endif
  return big_buffer(p);
}

// CPU time of this thread. The machine is shared (2 vCPUs, other builds running),
// so wall-clock time includes periods where the benchmark thread is not running;
// all rates here, including the baseline, use thread CPU time instead.
double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

std::uint64_t splitmix(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// ---------------------------------------------------------------- read-bandwidth baseline

std::uint64_t sum_scalar(const std::uint8_t* p, std::size_t n) {
  std::uint64_t a[8] = {};
  for (std::size_t i = 0; i + 64 <= n; i += 64)
    for (int k = 0; k < 8; ++k) {
      std::uint64_t v;
      std::memcpy(&v, p + i + 8 * k, 8);
      a[k] += v;
    }
  return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

#if BITNET_X86
BITNET_TARGET_AVX2 std::uint64_t sum_avx2(const std::uint8_t* p, std::size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) std::uint64_t o[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(o), s);
  return o[0] + o[1] + o[2] + o[3];
}
// 128-bit loads with a software prefetch 2 KiB ahead (SSE2 is baseline on x86-64);
// on the machine this was written on, the fastest simple read.
std::uint64_t sum_sse2_prefetch(const std::uint8_t* p, std::size_t n) {
  __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i + 64 <= n; i += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 2048), _MM_HINT_T0);
    a0 = _mm_add_epi64(a0, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i)));
    a1 = _mm_add_epi64(a1, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 16)));
    a2 = _mm_add_epi64(a2, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 32)));
    a3 = _mm_add_epi64(a3, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 48)));
  }
  const __m128i s = _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3));
  alignas(16) std::uint64_t o[2];
  _mm_store_si128(reinterpret_cast<__m128i*>(o), s);
  return o[0] + o[1];
}
// 256-bit loads with a software prefetch 2 KiB ahead, like the GEMV kernels use.
BITNET_TARGET_AVX2 std::uint64_t sum_avx2_prefetch(const std::uint8_t* p, std::size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i + 128 <= n; i += 128) {
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 2048), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 2048 + 64), _MM_HINT_T0);
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) std::uint64_t o[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(o), s);
  return o[0] + o[1] + o[2] + o[3];
}
#endif

using sum_fn = std::uint64_t (*)(const std::uint8_t*, std::size_t);

struct baseline_buffer {
  big_buffer buf = alloc_big(kStreamBytes);
  baseline_buffer() {
    std::uint64_t s = 1;
    for (std::size_t i = 0; i < kStreamBytes; i += 8) {
      const std::uint64_t v = splitmix(s);
      std::memcpy(buf.get() + i, &v, 8);
    }
  }
};
baseline_buffer& baseline_data() {
  static baseline_buffer b;
  return b;
}

std::vector<std::pair<std::string, sum_fn>> read_kernels() {
  std::vector<std::pair<std::string, sum_fn>> k{{"scalar", &sum_scalar}};
#if BITNET_X86
  k.emplace_back("sse2_prefetch", &sum_sse2_prefetch);
  if (bitnet::arch_available<bitnet::arch::avx2>()) {
    k.emplace_back("avx2", &sum_avx2);
    k.emplace_back("avx2_prefetch", &sum_avx2_prefetch);
  }
#endif
  return k;
}

// Best-of-kernels median read bandwidth in bytes/s (thread CPU time), measured once.
double baseline_bps() {
  static const double bps = [] {
    auto& b = baseline_data();
    double best = 0.0;
    for (const auto& [name, fn] : read_kernels()) {
      std::vector<double> r;
      for (int rep = 0; rep < 7; ++rep) {
        const double t0 = thread_seconds();
        benchmark::DoNotOptimize(fn(b.buf.get(), kStreamBytes));
        r.push_back(static_cast<double>(kStreamBytes) / (thread_seconds() - t0));
      }
      std::sort(r.begin(), r.end());
      best = std::max(best, r[r.size() / 2]);
    }
    return best;
  }();
  return bps;
}

void bench_read(benchmark::State& state, sum_fn fn) {
  auto& b = baseline_data();
  const double base = baseline_bps();
  double secs = 0.0;
  for (auto _ : state) {
    const double t0 = thread_seconds();
    benchmark::DoNotOptimize(fn(b.buf.get(), kStreamBytes));
    secs += thread_seconds() - t0;
  }
  const double bytes = static_cast<double>(kStreamBytes);
  state.counters["bytes/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bw_frac"] = bytes * static_cast<double>(state.iterations()) / secs / base;
}

// ---------------------------------------------------------------- weights

// Several copies of one random head of one type (only one type is kept at a time).
struct head_data {
  tensor_type t = tensor_type::f32;
  std::size_t row_bytes = 0;
  std::vector<big_buffer> copies;
  bitnet::dense_activation act;
  std::vector<float> x;
};

void fill_head(tensor_type t, std::uint8_t* p, std::size_t row_bytes) {
  std::uint64_t s = 42;
  for (std::int64_t m = 0; m < kM; ++m) {
    std::uint8_t* row = p + static_cast<std::size_t>(m) * row_bytes;
    switch (t) {
      case tensor_type::f32:
        for (std::int64_t j = 0; j < kK; ++j) {
          const float v = static_cast<float>(static_cast<std::int64_t>(splitmix(s) % 2001) - 1000) * 5e-5f;
          std::memcpy(row + 4 * j, &v, 4);
        }
        break;
      case tensor_type::f16:
      case tensor_type::bf16:
        for (std::int64_t j = 0; j < kK; j += 4) {
          const std::uint64_t r = splitmix(s);
          for (int k = 0; k < 4; ++k) {
            const auto bits = static_cast<std::uint16_t>(r >> (16 * k));
            // sign, exponent for magnitudes 2^-8 .. 2^-1, random mantissa
            const std::uint16_t v =
                t == tensor_type::f16 ? static_cast<std::uint16_t>((bits & 0x83FFu) | ((7u + (bits >> 10) % 8u) << 10))
                                      : static_cast<std::uint16_t>((bits & 0x807Fu) | ((119u + (bits >> 7) % 8u) << 7));
            std::memcpy(row + 2 * (j + k), &v, 2);
          }
        }
        break;
      case tensor_type::q8_0:
        for (std::int64_t b = 0; b < kK / 32; ++b) {
          std::uint8_t* blk = row + 34 * b;
          const std::uint16_t d = bitnet::f32_to_fp16(1e-3f * static_cast<float>(1 + splitmix(s) % 16));
          std::memcpy(blk, &d, 2);
          for (int j = 0; j < 32; j += 8) {
            const std::uint64_t r = splitmix(s);
            std::memcpy(blk + 2 + j, &r, 8);
          }
        }
        break;
      case tensor_type::q6_k:
        for (std::int64_t b = 0; b < kK / 256; ++b) {
          std::uint8_t* blk = row + 210 * b;
          for (int j = 0; j < 208; j += 8) {
            const std::uint64_t r = splitmix(s);
            std::memcpy(blk + j, &r, 8);
          }
          const std::uint16_t d = bitnet::f32_to_fp16(1e-4f * static_cast<float>(1 + splitmix(s) % 16));
          std::memcpy(blk + 208, &d, 2);
        }
        break;
      default: break;
    }
  }
}

head_data& head(tensor_type t) {
  static head_data h;
  if (!h.copies.empty() && h.t == t) return h;
  h.copies.clear();
  h.t = t;
  h.row_bytes = bitnet::dense_row_bytes(t, kK);
  const std::size_t bytes = h.row_bytes * static_cast<std::size_t>(kM);
  const std::size_t ncopies = std::max<std::size_t>(2, (kStreamBytes + bytes - 1) / bytes);
  for (std::size_t c = 0; c < ncopies; ++c) {
    h.copies.push_back(alloc_big(bytes));
    if (c == 0)
      fill_head(t, h.copies[0].get(), h.row_bytes);
    else
      std::memcpy(h.copies[c].get(), h.copies[0].get(), bytes);
  }
  std::uint64_t s = 7;
  h.x.resize(kK);
  for (auto& v : h.x) v = static_cast<float>(static_cast<std::int64_t>(splitmix(s) % 2001) - 1000) * 1e-3f;
  h.act.prepare(t, h.x.data(), kK);
  return h;
}

// Kernel vs the scalar kernel on a sample of rows. Bound: both results are within
// gamma(K/8 + 40) * sum_j |w_j x_j| of the exact dot (see tests/dense_check.hpp).
bool matches_scalar(const bitnet::dense_kernels& k, head_data& h, const std::vector<float>& y, std::string& why) {
  const auto ref = bitnet::dense_kernels_for<bitnet::arch::scalar>();
  const std::uint8_t* W = h.copies[0].get();
  std::vector<float> ys(kM), wrow(kK), xdq(kK);
  // dequantized activation (for the error bound only)
  if (h.act.form() == bitnet::dense_act_form::q8_0) {
    bitnet::dequantize_row_q8_0(h.act.q8_0(), xdq.data(), kK);
  } else if (h.act.form() == bitnet::dense_act_form::q8_k) {
    for (std::int64_t j = 0; j < kK; ++j) xdq[j] = h.act.q8_k()[j / 256].d * h.act.q8_k()[j / 256].qs[j % 256];
  } else {
    std::memcpy(xdq.data(), h.act.f32(), 4 * kK);
  }
  const double u = 0x1.0p-24, n = static_cast<double>(kK) / 8.0 + 40.0, gam = n * u / (1 - n * u);
  for (std::int64_t m = 0; m < kM; m += 97) {
    bitnet::dense_gemv(ref, h.t, W, h.row_bytes, h.act, ys.data(), m, m + 1);
    bitnet::dequantize_row(h.t, W + static_cast<std::size_t>(m) * h.row_bytes, wrow.data(), kK);
    double abs_sum = 0.0;
    for (std::int64_t j = 0; j < kK; ++j) abs_sum += std::fabs(static_cast<double>(wrow[j]) * xdq[j]);
    const double tol = 2.0 * gam * abs_sum * 1.01 + 1e-30;
    if (!(std::fabs(static_cast<double>(y[m]) - ys[m]) <= tol)) {
      why = std::string(k.kernel_name(h.t)) + " differs from the scalar kernel at row " + std::to_string(m) + ": " +
            std::to_string(y[m]) + " vs " + std::to_string(ys[m]) + " (tolerance " + std::to_string(tol) + ")";
      return false;
    }
  }
  return true;
}

template <class A> void bench_gemv(benchmark::State& state, tensor_type t) {
  if (!bitnet::arch_available<A>()) {
    state.SkipWithError((std::string(A::name) + " is not supported by this CPU").c_str());
    return;
  }
  const bitnet::dense_kernels k = bitnet::dense_kernels_for<A>();
  const double base = baseline_bps();
  head_data& h = head(t);
  std::vector<float> y(kM);
  bitnet::dense_gemv(k, t, h.copies[0].get(), h.row_bytes, h.act, y.data(), 0, kM);
  std::string why;
  if (!matches_scalar(k, h, y, why)) {
    state.SkipWithError(why.c_str());
    return;
  }
  std::size_t c = 0;
  double secs = 0.0;
  for (auto _ : state) {
    const double t0 = thread_seconds();
    bitnet::dense_gemv(k, t, h.copies[c].get(), h.row_bytes, h.act, y.data(), 0, kM);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    secs += thread_seconds() - t0;
    c = (c + 1) % h.copies.size();
  }
  const double bytes = static_cast<double>(h.row_bytes) * static_cast<double>(kM);
  state.counters["weights/s"] = benchmark::Counter(static_cast<double>(kM) * static_cast<double>(kK),
                                                   benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  // fraction of the baseline read bandwidth (plain number, from the timed calls only)
  state.counters["bw_frac"] = bytes * static_cast<double>(state.iterations()) / secs / base;
}

// Batched head (dense_gemm): N activation rows, e.g. logits for a few prefill
// positions. Reported per weight-matrix pass: bytes/s counts the matrix once, so
// bw_frac > 1/N means the batch reuses the weights from cache.
template <class A> void bench_gemm(benchmark::State& state, tensor_type t) {
  if (!bitnet::arch_available<A>()) {
    state.SkipWithError((std::string(A::name) + " is not supported by this CPU").c_str());
    return;
  }
  const std::int64_t N = state.range(2);
  const bitnet::dense_kernels k = bitnet::dense_kernels_for<A>();
  const double base = baseline_bps();
  head_data& h = head(t);
  std::vector<float> xs(static_cast<std::size_t>(N * kK));
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t j = 0; j < kK; ++j)
      xs[static_cast<std::size_t>(n * kK + j)] = h.x[static_cast<std::size_t>((j + 7 * n) % kK)];
  bitnet::dense_activation act;
  act.prepare_batch(t, xs.data(), N, kK, kK);
  std::vector<float> y(static_cast<std::size_t>(N * kM)), y1(kM);
  bitnet::dense_gemm(k, t, h.copies[0].get(), h.row_bytes, act, y.data(), kM, 0, kM);
  for (std::int64_t n = 0; n < N; ++n) {  // each row of the batch equals a single GEMV
    bitnet::dense_activation one;
    one.prepare(t, xs.data() + n * kK, kK);
    bitnet::dense_gemv(k, t, h.copies[0].get(), h.row_bytes, one, y1.data(), 0, kM);
    if (std::memcmp(y1.data(), y.data() + n * kM, 4 * kM) != 0) {
      state.SkipWithError("dense_gemm differs from dense_gemv");
      return;
    }
  }
  std::size_t c = 0;
  double secs = 0.0;
  for (auto _ : state) {
    const double t0 = thread_seconds();
    bitnet::dense_gemm(k, t, h.copies[c].get(), h.row_bytes, act, y.data(), kM, 0, kM);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    secs += thread_seconds() - t0;
    c = (c + 1) % h.copies.size();
  }
  const double bytes = static_cast<double>(h.row_bytes) * static_cast<double>(kM);
  state.counters["weights/s"] =
      benchmark::Counter(static_cast<double>(N) * static_cast<double>(kM) * static_cast<double>(kK),
                         benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bw_frac"] = bytes * static_cast<double>(state.iterations()) / secs / base;
}

template <class A> void register_arch(tensor_type t) {
  const std::string name = std::string(bitnet::dense_kernels_for<A>().kernel_name(t));
  benchmark::RegisterBenchmark(name.c_str(), bench_gemv<A>, t)
      ->ArgNames({"M", "K"})
      ->Args({kM, kK})
      ->Unit(benchmark::kMillisecond);
}

void register_all() {
  for (const auto& [name, fn] : read_kernels())
    benchmark::RegisterBenchmark(("read_bw/" + name).c_str(), bench_read, fn)
        ->Arg(static_cast<std::int64_t>(kStreamBytes))
        ->Unit(benchmark::kMillisecond);
  for (tensor_type t : {tensor_type::f16, tensor_type::q8_0, tensor_type::q6_k, tensor_type::bf16, tensor_type::f32}) {
    register_arch<bitnet::arch::scalar>(t);
#if BITNET_X86
    register_arch<bitnet::arch::avx2>(t);
    register_arch<bitnet::arch::avx512bw>(t);
#endif
#if BITNET_ARM64
    register_arch<bitnet::arch::neon64>(t);
    register_arch<bitnet::arch::neon64_dotprod>(t);
#endif
  }
  for (tensor_type t : {tensor_type::f16, tensor_type::q8_0, tensor_type::q6_k}) {
#if BITNET_X86
    const std::string name = "gemm/" + std::string(bitnet::dense_kernels_for<bitnet::arch::avx2>().kernel_name(t));
    benchmark::RegisterBenchmark(name.c_str(), bench_gemm<bitnet::arch::avx2>, t)
        ->ArgNames({"M", "K", "N"})
        ->Args({kM, kK, 4})
        ->Unit(benchmark::kMillisecond);
#endif
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
