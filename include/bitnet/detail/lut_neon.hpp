// bitnet/detail/lut_neon.hpp - AArch64 NEON bodies of the LUT kernels (contract:
// lut_scalar.hpp). Per 16 index bytes (16 rows x 2 groups): tbl (vqtbl1q_u8) looks the
// indices up in the group's low-byte and high-byte tables, zip1/zip2 interleave the two
// planes into int16 in row order, and for G = 3 an arithmetic shift of the sign byte
// (one bit per group) gives the XOR mask for the one's complement. The vector family
// adds int16x8 table rows. The dot-product arch has nothing to add to byte lookups:
// neon64dp uses these bodies. Partial sums are loaded and stored as bytes because
// they may live in float storage.
#pragma once

#include "../arch.hpp"
#if BITNET_ARM64

#include <arm_neon.h>  // NEON intrinsics
#include <cstdint>     // fixed-width integers

#include "lut_scalar.hpp"
#include "static_for.hpp"

namespace bitnet::detail {

template <> struct lut_impl<arch::neon64> {
  template <int G>
  static void build_tables(const std::int8_t* q, std::int64_t k0, std::int64_t kvalid, std::int64_t ngroups,
                           std::uint8_t* tbl) noexcept {
    lut_build_tables_scalar<G>(q, k0, kvalid, ngroups, tbl);
  }

  static int32x4_t load_part(const std::int32_t* p) noexcept {
    return vreinterpretq_s32_u8(vld1q_u8(reinterpret_cast<const std::uint8_t*>(p)));
  }
  static void store_part(std::int32_t* p, int32x4_t v) noexcept {
    vst1q_u8(reinterpret_cast<std::uint8_t*>(p), vreinterpretq_u8_s32(v));
  }

  template <int G, int RT, int U, int T>
  static void tile_block(const std::uint8_t* w, std::int64_t noct, const std::uint8_t* const* tbl,
                         std::int32_t* const* part, bool first) noexcept {
    constexpr int NR = RT / 16;
    constexpr int OB = (G == 2 ? 4 : 5) * RT;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    int16x8_t acc[T * NR * 2];
    static_for<T * NR * 2>([&](auto i) BITNET_INLINE { acc[i] = vdupq_n_s16(0); });

    auto lookup = [&](uint8x16_t tl, uint8x16_t th, uint8x16_t idx, uint8x16_t neg, int16x8_t& a0,
                      int16x8_t& a1) BITNET_INLINE {
      uint8x16_t l = vqtbl1q_u8(tl, idx), h = vqtbl1q_u8(th, idx);
      if constexpr (G == 3) {
        l = veorq_u8(l, neg);
        h = veorq_u8(h, neg);
      }
      a0 = vaddq_s16(a0, vreinterpretq_s16_u8(vzip1q_u8(l, h)));
      a1 = vaddq_s16(a1, vreinterpretq_s16_u8(vzip2q_u8(l, h)));
    };
    auto octet = [&](std::int64_t o) BITNET_INLINE {
      const std::uint8_t* wo = w + o * OB;
      uint8x16_t s[NR];
      static_for<NR>([&](auto v) BITNET_INLINE { s[v] = G == 3 ? vld1q_u8(wo + 4 * RT + 16 * v) : vdupq_n_u8(0); });
      static_for<4>([&](auto p) BITNET_INLINE {
        uint8x16_t i0[NR], i1[NR], n0[NR], n1[NR];
        static_for<NR>([&](auto v) BITNET_INLINE {
          const uint8x16_t x = vld1q_u8(wo + p * RT + 16 * v);
          i0[v] = vandq_u8(x, m4);
          i1[v] = vshrq_n_u8(x, 4);
          if constexpr (G == 3) {
            n0[v] = vreinterpretq_u8_s8(vshrq_n_s8(vreinterpretq_s8_u8(s[v]), 7));
            s[v] = vshlq_n_u8(s[v], 1);
            n1[v] = vreinterpretq_u8_s8(vshrq_n_s8(vreinterpretq_s8_u8(s[v]), 7));
            s[v] = vshlq_n_u8(s[v], 1);
          } else {
            n0[v] = n1[v] = vdupq_n_u8(0);
          }
        });
        static_for<T>([&](auto t) BITNET_INLINE {
          const std::uint8_t* tb = tbl[t] + (o * 8 + 2 * p) * 32;
          const uint8x16_t tl0 = vld1q_u8(tb), th0 = vld1q_u8(tb + 16), tl1 = vld1q_u8(tb + 32), th1 = vld1q_u8(tb + 48);
          static_for<NR>([&](auto v) BITNET_INLINE {
            lookup(tl0, th0, i0[v], n0[v], acc[(t * NR + v) * 2], acc[(t * NR + v) * 2 + 1]);
            lookup(tl1, th1, i1[v], n1[v], acc[(t * NR + v) * 2], acc[(t * NR + v) * 2 + 1]);
          });
        });
      });
    };
    std::int64_t o = 0;
    for (; o + U <= noct; o += U) static_for<U>([&](auto u) BITNET_INLINE { octet(o + u); });
    for (; o < noct; ++o) octet(o);

    static_for<T>([&](auto t) BITNET_INLINE {
      static_for<NR>([&](auto v) BITNET_INLINE {
        const int16x8_t a0 = acc[(t * NR + v) * 2], a1 = acc[(t * NR + v) * 2 + 1];  // rows 0-7, 8-15
        const int32x4_t r[4] = {vmovl_s16(vget_low_s16(a0)), vmovl_high_s16(a0), vmovl_s16(vget_low_s16(a1)),
                                vmovl_high_s16(a1)};
        static_for<4>([&](auto k) BITNET_INLINE {
          std::int32_t* d = part[t] + 16 * v + 4 * k;
          store_part(d, first ? r[k] : vaddq_s32(r[k], load_part(d)));
        });
      });
    });
  }

  template <int NT>
  static void lutv_gather(const std::int8_t* const* qrows, std::int64_t k0, std::int64_t kvalid, int nk,
                          std::int16_t* act) noexcept {
    lutv_gather_scalar<NT>(qrows, k0, kvalid, nk, act);
  }

  template <int NT> static void lutv_build(const std::int16_t* act, int tb, std::int16_t* tbl) noexcept {
    static_assert(NT % 8 == 0);
    constexpr int NV = NT / 8;
    const int16x8_t z = vdupq_n_s16(0);
    for (int j = 0; j < tb; ++j) {
      static_for<NV>([&](auto v) BITNET_INLINE {
        const std::int16_t* a = act + 3 * j * NT + 8 * v;
        const int16x8_t a0 = vld1q_s16(a), a1 = vld1q_s16(a + NT), a2 = vld1q_s16(a + 2 * NT);
        const int16x8_t n1 = vnegq_s16(a1), n2 = vnegq_s16(a2);
        const int16x8_t s[9] = {vaddq_s16(n1, n2), n1, vaddq_s16(n1, a2), n2, z, a2, vaddq_s16(a1, n2), a1, vaddq_s16(a1, a2)};
        std::int16_t* e = tbl + j * 27 * NT + 8 * v;
        static_for<9>([&](auto k) BITNET_INLINE {
          vst1q_s16(e + k * NT, vsubq_s16(s[k], a0));
          vst1q_s16(e + (9 + k) * NT, s[k]);
          vst1q_s16(e + (18 + k) * NT, vaddq_s16(s[k], a0));
        });
      });
    }
  }

  template <int NT, int R, int TB>
  static void lutv_rows(const std::uint8_t* idx, const std::int16_t* tbl, std::int32_t* part, bool first) noexcept {
    static_assert(NT % 8 == 0 && TB % 8 == 0);
    constexpr int NV = NT / 8;
    int16x8_t acc[R * NV];
    static_for<R * NV>([&](auto i) BITNET_INLINE { acc[i] = vdupq_n_s16(0); });
    for (int j0 = 0; j0 < TB; j0 += 8) {
      const std::int16_t* tj = tbl + j0 * 27 * NT;
      static_for<8>([&](auto j) BITNET_INLINE {
        static_for<R>([&](auto r) BITNET_INLINE {
          const std::int16_t* e = tj + (j * 27 + idx[32 * r + j0 + j]) * NT;
          static_for<NV>([&](auto v) BITNET_INLINE { acc[r * NV + v] = vaddq_s16(acc[r * NV + v], vld1q_s16(e + 8 * v)); });
        });
      });
    }
    static_for<R * NV>([&](auto i) BITNET_INLINE {
      std::int32_t* p = part + (i / NV) * NT + 8 * (i % NV);
      int32x4_t lo = vmovl_s16(vget_low_s16(acc[i])), hi = vmovl_high_s16(acc[i]);
      if (!first) {
        lo = vaddq_s32(lo, vld1q_s32(p));
        hi = vaddq_s32(hi, vld1q_s32(p + 4));
      }
      vst1q_s32(p, lo);
      vst1q_s32(p + 4, hi);
    });
  }
};

template <> struct lut_impl<arch::neon64_dotprod> : lut_impl<arch::neon64> {};

}  // namespace bitnet::detail

#endif  // BITNET_ARM64
