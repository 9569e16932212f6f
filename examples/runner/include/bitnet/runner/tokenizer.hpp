// bitnet/runner/tokenizer.hpp - the runner's tokenizers, built from GGUF tokenizer metadata.
//
// Contract
// * Two vocabulary kinds, chosen by vocab_data::model (GGUF `tokenizer.ggml.model`):
//   - "llama": SentencePiece as llama.cpp runs it. Special tokens are split out first;
//     every text fragment at the start or right after a special token gets one leading
//     space when add_space_prefix; spaces become U+2581; adjacent pieces are merged by
//     vocabulary score (max-heap, ties go to the leftmost pair); a final piece that is not
//     in the vocabulary is emitted byte by byte as <0xXX> tokens.
//   - "gpt2": byte-level BPE. Special tokens are split out first, the rest is cut by the
//     pre-tokenizer that vocab_data::pre names (GPT-2 or Llama-3 rules; hand-written
//     scanners over code points, detail::match_gpt2 / match_llama3, with \p{L}, \p{N} and
//     \s from unicode_data.hpp), bytes are mapped through the GPT-2 byte->code point table
//     and merged by rank (lowest merge index first, ties leftmost). With the Llama-3 rules
//     a piece that is itself a vocabulary entry is taken whole (llama.cpp's
//     `ignore_merges`). A final symbol that is not a token becomes one token per byte.
// * encode() takes UTF-8. Invalid UTF-8 (stray continuation bytes, overlong forms,
//   surrogates, code points above U+10FFFF, a truncated last sequence) is rejected with
//   std::runtime_error("tokenizer: invalid UTF-8 in input at byte offset N (byte 0xXX)").
// * Special tokens: control and unknown tokens are matched in the text only when
//   parse_special is true; user-defined tokens are always matched (llama.cpp does the
//   same). Longer tokens are matched first.
// * decode_token() gives the raw bytes of one token, which may be part of a UTF-8
//   sequence. Control, unknown, unused and undefined tokens decode to nothing, as in
//   llama.cpp without `special`. decode() concatenates and, for SentencePiece with
//   add_space_prefix, drops the one space that encode() put in front of the text, so
//   decode(encode(s)) == s (for SentencePiece unless s contains U+2581, which decodes as a
//   space). stream_decoder releases only complete UTF-8 characters and never emits invalid
//   UTF-8 (ill-formed bytes become U+FFFD).
// * Everything is built once in the constructor (token and merge hash maps); encode and
//   decode are const and may run concurrently.
#pragma once

#include <algorithm>      // std::sort, std::push_heap, std::pop_heap, std::upper_bound
#include <array>          // byte tables
#include <cstddef>        // std::size_t
#include <cstdint>        // std::int32_t, std::uint64_t
#include <cstdio>         // std::snprintf for error text and <0xXX> names
#include <functional>     // std::equal_to<>, std::hash
#include <optional>       // find_token
#include <span>           // decode input
#include <stdexcept>      // std::runtime_error
#include <string>         // pieces and text
#include <string_view>    // inputs
#include <unordered_map>  // token and merge maps
#include <utility>        // std::move
#include <vector>         // everything else

#include "bitnet/runner/unicode_data.hpp"  // code point classes for the BPE pre-tokenizers

#if __has_include(<bitnet/gguf.hpp>)
#include <bitnet/gguf.hpp>  // bitnet::gguf::file for vocab_from_gguf
#define BITNET_TOK_HAVE_GGUF 1
#else
#define BITNET_TOK_HAVE_GGUF 0
#endif

namespace bitnet::tok {

// GGUF `tokenizer.ggml.token_type` codes.
enum class token_type : std::int32_t {
  undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6
};

// Plain data, filled from GGUF metadata (vocab_from_gguf) or by tests. scores and types may
// be left empty (all 0 / all normal); otherwise they must have one entry per token.
struct vocab_data {
  std::string model;  // "llama" (SentencePiece) or "gpt2" (byte-level BPE)
  std::string pre;    // tokenizer.ggml.pre ("" if absent); see detail::resolve_pre
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<token_type> types;
  std::vector<std::string> merges;  // "left right", split at the first space after position 0
  std::int32_t bos = -1, eos = -1, eot = -1, unk = -1, pad = -1;
  bool add_bos = true, add_eos = false, add_space_prefix = true;
  std::vector<std::string> warnings;  // what vocab_from_gguf ignored, for the host to show
};

namespace detail {

// Concatenates message parts with +=, never operator+ (whose rvalue overloads make GCC 12 -O3
// report false -Wrestrict / -Wstringop-overflow warnings in the code that includes us).
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::string s;
  ((s += parts), ...);
  return s;
}

// ---------------------------------------------------------------- UTF-8

enum class utf8_status { ok, incomplete, invalid };
struct utf8_step {
  std::size_t len;  // ok: sequence length; incomplete: bytes present; invalid: maximal ill-formed prefix (>= 1)
  utf8_status status;
};

// Classifies the sequence starting at s[i] (Unicode 15, table 3-7: no overlongs, no
// surrogates, nothing above U+10FFFF). `incomplete` means a valid prefix cut by the end of s.
inline utf8_step utf8_check(std::string_view s, std::size_t i) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {1, utf8_status::ok};
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {1, utf8_status::invalid};
  }
  for (std::size_t k = 1; k < n; ++k) {
    if (i + k >= s.size()) return {k, utf8_status::incomplete};
    const auto c = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (c < l || c > h) return {k, utf8_status::invalid};
  }
  return {n, utf8_status::ok};
}

// Offset of the first byte that does not start a complete, valid sequence; npos if s is valid.
inline std::size_t utf8_first_invalid(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    const utf8_step st = utf8_check(s, i);
    if (st.status != utf8_status::ok) return i;
    i += st.len;
  }
  return std::string_view::npos;
}

// Decodes the valid sequence of `len` bytes at s[i].
inline char32_t utf8_decode(std::string_view s, std::size_t i, std::size_t len) noexcept {
  const auto b = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k])); };
  switch (len) {
    case 1: return b(0);
    case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

inline void utf8_append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// Length of the sequence that a valid lead byte starts.
inline std::size_t utf8_lead_len(unsigned char b) noexcept {
  return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
inline constexpr std::string_view kSpmSpace = "\xE2\x96\x81";     // U+2581

// ---------------------------------------------------------------- code point classes

inline std::uint8_t cp_flags(char32_t c) noexcept {
  if (c < 0x80) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return cp_letter;
    if (c >= '0' && c <= '9') return cp_number;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return cp_space;
    return 0;
  }
  const auto it = std::upper_bound(kCpRanges.begin(), kCpRanges.end(), c,
                                   [](char32_t v, const cp_range& r) { return v < r.first; });
  if (it == kCpRanges.begin()) return 0;
  const cp_range& r = *(it - 1);
  return c <= r.last ? r.flags : 0;
}

// ---------------------------------------------------------------- GPT-2 byte <-> code point

// Printable bytes stand for themselves; the other 68 bytes get U+0100.. in byte order.
inline constexpr std::array<char32_t, 256> kByteToCp = [] {
  std::array<char32_t, 256> m{};
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    m[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
  }
  return m;
}();

inline constexpr std::size_t kCpToByteSize = 0x100 + 68;
inline constexpr std::array<std::int16_t, kCpToByteSize> kCpToByte = [] {
  std::array<std::int16_t, kCpToByteSize> m{};
  for (auto& v : m) v = -1;
  for (int b = 0; b < 256; ++b) m[kByteToCp[static_cast<std::size_t>(b)]] = static_cast<std::int16_t>(b);
  return m;
}();

// ---------------------------------------------------------------- pre-tokenizers

enum class pre_kind { gpt2, llama3 };

struct pre_info {
  pre_kind kind;
  bool ignore_merges;  // take a piece whole when it is a vocabulary entry
};

// Names as in llama.cpp's llm_load_vocab. "" and "default" use the GPT-2 rules here (llama.cpp's
// `default` is a four-regex cascade; vocab_from_gguf maps a missing pre of a Llama-3 vocab to
// "llama-bpe" instead, see there).
inline pre_info resolve_pre(std::string_view pre) {
  if (pre.empty() || pre == "default" || pre == "gpt2" || pre == "gpt-2") return {pre_kind::gpt2, false};
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "falcon3") return {pre_kind::llama3, true};
  throw std::runtime_error(cat("tokenizer: unsupported pre-tokenizer '", pre,
                               "' (tokenizer.ggml.pre); supported: gpt2, gpt-2, default, llama-bpe, llama3, llama-v3, falcon3"));
}

// One pre-tokenizer match starting at code point i of cp[0..n); returns its end (> i).
// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
inline std::size_t match_gpt2(const std::vector<char32_t>& cp, const std::vector<std::uint8_t>& fl, std::size_t i) {
  const std::size_t n = cp.size();
  const auto has = [&](std::size_t k, std::uint8_t f) { return k < n && (fl[k] & f) != 0; };
  const auto other = [&](std::size_t k) { return k < n && (fl[k] & (cp_letter | cp_number | cp_space)) == 0; };
  const char32_t c = cp[i];
  if (c == U'\'' && i + 1 < n) {
    const char32_t c1 = cp[i + 1];
    if (c1 == U's' || c1 == U't' || c1 == U'm' || c1 == U'd') return i + 2;
    if (i + 2 < n) {
      const char32_t c2 = cp[i + 2];
      if ((c1 == U'r' && c2 == U'e') || (c1 == U'v' && c2 == U'e') || (c1 == U'l' && c2 == U'l')) return i + 3;
    }
  }
  const std::size_t j = c == U' ' ? i + 1 : i;  // the optional leading space
  for (const std::uint8_t f : {cp_letter, cp_number}) {
    if (has(j, f)) {
      std::size_t k = j + 1;
      while (has(k, f)) ++k;
      return k;
    }
  }
  if (other(j)) {
    std::size_t k = j + 1;
    while (other(k)) ++k;
    return k;
  }
  // c is whitespace: \s+(?!\S) keeps the last blank for the next piece; else \s+
  std::size_t k = i;
  while (has(k, cp_space)) ++k;
  if (k < n && k - i >= 2) return k - 1;
  return k;
}

// Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
inline std::size_t match_llama3(const std::vector<char32_t>& cp, const std::vector<std::uint8_t>& fl, std::size_t i) {
  const std::size_t n = cp.size();
  const auto has = [&](std::size_t k, std::uint8_t f) { return k < n && (fl[k] & f) != 0; };
  const auto other = [&](std::size_t k) { return k < n && (fl[k] & (cp_letter | cp_number | cp_space)) == 0; };
  const auto newline = [&](std::size_t k) { return k < n && (cp[k] == U'\r' || cp[k] == U'\n'); };
  const auto lower = [](char32_t x) { return x >= U'A' && x <= U'Z' ? x + 32 : x; };
  const char32_t c = cp[i];
  if (c == U'\'' && i + 1 < n) {
    const char32_t c1 = lower(cp[i + 1]);
    if (c1 == U's' || c1 == U't' || c1 == U'm' || c1 == U'd') return i + 2;
    if (i + 2 < n) {
      const char32_t c2 = lower(cp[i + 2]);
      if ((c1 == U'r' && c2 == U'e') || (c1 == U'v' && c2 == U'e') || (c1 == U'l' && c2 == U'l')) return i + 3;
    }
  }
  if (has(i, cp_letter) || (!newline(i) && !has(i, cp_number) && has(i + 1, cp_letter))) {
    std::size_t k = i + 1;
    while (has(k, cp_letter)) ++k;
    return k;
  }
  if (has(i, cp_number)) {
    std::size_t k = i + 1;
    while (k - i < 3 && has(k, cp_number)) ++k;
    return k;
  }
  const std::size_t j = c == U' ' ? i + 1 : i;
  if (other(j)) {
    std::size_t k = j + 1;
    while (other(k)) ++k;
    while (newline(k)) ++k;
    return k;
  }
  // c is whitespace
  std::size_t k = i, after_last_newline = 0;
  while (has(k, cp_space)) {
    if (newline(k)) after_last_newline = k + 1;
    ++k;
  }
  if (after_last_newline != 0) return after_last_newline;  // \s*[\r\n]+
  if (k < n && k - i >= 2) return k - 1;                    // \s+(?!\S)
  return k;                                                 // \s+
}

// Splits valid UTF-8 text into pre-tokenizer pieces, as byte ranges [first, second).
inline std::vector<std::pair<std::size_t, std::size_t>> pretokenize(std::string_view text, pre_kind kind) {
  std::vector<char32_t> cp;
  std::vector<std::uint8_t> fl;
  std::vector<std::size_t> off;  // byte offset of each code point, plus the end
  cp.reserve(text.size());
  fl.reserve(text.size());
  off.reserve(text.size() + 1);
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t len = utf8_lead_len(static_cast<unsigned char>(text[i]));
    const char32_t c = utf8_decode(text, i, len);
    cp.push_back(c);
    fl.push_back(cp_flags(c));
    off.push_back(i);
    i += len;
  }
  off.push_back(text.size());
  std::vector<std::pair<std::size_t, std::size_t>> pieces;
  for (std::size_t i = 0; i < cp.size();) {
    const std::size_t e = kind == pre_kind::llama3 ? match_llama3(cp, fl, i) : match_gpt2(cp, fl, i);
    pieces.emplace_back(off[i], off[e]);
    i = e;
  }
  return pieces;
}

// ---------------------------------------------------------------- hashing

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using token_map = std::unordered_map<std::string, std::int32_t, string_hash, std::equal_to<>>;

struct pair_hash {
  std::size_t operator()(std::uint64_t x) const noexcept {  // splitmix64 finaliser
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return static_cast<std::size_t>(x);
  }
};
inline std::uint64_t pair_key(std::int32_t a, std::int32_t b) noexcept {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
}

struct merge_rule {
  std::int32_t rank;
  std::int32_t result;  // symbol id of left+right (a token id, or an id >= n_vocab for non-tokens)
};

inline std::string hex_byte(unsigned char b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned>(b));
  return buf;
}

}  // namespace detail

class tokenizer {
 public:
  // Validates `v` and builds the lookup tables; throws std::runtime_error naming the problem.
  explicit tokenizer(vocab_data v) : d_(std::move(v)) {
    const std::size_t n = d_.tokens.size();
    if (d_.model == "llama") {
      spm_ = true;
    } else if (d_.model == "gpt2") {
      spm_ = false;
      pre_ = detail::resolve_pre(d_.pre);
    } else {
      throw std::runtime_error(detail::cat("tokenizer: unsupported tokenizer model '", d_.model,
                                           "' (tokenizer.ggml.model); supported: llama (SentencePiece), gpt2 (byte-level BPE)"));
    }
    if (n == 0) throw std::runtime_error("tokenizer: the vocabulary has no tokens");
    if (n > 0x7FFFFFFF / 2) throw std::runtime_error("tokenizer: the vocabulary is too large");
    if (d_.scores.empty()) d_.scores.assign(n, 0.0f);
    if (d_.types.empty()) d_.types.assign(n, token_type::normal);
    if (d_.scores.size() != n)
      throw std::runtime_error(detail::cat("tokenizer: ", std::to_string(d_.scores.size()), " scores for ", std::to_string(n), " tokens"));
    if (d_.types.size() != n)
      throw std::runtime_error(detail::cat("tokenizer: ", std::to_string(d_.types.size()), " token types for ", std::to_string(n), " tokens"));
    const auto check_id = [&](std::int32_t id, const char* what) {
      if (id < -1 || id >= static_cast<std::int32_t>(n))
        throw std::runtime_error(detail::cat("tokenizer: ", what, " token id ", std::to_string(id),
                                             " is outside the vocabulary of ", std::to_string(n), " tokens"));
    };
    check_id(d_.bos, "BOS");
    check_id(d_.eos, "EOS");
    check_id(d_.eot, "EOT");
    check_id(d_.unk, "unknown");
    check_id(d_.pad, "padding");
    if (d_.add_bos && d_.bos < 0) throw std::runtime_error("tokenizer: add_bos is set but there is no BOS token id");
    if (d_.add_eos && d_.eos < 0) throw std::runtime_error("tokenizer: add_eos is set but there is no EOS token id");

    to_id_.reserve(n);
    for (std::size_t i = 0; i < n; ++i) to_id_.insert_or_assign(d_.tokens[i], static_cast<std::int32_t>(i));  // last wins

    for (std::size_t i = 0; i < n; ++i) {
      const token_type t = d_.types[i];
      if ((t == token_type::control || t == token_type::user_defined || t == token_type::unknown) && !d_.tokens[i].empty())
        specials_.push_back(static_cast<std::int32_t>(i));
    }
    std::sort(specials_.begin(), specials_.end(), [&](std::int32_t a, std::int32_t b) {
      const std::size_t la = d_.tokens[static_cast<std::size_t>(a)].size(), lb = d_.tokens[static_cast<std::size_t>(b)].size();
      return la != lb ? la > lb : a < b;
    });

    if (spm_) {
      build_spm();
    } else {
      build_bpe();
    }
  }

  // Token ids for `text` (UTF-8; throws std::runtime_error naming the byte offset of invalid
  // input). add_special adds BOS / EOS as add_bos / add_eos say; parse_special lets control
  // tokens written in the text (e.g. "<|eot_id|>") become their ids.
  std::vector<std::int32_t> encode(std::string_view text, bool add_special, bool parse_special) const {
    if (const std::size_t bad = detail::utf8_first_invalid(text); bad != std::string_view::npos) {
      throw std::runtime_error(detail::cat("tokenizer: invalid UTF-8 in input at byte offset ", std::to_string(bad), " (byte ",
                                           detail::hex_byte(static_cast<unsigned char>(text[bad])), ")"));
    }
    std::vector<std::int32_t> out;
    out.reserve(text.size() / 3 + 4);
    if (add_special && d_.add_bos) out.push_back(d_.bos);
    bool after_special = true;  // SentencePiece: a fragment at the start or after a special token gets the prefix space
    for (const fragment& f : partition(text, parse_special)) {
      if (f.token >= 0) {
        out.push_back(f.token);
        after_special = true;
        continue;
      }
      const std::string_view raw = text.substr(f.off, f.len);
      if (spm_) {
        std::string s;
        s.reserve(raw.size() * 3 + 3);
        if (d_.add_space_prefix && after_special) s += detail::kSpmSpace;
        for (const char ch : raw) {
          if (ch == ' ') {
            s += detail::kSpmSpace;
          } else {
            s += ch;
          }
        }
        encode_spm(s, out);
      } else {
        for (const auto& [b, e] : detail::pretokenize(raw, pre_.kind)) encode_bpe_piece(raw.substr(b, e - b), out);
      }
      after_special = false;
    }
    if (add_special && d_.add_eos) out.push_back(d_.eos);
    return out;
  }

  // Raw bytes of one token (possibly an incomplete UTF-8 sequence). Control, unknown, unused
  // and undefined tokens give "". Throws std::runtime_error for an id outside the vocabulary.
  std::string decode_token(std::int32_t id) const {
    if (id < 0 || static_cast<std::size_t>(id) >= d_.tokens.size())
      throw std::runtime_error(detail::cat("tokenizer: token id ", std::to_string(id), " is outside the vocabulary of ",
                                           std::to_string(d_.tokens.size()), " tokens"));
    const std::string& text = d_.tokens[static_cast<std::size_t>(id)];
    switch (d_.types[static_cast<std::size_t>(id)]) {
      case token_type::user_defined:
        return text;
      case token_type::byte:
        if (spm_) {
          if (const int b = parse_byte_token(text); b >= 0) return std::string(1, static_cast<char>(b));
          return text;
        }
        return bpe_unmap(text);
      case token_type::normal:
        return spm_ ? spm_unescape(text) : bpe_unmap(text);
      default:
        return {};
    }
  }

  // The text of `ids`. For SentencePiece with add_space_prefix, the leading space of the first
  // token that produces text is dropped when only tokens without text (e.g. BOS) precede it.
  // The result is the raw bytes; use stream_decoder for display.
  std::string decode(std::span<const std::int32_t> ids) const {
    std::string out;
    bool strip = spm_ && d_.add_space_prefix;
    for (const std::int32_t id : ids) {
      std::string piece = decode_token(id);
      if (strip && !piece.empty()) {
        if (piece.front() == ' ') piece.erase(0, 1);
        strip = false;
      }
      out += piece;
    }
    return out;
  }

  std::int32_t bos() const noexcept { return d_.bos; }
  std::int32_t eos() const noexcept { return d_.eos; }
  std::int32_t eot() const noexcept { return d_.eot; }
  // End of generation: EOS or EOT (e.g. <|eot_id|>).
  bool is_eog(std::int32_t id) const noexcept { return id >= 0 && (id == d_.eos || id == d_.eot); }
  std::size_t n_vocab() const noexcept { return d_.tokens.size(); }
  // The id of the vocabulary entry spelled exactly `piece` (stored form: U+2581 for SentencePiece
  // spaces, GPT-2 mapped bytes for BPE). With duplicates, the highest id wins, as in llama.cpp.
  std::optional<std::int32_t> find_token(std::string_view piece) const {
    const auto it = to_id_.find(piece);
    if (it == to_id_.end()) return std::nullopt;
    return it->second;
  }
  const vocab_data& data() const noexcept { return d_; }
  // True for SentencePiece ("llama") vocabularies.
  bool is_spm() const noexcept { return spm_; }

 private:
  struct fragment {
    std::int32_t token;  // >= 0: a special token; -1: raw text [off, off + len)
    std::size_t off, len;
  };

  // ---- construction

  void build_spm() {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", static_cast<unsigned>(b));
      std::int32_t id = lookup(name);
      if (id < 0) id = lookup(std::string(1, static_cast<char>(b)));
      byte_tok_[static_cast<std::size_t>(b)] = id;
    }
  }

  void build_bpe() {
    const auto n = static_cast<std::int32_t>(d_.tokens.size());
    detail::token_map extra;  // strings that merges name but the vocabulary lacks
    const auto sym_id = [&](std::string_view s) {
      if (const std::int32_t id = lookup(s); id >= 0) return id;
      auto it = extra.find(s);
      if (it == extra.end()) it = extra.emplace(std::string(s), n + static_cast<std::int32_t>(extra.size())).first;
      return it->second;
    };
    for (int b = 0; b < 256; ++b) {
      std::string s;
      detail::utf8_append(s, detail::kByteToCp[static_cast<std::size_t>(b)]);
      byte_tok_[static_cast<std::size_t>(b)] = lookup(s);
    }
    merges_.reserve(d_.merges.size());
    std::string joined;
    for (std::size_t r = 0; r < d_.merges.size(); ++r) {
      const std::string& m = d_.merges[r];
      const std::size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
      if (sp == std::string::npos)
        throw std::runtime_error(detail::cat("tokenizer: merge #", std::to_string(r), " ('", m, "') is not of the form 'left right'"));
      const std::string_view left = std::string_view(m).substr(0, sp), right = std::string_view(m).substr(sp + 1);
      const std::int32_t a = sym_id(left), b = sym_id(right);
      joined.assign(left);
      joined += right;
      const std::int32_t c = sym_id(joined);
      merges_.try_emplace(detail::pair_key(a, b), detail::merge_rule{static_cast<std::int32_t>(r), c});  // first rank wins
    }
    // The initial symbol of each byte: its token, or a merge-only name, or nothing (-1).
    for (int b = 0; b < 256; ++b) {
      std::string s;
      detail::utf8_append(s, detail::kByteToCp[static_cast<std::size_t>(b)]);
      std::int32_t id = lookup(s);
      if (id < 0) {
        const auto it = extra.find(s);
        id = it == extra.end() ? -1 : it->second;
      }
      byte_sym_[static_cast<std::size_t>(b)] = id;
    }
  }

  std::int32_t lookup(std::string_view s) const {
    const auto it = to_id_.find(s);
    return it == to_id_.end() ? -1 : it->second;
  }

  // ---- special tokens (llama.cpp's tokenizer_st_partition: each special token in turn, longest
  // first, cuts every raw fragment at all its occurrences)

  std::vector<fragment> partition(std::string_view text, bool parse_special) const {
    std::vector<fragment> frags;
    if (text.empty()) return frags;
    frags.push_back({-1, 0, text.size()});
    std::vector<fragment> next;
    for (const std::int32_t id : specials_) {
      const token_type t = d_.types[static_cast<std::size_t>(id)];
      if (!parse_special && (t == token_type::control || t == token_type::unknown)) continue;
      const std::string& s = d_.tokens[static_cast<std::size_t>(id)];
      if (text.find(s) == std::string_view::npos) continue;
      next.clear();
      for (const fragment& f : frags) {
        if (f.token >= 0) {
          next.push_back(f);
          continue;
        }
        std::size_t pos = f.off;
        const std::size_t end = f.off + f.len;
        for (;;) {
          const std::size_t m = text.find(s, pos);
          if (m == std::string_view::npos || m + s.size() > end) break;
          if (m > pos) next.push_back({-1, pos, m - pos});
          next.push_back({id, m, s.size()});
          pos = m + s.size();
        }
        if (pos < end) next.push_back({-1, pos, end - pos});
      }
      frags.swap(next);
    }
    return frags;
  }

  // ---- SentencePiece

  void encode_spm(std::string_view s, std::vector<std::int32_t>& out) const {
    struct symbol {
      std::int32_t prev, next;
      std::size_t start, n;  // bytes of s; n == 0 once merged into the left neighbour
    };
    struct bigram {
      float score;
      std::int32_t left, right;
      std::size_t size;
    };
    // max-heap: higher score first, then the leftmost pair
    const auto less = [](const bigram& a, const bigram& b) {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    };
    std::vector<symbol> sym;
    sym.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
      const std::size_t len = detail::utf8_lead_len(static_cast<unsigned char>(s[i]));
      const auto idx = static_cast<std::int32_t>(sym.size());
      sym.push_back({idx - 1, i + len == s.size() ? -1 : idx + 1, i, len});
      i += len;
    }
    std::vector<bigram> heap;
    const auto try_add = [&](std::int32_t l, std::int32_t r) {
      if (l < 0 || r < 0) return;
      const symbol& a = sym[static_cast<std::size_t>(l)];
      const symbol& b = sym[static_cast<std::size_t>(r)];
      const std::int32_t id = lookup(s.substr(a.start, a.n + b.n));
      if (id < 0) return;
      heap.push_back({d_.scores[static_cast<std::size_t>(id)], l, r, a.n + b.n});
      std::push_heap(heap.begin(), heap.end(), less);
    };
    for (std::size_t i = 1; i < sym.size(); ++i) try_add(static_cast<std::int32_t>(i - 1), static_cast<std::int32_t>(i));
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), less);
      const bigram bg = heap.back();
      heap.pop_back();
      symbol& a = sym[static_cast<std::size_t>(bg.left)];
      symbol& b = sym[static_cast<std::size_t>(bg.right)];
      if (a.n == 0 || b.n == 0 || a.n + b.n != bg.size) continue;  // stale
      a.n += b.n;
      b.n = 0;
      a.next = b.next;
      if (b.next >= 0) sym[static_cast<std::size_t>(b.next)].prev = bg.left;
      try_add(a.prev, bg.left);
      try_add(bg.left, a.next);
    }
    for (std::int32_t i = sym.empty() ? -1 : 0; i >= 0; i = sym[static_cast<std::size_t>(i)].next) {
      const symbol& y = sym[static_cast<std::size_t>(i)];
      const std::string_view piece = s.substr(y.start, y.n);
      if (const std::int32_t id = lookup(piece); id >= 0) {
        out.push_back(id);
        continue;
      }
      for (const char ch : piece) out.push_back(byte_token(static_cast<unsigned char>(ch)));
    }
  }

  std::int32_t byte_token(unsigned char b) const {
    const std::int32_t id = byte_tok_[b];
    if (id >= 0) return id;
    if (d_.unk >= 0) return d_.unk;
    throw std::runtime_error(detail::cat("tokenizer: cannot encode byte ", detail::hex_byte(b),
                                         ": the vocabulary has no byte token for it and no unknown token"));
  }

  static int parse_byte_token(const std::string& t) {  // "<0xAB>" -> 0xAB, else -1
    if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return -1;
    int v = 0;
    for (std::size_t k = 3; k < 5; ++k) {
      const char c = t[k];
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    return v;
  }

  static std::string spm_unescape(const std::string& t) {
    std::string out;
    out.reserve(t.size());
    for (std::size_t i = 0; i < t.size();) {
      if (t.compare(i, detail::kSpmSpace.size(), detail::kSpmSpace) == 0) {
        out += ' ';
        i += detail::kSpmSpace.size();
      } else {
        out += t[i++];
      }
    }
    return out;
  }

  // ---- byte-level BPE

  void encode_bpe_piece(std::string_view piece, std::vector<std::int32_t>& out) const {
    if (pre_.ignore_merges) {
      std::string mapped;
      mapped.reserve(piece.size() * 2);
      for (const char ch : piece) detail::utf8_append(mapped, detail::kByteToCp[static_cast<unsigned char>(ch)]);
      if (const std::int32_t id = lookup(mapped); id >= 0) {
        out.push_back(id);
        return;
      }
    }
    struct symbol {
      std::int32_t id;  // token id, merge-only id (>= n_vocab) or -1
      std::int32_t prev, next;
      std::size_t start, n;  // bytes of piece; n == 0 once merged into the left neighbour
    };
    struct bigram {
      std::int32_t rank, left, right, left_id, right_id, result;
    };
    // max-heap: lowest rank first, then the leftmost pair
    const auto less = [](const bigram& a, const bigram& b) {
      return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    };
    std::vector<symbol> sym(piece.size());
    for (std::size_t i = 0; i < piece.size(); ++i) {
      const auto idx = static_cast<std::int32_t>(i);
      sym[i] = {byte_sym_[static_cast<unsigned char>(piece[i])], idx - 1, i + 1 == piece.size() ? -1 : idx + 1, i, 1};
    }
    std::vector<bigram> heap;
    const auto try_add = [&](std::int32_t l, std::int32_t r) {
      if (l < 0 || r < 0) return;
      const std::int32_t a = sym[static_cast<std::size_t>(l)].id, b = sym[static_cast<std::size_t>(r)].id;
      if (a < 0 || b < 0) return;
      const auto it = merges_.find(detail::pair_key(a, b));
      if (it == merges_.end()) return;
      heap.push_back({it->second.rank, l, r, a, b, it->second.result});
      std::push_heap(heap.begin(), heap.end(), less);
    };
    for (std::size_t i = 1; i < sym.size(); ++i) try_add(static_cast<std::int32_t>(i - 1), static_cast<std::int32_t>(i));
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), less);
      const bigram bg = heap.back();
      heap.pop_back();
      symbol& a = sym[static_cast<std::size_t>(bg.left)];
      symbol& b = sym[static_cast<std::size_t>(bg.right)];
      if (a.n == 0 || b.n == 0 || a.id != bg.left_id || b.id != bg.right_id) continue;  // stale
      a.id = bg.result;
      a.n += b.n;
      b.n = 0;
      a.next = b.next;
      if (b.next >= 0) sym[static_cast<std::size_t>(b.next)].prev = bg.left;
      try_add(a.prev, bg.left);
      try_add(bg.left, a.next);
    }
    const auto n_vocab = static_cast<std::int32_t>(d_.tokens.size());
    for (std::int32_t i = sym.empty() ? -1 : 0; i >= 0; i = sym[static_cast<std::size_t>(i)].next) {
      const symbol& y = sym[static_cast<std::size_t>(i)];
      if (y.id >= 0 && y.id < n_vocab) {
        out.push_back(y.id);
        continue;
      }
      for (std::size_t k = y.start; k < y.start + y.n; ++k) {  // not a token: one token per byte
        const std::int32_t id = byte_tok_[static_cast<unsigned char>(piece[k])];
        if (id >= 0) {
          out.push_back(id);
        } else if (d_.unk >= 0) {
          out.push_back(d_.unk);
        } else {
          throw std::runtime_error(detail::cat("tokenizer: cannot encode byte ", detail::hex_byte(static_cast<unsigned char>(piece[k])),
                                               ": the vocabulary has no token for it and no unknown token"));
        }
      }
    }
  }

  // Maps each code point of a BPE token back to its byte; code points outside the table are
  // passed through as UTF-8.
  static std::string bpe_unmap(const std::string& t) {
    std::string out;
    out.reserve(t.size());
    for (std::size_t i = 0; i < t.size();) {
      const detail::utf8_step st = detail::utf8_check(t, i);
      if (st.status != detail::utf8_status::ok) {  // not UTF-8: copy the bytes
        out.append(t, i, st.len);
        i += st.len;
        continue;
      }
      const char32_t c = detail::utf8_decode(t, i, st.len);
      if (c < detail::kCpToByteSize && detail::kCpToByte[c] >= 0) {
        out += static_cast<char>(detail::kCpToByte[c]);
      } else {
        out.append(t, i, st.len);
      }
      i += st.len;
    }
    return out;
  }

  vocab_data d_;
  bool spm_ = true;
  detail::pre_info pre_{detail::pre_kind::gpt2, false};
  detail::token_map to_id_;
  std::vector<std::int32_t> specials_;          // control / user-defined / unknown, longest first
  std::array<std::int32_t, 256> byte_tok_{};    // SPM: <0xXX>; BPE: the token of the byte's mapped code point
  std::array<std::int32_t, 256> byte_sym_{};    // BPE: initial merge symbol of each byte
  std::unordered_map<std::uint64_t, detail::merge_rule, detail::pair_hash> merges_;
};

// Turns generated ids into printable text: push() returns only complete UTF-8 characters
// and keeps an unfinished multibyte sequence until the bytes that complete it arrive.
// Ill-formed bytes become U+FFFD, so the output is always valid UTF-8. flush() returns
// what is left (an unfinished sequence as U+FFFD). For SentencePiece with add_space_prefix,
// when the first id pushed is BOS, the leading space of the first text after it is dropped, so
// pushing a whole sequence gives decode(ids); a stream that does not start with BOS (generated
// text continuing a printed prompt) keeps its spaces. The tokenizer must outlive the decoder.
class stream_decoder {
 public:
  explicit stream_decoder(const tokenizer& t) : tok_(&t) {}

  std::string push(std::int32_t id) {
    std::string piece = tok_->decode_token(id);
    if (strip_ && !piece.empty()) {
      if (piece.front() == ' ') piece.erase(0, 1);
      strip_ = false;
    }
    if (!started_) {
      started_ = true;
      strip_ = id == tok_->bos() && tok_->is_spm() && tok_->data().add_space_prefix;
    }
    pending_ += piece;
    return drain(false);
  }

  std::string flush() { return drain(true); }

 private:
  std::string drain(bool final) {
    std::string out;
    std::size_t i = 0;
    while (i < pending_.size()) {
      const detail::utf8_step st = detail::utf8_check(pending_, i);
      if (st.status == detail::utf8_status::ok) {
        out.append(pending_, i, st.len);
      } else if (st.status == detail::utf8_status::incomplete && !final) {
        break;  // wait for the rest of the character
      } else {
        out += detail::kReplacement;
      }
      i += st.len;
    }
    pending_.erase(0, i);
    return out;
  }

  const tokenizer* tok_;
  std::string pending_;
  bool started_ = false;
  bool strip_ = false;
};

#if BITNET_TOK_HAVE_GGUF
// Reads the tokenizer.ggml.* metadata. Defaults follow llama.cpp's llm_load_vocab: SentencePiece
// BOS 1, EOS 2, unknown 0, add_bos and add_space_prefix true; BPE add_space_prefix false and
// add_bos true only for the Llama-3 pre-tokenizers, but BOS/EOS -1 rather than llama.cpp's 11.
// A BOS, EOS, EOT or unknown id outside the vocabulary is a gguf::error naming the key; a padding
// id outside it is dropped with a note in vocab_data::warnings. Without tokenizer.ggml.eot_token_id
// the EOT token is found by name (<|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>, <|endoftext|>).
// A BPE file without tokenizer.ggml.pre whose vocabulary has <|begin_of_text|> (the early 2B4T
// upload) gets pre = "llama-bpe": it then tokenizes as the model was trained (HF tokenizer),
// where llama.cpp would fall back to its `default` regexes.
inline vocab_data vocab_from_gguf(const bitnet::gguf::file& f) {
  const auto need = [&](const char* key) {
    if (!f.has(key)) throw std::runtime_error(detail::cat("tokenizer: the GGUF file has no ", key));
  };
  vocab_data v;
  need("tokenizer.ggml.model");
  v.model = std::string(f.get_string("tokenizer.ggml.model"));
  if (f.has("tokenizer.ggml.pre")) v.pre = std::string(f.get_string("tokenizer.ggml.pre"));
  need("tokenizer.ggml.tokens");
  for (const auto& s : f.get_string_array("tokenizer.ggml.tokens")) v.tokens.emplace_back(s);
  const std::size_t n = v.tokens.size();
  if (f.has("tokenizer.ggml.scores")) {
    for (const auto x : f.get_float_array("tokenizer.ggml.scores")) v.scores.push_back(static_cast<float>(x));
  }
  if (f.has("tokenizer.ggml.token_type")) {
    for (const auto t : f.get_int_array("tokenizer.ggml.token_type"))
      v.types.push_back(t >= 0 && t <= 6 ? static_cast<token_type>(t) : token_type::undefined);
  }
  const bool spm = v.model == "llama";
  if (v.model == "gpt2") {
    need("tokenizer.ggml.merges");
    for (const auto& s : f.get_string_array("tokenizer.ggml.merges")) v.merges.emplace_back(s);
  }
  const auto find = [&](std::string_view s) -> std::int32_t {
    std::int32_t found = -1;
    for (std::size_t i = 0; i < n; ++i)
      if (v.tokens[i] == s) found = static_cast<std::int32_t>(i);
    return found;
  };
  if (!spm && v.pre.empty() && find("<|begin_of_text|>") >= 0) v.pre = "llama-bpe";
  // An id the file gives must name a token: BOS, EOS, EOT and unknown outside the vocabulary
  // are errors naming the key; a padding id outside it is ignored with a warning (nothing
  // here uses padding).
  const auto id = [&](const char* key, std::int32_t dflt, bool required_in_range) -> std::int32_t {
    if (dflt >= 0 && static_cast<std::size_t>(dflt) >= n) dflt = -1;
    if (!f.has(key)) return dflt;
    const auto x = static_cast<std::uint64_t>(f.get_uint(key));
    if (x < n) return static_cast<std::int32_t>(x);
    const std::string what = detail::cat(key, " is ", std::to_string(x), ", outside the vocabulary of ", std::to_string(n),
                                         " tokens (tokenizer.ggml.tokens)");
    if (required_in_range) {
      const auto* kv = f.find(key);
      throw bitnet::gguf::error(f.path(), kv ? std::optional<std::uint64_t>(kv->offset) : std::nullopt, what);
    }
    v.warnings.push_back(what + "; ignored");
    return -1;
  };
  v.bos = id("tokenizer.ggml.bos_token_id", spm ? 1 : -1, true);
  v.eos = id("tokenizer.ggml.eos_token_id", spm ? 2 : -1, true);
  v.unk = id("tokenizer.ggml.unknown_token_id", spm ? 0 : -1, true);
  v.pad = id("tokenizer.ggml.padding_token_id", -1, false);
  v.eot = id("tokenizer.ggml.eot_token_id", -1, true);
  for (const char* name : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"}) {
    if (v.eot >= 0) break;
    v.eot = find(name);
  }
  const bool llama3_pre = !spm && detail::resolve_pre(v.pre).kind == detail::pre_kind::llama3;
  // Defaults never ask for a token the file lacks; an explicit `true` without the id is an
  // error that the tokenizer constructor reports.
  v.add_bos = f.get_bool_or("tokenizer.ggml.add_bos_token", (spm || llama3_pre) && v.bos >= 0);
  v.add_eos = f.get_bool_or("tokenizer.ggml.add_eos_token", false);
  v.add_space_prefix = f.get_bool_or("tokenizer.ggml.add_space_prefix", spm);
  return v;
}
#endif

}  // namespace bitnet::tok
