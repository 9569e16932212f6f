// bitnet/detail/lut_avx512.hpp - AVX-512BW bodies of the LUT kernels (contract:
// lut_scalar.hpp). Same scheme as lut_avx2.hpp on 64-byte vectors: tables broadcast to
// the four 128-bit lanes, vpshufb per plane, vpunpck{l,h}bw into int16. The G = 3 sign
// is applied with byte-masked subtracts from all-ones (~e) under the sign byte's mask
// register. vpermt2w restores row order before widening to int32. Tables are built by
// the AVX2 builder (same format). avx512vnni adds nothing to byte shuffles: its LUT
// bodies are the AVX-512BW ones.
#pragma once

#include "../arch.hpp"
#if BITNET_X86

#include <immintrin.h>  // AVX-512 intrinsics
#include <cstdint>      // fixed-width integers
#include <cstring>      // std::memcpy: activation dwords

#include "lut_avx2.hpp"
#include "lut_scalar.hpp"
#include "static_for.hpp"

namespace bitnet::detail {

BITNET_DEFINE_STATIC_FOR(static_for_lut_avx512, BITNET_TARGET_AVX512BW)

// vpermt2w indices: natural rows 0..31 and 32..63 of a 64-row vector from the
// unpacklo (a0: rows 16l + 0..7 in lane l) and unpackhi (a1: rows 16l + 8..15) results.
struct lut512_perm {
  alignas(64) std::int16_t lo[32], hi[32];
};
inline constexpr lut512_perm kLut512Perm = [] {
  lut512_perm p{};
  for (int r = 0; r < 64; ++r) {
    const int lane = r / 16, k = r % 16;
    const auto src = static_cast<std::int16_t>((k < 8 ? 0 : 32) + 8 * lane + k % 8);
    (r < 32 ? p.lo[r] : p.hi[r - 32]) = src;
  }
  return p;
}();

template <> struct lut_impl<arch::avx512bw> {
  // Masked forms with all lanes set: GCC 12's unmasked AVX-512 intrinsics pass an
  // "undefined" source that trips -Wmaybe-uninitialized in its own headers.
  static constexpr __mmask16 kAll16 = 0xFFFF;
  [[gnu::always_inline]] BITNET_TARGET_AVX512BW static __m512i cvt_lo(__m512i v) noexcept {
    return _mm512_maskz_cvtepi16_epi32(kAll16, _mm512_maskz_extracti64x4_epi64(0xF, v, 0));
  }
  [[gnu::always_inline]] BITNET_TARGET_AVX512BW static __m512i cvt_hi(__m512i v) noexcept {
    return _mm512_maskz_cvtepi16_epi32(kAll16, _mm512_maskz_extracti64x4_epi64(0xF, v, 1));
  }

  template <int G>
  static void build_tables(const std::int8_t* q, std::int64_t k0, std::int64_t kvalid, std::int64_t ngroups,
                           std::uint8_t* tbl) noexcept {
    lut_impl<arch::avx2>::build_tables<G>(q, k0, kvalid, ngroups, tbl);
  }

  template <int G, int RT, int U, int T>
  BITNET_TARGET_AVX512BW static void tile_block(const std::uint8_t* w, std::int64_t noct,
                                                const std::uint8_t* const* tbl, std::int32_t* const* part,
                                                bool first) noexcept {
    constexpr int NR = RT / 64;
    constexpr int OB = (G == 2 ? 4 : 5) * RT;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i ones = _mm512_set1_epi8(-1);
    __m512i acc[T * NR * 2];
    static_for_lut_avx512<T * NR * 2>([&](auto i) BITNET_INLINE_AVX512BW { acc[i] = _mm512_setzero_si512(); });

    auto lookup = [&](__m512i tl, __m512i th, __m512i idx, __mmask64 neg, __m512i& a0, __m512i& a1)
                      BITNET_INLINE_AVX512BW {
      __m512i l = _mm512_shuffle_epi8(tl, idx), h = _mm512_shuffle_epi8(th, idx);
      if constexpr (G == 3) {
        l = _mm512_mask_sub_epi8(l, neg, ones, l);  // ~l where the sign is set
        h = _mm512_mask_sub_epi8(h, neg, ones, h);
      }
      a0 = _mm512_add_epi16(a0, _mm512_unpacklo_epi8(l, h));
      a1 = _mm512_add_epi16(a1, _mm512_unpackhi_epi8(l, h));
    };
    auto bcast = [&](const std::uint8_t* p) BITNET_INLINE_AVX512BW {
      return _mm512_maskz_broadcast_i32x4(kAll16, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    };
    auto octet = [&](std::int64_t o) BITNET_INLINE_AVX512BW {
      const std::uint8_t* wo = w + o * OB;
      for (int l = 0; l < OB; l += 64) __builtin_prefetch(wo + kLutPrefetch + l, 0, 3);
      __m512i s[NR];
      static_for_lut_avx512<NR>([&](auto v) BITNET_INLINE_AVX512BW {
        s[v] = G == 3 ? _mm512_loadu_si512(wo + 4 * RT + 64 * v) : _mm512_setzero_si512();
      });
      static_for_lut_avx512<4>([&](auto p) BITNET_INLINE_AVX512BW {
        __m512i i0[NR], i1[NR];
        __mmask64 n0[NR], n1[NR];
        static_for_lut_avx512<NR>([&](auto v) BITNET_INLINE_AVX512BW {
          const __m512i x = _mm512_loadu_si512(wo + p * RT + 64 * v);
          i0[v] = _mm512_and_si512(x, m4);
          i1[v] = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
          if constexpr (G == 3) {
            n0[v] = _mm512_movepi8_mask(s[v]);
            s[v] = _mm512_add_epi8(s[v], s[v]);
            n1[v] = _mm512_movepi8_mask(s[v]);
            s[v] = _mm512_add_epi8(s[v], s[v]);
          } else {
            n0[v] = n1[v] = 0;
          }
        });
        static_for_lut_avx512<T>([&](auto t) BITNET_INLINE_AVX512BW {
          const std::uint8_t* tb = tbl[t] + (o * 8 + 2 * p) * 32;
          const __m512i tl0 = bcast(tb), th0 = bcast(tb + 16), tl1 = bcast(tb + 32), th1 = bcast(tb + 48);
          static_for_lut_avx512<NR>([&](auto v) BITNET_INLINE_AVX512BW {
            lookup(tl0, th0, i0[v], n0[v], acc[(t * NR + v) * 2], acc[(t * NR + v) * 2 + 1]);
            lookup(tl1, th1, i1[v], n1[v], acc[(t * NR + v) * 2], acc[(t * NR + v) * 2 + 1]);
          });
        });
      });
    };
    std::int64_t o = 0;
    for (; o + U <= noct; o += U) static_for_lut_avx512<U>([&](auto u) BITNET_INLINE_AVX512BW { octet(o + u); });
    for (; o < noct; ++o) octet(o);

    const __m512i plo = _mm512_load_si512(kLut512Perm.lo), phi = _mm512_load_si512(kLut512Perm.hi);
    static_for_lut_avx512<T>([&](auto t) BITNET_INLINE_AVX512BW {
      static_for_lut_avx512<NR>([&](auto v) BITNET_INLINE_AVX512BW {
        const __m512i a0 = acc[(t * NR + v) * 2], a1 = acc[(t * NR + v) * 2 + 1];
        const __m512i rlo = _mm512_permutex2var_epi16(a0, plo, a1), rhi = _mm512_permutex2var_epi16(a0, phi, a1);
        __m512i r[4] = {cvt_lo(rlo), cvt_hi(rlo), cvt_lo(rhi), cvt_hi(rhi)};
        static_for_lut_avx512<4>([&](auto k) BITNET_INLINE_AVX512BW {
          std::int32_t* d = part[t] + 64 * v + 16 * k;
          const __m512i x = first ? r[k] : _mm512_add_epi32(r[k], _mm512_loadu_si512(d));
          _mm512_storeu_si512(d, x);
        });
      });
    });
  }

  template <int NT>
  static void lutv_gather(const std::int8_t* const* qrows, std::int64_t k0, std::int64_t kvalid, int nk,
                          std::int16_t* act) noexcept {
    lut_impl<arch::avx2>::lutv_gather<NT>(qrows, k0, kvalid, nk, act);
  }

  template <int NT>
  BITNET_TARGET_AVX512BW static void lutv_build(const std::int16_t* act, int tb, std::int16_t* tbl) noexcept {
    if constexpr (NT % 32 != 0) {
      lut_impl<arch::avx2>::lutv_build<NT>(act, tb, tbl);
    } else {
      constexpr int NV = NT / 32;
      const __m512i z = _mm512_setzero_si512();
      for (int j = 0; j < tb; ++j) {
        static_for_lut_avx512<NV>([&](auto v) BITNET_INLINE_AVX512BW {
          const std::int16_t* a = act + 3 * j * NT + 32 * v;
          const __m512i a0 = _mm512_loadu_si512(a), a1 = _mm512_loadu_si512(a + NT), a2 = _mm512_loadu_si512(a + 2 * NT);
          const __m512i n1 = _mm512_sub_epi16(z, a1), n2 = _mm512_sub_epi16(z, a2);
          const __m512i s[9] = {_mm512_add_epi16(n1, n2), n1, _mm512_add_epi16(n1, a2), n2, z, a2,
                                _mm512_add_epi16(a1, n2), a1, _mm512_add_epi16(a1, a2)};
          std::int16_t* e = tbl + j * 27 * NT + 32 * v;
          static_for_lut_avx512<9>([&](auto k) BITNET_INLINE_AVX512BW {
            _mm512_storeu_si512(e + k * NT, _mm512_sub_epi16(s[k], a0));
            _mm512_storeu_si512(e + (9 + k) * NT, s[k]);
            _mm512_storeu_si512(e + (18 + k) * NT, _mm512_add_epi16(s[k], a0));
          });
        });
      }
    }
  }

  template <int NT, int R, int TB>
  BITNET_TARGET_AVX512BW static void lutv_rows(const std::uint8_t* idx, const std::int16_t* tbl, std::int32_t* part,
                                               bool first) noexcept {
    if constexpr (NT % 32 != 0) {
      lut_impl<arch::avx2>::lutv_rows<NT, R, TB>(idx, tbl, part, first);
    } else {
      static_assert(TB % 8 == 0);
      constexpr int NV = NT / 32;
      __m512i acc[R * NV];
      static_for_lut_avx512<R * NV>([&](auto i) BITNET_INLINE_AVX512BW { acc[i] = _mm512_setzero_si512(); });
      for (int j0 = 0; j0 < TB; j0 += 8) {
        const std::int16_t* tj = tbl + j0 * 27 * NT;
        static_for_lut_avx512<8>([&](auto j) BITNET_INLINE_AVX512BW {
          static_for_lut_avx512<R>([&](auto r) BITNET_INLINE_AVX512BW {
            const std::int16_t* e = tj + j * 27 * NT + static_cast<std::size_t>(idx[32 * r + j0 + j]) * NT;
            static_for_lut_avx512<NV>([&](auto v) BITNET_INLINE_AVX512BW {
              acc[r * NV + v] = _mm512_add_epi16(acc[r * NV + v], _mm512_load_si512(e + 32 * v));
            });
          });
        });
      }
      static_for_lut_avx512<R * NV>([&](auto i) BITNET_INLINE_AVX512BW {
        std::int32_t* p = part + (i / NV) * NT + 32 * (i % NV);
        __m512i lo = cvt_lo(acc[i]);
        __m512i hi = cvt_hi(acc[i]);
        if (!first) {
          lo = _mm512_add_epi32(lo, _mm512_loadu_si512(p));
          hi = _mm512_add_epi32(hi, _mm512_loadu_si512(p + 16));
        }
        _mm512_storeu_si512(p, lo);
        _mm512_storeu_si512(p + 16, hi);
      });
    }
  }
};

BITNET_DEFINE_STATIC_FOR(static_for_lutd, BITNET_TARGET_AVX512VBMI)
BITNET_DEFINE_STATIC_FOR(static_for_lutd_vnni, BITNET_TARGET_AVX512VNNI)

// lutd: byte k of a 64-byte index vector is row k / 4, group k % 4 of a quad; its table is the
// 16-byte quarter k % 4 of the quad's 64-byte table, so vpermb takes index | 16 * (k % 4).
struct lutd_consts {
  alignas(64) std::uint8_t sel[64];
  alignas(64) std::int64_t lo[8], hi[8];  // vpermt2q: the low / high byte quarters of 4 groups
};
inline constexpr lutd_consts kLutdConsts = [] {
  lutd_consts c{};
  for (int k = 0; k < 64; ++k) c.sel[k] = static_cast<std::uint8_t>(16 * (k % 4));
  for (int i = 0; i < 8; ++i) {
    c.lo[i] = 4 * (i / 2) + i % 2;
    c.hi[i] = 4 * (i / 2) + i % 2 + 2;
  }
  return c;
}();

// avx512vnni adds the dot family. The GEMV needs VNNI + VBMI (VBMI is checked separately:
// cpu_features::avx512vbmi). Per quad of groups, two vpermb look up the low and high bytes of 64 entries (16 rows x 4
// groups) and two vpdpbusd multiply them by the groups' signs (+1 / -1) and add the four groups
// of each row into its int32 lane. No int16 stage, no widening, rows stay in order.
// The GEMM needs VNNI only: vpshufb decodes each nibble index to its three codes (sign applied
// by a masked 2 - c), and vpdpbusd multiplies 16 rows x 4 codes by one broadcast dword of
// activations per token, rows again in lanes.
template <> struct lut_impl<arch::avx512vnni> : lut_impl<arch::avx512bw> {
  template <int RT>
  BITNET_TARGET_AVX512VNNI static void lutd_decode(const std::uint8_t* w, std::int64_t nblk,
                                                   std::uint8_t* codes) noexcept {
    const __m512i m4 = _mm512_set1_epi8(0x0F), two = _mm512_set1_epi8(2);
    __m512i tp[3];
    static_for_lutd_vnni<3>([&](auto p) BITNET_INLINE_AVX512VNNI {
      const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kLutdCodes.c[p]));
      tp[p] = _mm512_maskz_broadcast_i32x4(0xFFFF, t);
    });
    for (std::int64_t s = 0; s < nblk * (RT / 16); ++s) {
      const std::uint8_t* sub = w + s * kLutdSubtileBytes;
      std::uint8_t* out = codes + s * 1536;
      const __m512i sv = _mm512_loadu_si512(sub + 256);
      static_for_lutd_vnni<4>([&](auto h) BITNET_INLINE_AVX512VNNI {
        const __m512i x = _mm512_loadu_si512(sub + 64 * h);
        const __m512i idx[2] = {_mm512_and_si512(x, m4), _mm512_and_si512(_mm512_srli_epi16(x, 4), m4)};
        static_for_lutd_vnni<2>([&](auto n) BITNET_INLINE_AVX512VNNI {
          constexpr int q = 2 * h + n;
          const __mmask64 neg = _mm512_test_epi8_mask(sv, _mm512_set1_epi8(static_cast<char>(1 << q)));
          static_for_lutd_vnni<3>([&](auto p) BITNET_INLINE_AVX512VNNI {
            const __m512i c = _mm512_shuffle_epi8(tp[p], idx[n]);
            _mm512_store_si512(out + (3 * q + p) * 64, _mm512_mask_sub_epi8(c, neg, two, c));
          });
        });
      });
    }
  }

  template <int RT, int T>
  BITNET_TARGET_AVX512VNNI static void lutd_mad(const std::uint8_t* codes, std::int64_t nblk,
                                                const std::int8_t* const* act, std::int32_t* acc) noexcept {
    constexpr int NU = RT / 16;
    __m512i a[NU * T];
    static_for_lutd_vnni<NU * T>([&](auto v) BITNET_INLINE_AVX512VNNI { a[v] = _mm512_setzero_si512(); });
    for (std::int64_t b = 0; b < nblk; ++b) {
      const std::uint8_t* cb = codes + b * NU * 1536;
      for (int d = 0; d < 24; ++d) {
        __m512i x[T];
        static_for_lutd_vnni<T>([&](auto t) BITNET_INLINE_AVX512VNNI {
          std::int32_t v;
          std::memcpy(&v, act[t] + 96 * b + 4 * d, sizeof v);
          x[t] = _mm512_set1_epi32(v);
        });
        static_for_lutd_vnni<NU>([&](auto u) BITNET_INLINE_AVX512VNNI {
          const __m512i c = _mm512_load_si512(cb + u * 1536 + 64 * d);
          static_for_lutd_vnni<T>([&](auto t) BITNET_INLINE_AVX512VNNI {
            a[u * T + t] = _mm512_dpbusd_epi32(a[u * T + t], c, x[t]);
          });
        });
      }
    }
    static_for_lutd_vnni<NU * T>([&](auto v) BITNET_INLINE_AVX512VNNI {
      _mm512_storeu_si512(acc + (v % T) * RT + 16 * (v / T), a[v]);
    });
  }

  BITNET_TARGET_AVX512VBMI static void lutd_arrange(const std::uint8_t* raw, std::int64_t nquads,
                                                    std::uint8_t* tbl) noexcept {
    const __m512i lo = _mm512_load_si512(kLutdConsts.lo), hi = _mm512_load_si512(kLutdConsts.hi);
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    for (std::int64_t q = 0; q < nquads; ++q) {
      const __m512i a = _mm512_loadu_si512(raw + 128 * q), b = _mm512_loadu_si512(raw + 128 * q + 64);
      _mm512_store_si512(tbl + 128 * q, _mm512_permutex2var_epi64(a, lo, b));
      _mm512_store_si512(tbl + 128 * q + 64, _mm512_xor_si512(_mm512_permutex2var_epi64(a, hi, b), bias));
    }
  }

  template <int RT, int S>
  BITNET_TARGET_AVX512VBMI static void lutd_tile(const std::uint8_t* const* w, std::int64_t nblk,
                                                 const std::uint8_t* tbl, std::int32_t* const* part,
                                                 bool first) noexcept {
    constexpr int NU = RT / 16, NV = S * NU;
    const __m512i m4 = _mm512_set1_epi8(0x0F), sel = _mm512_load_si512(kLutdConsts.sel);
    const __m512i one = _mm512_set1_epi8(1), minus_one = _mm512_set1_epi8(-1);
    __m512i al[NV], ah[NV];
    static_for_lutd<NV>([&](auto v) BITNET_INLINE_AVX512VBMI { al[v] = ah[v] = _mm512_setzero_si512(); });
    auto quad = [&](__m512i idx, __m512i sv, __m512i bit, __m512i tl, __m512i th, __m512i& a_lo, __m512i& a_hi)
                    BITNET_INLINE_AVX512VBMI {
      const __m512i sgn = _mm512_mask_blend_epi8(_mm512_test_epi8_mask(sv, bit), one, minus_one);
      // maskz with all lanes: the unmasked form trips GCC 12's -Wmaybe-uninitialized in its header
      a_lo = _mm512_dpbusd_epi32(a_lo, _mm512_maskz_permutexvar_epi8(~__mmask64{0}, idx, tl), sgn);
      a_hi = _mm512_dpbusd_epi32(a_hi, _mm512_maskz_permutexvar_epi8(~__mmask64{0}, idx, th), sgn);
    };
    for (std::int64_t b = 0; b < nblk; ++b) {
      const std::uint8_t* tb = tbl + b * 1024;
      static_for_lutd<S>([&](auto k) BITNET_INLINE_AVX512VBMI {
        const std::uint8_t* wb = w[k] + b * NU * kLutdSubtileBytes;
        for (int l = 0; l < NU * kLutdSubtileBytes; l += 64) __builtin_prefetch(wb + kLutPrefetch + l, 0, 3);
      });
      static_for_lutd<4>([&](auto p) BITNET_INLINE_AVX512VBMI {
        const __m512i tl0 = _mm512_load_si512(tb + 256 * p), th0 = _mm512_load_si512(tb + 256 * p + 64);
        const __m512i tl1 = _mm512_load_si512(tb + 256 * p + 128), th1 = _mm512_load_si512(tb + 256 * p + 192);
        const __m512i b0 = _mm512_set1_epi8(static_cast<char>(1 << (2 * p)));
        const __m512i b1 = _mm512_set1_epi8(static_cast<char>(1 << (2 * p + 1)));
        static_for_lutd<NV>([&](auto v) BITNET_INLINE_AVX512VBMI {
          const std::uint8_t* ws = w[v / NU] + (b * NU + v % NU) * kLutdSubtileBytes;
          const __m512i x = _mm512_loadu_si512(ws + 64 * p), sv = _mm512_loadu_si512(ws + 256);
          // (a & b) | c == ternlog 0xEA: the nibble, plus the quarter of the table it reads
          const __m512i i0 = _mm512_ternarylogic_epi32(x, m4, sel, 0xEA);
          const __m512i i1 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(x, 4), m4, sel, 0xEA);
          quad(i0, sv, b0, tl0, th0, al[v], ah[v]);
          quad(i1, sv, b1, tl1, th1, al[v], ah[v]);
        });
      });
    }
    static_for_lutd<NV>([&](auto v) BITNET_INLINE_AVX512VBMI {
      const __m512i r = _mm512_add_epi32(_mm512_maskz_slli_epi32(0xFFFF, ah[v], 8), al[v]);
      std::int32_t* d = part[v / NU] + 16 * (v % NU);
      _mm512_storeu_si512(d, first ? r : _mm512_add_epi32(r, _mm512_loadu_si512(d)));
    });
  }
};

}  // namespace bitnet::detail

#endif  // BITNET_X86
