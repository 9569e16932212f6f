// bitnet/detail/t2_avx2.hpp - AVX2 bodies of the t2 kernels (contract: t2_scalar.hpp).
//
// Per 32 code bytes (128 weights of one row): one 16-bit shift and four masks give
// the code planes c0, 4*c1, c2, 4*c3 (masks 0x03 and 0x0C on w and w >> 4: one shift
// instead of three); vpmaddubsw (unsigned codes x signed int8 activations) multiplies
// and adds pairs into int16; the two x4 products are summed and shifted right by 2,
// which is exact (their sum is a multiple of 4). The op count per vector drops from
// 15 to 14, and the kernel is bound by vector ALU ports when the weights are in cache.
// Bounds: a vpmaddubsw lane is at most 2 * 2 * 128 = 512 in magnitude for codes and
// 2048 for 4 * codes (no saturation; the x4 pair sums to at most 4096), so a step
// adds at most 4 * 512 = 2048 to an int16 lane and 15 steps fit before one
// vpmaddwd widens the accumulator into int32 (kWiden).
// Compiled with function target attributes, so a baseline build contains it;
// dispatch calls it only on AVX2 CPUs.
#pragma once

#include "../arch.hpp"
#if BITNET_X86

#include <immintrin.h>  // AVX2 intrinsics
#include <algorithm>    // std::min
#include <cstdint>      // fixed-width integers

#include "static_for.hpp"

namespace bitnet::detail {

BITNET_DEFINE_STATIC_FOR(static_for_avx2, BITNET_TARGET_AVX2)

template <class Arch> struct t2_impl;

template <> struct t2_impl<arch::avx2> {
  BITNET_TARGET_AVX2 static std::int32_t hsum(__m256i v) noexcept {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
  }

  // Sum of the four code-plane products of one 32-byte code vector.
  [[gnu::always_inline]] BITNET_TARGET_AVX2 static __m256i planes(__m256i w, __m256i a0, __m256i a1, __m256i a2,
                                                                  __m256i a3) noexcept {
    const __m256i m3 = _mm256_set1_epi8(0x03);
    const __m256i mc = _mm256_set1_epi8(0x0C);
    const __m256i w4 = _mm256_srli_epi16(w, 4);
    const __m256i c0 = _mm256_and_si256(w, m3);    // c0
    const __m256i c1 = _mm256_and_si256(w, mc);    // 4 c1
    const __m256i c2 = _mm256_and_si256(w4, m3);   // c2
    const __m256i c3 = _mm256_and_si256(w4, mc);   // 4 c3
    const __m256i even = _mm256_add_epi16(_mm256_maddubs_epi16(c0, a0), _mm256_maddubs_epi16(c2, a2));
    const __m256i odd4 = _mm256_add_epi16(_mm256_maddubs_epi16(c1, a1), _mm256_maddubs_epi16(c3, a3));
    return _mm256_add_epi16(even, _mm256_srai_epi16(odd4, 2));  // odd4 is a multiple of 4: exact
  }

  template <int Block, int Rows, int Unroll>
  BITNET_TARGET_AVX2 static void dot_rows(const std::uint8_t* const* rows, const std::int8_t* q, std::int64_t nchunks,
                                          std::int32_t* out) noexcept {
    constexpr int CB = Block / 4;  // code bytes per chunk and row
    constexpr int H = CB / 32;     // 32-byte vectors per chunk
    // Chunks per int16 run: at most 15 vectors, a multiple of Unroll and a whole
    // number of 64-byte lines (so the per-run prefetch below covers each line once).
    constexpr int kStep = Unroll * H >= 2 ? Unroll : 2 * Unroll;
    constexpr int kWiden = (15 / H) / kStep * kStep;
    static_assert(kWiden >= Unroll, "Unroll too deep for int16 accumulation at this block size");
    // Software prefetch, kPrefetch bytes ahead in each row's stream, one hint per 64-byte
    // line issued at the start of each run; measured on the DRAM-streamed benchmark.
    constexpr int kPrefetch = 2048;
    constexpr int kRunLines = (kWiden * CB + 63) / 64;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc32[Rows];
    __m256i acc16[Rows];
    static_for_avx2<Rows>([&](auto r) BITNET_INLINE_AVX2 { acc32[r] = _mm256_setzero_si256(); });

    std::int64_t c = 0;
    while (c < nchunks) {
      const std::int64_t cend = std::min(nchunks, c + kWiden);
      static_for_avx2<Rows>([&](auto r) BITNET_INLINE_AVX2 {
        acc16[r] = _mm256_setzero_si256();
        // A hint only (never faults); past a row's end it runs into the next rows.
        for (int l = 0; l < kRunLines; ++l) __builtin_prefetch(rows[r] + c * CB + kPrefetch + 64 * l, 0, 3);
      });
      auto step = [&](std::int64_t cc) BITNET_INLINE_AVX2 {
        static_for_avx2<H>([&](auto h) BITNET_INLINE_AVX2 {
          const std::int8_t* qa = q + cc * Block + 32 * h;
          const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa));
          const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa + CB));
          const __m256i a2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa + 2 * CB));
          const __m256i a3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa + 3 * CB));
          static_for_avx2<Rows>([&](auto r) BITNET_INLINE_AVX2 {
            const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + cc * CB + 32 * h));
            acc16[r] = _mm256_add_epi16(acc16[r], planes(w, a0, a1, a2, a3));
          });
        });
      };
      for (; c + Unroll <= cend; c += Unroll) static_for_avx2<Unroll>([&](auto u) BITNET_INLINE_AVX2 { step(c + u); });
      for (; c < cend; ++c) step(c);
      static_for_avx2<Rows>([&](auto r) BITNET_INLINE_AVX2 {
        acc32[r] = _mm256_add_epi32(acc32[r], _mm256_madd_epi16(acc16[r], ones));
      });
    }
    if constexpr (Rows == 4) {
      // Reduce four rows at once: two rounds of hadd, then fold the 128-bit halves.
      const __m256i s01 = _mm256_hadd_epi32(acc32[0], acc32[1]);
      const __m256i s23 = _mm256_hadd_epi32(acc32[2], acc32[3]);
      const __m256i s = _mm256_hadd_epi32(s01, s23);
      const __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out), t);
    } else {
      for (int r = 0; r < Rows; ++r) out[r] = hsum(acc32[r]);
    }
  }

  template <int Block, int Rows, int Tokens>
  BITNET_TARGET_AVX2 static void gemm_tile(const std::uint8_t* const* rows, const std::int8_t* const* qs,
                                           std::int64_t nchunks, std::int32_t* out) noexcept {
    constexpr int CB = Block / 4;
    constexpr int H = CB / 32;
    constexpr int kWiden = 15 / H;
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256i acc32[Rows * Tokens];
    __m256i acc16[Rows * Tokens];
    static_for_avx2<Rows * Tokens>([&](auto i) BITNET_INLINE_AVX2 { acc32[i] = _mm256_setzero_si256(); });
    std::int64_t c = 0;
    while (c < nchunks) {
      const std::int64_t cend = std::min(nchunks, c + kWiden);
      static_for_avx2<Rows * Tokens>([&](auto i) BITNET_INLINE_AVX2 { acc16[i] = _mm256_setzero_si256(); });
      for (; c < cend; ++c) {
        static_for_avx2<H>([&](auto h) BITNET_INLINE_AVX2 {
          static_for_avx2<Rows>([&](auto r) BITNET_INLINE_AVX2 {
            // Unpack this row's codes once; reuse them for every token of the tile.
            const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + c * CB + 32 * h));
            const __m256i c0 = _mm256_and_si256(w, m3);
            const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(w, 2), m3);
            const __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(w, 4), m3);
            const __m256i c3 = _mm256_and_si256(_mm256_srli_epi16(w, 6), m3);
            static_for_avx2<Tokens>([&](auto t) BITNET_INLINE_AVX2 {
              const std::int8_t* qa = qs[t] + c * Block + 32 * h;
              const __m256i p0 = _mm256_maddubs_epi16(c0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa)));
              const __m256i p1 =
                  _mm256_maddubs_epi16(c1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa + CB)));
              const __m256i p2 =
                  _mm256_maddubs_epi16(c2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa + 2 * CB)));
              const __m256i p3 =
                  _mm256_maddubs_epi16(c3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa + 3 * CB)));
              acc16[r * Tokens + t] = _mm256_add_epi16(acc16[r * Tokens + t],
                                                       _mm256_add_epi16(_mm256_add_epi16(p0, p1), _mm256_add_epi16(p2, p3)));
            });
          });
        });
      }
      static_for_avx2<Rows * Tokens>([&](auto i) BITNET_INLINE_AVX2 {
        acc32[i] = _mm256_add_epi32(acc32[i], _mm256_madd_epi16(acc16[i], ones));
      });
    }
    for (int i = 0; i < Rows * Tokens; ++i) out[i] = hsum(acc32[i]);
  }
};

}  // namespace bitnet::detail

#endif  // BITNET_X86
