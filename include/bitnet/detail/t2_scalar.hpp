// bitnet/detail/t2_scalar.hpp - portable bodies of the t2 kernels.
//
// Contract shared by every arch's t2_impl (see repack.hpp for the layout):
//   dot_rows<Block, Rows, Unroll>(rows, q, nchunks, out):
//     out[r] = sum over k < nchunks*Block of code(rows[r], k) * q[k]   (exact int32)
//   gemm_tile<Block, Rows, Tokens>(rows, qs, nchunks, out):
//     out[r*Tokens + t] = sum over k of code(rows[r], k) * qs[t][k]
// rows[r] and q / qs[t] point at the first chunk; codes are 0, 1, 2 (= w + 1).
// No alignment is required. |sum| < 2^31 for any K the layout can hold
// (K < 2^22 keeps 2 * 128 * K far below it).
#pragma once

#include <cstdint>  // fixed-width integers

#include "../arch.hpp"
#include "static_for.hpp"

namespace bitnet::detail {

template <class Arch> struct t2_impl;

template <> struct t2_impl<arch::scalar> {
  template <int Block> static std::int32_t dot_chunk(const std::uint8_t* w, const std::int8_t* q) noexcept {
    constexpr int CB = Block / 4;
    std::int32_t s = 0;
    for (int b = 0; b < CB; ++b) {
      const unsigned v = w[b];
      s += static_cast<std::int32_t>(v & 3u) * q[b] + static_cast<std::int32_t>((v >> 2) & 3u) * q[b + CB] +
           static_cast<std::int32_t>((v >> 4) & 3u) * q[b + 2 * CB] + static_cast<std::int32_t>(v >> 6) * q[b + 3 * CB];
    }
    return s;
  }

  template <int Block, int Rows, int Unroll>
  static void dot_rows(const std::uint8_t* const* rows, const std::int8_t* q, std::int64_t nchunks,
                       std::int32_t* out) noexcept {
    constexpr int CB = Block / 4;
    std::int32_t acc[Rows] = {};
    std::int64_t c = 0;
    for (; c + Unroll <= nchunks; c += Unroll)
      static_for<Unroll>([&](auto u) BITNET_INLINE {
        static_for<Rows>([&](auto r) BITNET_INLINE { acc[r] += dot_chunk<Block>(rows[r] + (c + u) * CB, q + (c + u) * Block); });
      });
    for (; c < nchunks; ++c)
      static_for<Rows>([&](auto r) BITNET_INLINE { acc[r] += dot_chunk<Block>(rows[r] + c * CB, q + c * Block); });
    for (int r = 0; r < Rows; ++r) out[r] = acc[r];
  }

  template <int Block, int Rows, int Tokens>
  static void gemm_tile(const std::uint8_t* const* rows, const std::int8_t* const* qs, std::int64_t nchunks,
                        std::int32_t* out) noexcept {
    constexpr int CB = Block / 4;
    std::int32_t acc[Rows * Tokens] = {};
    for (std::int64_t c = 0; c < nchunks; ++c)
      static_for<Rows>([&](auto r) BITNET_INLINE {
        static_for<Tokens>([&](auto t) BITNET_INLINE { acc[r * Tokens + t] += dot_chunk<Block>(rows[r] + c * CB, qs[t] + c * Block); });
      });
    for (int i = 0; i < Rows * Tokens; ++i) out[i] = acc[i];
  }
};

}  // namespace bitnet::detail
