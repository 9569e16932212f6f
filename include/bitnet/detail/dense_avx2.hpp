// bitnet/detail/dense_avx2.hpp - AVX2 (+FMA, F16C) bodies of the dense GEMV kernels.
//
// Contract (same as the scalar kernels in dense_ref.hpp): y[m] = dot(row m, x) for
// m in [row_begin, row_end), row m at W + m*row_bytes, any alignment (all loads are
// unaligned). K: any value >= 0 for F32/F16/BF16 (scalar tail inside the body),
// a multiple of 32 (Q8_0) or 256 (Q6_K).
//
// Every function here carries BITNET_TARGET_AVX2 and is reached only through
// runtime dispatch; nothing in this file is shared with other targets.
//
// Weights are prefetched kPrefetch bytes ahead (see avx2_kernels::kPrefetch).
//
// Accumulation: F32/F16/BF16 use 4 x 8 f32 lanes (element j -> lane j % 32) plus a
// sequential tail; Q8_0 converts each block's 8 int32 lane sums to f32 and FMAs
// them with dw*dx into 2 x 8 lanes; Q6_K reduces each block to one exact int32
// (four blocks at a time with one transposing hadd tree) and accumulates
// (dw*dx) * float(isum) into 4 partial sums (block b -> b % 4).
#pragma once

#include "../arch.hpp"
#include "../dense_ref.hpp"
#include "row_streams.hpp"

#if BITNET_X86
#include <immintrin.h>  // AVX2, FMA, F16C intrinsics

namespace bitnet::detail::dense {

struct avx2_kernels {
  // Software prefetch distances into L1, in bytes ahead of the current weights.
  // The hardware prefetchers bring the stream to L2; without this, unaligned
  // weight loads that straddle two lines (Q8_0: 34-byte blocks, Q6_K: 210-byte
  // blocks) miss L1 one after another and halve the streaming rate (measured: Q8_0
  // 8.5 -> 16 GB/s on the 2.6 GHz Xeon VM this was tuned on; F16 +8%). 3 KiB was
  // best for F16/Q8_0 there (1-6 KiB tried); Q6_K, which issues 14 prefetches per
  // 4-block step, slowed down sharply from 4 KiB on, so it uses 2 KiB. Prefetching
  // past the end of the matrix is harmless (prefetches never fault).
  static constexpr std::size_t kPrefetch = 3072;
  static constexpr std::size_t kPrefetchQ6K = 2048;

  BITNET_TARGET_AVX2 static float hsum(__m256 v) noexcept {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  BITNET_TARGET_AVX2 static std::int32_t hsum_i32(__m256i v) noexcept {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
  }
  BITNET_TARGET_AVX2 static float h2f(const std::uint8_t* p) noexcept {
    std::uint16_t v;
    std::memcpy(&v, p, 2);
    return _cvtsh_ss(v);
  }

  // Loads 8 weights of each float-like type as f32.
  struct ld_f32 {
    static constexpr int bytes = 4;
    BITNET_TARGET_AVX2 static __m256 load8(const std::uint8_t* p) noexcept {
      return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    }
    BITNET_TARGET_AVX2 static float load1(const std::uint8_t* p) noexcept {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
  };
  struct ld_f16 {
    static constexpr int bytes = 2;
    BITNET_TARGET_AVX2 static __m256 load8(const std::uint8_t* p) noexcept {
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    BITNET_TARGET_AVX2 static float load1(const std::uint8_t* p) noexcept { return h2f(p); }
  };
  struct ld_bf16 {
    static constexpr int bytes = 2;
    BITNET_TARGET_AVX2 static __m256 load8(const std::uint8_t* p) noexcept {
      const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    }
    BITNET_TARGET_AVX2 static float load1(const std::uint8_t* p) noexcept {
      std::uint16_t h;
      std::memcpy(&h, p, 2);
      const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
      float v;
      std::memcpy(&v, &u, 4);
      return v;
    }
  };

  // S rows at once (S far-apart streams, see gemv_float); each row's sum in the same order
  // as one row alone. The activation loads are shared by the S rows.
  template <class L, int S>
  BITNET_TARGET_AVX2 static void float_rows(const std::uint8_t* const* rows, const float* x, std::int64_t K,
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
        a[r][0] = _mm256_fmadd_ps(L::load8(rows[r] + L::bytes * jt), _mm256_loadu_ps(x + jt), a[r][0]);
      float tail = 0.0f;
      for (; jt < K; ++jt) tail += L::load1(rows[r] + L::bytes * jt) * x[jt];
      *out[r] = hsum(_mm256_add_ps(_mm256_add_ps(a[r][0], a[r][1]), _mm256_add_ps(a[r][2], a[r][3]))) + tail;
    }
  }

  // Rows are visited as two far-apart streams (rows m and m + n/2 together, then the remainder
  // one by one): one stream leaves memory-level parallelism unused.
  template <class L> BITNET_TARGET_AVX2 static void gemv_float(const void* W, std::size_t row_bytes, const float* x,
                                                  std::int64_t K, float* y, std::int64_t row_begin,
                                                  std::int64_t row_end) {
    for_each_stream_rows<2>(W, row_bytes, y, row_begin, row_end,
                            [&]<int N>(const std::uint8_t* const* rows, float* const* out) {
                              float_rows<L, N>(rows, x, K, out);
                            });
  }


  BITNET_TARGET_AVX2 static void gemv_f32_f32(const void* W, std::size_t rb, const float* x, std::int64_t K, float* y,
                                              std::int64_t r0, std::int64_t r1) {
    gemv_float<ld_f32>(W, rb, x, K, y, r0, r1);
  }
  BITNET_TARGET_AVX2 static void gemv_f16_f32(const void* W, std::size_t rb, const float* x, std::int64_t K, float* y,
                                              std::int64_t r0, std::int64_t r1) {
    gemv_float<ld_f16>(W, rb, x, K, y, r0, r1);
  }
  BITNET_TARGET_AVX2 static void gemv_bf16_f32(const void* W, std::size_t rb, const float* x, std::int64_t K, float* y,
                                               std::int64_t r0, std::int64_t r1) {
    gemv_float<ld_bf16>(W, rb, x, K, y, r0, r1);
  }

  // One Q8_0 block pair product as 8 int32 lanes: |w| * (x with w's sign).
  BITNET_TARGET_AVX2 static __m256 q8_block(const std::uint8_t* wb, const std::uint8_t* xb) noexcept {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + 2));
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 2));
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
  }

  BITNET_TARGET_AVX2 static void gemv_q8_0_q8(const void* W, std::size_t row_bytes, const block_q8_0* x, std::int64_t K,
                                              float* y, std::int64_t row_begin, std::int64_t row_end) {
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
        const __m256 d0 = _mm256_set1_ps(h2f(w0) * h2f(x0));
        const __m256 d1 = _mm256_set1_ps(h2f(w0 + B) * h2f(x0 + B));
        acc0 = _mm256_fmadd_ps(d0, q8_block(w0, x0), acc0);
        acc1 = _mm256_fmadd_ps(d1, q8_block(w0 + B, x0 + B), acc1);
      }
      if (b < nb) {
        const std::uint8_t* w0 = row + B * b;
        const std::uint8_t* x0 = xa + B * b;
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w0) * h2f(x0)), q8_block(w0, x0), acc0);
      }
      y[m] = hsum(_mm256_add_ps(acc0, acc1));
    }
  }

  // 8 int32 lanes whose sum is the exact sum_sub sc[sub] * sum (code-32)*q of one
  // Q6_K block (lanes cannot overflow: |lane| < 2^26).
  BITNET_TARGET_AVX2 static __m256i q6k_lanes(const std::uint8_t* blk, const block_q8_k& xb) noexcept {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + offsetof(block_q6_k, scales)));
    // sum_sub sc * bsum: the "-32" part of every code, applied once per block.
    const __m256i corr =
        _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc8), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums)));
    // int16 scales with the even subs in the low lane and the odd subs in the high
    // lane, so one in-lane word broadcast gives [sc[2i] x8 | sc[2i+1] x8].
    const __m256i sc_eo = _mm256_cvtepi8_epi16(
        _mm_shuffle_epi8(sc8, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)));
    __m256i acc0 = _mm256_slli_epi32(corr, 5), acc1 = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const std::uint8_t* ql = blk + 64 * h;
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h));
      const __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
      const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
      const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30));
      const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                         _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
      const std::int8_t* a = xb.qs + 128 * h;
      const __m256i p0 = _mm256_maddubs_epi16(q0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a)));
      const __m256i p1 = _mm256_maddubs_epi16(q1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32)));
      const __m256i p2 = _mm256_maddubs_epi16(q2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 64)));
      const __m256i p3 = _mm256_maddubs_epi16(q3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 96)));
      // word index of sc[8h + 2k] within each lane of sc_eo is 4h + k
      const int w0 = 4 * h;
      const __m256i s0 =
          _mm256_shuffle_epi8(sc_eo, _mm256_set1_epi16(static_cast<short>(((2 * w0 + 1) << 8) | (2 * w0))));
      const __m256i s1 =
          _mm256_shuffle_epi8(sc_eo, _mm256_set1_epi16(static_cast<short>(((2 * w0 + 3) << 8) | (2 * w0 + 2))));
      const __m256i s2 =
          _mm256_shuffle_epi8(sc_eo, _mm256_set1_epi16(static_cast<short>(((2 * w0 + 5) << 8) | (2 * w0 + 4))));
      const __m256i s3 =
          _mm256_shuffle_epi8(sc_eo, _mm256_set1_epi16(static_cast<short>(((2 * w0 + 7) << 8) | (2 * w0 + 6))));
      acc0 = _mm256_sub_epi32(acc0, _mm256_add_epi32(_mm256_madd_epi16(p0, s0), _mm256_madd_epi16(p1, s1)));
      acc1 = _mm256_add_epi32(acc1, _mm256_add_epi32(_mm256_madd_epi16(p2, s2), _mm256_madd_epi16(p3, s3)));
    }
    return _mm256_sub_epi32(acc1, acc0);  // (codes . q) - 32 * (sc . bsums)
  }

  // S rows at once, four blocks at a time: S far-apart streams (see gemv_q6k_q8k). Each row's
  // terms are summed in the same order as one row alone.
  template <int S>
  BITNET_TARGET_AVX2 static void q6k_rows(const std::uint8_t* const* rows, const block_q8_k* x, std::int64_t nb,
                                          float* const* out) noexcept {
    constexpr std::size_t B = sizeof(block_q6_k);
    constexpr std::size_t D = offsetof(block_q6_k, d);
    // Lane i of acc[r] accumulates the terms of blocks b = i (mod 4); each term is
    // (float)(fp16(dw) * dx) * (float)isum with the exact int32 isum of the block.
    __m128 acc[S];
    for (int r = 0; r < S; ++r) acc[r] = _mm_setzero_ps();
    std::int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
      const __m128 dx = _mm_setr_ps(x[b].d, x[b + 1].d, x[b + 2].d, x[b + 3].d);
      for (int r = 0; r < S; ++r) {
        const std::uint8_t* blk = rows[r] + B * b;
        for (std::size_t pf = 0; pf < 4 * B; pf += 64)
          _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchQ6K + pf), _MM_HINT_T0);
        const __m256i v0 = q6k_lanes(blk, x[b]), v1 = q6k_lanes(blk + B, x[b + 1]);
        const __m256i v2 = q6k_lanes(blk + 2 * B, x[b + 2]), v3 = q6k_lanes(blk + 3 * B, x[b + 3]);
        // 4 x 8 lanes -> [isum0 isum1 isum2 isum3]
        const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v0, v1), _mm256_hadd_epi32(v2, v3));
        const __m128i is = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        std::uint16_t d16[4];
        for (int i = 0; i < 4; ++i) std::memcpy(&d16[i], blk + B * static_cast<std::size_t>(i) + D, 2);
        const __m128 dw =
            _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(d16[0]), static_cast<short>(d16[1]),
                                        static_cast<short>(d16[2]), static_cast<short>(d16[3]), 0, 0, 0, 0));
        acc[r] = _mm_add_ps(acc[r], _mm_mul_ps(_mm_mul_ps(dw, dx), _mm_cvtepi32_ps(is)));
      }
    }
    for (int r = 0; r < S; ++r) {
      alignas(16) float s[4];
      _mm_store_ps(s, acc[r]);
      for (std::int64_t bt = b; bt < nb; ++bt) {
        const std::uint8_t* blk = rows[r] + B * bt;
        const float d = h2f(blk + D) * x[bt].d;
        s[bt & 3] += d * static_cast<float>(hsum_i32(q6k_lanes(blk, x[bt])));
      }
      *out[r] = (s[0] + s[1]) + (s[2] + s[3]);
    }
  }

  // Rows are visited as S far-apart streams (rows m, m + n/S, ... together, then the remainder
  // one by one): one stream leaves memory-level parallelism unused. 2B4T Q6_K head from huge
  // pages: 13.9 GB/s with one stream, 15.0 with two.
  BITNET_TARGET_AVX2 static void gemv_q6k_q8k(const void* W, std::size_t row_bytes, const block_q8_k* x,
                                   std::int64_t K, float* y, std::int64_t row_begin, std::int64_t row_end) {
    const std::int64_t nb = K / kQK_K;
    for_each_stream_rows<2>(W, row_bytes, y, row_begin, row_end,
                            [&]<int N>(const std::uint8_t* const* rows, float* const* out) {
                              q6k_rows<N>(rows, x, nb, out);
                            });
  }

};

}  // namespace bitnet::detail::dense

#endif  // BITNET_X86
