// bitnet/repack.hpp - the kernels' own weight layout ("t2"), built once at load.
//
// Layout of a ternary_matrix with block B (128 or 256):
//   * each row holds Kp = K rounded up to 256 weights; padding weights are 0;
//   * a row is Kp/B chunks of B/4 bytes; in a chunk, byte b holds the codes
//     c = w + 1 of weights b + j*(B/4), j = 0..3, at bits 2j..2j+1 (LSB pair first);
//   * rows are contiguous, Kp/4 bytes apart (a multiple of 64), buffer 64-byte aligned.
// So one 32-byte load of a b128 chunk gives, after shift-and-mask, four vectors of
// codes whose activations are four contiguous 32-byte runs. TQ2_0's 128-weight
// halves are exactly the b128 chunk, and I2_S's 32-byte groups are the b128 chunk
// with the pair order reversed, so both repack with a byte copy / byte table.
// Scales: one float per tensor (`scale`), or, for TQ files whose block scales differ,
// one float per (row, 256-block) in `block_scales` (only the per-block kernels accept that).
#pragma once

#include <array>      // byte tables
#include <cstdint>    // fixed-width integers
#include <span>       // input views
#include <stdexcept>  // errors
#include <string>     // error text
#include <vector>     // block scales

#include "activation.hpp"  // aligned_buffer, pad_to
#include "formats.hpp"

namespace bitnet {

class ternary_matrix {
 public:
  std::int64_t K = 0, M = 0, Kp = 0;
  int block = 128;
  float scale = 0.0f;
  std::vector<float> block_scales;  // M * (Kp/256) when per-block, else empty

  std::int64_t row_bytes() const noexcept { return Kp / 4; }
  const std::uint8_t* row(std::int64_t m) const noexcept { return codes_.data() + m * row_bytes(); }
  std::uint8_t* mutable_row(std::int64_t m) noexcept { return codes_.data() + m * row_bytes(); }
  bool per_block_scales() const noexcept { return !block_scales.empty(); }
  std::size_t packed_bytes() const noexcept { return codes_.size(); }

  // Deep copy (the code buffer is move-only on purpose: copies of weights are explicit).
  ternary_matrix clone() const {
    ternary_matrix t;
    t.K = K;
    t.M = M;
    t.Kp = Kp;
    t.block = block;
    t.scale = scale;
    t.block_scales = block_scales;
    t.codes_ = codes_.clone();
    return t;
  }

  // Allocates the code buffer with every weight 0 (code 1 = 0b01 in each pair).
  void allocate(std::int64_t K_, std::int64_t M_, int block_) {
    if (block_ != 128 && block_ != 256)
      throw std::invalid_argument("ternary_matrix: block must be 128 or 256, got " + std::to_string(block_));
    if (K_ <= 0 || M_ <= 0) throw std::invalid_argument("ternary_matrix: K and M must be positive");
    K = K_;
    M = M_;
    block = block_;
    Kp = pad_to(K, kActPad);
    codes_.resize(static_cast<std::size_t>(M * row_bytes()));
    std::uint8_t* p = codes_.data();
    for (std::size_t i = 0; i < codes_.size(); ++i) p[i] = 0x55;
  }

  // Code (0, 1, 2) of weight (m, k) and its setter; used by repacking and tests.
  int code(std::int64_t m, std::int64_t k) const noexcept {
    const int cb = block / 4;
    const std::int64_t c = k / block, e = k % block;
    return (row(m)[c * cb + e % cb] >> (2 * (e / cb))) & 3;
  }
  void set_weight(std::int64_t m, std::int64_t k, int w) noexcept {
    const int cb = block / 4;
    const std::int64_t c = k / block, e = k % block;
    std::uint8_t& b = mutable_row(m)[c * cb + e % cb];
    const int sh = static_cast<int>(2 * (e / cb));
    b = static_cast<std::uint8_t>((b & ~(3 << sh)) | ((w + 1) << sh));
  }

 private:
  aligned_buffer<std::uint8_t> codes_;
};

namespace detail {
// Reverses the order of the four 2-bit pairs of a byte (I2_S MSB-first -> LSB-first).
inline constexpr std::array<std::uint8_t, 256> kPairReverse = [] {
  std::array<std::uint8_t, 256> t{};
  for (int v = 0; v < 256; ++v)
    t[v] = static_cast<std::uint8_t>(((v >> 6) & 3) | (((v >> 4) & 3) << 2) | (((v >> 2) & 3) << 4) | ((v & 3) << 6));
  return t;
}();

// b128 chunk pair (c0 = weights 0..127, c1 = 128..255; byte i holds weights i + 32j
// at bits 2j) -> one b256 chunk (byte b holds weights b + 64j at bits 2j):
//   byte i      = {c0[i] pair 0, c0[i] pair 2, c1[i] pair 0, c1[i] pair 2}
//   byte 32 + i = {c0[i] pair 1, c0[i] pair 3, c1[i] pair 1, c1[i] pair 3}
inline void regroup_b128_to_b256(ternary_matrix& t) {
  auto pick = [](unsigned v, int j) { return (v >> (2 * j)) & 3u; };
  for (std::int64_t m = 0; m < t.M; ++m) {
    std::uint8_t* row = t.mutable_row(m);
    for (std::int64_t c = 0; c < t.Kp / 256; ++c) {
      std::uint8_t* p = row + 64 * c;
      std::uint8_t out[64];
      for (int i = 0; i < 32; ++i) {
        const unsigned a = p[i], b = p[32 + i];
        out[i] = static_cast<std::uint8_t>(pick(a, 0) | pick(a, 2) << 2 | pick(b, 0) << 4 | pick(b, 2) << 6);
        out[32 + i] = static_cast<std::uint8_t>(pick(a, 1) | pick(a, 3) << 2 | pick(b, 1) << 4 | pick(b, 3) << 6);
      }
      for (int i = 0; i < 64; ++i) p[i] = out[i];
    }
  }
  t.block = 256;
}

inline void set_block_scales(ternary_matrix& t, const std::vector<float>& bs) {
  // Source block scales are in flat order over K*M/256 blocks, i.e. row-major with K/256 per row.
  t.block_scales = bs;
}
}  // namespace detail

// From decoded ternary values.
inline ternary_matrix repack(const ternary_weights& src, int block = 128) {
  ternary_matrix t;
  t.allocate(src.K, src.M, block);
  t.scale = src.scale;
  // Each byte written once: byte b of chunk c takes weights c*B + b + j*(B/4), j = 0..3 (code 1,
  // weight 0, past K). Per weight with set_weight, a 2B4T TQ1_0 load took 7-14 s.
  const std::int64_t cb = block / 4;
  for (std::int64_t m = 0; m < src.M; ++m) {
    const std::int8_t* w = src.w.data() + m * src.K;
    std::uint8_t* row = t.mutable_row(m);
    for (std::int64_t c = 0; c * block < src.K; ++c) {
      const std::int64_t k0 = c * block;
      if (k0 + block <= src.K) {
        for (std::int64_t b = 0; b < cb; ++b) {
          const std::int8_t* x = w + k0 + b;
          row[c * cb + b] = static_cast<std::uint8_t>((x[0] + 1) | ((x[cb] + 1) << 2) | ((x[2 * cb] + 1) << 4) |
                                                      ((x[3 * cb] + 1) << 6));
        }
      } else {
        for (std::int64_t k = k0; k < src.K; ++k) t.set_weight(m, k, w[k]);
      }
    }
  }
  if (!src.block_scales.empty()) detail::set_block_scales(t, src.block_scales);
  return t;
}

// From a file payload (I2_S, TQ2_0, TQ1_0). Fast paths copy whole chunks where
// the file's chunk is the b128 chunk; everything else goes through decoding.
inline ternary_matrix repack(tensor_type type, std::span<const std::uint8_t> bytes, std::int64_t K, std::int64_t M,
                             int block = 128) {
  if (block == 128 && type == tensor_type::i2_s && K % 128 == 0) {
    const float s = i2s_scale(bytes, K, M);  // validates shape and size
    ternary_matrix t;
    t.allocate(K, M, block);
    t.scale = s;
    for (std::int64_t m = 0; m < M; ++m) {
      const std::uint8_t* src = bytes.data() + m * (K / 4);
      std::uint8_t* dst = t.mutable_row(m);
      for (std::int64_t i = 0; i < K / 4; ++i) {
        const std::uint8_t v = detail::kPairReverse[src[i]];
        // code 3 never occurs in valid files; a pair 0b11 would read as +2.
        if (((v & 0x55) & ((v >> 1) & 0x55)) != 0)
          throw std::runtime_error("I2_S: invalid code 3 in row " + std::to_string(m));
        dst[i] = v;
      }
    }
    return t;
  }
  if (block == 128 && type == tensor_type::tq2_0) {
    check_tq_shape("TQ2_0", K, M);
    detail::check_bytes(bytes, tq2_nbytes(K, M), "TQ2_0");
    ternary_matrix t;
    t.allocate(K, M, block);
    const std::int64_t nbr = K / 256;
    std::vector<float> bs(static_cast<std::size_t>(M * nbr));
    for (std::int64_t m = 0; m < M; ++m) {
      std::uint8_t* dst = t.mutable_row(m);
      for (std::int64_t b = 0; b < nbr; ++b) {
        const std::uint8_t* blk = bytes.data() + 66 * (m * nbr + b);
        const float d = fp16_to_f32(detail::load_u16(blk + 64));
        bs[static_cast<std::size_t>(m * nbr + b)] = d;
        for (int i = 0; i < 64; ++i) {
          const std::uint8_t v = blk[i];
          if (((v & 0x55) & ((v >> 1) & 0x55)) != 0)
            throw std::runtime_error("TQ2_0: invalid code 3 in row " + std::to_string(m));
          dst[64 * b + i] = d == 0.0f ? std::uint8_t{0x55} : v;
        }
      }
    }
    ternary_weights tmp;
    detail::finish_scales(tmp, bs);
    t.scale = tmp.scale;
    if (!tmp.block_scales.empty()) t.block_scales = std::move(tmp.block_scales);
    return t;
  }
  if (block == 256 && (type == tensor_type::tq2_0 || (type == tensor_type::i2_s && K % 128 == 0))) {
    // Build the b128 layout with the fast paths above, then regroup each pair of
    // b128 chunks into one b256 chunk (a byte-wise bit shuffle, no decoding).
    ternary_matrix t = repack(type, bytes, K, M, 128);
    detail::regroup_b128_to_b256(t);
    return t;
  }
  return repack(unpack_ternary(type, bytes, K, M), block);
}

// Back to ternary values (for tests, converters and the F32 fallback).
inline ternary_weights unpack(const ternary_matrix& t) {
  ternary_weights w;
  w.K = t.K;
  w.M = t.M;
  w.scale = t.scale;
  w.block_scales = t.block_scales;
  w.w.resize(static_cast<std::size_t>(t.K * t.M));
  for (std::int64_t m = 0; m < t.M; ++m)
    for (std::int64_t k = 0; k < t.K; ++k) w.w[static_cast<std::size_t>(m * t.K + k)] = static_cast<std::int8_t>(t.code(m, k) - 1);
  return w;
}

}  // namespace bitnet
