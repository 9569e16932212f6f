// bitnet/reference.hpp - plain scalar references, written from the format spec
// for clarity, not speed. They read the *file* layouts directly (no repacking) so
// tests can check the repack + kernel path against an independent route.
//
//   i2s_matvec_ref   bitnet.cpp semantics: per-token I8_S activations,
//                    y = ((float)dot_c - (float)sum_q) / s_x * s_w
//   tq2_matvec_ref / tq1_matvec_ref
//                    ggml semantics: Q8_K activations per 256, f32 accumulation
//                    over blocks of (float)sum * (d_w * d_x)
//   ternary_dot_ref  exact int32 sum of w * q
#pragma once

#include <cstdint>  // fixed-width integers
#include <span>     // inputs
#include <vector>   // outputs

#include "activation.hpp"
#include "formats.hpp"

namespace bitnet::reference {

inline std::int32_t ternary_dot_ref(const std::int8_t* w, const std::int8_t* q, std::int64_t K) noexcept {
  std::int32_t s = 0;
  for (std::int64_t k = 0; k < K; ++k) s += static_cast<std::int32_t>(w[k]) * q[k];
  return s;
}

inline std::vector<float> i2s_matvec_ref(std::span<const std::uint8_t> bytes, std::int64_t K, std::int64_t M,
                                         const float* x) {
  const float sw = i2s_scale(bytes, K, M);
  std::vector<std::int8_t> q(static_cast<std::size_t>(K));
  std::int32_t sum_q = 0;
  const float sx = quantize_row_i8s(x, K, q.data(), sum_q);
  std::vector<float> y(static_cast<std::size_t>(M));
  for (std::int64_t m = 0; m < M; ++m) {
    std::int32_t acc = 0;
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t e = m * K + k, g = e / 128, j = e % 128;
      const int code = (bytes[static_cast<std::size_t>(32 * g + j % 32)] >> (6 - 2 * (j / 32))) & 3;
      acc += code * q[static_cast<std::size_t>(k)];
    }
    y[static_cast<std::size_t>(m)] = ((static_cast<float>(acc) - static_cast<float>(sum_q)) / sx) * sw;
  }
  return y;
}

namespace detail {
// Shared Q8_K driver: `weight(m, k)` returns the ternary value, `dw(m, b)` the block scale.
template <class W, class D>
std::vector<float> q8k_matvec(std::int64_t K, std::int64_t M, const float* x, W weight, D dw) {
  const std::int64_t nb = K / 256;
  std::vector<std::int8_t> q(static_cast<std::size_t>(K));
  std::vector<float> d(static_cast<std::size_t>(nb));
  for (std::int64_t b = 0; b < nb; ++b) {
    std::int32_t unused = 0;
    d[static_cast<std::size_t>(b)] = quantize_block_q8k(x + 256 * b, q.data() + 256 * b, unused);
  }
  std::vector<float> y(static_cast<std::size_t>(M));
  for (std::int64_t m = 0; m < M; ++m) {
    float sumf = 0.0f;
    for (std::int64_t b = 0; b < nb; ++b) {
      std::int32_t s = 0;
      for (int j = 0; j < 256; ++j) s += weight(m, 256 * b + j) * q[static_cast<std::size_t>(256 * b + j)];
      sumf += static_cast<float>(s) * (dw(m, b) * d[static_cast<std::size_t>(b)]);
    }
    y[static_cast<std::size_t>(m)] = sumf;
  }
  return y;
}
}  // namespace detail

inline std::vector<float> tq2_matvec_ref(std::span<const std::uint8_t> bytes, std::int64_t K, std::int64_t M,
                                         const float* x) {
  check_tq_shape("TQ2_0", K, M);
  const std::int64_t nb = K / 256;
  auto blk = [&](std::int64_t m, std::int64_t b) { return bytes.data() + 66 * (m * nb + b); };
  return detail::q8k_matvec(
      K, M, x,
      [&](std::int64_t m, std::int64_t k) {
        const std::uint8_t* p = blk(m, k / 256);
        const std::int64_t e = k % 256;
        return ((p[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) - 1;
      },
      [&](std::int64_t m, std::int64_t b) { return fp16_to_f32(bitnet::detail::load_u16(blk(m, b) + 64)); });
}

inline std::vector<float> tq1_matvec_ref(std::span<const std::uint8_t> bytes, std::int64_t K, std::int64_t M,
                                         const float* x) {
  check_tq_shape("TQ1_0", K, M);
  const std::int64_t nb = K / 256;
  auto blk = [&](std::int64_t m, std::int64_t b) { return bytes.data() + 54 * (m * nb + b); };
  return detail::q8k_matvec(
      K, M, x,
      [&](std::int64_t m, std::int64_t k) {
        const std::uint8_t* p = blk(m, k / 256);
        const int e = static_cast<int>(k % 256);
        if (e < 160) return bitnet::detail::tq1_trit(p[e % 32], e / 32) - 1;
        if (e < 240) return bitnet::detail::tq1_trit(p[32 + (e - 160) % 16], (e - 160) / 16) - 1;
        return bitnet::detail::tq1_trit(p[48 + (e - 240) % 4], (e - 240) / 4) - 1;
      },
      [&](std::int64_t m, std::int64_t b) { return fp16_to_f32(bitnet::detail::load_u16(blk(m, b) + 52)); });
}

}  // namespace bitnet::reference
