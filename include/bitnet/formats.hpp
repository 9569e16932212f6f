// bitnet/formats.hpp - the ternary file formats, bit-exact with the files that
// bitnet.cpp (I2_S) and llama.cpp / ggml (TQ1_0, TQ2_0) write.
//
// A ternary matrix here is K inputs per row (ggml ne[0]) by M rows (ne[1]),
// given as int8 values in {-1, 0, +1}, row-major, plus its scale(s).
//
//   I2_S   whole tensor = one flat array of K*M codes c = w + 1, cut in 128-element
//          groups of 32 bytes; element j of a group sits in byte j % 32 at bits
//          6 - 2*(j / 32) (most significant pair first). One f32 scale at byte
//          K*M/4, then 28 unspecified bytes: nbytes = K*M/4 + 32.
//   TQ2_0  per 256 weights: 64 code bytes (two halves of 32; element 128h + m + 32l
//          in byte 32h + m at bits 2l, least significant pair first) + f16 d.
//   TQ1_0  per 256 weights: 48 bytes of five base-3 trits (fixed point, ceil(v*256/243)),
//          4 bytes of four trits, f16 d. See ternary-formats.md section 3.
//
// All functions validate sizes and throw std::invalid_argument naming the shape
// and the requirement, or std::runtime_error for invalid payloads.
#pragma once

#include <cmath>        // std::fabs for scales
#include <cstdint>      // fixed-width integers
#include <cstring>      // std::memcpy for unaligned scalar reads
#include <span>         // views of inputs
#include <stdexcept>    // errors
#include <string>       // error text
#include <vector>       // outputs

#include "half.hpp"
#include "types.hpp"

namespace bitnet {

inline constexpr std::int64_t kI2sGroup = 128;
inline constexpr std::int64_t kQK = 256;  // TQ1_0 / TQ2_0 / Q8_K block

// Decoded ternary tensor: values in {-1,0,1}, row-major [M][K], and one weight
// scale per 256-block (`block_scales`, M * ceil(K/256) entries) when the source had
// per-block scales, or a single `scale`.
struct ternary_weights {
  std::int64_t K = 0, M = 0;
  std::vector<std::int8_t> w;
  float scale = 0.0f;              // per-tensor scale (I2_S) or the common block scale
  std::vector<float> block_scales; // empty when the scale is per tensor
};

namespace detail {
[[noreturn]] inline void shape_error(const char* fmt, std::int64_t K, std::int64_t M, const char* need) {
  throw std::invalid_argument(std::string(fmt) + ": shape K=" + std::to_string(K) + " x M=" + std::to_string(M) +
                              " is not supported: " + need);
}
inline void check_ternary(std::span<const std::int8_t> w, std::int64_t K, std::int64_t M, const char* fmt) {
  if (K <= 0 || M <= 0) shape_error(fmt, K, M, "K and M must be positive");
  if (static_cast<std::uint64_t>(w.size()) != static_cast<std::uint64_t>(K) * static_cast<std::uint64_t>(M))
    throw std::invalid_argument(std::string(fmt) + ": expected K*M = " + std::to_string(K * M) +
                                " ternary values, got " + std::to_string(w.size()));
  for (std::size_t i = 0; i < w.size(); ++i)
    if (w[i] < -1 || w[i] > 1)
      throw std::invalid_argument(std::string(fmt) + ": value " + std::to_string(w[i]) + " at index " +
                                  std::to_string(i) + " is not ternary");
}
inline void check_bytes(std::span<const std::uint8_t> b, std::uint64_t want, const char* fmt) {
  if (b.size() != want)
    throw std::invalid_argument(std::string(fmt) + ": expected " + std::to_string(want) + " bytes, got " +
                                std::to_string(b.size()));
}
inline std::uint16_t load_u16(const std::uint8_t* p) noexcept {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline void store_u16(std::uint8_t* p, std::uint16_t v) noexcept { std::memcpy(p, &v, 2); }
}  // namespace detail

// ---------------------------------------------------------------- I2_S

inline std::uint64_t i2s_nbytes(std::int64_t K, std::int64_t M) {
  return static_cast<std::uint64_t>(K) * static_cast<std::uint64_t>(M) / 4 + 32;
}

inline void check_i2s_shape(std::int64_t K, std::int64_t M) {
  if (K <= 0 || M <= 0) detail::shape_error("I2_S", K, M, "K and M must be positive");
  if ((K * M) % kI2sGroup != 0) detail::shape_error("I2_S", K, M, "K*M must be a multiple of 128 (I2_S groups)");
}

inline std::vector<std::uint8_t> pack_i2s(std::span<const std::int8_t> w, std::int64_t K, std::int64_t M,
                                          float scale) {
  detail::check_ternary(w, K, M, "I2_S");
  check_i2s_shape(K, M);
  const std::uint64_t n = static_cast<std::uint64_t>(K * M);
  std::vector<std::uint8_t> out(i2s_nbytes(K, M), 0);
  for (std::uint64_t e = 0; e < n; ++e) {
    const std::uint64_t g = e / 128, j = e % 128;
    const unsigned code = static_cast<unsigned>(w[e] + 1);
    out[32 * g + j % 32] |= static_cast<std::uint8_t>(code << (6 - 2 * (j / 32)));
  }
  std::memcpy(out.data() + n / 4, &scale, 4);
  return out;
}

inline float i2s_scale(std::span<const std::uint8_t> bytes, std::int64_t K, std::int64_t M) {
  check_i2s_shape(K, M);
  detail::check_bytes(bytes, i2s_nbytes(K, M), "I2_S");
  float s;
  std::memcpy(&s, bytes.data() + static_cast<std::uint64_t>(K * M) / 4, 4);
  return s;
}

inline ternary_weights unpack_i2s(std::span<const std::uint8_t> bytes, std::int64_t K, std::int64_t M) {
  ternary_weights t;
  t.K = K;
  t.M = M;
  t.scale = i2s_scale(bytes, K, M);
  const std::uint64_t n = static_cast<std::uint64_t>(K * M);
  t.w.resize(n);
  // A byte at a time (a model load decodes billions of weights): element 32 * s + j of a
  // 128-group is bits 6 - 2s of its byte j. Code 3 is checked per group and then located.
  for (std::uint64_t g = 0; g < n / 128; ++g) {
    const std::uint8_t* src = bytes.data() + 32 * g;
    std::int8_t* dst = t.w.data() + 128 * g;
    unsigned bad = 0;
    for (int j = 0; j < 32; ++j) {
      const unsigned v = src[j];
      bad |= v & (v >> 1) & 0x55u;
      for (int s = 0; s < 4; ++s)
        dst[32 * s + j] = static_cast<std::int8_t>(static_cast<int>((v >> (6 - 2 * s)) & 3u) - 1);
    }
    if (bad == 0) continue;
    for (std::uint64_t e = 128 * g;; ++e)
      if (((src[e % 32] >> (6 - 2 * ((e % 128) / 32))) & 3u) == 3)
        throw std::runtime_error("I2_S: invalid code 3 at element " + std::to_string(e) + " (row " +
                                 std::to_string(e / static_cast<std::uint64_t>(K)) + ")");
  }
  return t;
}

// ---------------------------------------------------------------- TQ2_0 / TQ1_0 shared

inline void check_tq_shape(const char* fmt, std::int64_t K, std::int64_t M) {
  if (K <= 0 || M <= 0) detail::shape_error(fmt, K, M, "K and M must be positive");
  if (K % kQK != 0) detail::shape_error(fmt, K, M, "K (ne[0]) must be a multiple of 256");
}

namespace detail {
// Per-block f16 scale as ggml's quantizers would write it for weights that are
// exactly {-s, 0, +s}: amax of the block, i.e. s, or 0 for an all-zero block.
inline std::uint16_t tq_block_d(std::span<const std::int8_t> blk, float scale) noexcept {
  for (auto v : blk)
    if (v != 0) return f32_to_fp16(std::fabs(scale));
  return 0;
}
// Collect block scales; returns the common scale if all non-zero blocks agree.
inline void finish_scales(ternary_weights& t, std::vector<float>& bs) {
  float common = 0.0f;
  bool uniform = true, any = false;
  for (float d : bs) {
    if (d == 0.0f) continue;
    if (!any) {
      common = d;
      any = true;
    } else if (d != common) {
      uniform = false;
    }
  }
  t.scale = common;
  if (!uniform) t.block_scales = std::move(bs);
}
}  // namespace detail

inline std::uint64_t tq2_nbytes(std::int64_t K, std::int64_t M) {
  return static_cast<std::uint64_t>(K / kQK) * static_cast<std::uint64_t>(M) * 66;
}
inline std::uint64_t tq1_nbytes(std::int64_t K, std::int64_t M) {
  return static_cast<std::uint64_t>(K / kQK) * static_cast<std::uint64_t>(M) * 54;
}

namespace detail {
// Shared checks of the TQ packers; returns the number of 256-blocks.
inline std::uint64_t tq_pack_blocks(const char* fmt, std::span<const std::int8_t> w, std::int64_t K, std::int64_t M,
                                    std::span<const float> block_scales) {
  check_ternary(w, K, M, fmt);
  check_tq_shape(fmt, K, M);
  const std::uint64_t nb = static_cast<std::uint64_t>(K * M / kQK);
  if (!block_scales.empty() && block_scales.size() != nb)
    throw std::invalid_argument(std::string(fmt) + ": expected " + std::to_string(nb) + " block scales");
  return nb;
}
// Shared checks of the TQ unpackers: sizes `t` and the block-scale vector `bs`.
inline std::uint64_t tq_unpack_blocks(const char* fmt, std::span<const std::uint8_t> bytes, std::uint64_t want,
                                      std::int64_t K, std::int64_t M, ternary_weights& t, std::vector<float>& bs) {
  check_tq_shape(fmt, K, M);
  check_bytes(bytes, want, fmt);
  t.K = K;
  t.M = M;
  const std::uint64_t nb = static_cast<std::uint64_t>(K * M / kQK);
  t.w.resize(nb * kQK);
  bs.resize(nb);
  return nb;
}
}  // namespace detail

// Packs ternary weights with one scale; `block_scales` (optional, one per block in
// row-major block order) overrides it per block.
inline std::vector<std::uint8_t> pack_tq2(std::span<const std::int8_t> w, std::int64_t K, std::int64_t M,
                                          float scale, std::span<const float> block_scales = {}) {
  const std::uint64_t nb = detail::tq_pack_blocks("TQ2_0", w, K, M, block_scales);
  std::vector<std::uint8_t> out(nb * 66, 0);
  for (std::uint64_t b = 0; b < nb; ++b) {
    std::uint8_t* blk = out.data() + 66 * b;
    auto src = w.subspan(b * kQK, kQK);
    for (int e = 0; e < 256; ++e) {
      const unsigned code = static_cast<unsigned>(src[e] + 1);
      blk[32 * (e / 128) + e % 32] |= static_cast<std::uint8_t>(code << (2 * ((e % 128) / 32)));
    }
    const std::uint16_t d = block_scales.empty() ? detail::tq_block_d(src, scale) : f32_to_fp16(block_scales[b]);
    detail::store_u16(blk + 64, d);
  }
  return out;
}

inline ternary_weights unpack_tq2(std::span<const std::uint8_t> bytes, std::int64_t K, std::int64_t M) {
  ternary_weights t;
  std::vector<float> bs;
  const std::uint64_t nb = detail::tq_unpack_blocks("TQ2_0", bytes, tq2_nbytes(K, M), K, M, t, bs);
  for (std::uint64_t b = 0; b < nb; ++b) {
    const std::uint8_t* blk = bytes.data() + 66 * b;
    bs[b] = fp16_to_f32(detail::load_u16(blk + 64));
    // A byte at a time: element 128h + 32s + j is bits 2s of byte 32h + j.
    std::int8_t* dst = t.w.data() + b * kQK;
    unsigned bad = 0;
    for (int i = 0; i < 64; ++i) {
      const unsigned v = blk[i];
      bad |= v & (v >> 1) & 0x55u;
      for (int s = 0; s < 4; ++s)
        dst[128 * (i / 32) + 32 * s + i % 32] = static_cast<std::int8_t>(static_cast<int>((v >> (2 * s)) & 3u) - 1);
    }
    if (bad != 0)
      for (int e = 0;; ++e)
        if (((blk[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3u) == 3)
          throw std::runtime_error("TQ2_0: invalid code 3 at element " + std::to_string(b * kQK + e));
    if (bs[b] == 0.0f)  // a zero block scale makes every weight of the block zero
      for (int e = 0; e < 256; ++e) dst[e] = 0;
  }
  detail::finish_scales(t, bs);
  return t;
}

namespace detail {
inline std::uint8_t tq1_encode(const std::int8_t* w, int count, int stride) noexcept {
  unsigned v = 0;
  for (int n = 0; n < 5; ++n) v = v * 3 + (n < count ? static_cast<unsigned>(w[n * stride] + 1) : 0u);
  return static_cast<std::uint8_t>((v * 256 + 242) / 243);  // ceil(v * 256 / 243)
}
inline int tq1_trit(std::uint8_t byte, int n) noexcept {
  static constexpr unsigned pow3[5] = {1, 3, 9, 27, 81};
  const unsigned u = (static_cast<unsigned>(byte) * pow3[n]) & 255u;
  return static_cast<int>((u * 3) >> 8);
}
}  // namespace detail

inline std::vector<std::uint8_t> pack_tq1(std::span<const std::int8_t> w, std::int64_t K, std::int64_t M,
                                          float scale, std::span<const float> block_scales = {}) {
  const std::uint64_t nb = detail::tq_pack_blocks("TQ1_0", w, K, M, block_scales);
  std::vector<std::uint8_t> out(nb * 54, 0);
  for (std::uint64_t b = 0; b < nb; ++b) {
    std::uint8_t* blk = out.data() + 54 * b;
    const std::int8_t* src = w.data() + b * kQK;
    for (int m = 0; m < 32; ++m) blk[m] = detail::tq1_encode(src + m, 5, 32);
    for (int m = 0; m < 16; ++m) blk[32 + m] = detail::tq1_encode(src + 160 + m, 5, 16);
    for (int m = 0; m < 4; ++m) blk[48 + m] = detail::tq1_encode(src + 240 + m, 4, 4);
    const std::uint16_t d = block_scales.empty() ? detail::tq_block_d({src, 256}, scale) : f32_to_fp16(block_scales[b]);
    detail::store_u16(blk + 52, d);
  }
  return out;
}

inline ternary_weights unpack_tq1(std::span<const std::uint8_t> bytes, std::int64_t K, std::int64_t M) {
  ternary_weights t;
  std::vector<float> bs;
  const std::uint64_t nb = detail::tq_unpack_blocks("TQ1_0", bytes, tq1_nbytes(K, M), K, M, t, bs);
  for (std::uint64_t b = 0; b < nb; ++b) {
    const std::uint8_t* blk = bytes.data() + 54 * b;
    std::int8_t* dst = t.w.data() + b * kQK;
    bs[b] = fp16_to_f32(detail::load_u16(blk + 52));
    for (int m = 0; m < 32; ++m)
      for (int n = 0; n < 5; ++n) dst[m + 32 * n] = static_cast<std::int8_t>(detail::tq1_trit(blk[m], n) - 1);
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 5; ++n) dst[160 + m + 16 * n] = static_cast<std::int8_t>(detail::tq1_trit(blk[32 + m], n) - 1);
    for (int m = 0; m < 4; ++m)
      for (int n = 0; n < 4; ++n) dst[240 + m + 4 * n] = static_cast<std::int8_t>(detail::tq1_trit(blk[48 + m], n) - 1);
    if (bs[b] == 0.0f)
      for (int e = 0; e < 256; ++e) dst[e] = 0;
  }
  detail::finish_scales(t, bs);
  return t;
}

// Decode any ternary file format (I2_S, TQ1_0, TQ2_0) into ternary values + scales.
inline ternary_weights unpack_ternary(tensor_type type, std::span<const std::uint8_t> bytes, std::int64_t K,
                                      std::int64_t M) {
  switch (type) {
    case tensor_type::i2_s: return unpack_i2s(bytes, K, M);
    case tensor_type::tq2_0: return unpack_tq2(bytes, K, M);
    case tensor_type::tq1_0: return unpack_tq1(bytes, K, M);
    default:
      throw std::invalid_argument(std::string("unpack_ternary: type ") + std::string(type_name(type)) +
                                  " is not a supported ternary format (I2_S, TQ1_0, TQ2_0)");
  }
}

inline std::vector<std::uint8_t> pack_ternary(tensor_type type, const ternary_weights& t) {
  switch (type) {
    case tensor_type::i2_s:
      if (!t.block_scales.empty())
        throw std::invalid_argument("I2_S holds one scale per tensor; these weights have per-block scales");
      return pack_i2s(t.w, t.K, t.M, t.scale);
    case tensor_type::tq2_0: return pack_tq2(t.w, t.K, t.M, t.scale, t.block_scales);
    case tensor_type::tq1_0: return pack_tq1(t.w, t.K, t.M, t.scale, t.block_scales);
    default:
      throw std::invalid_argument(std::string("pack_ternary: type ") + std::string(type_name(type)) +
                                  " is not a supported ternary format (I2_S, TQ1_0, TQ2_0)");
  }
}

// Which ternary file formats can hold a K x M matrix.
inline bool ternary_shape_ok(tensor_type type, std::int64_t K, std::int64_t M) noexcept {
  if (K <= 0 || M <= 0) return false;
  switch (type) {
    case tensor_type::i2_s: return (K * M) % kI2sGroup == 0;
    case tensor_type::tq1_0:
    case tensor_type::tq2_0: return K % kQK == 0;
    default: return false;
  }
}

}  // namespace bitnet
