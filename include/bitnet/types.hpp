// bitnet/types.hpp - tensor element types as they appear in GGUF files.
//
// Contract: ids are the numbers stored in GGUF tensor infos. Ids 36..39 clash
// between bitnet.cpp's llama.cpp fork (I2_S, I8_S, TL1, TL2) and upstream ggml
// (36..38 removed, 39 = MXFP4); `id_convention` says which one a file follows
// and `resolve_type_id` maps a raw id to a `tensor_type` under it.
// Byte sizes follow ggml's rules; I2_S/TL1/TL2 use the fork's special nbytes
// (codes + a 32-byte scale slot).
#pragma once

#include <array>        // std::array for shapes
#include <cstdint>      // fixed-width ids and sizes
#include <optional>     // sizes that may overflow
#include <string>       // error text
#include <string_view>  // type names

namespace bitnet {

// Our own enumeration, independent of either id convention.
enum class tensor_type : std::uint8_t {
  f32, f16, q4_0, q8_0, q6_k, q8_k, bf16, tq1_0, tq2_0, i2_s, i8_s, tl1, tl2, mxfp4,
};

enum class id_convention : std::uint8_t {
  upstream,  // ggml / llama.cpp: 39 = MXFP4, 36..38 invalid
  bitnet,    // bitnet.cpp fork: 36 = I2_S, 37 = I8_S, 38 = TL1, 39 = TL2
};

struct type_traits {
  tensor_type type;
  std::string_view name;
  std::uint32_t block;       // logical elements per block (1 for the fork's special types)
  std::uint32_t block_bytes; // bytes per block (0 for the fork's special types)
  bool ternary;
};

inline constexpr std::array<type_traits, 14> kTypeTraits{{
    {tensor_type::f32, "F32", 1, 4, false},
    {tensor_type::f16, "F16", 1, 2, false},
    {tensor_type::q4_0, "Q4_0", 32, 18, false},
    {tensor_type::q8_0, "Q8_0", 32, 34, false},
    {tensor_type::q6_k, "Q6_K", 256, 210, false},
    {tensor_type::q8_k, "Q8_K", 256, 292, false},
    {tensor_type::bf16, "BF16", 1, 2, false},
    {tensor_type::tq1_0, "TQ1_0", 256, 54, true},
    {tensor_type::tq2_0, "TQ2_0", 256, 66, true},
    {tensor_type::i2_s, "I2_S", 1, 0, true},
    {tensor_type::i8_s, "I8_S", 1, 1, false},
    {tensor_type::tl1, "TL1", 1, 0, true},
    {tensor_type::tl2, "TL2", 1, 0, true},
    {tensor_type::mxfp4, "MXFP4", 32, 17, false},
}};

constexpr const type_traits& traits(tensor_type t) noexcept {
  return kTypeTraits[static_cast<std::size_t>(t)];
}
constexpr std::string_view type_name(tensor_type t) noexcept { return traits(t).name; }

inline std::optional<tensor_type> type_from_name(std::string_view s) noexcept {
  for (const auto& tr : kTypeTraits) {
    if (tr.name.size() != s.size()) continue;
    bool eq = true;
    for (std::size_t i = 0; i < s.size(); ++i) {
      char a = tr.name[i], b = s[i];
      if (b >= 'a' && b <= 'z') b = static_cast<char>(b - 'a' + 'A');
      if (a != b) { eq = false; break; }
    }
    if (eq) return tr.type;
  }
  return std::nullopt;
}

// Raw GGUF id -> type under a convention. nullopt = unknown / invalid there.
constexpr std::optional<tensor_type> resolve_type_id(std::uint32_t id, id_convention c) noexcept {
  switch (id) {
    case 0: return tensor_type::f32;
    case 1: return tensor_type::f16;
    case 2: return tensor_type::q4_0;
    case 8: return tensor_type::q8_0;
    case 14: return tensor_type::q6_k;
    case 15: return tensor_type::q8_k;
    case 30: return tensor_type::bf16;
    case 34: return tensor_type::tq1_0;
    case 35: return tensor_type::tq2_0;
    case 36: if (c == id_convention::bitnet) return tensor_type::i2_s; return std::nullopt;
    case 37: if (c == id_convention::bitnet) return tensor_type::i8_s; return std::nullopt;
    case 38: if (c == id_convention::bitnet) return tensor_type::tl1; return std::nullopt;
    case 39: return c == id_convention::bitnet ? tensor_type::tl2 : tensor_type::mxfp4;
    default: return std::nullopt;
  }
}

// Type -> raw id under a convention (nullopt when the convention has no id for it).
constexpr std::optional<std::uint32_t> type_id(tensor_type t, id_convention c) noexcept {
  switch (t) {
    case tensor_type::f32: return 0u;
    case tensor_type::f16: return 1u;
    case tensor_type::q4_0: return 2u;
    case tensor_type::q8_0: return 8u;
    case tensor_type::q6_k: return 14u;
    case tensor_type::q8_k: return 15u;
    case tensor_type::bf16: return 30u;
    case tensor_type::tq1_0: return 34u;
    case tensor_type::tq2_0: return 35u;
    case tensor_type::i2_s: if (c == id_convention::bitnet) return 36u; return std::nullopt;
    case tensor_type::i8_s: if (c == id_convention::bitnet) return 37u; return std::nullopt;
    case tensor_type::tl1: if (c == id_convention::bitnet) return 38u; return std::nullopt;
    case tensor_type::tl2: if (c == id_convention::bitnet) return 39u; return std::nullopt;
    case tensor_type::mxfp4: if (c == id_convention::upstream) return 39u; return std::nullopt;
  }
  return std::nullopt;
}

namespace detail {
constexpr bool mul_ok(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  return !__builtin_mul_overflow(a, b, &out);
}
}  // namespace detail

// Bytes of a tensor of `ne` (ggml order, ne[0] contiguous) of type t, or nullopt
// when the element count or byte size overflows, or ne[0] is not a multiple of
// the block. `why` (optional) receives the reason.
inline std::optional<std::uint64_t> tensor_nbytes(tensor_type t, const std::array<std::uint64_t, 4>& ne,
                                                  std::string* why = nullptr) {
  auto fail = [&](const char* msg) -> std::optional<std::uint64_t> {
    if (why) *why = msg;
    return std::nullopt;
  };
  std::uint64_t n = 1;
  for (auto d : ne) {
    if (d > static_cast<std::uint64_t>(INT64_MAX)) return fail("dimension exceeds INT64_MAX");
    if (!detail::mul_ok(n, d, n) || n > static_cast<std::uint64_t>(INT64_MAX))
      return fail("element count overflows int64");
  }
  const auto& tr = traits(t);
  switch (t) {
    case tensor_type::i2_s:
    case tensor_type::tl1:
      if (n % 4 != 0) return fail("element count is not a multiple of 4");
      return n / 4 + 32;
    case tensor_type::tl2: {
      // The fork's formula, integer ops left to right; needs ne0 >= 256.
      if (ne[0] < 256) return fail("TL2 needs ne[0] >= 256");
      std::uint64_t a = 0, b = 0;
      if (!detail::mul_ok(ne[0] - 256, ne[1], a)) return fail("size overflows");
      a = a / 3;
      if (!detail::mul_ok(a, 5, a)) return fail("size overflows");
      a /= 8;
      if (!detail::mul_ok(256, ne[1], b)) return fail("size overflows");
      b = b / 2 * 4 / 8;
      std::uint64_t s = a + b;
      s = (s + 31) / 32 * 32;
      return s + 32;
    }
    default: break;
  }
  if (ne[0] % tr.block != 0) return fail("ne[0] is not a multiple of the type's block size");
  std::uint64_t bytes = 0;
  if (!detail::mul_ok(n / tr.block, tr.block_bytes, bytes)) return fail("byte size overflows");
  return bytes;
}

}  // namespace bitnet
