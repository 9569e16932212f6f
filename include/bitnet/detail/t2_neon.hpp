// bitnet/detail/t2_neon.hpp - AArch64 NEON bodies of the t2 kernels (contract:
// t2_scalar.hpp). A chunk is processed in 16-byte quarters; byte shifts (vshr.u8)
// need no masking for the top plane.
//   neon64:         vmlal (codes x int8) into int16, widened by vpadal every kWiden
//                   chunks (each lane gets 8 products of |p| <= 256 per quarter).
//   neon64_dotprod: sdot straight into int32 (Armv8.2 dot product).
#pragma once

#include "../arch.hpp"
#if BITNET_ARM64

#include <arm_neon.h>  // NEON intrinsics
#include <algorithm>   // std::min
#include <cstdint>     // fixed-width integers

#include "static_for.hpp"

namespace bitnet::detail {

BITNET_DEFINE_STATIC_FOR(static_for_dotprod, BITNET_TARGET_DOTPROD)

template <class Arch> struct t2_impl;

template <> struct t2_impl<arch::neon64> {
  template <int Block, int Rows, int Unroll>
  static void dot_rows(const std::uint8_t* const* rows, const std::int8_t* q, std::int64_t nchunks,
                       std::int32_t* out) noexcept {
    constexpr int CB = Block / 4;
    constexpr int Q = CB / 16;
    constexpr int kWiden = 127 / (8 * Q);  // 8*Q products of |p| <= 256 per lane per chunk
    static_assert(kWiden >= 1);
    const uint8x16_t m3 = vdupq_n_u8(3);
    int32x4_t acc32[Rows];
    int16x8_t acc16[Rows];
    static_for<Rows>([&](auto r) BITNET_INLINE { acc32[r] = vdupq_n_s32(0); });
    std::int64_t c = 0;
    while (c < nchunks) {
      const std::int64_t cend = std::min(nchunks, c + kWiden);
      static_for<Rows>([&](auto r) BITNET_INLINE { acc16[r] = vdupq_n_s16(0); });
      for (; c < cend; ++c) {
        static_for<Q>([&](auto h) BITNET_INLINE {
          const std::int8_t* qa = q + c * Block + 16 * h;
          const int8x16_t a0 = vld1q_s8(qa), a1 = vld1q_s8(qa + CB), a2 = vld1q_s8(qa + 2 * CB), a3 = vld1q_s8(qa + 3 * CB);
          static_for<Rows>([&](auto r) BITNET_INLINE {
            const uint8x16_t w = vld1q_u8(rows[r] + c * CB + 16 * h);
            const int8x16_t c0 = vreinterpretq_s8_u8(vandq_u8(w, m3));
            const int8x16_t c1 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w, 2), m3));
            const int8x16_t c2 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w, 4), m3));
            const int8x16_t c3 = vreinterpretq_s8_u8(vshrq_n_u8(w, 6));
            int16x8_t s = acc16[r];
            s = vmlal_s8(s, vget_low_s8(c0), vget_low_s8(a0));
            s = vmlal_high_s8(s, c0, a0);
            s = vmlal_s8(s, vget_low_s8(c1), vget_low_s8(a1));
            s = vmlal_high_s8(s, c1, a1);
            s = vmlal_s8(s, vget_low_s8(c2), vget_low_s8(a2));
            s = vmlal_high_s8(s, c2, a2);
            s = vmlal_s8(s, vget_low_s8(c3), vget_low_s8(a3));
            s = vmlal_high_s8(s, c3, a3);
            acc16[r] = s;
          });
        });
      }
      static_for<Rows>([&](auto r) BITNET_INLINE { acc32[r] = vpadalq_s16(acc32[r], acc16[r]); });
    }
    for (int r = 0; r < Rows; ++r) out[r] = vaddvq_s32(acc32[r]);
  }

  template <int Block, int Rows, int Tokens>
  static void gemm_tile(const std::uint8_t* const* rows, const std::int8_t* const* qs, std::int64_t nchunks,
                        std::int32_t* out) noexcept {
    std::int32_t tmp[Rows];
    for (int t = 0; t < Tokens; ++t) {
      dot_rows<Block, Rows, 1>(rows, qs[t], nchunks, tmp);
      for (int r = 0; r < Rows; ++r) out[r * Tokens + t] = tmp[r];
    }
  }
};

template <> struct t2_impl<arch::neon64_dotprod> {
  template <int Block, int Rows, int Unroll>
  BITNET_TARGET_DOTPROD static void dot_rows(const std::uint8_t* const* rows, const std::int8_t* q,
                                             std::int64_t nchunks, std::int32_t* out) noexcept {
    constexpr int CB = Block / 4;
    constexpr int Q = CB / 16;
    const uint8x16_t m3 = vdupq_n_u8(3);
    int32x4_t acc[Rows];
    static_for_dotprod<Rows>([&](auto r) BITNET_INLINE_DOTPROD { acc[r] = vdupq_n_s32(0); });
    for (std::int64_t c = 0; c < nchunks; ++c) {
      static_for_dotprod<Q>([&](auto h) BITNET_INLINE_DOTPROD {
        const std::int8_t* qa = q + c * Block + 16 * h;
        const int8x16_t a0 = vld1q_s8(qa), a1 = vld1q_s8(qa + CB), a2 = vld1q_s8(qa + 2 * CB), a3 = vld1q_s8(qa + 3 * CB);
        static_for_dotprod<Rows>([&](auto r) BITNET_INLINE_DOTPROD {
          const uint8x16_t w = vld1q_u8(rows[r] + c * CB + 16 * h);
          acc[r] = vdotq_s32(acc[r], vreinterpretq_s8_u8(vandq_u8(w, m3)), a0);
          acc[r] = vdotq_s32(acc[r], vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w, 2), m3)), a1);
          acc[r] = vdotq_s32(acc[r], vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w, 4), m3)), a2);
          acc[r] = vdotq_s32(acc[r], vreinterpretq_s8_u8(vshrq_n_u8(w, 6)), a3);
        });
      });
    }
    for (int r = 0; r < Rows; ++r) out[r] = vaddvq_s32(acc[r]);
  }

  template <int Block, int Rows, int Tokens>
  BITNET_TARGET_DOTPROD static void gemm_tile(const std::uint8_t* const* rows, const std::int8_t* const* qs,
                                              std::int64_t nchunks, std::int32_t* out) noexcept {
    constexpr int CB = Block / 4;
    constexpr int Q = CB / 16;
    const uint8x16_t m3 = vdupq_n_u8(3);
    int32x4_t acc[Rows * Tokens];
    static_for_dotprod<Rows * Tokens>([&](auto i) BITNET_INLINE_DOTPROD { acc[i] = vdupq_n_s32(0); });
    for (std::int64_t c = 0; c < nchunks; ++c) {
      static_for_dotprod<Q>([&](auto h) BITNET_INLINE_DOTPROD {
        static_for_dotprod<Rows>([&](auto r) BITNET_INLINE_DOTPROD {
          const uint8x16_t w = vld1q_u8(rows[r] + c * CB + 16 * h);
          const int8x16_t c0 = vreinterpretq_s8_u8(vandq_u8(w, m3));
          const int8x16_t c1 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w, 2), m3));
          const int8x16_t c2 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(w, 4), m3));
          const int8x16_t c3 = vreinterpretq_s8_u8(vshrq_n_u8(w, 6));
          static_for_dotprod<Tokens>([&](auto t) BITNET_INLINE_DOTPROD {
            const std::int8_t* qa = qs[t] + c * Block + 16 * h;
            int32x4_t s = acc[r * Tokens + t];
            s = vdotq_s32(s, c0, vld1q_s8(qa));
            s = vdotq_s32(s, c1, vld1q_s8(qa + CB));
            s = vdotq_s32(s, c2, vld1q_s8(qa + 2 * CB));
            s = vdotq_s32(s, c3, vld1q_s8(qa + 3 * CB));
            acc[r * Tokens + t] = s;
          });
        });
      });
    }
    for (int i = 0; i < Rows * Tokens; ++i) out[i] = vaddvq_s32(acc[i]);
  }
};

}  // namespace bitnet::detail

#endif  // BITNET_ARM64
