// bitnet/detail/lut_avx2.hpp - AVX2 bodies of the LUT kernels (contract: lut_scalar.hpp).
//
// Shuffle family, per 32 index bytes (32 rows x 2 groups): a mask and a 16-bit shift give
// the two nibble vectors; per group, vpshufb looks the 32 indices up in the group's low-
// byte and high-byte tables (each broadcast to both 128-bit lanes); for G = 3 both planes
// are XORed with the sign mask (vpcmpgtb of the sign byte, shifted one bit per group);
// vpunpck{l,h}bw turns the two planes into exact int16 sums. Row order after the unpack
// is rows 0-7 | 16-23 and 8-15 | 24-31 per 32-row vector; the int32 widening at the end
// of a K block puts them back in order.
// Table builder: 16 groups at a time in int16 lanes, then an in-lane 16x16 byte
// transpose that emits each group's [low 16 | high 16] table as one 32-byte row.
// Vector family: one vpaddw per (row, group, 16 tokens), straight from the table.
#pragma once

#include "../arch.hpp"
#if BITNET_X86

#include <immintrin.h>  // AVX2 intrinsics
#include <cstdint>      // fixed-width integers

#include "lut_scalar.hpp"
#include "static_for.hpp"

namespace bitnet::detail {

BITNET_DEFINE_STATIC_FOR(static_for_lut_avx2, BITNET_TARGET_AVX2)

// pshufb controls that gather activation i of each of 16 groups of 3 from 48 bytes
// held in three 16-byte registers (byte j of control [i][R] picks 3j + i from register R).
struct lut3_gather {
  alignas(16) std::int8_t c[3][3][16];
};
inline constexpr lut3_gather kLut3Gather = [] {
  lut3_gather g{};
  for (int i = 0; i < 3; ++i)
    for (int R = 0; R < 3; ++R)
      for (int j = 0; j < 16; ++j) {
        const int s = 3 * j + i;
        g.c[i][R][j] = static_cast<std::int8_t>(s / 16 == R ? s % 16 : -128);
      }
  return g;
}();

template <> struct lut_impl<arch::avx2> {
  // In-lane 16x16 byte transpose of R[0..15] (each 128-bit lane separately): byte i of
  // lane l of out[j] = byte j of lane l of R[i].
  BITNET_TARGET_AVX2 static void transpose16(const __m256i* R, __m256i* out) noexcept {
    __m256i S1[16], S2[16], S3[16];
    static_for_lut_avx2<8>([&](auto i) BITNET_INLINE_AVX2 {
      S1[2 * i] = _mm256_unpacklo_epi8(R[2 * i], R[2 * i + 1]);      // columns 0..7, rows 2i, 2i+1
      S1[2 * i + 1] = _mm256_unpackhi_epi8(R[2 * i], R[2 * i + 1]);  // columns 8..15
    });
    // S2[(i2*2 + h)*2 + h2]: rows 4i2..4i2+3, columns 8h + 4h2 + 0..3
    static_for_lut_avx2<4>([&](auto i2) BITNET_INLINE_AVX2 {
      static_for_lut_avx2<2>([&](auto h) BITNET_INLINE_AVX2 {
        S2[(i2 * 2 + h) * 2] = _mm256_unpacklo_epi16(S1[2 * (2 * i2) + h], S1[2 * (2 * i2 + 1) + h]);
        S2[(i2 * 2 + h) * 2 + 1] = _mm256_unpackhi_epi16(S1[2 * (2 * i2) + h], S1[2 * (2 * i2 + 1) + h]);
      });
    });
    // S3[(i3*4 + c)*2 + h3] with c = 2h + h2: rows 8i3..8i3+7, columns 4c + 2h3 + 0..1
    static_for_lut_avx2<2>([&](auto i3) BITNET_INLINE_AVX2 {
      static_for_lut_avx2<4>([&](auto c) BITNET_INLINE_AVX2 {
        const __m256i a = S2[((2 * i3) * 2 + c / 2) * 2 + c % 2], b = S2[((2 * i3 + 1) * 2 + c / 2) * 2 + c % 2];
        S3[(i3 * 4 + c) * 2] = _mm256_unpacklo_epi32(a, b);
        S3[(i3 * 4 + c) * 2 + 1] = _mm256_unpackhi_epi32(a, b);
      });
    });
    static_for_lut_avx2<8>([&](auto c3) BITNET_INLINE_AVX2 {  // c3 = 2c + h3: columns 2*c3, 2*c3 + 1
      out[2 * c3] = _mm256_unpacklo_epi64(S3[c3], S3[8 + c3]);
      out[2 * c3 + 1] = _mm256_unpackhi_epi64(S3[c3], S3[8 + c3]);
    });
  }

  // E[e] holds entry e of 16 groups (int16 lane j = group j); writes the 16 tables.
  template <int NE> BITNET_TARGET_AVX2 static void store_tables16(const __m256i* E, std::uint8_t* out) noexcept {
    const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10,
                                           12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    __m256i R[16], T[16];
    // Row e: [low bytes of groups 0..15 | high bytes of groups 0..15].
    static_for_lut_avx2<16>([&](auto e) BITNET_INLINE_AVX2 {
      if constexpr (decltype(e)::value < NE)
        R[e] = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(E[e], split), 0xD8);
      else
        R[e] = _mm256_setzero_si256();
    });
    transpose16(R, T);  // T[j] = [low table | high table] of group j
    static_for_lut_avx2<16>([&](auto j) BITNET_INLINE_AVX2 {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * j), T[j]);
    });
  }

  template <int G>
  BITNET_TARGET_AVX2 static void build_tables(const std::int8_t* q, std::int64_t k0, std::int64_t kvalid,
                                              std::int64_t ngroups, std::uint8_t* tbl) noexcept {
    std::int64_t j = 0;
    const __m256i z = _mm256_setzero_si256();
    for (; j + 16 <= ngroups && k0 + G * (j + 16) <= kvalid; j += 16) {
      const std::int8_t* a = q + k0 + G * j;
      __m256i E[16];
      if constexpr (G == 2) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
        const __m256i b0 = _mm256_srai_epi16(_mm256_slli_epi16(x, 8), 8), b1 = _mm256_srai_epi16(x, 8);
        const __m256i t = _mm256_add_epi16(b0, b1), d = _mm256_sub_epi16(b0, b1);
        E[0] = _mm256_sub_epi16(z, t);
        E[1] = _mm256_sub_epi16(z, b0);
        E[2] = _mm256_sub_epi16(z, d);
        E[3] = _mm256_sub_epi16(z, b1);
        E[4] = z;
        E[5] = b1;
        E[6] = d;
        E[7] = b0;
        E[8] = t;
        store_tables16<9>(E, tbl + 32 * j);
      } else {
        const __m128i x0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a));
        const __m128i x1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 16));
        const __m128i x2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 32));
        __m256i b[3];
        static_for_lut_avx2<3>([&](auto i) BITNET_INLINE_AVX2 {
          const __m128i* c = reinterpret_cast<const __m128i*>(kLut3Gather.c[i]);
          const __m128i v = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(x0, _mm_load_si128(c)),
                                                      _mm_shuffle_epi8(x1, _mm_load_si128(c + 1))),
                                         _mm_shuffle_epi8(x2, _mm_load_si128(c + 2)));
          b[i] = _mm256_cvtepi8_epi16(v);
        });
        const __m256i s12 = _mm256_add_epi16(b[1], b[2]), d12 = _mm256_sub_epi16(b[1], b[2]);
        E[0] = z;
        E[1] = b[2];
        E[2] = d12;
        E[3] = b[1];
        E[4] = s12;
        E[5] = _mm256_sub_epi16(b[0], s12);
        E[6] = _mm256_sub_epi16(b[0], b[1]);
        E[7] = _mm256_sub_epi16(b[0], d12);
        E[8] = _mm256_sub_epi16(b[0], b[2]);
        E[9] = b[0];
        E[10] = _mm256_add_epi16(b[0], b[2]);
        E[11] = _mm256_add_epi16(b[0], d12);
        E[12] = _mm256_add_epi16(b[0], b[1]);
        E[13] = _mm256_add_epi16(b[0], s12);
        store_tables16<14>(E, tbl + 32 * j);
      }
    }
    if (j < ngroups) lut_build_tables_scalar<G>(q, k0 + G * j, kvalid, ngroups - j, tbl + 32 * j);
  }

  template <int G, int RT, int U, int T>
  BITNET_TARGET_AVX2 static void tile_block(const std::uint8_t* w, std::int64_t noct, const std::uint8_t* const* tbl,
                                            std::int32_t* const* part, bool first) noexcept {
    constexpr int NR = RT / 32;
    constexpr int OB = (G == 2 ? 4 : 5) * RT;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i zero = _mm256_setzero_si256();
    __m256i acc[T * NR * 2];
    static_for_lut_avx2<T * NR * 2>([&](auto i) BITNET_INLINE_AVX2 { acc[i] = _mm256_setzero_si256(); });

    auto lookup = [&](__m256i tl, __m256i th, __m256i idx, __m256i neg, __m256i& a0, __m256i& a1) BITNET_INLINE_AVX2 {
      __m256i l = _mm256_shuffle_epi8(tl, idx), h = _mm256_shuffle_epi8(th, idx);
      if constexpr (G == 3) {
        l = _mm256_xor_si256(l, neg);
        h = _mm256_xor_si256(h, neg);
      }
      a0 = _mm256_add_epi16(a0, _mm256_unpacklo_epi8(l, h));
      a1 = _mm256_add_epi16(a1, _mm256_unpackhi_epi8(l, h));
    };
    auto octet = [&](std::int64_t o) BITNET_INLINE_AVX2 {
      const std::uint8_t* wo = w + o * OB;
      for (int l = 0; l < OB; l += 64) __builtin_prefetch(wo + kLutPrefetch + l, 0, 3);
      __m256i s[NR];
      static_for_lut_avx2<NR>([&](auto v) BITNET_INLINE_AVX2 {
        s[v] = G == 3 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wo + 4 * RT + 32 * v)) : zero;
      });
      static_for_lut_avx2<4>([&](auto p) BITNET_INLINE_AVX2 {
        __m256i i0[NR], i1[NR], n0[NR], n1[NR];
        static_for_lut_avx2<NR>([&](auto v) BITNET_INLINE_AVX2 {
          const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wo + p * RT + 32 * v));
          i0[v] = _mm256_and_si256(x, m4);
          i1[v] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
          if constexpr (G == 3) {
            n0[v] = _mm256_cmpgt_epi8(zero, s[v]);
            s[v] = _mm256_add_epi8(s[v], s[v]);
            n1[v] = _mm256_cmpgt_epi8(zero, s[v]);
            s[v] = _mm256_add_epi8(s[v], s[v]);
          } else {
            n0[v] = n1[v] = zero;
          }
        });
        static_for_lut_avx2<T>([&](auto t) BITNET_INLINE_AVX2 {
          const std::uint8_t* tb = tbl[t] + (o * 8 + 2 * p) * 32;
          const __m256i tl0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tb)));
          const __m256i th0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tb + 16)));
          const __m256i tl1 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tb + 32)));
          const __m256i th1 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tb + 48)));
          static_for_lut_avx2<NR>([&](auto v) BITNET_INLINE_AVX2 {
            lookup(tl0, th0, i0[v], n0[v], acc[(t * NR + v) * 2], acc[(t * NR + v) * 2 + 1]);
            lookup(tl1, th1, i1[v], n1[v], acc[(t * NR + v) * 2], acc[(t * NR + v) * 2 + 1]);
          });
        });
      });
    };
    std::int64_t o = 0;
    for (; o + U <= noct; o += U) static_for_lut_avx2<U>([&](auto u) BITNET_INLINE_AVX2 { octet(o + u); });
    for (; o < noct; ++o) octet(o);

    static_for_lut_avx2<T>([&](auto t) BITNET_INLINE_AVX2 {
      static_for_lut_avx2<NR>([&](auto v) BITNET_INLINE_AVX2 {
        const __m256i a0 = acc[(t * NR + v) * 2], a1 = acc[(t * NR + v) * 2 + 1];
        // a0: rows 0-7 | 16-23, a1: rows 8-15 | 24-31 of this 32-row vector.
        __m256i r[4] = {_mm256_cvtepi16_epi32(_mm256_castsi256_si128(a0)),
                        _mm256_cvtepi16_epi32(_mm256_castsi256_si128(a1)),
                        _mm256_cvtepi16_epi32(_mm256_extracti128_si256(a0, 1)),
                        _mm256_cvtepi16_epi32(_mm256_extracti128_si256(a1, 1))};
        static_for_lut_avx2<4>([&](auto k) BITNET_INLINE_AVX2 {
          __m256i* d = reinterpret_cast<__m256i*>(part[t] + 32 * v + 8 * k);
          const __m256i x = first ? r[k] : _mm256_add_epi32(r[k], _mm256_loadu_si256(d));
          _mm256_storeu_si256(d, x);
        });
      });
    });
  }

  // Activations k0 .. k0+nk-1 of NT tokens (qrows[t], nullptr = absent), token-minor
  // int16, zero at k >= kvalid. 16 tokens x 32 k per in-lane transpose (lane 1 = the
  // next 16 k), 16 k with lane 1 idle, then scalar for what is left.
  template <int NT>
  BITNET_TARGET_AVX2 static void lutv_gather(const std::int8_t* const* qrows, std::int64_t k0, std::int64_t kvalid,
                                             int nk, std::int16_t* act) noexcept {
    static_assert(NT % 16 == 0);
    for (int tg = 0; tg < NT; tg += 16) {
      int i = 0;
      while (i < nk) {
        const int step = (i + 32 <= nk && k0 + i + 32 <= kvalid) ? 32 : ((i + 16 <= nk && k0 + i + 16 <= kvalid) ? 16 : 0);
        if (step == 0) break;
        __m256i R[16], T[16];
        static_for_lut_avx2<16>([&](auto t) BITNET_INLINE_AVX2 {
          const std::int8_t* q = qrows[tg + t];
          if (q == nullptr)
            R[t] = _mm256_setzero_si256();
          else if (step == 32)
            R[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + k0 + i));
          else
            R[t] = _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + k0 + i)));
        });
        transpose16(R, T);  // T[j]: lane 0 = tokens at k0+i+j, lane 1 = tokens at k0+i+16+j
        static_for_lut_avx2<16>([&](auto j) BITNET_INLINE_AVX2 {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(act + (i + j) * NT + tg),
                              _mm256_cvtepi8_epi16(_mm256_castsi256_si128(T[j])));
          if (step == 32)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(act + (i + 16 + j) * NT + tg),
                                _mm256_cvtepi8_epi16(_mm256_extracti128_si256(T[j], 1)));
        });
        i += step;
      }
      for (; i < nk; ++i)
        for (int t = 0; t < 16; ++t) {
          const std::int8_t* q = qrows[tg + t];
          act[i * NT + tg + t] = (q != nullptr && k0 + i < kvalid) ? q[k0 + i] : std::int16_t{0};
        }
    }
  }

  template <int NT>
  BITNET_TARGET_AVX2 static void lutv_build(const std::int16_t* act, int tb, std::int16_t* tbl) noexcept {
    static_assert(NT % 16 == 0);
    constexpr int NV = NT / 16;
    const __m256i z = _mm256_setzero_si256();
    for (int j = 0; j < tb; ++j) {
      static_for_lut_avx2<NV>([&](auto v) BITNET_INLINE_AVX2 {
        const std::int16_t* a = act + 3 * j * NT + 16 * v;
        const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
        const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + NT));
        const __m256i a2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 2 * NT));
        const __m256i n1 = _mm256_sub_epi16(z, a1), n2 = _mm256_sub_epi16(z, a2);
        // s[3*c1 + c2] = (c1 - 1) * a1 + (c2 - 1) * a2
        const __m256i s[9] = {_mm256_add_epi16(n1, n2), n1, _mm256_add_epi16(n1, a2), n2, z, a2,
                              _mm256_add_epi16(a1, n2), a1, _mm256_add_epi16(a1, a2)};
        std::int16_t* e = tbl + j * 27 * NT + 16 * v;
        static_for_lut_avx2<9>([&](auto k) BITNET_INLINE_AVX2 {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(e + k * NT), _mm256_sub_epi16(s[k], a0));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(e + (9 + k) * NT), s[k]);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(e + (18 + k) * NT), _mm256_add_epi16(s[k], a0));
        });
      });
    }
  }

  template <int NT, int R, int TB>
  BITNET_TARGET_AVX2 static void lutv_rows(const std::uint8_t* idx, const std::int16_t* tbl, std::int32_t* part,
                                           bool first) noexcept {
    static_assert(NT % 16 == 0 && TB % 8 == 0);
    constexpr int NV = NT / 16;
    __m256i acc[R * NV];
    static_for_lut_avx2<R * NV>([&](auto i) BITNET_INLINE_AVX2 { acc[i] = _mm256_setzero_si256(); });
    for (int j0 = 0; j0 < TB; j0 += 8) {
      const std::int16_t* tj = tbl + j0 * 27 * NT;
      static_for_lut_avx2<8>([&](auto j) BITNET_INLINE_AVX2 {
        static_for_lut_avx2<R>([&](auto r) BITNET_INLINE_AVX2 {
          const std::int16_t* e = tj + j * 27 * NT + static_cast<std::size_t>(idx[32 * r + j0 + j]) * NT;
          static_for_lut_avx2<NV>([&](auto v) BITNET_INLINE_AVX2 {
            acc[r * NV + v] =
                _mm256_add_epi16(acc[r * NV + v], _mm256_load_si256(reinterpret_cast<const __m256i*>(e + 16 * v)));
          });
        });
      });
    }
    static_for_lut_avx2<R * NV>([&](auto i) BITNET_INLINE_AVX2 {
      std::int32_t* p = part + (i / NV) * NT + 16 * (i % NV);
      __m256i lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc[i]));
      __m256i hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(acc[i], 1));
      if (!first) {
        lo = _mm256_add_epi32(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        hi = _mm256_add_epi32(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 8)));
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 8), hi);
    });
  }
};

}  // namespace bitnet::detail

#endif  // BITNET_X86
