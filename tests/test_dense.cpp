// Tests for bitnet/dense.hpp: formats, quantizers, every (weight type x arch) GEMV
// kernel against an independent double-precision reference and the scalar kernel,
// dispatch and the entry points. Kernel checks live in dense_check.hpp (shared with
// the gtest-free cross-arch self-check under tests/cross/).
//
// Seeds: fixed by default; set BITNET_TEST_SEED to explore. Every failure message
// names kernel, shape, seed, row, expected and actual values.
#include <gtest/gtest.h>

#include <cmath>      // std::fabs, std::sqrt
#include <cstdlib>    // std::getenv, std::strtoull
#include <limits>     // infinity
#include <stdexcept>  // std::invalid_argument
#include <string>     // messages
#include <thread>     // concurrent row ranges
#include <vector>     // buffers

#include "dense_check.hpp"

namespace {

using bitnet::tensor_type;
namespace dc = dense_check;

std::uint64_t base_seed() {
  if (const char* s = std::getenv("BITNET_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return 20250601;
}

// ---------------------------------------------------------------- per-arch kernel grid

using Arches = ::testing::Types<bitnet::arch::scalar
#if BITNET_X86
                                ,
                                bitnet::arch::avx2, bitnet::arch::avx512bw
#endif
#if BITNET_ARM64
                                ,
                                bitnet::arch::neon64, bitnet::arch::neon64_dotprod
#endif
                                >;
struct ArchName {
  template <class A> static std::string GetName(int) { return std::string(A::name); }
};
template <class A> class DenseKernels : public ::testing::Test {};
TYPED_TEST_SUITE(DenseKernels, Arches, ArchName);

template <class A> void run_suite(tensor_type t) {
  if (!bitnet::arch_available<A>()) GTEST_SKIP() << A::name << " is not supported by this CPU";
  const bitnet::dense_kernels k = bitnet::dense_kernels_for<A>();
  const auto fails = dc::run_type_suite(k, t, base_seed() + static_cast<std::uint64_t>(t) * 1000);
  for (const auto& f : fails) ADD_FAILURE() << f;
}

TYPED_TEST(DenseKernels, F32) { run_suite<TypeParam>(tensor_type::f32); }
TYPED_TEST(DenseKernels, F16) { run_suite<TypeParam>(tensor_type::f16); }
TYPED_TEST(DenseKernels, BF16) { run_suite<TypeParam>(tensor_type::bf16); }
TYPED_TEST(DenseKernels, Q8_0) { run_suite<TypeParam>(tensor_type::q8_0); }
TYPED_TEST(DenseKernels, Q6_K) { run_suite<TypeParam>(tensor_type::q6_k); }

TYPED_TEST(DenseKernels, ZeroKForFloatTypes) {
  if (!bitnet::arch_available<TypeParam>()) GTEST_SKIP() << TypeParam::name << " is not supported by this CPU";
  const auto k = bitnet::dense_kernels_for<TypeParam>();
  const std::uint8_t w[8] = {};
  const float x[1] = {1.0f};
  for (auto fn : {k.f32.fn, k.f16.fn, k.bf16.fn}) {
    float y[2] = {7.0f, 7.0f};
    fn(w, 0, x, 0, y, 0, 2);
    EXPECT_EQ(y[0], 0.0f);
    EXPECT_EQ(y[1], 0.0f);
  }
}

TYPED_TEST(DenseKernels, NamesAreCanonical) {
  const auto k = bitnet::dense_kernels_for<TypeParam>();
  EXPECT_EQ(k.arch_name, TypeParam::name);
  // neon64dp reuses the neon64 float kernels; its name says so.
  const std::string farch =
      std::string(TypeParam::name) == "neon64dp" ? std::string("neon64") : std::string(TypeParam::name);
  EXPECT_EQ(k.kernel_name(tensor_type::f32), "gemv_f32_f32/" + farch);
  EXPECT_EQ(k.kernel_name(tensor_type::f16), "gemv_f16_f32/" + farch);
  EXPECT_EQ(k.kernel_name(tensor_type::bf16), "gemv_bf16_f32/" + farch);
  EXPECT_EQ(k.kernel_name(tensor_type::q8_0), "gemv_q8_0_q8/" + std::string(TypeParam::name));
  EXPECT_EQ(k.kernel_name(tensor_type::q6_k), "gemv_q6k_q8k/" + std::string(TypeParam::name));
  EXPECT_EQ(k.kernel_name(tensor_type::tq2_0), "");
}

// ---------------------------------------------------------------- formats

// Our own encoder, written from the spec's decoding formulas (gguf.md 7.3).
void spec_encode_q6k(const int* code /*0..63*/, const std::int8_t* sc, std::uint16_t d, std::uint8_t* blk) {
  std::memset(blk, 0, 210);
  for (int i = 0; i < 256; ++i) {
    const int h = i / 128, r = i % 128, k = r / 32, l = r % 32;
    std::uint8_t* ql = blk + 64 * h;
    std::uint8_t* qh = blk + 128 + 32 * h;
    const int lo = code[i] & 15, hi = code[i] >> 4;
    if (k == 0) ql[l] = static_cast<std::uint8_t>(ql[l] | lo);
    if (k == 1) ql[l + 32] = static_cast<std::uint8_t>(ql[l + 32] | lo);
    if (k == 2) ql[l] = static_cast<std::uint8_t>(ql[l] | (lo << 4));
    if (k == 3) ql[l + 32] = static_cast<std::uint8_t>(ql[l + 32] | (lo << 4));
    qh[l] = static_cast<std::uint8_t>(qh[l] | (hi << (2 * k)));
  }
  for (int j = 0; j < 16; ++j) blk[192 + j] = static_cast<std::uint8_t>(sc[j]);
  std::memcpy(blk + 208, &d, 2);
}

TEST(DenseFormats, BlockSizes) {
  EXPECT_EQ(sizeof(bitnet::block_q8_0), 34u);
  EXPECT_EQ(sizeof(bitnet::block_q6_k), 210u);
  EXPECT_EQ(sizeof(bitnet::block_q8_k), 292u);
  EXPECT_EQ(bitnet::dense_row_bytes(tensor_type::q6_k, 2560), 10u * 210u);
  EXPECT_EQ(bitnet::dense_row_bytes(tensor_type::q8_0, 2560), 80u * 34u);
  EXPECT_EQ(bitnet::dense_row_bytes(tensor_type::f16, 2560), 5120u);
  EXPECT_EQ(bitnet::dense_row_bytes(tensor_type::bf16, 3), 6u);
  EXPECT_EQ(bitnet::dense_row_bytes(tensor_type::f32, 3), 12u);
}

TEST(DenseFormats, Q6KLayoutBuiltByHand) {
  dc::rng r(base_seed());
  for (int pattern = 0; pattern < 4; ++pattern) {
    int code[256];
    std::int8_t sc[16];
    for (int i = 0; i < 256; ++i)
      code[i] = pattern == 0 ? (i * 7 + 3) % 64 : pattern == 1 ? 0 : pattern == 2 ? 63 : r.irange(0, 63);
    for (int j = 0; j < 16; ++j) sc[j] = static_cast<std::int8_t>(pattern == 0 ? j * 17 - 128 : r.irange(-128, 127));
    const std::uint16_t d = bitnet::f32_to_fp16(0.0123f);
    // misaligned storage for the block
    std::vector<std::uint8_t> raw(211 + 256);
    std::uint8_t* blk = raw.data() + 1;
    spec_encode_q6k(code, sc, d, blk);
    std::vector<float> y(256);
    bitnet::dequantize_row_q6_k(blk, y.data(), 256);
    const float df = bitnet::fp16_to_f32(d);
    for (int i = 0; i < 256; ++i) {
      const float want = df * static_cast<float>(sc[i / 16]) * static_cast<float>(code[i] - 32);
      ASSERT_EQ(y[static_cast<std::size_t>(i)], want) << "pattern " << pattern << " element " << i;
    }
    // the library's packer writes exactly the spec layout, and unpack inverts it
    std::int8_t q[256];
    for (int i = 0; i < 256; ++i) q[i] = static_cast<std::int8_t>(code[i] - 32);
    bitnet::block_q6_k packed{};
    bitnet::pack_q6_k(q, sc, d, packed);
    EXPECT_EQ(std::memcmp(&packed, blk, 210), 0) << "pattern " << pattern;
    std::int8_t back[256];
    bitnet::unpack_q6_k(packed, back);
    for (int i = 0; i < 256; ++i) ASSERT_EQ(back[i], q[i]) << i;
  }
}

TEST(DenseFormats, DequantizeFloatTypesAndQ8_0) {
  dc::rng r(base_seed() + 1);
  const std::int64_t K = 96;
  std::vector<std::uint8_t> raw(1 + 4 * K);
  std::uint8_t* p = raw.data() + 1;  // misaligned
  std::vector<float> y(K);
  // F16: every class of value, including subnormals, inf and nan
  const std::uint16_t f16s[] = {0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0xC000, 0x7BFF, 0xFBFF, 0x7C00, 0x3555};
  for (std::int64_t j = 0; j < K; ++j) dc::wr16(p + 2 * j, f16s[j % 11]);
  bitnet::dequantize_row_f16(p, y.data(), K);
  for (std::int64_t j = 0; j < K; ++j)
    EXPECT_EQ(
        std::memcmp(&y[static_cast<std::size_t>(j)], std::vector<float>{bitnet::fp16_to_f32(f16s[j % 11])}.data(), 4),
        0);
  EXPECT_EQ(y[2], std::ldexp(1.0f, -24));  // smallest subnormal, exact
  // BF16
  for (std::int64_t j = 0; j < K; ++j) dc::wr16(p + 2 * j, static_cast<std::uint16_t>(r.next()));
  bitnet::dequantize_row_bf16(p, y.data(), K);
  for (std::int64_t j = 0; j < K; ++j) {
    const std::uint32_t bits = static_cast<std::uint32_t>(dc::rd16(p + 2 * j)) << 16;
    std::uint32_t got;
    std::memcpy(&got, &y[static_cast<std::size_t>(j)], 4);
    EXPECT_EQ(got, bits);
  }
  // F32 copy
  for (std::int64_t j = 0; j < K; ++j) {
    const float v = r.normal();
    std::memcpy(p + 4 * j, &v, 4);
  }
  bitnet::dequantize_row(tensor_type::f32, p, y.data(), K);
  EXPECT_EQ(std::memcmp(y.data(), p, 4 * K), 0);
  // Q8_0
  for (std::int64_t b = 0; b < K / 32; ++b) {
    dc::wr16(p + 34 * b, bitnet::f32_to_fp16(0.25f * static_cast<float>(b + 1)));
    for (int j = 0; j < 32; ++j) p[34 * b + 2 + j] = static_cast<std::uint8_t>(j * 8 - 128);
  }
  bitnet::dequantize_row(tensor_type::q8_0, p, y.data(), K);
  for (std::int64_t j = 0; j < K; ++j)
    EXPECT_EQ(y[static_cast<std::size_t>(j)],
              0.25f * static_cast<float>(j / 32 + 1) * static_cast<float>((j % 32) * 8 - 128));
  EXPECT_THROW(bitnet::dequantize_row(tensor_type::q8_0, p, y.data(), 33), std::invalid_argument);
  EXPECT_THROW(bitnet::dequantize_row(tensor_type::tq2_0, p, y.data(), 256), std::invalid_argument);
}

// ---------------------------------------------------------------- quantizers

TEST(DenseQuant, Q8_0FollowsTheFormula) {
  dc::rng r(base_seed() + 2);
  const std::int64_t K = 32 * 40;
  std::vector<float> x(K);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = r.normal() * (i < 64 ? 1e-6f : 3.0f);
  for (int j = 0; j < 32; ++j) x[96 + static_cast<std::size_t>(j)] = 0.0f;  // an all-zero block
  x[200] = -1000.0f;                                                        // outlier
  std::vector<bitnet::block_q8_0> q(K / 32);
  bitnet::quantize_row_q8_0(x.data(), q.data(), K);
  for (std::int64_t b = 0; b < K / 32; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[static_cast<std::size_t>(32 * b + j)]));
    const float d = amax / 127.0f;
    ASSERT_EQ(q[static_cast<std::size_t>(b)].d, bitnet::f32_to_fp16(d)) << "block " << b;
    const float d16 = bitnet::fp16_to_f32(q[static_cast<std::size_t>(b)].d);
    for (int j = 0; j < 32; ++j) {
      const float xv = x[static_cast<std::size_t>(32 * b + j)];
      const int qv = q[static_cast<std::size_t>(b)].qs[j];
      ASSERT_EQ(qv, d == 0.0f ? 0 : static_cast<int>(std::round(xv * (1.0f / d)))) << "block " << b << " j " << j;
      ASSERT_LE(std::abs(qv), 127);
      // round-trip: rounding error plus the fp16 rounding of d, times |q| <= 127
      EXPECT_LE(std::fabs(xv - d16 * static_cast<float>(qv)),
                0.5f * d + 127.0f * std::fabs(d - d16) + 1e-6f * std::fabs(xv));
    }
  }
}

TEST(DenseQuant, Q8_KFollowsTheSpec) {
  dc::rng r(base_seed() + 3);
  const std::int64_t K = 256 * 6;
  std::vector<float> x(K);
  for (auto& v : x) v = r.normal();
  for (int j = 0; j < 256; ++j) x[256 + static_cast<std::size_t>(j)] = 0.0f;  // block 1: zeros
  x[512 + 10] = 9.0f;                                                         // block 2: positive max ...
  x[512 + 11] = -9.0f;                                                        // ... and its negative, later
  x[768 + 5] = -7.5f;                                                         // block 3: negative max
  std::vector<bitnet::block_q8_k> q(K / 256);
  bitnet::quantize_row_q8_k(x.data(), q.data(), K);
  EXPECT_EQ(q[1].d, 0.0f);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(q[1].qs[j], 0);
  EXPECT_EQ(q[2].qs[10], -127);  // the first max-|x| value maps to -127 ...
  EXPECT_EQ(q[2].qs[11], 127);   // ... so its negative is clipped to +127
  EXPECT_EQ(q[3].qs[5], -127);
  EXPECT_GT(q[3].d, 0.0f);  // d = 1/iscale = vmax/-127 > 0 for a negative vmax
  EXPECT_LT(q[2].d, 0.0f);
  for (std::int64_t b = 0; b < K / 256; ++b) {
    const auto& blk = q[static_cast<std::size_t>(b)];
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += blk.qs[16 * g + j];
      EXPECT_EQ(blk.bsums[g], s);
    }
    if (blk.d == 0.0f) continue;
    for (int j = 0; j < 256; ++j) {
      const float xv = x[static_cast<std::size_t>(256 * b + j)];
      EXPECT_LE(std::fabs(xv - blk.d * static_cast<float>(blk.qs[j])), 0.5f * std::fabs(blk.d) * 1.0001f)
          << "block " << b << " j " << j;
    }
  }
}

TEST(DenseQuant, F16ActivationRounding) {
  const float x[] = {1.0f, 1.0f + 0x1p-11f, 1.0f + 0x1p-10f + 0x1p-11f, 65504.0f, 1e-7f, -3.14159f};
  float y[6];
  bitnet::round_row_to_f16(x, y, 6);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(y[i], bitnet::fp16_to_f32(bitnet::f32_to_fp16(x[i])));
  EXPECT_EQ(y[1], 1.0f);            // tie to even
  EXPECT_EQ(y[2], 1.0f + 0x1p-9f);  // tie to even (up)
}

// Simple baseline quantizer for comparison: largest |x| -> code -32, sub-scale
// rounded to int8 relative to d = max|s|/127, codes re-rounded.
double naive_q6k_sqerr(const float* x) {
  float s[16], smax = 0.0f;
  for (int j = 0; j < 16; ++j) {
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < 16; ++i)
      if (std::fabs(x[16 * j + i]) > amax) amax = std::fabs(x[16 * j + i]), vmax = x[16 * j + i];
    s[j] = vmax / -32.0f;
    smax = std::max(smax, std::fabs(s[j]));
  }
  const float d = bitnet::fp16_to_f32(bitnet::f32_to_fp16(smax / 127.0f));
  double err = 0.0;
  if (d == 0.0f) {
    for (int i = 0; i < 256; ++i) err += static_cast<double>(x[i]) * x[i];
    return err;
  }
  for (int j = 0; j < 16; ++j) {
    const float S = d * std::nearbyint(s[j] / d);
    for (int i = 0; i < 16; ++i) {
      const float q = S == 0.0f ? 0.0f : std::clamp(std::nearbyint(x[16 * j + i] / S), -32.0f, 31.0f);
      const double e = static_cast<double>(x[16 * j + i]) - static_cast<double>(S) * q;
      err += e * e;
    }
  }
  return err;
}

TEST(DenseQuant, Q6KRoundTrip) {
  dc::rng r(base_seed() + 4);
  const std::int64_t nb = 64, K = 256 * nb;
  std::vector<float> x(K);
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = r.normal();
    if (i / 256 == 3) x[i] *= 1e-4f;                 // tiny block
    if (i / 256 == 4 && i % 97 == 0) x[i] *= 50.0f;  // outliers
    if (i / 256 == 5) x[i] = 0.0f;                   // zero block
    if (i / 256 == 6) x[i] = -0.75f;                 // constant block
  }
  std::vector<bitnet::block_q6_k> q(nb);
  bitnet::quantize_row_q6_k(x.data(), q.data(), K);
  std::vector<float> y(K);
  bitnet::dequantize_row_q6_k(q.data(), y.data(), K);
  double err = 0.0, sig = 0.0, naive = 0.0, err_g = 0.0, sig_g = 0.0;
  for (std::int64_t b = 0; b < nb; ++b) {
    double be = 0.0, bs = 0.0;
    const auto& blk = q[static_cast<std::size_t>(b)];
    const float d = bitnet::fp16_to_f32(blk.d);
    for (int i = 0; i < 256; ++i) {
      const auto ii = static_cast<std::size_t>(256 * b + i);
      const double e = static_cast<double>(x[ii]) - y[ii];
      be += e * e;
      bs += static_cast<double>(x[ii]) * x[ii];
      // per element: at most 1.5 steps of its sub-block (half a step when not clamped)
      const double step = std::fabs(static_cast<double>(d) * blk.scales[i / 16]);
      EXPECT_LE(std::fabs(e), 1.5 * step + 1e-30) << "block " << b << " i " << i;
    }
    if (b == 5) {
      EXPECT_EQ(be, 0.0);
    }
    if (b == 6) {
      EXPECT_LE(std::sqrt(be / bs), 1e-3);  // constant block: only fp16 rounding of d
    }
    if (b != 4 && bs > 0) {
      EXPECT_LE(std::sqrt(be / bs), 0.03) << "block " << b;
    }
    err += be;
    sig += bs;
    if (b != 4) err_g += be, sig_g += bs;
    const double nv = naive_q6k_sqerr(x.data() + 256 * b);
    naive += nv;
    if (std::getenv("BITNET_Q6K_VERBOSE"))
      std::printf("block %d: ours %.5f naive %.5f\n", static_cast<int>(b), std::sqrt(be / bs), std::sqrt(nv / bs));
  }
  // Gaussian blocks: a uniform 6-bit grid at amax/32 per 16 values would give about
  // 1.93/32/sqrt(12) = 0.0174 of the RMS; the outlier block is excluded here.
  const double rel = std::sqrt(err_g / sig_g);
  EXPECT_LE(rel, 0.0185);
  EXPECT_LE(err, naive) << "the candidate search should not lose to the naive scale choice";
  std::printf("Q6_K round trip: relative RMS error %.5f on Gaussian blocks; all blocks %.5f (naive %.5f)\n", rel,
              std::sqrt(err / sig), std::sqrt(naive / sig));
}

// Non-finite and huge inputs must not reach undefined float->int conversions (run
// under -DBITNET_SANITIZE=ON, UBSan checks that) and must give defined encodings.
TEST(DenseQuant, NonFiniteAndHugeInputs) {
  std::vector<float> x(512, 0.5f);
  x[3] = std::nanf("");
  x[40] = std::numeric_limits<float>::infinity();
  x[300] = -std::numeric_limits<float>::infinity();
  x[301] = 1e30f;
  std::vector<bitnet::block_q8_0> q80(16);
  std::vector<bitnet::block_q8_k> q8k(2);
  std::vector<bitnet::block_q6_k> q6(2);
  bitnet::quantize_row_q8_0(x.data(), q80.data(), 512);
  bitnet::quantize_row_q8_k(x.data(), q8k.data(), 512);
  bitnet::quantize_row_q6_k(x.data(), q6.data(), 512);
  EXPECT_EQ(q80[0].qs[3], 0);  // NaN -> 0
  // Q6_K saturates: a block of huge values keeps the largest fp16 d, not inf
  std::vector<float> big(256, 3e9f);
  bitnet::quantize_row_q6_k(big.data(), q6.data(), 256);
  EXPECT_EQ(q6[0].d, 0x7BFF);
  std::vector<float> y(256);
  bitnet::dequantize_row_q6_k(q6.data(), y.data(), 256);
  for (float v : y) EXPECT_TRUE(std::isfinite(v) && v > 2e8f) << v;
}

// ---------------------------------------------------------------- dispatch

TEST(DenseDispatch, DefaultIsBestRunnable) {
  const auto f = bitnet::cpu_features::detect();
  const auto k = bitnet::select_dense_kernels(f);
  EXPECT_FALSE(k.arch_name.empty());
  if (f.avx512bw) {
    EXPECT_EQ(k.arch_name, "avx512bw");
  } else if (f.avx2) {
    EXPECT_EQ(k.arch_name, "avx2");
  }
  const auto s = bitnet::select_dense_kernels(bitnet::cpu_features{});
  EXPECT_EQ(s.arch_name, "scalar");
}

template <class A> void expect_override_runs() {
  if (!bitnet::arch_available<A>()) {
    // an arch this CPU cannot run must be rejected
    EXPECT_THROW((void)bitnet::select_dense_kernels(bitnet::cpu_features::detect(), A::name), std::invalid_argument)
        << A::name;
    return;
  }
  const auto k = bitnet::select_dense_kernels(bitnet::cpu_features::detect(), A::name);
  EXPECT_EQ(k.arch_name, A::name);
  const auto direct = bitnet::dense_kernels_for<A>();
  EXPECT_EQ(k.f16.fn, direct.f16.fn);
  EXPECT_EQ(k.q6_k.fn, direct.q6_k.fn);
  // the forced kernels really run (and agree with the reference)
  for (auto t : dc::kDenseTypes) {
    const auto msg =
        dc::check_random(k, t, {9, dc::block_of(t) == 1 ? 300 : 4 * dc::block_of(t), 1, 8, 1, 2}, base_seed() + 77);
    EXPECT_EQ(msg, "");
  }
}

TEST(DenseDispatch, OverridesAreHonoured) {
  expect_override_runs<bitnet::arch::scalar>();
#if BITNET_X86
  expect_override_runs<bitnet::arch::avx2>();
  expect_override_runs<bitnet::arch::avx512bw>();
  const auto f = bitnet::cpu_features::detect();
  if (f.avx512vnni) {
    EXPECT_EQ(bitnet::select_dense_kernels(f, "avx512vnni").arch_name, "avx512bw");
  }
  EXPECT_THROW((void)bitnet::select_dense_kernels(f, "neon64"), std::invalid_argument);
#endif
#if BITNET_ARM64
  expect_override_runs<bitnet::arch::neon64>();
  expect_override_runs<bitnet::arch::neon64_dotprod>();
#endif
}

TEST(DenseDispatch, RejectsUnknownAndUnrunnable) {
  try {
    (void)bitnet::select_dense_kernels(bitnet::cpu_features::detect(), "avx3");
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("avx3"), std::string::npos) << m;
    for (auto n : bitnet::all_arch_names()) EXPECT_NE(m.find(std::string(n)), std::string::npos) << m;
  }
  const bitnet::cpu_features none{};
#if BITNET_X86
  EXPECT_THROW((void)bitnet::select_dense_kernels(none, "avx2"), std::invalid_argument);
  EXPECT_THROW((void)bitnet::select_dense_kernels(none, "avx512bw"), std::invalid_argument);
  EXPECT_THROW((void)bitnet::select_dense_kernels(none, "avx512vnni"), std::invalid_argument);
#endif
#if BITNET_ARM64
  EXPECT_THROW((void)bitnet::select_dense_kernels(none, "neon64dp"), std::invalid_argument);
#endif
  EXPECT_EQ(bitnet::select_dense_kernels(none, "scalar").arch_name, "scalar");
}

// ---------------------------------------------------------------- entry points

TEST(DenseGemv, ValidatesArguments) {
  const auto k = bitnet::select_dense_kernels(bitnet::cpu_features::detect());
  std::vector<float> x(512, 0.5f), y(4);
  std::vector<std::uint8_t> w(4 * bitnet::dense_row_bytes(tensor_type::q6_k, 512));
  const std::size_t rb = bitnet::dense_row_bytes(tensor_type::q6_k, 512);
  bitnet::dense_activation a;
  EXPECT_THROW(a.prepare(tensor_type::q6_k, x.data(), 300), std::invalid_argument);  // not a multiple of 256
  EXPECT_THROW(a.prepare(tensor_type::tq2_0, x.data(), 256), std::invalid_argument);
  EXPECT_THROW(a.prepare(tensor_type::f16, x.data(), 0), std::invalid_argument);
  a.prepare(tensor_type::q6_k, x.data(), 512);
  EXPECT_NO_THROW(bitnet::dense_gemv(k, tensor_type::q6_k, w.data(), rb, a, y.data(), 0, 4));
  EXPECT_THROW(bitnet::dense_gemv(k, tensor_type::q8_0, w.data(), rb, a, y.data(), 0, 4), std::invalid_argument);
  EXPECT_THROW(bitnet::dense_gemv(k, tensor_type::q6_k, w.data(), rb - 1, a, y.data(), 0, 4), std::invalid_argument);
  EXPECT_THROW(bitnet::dense_gemv(k, tensor_type::q6_k, w.data(), rb, a, y.data(), 3, 2), std::invalid_argument);
  EXPECT_THROW(bitnet::dense_gemv(k, tensor_type::q6_k, w.data(), rb, a, y.data(), -1, 2), std::invalid_argument);
  EXPECT_THROW(bitnet::dense_gemv(k, tensor_type::q6_k, nullptr, rb, a, y.data(), 0, 2), std::invalid_argument);
  EXPECT_NO_THROW(bitnet::dense_gemv(k, tensor_type::q6_k, nullptr, rb, a, nullptr, 2, 2));  // empty range
  EXPECT_THROW(bitnet::dense_gemv(k, tensor_type::i2_s, w.data(), rb, a, y.data(), 0, 4), std::invalid_argument);
}

// Every arch's kernels (not only the dispatched ones): a row's result does not depend on the
// range that computes it. The SIMD kernels stream rows in groups of 2 or 4 plus a remainder, and
// the group a row falls in depends on the range a thread is given; K = 1536 and 2560 also take
// Q6_K's four-block batches and their tails. The runner's output must not change with threads.
TYPED_TEST(DenseKernels, ThreadsOnDisjointRangesMatchOneCall) {
  if (!bitnet::arch_available<TypeParam>()) GTEST_SKIP() << TypeParam::name << " is not supported by this CPU";
  const bitnet::dense_kernels k = bitnet::dense_kernels_for<TypeParam>();
  dc::rng r(base_seed() + 5);
  for (auto t : dc::kDenseTypes) {
    for (const std::int64_t K : {std::int64_t{512}, std::int64_t{1536}, std::int64_t{2560}}) {
      const std::int64_t M = 101;
      dc::wmat w = dc::alloc_w(t, M, K, 1, 0);
      dc::fill_random(w, r);
      std::vector<float> x(static_cast<std::size_t>(K));
      for (auto& v : x) v = r.normal();
      bitnet::dense_activation a;
      a.prepare(t, x.data(), K);
      std::vector<float> y1(M), y2(M);
      bitnet::dense_gemv(k, t, w.base(), w.row_bytes, a, y1.data(), 0, M);
      std::vector<std::thread> th;
      for (int i = 0; i < 3; ++i)
        th.emplace_back(
            [&, i] { bitnet::dense_gemv(k, t, w.base(), w.row_bytes, a, y2.data(), M * i / 3, M * (i + 1) / 3); });
      for (auto& h : th) h.join();
      EXPECT_EQ(std::memcmp(y1.data(), y2.data(), 4 * M), 0) << k.kernel_name(t) << " K=" << K;
      // convenience overload with a scratch activation
      std::vector<float> y3(M);
      bitnet::dense_activation scratch;
      bitnet::dense_gemv(k, t, w.base(), w.row_bytes, x.data(), K, y3.data(), 0, M, scratch);
      EXPECT_EQ(std::memcmp(y1.data(), y3.data(), 4 * M), 0) << k.kernel_name(t) << " K=" << K;
    }
  }
}

TEST(DenseGemv, BatchedMatchesPerRowCalls) {
  const auto k = bitnet::select_dense_kernels(bitnet::cpu_features::detect());
  dc::rng r(base_seed() + 6);
  for (auto t : dc::kDenseTypes) {
    const std::int64_t M = 300, K = 768, N = 3, ldx = K + 5;
    dc::wmat w = dc::alloc_w(t, M, K, 2, 4);
    dc::fill_random(w, r);
    std::vector<float> x(static_cast<std::size_t>(N * ldx));
    for (auto& v : x) v = r.normal();
    bitnet::dense_activation batch, one;
    batch.prepare_batch(t, x.data(), N, K, ldx);
    const std::size_t ldy = M + 3;
    std::vector<float> y(N * ldy, -1.0f);
    bitnet::dense_gemm(k, t, w.base(), w.row_bytes, batch, y.data(), ldy, 7, M);
    for (std::int64_t n = 0; n < N; ++n) {
      one.prepare(t, x.data() + n * ldx, K);
      std::vector<float> y1(M, -1.0f);
      bitnet::dense_gemv(k, t, w.base(), w.row_bytes, one, y1.data(), 7, M);
      EXPECT_EQ(std::memcmp(y1.data(), y.data() + n * static_cast<std::int64_t>(ldy), 4 * M), 0)
          << bitnet::type_name(t) << " n=" << n;
    }
  }
}

}  // namespace
