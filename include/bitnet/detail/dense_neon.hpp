// bitnet/detail/dense_neon.hpp - AArch64 NEON bodies of the dense GEMV kernels, and
// sdot (Armv8.2 dot product) bodies for the int8 types.
//
// Contract: as the scalar kernels in dense_ref.hpp. Rows at any address (byte
// loads, vld1q_u8); K any value >= 0 for F32/F16/BF16 (scalar tail inside the
// body), a multiple of 32 (Q8_0) or 256 (Q6_K).
//
// neon_kernels is plain AArch64 (Advanced SIMD is mandatory there, so it needs no
// target attribute). neon_dotprod_kernels carries BITNET_TARGET_DOTPROD and runs
// only after dispatch has seen HWCAP_ASIMDDP.
//
// Accumulation: F32/F16/BF16 use 4 x 4 f32 lanes (element j -> lane j % 16) plus a
// sequential tail; Q8_0 FMAs each block's 4 int32 lane sums (as f32) with dw*dx
// into 4 lanes; Q6_K reduces each block to one exact int32 and accumulates
// (dw*dx) * float(isum) into 4 scalar partial sums (block b -> b % 4).
#pragma once

#include "../arch.hpp"
#include "../dense_ref.hpp"

#if BITNET_ARM64
#include <arm_neon.h>  // NEON and sdot intrinsics

namespace bitnet::detail::dense {

struct neon_kernels {
  static float h2f(const std::uint8_t* p) noexcept {
    __fp16 h;
    std::memcpy(&h, p, 2);
    return static_cast<float>(h);
  }

  // 8 weights as two f32x4, and one weight as f32.
  struct ld_f32 {
    static constexpr int bytes = 4;
    static void load8(const std::uint8_t* p, float32x4_t& lo, float32x4_t& hi) noexcept {
      lo = vreinterpretq_f32_u8(vld1q_u8(p));
      hi = vreinterpretq_f32_u8(vld1q_u8(p + 16));
    }
    static float load1(const std::uint8_t* p) noexcept {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
  };
  struct ld_f16 {
    static constexpr int bytes = 2;
    static void load8(const std::uint8_t* p, float32x4_t& lo, float32x4_t& hi) noexcept {
      const float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(p));
      lo = vcvt_f32_f16(vget_low_f16(h));
      hi = vcvt_high_f32_f16(h);
    }
    static float load1(const std::uint8_t* p) noexcept { return h2f(p); }
  };
  struct ld_bf16 {
    static constexpr int bytes = 2;
    static void load8(const std::uint8_t* p, float32x4_t& lo, float32x4_t& hi) noexcept {
      const uint16x8_t h = vreinterpretq_u16_u8(vld1q_u8(p));
      lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
      hi = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
    }
    static float load1(const std::uint8_t* p) noexcept {
      std::uint16_t h;
      std::memcpy(&h, p, 2);
      const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
      float v;
      std::memcpy(&v, &u, 4);
      return v;
    }
  };

  template <class L> static void gemv_float(const void* W, std::size_t row_bytes, const float* x, std::int64_t K,
                                            float* y, std::int64_t row_begin, std::int64_t row_end) {
    const std::int64_t K16 = K & ~std::int64_t{15};
    for (std::int64_t m = row_begin; m < row_end; ++m) {
      const auto* row = static_cast<const std::uint8_t*>(W) + static_cast<std::size_t>(m) * row_bytes;
      float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
      std::int64_t j = 0;
      for (; j < K16; j += 16) {
        const std::uint8_t* p = row + L::bytes * j;
        float32x4_t w0, w1, w2, w3;
        L::load8(p, w0, w1);
        L::load8(p + 8 * L::bytes, w2, w3);
        a0 = vfmaq_f32(a0, w0, vld1q_f32(x + j));
        a1 = vfmaq_f32(a1, w1, vld1q_f32(x + j + 4));
        a2 = vfmaq_f32(a2, w2, vld1q_f32(x + j + 8));
        a3 = vfmaq_f32(a3, w3, vld1q_f32(x + j + 12));
      }
      float tail = 0.0f;
      for (; j < K; ++j) tail += L::load1(row + L::bytes * j) * x[j];
      y[m] = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3))) + tail;
    }
  }

  static void gemv_f32_f32(const void* W, std::size_t rb, const float* x, std::int64_t K, float* y, std::int64_t r0,
                           std::int64_t r1) {
    gemv_float<ld_f32>(W, rb, x, K, y, r0, r1);
  }
  static void gemv_f16_f32(const void* W, std::size_t rb, const float* x, std::int64_t K, float* y, std::int64_t r0,
                           std::int64_t r1) {
    gemv_float<ld_f16>(W, rb, x, K, y, r0, r1);
  }
  static void gemv_bf16_f32(const void* W, std::size_t rb, const float* x, std::int64_t K, float* y, std::int64_t r0,
                            std::int64_t r1) {
    gemv_float<ld_bf16>(W, rb, x, K, y, r0, r1);
  }

  // Dot of 16 int8 pairs as 4 int32 lanes, widening multiplies (no sdot).
  static int32x4_t dot16(int8x16_t a, int8x16_t b) noexcept {
    const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    const int16x8_t hi = vmull_high_s8(a, b);
    return vpadalq_s16(vpaddlq_s16(lo), hi);
  }

  static void gemv_q8_0_q8(const void* W, std::size_t row_bytes, const block_q8_0* x, std::int64_t K, float* y,
                           std::int64_t row_begin, std::int64_t row_end) {
    const std::int64_t nb = K / kQK8_0;
    const auto* xa = reinterpret_cast<const std::uint8_t*>(x);
    constexpr std::size_t B = sizeof(block_q8_0);
    for (std::int64_t m = row_begin; m < row_end; ++m) {
      const auto* row = static_cast<const std::uint8_t*>(W) + static_cast<std::size_t>(m) * row_bytes;
      float32x4_t acc = vdupq_n_f32(0.0f);
      for (std::int64_t b = 0; b < nb; ++b) {
        const std::uint8_t* w0 = row + B * b;
        const std::uint8_t* x0 = xa + B * b;
        const int32x4_t s =
            vaddq_s32(dot16(vreinterpretq_s8_u8(vld1q_u8(w0 + 2)), vreinterpretq_s8_u8(vld1q_u8(x0 + 2))),
                      dot16(vreinterpretq_s8_u8(vld1q_u8(w0 + 18)), vreinterpretq_s8_u8(vld1q_u8(x0 + 18))));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), h2f(w0) * h2f(x0));
      }
      y[m] = vaddvq_f32(acc);
    }
  }

  // The 8 sub-blocks (16 codes each, code - 32 as int8) of half h of a Q6_K block,
  // sub-block order: 8h + i.
  static void q6k_half(const std::uint8_t* blk, int h, int8x16_t* q) noexcept {
    const std::uint8_t* ql = blk + 64 * h;
    const std::uint8_t* qhp = blk + 128 + 32 * h;
    const uint8x16_t m3 = vdupq_n_u8(3), m30 = vdupq_n_u8(0x30);
    const int8x16_t off = vdupq_n_s8(32);
    for (int g = 0; g < 2; ++g) {  // l in [16g, 16g + 16)
      const uint8x16_t l0 = vld1q_u8(ql + 16 * g);
      const uint8x16_t l1 = vld1q_u8(ql + 32 + 16 * g);
      const uint8x16_t hb = vld1q_u8(qhp + 16 * g);
      const uint8x16_t c0 = vsliq_n_u8(l0, vandq_u8(hb, m3), 4);
      const uint8x16_t c1 = vsliq_n_u8(l1, vandq_u8(vshrq_n_u8(hb, 2), m3), 4);
      const uint8x16_t c2 = vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(hb, m30));
      const uint8x16_t c3 = vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(hb, 2), m30));
      q[0 + g] = vsubq_s8(vreinterpretq_s8_u8(c0), off);
      q[2 + g] = vsubq_s8(vreinterpretq_s8_u8(c1), off);
      q[4 + g] = vsubq_s8(vreinterpretq_s8_u8(c2), off);
      q[6 + g] = vsubq_s8(vreinterpretq_s8_u8(c3), off);
    }
  }

  static std::int32_t q6k_block(const std::uint8_t* blk, const block_q8_k& xb) noexcept {
    int32x4_t acc = vdupq_n_s32(0);
    int8x16_t q[8];
    for (int h = 0; h < 2; ++h) {
      q6k_half(blk, h, q);
      for (int i = 0; i < 8; ++i) {
        const int sub = 8 * h + i;
        const auto sc = static_cast<std::int8_t>(blk[offsetof(block_q6_k, scales) + sub]);
        acc = vmlaq_n_s32(acc, dot16(q[i], vld1q_s8(xb.qs + 16 * sub)), sc);
      }
    }
    return vaddvq_s32(acc);
  }

  static void gemv_q6k_q8k(const void* W, std::size_t row_bytes, const block_q8_k* x, std::int64_t K, float* y,
                           std::int64_t row_begin, std::int64_t row_end) {
    const std::int64_t nb = K / kQK_K;
    constexpr std::size_t B = sizeof(block_q6_k);
    for (std::int64_t m = row_begin; m < row_end; ++m) {
      const auto* row = static_cast<const std::uint8_t*>(W) + static_cast<std::size_t>(m) * row_bytes;
      float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (std::int64_t b = 0; b < nb; ++b) {
        const std::uint8_t* blk = row + B * b;
        const float d = h2f(blk + offsetof(block_q6_k, d)) * x[b].d;
        s[b & 3] += d * static_cast<float>(q6k_block(blk, x[b]));
      }
      y[m] = (s[0] + s[1]) + (s[2] + s[3]);
    }
  }
};

// sdot versions of the int8 kernels (the float kernels are neon_kernels').
struct neon_dotprod_kernels {
  BITNET_TARGET_DOTPROD static float h2f(const std::uint8_t* p) noexcept {
    __fp16 h;
    std::memcpy(&h, p, 2);
    return static_cast<float>(h);
  }

  BITNET_TARGET_DOTPROD static void gemv_q8_0_q8(const void* W, std::size_t row_bytes, const block_q8_0* x,
                                                 std::int64_t K, float* y, std::int64_t row_begin,
                                                 std::int64_t row_end) {
    const std::int64_t nb = K / kQK8_0;
    const auto* xa = reinterpret_cast<const std::uint8_t*>(x);
    constexpr std::size_t B = sizeof(block_q8_0);
    for (std::int64_t m = row_begin; m < row_end; ++m) {
      const auto* row = static_cast<const std::uint8_t*>(W) + static_cast<std::size_t>(m) * row_bytes;
      float32x4_t acc = vdupq_n_f32(0.0f);
      for (std::int64_t b = 0; b < nb; ++b) {
        const std::uint8_t* w0 = row + B * b;
        const std::uint8_t* x0 = xa + B * b;
        int32x4_t s =
            vdotq_s32(vdupq_n_s32(0), vreinterpretq_s8_u8(vld1q_u8(w0 + 2)), vreinterpretq_s8_u8(vld1q_u8(x0 + 2)));
        s = vdotq_s32(s, vreinterpretq_s8_u8(vld1q_u8(w0 + 18)), vreinterpretq_s8_u8(vld1q_u8(x0 + 18)));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), h2f(w0) * h2f(x0));
      }
      y[m] = vaddvq_f32(acc);
    }
  }

  BITNET_TARGET_DOTPROD static std::int32_t q6k_block(const std::uint8_t* blk, const block_q8_k& xb) noexcept {
    const uint8x16_t m3 = vdupq_n_u8(3), m30 = vdupq_n_u8(0x30);
    const int8x16_t off = vdupq_n_s8(32);
    int32x4_t acc = vdupq_n_s32(0);
    for (int h = 0; h < 2; ++h) {
      const std::uint8_t* ql = blk + 64 * h;
      const std::uint8_t* qhp = blk + 128 + 32 * h;
      for (int g = 0; g < 2; ++g) {
        const uint8x16_t l0 = vld1q_u8(ql + 16 * g);
        const uint8x16_t l1 = vld1q_u8(ql + 32 + 16 * g);
        const uint8x16_t hb = vld1q_u8(qhp + 16 * g);
        const int8x16_t c[4] = {
            vsubq_s8(vreinterpretq_s8_u8(vsliq_n_u8(l0, vandq_u8(hb, m3), 4)), off),
            vsubq_s8(vreinterpretq_s8_u8(vsliq_n_u8(l1, vandq_u8(vshrq_n_u8(hb, 2), m3), 4)), off),
            vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(hb, m30))), off),
            vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(hb, 2), m30))), off)};
        for (int k = 0; k < 4; ++k) {
          const int sub = 8 * h + 2 * k + g;
          const auto sc = static_cast<std::int8_t>(blk[offsetof(block_q6_k, scales) + sub]);
          acc = vmlaq_n_s32(acc, vdotq_s32(vdupq_n_s32(0), c[k], vld1q_s8(xb.qs + 16 * sub)), sc);
        }
      }
    }
    return vaddvq_s32(acc);
  }

  BITNET_TARGET_DOTPROD static void gemv_q6k_q8k(const void* W, std::size_t row_bytes, const block_q8_k* x,
                                                 std::int64_t K, float* y, std::int64_t row_begin,
                                                 std::int64_t row_end) {
    const std::int64_t nb = K / kQK_K;
    constexpr std::size_t B = sizeof(block_q6_k);
    for (std::int64_t m = row_begin; m < row_end; ++m) {
      const auto* row = static_cast<const std::uint8_t*>(W) + static_cast<std::size_t>(m) * row_bytes;
      float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (std::int64_t b = 0; b < nb; ++b) {
        const std::uint8_t* blk = row + B * b;
        const float d = h2f(blk + offsetof(block_q6_k, d)) * x[b].d;
        s[b & 3] += d * static_cast<float>(q6k_block(blk, x[b]));
      }
      y[m] = (s[0] + s[1]) + (s[2] + s[3]);
    }
  }
};

}  // namespace bitnet::detail::dense

#endif  // BITNET_ARM64
