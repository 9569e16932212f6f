// Ternary file formats and activation quantization against the spec's worked
// examples and first-principles checks.
#include <gtest/gtest.h>

#include <bitnet/bitnet.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "kernel_grid.hpp"

using namespace bitnet;

TEST(I2S, WorkedExampleByte) {
  // ternary-formats.md 1.2: w[0]=+1, w[32]=0, w[64]=-1, w[96]=+1 -> byte 0 = 0x92.
  std::vector<std::int8_t> w(128, 0);
  w[0] = 1;
  w[32] = 0;
  w[64] = -1;
  w[96] = 1;
  auto b = pack_i2s(w, 128, 1, 0.25f);
  ASSERT_EQ(b.size(), 128u / 4 + 32);
  EXPECT_EQ(b[0], 0x92);
  for (int i = 1; i < 32; ++i) EXPECT_EQ(b[i], 0x55) << i;  // all-zero weights are code 1 in each pair
  float s;
  std::memcpy(&s, b.data() + 32, 4);
  EXPECT_EQ(s, 0.25f);
}

TEST(I2S, SizesFromSpec) {
  EXPECT_EQ(i2s_nbytes(2560, 2560), 1638432u);
  EXPECT_EQ(i2s_nbytes(6912, 2560), 4423712u);
  auto n = tensor_nbytes(tensor_type::i2_s, {2560, 2560, 1, 1});
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1638432u);
  auto t = tensor_nbytes(tensor_type::tl2, {3200, 3200, 1, 1});
  ASSERT_TRUE(t);
  EXPECT_EQ(*t, 2167520u);
}

TEST(I2S, RoundTripAndInvalidCode) {
  auto w = test::random_ternary(256 * 3, 7);
  auto b = pack_i2s(w, 256, 3, 0.0625f);
  auto t = unpack_i2s(b, 256, 3);
  EXPECT_EQ(t.w, w);
  EXPECT_EQ(t.scale, 0.0625f);
  b[5] |= 0xC0;  // code 3 in the first pair
  EXPECT_THROW(unpack_i2s(b, 256, 3), std::runtime_error);
  EXPECT_THROW(repack(tensor_type::i2_s, b, 256, 3, 128), std::runtime_error);
  // The message names the element: byte 5 of group 3 (row 1), bits 2-3: element 3*128 + 96 + 5.
  b = pack_i2s(w, 256, 3, 0.0625f);
  b[3 * 32 + 5] |= 0x03;
  try {
    unpack_i2s(b, 256, 3);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("element 485 (row 1)"), std::string::npos) << e.what();
  }
}

TEST(TQ2, InvalidCodeNamesItsElement) {
  auto w = test::random_ternary(512, 8);
  auto b = pack_tq2(w, 256, 2, 0.5f);
  EXPECT_EQ(unpack_tq2(b, 256, 2).w, w);
  b[66 + 33] |= 0x30;  // block 1, byte 33, bits 4-5: element 256 + 128 + 64 + 1
  try {
    unpack_tq2(b, 256, 2);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("element 449"), std::string::npos) << e.what();
  }
}

TEST(I2S, RejectsShapes) {
  std::vector<std::int8_t> w(100, 0);
  try {
    pack_i2s(w, 100, 1, 1.0f);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("K=100 x M=1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("multiple of 128"), std::string::npos) << e.what();
  }
  std::vector<std::int8_t> bad(128, 2);
  EXPECT_THROW(pack_i2s(bad, 128, 1, 1.0f), std::invalid_argument);
}

TEST(TQ2, WorkedExampleByte) {
  // ternary-formats.md 2.1: elements 0, 32, 64, 96 = +1, 0, -1, +1 -> byte 0 = 0x86.
  std::vector<std::int8_t> w(256, 0);
  w[0] = 1;
  w[64] = -1;
  w[96] = 1;
  auto b = pack_tq2(w, 256, 1, 0.5f);
  ASSERT_EQ(b.size(), 66u);
  EXPECT_EQ(b[0], 0x86);
  EXPECT_EQ(fp16_to_f32(static_cast<std::uint16_t>(b[64] | (b[65] << 8))), 0.5f);
  // Element 128 + m + 32l lives in the second half.
  std::vector<std::int8_t> w2(256, 0);
  w2[128 + 3 + 64] = -1;  // half 1, m = 3, l = 2
  auto b2 = pack_tq2(w2, 256, 1, 1.0f);
  EXPECT_EQ(b2[32 + 3], 0x55 & ~(3 << 4));
}

TEST(TQ2, RoundTripBlockScales) {
  auto w = test::random_ternary(512 * 2, 9);
  std::vector<float> bs{0.5f, 0.25f, 0.125f, 2.0f};
  auto b = pack_tq2(w, 512, 2, 0.0f, bs);
  auto t = unpack_tq2(b, 512, 2);
  EXPECT_EQ(t.w, w);
  EXPECT_EQ(t.block_scales, bs);
  auto b2 = pack_tq2(w, 512, 2, 0.5f);
  auto t2 = unpack_tq2(b2, 512, 2);
  EXPECT_TRUE(t2.block_scales.empty());
  EXPECT_EQ(t2.scale, 0.5f);
}

TEST(TQ1, WorkedExampleAndAllCodes) {
  // ternary-formats.md 3.2: trits 2,1,0,1,2 -> 205; decoding 205 gives them back.
  const std::int8_t w5[5] = {1, 0, -1, 0, 1};
  EXPECT_EQ(detail::tq1_encode(w5, 5, 1), 205);
  const int expect[5] = {2, 1, 0, 1, 2};
  for (int n = 0; n < 5; ++n) EXPECT_EQ(detail::tq1_trit(205, n), expect[n]);
  // All 243 five-trit and 81 four-trit values round-trip.
  for (int v = 0; v < 243; ++v) {
    std::int8_t t[5];
    int r = v;
    for (int n = 4; n >= 0; --n) {
      t[n] = static_cast<std::int8_t>(r % 3 - 1);
      r /= 3;
    }
    const std::uint8_t byte = detail::tq1_encode(t, 5, 1);
    for (int n = 0; n < 5; ++n) ASSERT_EQ(detail::tq1_trit(byte, n) - 1, t[n]) << "v=" << v << " n=" << n;
  }
  for (int v = 0; v < 81; ++v) {
    std::int8_t t[4];
    int r = v;
    for (int n = 3; n >= 0; --n) {
      t[n] = static_cast<std::int8_t>(r % 3 - 1);
      r /= 3;
    }
    const std::uint8_t byte = detail::tq1_encode(t, 4, 1);
    for (int n = 0; n < 4; ++n) ASSERT_EQ(detail::tq1_trit(byte, n) - 1, t[n]) << "v=" << v << " n=" << n;
  }
}

TEST(TQ1, RoundTripAndLayout) {
  auto w = test::random_ternary(256 * 4, 11);
  auto b = pack_tq1(w, 256, 4, 0.75f);
  ASSERT_EQ(b.size(), 4u * 54);
  auto t = unpack_tq1(b, 256, 4);
  EXPECT_EQ(t.w, w);
  EXPECT_EQ(t.scale, 0.75f);
  // Element 240 + m + 4n sits in qh[m] as trit n: check one by hand.
  std::vector<std::int8_t> z(256, 0);
  z[240 + 2 + 4 * 1] = 1;  // m = 2, n = 1
  auto bz = pack_tq1(z, 256, 1, 1.0f);
  EXPECT_EQ(detail::tq1_trit(bz[48 + 2], 1), 2);
  EXPECT_EQ(detail::tq1_trit(bz[48 + 2], 0), 1);
}

TEST(TQ, RejectsShapes) {
  std::vector<std::int8_t> w(128, 0);
  try {
    pack_tq2(w, 128, 1, 1.0f);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("multiple of 256"), std::string::npos) << e.what();
  }
  EXPECT_THROW(pack_tq1(w, 128, 1, 1.0f), std::invalid_argument);
  std::vector<std::uint8_t> short_bytes(65);
  EXPECT_THROW(unpack_tq2(short_bytes, 256, 1), std::invalid_argument);
}

TEST(Formats, LosslessConversionBetweenFormats) {
  const std::int64_t K = 512, M = 6;
  auto w = test::random_ternary(K * M, 21);
  const float s = 0.0478515625f;  // exactly representable in fp16
  auto i2 = pack_i2s(w, K, M, s);
  auto t = unpack_ternary(tensor_type::i2_s, i2, K, M);
  auto tq1 = pack_ternary(tensor_type::tq1_0, t);
  auto back = unpack_ternary(tensor_type::tq1_0, tq1, K, M);
  auto tq2 = pack_ternary(tensor_type::tq2_0, back);
  auto back2 = unpack_ternary(tensor_type::tq2_0, tq2, K, M);
  auto i2b = pack_ternary(tensor_type::i2_s, back2);
  EXPECT_EQ(i2b, i2);
}

TEST(Half, ExactConversions) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_f32(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_fp16(f), h) << h;
  }
  EXPECT_EQ(fp16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie -> even
  EXPECT_EQ(f32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(f32_to_fp16(65520.0f), 0x7C00);  // rounds to inf
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(3.0f)), 3.0f);
}

TEST(Activation, PerTokenMatchesSpec) {
  // s = float(127 / amax); ties to even; clamp to [-128, 127].
  std::vector<float> x{1.0f, -1.0f, 0.5f, 0.0f, 2.0f / 127.0f * 1.25f};
  std::vector<std::int8_t> q(x.size());
  std::int32_t sum = 0;
  const float s = quantize_row_i8s(x.data(), static_cast<std::int64_t>(x.size()), q.data(), sum);
  EXPECT_EQ(s, static_cast<float>(127.0 / 1.0));
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[1], -127);
  EXPECT_EQ(q[2], 64);  // 63.5 -> 64 (even)
  EXPECT_EQ(q[3], 0);
  EXPECT_EQ(q[4], 2);  // 2.5 -> 2 (even)
  EXPECT_EQ(sum, 127 - 127 + 64 + 0 + 2);
  // amax floor 1e-5: all-zero input gives zeros and a finite scale.
  std::vector<float> z(8, 0.0f);
  std::vector<std::int8_t> qz(8, 1);
  const float sz = quantize_row_i8s(z.data(), 8, qz.data(), sum);
  EXPECT_EQ(sz, static_cast<float>(127.0 / 1e-5));
  for (auto v : qz) EXPECT_EQ(v, 0);
}

TEST(Activation, PerTokenScaleIsTheAbsmaxOfAnyFiniteRow) {
  // The absmax runs on sign-cleared bit patterns; against a plain double reference over random
  // rows with signed zeros, subnormals, huge values and a negative maximum, and with infinities.
  std::mt19937 gen(77);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (int trial = 0; trial < 200; ++trial) {
    const int K = 1 + trial * 37 % 3000;
    std::vector<float> x(static_cast<std::size_t>(K));
    for (auto& v : x) v = nd(gen);
    x[static_cast<std::size_t>(trial % K)] = trial % 2 ? -0.0f : 1e-40f;  // signed zero / subnormal
    if (trial % 3 == 0) x[static_cast<std::size_t>((trial * 7) % K)] = -1e30f;  // negative maximum
    double amax = 0.0;
    for (float v : x) amax = std::max(amax, std::fabs(static_cast<double>(v)));
    const float want = static_cast<float>(127.0 / std::max(amax, 1e-5));
    std::vector<std::int8_t> q(x.size());
    std::int32_t sum = 0;
    ASSERT_EQ(quantize_row_i8s(x.data(), K, q.data(), sum), want) << "trial " << trial << " K=" << K;
  }
  std::vector<float> inf{1.0f, -std::numeric_limits<float>::infinity(), 2.0f};
  std::vector<std::int8_t> q(3);
  std::int32_t sum = 0;
  EXPECT_EQ(quantize_row_i8s(inf.data(), 3, q.data(), sum), 0.0f);  // 127 / inf
}

// Random rows for the per-token quantizer comparisons: K from 1 to past 3000 (tails of every
// length mod 32 and mod 256), a max of exactly 127 on odd trials so that s = 1 and the .5
// values are exact ties, signed zeros and subnormals, and a negative maximum now and then.
static std::vector<float> quantizer_row(int trial, std::mt19937& gen) {
  std::normal_distribution<float> nd(0.0f, 3.0f);
  const int K = 1 + trial * 37 % 3100;
  std::vector<float> x(static_cast<std::size_t>(K));
  for (auto& v : x) v = nd(gen);
  const auto at = [&](int i) -> float& { return x[static_cast<std::size_t>(i % K)]; };
  if (trial % 2) {
    for (auto& v : x) v = std::clamp(std::round(v * 8.0f) * 0.5f, -126.5f, 126.5f);  // halves: ties at s = 1
    at(trial * 5) = trial % 4 == 1 ? 127.0f : -127.0f;
  }
  at(trial) = trial % 3 ? -0.0f : 1e-40f;
  if (trial % 5 == 0) at(trial * 7) = -1e30f;
  return x;
}

TEST(Activation, AVX2PerTokenQuantizerIsBitIdentical) {
#if BITNET_X86
  if (!cpu_features::detect().avx2) GTEST_SKIP() << "this CPU has no AVX2";
  std::mt19937 gen(91);
  for (int trial = 0; trial < 300; ++trial) {
    const std::vector<float> x = quantizer_row(trial, gen);
    const std::int64_t K = static_cast<std::int64_t>(x.size()), Kp = pad_to(K, kActPad);
    std::vector<std::int8_t> want(static_cast<std::size_t>(Kp), 0), got(static_cast<std::size_t>(Kp), 0);
    std::vector<std::int32_t> want_bs(static_cast<std::size_t>(Kp / 256)), got_bs(want_bs.size(), -1);
    std::int32_t want_sum = 0, got_sum = -1;
    const float want_s = quantize_row_i8s(x.data(), K, want.data(), want_sum);
    detail::block_sums_i8(want.data(), Kp, want_bs.data());
    const float got_s = detail::quantize_row_i8s_avx2(x.data(), K, Kp, got.data(), got_sum, got_bs.data());
    ASSERT_EQ(std::memcmp(&got_s, &want_s, sizeof got_s), 0) << "trial " << trial << " K=" << K;
    ASSERT_EQ(got, want) << "trial " << trial << " K=" << K;
    ASSERT_EQ(got_sum, want_sum) << "trial " << trial << " K=" << K;
    ASSERT_EQ(got_bs, want_bs) << "trial " << trial << " K=" << K;
  }
#else
  GTEST_SKIP() << "x86 only";
#endif
}

TEST(Activation, PerTokenRowsMatchTheRowQuantizer) {
  // activations::quantize (whichever row quantizer this CPU runs) against quantize_row_i8s and
  // plain block sums, for batches whose rows have a stride and a K that is no multiple of 256,
  // after a wider batch has left other values in the buffers.
  std::mt19937 gen(5);
  activations xq;
  for (int trial = 0; trial < 40; ++trial) {
    const std::vector<float> row = quantizer_row(trial * 11 + 3, gen);
    const std::int64_t K = static_cast<std::int64_t>(row.size()), N = 1 + trial % 3, ld = K + trial % 5;
    std::vector<float> x(static_cast<std::size_t>(N * ld), 9.0f);
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t k = 0; k < K; ++k)
        x[static_cast<std::size_t>(n * ld + k)] = row[static_cast<std::size_t>(k)] * (1.0f + 0.5f * static_cast<float>(n));
    xq.quantize(x.data(), N, K, ld, act_quant::per_token);
    const std::int64_t Kp = xq.padded_K();
    ASSERT_EQ(Kp, pad_to(K, kActPad));
    for (std::int64_t n = 0; n < N; ++n) {
      std::vector<std::int8_t> want(static_cast<std::size_t>(Kp), 0);
      std::int32_t sum = 0;
      const float s = quantize_row_i8s(x.data() + n * ld, K, want.data(), sum);
      ASSERT_EQ(xq.scale(n), s) << "trial " << trial << " row " << n;
      ASSERT_EQ(xq.sum(n), sum) << "trial " << trial << " row " << n;
      ASSERT_EQ(std::vector<std::int8_t>(xq.q(n), xq.q(n) + Kp), want) << "trial " << trial << " row " << n;
      for (std::int64_t b = 0; b < Kp / 256; ++b) {
        std::int32_t bs = 0;
        for (std::int64_t j = 0; j < 256; ++j) bs += want[static_cast<std::size_t>(256 * b + j)];
        ASSERT_EQ(xq.block_sum(n)[b], bs) << "trial " << trial << " row " << n << " block " << b;
        ASSERT_EQ(xq.block_d(n)[b], 0.0f);
      }
    }
  }
}

TEST(Activation, Q8KSignAndZero) {
  std::vector<float> x(256, 0.0f);
  x[3] = -2.0f;  // the max-magnitude value is negative: iscale = -127 / -2
  x[4] = 1.0f;
  x[5] = 2.0f;  // same |x| as x[3]: the first one found decides
  std::vector<std::int8_t> q(256);
  std::int32_t sum = 0;
  const float d = quantize_block_q8k(x.data(), q.data(), sum);
  EXPECT_EQ(d, 1.0f / (-127.0f / -2.0f));
  EXPECT_EQ(q[3], -127);
  EXPECT_EQ(q[4], 64);  // 63.5 -> 64 (even)
  EXPECT_EQ(q[5], 127);
  EXPECT_EQ(sum, -127 + 64 + 127);
  // With a positive vmax the scale is negative and q = min(127, ...): -vmax maps to 127.
  std::vector<float> y(256, 0.0f);
  y[0] = 1.0f;
  y[1] = -1.0f;
  const float dy = quantize_block_q8k(y.data(), q.data(), sum);
  EXPECT_LT(dy, 0.0f);
  EXPECT_EQ(q[0], -127);
  EXPECT_EQ(q[1], 127);
  std::vector<float> zero(256, 0.0f);
  EXPECT_EQ(quantize_block_q8k(zero.data(), q.data(), sum), 0.0f);
  EXPECT_EQ(sum, 0);
}

TEST(Activation, PaddingAndErrors) {
  activations a;
  auto x = test::random_floats(300, 3);
  a.quantize(x.data(), 1, 300, 300, act_quant::per_token);
  EXPECT_EQ(a.padded_K(), 512);
  for (int k = 300; k < 512; ++k) EXPECT_EQ(a.q(0)[k], 0);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.q(0)) % 64, 0u);
  EXPECT_THROW(a.quantize(x.data(), 1, 300, 300, act_quant::per_block), std::invalid_argument);
}
