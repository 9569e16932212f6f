// bitnet/detail/lut_scalar.hpp - portable bodies of the LUT kernels, and the
// contract every arch's lut_impl follows (layouts: lut.hpp).
//
// Shuffle family (gemv_lut_q8 / gemm_lut_q8), group size G = 2 or 3:
//   build_tables<G>(q, k0, kvalid, ngroups, tbl)
//     For groups j < ngroups starting at weight index k0: activations b_i = q[k0 + G*j + i]
//     (0 where k0 + G*j + i >= kvalid). Writes 32 bytes per group at tbl + 32*j: the low
//     bytes [0, 16) and high bytes [16, 32) of 16 int16 entries, entry e = sum_i w_i(e) * b_i
//     for the pattern of index e (lut_entry_weight), 0 for unused indices.
//   tile_block<G, RT, U, T>(w, noct, tbl, part, first)
//     One row tile of RT rows and `noct` group octets (8 groups) starting at w, for T
//     tokens whose tables are tbl[t] (the same block of groups). For every row r < RT:
//       s = sum over the block's groups of L(r, group), where L is the table entry of the
//           row's index, one's-complemented (~e = -e - 1) when its G = 3 sign bit is set;
//       part[t][r] = s (first) or part[t][r] + s.
//     part[t] may point into float storage: it is read and written only through
//     std::memcpy or vector loads/stores, never as an int32 lvalue. Unaligned.
//     Within one call |s| stays below 2^15 (lut_block_groups bounds noct), so arches
//     may accumulate in int16.
// Vector family (gemm_lutv_q8), G = 3, NT tokens per table vector:
//   lutv_gather<NT>(qrows, k0, kvalid, nk, act)
//     act: int16 [nk][NT], act[i][t] = qrows[t][k0 + i]; 0 where qrows[t] is null or
//     k0 + i >= kvalid (qrows[t] is readable below kvalid).
//   lutv_build<NT>(act, tb, tbl)
//     act: int16 [3*tb][NT] (activation k of the block, token t); tbl: int16 [tb][27][NT],
//     entry p = 9*c0 + 3*c1 + c2 holds sum_i (c_i - 1) * act[3j + i][t].
//   lutv_rows<NT, R, TB>(idx, tbl, part, first)
//     Rows r < R with TB pattern bytes at idx + 32*r: part[r*NT + t] (=|+=) sum over
//     j < TB of tbl[j][idx[32*r + j]][t]. part is int32 storage. |sum| < 2^15 per call.
// Dot family (gemv_lutd_q8), G = 3, layout lutd/g3/r<RT> (lut.hpp):
//   lutd_arrange(raw, nquads, tbl)
//     raw: build_tables<3> output for 4 * nquads groups. Writes 128 bytes per quad of groups
//     4q .. 4q+3: [64 low bytes | 64 high bytes], byte 16j + e of each half from group 4q + j,
//     entry e; the high bytes XOR 0x80 (h + 128, unsigned).
//   lutd_tile<RT, S>(w, nblk, tbl, part, first)
//     S row tiles (w[k], part[k]) of RT rows, nblk blocks of 32 groups each, tables from
//     lutd_arrange for the same groups (1 KiB per block). For every row r < RT of tile k:
//       s = 256 * sum(sign * high byte) + sum(sign * low byte) over the groups, sign = -1
//           where the group's sign bit is set, else +1 (the +128 of the high bytes is
//           removed by the layout's per-row correction);
//       part[k][r] = s (first) or part[k][r] + s. part as for tile_block.
// Dot-layout GEMM (gemm_lutd_q8): the tile is decoded once to codes, which T tokens then share.
//   lutd_decode<RT>(w, nblk, codes)
//     nblk blocks of one tile of RT rows at w. Writes RT / 16 * 1536 bytes per block (block b,
//     subtile u at codes + (b * RT / 16 + u) * 1536): 24 vectors of 64 bytes, vector 3q + p,
//     byte 4i + j = w_p + 1 (0, 1, 2; the sign applied) for weight p of group 4q + j of row
//     16u + i. codes is 64-byte aligned.
//   lutd_mad<RT, T>(codes, nblk, act, acc)
//     act[t]: lutd_gather output for token t (96 bytes per block). For every row r < RT:
//       acc[t * RT + r] = sum over the blocks of codes(r, k) * q_t(k) (dot_c: codes are w + 1).
#pragma once

#include <array>    // entry patterns
#include <cstdint>  // fixed-width integers
#include <cstring>  // std::memcpy for partial sums that may live in float storage

#include "../arch.hpp"
#include "static_for.hpp"

namespace bitnet::detail {

// Software prefetch distance of the SIMD shuffle bodies, in bytes ahead in a tile's index
// stream (one hint per 64-byte line of each octet). The hardware prefetchers alone leave a
// LUT GEMV from DRAM at about 0.5 of the read bandwidth; 1-4 KiB ahead measured best, 2 KiB
// by a little (6912x2560, AVX-512BW and AVX2).
inline constexpr int kLutPrefetch = 2048;

// Weight w_i (-1, 0, +1) that table index e of group size G stands for.
//   G = 2: e = 3*(w0+1) + (w1+1), 0..8 (9 patterns, 4 = all zero); 9..15 unused.
//   G = 3: e = |9*w0 + 3*w1 + w2|, 0..13 (magnitudes; the sign is a separate bit); 14, 15 unused.
template <int G> constexpr int lut_entry_weight(int e, int i) noexcept {
  if constexpr (G == 2) {
    if (e > 8) return 0;
    return i == 0 ? e / 3 - 1 : e % 3 - 1;
  } else {
    if (e > 13) return 0;
    // Balanced ternary digits of e: w0 = round(e / 9), then w1, w2 of the rest.
    const int w0 = e >= 5 ? 1 : 0;
    const int r = e - 9 * w0;  // -4..4
    const int w1 = r >= 2 ? 1 : (r <= -2 ? -1 : 0);
    const int w2 = r - 3 * w1;
    return i == 0 ? w0 : (i == 1 ? w1 : w2);
  }
}

// Table index and sign of one group of weights (w[i] for i < G).
template <int G> constexpr int lut_index(const int* w, bool& negative) noexcept {
  if constexpr (G == 2) {
    negative = false;
    return 3 * (w[0] + 1) + (w[1] + 1);
  } else {
    const int v = 9 * w[0] + 3 * w[1] + w[2];
    negative = v < 0;
    return v < 0 ? -v : v;
  }
}

// Largest |L| one lookup can contribute: G = 2: 2 * 128; G = 3: 3 * 128 + 1 (one's complement).
template <int G> constexpr int lut_max_entry() noexcept { return G == 2 ? 256 : 385; }

inline std::int32_t load_i32(const std::int32_t* p, int i) noexcept {
  std::int32_t v;
  std::memcpy(&v, p + i, sizeof v);
  return v;
}
inline void store_i32(std::int32_t* p, int i, std::int32_t v) noexcept { std::memcpy(p + i, &v, sizeof v); }

// Portable table builder (also the tail of the SIMD builders).
template <int G>
inline void lut_build_tables_scalar(const std::int8_t* q, std::int64_t k0, std::int64_t kvalid, std::int64_t ngroups,
                                    std::uint8_t* tbl) noexcept {
  for (std::int64_t j = 0; j < ngroups; ++j) {
    int b[G];
    for (int i = 0; i < G; ++i) {
      const std::int64_t k = k0 + G * j + i;
      b[i] = k < kvalid ? q[k] : 0;
    }
    std::uint8_t* t = tbl + 32 * j;
    for (int e = 0; e < 16; ++e) {
      int v = 0;
      for (int i = 0; i < G; ++i) v += lut_entry_weight<G>(e, i) * b[i];
      const auto u = static_cast<std::uint16_t>(v);
      t[e] = static_cast<std::uint8_t>(u & 0xFF);
      t[16 + e] = static_cast<std::uint8_t>(u >> 8);
    }
  }
}

// Bytes of one 16-row subtile of one 32-group block in the lutd layout: four index vectors
// (two quads of groups each, as nibbles) and one sign vector, 64 bytes each.
inline constexpr int kLutdSubtileBytes = 320;

// Portable lutd table arrangement (contract above).
inline void lutd_arrange_scalar(const std::uint8_t* raw, std::int64_t nquads, std::uint8_t* tbl) noexcept {
  for (std::int64_t q = 0; q < nquads; ++q)
    for (int j = 0; j < 4; ++j)
      for (int e = 0; e < 16; ++e) {
        const std::uint8_t* g = raw + 32 * (4 * q + j);
        tbl[128 * q + 16 * j + e] = g[e];
        tbl[128 * q + 64 + 16 * j + e] = static_cast<std::uint8_t>(g[16 + e] ^ 0x80u);
      }
}

// Dot-layout GEMM: the activations of token row q in the order of lutd_decode's codes. Per block
// b of 32 groups, 96 bytes: dword 3c + p (c = quad), byte j = q[3 * (32b + 4c + j) + p], 0 for
// indices >= kvalid. Inside each run of 12 bytes this transposes 4 groups x 3 weights.
inline void lutd_gather(const std::int8_t* q, std::int64_t kvalid, std::int64_t nblk, std::int8_t* act) noexcept {
  for (std::int64_t b = 0; b < nblk; ++b)
    for (int c = 0; c < 8; ++c) {
      const std::int64_t k0 = 96 * b + 12 * c;
      std::int8_t* o = act + k0;
      if (k0 + 12 <= kvalid) {
        for (int p = 0; p < 3; ++p)
          for (int j = 0; j < 4; ++j) o[4 * p + j] = q[k0 + 3 * j + p];
      } else {
        for (int p = 0; p < 3; ++p)
          for (int j = 0; j < 4; ++j) {
            const std::int64_t k = k0 + 3 * j + p;
            o[4 * p + j] = k < kvalid ? q[k] : std::int8_t{0};
          }
      }
    }
}

// Code w + 1 of weight p of magnitude index e (sign +), for lutd_decode; unused 14, 15 give 1.
struct lutd_code_table {
  std::uint8_t c[3][16];
};
inline constexpr lutd_code_table kLutdCodes = [] {
  lutd_code_table t{};
  for (int p = 0; p < 3; ++p)
    for (int e = 0; e < 16; ++e) t.c[p][e] = static_cast<std::uint8_t>(lut_entry_weight<3>(e, p) + 1);
  return t;
}();

// Portable activation gather for the vector family: act[i][t] = q_t[k0 + i] (int16),
// 0 for absent tokens (qrows[t] == nullptr) and for k >= kvalid.
template <int NT>
inline void lutv_gather_scalar(const std::int8_t* const* qrows, std::int64_t k0, std::int64_t kvalid, int nk,
                               std::int16_t* act) noexcept {
  for (int i = 0; i < nk; ++i)
    for (int t = 0; t < NT; ++t)
      act[i * NT + t] = (qrows[t] != nullptr && k0 + i < kvalid) ? qrows[t][k0 + i] : std::int16_t{0};
}

// Portable vector-table builder.
template <int NT> inline void lutv_build_scalar(const std::int16_t* act, int tb, std::int16_t* tbl) noexcept {
  for (int j = 0; j < tb; ++j) {
    const std::int16_t* a = act + 3 * j * NT;
    for (int p = 0; p < 27; ++p) {
      const int c0 = p / 9 - 1, c1 = (p / 3) % 3 - 1, c2 = p % 3 - 1;
      std::int16_t* e = tbl + (j * 27 + p) * NT;
      for (int t = 0; t < NT; ++t) e[t] = static_cast<std::int16_t>(c0 * a[t] + c1 * a[NT + t] + c2 * a[2 * NT + t]);
    }
  }
}

template <class Arch> struct lut_impl;

template <> struct lut_impl<arch::scalar> {
  template <int G>
  static void build_tables(const std::int8_t* q, std::int64_t k0, std::int64_t kvalid, std::int64_t ngroups,
                           std::uint8_t* tbl) noexcept {
    lut_build_tables_scalar<G>(q, k0, kvalid, ngroups, tbl);
  }

  // Reads the layout one row at a time: the reference path for every row tile.
  template <int G, int RT, int U, int T>
  static void tile_block(const std::uint8_t* w, std::int64_t noct, const std::uint8_t* const* tbl,
                         std::int32_t* const* part, bool first) noexcept {
    constexpr int OB = (G == 2 ? 4 : 5) * RT;  // bytes per octet of groups
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < RT; ++r) {
        std::int32_t s = 0;
        for (std::int64_t o = 0; o < noct; ++o) {
          const std::uint8_t* wo = w + o * OB;
          const unsigned signs = G == 3 ? wo[4 * RT + r] : 0u;
          for (int j = 0; j < 8; ++j) {
            const unsigned e = (wo[(j / 2) * RT + r] >> (4 * (j & 1))) & 15u;
            const std::uint8_t* tb = tbl[t] + 32 * (8 * o + j);
            auto v = static_cast<std::int16_t>(static_cast<std::uint16_t>(tb[e] | (tb[16 + e] << 8)));
            if (G == 3 && ((signs >> (7 - j)) & 1u)) v = static_cast<std::int16_t>(~v);
            s += v;
          }
        }
        store_i32(part[t], r, first ? s : load_i32(part[t], r) + s);
      }
    }
  }

  static void lutd_arrange(const std::uint8_t* raw, std::int64_t nquads, std::uint8_t* tbl) noexcept {
    lutd_arrange_scalar(raw, nquads, tbl);
  }

  // Reads the layout one row at a time: the reference path of the dot family.
  template <int RT, int S>
  static void lutd_tile(const std::uint8_t* const* w, std::int64_t nblk, const std::uint8_t* tbl,
                        std::int32_t* const* part, bool first) noexcept {
    for (int k = 0; k < S; ++k)
      for (int r = 0; r < RT; ++r) {
        const int u = r / 16, i = r % 16;
        std::int32_t lo = 0, hi = 0;
        for (std::int64_t b = 0; b < nblk; ++b) {
          const std::uint8_t* sub = w[k] + (b * (RT / 16) + u) * kLutdSubtileBytes;
          for (int q = 0; q < 8; ++q)
            for (int j = 0; j < 4; ++j) {
              const unsigned e = (sub[(q / 2) * 64 + 4 * i + j] >> (4 * (q & 1))) & 15u;
              const int sign = (sub[256 + 4 * i + j] >> q) & 1u ? -1 : 1;
              const std::uint8_t* t = tbl + (b * 8 + q) * 128;
              lo += sign * t[16 * j + e];
              hi += sign * t[64 + 16 * j + e];
            }
        }
        const std::int32_t s = 256 * hi + lo;
        store_i32(part[k], r, first ? s : load_i32(part[k], r) + s);
      }
  }

  // Reads the layout one byte at a time; the sign turns code c into 2 - c.
  template <int RT>
  static void lutd_decode(const std::uint8_t* w, std::int64_t nblk, std::uint8_t* codes) noexcept {
    for (std::int64_t s = 0; s < nblk * (RT / 16); ++s) {
      const std::uint8_t* sub = w + s * kLutdSubtileBytes;
      std::uint8_t* out = codes + s * 1536;
      for (int q = 0; q < 8; ++q)
        for (int k = 0; k < 64; ++k) {
          const unsigned e = (sub[(q / 2) * 64 + k] >> (4 * (q & 1))) & 15u;
          const bool neg = (sub[256 + k] >> q) & 1u;
          for (int p = 0; p < 3; ++p) {
            const std::uint8_t c = kLutdCodes.c[p][e];
            out[(3 * q + p) * 64 + k] = neg ? static_cast<std::uint8_t>(2 - c) : c;
          }
        }
    }
  }

  template <int RT, int T>
  static void lutd_mad(const std::uint8_t* codes, std::int64_t nblk, const std::int8_t* const* act,
                       std::int32_t* acc) noexcept {
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < RT; ++r) {
        const int u = r / 16, i = r % 16;
        std::int32_t s = 0;
        for (std::int64_t b = 0; b < nblk; ++b) {
          const std::uint8_t* c = codes + (b * (RT / 16) + u) * 1536;
          const std::int8_t* a = act[t] + 96 * b;
          for (int d = 0; d < 24; ++d)
            for (int j = 0; j < 4; ++j) s += c[64 * d + 4 * i + j] * a[4 * d + j];
        }
        acc[t * RT + r] = s;
      }
  }

  template <int NT>
  static void lutv_gather(const std::int8_t* const* qrows, std::int64_t k0, std::int64_t kvalid, int nk,
                          std::int16_t* act) noexcept {
    lutv_gather_scalar<NT>(qrows, k0, kvalid, nk, act);
  }

  template <int NT> static void lutv_build(const std::int16_t* act, int tb, std::int16_t* tbl) noexcept {
    lutv_build_scalar<NT>(act, tb, tbl);
  }

  template <int NT, int R, int TB>
  static void lutv_rows(const std::uint8_t* idx, const std::int16_t* tbl, std::int32_t* part, bool first) noexcept {
    for (int r = 0; r < R; ++r) {
      std::int32_t s[NT] = {};
      for (int j = 0; j < TB; ++j) {
        const std::int16_t* e = tbl + (j * 27 + idx[32 * r + j]) * NT;
        for (int t = 0; t < NT; ++t) s[t] += e[t];
      }
      for (int t = 0; t < NT; ++t) part[r * NT + t] = first ? s[t] : part[r * NT + t] + s[t];
    }
  }
};

}  // namespace bitnet::detail
