// bitnet/lut.hpp - lookup-table (LUT) ternary GEMV and GEMM for any shape.
//
// Instead of multiplying weights by activations, a LUT kernel precomputes, per call
// and per group of G consecutive activations, the sum w . q for every ternary pattern
// of G weights, and stores the weights as table indices (bitnet.cpp's TL1/TL2 idea,
// ternary-formats.md section 4). Here the tables are templates for any K and M chosen
// at run time: no per-shape code, no generated headers, no build-time Python.
//
// Three families, each with its own weight layout (lut_matrix, made once by repack_lut
// from any ternary_weights / ternary_matrix, so from any file format):
//
//   gemv_lut_q8/<arch>/g<G>/r<RT>/u<U>      shuffle LUT, batch 1
//   gemm_lut_q8/<arch>/g<G>/r<RT>/t<T>      shuffle LUT, T tokens per pass
//     Tables of 16 int16 entries per group, kept as two byte planes and looked up with
//     byte shuffles (vpshufb, tbl) for a whole tile of RT rows at once; the two planes
//     are interleaved back into exact int16. G = 2: 9 patterns, 4-bit index (2 bits
//     per weight). G = 3: 27 patterns folded into 14 magnitudes + a sign bit (5 bits
//     per 3 weights = 1.67 bits per weight); a set sign one's-complements the looked-up
//     int16 (~e = -e - 1, a byte-wise XOR of both planes) and a per-row count of
//     negative groups, made at repack time, adds the missing +1s back.
//     Layout "lut/g<G>/r<RT>": rows in tiles of RT (the last padded with zero rows);
//     groups padded to a multiple of 8 (an octet). Per tile, per octet: 4 runs of RT
//     bytes (run p, byte r: index of group 2p in the low nibble, 2p+1 in the high
//     nibble, for row r of the tile), then for G = 3 a run of RT sign bytes (bit 7 - j
//     = sign of group j of the octet). Octets follow each other; tiles follow each other.
//
//   gemm_lutv_q8/<arch>/g3/r<R>/t<NT>       vector-entry LUT, batch >= NT
//     For NT tokens at once, each of the 27 patterns of a group has an int16 vector of
//     NT sums; a weight group's pattern byte selects one vector, which is added to the
//     row's NT accumulators (one load + one add per 3 weights x NT tokens). Tables for a
//     block of groups stay in L1 while every row of the range streams past.
//     Layout "lutv/g3": groups padded to a multiple of 32; per block of 32 groups, per
//     row, 32 pattern bytes p = 9*(w0+1) + 3*(w1+1) + (w2+1) (2.67 bits per weight).
//
//   gemv_lutd_q8/<arch>/g3/r<RT>             dot LUT, batch 1 (scalar; avx512vnni + VBMI)
//     The G = 3 tables of the shuffle family, looked up with one 64-entry byte permute
//     (vpermb) for 16 rows x 4 groups at once: byte 4i + j of an index vector is row i,
//     group j of a quad, and reads quarter j of the quad's 64-byte table. The low and high
//     table bytes are multiplied by the group's sign (+1 / -1) and summed per row by
//     vpdpbusd, so rows accumulate exactly in int32 lanes in order: about 7.5 vector ops per
//     64 groups, against 11.5 for the shuffle family. High bytes are stored + 128 (unsigned
//     for vpdpbusd); the per-row correction -32768 * (sum of signs) removes that.
//     Layout "lutd/g3/r<RT>" (RT = 16, 32, 48, 64): groups padded to a multiple of 32 (a
//     block); per tile, per block, per 16-row subtile, 320 bytes: 4 index vectors of 64
//     bytes (vector p, byte 4i + j: low nibble = group 4(2p) + j, high nibble = group
//     4(2p+1) + j, of row i) and a sign vector (byte 4i + j, bit q: group 4q + j). 1.67 bits
//     per weight, like the G = 3 shuffle layout.
//   gemm_lutd_q8/<arch>/g3/r<RT>/t<T>        the dot layout's GEMM (scalar; avx512vnni)
//     No tables: each row tile is decoded once to byte codes w + 1 (vpshufb per weight of a
//     group, the sign as 2 - c), in the index layout's order, and T tokens at a time multiply
//     it with vpdpbusd against one broadcast dword of activations (gathered once per call into
//     the same order), rows in int32 lanes. Same epilogue, so bit-identical as well.
//   preferred_lut_kernels(f): the GEMV + GEMM pair a host should run instead of t2 on CPU f.
//
// Results: exact int32 sums of w * q, then the per-token epilogue of gemv.hpp,
//   y = (((float)dot_c - (float)sum_q) / s_x) * s_w,  dot_c = sum w*q + sum_q (int32),
// so LUT and MAD (t2) kernels give bit-identical floats for the same inputs.
// LUT kernels take per-token activations and a per-tensor weight scale (I2_S
// semantics); anything else throws std::invalid_argument (use the t2 kernels).
//
// Scratch: the shuffle kernels keep their tables (at most kLutTableBytes, 30 KiB) on the stack and
// use the caller's output rows as int32 scratch between K blocks; the dot GEMV likewise, with
// up to 81 KiB of tables (kLutdSuperBlocks: K up to 7680 in one pass); the vector kernels
// allocate (rows x NT) int32 partial sums plus ~28 KiB of tables per call; the dot GEMM
// allocates one decoded tile (RT / 16 * 1.5 KiB per 32 groups) and the gathered activations
// (N x K bytes, padded) per call.
// Registries: lut_gemv_variants(), lut_gemm_variants() (same fields as dispatch.hpp's
// entries, plus the layout each kernel needs).
#pragma once

#include <algorithm>    // std::min, std::max
#include <cstdint>      // fixed-width integers
#include <cstring>      // std::memcpy for int32 scratch in float storage
#include <optional>     // preferred_lut_kernels
#include <stdexcept>    // errors
#include <string>       // names, error text
#include <string_view>  // arch names
#include <type_traits>  // std::is_same_v
#include <vector>       // registries, per-row corrections

#include "activation.hpp"
#include "arch.hpp"
#include "dispatch.hpp"  // type_list, cpu_features
#include "formats.hpp"
#include "repack.hpp"
#include "detail/lut_avx2.hpp"
#include "detail/lut_avx512.hpp"
#include "detail/lut_neon.hpp"
#include "detail/lut_scalar.hpp"
#include "detail/row_streams.hpp"

namespace bitnet {

// ---------------------------------------------------------------- configurations

inline constexpr int kMaxLutRows = 128;   // rows per shuffle tile
inline constexpr int kMaxLutUnroll = 4;   // octets per unrolled step
inline constexpr int kMaxLutTokens = 4;   // tokens per shuffle-GEMM pass
inline constexpr int kMaxLutTile = 8;     // (RT / shuffle width) * tokens: index vectors x tables live at once
inline constexpr int kMaxLutvRows = 4;    // rows per vector-LUT step
inline constexpr int kMaxLutvTokens = 64; // tokens per vector-LUT table entry
inline constexpr int kLutTableBytes = 30 * 1024;  // shuffle tables on the stack, all tokens of a pass
inline constexpr int kLutStreams = 4;             // row tiles a GEMV pass streams together
inline constexpr int kMaxLutdRows = 64;           // rows per dot tile (2 int32 accumulators per 16 rows)
inline constexpr int kMaxLutdTokens = 8;          // tokens per dot-GEMM pass
inline constexpr int kMaxLutdTile = 16;           // (RT / 16) * tokens: int32 accumulators live at once
inline constexpr int kLutdStreams = 3;  // row tiles a dot GEMV streams together (2 or 4: 3-6% slower from DRAM)
// 32-group blocks per dot table build (1 KiB each): the 2B4T K = 6912 in one pass. With 30 (as
// the shuffle family's 30 KiB), 2560x6912 from DRAM ran at 55 G weights/s instead of 73: each
// tile was read in three pieces.
inline constexpr int kLutdSuperBlocks = 80;

// Bytes one shuffle looks up at once: the row-tile granularity of each arch.
template <class Arch> constexpr int lut_width() noexcept {
  if constexpr (std::is_same_v<Arch, arch::avx2>)
    return 32;
  else if constexpr (std::is_same_v<Arch, arch::avx512bw> || std::is_same_v<Arch, arch::avx512vnni>)
    return 64;
  else
    return 16;  // scalar, neon64, neon64_dotprod
}

enum class lut_kind : std::uint8_t { shuffle, vector, dot };

// The weight layout a LUT kernel reads.
struct lut_layout {
  lut_kind kind = lut_kind::shuffle;
  int g = 3;
  int rows = 32;  // shuffle: rows per tile; vector: 0
  std::string name() const {
    if (kind == lut_kind::vector) return "lutv/g" + std::to_string(g);
    return (kind == lut_kind::dot ? "lutd/g" : "lut/g") + std::to_string(g) + "/r" + std::to_string(rows);
  }
  friend bool operator==(const lut_layout&, const lut_layout&) = default;
};

template <class Arch, int G, int RT, int Unroll> struct lut_gemv_config {
  static_assert(G == 2 || G == 3, "LUT group size G must be 2 or 3");
  static_assert(RT >= 1 && RT <= kMaxLutRows, "LUT Rows is capped at kMaxLutRows");
  static_assert(RT % lut_width<Arch>() == 0, "LUT Rows must be a multiple of the arch's shuffle width");
  static_assert(Unroll >= 1 && Unroll <= kMaxLutUnroll, "LUT Unroll is capped at kMaxLutUnroll");
  static_assert(RT / lut_width<Arch>() <= kMaxLutTile, "LUT Rows / shuffle width * Tokens is capped at kMaxLutTile");
  using arch = Arch;
  static constexpr int g = G, rows = RT, unroll = Unroll, tokens = 1;
  static constexpr lut_kind kind = lut_kind::shuffle;
  static lut_layout layout() { return {lut_kind::shuffle, G, RT}; }
  static std::string name() {
    return "gemv_lut_q8/" + std::string(Arch::name) + "/g" + std::to_string(G) + "/r" + std::to_string(RT) + "/u" +
           std::to_string(Unroll);
  }
};

template <class Arch, int G, int RT, int Tokens> struct lut_gemm_config {
  static_assert(G == 2 || G == 3, "LUT group size G must be 2 or 3");
  static_assert(RT >= 1 && RT <= kMaxLutRows, "LUT Rows is capped at kMaxLutRows");
  static_assert(RT % lut_width<Arch>() == 0, "LUT Rows must be a multiple of the arch's shuffle width");
  static_assert(Tokens >= 1 && Tokens <= kMaxLutTokens, "LUT Tokens is capped at kMaxLutTokens");
  static_assert(RT / lut_width<Arch>() * Tokens <= kMaxLutTile,
                "LUT Rows / shuffle width * Tokens is capped at kMaxLutTile");
  using arch = Arch;
  static constexpr int g = G, rows = RT, unroll = 1, tokens = Tokens;
  static constexpr lut_kind kind = lut_kind::shuffle;
  static lut_layout layout() { return {lut_kind::shuffle, G, RT}; }
  static std::string name() {
    return "gemm_lut_q8/" + std::string(Arch::name) + "/g" + std::to_string(G) + "/r" + std::to_string(RT) + "/t" +
           std::to_string(Tokens);
  }
};

// The dot family (GEMV only): avx512vnni (which must also have VBMI) and a portable body.
template <class Arch, int RT> struct lutd_gemv_config {
  static_assert(std::is_same_v<Arch, bitnet::arch::scalar> || std::is_same_v<Arch, bitnet::arch::avx512vnni>,
                "the LUT dot kernels exist for scalar and avx512vnni (+VBMI)");
  static_assert(RT >= 16 && RT <= kMaxLutdRows && RT % 16 == 0, "LUT dot Rows: 16, 32, 48 or 64");
  using arch = Arch;
  static constexpr int g = 3, rows = RT, unroll = 1, tokens = 1;
  static constexpr lut_kind kind = lut_kind::dot;
  static constexpr bool needs_vbmi = std::is_same_v<Arch, bitnet::arch::avx512vnni>;
  static lut_layout layout() { return {lut_kind::dot, 3, RT}; }
  static std::string name() {
    return "gemv_lutd_q8/" + std::string(Arch::name) + "/g3/r" + std::to_string(RT);
  }
};

// The dot layout's GEMM: each tile decoded once to codes (vpshufb), shared by T tokens (vpdpbusd).
// avx512vnni (no VBMI needed) and a portable body.
template <class Arch, int RT, int Tokens> struct lutd_gemm_config {
  static_assert(std::is_same_v<Arch, bitnet::arch::scalar> || std::is_same_v<Arch, bitnet::arch::avx512vnni>,
                "the LUT dot kernels exist for scalar and avx512vnni");
  static_assert(RT >= 16 && RT <= kMaxLutdRows && RT % 16 == 0, "LUT dot Rows: 16, 32, 48 or 64");
  static_assert(Tokens >= 1 && Tokens <= kMaxLutdTokens, "LUT dot Tokens is capped at kMaxLutdTokens");
  static_assert(RT / 16 * Tokens <= kMaxLutdTile, "LUT dot Rows / 16 * Tokens is capped at kMaxLutdTile");
  using arch = Arch;
  static constexpr int g = 3, rows = RT, unroll = 1, tokens = Tokens;
  static constexpr lut_kind kind = lut_kind::dot;
  static lut_layout layout() { return {lut_kind::dot, 3, RT}; }
  static std::string name() {
    return "gemm_lutd_q8/" + std::string(Arch::name) + "/g3/r" + std::to_string(RT) + "/t" + std::to_string(Tokens);
  }
};

template <class Arch, int Rows, int Tokens> struct lutv_gemm_config {
  static_assert(Rows >= 1 && Rows <= kMaxLutvRows, "LUTV Rows is capped at kMaxLutvRows");
  static_assert(Tokens >= 16 && Tokens <= kMaxLutvTokens && Tokens % 16 == 0,
                "LUTV Tokens must be a multiple of 16 and is capped at kMaxLutvTokens");
  using arch = Arch;
  static constexpr int g = 3, rows = Rows, tokens = Tokens;
  static constexpr lut_kind kind = lut_kind::vector;
  static lut_layout layout() { return {lut_kind::vector, 3, 0}; }
  static std::string name() {
    return "gemm_lutv_q8/" + std::string(Arch::name) + "/g3/r" + std::to_string(Rows) + "/t" + std::to_string(Tokens);
  }
};

namespace detail {
// Groups per shuffle K block: int16 accumulation stays exact (lut_max_entry per lookup)
// and the block is a whole number of unrolled octet steps. Tables: 32 bytes per group.
template <int G, int U> constexpr int lut_block_groups() noexcept {
  constexpr int limit = 32767 / lut_max_entry<G>();
  constexpr int step = 8 * U;
  static_assert(limit / step >= 1, "LUT Unroll too deep for int16 accumulation");
  return limit / step * step;
}
// Groups per vector-LUT table block: 27 entries x NT int16 per group, ~28 KiB in L1;
// 32 * 384 < 2^15 keeps int16 sums exact. Divides the layout's 32-group block.
template <int NT> constexpr int lutv_table_groups() noexcept { return NT <= 16 ? 32 : (NT <= 32 ? 16 : 8); }
inline constexpr int kLutvLayoutBlock = 32;
}  // namespace detail

// ---------------------------------------------------------------- the weight layout

class lut_matrix {
 public:
  std::int64_t K = 0, M = 0;
  lut_layout layout;
  float scale = 0.0f;

  // Groups of G weights per row, padded (multiple of 8 for shuffle, 32 for vector and dot).
  std::int64_t groups() const noexcept { return groups_; }
  // Shuffle and dot layouts.
  std::int64_t tiles() const noexcept { return layout.kind != lut_kind::vector ? (M + layout.rows - 1) / layout.rows : 0; }
  std::int64_t octet_bytes() const noexcept { return (layout.g == 2 ? 4 : 5) * static_cast<std::int64_t>(layout.rows); }
  // Dot layout: bytes of one 32-group block of a tile (RT / 16 subtiles).
  std::int64_t dot_block_bytes() const noexcept { return layout.rows / 16 * detail::kLutdSubtileBytes; }
  std::int64_t tile_bytes() const noexcept {
    return layout.kind == lut_kind::dot ? groups_ / 32 * dot_block_bytes() : groups_ / 8 * octet_bytes();
  }
  const std::uint8_t* tile(std::int64_t t) const noexcept { return data_.data() + t * tile_bytes(); }
  // Added to row m's int32 sum: G = 3 shuffle, the number of sign-set (one's-complemented)
  // groups; dot, -32768 * (sum of the groups' signs), removing the +128 of the high bytes; else 0.
  std::int32_t correction(std::int64_t m) const noexcept {
    return corr_.empty() ? 0 : corr_[static_cast<std::size_t>(m)];
  }
  // Vector layout: the 32 pattern bytes of row m in layout block b.
  const std::uint8_t* vrow(std::int64_t b, std::int64_t m) const noexcept {
    return data_.data() + (b * M + m) * detail::kLutvLayoutBlock;
  }
  std::size_t packed_bytes() const noexcept { return data_.size(); }
  const std::uint8_t* data() const noexcept { return data_.data(); }

  lut_matrix clone() const {
    lut_matrix t;
    t.K = K;
    t.M = M;
    t.layout = layout;
    t.scale = scale;
    t.groups_ = groups_;
    t.corr_ = corr_;
    t.data_ = data_.clone();
    return t;
  }

 private:
  std::int64_t groups_ = 0;
  std::vector<std::int32_t> corr_;
  aligned_buffer<std::uint8_t> data_;
  friend lut_matrix repack_lut(const ternary_weights&, const lut_layout&);
};

// Builds the layout `L` from decoded ternary values (any file format unpacks to these).
inline lut_matrix repack_lut(const ternary_weights& src, const lut_layout& L) {
  if (L.g != 2 && L.g != 3) throw std::invalid_argument("repack_lut: group size must be 2 or 3, got " + std::to_string(L.g));
  if (L.kind == lut_kind::shuffle && (L.rows < 16 || L.rows > kMaxLutRows || L.rows % 16 != 0))
    throw std::invalid_argument("repack_lut: rows per tile must be a multiple of 16 in [16, " +
                                std::to_string(kMaxLutRows) + "], got " + std::to_string(L.rows));
  if (L.kind == lut_kind::vector && (L.g != 3 || L.rows != 0))
    throw std::invalid_argument("repack_lut: the vector layout is lutv/g3 (rows 0), got " + L.name());
  if (L.kind == lut_kind::dot && (L.g != 3 || L.rows < 16 || L.rows > kMaxLutdRows || L.rows % 16 != 0))
    throw std::invalid_argument("repack_lut: the dot layout is lutd/g3 with rows per tile a multiple of 16 in [16, " +
                                std::to_string(kMaxLutdRows) + "], got " + L.name());
  if (src.K <= 0 || src.M <= 0) throw std::invalid_argument("repack_lut: K and M must be positive");
  if (!src.block_scales.empty())
    throw std::invalid_argument("repack_lut: LUT kernels need one per-tensor weight scale; this matrix has per-block "
                                "scales (use the t2 kernels)");
  if (src.w.size() != static_cast<std::size_t>(src.K * src.M))
    throw std::invalid_argument("repack_lut: expected K*M = " + std::to_string(src.K * src.M) + " weights, got " +
                                std::to_string(src.w.size()));
  lut_matrix t;
  t.K = src.K;
  t.M = src.M;
  t.layout = L;
  t.scale = src.scale;
  const int G = L.g;
  const std::int64_t ng = (src.K + G - 1) / G;
  auto weight = [&](std::int64_t m, std::int64_t k) -> int {
    return k < src.K ? src.w[static_cast<std::size_t>(m * src.K + k)] : 0;
  };
  if (L.kind == lut_kind::vector) {
    t.groups_ = pad_to(ng, detail::kLutvLayoutBlock);
    t.data_.resize(static_cast<std::size_t>(t.groups_ * src.M));
    std::uint8_t* d = t.data_.data();
    for (std::size_t i = 0; i < t.data_.size(); ++i) d[i] = 13;  // the all-zero pattern
    for (std::int64_t m = 0; m < src.M; ++m)
      for (std::int64_t j = 0; j < ng; ++j) {
        const int p = 9 * (weight(m, 3 * j) + 1) + 3 * (weight(m, 3 * j + 1) + 1) + (weight(m, 3 * j + 2) + 1);
        const std::int64_t b = j / detail::kLutvLayoutBlock;
        d[(b * src.M + m) * detail::kLutvLayoutBlock + j % detail::kLutvLayoutBlock] = static_cast<std::uint8_t>(p);
      }
    return t;
  }
  if (L.kind == lut_kind::dot) {
    // Per tile, per block of 32 groups, per 16-row subtile: 4 index vectors and 1 sign vector
    // of 64 bytes. Byte 4i + j of index vector p: row i of the subtile, low nibble group
    // 4(2p) + j, high nibble group 4(2p + 1) + j; bit q of sign byte 4i + j: group 4q + j.
    const std::int64_t RT = L.rows;
    t.groups_ = pad_to(ng, 32);
    // Every int32 stays in range: 256 * sum(s * (h + 128)) + sum(s * l) < 256 * 129 * 60000 + 255 * 60000
    // < 2^31, and so does the correction -32768 * (sum of signs).
    if (t.groups_ > 60000)
      throw std::invalid_argument("repack_lut: K=" + std::to_string(src.K) + " is too long for the dot layout");
    const std::int64_t ntiles = t.tiles(), tb = t.tile_bytes(), bb = t.dot_block_bytes(), gp = t.groups_;
    t.data_.resize(static_cast<std::size_t>(ntiles * tb));
    std::uint8_t* d = t.data_.data();
    for (std::size_t i = 0; i < t.data_.size(); ++i) d[i] = 0;  // index 0, sign +: the all-zero pattern
    t.corr_.assign(static_cast<std::size_t>(ntiles * RT), -32768 * static_cast<std::int32_t>(gp));
    // A row at a time: its groups' indices and signs first (padding groups: index 0, sign +),
    // then every byte of its slots written once. Loading a 2B4T model repacks ~700M groups.
    std::vector<std::uint8_t> e(static_cast<std::size_t>(gp)), neg(static_cast<std::size_t>(gp));
    for (std::int64_t m = 0; m < src.M; ++m) {
      const std::int8_t* w = src.w.data() + m * src.K;
      std::int32_t nneg = 0;
      for (std::int64_t j = 0; j < gp; ++j) {
        int v = 0;
        if (3 * j + 2 < src.K)
          v = 9 * w[3 * j] + 3 * w[3 * j + 1] + w[3 * j + 2];
        else
          for (int c = 0; c < 3; ++c) v = 3 * v + (3 * j + c < src.K ? w[3 * j + c] : 0);
        e[static_cast<std::size_t>(j)] = static_cast<std::uint8_t>(v < 0 ? -v : v);
        neg[static_cast<std::size_t>(j)] = v < 0;
        nneg += v < 0;
      }
      const std::int64_t r = m % RT, u = r / 16, i = r % 16;
      std::uint8_t* sub = d + (m / RT) * tb + u * detail::kLutdSubtileBytes + 4 * i;
      for (std::int64_t b = 0; b < gp / 32; ++b, sub += bb) {
        const std::uint8_t* eb = e.data() + 32 * b;
        const std::uint8_t* nb = neg.data() + 32 * b;
        for (int jq = 0; jq < 4; ++jq) {
          for (int p = 0; p < 4; ++p)
            sub[64 * p + jq] = static_cast<std::uint8_t>(eb[8 * p + jq] | (eb[8 * p + 4 + jq] << 4));
          unsigned sb = 0;
          for (int q = 0; q < 8; ++q) sb |= static_cast<unsigned>(nb[4 * q + jq]) << q;
          sub[256 + jq] = static_cast<std::uint8_t>(sb);
        }
      }
      t.corr_[static_cast<std::size_t>(m)] = -32768 * static_cast<std::int32_t>(gp - 2 * nneg);
    }
    return t;
  }
  const std::int64_t RT = L.rows;
  t.groups_ = pad_to(ng, 8);
  const std::int64_t ntiles = t.tiles(), ob = t.octet_bytes(), tb = t.tile_bytes();
  t.data_.resize(static_cast<std::size_t>(ntiles * tb));
  std::uint8_t* d = t.data_.data();
  if (G == 2)  // index 4 is the all-zero pair in both nibbles; sign bytes do not exist
    for (std::size_t i = 0; i < t.data_.size(); ++i) d[i] = 0x44;
  if (G == 3) t.corr_.assign(static_cast<std::size_t>(ntiles * RT), 0);
  for (std::int64_t m = 0; m < src.M; ++m) {
    std::uint8_t* tile = d + (m / RT) * tb;
    const std::int64_t r = m % RT;
    for (std::int64_t j = 0; j < ng; ++j) {
      int w[3] = {weight(m, G * j), weight(m, G * j + 1), G == 3 ? weight(m, G * j + 2) : 0};
      bool neg = false;
      const int e = G == 2 ? detail::lut_index<2>(w, neg) : detail::lut_index<3>(w, neg);
      std::uint8_t* oct = tile + (j / 8) * ob;
      const int jj = static_cast<int>(j % 8);
      std::uint8_t& b = oct[(jj / 2) * RT + r];
      const int sh = 4 * (jj & 1);
      b = static_cast<std::uint8_t>((b & ~(15 << sh)) | (e << sh));
      if (neg) {
        oct[4 * RT + r] = static_cast<std::uint8_t>(oct[4 * RT + r] | (1 << (7 - jj)));
        ++t.corr_[static_cast<std::size_t>(m)];
      }
    }
  }
  return t;
}

// From the t2 layout (what `repack` made from a file), or straight from file bytes.
inline lut_matrix repack_lut(const ternary_matrix& src, const lut_layout& L) { return repack_lut(unpack(src), L); }
inline lut_matrix repack_lut(tensor_type type, std::span<const std::uint8_t> bytes, std::int64_t K, std::int64_t M,
                             const lut_layout& L) {
  return repack_lut(unpack_ternary(type, bytes, K, M), L);
}

// ---------------------------------------------------------------- drivers

namespace detail {

inline void check_lut_operands(const lut_matrix& W, const activations& X, const lut_layout& want, std::int64_t r0,
                               std::int64_t r1) {
  if (!(W.layout == want))
    throw std::invalid_argument("LUT kernel: matrix has layout " + W.layout.name() + " but the kernel needs " +
                                want.name());
  if (X.K() != W.K)
    throw std::invalid_argument("LUT kernel: activation length K=" + std::to_string(X.K()) +
                                " does not match the matrix K=" + std::to_string(W.K));
  if (X.mode() != act_quant::per_token)
    throw std::invalid_argument("LUT kernel: needs per-token activations (use the t2 kernels for per-block)");
  if (r0 < 0 || r1 > W.M || r0 > r1)
    throw std::invalid_argument("LUT kernel: row range [" + std::to_string(r0) + ", " + std::to_string(r1) +
                                ") is outside [0, " + std::to_string(W.M) + ")");
}

// The per-token epilogue of gemv.hpp, on the exact sum s = sum w*q of row m.
inline float lut_epilogue(std::int32_t s, std::int32_t sum_q, float sx, float sw) noexcept {
  const std::int32_t dot_c = s + sum_q;
  return ((static_cast<float>(dot_c) - static_cast<float>(sum_q)) / sx) * sw;
}

// Where row tile `tile` (RT rows) keeps its int32 partial sums between passes over K, for a call
// on rows [r0, r1) writing y: in its own output rows when the range holds the whole tile, else in
// cut[0] (the tile cut by r0) or cut[1] (the tile cut by r1).
inline std::int32_t* tile_partial(float* y, std::int64_t tile, std::int64_t RT, std::int64_t r0, std::int64_t r1,
                                  std::int32_t* const (&cut)[2]) noexcept {
  if (tile * RT >= r0 && (tile + 1) * RT <= r1) return reinterpret_cast<std::int32_t*>(y + tile * RT);
  return cut[tile == r0 / RT ? 0 : 1];
}

// y[m] for m in [r0, r1) from the finished partial sums of activation row x: the layout's
// per-row correction, then the per-token epilogue.
template <class P>
void lut_finish_rows(const lut_matrix& W, const activations& X, std::int64_t x, float* y, std::int64_t r0,
                     std::int64_t r1, std::int64_t RT, P partial) {
  const std::int32_t sq = X.sum(x);
  const float sx = X.scale(x), sw = W.scale;
  for (std::int64_t m = r0; m < r1; ++m) {
    const std::int64_t tile = m / RT;
    y[m] = lut_epilogue(load_i32(partial(tile), static_cast<int>(m - tile * RT)) + W.correction(m), sq, sx, sw);
  }
}

// Shuffle LUT for T tokens (activation rows x0 .. x0+T-1, outputs Y + t*ldy), rows [r0, r1).
// Whole row tiles are computed; rows outside [r0, r1) are dropped. Interior tiles keep
// their int32 partial sums in their own output rows between K blocks; the (at most two)
// tiles cut by r0 or r1 use a stack buffer.
template <class Arch, int G, int RT, int U, int T>
void lut_shuffle_pass(const lut_matrix& W, const activations& X, std::int64_t x0, float* Y, std::int64_t ldy,
                      std::int64_t r0, std::int64_t r1) {
  if (r0 >= r1) return;
  constexpr int KB = lut_block_groups<G, U>();
  // Tables for a super block of SB groups (whole K blocks, about 30 KiB for all T tokens) are
  // built at once, then every tile of the range runs through the super block, kLutStreams
  // far-apart tiles together (row_streams.hpp): each tile's indices are read as one sequential
  // run of SB / 8 octets, not in K-block-sized pieces. From DRAM (6912x2560, one thread,
  // AVX-512BW r64) this order and the kernels' software prefetch took 36 -> 64 G weights/s.
  constexpr int SB = std::max(1, kLutTableBytes / (32 * T * KB)) * KB;
  alignas(64) std::uint8_t tbl[T][SB * 32];
  alignas(64) std::int32_t edge[2][T][RT];
  const std::int64_t tb = r0 / RT, te = (r1 + RT - 1) / RT, ng = W.groups(), ob = W.octet_bytes();
  auto partial = [&](std::int64_t tile, int t) {
    std::int32_t* const cut[2] = {edge[0][t], edge[1][t]};
    return tile_partial(Y + t * ldy, tile, RT, r0, r1, cut);
  };
  for (std::int64_t s0 = 0; s0 < ng; s0 += SB) {
    const std::int64_t ns = std::min<std::int64_t>(SB, ng - s0);
    for (int t = 0; t < T; ++t)
      lut_impl<Arch>::template build_tables<G>(X.q(x0 + t), s0 * G, X.padded_K(), ns, tbl[t]);
    auto run = [&]<int S>(std::int64_t tile, std::int64_t stride) {
      std::int32_t* p[S][T];
      for (int k = 0; k < S; ++k)
        for (int t = 0; t < T; ++t) p[k][t] = partial(tile + k * stride, t);
      for (std::int64_t g0 = s0; g0 < s0 + ns; g0 += KB) {
        const std::int64_t nb = std::min<std::int64_t>(KB, s0 + ns - g0);
        const std::uint8_t* tptr[T];
        for (int t = 0; t < T; ++t) tptr[t] = tbl[t] + (g0 - s0) * 32;
        for (int k = 0; k < S; ++k)
          lut_impl<Arch>::template tile_block<G, RT, U, T>(W.tile(tile + k * stride) + g0 / 8 * ob, nb / 8, tptr, p[k],
                                                           g0 == 0);
      }
    };
    for_each_stream_tile<kLutStreams>(
        tb, te, [&](std::int64_t tile, std::int64_t stride) { run.template operator()<kLutStreams>(tile, stride); },
        [&](std::int64_t tile) { run.template operator()<1>(tile, 0); });
  }
  for (int t = 0; t < T; ++t)
    lut_finish_rows(W, X, x0 + t, Y + t * ldy, r0, r1, RT, [&](std::int64_t tile) { return partial(tile, t); });
}

// Dot LUT GEMV, rows [r0, r1) from activation row x0. Tables for a super block of up to
// kLutdSuperBlocks blocks of 32 groups are built and arranged once, then every tile of the
// range runs through it, kLutdStreams far-apart tiles together. Partial sums between super
// blocks live in the output rows (interior tiles) or a stack buffer (the two cut tiles).
template <class Arch, int RT>
void lutd_pass(const lut_matrix& W, const activations& X, std::int64_t x0, float* y, std::int64_t r0,
               std::int64_t r1) {
  if (r0 >= r1) return;
  alignas(64) std::uint8_t raw[32 * 32];
  alignas(64) std::uint8_t tbl[kLutdSuperBlocks * 1024];
  alignas(64) std::int32_t edge[2][RT];
  const std::int64_t tb = r0 / RT, te = (r1 + RT - 1) / RT, nblk = W.groups() / 32, bb = W.dot_block_bytes();
  std::int32_t* const cut[2] = {edge[0], edge[1]};
  auto partial = [&](std::int64_t tile) { return tile_partial(y, tile, RT, r0, r1, cut); };
  for (std::int64_t b0 = 0; b0 < nblk; b0 += kLutdSuperBlocks) {
    const std::int64_t ns = std::min<std::int64_t>(kLutdSuperBlocks, nblk - b0);
    for (std::int64_t b = 0; b < ns; ++b) {
      lut_impl<Arch>::template build_tables<3>(X.q(x0), (b0 + b) * 96, X.padded_K(), 32, raw);
      lut_impl<Arch>::lutd_arrange(raw, 8, tbl + b * 1024);
    }
    auto run = [&]<int S>(std::int64_t tile, std::int64_t stride) {
      const std::uint8_t* w[S];
      std::int32_t* p[S];
      for (int k = 0; k < S; ++k) {
        w[k] = W.tile(tile + k * stride) + b0 * bb;
        p[k] = partial(tile + k * stride);
      }
      lut_impl<Arch>::template lutd_tile<RT, S>(w, ns, tbl, p, b0 == 0);
    };
    for_each_stream_tile<kLutdStreams>(
        tb, te, [&](std::int64_t tile, std::int64_t stride) { run.template operator()<kLutdStreams>(tile, stride); },
        [&](std::int64_t tile) { run.template operator()<1>(tile, 0); });
  }
  lut_finish_rows(W, X, x0, y, r0, r1, RT, partial);
}

// Dot-layout GEMM, rows [r0, r1), every activation row. Each row tile is decoded once to codes
// (RT / 16 * 1.5 KiB per 32 groups: 216 KiB for RT = 32, K = 6912, so it stays in L2), which every
// pass of T tokens then reads; the activations are gathered once per call into the codes' order.
// Whole tiles are computed; rows outside [r0, r1) are dropped.
template <class Arch, int RT, int T>
void lutd_gemm_run(const lut_matrix& W, const activations& X, float* Y, std::int64_t ldy, std::int64_t r0,
                   std::int64_t r1) {
  if (r0 >= r1) return;
  const std::int64_t N = X.rows(), nblk = W.groups() / 32;
  aligned_buffer<std::int8_t> act(static_cast<std::size_t>(N * nblk * 96));
  aligned_buffer<std::uint8_t> codes(static_cast<std::size_t>(nblk * (RT / 16) * 1536));
  for (std::int64_t t = 0; t < N; ++t) lutd_gather(X.q(t), X.padded_K(), nblk, act.data() + t * nblk * 96);
  alignas(64) std::int32_t acc[T * RT];
  const float sw = W.scale;
  for (std::int64_t tile = r0 / RT; tile * RT < r1; ++tile) {
    lut_impl<Arch>::template lutd_decode<RT>(W.tile(tile), nblk, codes.data());
    const std::int64_t m0 = std::max(r0, tile * RT), m1 = std::min(r1, (tile + 1) * RT);
    auto pass = [&]<int TT>(std::int64_t t0) {
      const std::int8_t* a[TT];
      for (int t = 0; t < TT; ++t) a[t] = act.data() + (t0 + t) * nblk * 96;
      lut_impl<Arch>::template lutd_mad<RT, TT>(codes.data(), nblk, a, acc);
      for (int t = 0; t < TT; ++t) {  // acc holds dot_c (codes w + 1): the sum w*q is acc - sum_q
        const std::int32_t sq = X.sum(t0 + t);
        const float sx = X.scale(t0 + t);
        float* y = Y + (t0 + t) * ldy;
        for (std::int64_t m = m0; m < m1; ++m) y[m] = lut_epilogue(acc[t * RT + (m - tile * RT)] - sq, sq, sx, sw);
      }
    };
    std::int64_t t = 0;
    for (; t + T <= N; t += T) pass.template operator()<T>(t);
    // The rest in passes of 4 and 2 tokens where T is larger (a server's decode batches are
    // often smaller than T): a pass reads the decoded tile once for all of its tokens.
    if constexpr (T > 4)
      for (; t + 4 <= N; t += 4) pass.template operator()<4>(t);
    if constexpr (T > 2)
      for (; t + 2 <= N; t += 2) pass.template operator()<2>(t);
    for (; t < N; ++t) pass.template operator()<1>(t);
  }
}

template <class Arch, int NT, int R>
void lutv_gemm_run(const lut_matrix& W, const activations& X, float* Y, std::int64_t ldy, std::int64_t r0,
                   std::int64_t r1) {
  if (r0 >= r1) return;
  constexpr int TB = lutv_table_groups<NT>();
  static_assert(kLutvLayoutBlock % TB == 0);
  const std::int64_t rows = r1 - r0, N = X.rows(), ng = W.groups();
  aligned_buffer<std::int32_t> part(static_cast<std::size_t>(rows * NT));
  aligned_buffer<std::int16_t> act(static_cast<std::size_t>(3 * TB * NT));
  aligned_buffer<std::int16_t> tbl(static_cast<std::size_t>(TB * 27 * NT));
  const float sw = W.scale;
  for (std::int64_t t0 = 0; t0 < N; t0 += NT) {
    const int ntok = static_cast<int>(std::min<std::int64_t>(NT, N - t0));
    const std::int8_t* qrows[NT];
    for (int t = 0; t < NT; ++t) qrows[t] = t < ntok ? X.q(t0 + t) : nullptr;
    for (std::int64_t g0 = 0; g0 < ng; g0 += TB) {
      // Activations of this block, token-minor (zeros past the padded row and past the last token;
      // between K and the padded length they are zero already).
      lut_impl<Arch>::template lutv_gather<NT>(qrows, 3 * g0, X.padded_K(), 3 * TB, act.data());
      lut_impl<Arch>::template lutv_build<NT>(act.data(), TB, tbl.data());
      const std::int64_t b = g0 / kLutvLayoutBlock, off = g0 % kLutvLayoutBlock;
      std::int64_t m = r0;
      for (; m + R <= r1; m += R)
        lut_impl<Arch>::template lutv_rows<NT, R, TB>(W.vrow(b, m) + off, tbl.data(), part.data() + (m - r0) * NT, g0 == 0);
      for (; m < r1; ++m)
        lut_impl<Arch>::template lutv_rows<NT, 1, TB>(W.vrow(b, m) + off, tbl.data(), part.data() + (m - r0) * NT, g0 == 0);
    }
    for (int t = 0; t < ntok; ++t) {
      const std::int32_t sq = X.sum(t0 + t);
      const float sx = X.scale(t0 + t);
      float* y = Y + (t0 + t) * ldy;
      for (std::int64_t m = r0; m < r1; ++m) y[m] = lut_epilogue(part[static_cast<std::size_t>((m - r0) * NT + t)], sq, sx, sw);
    }
  }
}

}  // namespace detail

// y[m], m in [row_begin, row_end), from activation row n of X.
template <class Config>
void gemv_lut(const lut_matrix& W, const activations& X, std::int64_t n, float* y, std::int64_t row_begin,
              std::int64_t row_end) {
  static_assert(Config::kind != lut_kind::vector, "gemv_lut takes a lut_gemv_config or lutd_gemv_config");
  detail::check_lut_operands(W, X, Config::layout(), row_begin, row_end);
  if (n < 0 || n >= X.rows()) throw std::invalid_argument("LUT kernel: activation row out of range");
  if constexpr (Config::kind == lut_kind::dot)
    detail::lutd_pass<typename Config::arch, Config::rows>(W, X, n, y, row_begin, row_end);
  else
    detail::lut_shuffle_pass<typename Config::arch, Config::g, Config::rows, Config::unroll, 1>(W, X, n, y, 0,
                                                                                             row_begin, row_end);
}

// Y[t*ldy + m] for every activation row t of X and m in [row_begin, row_end).
template <class Config>
void gemm_lut(const lut_matrix& W, const activations& X, float* Y, std::int64_t ldy, std::int64_t row_begin,
              std::int64_t row_end) {
  detail::check_lut_operands(W, X, Config::layout(), row_begin, row_end);
  using A = typename Config::arch;
  if constexpr (Config::kind == lut_kind::vector) {
    detail::lutv_gemm_run<A, Config::tokens, Config::rows>(W, X, Y, ldy, row_begin, row_end);
  } else if constexpr (Config::kind == lut_kind::dot) {
    detail::lutd_gemm_run<A, Config::rows, Config::tokens>(W, X, Y, ldy, row_begin, row_end);
  } else {
    constexpr int G = Config::g, RT = Config::rows, T = Config::tokens;
    const std::int64_t N = X.rows();
    // Row blocks of about 256 KiB of indices stay in L2 while every token pass streams past them.
    const std::int64_t rows_per_block = std::max<std::int64_t>(RT, (std::int64_t{1} << 18) / W.tile_bytes() * RT);
    for (std::int64_t rb = row_begin; rb < row_end;) {
      const std::int64_t re = std::min(row_end, (rb / RT) * RT + rows_per_block);
      std::int64_t t = 0;
      for (; t + T <= N; t += T) detail::lut_shuffle_pass<A, G, RT, 1, T>(W, X, t, Y + t * ldy, ldy, rb, re);
      for (; t < N; ++t) detail::lut_shuffle_pass<A, G, RT, 1, 1>(W, X, t, Y + t * ldy, ldy, rb, re);
      rb = re;
    }
  }
}

// ---------------------------------------------------------------- the grid and registries

using lut_gemv_grid = type_list<
    lut_gemv_config<arch::scalar, 2, 32, 1>, lut_gemv_config<arch::scalar, 3, 32, 1>,
    lut_gemv_config<arch::scalar, 3, 64, 1>, lut_gemv_config<arch::scalar, 3, 16, 1>,
    lut_gemv_config<arch::avx2, 2, 32, 1>, lut_gemv_config<arch::avx2, 2, 32, 2>, lut_gemv_config<arch::avx2, 2, 64, 1>,
    lut_gemv_config<arch::avx2, 3, 32, 1>, lut_gemv_config<arch::avx2, 3, 32, 2>, lut_gemv_config<arch::avx2, 3, 64, 1>,
    lut_gemv_config<arch::avx512bw, 2, 64, 1>, lut_gemv_config<arch::avx512bw, 3, 64, 1>,
    lut_gemv_config<arch::avx512bw, 3, 128, 1>, lut_gemv_config<arch::neon64, 2, 16, 1>,
    lut_gemv_config<arch::neon64, 3, 16, 1>, lut_gemv_config<arch::neon64, 3, 32, 1>,
    lutd_gemv_config<arch::scalar, 16>, lutd_gemv_config<arch::avx512vnni, 32>, lutd_gemv_config<arch::avx512vnni, 64>>;

using lut_gemm_grid = type_list<
    lut_gemm_config<arch::scalar, 3, 32, 2>, lutv_gemm_config<arch::scalar, 1, 16>,
    lut_gemm_config<arch::avx2, 2, 32, 2>, lut_gemm_config<arch::avx2, 3, 32, 2>, lut_gemm_config<arch::avx2, 3, 32, 4>,
    lutv_gemm_config<arch::avx2, 1, 16>, lutv_gemm_config<arch::avx2, 2, 16>, lutv_gemm_config<arch::avx2, 4, 16>,
    lutv_gemm_config<arch::avx2, 2, 32>, lut_gemm_config<arch::avx512bw, 3, 64, 2>,
    lutv_gemm_config<arch::avx512bw, 2, 32>, lutv_gemm_config<arch::avx512bw, 4, 32>,
    lutv_gemm_config<arch::avx512bw, 2, 64>,
    lut_gemm_config<arch::neon64, 3, 16, 2>, lutv_gemm_config<arch::neon64, 2, 16>,
    lutd_gemm_config<arch::scalar, 16, 2>, lutd_gemm_config<arch::avx512vnni, 32, 4>,
    lutd_gemm_config<arch::avx512vnni, 32, 8>, lutd_gemm_config<arch::avx512vnni, 64, 4>>;

using lut_gemv_fn = void (*)(const lut_matrix&, const activations&, std::int64_t, float*, std::int64_t, std::int64_t);
using lut_gemm_fn = void (*)(const lut_matrix&, const activations&, float*, std::int64_t, std::int64_t, std::int64_t);

// Same fields as dispatch.hpp's gemv_entry / gemm_entry, with the layout in place of the block.
// Default-constructed entries hold null functions (hosts check `fn` before calling).
struct lut_gemv_entry {
  std::string name;
  std::string_view arch;
  int rank = 0;
  lut_layout layout;
  bool (*runs_on)(const cpu_features&) = nullptr;
  lut_gemv_fn fn = nullptr;
};
struct lut_gemm_entry {
  std::string name;
  std::string_view arch;
  int rank = 0;
  lut_layout layout;
  bool (*runs_on)(const cpu_features&) = nullptr;
  lut_gemm_fn fn = nullptr;
};

// Whether this CPU runs configuration C: its arch, and VBMI for the dot kernels that need it.
template <class C> bool lut_runs_on(const cpu_features& f) noexcept {
  if constexpr (requires { C::needs_vbmi; })
    if (C::needs_vbmi && !f.avx512vbmi) return false;
  return arch_runs_on<typename C::arch>(f);
}

namespace detail {
template <class C> void add_lut_gemv(std::vector<lut_gemv_entry>& v) {
  if constexpr (arch_compiled<typename C::arch>())
    v.push_back({C::name(), C::arch::name, C::arch::rank, C::layout(), &lut_runs_on<C>, &gemv_lut<C>});
}
template <class C> void add_lut_gemm(std::vector<lut_gemm_entry>& v) {
  if constexpr (arch_compiled<typename C::arch>())
    v.push_back({C::name(), C::arch::name, C::arch::rank, C::layout(), &arch_runs_on<typename C::arch>, &gemm_lut<C>});
}
template <class... C> std::vector<lut_gemv_entry> make_lut_gemv_entries(type_list<C...>) {
  std::vector<lut_gemv_entry> v;
  (add_lut_gemv<C>(v), ...);
  return v;
}
template <class... C> std::vector<lut_gemm_entry> make_lut_gemm_entries(type_list<C...>) {
  std::vector<lut_gemm_entry> v;
  (add_lut_gemm<C>(v), ...);
  return v;
}
}  // namespace detail

// Every LUT variant compiled into this build (whether or not this CPU runs it).
#if BITNET_REGISTRY_EXTERN
std::vector<lut_gemv_entry> lut_gemv_variants();  // defined in src/kernel_registry.cpp (config.hpp)
std::vector<lut_gemm_entry> lut_gemm_variants();
#else
BITNET_REGISTRY_LINKAGE std::vector<lut_gemv_entry> lut_gemv_variants() {
  return detail::make_lut_gemv_entries(lut_gemv_grid{});
}
BITNET_REGISTRY_LINKAGE std::vector<lut_gemm_entry> lut_gemm_variants() {
  return detail::make_lut_gemm_entries(lut_gemm_grid{});
}
#endif

// The LUT pair a host without a tuning file should run instead of the t2 kernels on a CPU with
// features f (cap them first for an arch override), or nothing: the dot family where its GEMV
// runs (AVX-512 VNNI + VBMI). Both kernels read one lutd/g3/r32 copy, 1.67 bits per weight
// instead of 2, so decode reads 17% fewer ternary bytes; the GEMM shares each decoded tile among
// 8 tokens and ran 1.6x the t2 GEMM on 2B4T shapes (bench_lut). Elsewhere the t2 kernels win
// (README, "The 1.67-bit path").
struct lut_kernel_pair {
  lut_gemv_entry gemv;
  lut_gemm_entry gemm;
};
inline std::optional<lut_kernel_pair> preferred_lut_kernels(const cpu_features& f) {
  const std::string gv = lutd_gemv_config<arch::avx512vnni, 32>::name(),
                    gm = lutd_gemm_config<arch::avx512vnni, 32, 8>::name();
  std::optional<lut_gemv_entry> v;
  std::optional<lut_gemm_entry> m;
  for (auto& e : lut_gemv_variants())
    if (e.name == gv && e.runs_on(f)) v = std::move(e);
  for (auto& e : lut_gemm_variants())
    if (e.name == gm && e.runs_on(f)) m = std::move(e);
  if (!v || !m) return std::nullopt;
  return lut_kernel_pair{std::move(*v), std::move(*m)};
}

}  // namespace bitnet
