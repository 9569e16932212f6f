// bitnet/activation.hpp - int8 activation quantization for the ternary kernels.
//
// Two schemes, as the spec gives them (ternary-formats.md 1.4 and 2.3):
//   per_token  (bitnet.cpp I8_S, what BitNet b1.58 was trained with):
//              amax = max(1e-5, max|x|) in double, s = float(127 / amax),
//              q = clamp(rne(x * s), -128, 127); sum_q = sum of q.
//              Result: y = ((float)dot(c, q) - (float)sum_q) / s * s_w.
//   per_block  (ggml Q8_K, used by the TQ1_0 / TQ2_0 dot products), per 256:
//              vmax = first x with the largest |x|; iscale = -127 / vmax;
//              q = min(127, rne(iscale * x)); d = 1 / iscale; all-zero block: d = 0.
//              Result: y = sum over blocks of (float)dot_blk * (d_w * d).
// An `activations` object holds N quantized rows, each padded with zeros to a
// multiple of 256 (so every kernel block size reads in bounds) and 64-byte
// aligned. Buffers only grow: re-quantizing per token allocates nothing.
#pragma once

#include <algorithm>  // std::max, std::min
#include <cmath>      // std::nearbyint, std::fabs
#include <cstdint>    // fixed-width integers
#include <cstdlib>    // std::aligned_alloc, std::free
#include <cstring>    // std::memset, std::memcpy
#include <memory>     // std::unique_ptr
#include <new>        // std::bad_alloc
#include <stdexcept>  // errors
#include <string>     // error text
#include <vector>     // scales and sums

#if defined(__linux__)
#include <sys/mman.h>  // madvise(MADV_HUGEPAGE)
#endif

#include "arch.hpp"  // BITNET_X86

#if BITNET_X86
#include <immintrin.h>  // the AVX2 per-token quantizer
#endif

namespace bitnet {

namespace detail {
inline constexpr std::size_t kHugePage = std::size_t{2} << 20;

// Buffers of at least one huge page start on a 2 MiB boundary, and their whole
// 2 MiB pages are advised for transparent huge pages (Linux; a hint, errors ignored;
// the tail stays in small pages, so no memory is added). Streaming weights through
// 4 KiB pages costs a TLB miss per page and stops the hardware prefetchers at every
// page boundary: a DRAM-bound GEMV reads up to 1.5x faster from huge pages here.
inline void* alloc_aligned_bytes(std::size_t bytes) {
  const bool huge = bytes >= kHugePage;
  // aligned_alloc wants a size that is a multiple of the alignment (ASan enforces it): round
  // up. The rounded tail is never touched, so it costs address space, not memory.
  const std::size_t align = huge ? kHugePage : 64;
  void* p = std::aligned_alloc(align, (bytes + align - 1) / align * align);
  if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (huge) ::madvise(p, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);
#endif
  return p;
}
}  // namespace detail

// A 64-byte aligned (2 MiB when large; see alloc_aligned_bytes), zero-initialised,
// growable buffer of trivially copyable T.
template <class T> class aligned_buffer {
 public:
  aligned_buffer() = default;
  explicit aligned_buffer(std::size_t n) { resize(n); }
  // Grows capacity if needed (contents are not preserved on growth) and zero-fills.
  void resize(std::size_t n) {
    if (n > cap_) {
      const std::size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
      ptr_.reset(static_cast<T*>(detail::alloc_aligned_bytes(bytes == 0 ? 64 : bytes)));
      cap_ = n;
    }
    size_ = n;
    if (n) std::memset(static_cast<void*>(ptr_.get()), 0, n * sizeof(T));
  }
  aligned_buffer clone() const {
    aligned_buffer b(size_);
    if (size_) std::memcpy(static_cast<void*>(b.data()), static_cast<const void*>(data()), size_ * sizeof(T));
    return b;
  }
  T* data() noexcept { return ptr_.get(); }
  const T* data() const noexcept { return ptr_.get(); }
  std::size_t size() const noexcept { return size_; }
  T& operator[](std::size_t i) noexcept { return ptr_.get()[i]; }
  const T& operator[](std::size_t i) const noexcept { return ptr_.get()[i]; }

 private:
  struct deleter {
    void operator()(T* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<T, deleter> ptr_;
  std::size_t size_ = 0, cap_ = 0;
};

enum class act_quant : std::uint8_t { per_token, per_block };

inline constexpr std::int64_t kActPad = 256;  // every row is padded to a multiple of this

inline constexpr std::int64_t pad_to(std::int64_t k, std::int64_t m) noexcept { return (k + m - 1) / m * m; }

// Round to nearest, ties to even, as ggml's nearest_int: adding 1.5 * 2^23 leaves
// the rounded integer in the low mantissa bits (exact for |v| < 2^22; the
// quantizers only pass |v| <= 128 + rounding). Plain arithmetic, so it
// vectorizes and needs no SSE4.1 or call to nearbyint.
inline int rne(float v) noexcept {
  const float f = v + 12582912.0f;
  std::int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return (i & 0x007FFFFF) - 0x00400000;
}

namespace detail {
// The per-token quantizer's steps, shared by quantize_row_i8s and the AVX2 body below.
// max |x| is taken as the largest sign-cleared bit pattern: for non-NaN floats the order of
// those patterns as integers is the order of |x|, and an integer max reduction vectorizes (a
// float one does not without -ffast-math; it was a scalar max chain, about 1% of a 2B4T
// decode). NaNs are capped at +inf, where the float max used to skip them: garbage in either case.
inline std::uint32_t abs_bits(float v) noexcept {
  std::uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return std::min(b & 0x7FFFFFFFu, 0x7F800000u);
}
// s = float(127 / max(amax, 1e-5)), amax in double, from the largest abs_bits.
inline float per_token_scale(std::uint32_t abits) noexcept {
  float af;
  std::memcpy(&af, &abits, sizeof af);
  return static_cast<float>(127.0 / std::max(static_cast<double>(af), 1e-5));
}
// q = clamp(rne(x * s), -128, 127).
inline int quantize_i8s(float x, float s) noexcept { return std::min(127, std::max(-128, rne(x * s))); }
}  // namespace detail

// Quantize one row, per token. Writes q[0..K), returns the scale, sets sum.
inline float quantize_row_i8s(const float* x, std::int64_t K, std::int8_t* q, std::int32_t& sum) noexcept {
  std::uint32_t abits = 0;
  for (std::int64_t k = 0; k < K; ++k) abits = std::max(abits, detail::abs_bits(x[k]));
  const float s = detail::per_token_scale(abits);
  std::int32_t acc = 0;
  for (std::int64_t k = 0; k < K; ++k) {
    const int v = detail::quantize_i8s(x[k], s);
    q[k] = static_cast<std::int8_t>(v);
    acc += v;
  }
  sum = acc;
  return s;
}

namespace detail {
// Sum of q over each 256-block of a zero-padded row of Kp bytes (Kp a multiple of 256).
inline void block_sums_i8(const std::int8_t* q, std::int64_t Kp, std::int32_t* bsum) noexcept {
  for (std::int64_t b = 0; b < Kp / 256; ++b) {
    std::int32_t bs = 0;
    for (int j = 0; j < 256; ++j) bs += q[256 * b + j];
    bsum[b] = bs;
  }
}

#if BITNET_X86
// quantize_row_i8s and block_sums_i8 in one AVX2 pass over the row after the absmax one,
// with the same bits for finite x (the integer max is the same max; _mm256_cvtps_epi32 rounds
// x * s to nearest even under the default MXCSR, as rne does for these magnitudes; the product
// is a separate multiply in both, so nothing is contracted into an FMA). q must hold Kp >= K
// bytes whose tail [K, Kp) is already zero; bsum gets Kp / 256 sums. It runs serially between
// the GEMVs of a decode step; in a 2B4T decode profile it takes a sixth of the time of the SSE2
// code the portable loops compile to in a baseline build.
__attribute__((target("avx2"))) inline float quantize_row_i8s_avx2(const float* x, std::int64_t K, std::int64_t Kp,
                                                                    std::int8_t* q, std::int32_t& sum,
                                                                    std::int32_t* bsum) noexcept {
  const __m256i sign_off = _mm256_set1_epi32(0x7FFFFFFF), inf_bits = _mm256_set1_epi32(0x7F800000);
  __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
  std::int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m256i a = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + k)), sign_off);
    const __m256i b = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + k + 8)), sign_off);
    m0 = _mm256_max_epu32(m0, _mm256_min_epu32(a, inf_bits));
    m1 = _mm256_max_epu32(m1, _mm256_min_epu32(b, inf_bits));
  }
  m0 = _mm256_max_epu32(m0, m1);
  __m128i m = _mm_max_epu32(_mm256_castsi256_si128(m0), _mm256_extracti128_si256(m0, 1));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4E));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xB1));
  std::uint32_t abits = static_cast<std::uint32_t>(_mm_cvtsi128_si32(m));
  for (; k < K; ++k) abits = std::max(abits, abs_bits(x[k]));
  const float s = per_token_scale(abits);

  const __m256 vs = _mm256_set1_ps(s);
  const __m256i lo = _mm256_set1_epi32(-128), hi = _mm256_set1_epi32(127);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // undoes the packs' lane interleave
  const auto q8 = [&](std::int64_t i) __attribute__((always_inline, target("avx2"))) {
    const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
    return _mm256_max_epi32(_mm256_min_epi32(v, hi), lo);
  };
  std::int32_t total = 0;
  for (std::int64_t b0 = 0; b0 < Kp; b0 += 256) {
    const std::int64_t e = std::min(K, b0 + 256);
    __m256i acc = _mm256_setzero_si256();
    std::int64_t i = b0;
    for (; i + 32 <= e; i += 32) {
      const __m256i v0 = q8(i), v1 = q8(i + 8), v2 = q8(i + 16), v3 = q8(i + 24);
      acc = _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_add_epi32(v0, v1), _mm256_add_epi32(v2, v3)));
      const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v0, v1), _mm256_packs_epi32(v2, v3));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_permutevar8x32_epi32(p, order));
    }
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
    std::int32_t bs = _mm_cvtsi128_si32(h);
    for (; i < e; ++i) {
      const int v = quantize_i8s(x[i], s);
      q[i] = static_cast<std::int8_t>(v);
      bs += v;
    }
    bsum[b0 / 256] = bs;
    total += bs;
  }
  sum = total;
  return s;
}
#endif
}  // namespace detail

// Quantize one 256-block the Q8_K way. Returns d; sets the block's sum of q.
inline float quantize_block_q8k(const float* x, std::int8_t* q, std::int32_t& sum) noexcept {
  float amax = 0.0f, vmax = 0.0f;
  for (int j = 0; j < 256; ++j) {
    const float a = std::fabs(x[j]);
    if (a > amax) {
      amax = a;
      vmax = x[j];
    }
  }
  sum = 0;
  if (amax == 0.0f) {
    std::memset(q, 0, 256);
    return 0.0f;
  }
  const float iscale = -127.0f / vmax;
  for (int j = 0; j < 256; ++j) {
    const int v = std::min(127, rne(iscale * x[j]));
    q[j] = static_cast<std::int8_t>(v);
    sum += v;
  }
  return 1.0f / iscale;
}

// N quantized activation rows.
class activations {
 public:
  // Quantize N rows of K floats (row n at x + n*ldx).
  void quantize(const float* x, std::int64_t N, std::int64_t K, std::int64_t ldx, act_quant mode) {
    if (N <= 0 || K <= 0) throw std::invalid_argument("activations: N and K must be positive");
    if (mode == act_quant::per_block && K % 256 != 0)
      throw std::invalid_argument("activations: per-block (Q8_K) quantization needs K to be a multiple of 256, got K=" +
                                  std::to_string(K));
    mode_ = mode;
    N_ = N;
    K_ = K;
    Kp_ = pad_to(K, kActPad);
    q_.resize(static_cast<std::size_t>(N * Kp_));
    sums_.resize(static_cast<std::size_t>(N));
    scales_.resize(static_cast<std::size_t>(N));
    const std::int64_t nb = Kp_ / 256;
    bd_.resize(static_cast<std::size_t>(N * nb));
    bsum_.resize(static_cast<std::size_t>(N * nb));
    for (std::int64_t n = 0; n < N; ++n) {
      std::int8_t* qn = q_.data() + n * Kp_;
      const float* xn = x + n * ldx;
      if (mode == act_quant::per_token) {
        std::fill_n(bd_.data() + n * nb, nb, 0.0f);
#if BITNET_X86
        if (__builtin_cpu_supports("avx2")) {
          scales_[n] = detail::quantize_row_i8s_avx2(xn, K, Kp_, qn, sums_[n], bsum_.data() + n * nb);
          continue;
        }
#endif
        scales_[n] = quantize_row_i8s(xn, K, qn, sums_[n]);
        detail::block_sums_i8(qn, Kp_, bsum_.data() + n * nb);
      } else {
        std::int32_t total = 0;
        for (std::int64_t b = 0; b < nb; ++b) {
          bd_[n * nb + b] = quantize_block_q8k(xn + 256 * b, qn + 256 * b, bsum_[n * nb + b]);
          total += bsum_[n * nb + b];
        }
        sums_[n] = total;
        scales_[n] = 0.0f;
      }
    }
  }

  act_quant mode() const noexcept { return mode_; }
  std::int64_t rows() const noexcept { return N_; }
  std::int64_t K() const noexcept { return K_; }
  std::int64_t padded_K() const noexcept { return Kp_; }
  const std::int8_t* q(std::int64_t n) const noexcept { return q_.data() + n * Kp_; }
  std::int8_t* mutable_q(std::int64_t n) noexcept { return q_.data() + n * Kp_; }
  float scale(std::int64_t n) const noexcept { return scales_[n]; }  // per_token s_x
  std::int32_t sum(std::int64_t n) const noexcept { return sums_[n]; }
  // Per 256-block: Q8_K scale d (per_block mode; 0 in per_token mode) and sum of q (both modes).
  const float* block_d(std::int64_t n) const noexcept { return bd_.data() + n * (Kp_ / 256); }
  const std::int32_t* block_sum(std::int64_t n) const noexcept { return bsum_.data() + n * (Kp_ / 256); }

 private:
  act_quant mode_ = act_quant::per_token;
  std::int64_t N_ = 0, K_ = 0, Kp_ = 0;
  aligned_buffer<std::int8_t> q_;
  std::vector<std::int32_t> sums_;
  std::vector<float> scales_;
  std::vector<float> bd_;
  std::vector<std::int32_t> bsum_;
};

}  // namespace bitnet
