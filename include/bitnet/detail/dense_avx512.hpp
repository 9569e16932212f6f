// bitnet/detail/dense_avx512.hpp - AVX-512 (F, BW, DQ, VL) bodies of the dense GEMV kernels.
//
// Contract: as the scalar kernels in dense_ref.hpp. Rows at any address (unaligned
// loads); K any value >= 0 for F32/F16/BF16 (masked tail loads, which never touch
// bytes past the row), a multiple of 32 (Q8_0) or 256 (Q6_K). Only Q6_K uses
// 512-bit vectors; the memory-bound float and Q8_0 kernels run 256 bits wide with
// AVX-512VL/BW masked tails (see the comments at ld_f32 and q8_block).
//
// Every function carries BITNET_TARGET_AVX512BW and runs only after dispatch.
//
// Weights are prefetched kPrefetch bytes ahead, as in the AVX2 bodies.
//
// Accumulation: F32/F16/BF16 use 4 x 8 f32 lanes (element j -> lane j % 32, then an
// 8-wide and a masked tail step; 256-bit on purpose, see ld_f32); Q8_0 is 256 bits wide like the AVX2 body (2 x 8
// lanes, int32 lane sums converted to f32 and FMAed with dw*dx); Q6_K reduces each
// block to one exact int32 and accumulates (dw*dx) * float(isum) into 4 scalar
// partial sums (block b -> b % 4), like the AVX2 body.
#pragma once

#include "../arch.hpp"
#include "../dense_ref.hpp"
#include "row_streams.hpp"

#if BITNET_X86
#include <immintrin.h>  // AVX-512 intrinsics

// GCC 12's AVX-512 intrinsics start from `__m512i __Y = __Y;` (an "undefined"
// vector) and, once inlined, trip -Wmaybe-uninitialized (GCC PR105593). The
// warning is a false positive about the header's own idiom; silence it here only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace bitnet::detail::dense {

struct avx512_kernels {
  // bytes ahead, see avx2_kernels::kPrefetch
  static constexpr std::size_t kPrefetch = 3072;
  static constexpr std::size_t kPrefetchQ6K = 2048;

  BITNET_TARGET_AVX512BW static float h2f(const std::uint8_t* p) noexcept {
    std::uint16_t v;
    std::memcpy(&v, p, 2);
    return _cvtsh_ss(v);
  }

  // 8 weights as f32, full or masked (the mask selects the first n lanes; masked
  // loads never touch the bytes of unselected lanes). The float kernels are 256
  // bits wide on purpose: they are memory-bound, and with 512-bit vectors the F16
  // and BF16 heads streamed 4-10% slower on the Xeon VM they were measured on.
  struct ld_f32 {
    static constexpr int bytes = 4;
    BITNET_TARGET_AVX512BW static __m256 load8(const std::uint8_t* p) noexcept {
      return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    }
    BITNET_TARGET_AVX512BW static __m256 load8m(const std::uint8_t* p, __mmask8 k) noexcept {
      return _mm256_maskz_loadu_ps(k, p);
    }
  };
  struct ld_f16 {
    static constexpr int bytes = 2;
    BITNET_TARGET_AVX512BW static __m256 load8(const std::uint8_t* p) noexcept {
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    BITNET_TARGET_AVX512BW static __m256 load8m(const std::uint8_t* p, __mmask8 k) noexcept {
      return _mm256_cvtph_ps(_mm_maskz_loadu_epi16(k, p));
    }
  };
  struct ld_bf16 {
    static constexpr int bytes = 2;
    BITNET_TARGET_AVX512BW static __m256 widen(__m128i h) noexcept {
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    BITNET_TARGET_AVX512BW static __m256 load8(const std::uint8_t* p) noexcept {
      return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    BITNET_TARGET_AVX512BW static __m256 load8m(const std::uint8_t* p, __mmask8 k) noexcept {
      return widen(_mm_maskz_loadu_epi16(k, p));
    }
  };

  BITNET_TARGET_AVX512BW static float hsum(__m256 v) noexcept {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  // S rows at once (S far-apart streams, see gemv_float); each row's sum in the same order
  // as one row alone. The activation loads are shared by the S rows.
  template <class L, int S>
  BITNET_TARGET_AVX512BW static void float_rows(const std::uint8_t* const* rows, const float* x, std::int64_t K,
                                                float* const* out) noexcept {
    const std::int64_t K32 = K & ~std::int64_t{31};
    __m256 a[S][4];
    for (int r = 0; r < S; ++r)
      for (int i = 0; i < 4; ++i) a[r][i] = _mm256_setzero_ps();
    std::int64_t j = 0;
    for (; j < K32; j += 32) {
      const __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
      const __m256 x2 = _mm256_loadu_ps(x + j + 16), x3 = _mm256_loadu_ps(x + j + 24);
      for (int r = 0; r < S; ++r) {
        const std::uint8_t* p = rows[r] + L::bytes * j;
        for (int pf = 0; pf < 32 * L::bytes; pf += 64)
          _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch + pf), _MM_HINT_T0);
        a[r][0] = _mm256_fmadd_ps(L::load8(p), x0, a[r][0]);
        a[r][1] = _mm256_fmadd_ps(L::load8(p + 8 * L::bytes), x1, a[r][1]);
        a[r][2] = _mm256_fmadd_ps(L::load8(p + 16 * L::bytes), x2, a[r][2]);
        a[r][3] = _mm256_fmadd_ps(L::load8(p + 24 * L::bytes), x3, a[r][3]);
      }
    }
    for (int r = 0; r < S; ++r) {
      std::int64_t jt = j;
      for (; jt + 8 <= K; jt += 8)
        a[r][1] = _mm256_fmadd_ps(L::load8(rows[r] + L::bytes * jt), _mm256_loadu_ps(x + jt), a[r][1]);
      if (jt < K) {
        const auto k = static_cast<__mmask8>((1u << (K - jt)) - 1u);
        a[r][2] = _mm256_fmadd_ps(L::load8m(rows[r] + L::bytes * jt, k), _mm256_maskz_loadu_ps(k, x + jt), a[r][2]);
      }
      *out[r] = hsum(_mm256_add_ps(_mm256_add_ps(a[r][0], a[r][1]), _mm256_add_ps(a[r][2], a[r][3])));
    }
  }

  // Rows are visited as two far-apart streams (rows m and m + n/2 together, then the remainder
  // one by one): one stream leaves memory-level parallelism unused.
  template <class L> BITNET_TARGET_AVX512BW static void gemv_float(const void* W, std::size_t row_bytes, const float* x,
                                                  std::int64_t K, float* y, std::int64_t row_begin,
                                                  std::int64_t row_end) {
    for_each_stream_rows<2>(W, row_bytes, y, row_begin, row_end,
                            [&]<int N>(const std::uint8_t* const* rows, float* const* out) {
                              float_rows<L, N>(rows, x, K, out);
                            });
  }


  BITNET_TARGET_AVX512BW static void gemv_f32_f32(const void* W, std::size_t rb, const float* x, std::int64_t K,
                                                  float* y, std::int64_t r0, std::int64_t r1) {
    gemv_float<ld_f32>(W, rb, x, K, y, r0, r1);
  }
  BITNET_TARGET_AVX512BW static void gemv_f16_f32(const void* W, std::size_t rb, const float* x, std::int64_t K,
                                                  float* y, std::int64_t r0, std::int64_t r1) {
    gemv_float<ld_f16>(W, rb, x, K, y, r0, r1);
  }
  BITNET_TARGET_AVX512BW static void gemv_bf16_f32(const void* W, std::size_t rb, const float* x, std::int64_t K,
                                                   float* y, std::int64_t r0, std::int64_t r1) {
    gemv_float<ld_bf16>(W, rb, x, K, y, r0, r1);
  }

  // One Q8_0 block pair product as 8 int32 lanes (as f32): |w| * (x with w's sign).
  // 256 bits wide: two 34-byte blocks do not fit one 512-bit load without VBMI
  // byte permutes, and the loop is memory-bound well before this width matters.
  BITNET_TARGET_AVX512BW static __m256 q8_block(const std::uint8_t* wb, const std::uint8_t* xb) noexcept {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + 2));
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 2));
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
  }

  BITNET_TARGET_AVX512BW static void gemv_q8_0_q8(const void* W, std::size_t row_bytes, const block_q8_0* x,
                                                  std::int64_t K, float* y, std::int64_t row_begin,
                                                  std::int64_t row_end) {
    const std::int64_t nb = K / kQK8_0;
    const auto* xa = reinterpret_cast<const std::uint8_t*>(x);
    constexpr std::size_t B = sizeof(block_q8_0);
    for (std::int64_t m = row_begin; m < row_end; ++m) {
      const auto* row = static_cast<const std::uint8_t*>(W) + static_cast<std::size_t>(m) * row_bytes;
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
      std::int64_t b = 0;
      for (; b + 2 <= nb; b += 2) {
        const std::uint8_t* w0 = row + B * b;
        const std::uint8_t* x0 = xa + B * b;
        // 68 bytes per step: prefetching the lines of both w0 and w0 + 64 covers
        // every line (one prefetch per step would skip one line in 16)
        _mm_prefetch(reinterpret_cast<const char*>(w0 + kPrefetch), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(w0 + kPrefetch + 64), _MM_HINT_T0);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w0) * h2f(x0)), q8_block(w0, x0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w0 + B) * h2f(x0 + B)), q8_block(w0 + B, x0 + B), acc1);
      }
      if (b < nb) {
        const std::uint8_t* w0 = row + B * b;
        const std::uint8_t* x0 = xa + B * b;
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w0) * h2f(x0)), q8_block(w0, x0), acc0);
      }
      const __m256 s = _mm256_add_ps(acc0, acc1);
      __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
      h = _mm_add_ps(h, _mm_movehl_ps(h, h));
      h = _mm_add_ss(h, _mm_movehdup_ps(h));
      y[m] = _mm_cvtss_f32(h);
    }
  }

  // Exact int32 sum_sub sc[sub] * sum (code-32)*q over one Q6_K block.
  BITNET_TARGET_AVX512BW static std::int32_t q6k_block(const std::uint8_t* blk, const block_q8_k& xb) noexcept {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    // per-256-bit-half shift counts: codes 0/1 take qh bits 0-1 / 2-3, codes 2/3 bits 4-5 / 6-7
    const __m512i sl01 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i sr23 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + offsetof(block_q6_k, scales)));
    const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
    const __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums)));
    const __m512i scz = _mm512_castsi256_si512(sc16);
    // word j of the index vector selects scale (base + j/8): one scale per 128-bit lane
    const __m512i lane_of = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0,
                                             0, 0, 0, 0, 0, 0, 0);
    __m512i acc = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = _mm512_loadu_si512(blk + 64 * h);  // [ql[0..31] | ql[32..63]]
      const __m512i qh =
          _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h)));
      // (a & b) | c == ternlog 0xEA
      const __m512i q01 = _mm512_ternarylogic_epi32(ql, m4, _mm512_and_si512(_mm512_sllv_epi16(qh, sl01), m30), 0xEA);
      const __m512i q23 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), m4,
                                                    _mm512_and_si512(_mm512_srlv_epi16(qh, sr23), m30), 0xEA);
      const std::int8_t* a = xb.qs + 128 * h;
      const __m512i p01 = _mm512_maddubs_epi16(q01, _mm512_loadu_si512(a));
      const __m512i p23 = _mm512_maddubs_epi16(q23, _mm512_loadu_si512(a + 64));
      const __m512i s01 =
          _mm512_permutexvar_epi16(_mm512_add_epi16(lane_of, _mm512_set1_epi16(static_cast<short>(8 * h))), scz);
      const __m512i s23 =
          _mm512_permutexvar_epi16(_mm512_add_epi16(lane_of, _mm512_set1_epi16(static_cast<short>(8 * h + 4))), scz);
      acc = _mm512_add_epi32(acc, _mm512_add_epi32(_mm512_madd_epi16(p01, s01), _mm512_madd_epi16(p23, s23)));
    }
    // subtract 32 * sum_sub sc*bsum (the code offset), zero-extended into the upper lanes
    return _mm512_reduce_add_epi32(_mm512_sub_epi32(acc, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 5))));
  }

  // S rows at once, block by block: S far-apart streams (see gemv_q6k_q8k). Each row's
  // terms are summed in the same order as one row alone.
  template <int S>
  BITNET_TARGET_AVX512BW static void q6k_rows(const std::uint8_t* const* rows, const block_q8_k* x, std::int64_t nb,
                                              float* const* out) noexcept {
    constexpr std::size_t B = sizeof(block_q6_k);
    float s[S][4] = {};
    for (std::int64_t b = 0; b < nb; ++b) {
      for (int r = 0; r < S; ++r) {
        const std::uint8_t* blk = rows[r] + B * b;
        for (int pf = 0; pf < 256; pf += 64)
          _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchQ6K + pf), _MM_HINT_T0);
        const float d = h2f(blk + offsetof(block_q6_k, d)) * x[b].d;
        s[r][b & 3] += d * static_cast<float>(q6k_block(blk, x[b]));
      }
    }
    for (int r = 0; r < S; ++r) *out[r] = (s[r][0] + s[r][1]) + (s[r][2] + s[r][3]);
  }

  // Rows are visited as four far-apart streams (rows m, m + n/4, m + n/2, m + 3n/4 together,
  // then the remainder one by one): one stream leaves memory-level parallelism unused. 2B4T Q6_K
  // head from huge pages: 15.4-15.9 GB/s with one stream, 17.1-17.5 with four.
  BITNET_TARGET_AVX512BW static void gemv_q6k_q8k(const void* W, std::size_t row_bytes, const block_q8_k* x,
                                   std::int64_t K, float* y, std::int64_t row_begin, std::int64_t row_end) {
    const std::int64_t nb = K / kQK_K;
    for_each_stream_rows<4>(W, row_bytes, y, row_begin, row_end,
                            [&]<int N>(const std::uint8_t* const* rows, float* const* out) {
                              q6k_rows<N>(rows, x, nb, out);
                            });
  }

};

}  // namespace bitnet::detail::dense

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // BITNET_X86
