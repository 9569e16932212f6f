// bitnet/runner/attention.hpp - the forward pass's per-row loops: RMSNorm and attention.
//
// RMSNorm as ggml; the attention inner loops (dot products of a query with cached keys, the
// weighted sum of cached values) in f32 or f16 rows, portable or AVX2/FMA/F16C, chosen once per
// session from the ternary kernels' arch. Session and tests use them; they are in a header so
// the tests can check them against a double sum.
#pragma once

#include <algorithm>    // std::fill
#include <cmath>        // std::sqrt
#include <cstdint>      // fixed-width integers
#include <string_view>  // arch names

#include <bitnet/arch.hpp>  // BITNET_X86, target attributes, arch names
#include <bitnet/half.hpp>  // fp16 conversions

#if BITNET_X86
#include <immintrin.h>  // AVX2 / F16C attention loops
#endif

namespace bitnet::run::detail {

// RMSNorm as ggml: float squares summed in double, mean stored as float, 1/sqrtf(mean + eps),
// x * scale, then * g (separate rounding steps). y may alias x. The double sum runs in four
// fixed lanes (ggml sums sequentially; in double the two agree far below the float mean).
inline void rms_norm(const float* x, const float* g, float* y, std::int64_t n, float eps) noexcept {
  double lane[4] = {0.0, 0.0, 0.0, 0.0};
  std::int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; ++l) lane[l] += static_cast<double>(x[i + l] * x[i + l]);
  for (; i < n; ++i) lane[0] += static_cast<double>(x[i] * x[i]);
  const double sum = (lane[0] + lane[1]) + (lane[2] + lane[3]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = x[i] * scale;
    y[i] = v * g[i];
  }
}

// Attention inner loops over one head's cached rows, n positions of hd values each:
// dots    s_j = q · k_j for j < n;
// wsum    o = sum_j a_j v_j (o overwritten).
// Rows are f32 or f16 (kv_type). Portable versions keep 8 independent lanes (they vectorize
// without reassociation flags); on x86 CPUs with AVX2 the kernels below use FMA and F16C,
// with four positions' dot products in flight and the output held in registers across all
// positions (per position, the same arithmetic as a one-row dot and axpy). Whichever is
// chosen is used for every query of a session, so results do not depend on the batch or the
// thread count.
inline float kv_value(float v) noexcept { return v; }
inline float kv_value(std::uint16_t v) noexcept { return fp16_to_f32(v); }

template <class T> float dot_portable(const float* q, const T* k, std::int64_t n) noexcept {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += q[i + l] * kv_value(k[i + l]);
  float tail = 0.0f;
  for (; i < n; ++i) tail += q[i] * kv_value(k[i]);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

template <class T> void dots_portable(const float* q, const T* K, std::int64_t n, std::int64_t hd, float* s) noexcept {
  for (std::int64_t j = 0; j < n; ++j) s[j] = dot_portable(q, K + j * hd, hd);
}

template <class T> void wsum_portable(const float* a, const T* V, std::int64_t n, std::int64_t hd, float* o) noexcept {
  std::fill(o, o + hd, 0.0f);
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t i = 0; i < hd; ++i) o[i] += a[j] * kv_value(V[j * hd + i]);
}

#if BITNET_X86
BITNET_TARGET_AVX2 inline __m256 load8(const float* p) noexcept { return _mm256_loadu_ps(p); }
BITNET_TARGET_AVX2 inline __m256 load8(const std::uint16_t* p) noexcept {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// q · k for P rows k_0 .. k_{P-1} (hd apart): two accumulators per row (16 values per step),
// then a fixed reduction of each, so every row's result is the same for any P.
template <int P, class T>
BITNET_TARGET_AVX2 inline void dot_rows_avx2(const float* q, const T* k, std::int64_t hd, float* out) noexcept {
  __m256 a0[P], a1[P];
  for (int r = 0; r < P; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  std::int64_t i = 0;
  for (; i + 16 <= hd; i += 16) {
    const __m256 q0 = _mm256_loadu_ps(q + i), q1 = _mm256_loadu_ps(q + i + 8);
    for (int r = 0; r < P; ++r) {
      a0[r] = _mm256_fmadd_ps(q0, load8(k + r * hd + i), a0[r]);
      a1[r] = _mm256_fmadd_ps(q1, load8(k + r * hd + i + 8), a1[r]);
    }
  }
  const bool eight = i + 8 <= hd;
  if (eight)
    for (int r = 0; r < P; ++r) a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k + r * hd + i), a0[r]);
  for (int r = 0; r < P; ++r) {
    const __m256 a = _mm256_add_ps(a0[r], a1[r]);
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    float sum = _mm_cvtss_f32(v);
    for (std::int64_t t = eight ? i + 8 : i; t < hd; ++t) sum += q[t] * kv_value(k[r * hd + t]);
    out[r] = sum;
  }
}

template <class T>
BITNET_TARGET_AVX2 void dots_avx2(const float* q, const T* K, std::int64_t n, std::int64_t hd, float* s) noexcept {
  std::int64_t j = 0;
  for (; j + 4 <= n; j += 4) dot_rows_avx2<4>(q, K + j * hd, hd, s + j);
  for (; j < n; ++j) dot_rows_avx2<1>(q, K + j * hd, hd, s + j);
}

// o[d0 .. d0 + 8C) = sum_j a_j v_j over that slice, C accumulators held across all n rows.
template <int C, class T>
BITNET_TARGET_AVX2 inline void wsum_slice_avx2(const float* a, const T* V, std::int64_t n, std::int64_t hd,
                                               std::int64_t d0, float* o) noexcept {
  __m256 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
  for (std::int64_t j = 0; j < n; ++j) {
    const __m256 w = _mm256_broadcast_ss(a + j);
    for (int c = 0; c < C; ++c) acc[c] = _mm256_fmadd_ps(w, load8(V + j * hd + d0 + 8 * c), acc[c]);
  }
  for (int c = 0; c < C; ++c) _mm256_storeu_ps(o + d0 + 8 * c, acc[c]);
}

template <class T>
BITNET_TARGET_AVX2 void wsum_avx2(const float* a, const T* V, std::int64_t n, std::int64_t hd, float* o) noexcept {
  std::int64_t d = 0;
  for (; d + 64 <= hd; d += 64) wsum_slice_avx2<8>(a, V, n, hd, d, o);
  for (; d + 8 <= hd; d += 8) wsum_slice_avx2<1>(a, V, n, hd, d, o);
  for (; d < hd; ++d) {
    float acc = 0.0f;
    for (std::int64_t j = 0; j < n; ++j) acc += a[j] * kv_value(V[j * hd + d]);
    o[d] = acc;
  }
}
#endif

template <class T> struct attn_kernels {
  void (*dots)(const float*, const T*, std::int64_t, std::int64_t, float*) noexcept;
  void (*wsum)(const float*, const T*, std::int64_t, std::int64_t, float*) noexcept;
};

// AVX2 bodies when the ternary kernels' arch implies AVX2 (so --kernel-arch scalar also
// makes attention portable), else the portable loops.
template <class T> attn_kernels<T> select_attn_kernels([[maybe_unused]] std::string_view arch) noexcept {
#if BITNET_X86
  if (arch == arch::avx2::name || arch == arch::avx512bw::name || arch == arch::avx512vnni::name)
    return {&dots_avx2<T>, &wsum_avx2<T>};
#endif
  return {&dots_portable<T>, &wsum_portable<T>};
}


}  // namespace bitnet::run::detail
