// bitnet/gemv.hpp - ternary GEMV and GEMM on the repacked t2 layout.
//
//   gemv<Config>(W, X, n, y, row_begin, row_end)
//       y[m] for m in [row_begin, row_end) from activation row n of X.
//   gemm<Config>(W, X, Y, ldy, row_begin, row_end)
//       Y[t*ldy + m] for every activation row t of X and m in the range.
//   gemv_dot<Config>(W, X, n, d, row_begin, row_end)
//       d[m] = sum over k of w[m,k] * q[n,k], exact int32, no scales applied: for
//       hosts that want their own epilogue (e.g. in double precision).
// Rows are independent: a host splits [0, M) across its own threads and calls
// these concurrently on disjoint ranges (W and X are read-only here).
//
// Streams: a GEMV tile of R rows takes rows m, m + s, ..., m + (R-1)s, where
// s = (row_end - row_begin) / R, so one call reads R far-apart sequential streams
// of codes instead of one (detail/row_streams.hpp says why). The results are the
// same; only the visiting order changes.
//
// Epilogues (exact int32 dot products first, then floats in this order):
//   per-token X, per-tensor W scale (I2_S semantics, bitnet.cpp's order):
//       y = (((float)dot_c - (float)sum_q) / s_x) * s_w
//   per-block X (Q8_K) or per-block W scales (TQ semantics, ggml's order):
//       y = sum over 256-blocks b of (float)(dot_c,b - sum_q,b) * (d_w,b * d_x,b)
//       (per-token X with per-block W: d_x,b = 1 / s_x for every b)
// dot_c uses codes c = w + 1, so dot_c - sum_q = sum of w * q exactly; padding
// weights beyond K and padding activations are both zero.
#pragma once

#include <algorithm>  // std::min
#include <cstdint>    // fixed-width integers
#include <cstring>    // std::memcpy: int32 dots held in float outputs
#include <stdexcept>  // errors
#include <string>     // error text

#include "activation.hpp"
#include "config.hpp"
#include "repack.hpp"
#include "detail/row_streams.hpp"
#include "detail/t2_avx2.hpp"
#include "detail/t2_avx512.hpp"
#include "detail/t2_neon.hpp"
#include "detail/t2_scalar.hpp"

namespace bitnet {

namespace detail {

inline void check_operands(const ternary_matrix& W, const activations& X, int block, std::int64_t r0, std::int64_t r1) {
  if (W.block != block)
    throw std::invalid_argument("ternary kernel: matrix was repacked with block " + std::to_string(W.block) +
                                " but the kernel needs block " + std::to_string(block));
  if (X.K() != W.K)
    throw std::invalid_argument("ternary kernel: activation length K=" + std::to_string(X.K()) +
                                " does not match the matrix K=" + std::to_string(W.K));
  if (r0 < 0 || r1 > W.M || r0 > r1)
    throw std::invalid_argument("ternary kernel: row range [" + std::to_string(r0) + ", " + std::to_string(r1) +
                                ") is outside [0, " + std::to_string(W.M) + ")");
}

inline bool simple_epilogue(const ternary_matrix& W, const activations& X) noexcept {
  return X.mode() == act_quant::per_token && !W.per_block_scales();
}

// Weight scale of 256-block b of row m.
inline float block_weight_scale(const ternary_matrix& W, std::int64_t m, std::int64_t b) noexcept {
  return W.per_block_scales() ? W.block_scales[static_cast<std::size_t>(m * (W.Kp / 256) + b)] : W.scale;
}

template <class Arch, int Block, int R, int U>
inline void gemv_tile(const ternary_matrix& W, const activations& X, std::int64_t n, float* y, std::int64_t m,
                      std::int64_t stride = 1) {
  const std::uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = W.row(m + r * stride);
  std::int32_t acc[R];
  if (simple_epilogue(W, X)) {  // the int32 dots, as bits in y: simple_epilogue_pass finishes them
    t2_impl<Arch>::template dot_rows<Block, R, U>(rows, X.q(n), W.Kp / Block, acc);
    for (int r = 0; r < R; ++r) std::memcpy(y + m + r * stride, &acc[r], sizeof(float));
    return;
  }
  // Per-block epilogue: one int32 dot per 256-block.
  constexpr int kChunksPerBlock = 256 / Block;
  float sum[R] = {};
  const std::int64_t nb = W.Kp / 256;
  const bool per_token = X.mode() == act_quant::per_token;
  const float inv_sx = per_token ? 1.0f / X.scale(n) : 0.0f;
  for (std::int64_t b = 0; b < nb; ++b) {
    const std::uint8_t* brow[R];
    for (int r = 0; r < R; ++r) brow[r] = rows[r] + b * 64;
    t2_impl<Arch>::template dot_rows<Block, R, 1>(brow, X.q(n) + 256 * b, kChunksPerBlock, acc);
    const float dx = per_token ? inv_sx : X.block_d(n)[b];
    const std::int32_t bs = X.block_sum(n)[b];
    for (int r = 0; r < R; ++r)
      sum[r] += static_cast<float>(acc[r] - bs) * (block_weight_scale(W, m + r * stride, b) * dx);
  }
  for (int r = 0; r < R; ++r) y[m + r * stride] = sum[r];
}

// The per-token epilogue over y[r0, r1), which holds the rows' int32 dots over codes as bits:
// y = ((dot - sum_q) / s_x) * s_w. One contiguous pass, so the compiler vectorizes the divide.
// Inside the tiles, a scalar divide per row held back the next tile's loads: 6912x2560 from DRAM
// went from 61 to 66 G weights/s (AVX2 r4) when it moved here. Same arithmetic, same bits.
inline void simple_epilogue_pass(const ternary_matrix& W, const activations& X, std::int64_t n, float* y,
                                 std::int64_t r0, std::int64_t r1) noexcept {
  const float sq = static_cast<float>(X.sum(n)), sx = X.scale(n), sw = W.scale;
  for (std::int64_t m = r0; m < r1; ++m) {
    std::int32_t d;
    std::memcpy(&d, y + m, sizeof d);
    y[m] = ((static_cast<float>(d) - sq) / sx) * sw;
  }
}

}  // namespace detail

template <class Config>
void gemv(const ternary_matrix& W, const activations& X, std::int64_t n, float* y, std::int64_t row_begin,
          std::int64_t row_end) {
  using A = typename Config::arch;
  constexpr int B = Config::block, R = Config::rows, U = Config::unroll;
  detail::check_operands(W, X, B, row_begin, row_end);
  detail::for_each_stream_tile<R>(
      row_begin, row_end, [&](std::int64_t m, std::int64_t s) { detail::gemv_tile<A, B, R, U>(W, X, n, y, m, s); },
      [&](std::int64_t m) { detail::gemv_tile<A, B, 1, U>(W, X, n, y, m); });
  if (detail::simple_epilogue(W, X)) detail::simple_epilogue_pass(W, X, n, y, row_begin, row_end);
}

namespace detail {
template <class Arch, int Block, int R, int U>
inline void dot_tile(const ternary_matrix& W, const activations& X, std::int64_t n, std::int32_t* d, std::int64_t m,
                     std::int64_t stride = 1) {
  const std::uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = W.row(m + r * stride);
  std::int32_t acc[R];
  t2_impl<Arch>::template dot_rows<Block, R, U>(rows, X.q(n), W.Kp / Block, acc);
  for (int r = 0; r < R; ++r) d[m + r * stride] = acc[r] - X.sum(n);  // codes are w + 1
}
}  // namespace detail

template <class Config>
void gemv_dot(const ternary_matrix& W, const activations& X, std::int64_t n, std::int32_t* d, std::int64_t row_begin,
              std::int64_t row_end) {
  using A = typename Config::arch;
  constexpr int B = Config::block, R = Config::rows, U = Config::unroll;
  detail::check_operands(W, X, B, row_begin, row_end);
  detail::for_each_stream_tile<R>(
      row_begin, row_end, [&](std::int64_t m, std::int64_t s) { detail::dot_tile<A, B, R, U>(W, X, n, d, m, s); },
      [&](std::int64_t m) { detail::dot_tile<A, B, 1, U>(W, X, n, d, m); });
}

namespace detail {
template <class Arch, int Block, int R, int T>
inline void gemm_tile(const ternary_matrix& W, const activations& X, std::int64_t t0, float* Y, std::int64_t ldy,
                      std::int64_t m) {
  const std::uint8_t* rows[R];
  const std::int8_t* qs[T];
  for (int r = 0; r < R; ++r) rows[r] = W.row(m + r);
  for (int t = 0; t < T; ++t) qs[t] = X.q(t0 + t);
  std::int32_t acc[R * T];
  t2_impl<Arch>::template gemm_tile<Block, R, T>(rows, qs, W.Kp / Block, acc);
  const float sw = W.scale;
  for (int t = 0; t < T; ++t) {
    const float sq = static_cast<float>(X.sum(t0 + t)), sx = X.scale(t0 + t);
    float* yt = Y + (t0 + t) * ldy;
    for (int r = 0; r < R; ++r) yt[m + r] = ((static_cast<float>(acc[r * T + t]) - sq) / sx) * sw;
  }
}

template <class Arch, int Block, int R, int T>
inline void gemm_rows(const ternary_matrix& W, const activations& X, float* Y, std::int64_t ldy, std::int64_t t0,
                      std::int64_t r0, std::int64_t r1) {
  std::int64_t m = r0;
  for (; m + R <= r1; m += R) gemm_tile<Arch, Block, R, T>(W, X, t0, Y, ldy, m);
  for (; m < r1; ++m) gemm_tile<Arch, Block, 1, T>(W, X, t0, Y, ldy, m);
}
}  // namespace detail

template <class Config>
void gemm(const ternary_matrix& W, const activations& X, float* Y, std::int64_t ldy, std::int64_t row_begin,
          std::int64_t row_end) {
  using A = typename Config::arch;
  constexpr int B = Config::block, R = Config::rows, T = Config::tokens;
  detail::check_operands(W, X, B, row_begin, row_end);
  const std::int64_t N = X.rows();
  if (!detail::simple_epilogue(W, X)) {
    // Per-block scales: GEMV per activation row (correct; the batched path is per-token only).
    for (std::int64_t t = 0; t < N; ++t) {
      std::int64_t m = row_begin;
      for (; m + R <= row_end; m += R) detail::gemv_tile<A, B, R, 1>(W, X, t, Y + t * ldy, m);
      for (; m < row_end; ++m) detail::gemv_tile<A, B, 1, 1>(W, X, t, Y + t * ldy, m);
    }
    return;
  }
  // Row blocks outside, token tiles inside: a block of rows (about 32 KiB of codes)
  // stays in L1/L2 while every token tile streams past it.
  const std::int64_t rows_per_block = std::max<std::int64_t>(R, (32768 / W.row_bytes()) / R * R);
  for (std::int64_t rb = row_begin; rb < row_end; rb += rows_per_block) {
    const std::int64_t re = std::min(row_end, rb + rows_per_block);
    std::int64_t t = 0;
    for (; t + T <= N; t += T) detail::gemm_rows<A, B, R, T>(W, X, Y, ldy, t, rb, re);
    for (; t < N; ++t) detail::gemm_rows<A, B, R, 1>(W, X, Y, ldy, t, rb, re);
  }
}

}  // namespace bitnet
