// bitnet/detail/t2_avx512.hpp - AVX-512BW and AVX-512 VNNI bodies of the t2 kernels
// (contract: t2_scalar.hpp). Block must be 256: one 64-byte code vector per chunk,
// whose four planes meet four contiguous 64-byte activation runs.
//   avx512bw:   vpmaddubsw into int16, widened by vpmaddwd every kWiden chunks.
//   avx512vnni: vpdpbusd accumulates codes x activations straight into int32.
// These bodies are compiled everywhere on x86 and tested where the CPU has the
// feature (skipped with a message otherwise).
#pragma once

#include "../arch.hpp"
#if BITNET_X86

#include <immintrin.h>  // AVX-512 intrinsics
#include <algorithm>    // std::min
#include <cstdint>      // fixed-width integers

#include "static_for.hpp"

// GCC 12's AVX-512 cast/extract/shuffle intrinsics start from an "undefined" vector and,
// once inlined, trip -Wuninitialized / -Wmaybe-uninitialized (GCC PR105593), a false
// positive about the header's own idiom; silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace bitnet::detail {

BITNET_DEFINE_STATIC_FOR(static_for_avx512bw, BITNET_TARGET_AVX512BW)
BITNET_DEFINE_STATIC_FOR(static_for_avx512vnni, BITNET_TARGET_AVX512VNNI)

template <class Arch> struct t2_impl;

template <bool Vnni> struct t2_avx512_common {
  // out[i] = horizontal sum of v[i], i < N <= 16, by a transpose-and-add tree (about
  // 3 ops per vector instead of a 16-step sum each; matters for short rows, where a
  // tile's reduction costs as much as its dot products). Levels:
  //   1: pairs (a, b) -> per 128-bit lane [a0+a2, b0+b2, a1+a3, b1+b3]
  //   2: pairs of those -> per lane [sum a, sum b, sum c, sum d] of four vectors
  //   3, 4: 128-bit lanes folded with shuffle_i32x4, giving dword i = total of v[i].
  template <int N>
  [[gnu::always_inline]] BITNET_TARGET_AVX512BW static void reduce_store(const __m512i* v, std::int32_t* out) noexcept {
    static_assert(N >= 1 && N <= 16, "reduce_store takes 1 to 16 vectors");
    constexpr int M = N <= 4 ? 4 : 16;
    __m512i x[M];
    for (int i = 0; i < M; ++i) x[i] = i < N ? v[i] : _mm512_setzero_si512();
    __m512i s1[M / 2], s2[M / 4];
    for (int k = 0; k < M / 2; ++k)
      s1[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(x[2 * k], x[2 * k + 1]),
                               _mm512_unpackhi_epi32(x[2 * k], x[2 * k + 1]));
    for (int j = 0; j < M / 4; ++j)
      s2[j] = _mm512_add_epi32(_mm512_unpacklo_epi64(s1[2 * j], s1[2 * j + 1]),
                               _mm512_unpackhi_epi64(s1[2 * j], s1[2 * j + 1]));
    if constexpr (M == 4) {
      const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(s2[0]), _mm512_extracti64x4_epi64(s2[0], 1));
      alignas(16) std::int32_t t[4];
      _mm_store_si128(reinterpret_cast<__m128i*>(t),
                      _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
      for (int i = 0; i < N; ++i) out[i] = t[i];
    } else {
      // lanes [p0, p2, q0, q2] + [p1, p3, q1, q3]
      const __m512i f01 = _mm512_add_epi32(_mm512_shuffle_i32x4(s2[0], s2[1], 0x88), _mm512_shuffle_i32x4(s2[0], s2[1], 0xDD));
      const __m512i f23 = _mm512_add_epi32(_mm512_shuffle_i32x4(s2[2], s2[3], 0x88), _mm512_shuffle_i32x4(s2[2], s2[3], 0xDD));
      const __m512i r = _mm512_add_epi32(_mm512_shuffle_i32x4(f01, f23, 0x88), _mm512_shuffle_i32x4(f01, f23, 0xDD));
      alignas(64) std::int32_t t[16];
      _mm512_store_si512(t, r);
      for (int i = 0; i < N; ++i) out[i] = t[i];
    }
  }

  template <int Block, int Rows, int Unroll>
  static void dot_rows(const std::uint8_t* const* rows, const std::int8_t* q, std::int64_t nchunks,
                       std::int32_t* out) noexcept {
    if constexpr (Vnni)
      dot_rows_vnni<Block, Rows, Unroll>(rows, q, nchunks, out);
    else
      dot_rows_bw<Block, Rows, Unroll>(rows, q, nchunks, out);
  }

  template <int Block, int Rows, int Unroll>
  BITNET_TARGET_AVX512BW static void dot_rows_bw(const std::uint8_t* const* rows, const std::int8_t* q,
                                                 std::int64_t nchunks, std::int32_t* out) noexcept {
    static_assert(Block == 256, "AVX-512 t2 kernels use 256-weight blocks");
    constexpr int kWiden = 15 / Unroll * Unroll;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i ones = _mm512_set1_epi16(1);
    __m512i acc32[Rows], acc16[Rows];
    static_for_avx512bw<Rows>([&](auto r) BITNET_INLINE_AVX512BW { acc32[r] = _mm512_setzero_si512(); });
    std::int64_t c = 0;
    while (c < nchunks) {
      const std::int64_t cend = std::min(nchunks, c + kWiden);
      static_for_avx512bw<Rows>([&](auto r) BITNET_INLINE_AVX512BW { acc16[r] = _mm512_setzero_si512(); });
      for (; c < cend; ++c) {
        const std::int8_t* qa = q + c * 256;
        const __m512i a0 = _mm512_loadu_si512(qa), a1 = _mm512_loadu_si512(qa + 64);
        const __m512i a2 = _mm512_loadu_si512(qa + 128), a3 = _mm512_loadu_si512(qa + 192);
        static_for_avx512bw<Rows>([&](auto r) BITNET_INLINE_AVX512BW {
          __builtin_prefetch(rows[r] + c * 64 + 2048, 0, 3);  // hint, 2 KiB ahead in the row stream
          const __m512i w = _mm512_loadu_si512(rows[r] + c * 64);
          const __m512i c0 = _mm512_and_si512(w, m3);
          const __m512i c1 = _mm512_and_si512(_mm512_srli_epi16(w, 2), m3);
          const __m512i c2 = _mm512_and_si512(_mm512_srli_epi16(w, 4), m3);
          const __m512i c3 = _mm512_and_si512(_mm512_srli_epi16(w, 6), m3);
          const __m512i s = _mm512_add_epi16(_mm512_add_epi16(_mm512_maddubs_epi16(c0, a0), _mm512_maddubs_epi16(c1, a1)),
                                             _mm512_add_epi16(_mm512_maddubs_epi16(c2, a2), _mm512_maddubs_epi16(c3, a3)));
          acc16[r] = _mm512_add_epi16(acc16[r], s);
        });
      }
      static_for_avx512bw<Rows>([&](auto r) BITNET_INLINE_AVX512BW {
        acc32[r] = _mm512_add_epi32(acc32[r], _mm512_madd_epi16(acc16[r], ones));
      });
    }
    reduce_store<Rows>(acc32, out);
  }

  template <int Block, int Rows, int Unroll>
  BITNET_TARGET_AVX512VNNI static void dot_rows_vnni(const std::uint8_t* const* rows, const std::int8_t* q,
                                                     std::int64_t nchunks, std::int32_t* out) noexcept {
    static_assert(Block == 256, "AVX-512 t2 kernels use 256-weight blocks");
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512i acc[Rows];
    static_for_avx512vnni<Rows>([&](auto r) BITNET_INLINE_AVX512VNNI { acc[r] = _mm512_setzero_si512(); });
    for (std::int64_t c = 0; c < nchunks; ++c) {
      const std::int8_t* qa = q + c * 256;
      const __m512i a0 = _mm512_loadu_si512(qa), a1 = _mm512_loadu_si512(qa + 64);
      const __m512i a2 = _mm512_loadu_si512(qa + 128), a3 = _mm512_loadu_si512(qa + 192);
      static_for_avx512vnni<Rows>([&](auto r) BITNET_INLINE_AVX512VNNI {
        __builtin_prefetch(rows[r] + c * 64 + 2048, 0, 3);  // hint, 2 KiB ahead in the row stream
          const __m512i w = _mm512_loadu_si512(rows[r] + c * 64);
        acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_and_si512(w, m3), a0);
        acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_and_si512(_mm512_srli_epi16(w, 2), m3), a1);
        acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_and_si512(_mm512_srli_epi16(w, 4), m3), a2);
        acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_and_si512(_mm512_srli_epi16(w, 6), m3), a3);
      });
    }
    reduce_store<Rows>(acc, out);
  }

  // GEMM tile: each row's 64 code bytes per chunk are split into their four planes once
  // and reused for every token of the tile (Rows * Tokens int32 accumulators; the 4x4
  // tile uses 16 of the 32 zmm registers). VNNI: four vpdpbusd per row, token and chunk.
  // BW: four vpmaddubsw summed in int16 (at most 4 * 512 per lane), widened at once.
  template <int Block, int Rows, int Tokens>
  static void gemm_tile(const std::uint8_t* const* rows, const std::int8_t* const* qs, std::int64_t nchunks,
                        std::int32_t* out) noexcept {
    if constexpr (Vnni)
      gemm_tile_vnni<Block, Rows, Tokens>(rows, qs, nchunks, out);
    else
      gemm_tile_bw<Block, Rows, Tokens>(rows, qs, nchunks, out);
  }

  template <int Block, int Rows, int Tokens>
  BITNET_TARGET_AVX512VNNI static void gemm_tile_vnni(const std::uint8_t* const* rows, const std::int8_t* const* qs,
                                                      std::int64_t nchunks, std::int32_t* out) noexcept {
    static_assert(Block == 256, "AVX-512 t2 kernels use 256-weight blocks");
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512i acc[Rows * Tokens];
    static_for_avx512vnni<Rows * Tokens>([&](auto i) BITNET_INLINE_AVX512VNNI { acc[i] = _mm512_setzero_si512(); });
    // When every row's planes and the accumulators fit in the 32 zmm registers (2x8: 8 + 16),
    // tokens go outside: each token's four activation vectors are loaded once per chunk,
    // not once per row, which halves the loads (the 4x4 tile would need 32 registers).
    constexpr bool kTokensOuter = Rows * 4 + Rows * Tokens <= 28;
    for (std::int64_t c = 0; c < nchunks; ++c) {
      __m512i cp[Rows][4];
      static_for_avx512vnni<Rows>([&](auto r) BITNET_INLINE_AVX512VNNI {
        const __m512i w = _mm512_loadu_si512(rows[r] + c * 64);
        cp[r][0] = _mm512_and_si512(w, m3);
        cp[r][1] = _mm512_and_si512(_mm512_srli_epi16(w, 2), m3);
        cp[r][2] = _mm512_and_si512(_mm512_srli_epi16(w, 4), m3);
        cp[r][3] = _mm512_and_si512(_mm512_srli_epi16(w, 6), m3);
        if constexpr (!kTokensOuter) {
          static_for_avx512vnni<Tokens>([&](auto t) BITNET_INLINE_AVX512VNNI {
            const std::int8_t* qa = qs[t] + c * 256;
            __m512i a = acc[r * Tokens + t];
            a = _mm512_dpbusd_epi32(a, cp[r][0], _mm512_loadu_si512(qa));
            a = _mm512_dpbusd_epi32(a, cp[r][1], _mm512_loadu_si512(qa + 64));
            a = _mm512_dpbusd_epi32(a, cp[r][2], _mm512_loadu_si512(qa + 128));
            acc[r * Tokens + t] = _mm512_dpbusd_epi32(a, cp[r][3], _mm512_loadu_si512(qa + 192));
          });
        }
      });
      if constexpr (kTokensOuter) {
        static_for_avx512vnni<Tokens>([&](auto t) BITNET_INLINE_AVX512VNNI {
          const std::int8_t* qa = qs[t] + c * 256;
          const __m512i a0 = _mm512_loadu_si512(qa), a1 = _mm512_loadu_si512(qa + 64);
          const __m512i a2 = _mm512_loadu_si512(qa + 128), a3 = _mm512_loadu_si512(qa + 192);
          static_for_avx512vnni<Rows>([&](auto r) BITNET_INLINE_AVX512VNNI {
            __m512i a = acc[r * Tokens + t];
            a = _mm512_dpbusd_epi32(a, cp[r][0], a0);
            a = _mm512_dpbusd_epi32(a, cp[r][1], a1);
            a = _mm512_dpbusd_epi32(a, cp[r][2], a2);
            acc[r * Tokens + t] = _mm512_dpbusd_epi32(a, cp[r][3], a3);
          });
        });
      }
    }
    reduce_store<Rows * Tokens>(acc, out);
  }

  template <int Block, int Rows, int Tokens>
  BITNET_TARGET_AVX512BW static void gemm_tile_bw(const std::uint8_t* const* rows, const std::int8_t* const* qs,
                                                  std::int64_t nchunks, std::int32_t* out) noexcept {
    static_assert(Block == 256, "AVX-512 t2 kernels use 256-weight blocks");
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i ones = _mm512_set1_epi16(1);
    __m512i acc[Rows * Tokens];
    static_for_avx512bw<Rows * Tokens>([&](auto i) BITNET_INLINE_AVX512BW { acc[i] = _mm512_setzero_si512(); });
    for (std::int64_t c = 0; c < nchunks; ++c) {
      static_for_avx512bw<Rows>([&](auto r) BITNET_INLINE_AVX512BW {
        const __m512i w = _mm512_loadu_si512(rows[r] + c * 64);
        const __m512i c0 = _mm512_and_si512(w, m3);
        const __m512i c1 = _mm512_and_si512(_mm512_srli_epi16(w, 2), m3);
        const __m512i c2 = _mm512_and_si512(_mm512_srli_epi16(w, 4), m3);
        const __m512i c3 = _mm512_and_si512(_mm512_srli_epi16(w, 6), m3);
        static_for_avx512bw<Tokens>([&](auto t) BITNET_INLINE_AVX512BW {
          const std::int8_t* qa = qs[t] + c * 256;
          const __m512i s = _mm512_add_epi16(
              _mm512_add_epi16(_mm512_maddubs_epi16(c0, _mm512_loadu_si512(qa)),
                               _mm512_maddubs_epi16(c1, _mm512_loadu_si512(qa + 64))),
              _mm512_add_epi16(_mm512_maddubs_epi16(c2, _mm512_loadu_si512(qa + 128)),
                               _mm512_maddubs_epi16(c3, _mm512_loadu_si512(qa + 192))));
          acc[r * Tokens + t] = _mm512_add_epi32(acc[r * Tokens + t], _mm512_madd_epi16(s, ones));
        });
      });
    }
    reduce_store<Rows * Tokens>(acc, out);
  }
};

template <> struct t2_impl<arch::avx512bw> : t2_avx512_common<false> {};
template <> struct t2_impl<arch::avx512vnni> : t2_avx512_common<true> {};

}  // namespace bitnet::detail

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // BITNET_X86
