// bitnet/detail/t2_avx512.hpp - AVX-512BW and AVX-512 VNNI bodies of the t2 kernels
// (contract: t2_scalar.hpp). Block must be 256: one 64-byte code vector per chunk,
// whose four planes meet four contiguous 64-byte activation runs.
//   avx512bw:   vpmaddubsw into int16, widened by vpmaddwd every kWiden chunks.
//   avx512vnni: vpdpbusd accumulates codes x activations straight into int32.
// This machine cannot run AVX-512; these bodies are compiled everywhere on x86 and
// tested where the CPU has the feature (skipped with a message otherwise).
#pragma once

#include "../arch.hpp"
#if BITNET_X86

#include <immintrin.h>  // AVX-512 intrinsics
#include <algorithm>    // std::min
#include <cstdint>      // fixed-width integers

#include "static_for.hpp"

namespace bitnet::detail {

BITNET_DEFINE_STATIC_FOR(static_for_avx512bw, BITNET_TARGET_AVX512BW)
BITNET_DEFINE_STATIC_FOR(static_for_avx512vnni, BITNET_TARGET_AVX512VNNI)

template <class Arch> struct t2_impl;

template <bool Vnni> struct t2_avx512_common {
  // Horizontal sum through memory: GCC 12's _mm512_reduce_add_epi32 trips a
  // -Wuninitialized false positive inside its own header. Runs once per row tile.
  BITNET_TARGET_AVX512BW static std::int32_t hsum(__m512i v) noexcept {
    alignas(64) std::int32_t t[16];
    _mm512_store_si512(t, v);
    std::int32_t s = 0;
    for (int i = 0; i < 16; ++i) s += t[i];
    return s;
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
    for (int r = 0; r < Rows; ++r) out[r] = hsum(acc32[r]);
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
    for (int r = 0; r < Rows; ++r) out[r] = hsum(acc[r]);
  }

  // GEMM on AVX-512: one row at a time through dot_rows per token (correct, not tuned).
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

template <> struct t2_impl<arch::avx512bw> : t2_avx512_common<false> {};
template <> struct t2_impl<arch::avx512vnni> : t2_avx512_common<true> {};

}  // namespace bitnet::detail

#endif  // BITNET_X86
