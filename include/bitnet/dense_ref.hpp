// bitnet/dense_ref.hpp - non-ternary weight formats used for the embedding and the
// output head (F32, F16, BF16, Q8_0, Q6_K), their activation forms (F16-rounded f32,
// Q8_0, Q8_K), exact dequantization, quantizers, and the portable scalar GEMV
// kernels every SIMD path is tested against.
//
// Contract
// * Layouts are ggml's (shared/spec gguf.md 7.3): a row of K logical values is
//   K/block consecutive blocks, with no padding. Weight bytes may sit at any
//   address: kernels and dequantizers read them byte-wise (memcpy / unaligned
//   loads) and never form a misaligned block pointer.
// * Q8_0 (34 B / 32): x[j] = fp16(d) * qs[j].
// * Q6_K (210 B / 256): two halves of 128; in half h, for l < 32 the 4 low bits of
//   the codes of elements 128h+l, 128h+l+32, 128h+l+64, 128h+l+96 are the low
//   nibble of ql[64h+l], the low nibble of ql[64h+l+32], the high nibble of
//   ql[64h+l] and the high nibble of ql[64h+l+32]; their 2 high bits are bits
//   0-1, 2-3, 4-5 and 6-7 of qh[32h+l]. value = fp16(d) * scales[i/16] * (code - 32),
//   scales[] int8.
// * Q8_K (activation only, 292 B / 256): f32 d, int8 qs, int16 bsums[16] (sums of
//   qs over 16-element groups).
// * Activation quantization follows ggml's reference quantizers (ggml's x86 SIMD
//   Q8_0 path uses 127/amax and ties-to-even instead, which can differ by one step
//   in rare ties):
//   Q8_0:  per 32, amax = max|x|, d = amax/127, id = d ? 1/d : 0,
//          q = roundf(x*id) (ties away from zero), stored d = fp16(d).
//   Q8_K:  per 256, vmax = the first x with the largest |x|, iscale = -127/vmax,
//          q = min(127, nearest-even(iscale*x)), d = 1/iscale; all-zero block -> d = 0.
//   F16 weights: x is rounded to fp16 once (round to nearest even) and kept as the
//          exact f32 value of that fp16, so fp16*fp16 products are exact in f32.
//   F32 and BF16 weights use x unchanged (ggml would round x to BF16 for BF16
//   weights; we keep full f32 activations there).
// * The int32 sum per block (Q8_0: sum qw*qx; Q6_K: sum_sub sc * sum (code-32)*qx)
//   is exact in every kernel. Floats: y[m] = sum over blocks of
//   (dw*dx) * float(isum), accumulated in f32; SIMD paths sum in lanes, so the
//   order (not the per-block integer) differs between arches.
// * Activation q8 values must lie in [-127, 127] (the quantizers above guarantee
//   it; the x86 Q8_0 bodies form |w| * sign(w)*a, which needs -a to fit in int8);
//   weight q8 values may use -128.
// * Inputs to the quantizers should be finite; non-finite values are mapped to
//   something harmless (never UB), not to a meaningful encoding.
#pragma once

#include <algorithm>  // std::min, std::max, std::clamp
#include <bit>        // std::endian
#include <cmath>      // std::fabs, std::round, std::nearbyint, std::isfinite
#include <cstddef>    // std::size_t, offsetof
#include <cstdint>    // fixed-width integers
#include <cstring>    // std::memcpy for unaligned reads
#include <stdexcept>  // std::invalid_argument
#include <string>     // error messages

#include "half.hpp"
#include "types.hpp"

namespace bitnet {

static_assert(std::endian::native == std::endian::little, "GGUF block layouts are read as little-endian");

inline constexpr std::int64_t kQK8_0 = 32;  // Q8_0 block
inline constexpr std::int64_t kQK_K = 256;  // Q6_K / Q8_K super-block

struct block_q8_0 {
  std::uint16_t d;  // fp16 scale
  std::int8_t qs[32];
};
static_assert(sizeof(block_q8_0) == 34 && offsetof(block_q8_0, qs) == 2);

struct block_q6_k {
  std::uint8_t ql[128];    // low 4 bits of the codes
  std::uint8_t qh[64];     // high 2 bits of the codes
  std::int8_t scales[16];  // one int8 scale per 16 values
  std::uint16_t d;         // fp16 super-block scale
};
static_assert(sizeof(block_q6_k) == 210 && offsetof(block_q6_k, qh) == 128 && offsetof(block_q6_k, scales) == 192 &&
              offsetof(block_q6_k, d) == 208);

struct block_q8_k {
  float d;
  std::int8_t qs[256];
  std::int16_t bsums[16];  // sum of qs[16g .. 16g+15]
};
static_assert(sizeof(block_q8_k) == 292 && offsetof(block_q8_k, qs) == 4 && offsetof(block_q8_k, bsums) == 260);

namespace detail::dense {

inline std::uint16_t rd_u16(const std::uint8_t* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline float rd_f32(const std::uint8_t* p) noexcept {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

// float -> int with NaN mapped to 0 and the result clamped to [lo, hi], so that
// a hostile input never reaches an out-of-range float->int conversion.
inline int clamp_to_int(float v, int lo, int hi) noexcept {
  if (!(v == v)) return 0;
  if (v <= static_cast<float>(lo)) return lo;
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int>(v);
}

// Decode the 256 codes of one Q6_K block into q[i] = code - 32 (spec gguf.md 7.3).
inline void q6k_decode(const std::uint8_t* blk, std::int8_t* q) noexcept {
  for (int h = 0; h < 2; ++h) {
    const std::uint8_t* ql = blk + 64 * h;
    const std::uint8_t* qh = blk + 128 + 32 * h;
    std::int8_t* o = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      const int q1 = (ql[l] & 15) | (((qh[l] >> 0) & 3) << 4);
      const int q2 = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
      const int q3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
      const int q4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
      o[l] = static_cast<std::int8_t>(q1 - 32);
      o[l + 32] = static_cast<std::int8_t>(q2 - 32);
      o[l + 64] = static_cast<std::int8_t>(q3 - 32);
      o[l + 96] = static_cast<std::int8_t>(q4 - 32);
    }
  }
}

inline void check_row_k(const char* what, std::int64_t k, std::int64_t block) {
  if (k < 0 || k % block != 0)
    throw std::invalid_argument(std::string(what) + ": k=" + std::to_string(k) +
                                " must be a non-negative multiple of " + std::to_string(block));
}

}  // namespace detail::dense

// ---------------------------------------------------------------- Q6_K block codec

// Pack codes q[i] in [-32, 31] (clamped), int8 sub-scales and an fp16 d into one
// block, in the spec's bit layout.
inline void pack_q6_k(const std::int8_t* q, const std::int8_t* scales, std::uint16_t d, block_q6_k& out) noexcept {
  auto code = [&](int i) { return static_cast<unsigned>(std::clamp<int>(q[i], -32, 31) + 32); };
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const int b = 128 * h + l;
      const unsigned c0 = code(b), c1 = code(b + 32), c2 = code(b + 64), c3 = code(b + 96);
      out.ql[64 * h + l] = static_cast<std::uint8_t>((c0 & 15u) | ((c2 & 15u) << 4));
      out.ql[64 * h + l + 32] = static_cast<std::uint8_t>((c1 & 15u) | ((c3 & 15u) << 4));
      out.qh[32 * h + l] =
          static_cast<std::uint8_t>((c0 >> 4) | ((c1 >> 4) << 2) | ((c2 >> 4) << 4) | ((c3 >> 4) << 6));
    }
  }
  for (int j = 0; j < 16; ++j) out.scales[j] = scales[j];
  out.d = d;
}

// Codes of one block as q[i] = code - 32, i in [0, 256).
inline void unpack_q6_k(const block_q6_k& b, std::int8_t* q) noexcept {
  detail::dense::q6k_decode(reinterpret_cast<const std::uint8_t*>(&b), q);
}

// ---------------------------------------------------------------- dequantization
// src may be at any address. k = number of logical values.

inline void dequantize_row_f32(const void* src, float* y, std::int64_t k) {
  detail::dense::check_row_k("dequantize_row_f32", k, 1);
  std::memcpy(y, src, static_cast<std::size_t>(k) * 4);
}

inline void dequantize_row_f16(const void* src, float* y, std::int64_t k) {
  detail::dense::check_row_k("dequantize_row_f16", k, 1);
  const auto* p = static_cast<const std::uint8_t*>(src);
  for (std::int64_t i = 0; i < k; ++i) y[i] = fp16_to_f32(detail::dense::rd_u16(p + 2 * i));
}

inline void dequantize_row_bf16(const void* src, float* y, std::int64_t k) {
  detail::dense::check_row_k("dequantize_row_bf16", k, 1);
  const auto* p = static_cast<const std::uint8_t*>(src);
  for (std::int64_t i = 0; i < k; ++i) y[i] = bf16_to_f32(detail::dense::rd_u16(p + 2 * i));
}

inline void dequantize_row_q8_0(const void* src, float* y, std::int64_t k) {
  detail::dense::check_row_k("dequantize_row_q8_0", k, kQK8_0);
  const auto* p = static_cast<const std::uint8_t*>(src);
  for (std::int64_t b = 0; b < k / kQK8_0; ++b, p += sizeof(block_q8_0)) {
    const float d = fp16_to_f32(detail::dense::rd_u16(p));
    for (int j = 0; j < 32; ++j) y[32 * b + j] = d * static_cast<float>(static_cast<std::int8_t>(p[2 + j]));
  }
}

// As ggml: y = d * sc * q, evaluated left to right in f32 (the product by q can round).
inline void dequantize_row_q6_k(const void* src, float* y, std::int64_t k) {
  detail::dense::check_row_k("dequantize_row_q6_k", k, kQK_K);
  const auto* p = static_cast<const std::uint8_t*>(src);
  std::int8_t q[256];
  for (std::int64_t b = 0; b < k / kQK_K; ++b, p += sizeof(block_q6_k)) {
    detail::dense::q6k_decode(p, q);
    const float d = fp16_to_f32(detail::dense::rd_u16(p + offsetof(block_q6_k, d)));
    for (int i = 0; i < 256; ++i) {
      const auto sc = static_cast<std::int8_t>(p[offsetof(block_q6_k, scales) + i / 16]);
      y[256 * b + i] = d * static_cast<float>(sc) * static_cast<float>(q[i]);
    }
  }
}

inline bool dense_weight_type(tensor_type t) noexcept {
  return t == tensor_type::f32 || t == tensor_type::f16 || t == tensor_type::bf16 || t == tensor_type::q8_0 ||
         t == tensor_type::q6_k;
}

// Bytes of one row of k values of a dense weight type (0 for other types).
constexpr std::size_t dense_row_bytes(tensor_type t, std::int64_t k) noexcept {
  const auto n = static_cast<std::size_t>(k < 0 ? 0 : k);
  switch (t) {
    case tensor_type::f32: return 4 * n;
    case tensor_type::f16:
    case tensor_type::bf16: return 2 * n;
    case tensor_type::q8_0: return n / kQK8_0 * sizeof(block_q8_0);
    case tensor_type::q6_k: return n / kQK_K * sizeof(block_q6_k);
    default: return 0;
  }
}

// Any dense weight type. Throws std::invalid_argument for other types or a k that
// is not a multiple of the block.
inline void dequantize_row(tensor_type t, const void* src, float* y, std::int64_t k) {
  switch (t) {
    case tensor_type::f32: return dequantize_row_f32(src, y, k);
    case tensor_type::f16: return dequantize_row_f16(src, y, k);
    case tensor_type::bf16: return dequantize_row_bf16(src, y, k);
    case tensor_type::q8_0: return dequantize_row_q8_0(src, y, k);
    case tensor_type::q6_k: return dequantize_row_q6_k(src, y, k);
    default: throw std::invalid_argument("dequantize_row: unsupported type " + std::string(type_name(t)));
  }
}

// ---------------------------------------------------------------- quantizers

inline void convert_row_f16(const float* x, std::uint16_t* y, std::int64_t k) {
  detail::dense::check_row_k("convert_row_f16", k, 1);
  for (std::int64_t i = 0; i < k; ++i) y[i] = f32_to_fp16(x[i]);
}

inline void convert_row_bf16(const float* x, std::uint16_t* y, std::int64_t k) {
  detail::dense::check_row_k("convert_row_bf16", k, 1);
  for (std::int64_t i = 0; i < k; ++i) y[i] = f32_to_bf16(x[i]);
}

// The F16 activation form: y[i] = the f32 value of fp16(x[i]). In-place allowed.
inline void round_row_to_f16(const float* x, float* y, std::int64_t k) {
  detail::dense::check_row_k("round_row_to_f16", k, 1);
  for (std::int64_t i = 0; i < k; ++i) y[i] = fp16_to_f32(f32_to_fp16(x[i]));
}

// Q8_0, used for weights and for the activations of Q8_0 weights alike (ggml's
// reference quantizer: d = amax/127, q = roundf(x / d) with 1/d from the f32 d,
// d stored as fp16).
inline void quantize_row_q8_0(const float* x, block_q8_0* y, std::int64_t k) {
  detail::dense::check_row_k("quantize_row_q8_0", k, kQK8_0);
  for (std::int64_t b = 0; b < k / kQK8_0; ++b) {
    const float* xb = x + 32 * b;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    for (int j = 0; j < 32; ++j)
      y[b].qs[j] = static_cast<std::int8_t>(detail::dense::clamp_to_int(std::round(xb[j] * id), -127, 127));
  }
}

// Q8_K activations (spec ternary-formats.md 2.3), with bsums.
inline void quantize_row_q8_k(const float* x, block_q8_k* y, std::int64_t k) {
  detail::dense::check_row_k("quantize_row_q8_k", k, kQK_K);
  for (std::int64_t b = 0; b < k / kQK_K; ++b) {
    const float* xb = x + 256 * b;
    block_q8_k& o = y[b];
    float amax = 0.0f, vmax = 0.0f;
    for (int j = 0; j < 256; ++j) {
      const float a = std::fabs(xb[j]);
      if (a > amax) {
        amax = a;
        vmax = xb[j];
      }
    }
    if (amax == 0.0f || !std::isfinite(amax)) {
      o.d = 0.0f;
      std::memset(o.qs, 0, sizeof(o.qs));
      std::memset(o.bsums, 0, sizeof(o.bsums));
      continue;
    }
    const float iscale = -127.0f / vmax;
    for (int j = 0; j < 256; ++j) {
      const float v = std::nearbyint(iscale * xb[j]);  // ties to even, like ggml's nearest_int
      o.qs[j] = static_cast<std::int8_t>(detail::dense::clamp_to_int(v, -128, 127));
    }
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += o.qs[16 * g + j];
      o.bsums[g] = static_cast<std::int16_t>(s);
    }
    o.d = 1.0f / iscale;
  }
}

namespace detail::dense {

// Round to nearest, ties to even, for |v| < 2^22 (the default FP environment);
// larger or non-finite v give some value of similar magnitude / NaN, which the
// callers clamp. Much cheaper than std::nearbyint without SSE4.1.
inline float round_small(float v) noexcept {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (v + kMagic) - kMagic;
}

// Codes (as floats in [-32, 31]) for 16 values at scale s (x ~ s*q) and the
// squared error. NaN codes only arise from NaN inputs; they become 0 when stored.
inline float q6k_fit(const float* x, float s, float* q) noexcept {
  const float inv = s != 0.0f ? 1.0f / s : 0.0f;
  float err = 0.0f;
  for (int i = 0; i < 16; ++i) {
    const float v = std::min(std::max(round_small(x[i] * inv), -32.0f), 31.0f);
    q[i] = v;
    const float e = x[i] - s * v;
    err += e * e;
  }
  return err;
}

// Best float scale for one 16-value sub-block (see quantize_row_q6_k).
inline float q6k_sub_scale(const float* x) noexcept {
  float amax = 0.0f, vmax = 0.0f;
  for (int i = 0; i < 16; ++i) {
    const float a = std::fabs(x[i]);
    if (a > amax) {
      amax = a;
      vmax = x[i];
    }
  }
  if (amax == 0.0f || !std::isfinite(amax)) return 0.0f;
  float sxx = 0.0f;
  for (int i = 0; i < 16; ++i) sxx += x[i] * x[i];
  float best_err = -1.0f;
  float best = vmax / -32.0f;
  float q[16];
  // Map the largest-magnitude value to a code between -32 and -26 or between 27
  // and 31, in half steps. For each candidate's codes q the least-squares scale is
  // s = (x.q)/(q.q) with squared error x.x - (x.q)^2/(q.q); keep the best.
  for (int c = 0; c < 22; ++c) {
    const float t = c < 13 ? -32.0f + 0.5f * static_cast<float>(c) : 31.0f - 0.5f * static_cast<float>(c - 13);
    const float inv = t / vmax;
    for (int i = 0; i < 16; ++i) q[i] = std::min(std::max(round_small(x[i] * inv), -32.0f), 31.0f);
    float sxq4[4] = {}, sqq4[4] = {};  // 4 partial sums: lets the compiler use vectors
    for (int i = 0; i < 16; i += 4)
      for (int l = 0; l < 4; ++l) {
        sxq4[l] += x[i + l] * q[i + l];
        sqq4[l] += q[i + l] * q[i + l];
      }
    const float sxq = (sxq4[0] + sxq4[1]) + (sxq4[2] + sxq4[3]);
    const float sqq = (sqq4[0] + sqq4[1]) + (sqq4[2] + sqq4[3]);
    if (!(sqq > 0.0f)) continue;
    const float err = sxx - sxq * sxq / sqq;
    if (best_err < 0.0f || err < best_err) {
      best_err = err;
      best = sxq / sqq;
    }
  }
  return best;
}

}  // namespace detail::dense

// Q6_K quantizer (our own algorithm, not ggml's):
//  1. per 16-value sub-block j: for 22 candidates (the largest-|x| value mapped to
//     code -32, -31.5, ..., -26 or 31, 30.5, ..., 27) round all values to codes in
//     [-32, 31], take the least-squares scale for those codes, and keep the
//     candidate with the least squared error -> float s_j;
//  2. super-block d = fp16(max_j |s_j| / 127);
//  3. per sub-block, int8 scale sc_j = round(s_j / d), then try sc_j - 1, sc_j,
//     sc_j + 1 and keep the one whose re-rounded codes q = round(x / (d*sc))
//     (clamped to [-32, 31]) give the least squared error.
// On Gaussian data this gives about 0.0167 relative RMS error (a plain
// "largest value -> -32" choice: about 0.019); ~30 ns per weight with g++ -O2.
inline void quantize_row_q6_k(const float* x, block_q6_k* y, std::int64_t k) {
  detail::dense::check_row_k("quantize_row_q6_k", k, kQK_K);
  for (std::int64_t b = 0; b < k / kQK_K; ++b) {
    const float* xb = x + 256 * b;
    float s[16];
    float smax = 0.0f;
    for (int j = 0; j < 16; ++j) {
      s[j] = detail::dense::q6k_sub_scale(xb + 16 * j);
      smax = std::max(smax, std::fabs(s[j]));
    }
    // fp16 d saturates at 65504 (inputs beyond ~2.6e8 clip instead of becoming inf)
    const std::uint16_t d16 = f32_to_fp16(std::min(smax / 127.0f, 65504.0f));
    const float d = fp16_to_f32(d16);
    std::int8_t q[256] = {};
    std::int8_t sc[16] = {};
    for (int j = 0; j < 16; ++j) {
      if (d == 0.0f || !std::isfinite(d)) break;
      const int c0 = detail::dense::clamp_to_int(detail::dense::round_small(s[j] / d), -128, 127);
      float best_err = -1.0f;
      float tmp[16];
      for (int c = std::max(-128, c0 - 1); c <= std::min(127, c0 + 1); ++c) {
        const float err = detail::dense::q6k_fit(xb + 16 * j, d * static_cast<float>(c), tmp);
        if (best_err < 0.0f || err < best_err) {
          best_err = err;
          sc[j] = static_cast<std::int8_t>(c);
          for (int i = 0; i < 16; ++i)
            q[16 * j + i] = static_cast<std::int8_t>(detail::dense::clamp_to_int(tmp[i], -32, 31));
        }
      }
    }
    pack_q6_k(q, sc, (d == 0.0f || !std::isfinite(d)) ? std::uint16_t{0} : d16, y[b]);
  }
}

// ---------------------------------------------------------------- scalar kernels
//
// Row-range GEMV: y[m] = dot(row m of W, x) for m in [row_begin, row_end); row m
// starts at W + m*row_bytes. x is the activation form of the weight type (see
// the contract at the top). These are the reference the SIMD paths are tested
// against; F32/F16/BF16 keep 8 partial sums (element j goes to sum j % 8).

namespace detail::dense {

struct scalar_kernels {
  static void gemv_f32_f32(const void* W, std::size_t row_bytes, const float* x, std::int64_t K, float* y,
                           std::int64_t row_begin, std::int64_t row_end) {
    for (std::int64_t m = row_begin; m < row_end; ++m) {
      const auto* row = static_cast<const std::uint8_t*>(W) + static_cast<std::size_t>(m) * row_bytes;
      float acc[8] = {};
      for (std::int64_t j = 0; j < K; ++j) acc[j & 7] += rd_f32(row + 4 * j) * x[j];
      y[m] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
  }
  static void gemv_f16_f32(const void* W, std::size_t row_bytes, const float* x, std::int64_t K, float* y,
                           std::int64_t row_begin, std::int64_t row_end) {
    for (std::int64_t m = row_begin; m < row_end; ++m) {
      const auto* row = static_cast<const std::uint8_t*>(W) + static_cast<std::size_t>(m) * row_bytes;
      float acc[8] = {};
      for (std::int64_t j = 0; j < K; ++j) acc[j & 7] += fp16_to_f32(rd_u16(row + 2 * j)) * x[j];
      y[m] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
  }
  static void gemv_bf16_f32(const void* W, std::size_t row_bytes, const float* x, std::int64_t K, float* y,
                            std::int64_t row_begin, std::int64_t row_end) {
    for (std::int64_t m = row_begin; m < row_end; ++m) {
      const auto* row = static_cast<const std::uint8_t*>(W) + static_cast<std::size_t>(m) * row_bytes;
      float acc[8] = {};
      for (std::int64_t j = 0; j < K; ++j) acc[j & 7] += bf16_to_f32(rd_u16(row + 2 * j)) * x[j];
      y[m] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
  }
  static void gemv_q8_0_q8(const void* W, std::size_t row_bytes, const block_q8_0* x, std::int64_t K, float* y,
                           std::int64_t row_begin, std::int64_t row_end) {
    const std::int64_t nb = K / kQK8_0;
    for (std::int64_t m = row_begin; m < row_end; ++m) {
      const auto* blk = static_cast<const std::uint8_t*>(W) + static_cast<std::size_t>(m) * row_bytes;
      float sum = 0.0f;
      for (std::int64_t b = 0; b < nb; ++b, blk += sizeof(block_q8_0)) {
        std::int32_t isum = 0;
        for (int j = 0; j < 32; ++j) isum += static_cast<std::int8_t>(blk[2 + j]) * x[b].qs[j];
        const float d = fp16_to_f32(rd_u16(blk)) * fp16_to_f32(x[b].d);
        sum += d * static_cast<float>(isum);
      }
      y[m] = sum;
    }
  }
  static void gemv_q6k_q8k(const void* W, std::size_t row_bytes, const block_q8_k* x, std::int64_t K, float* y,
                           std::int64_t row_begin, std::int64_t row_end) {
    const std::int64_t nb = K / kQK_K;
    std::int8_t q[256];
    for (std::int64_t m = row_begin; m < row_end; ++m) {
      const auto* blk = static_cast<const std::uint8_t*>(W) + static_cast<std::size_t>(m) * row_bytes;
      float sum = 0.0f;
      for (std::int64_t b = 0; b < nb; ++b, blk += sizeof(block_q6_k)) {
        q6k_decode(blk, q);
        std::int32_t isum = 0;
        for (int j = 0; j < 16; ++j) {
          std::int32_t s = 0;
          for (int i = 0; i < 16; ++i) s += q[16 * j + i] * x[b].qs[16 * j + i];
          isum += static_cast<std::int8_t>(blk[offsetof(block_q6_k, scales) + j]) * s;
        }
        const float d = fp16_to_f32(rd_u16(blk + offsetof(block_q6_k, d))) * x[b].d;
        sum += d * static_cast<float>(isum);
      }
      y[m] = sum;
    }
  }
};

}  // namespace detail::dense

}  // namespace bitnet
