// bitnet/gguf.hpp - GGUF v2/v3 reader and v3 writer.
//
// Contract:
// * `file::open` maps a file read-only; `file::from_memory` takes a buffer. The
//   whole header, all metadata and all tensor infos are validated before the
//   object exists (checklist of shared/spec/gguf.md section 9, container part).
//   Tensor data is not copied: `tensor_info::data` points into the mapping and is
//   valid while the `file` lives (moving the `file` keeps it valid).
// * Hostile input never crashes, hangs, over-reads or allocates more than a small
//   multiple of the file size: every problem is a `gguf::error` whose what() is
//   "<file>: offset <N>: <what was wrong>" (offset omitted when none applies).
// * Type ids 36..39 differ between upstream ggml and bitnet.cpp's fork; the
//   convention is decided per file (see `file::convention_reason`, docs/gguf.md).
// * `writer` produces GGUF v3 with the caller's id convention (default: fork ids). Tensor
//   payloads are owned bytes, borrowed bytes or producers that stream them at write time (one
//   tensor, or one chunk of it, in memory at a time); write() goes through PATH.tmp, renamed
//   only when the whole file is written.
// * Not defended: another process truncating a mapped file while it is in use
//   (the OS then raises SIGBUS on access).
#pragma once

#include <algorithm>         // std::sort, std::min
#include <array>             // shapes
#include <bit>               // std::bit_cast for float payloads
#include <charconv>          // std::to_chars for exact float text
#include <cstdint>           // fixed-width integers
#include <cstdio>            // std::FILE for streaming writes
#include <cstring>           // std::memcpy, std::strerror
#include <cerrno>            // errno after fopen/fwrite
#include <filesystem>        // the writer's temporary file: remove, rename
#include <functional>        // the writer's tensor producers
#include <initializer_list>  // shape{...}
#include <limits>            // numeric limits for range checks
#include <memory>            // std::unique_ptr
#include <optional>          // optional offsets and conventions
#include <span>              // tensor bytes
#include <stdexcept>         // std::runtime_error
#include <string>            // names and messages
#include <string_view>       // zero-copy keys and strings
#include <type_traits>       // gguf_value_type_of<T>
#include <unordered_map>     // key and tensor-name indexes
#include <utility>           // std::move, std::pair
#include <vector>            // tables

#include "bitnet/detail/gguf_io.hpp"
#include "bitnet/types.hpp"

namespace bitnet::gguf {

enum class value_type : std::uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
  string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};

inline constexpr std::uint32_t kMaxValueType = 12;
inline constexpr std::uint64_t kDefaultAlignment = 32;
inline constexpr std::uint64_t kMaxStringLength = std::uint64_t{1} << 30;  // 1 GiB, as upstream
inline constexpr std::size_t kMaxTensorNameLength = 63;                     // GGML_MAX_NAME - 1
inline constexpr std::uint32_t kMaxDims = 4;

constexpr std::string_view value_type_name(value_type t) noexcept {
  switch (t) {
    case value_type::u8: return "u8";
    case value_type::i8: return "i8";
    case value_type::u16: return "u16";
    case value_type::i16: return "i16";
    case value_type::u32: return "u32";
    case value_type::i32: return "i32";
    case value_type::f32: return "f32";
    case value_type::boolean: return "bool";
    case value_type::string: return "string";
    case value_type::array: return "array";
    case value_type::u64: return "u64";
    case value_type::i64: return "i64";
    case value_type::f64: return "f64";
  }
  return "invalid";
}

// Payload bytes of a fixed-size value type; 0 for string and array.
constexpr std::uint64_t value_size(value_type t) noexcept {
  switch (t) {
    case value_type::u8: case value_type::i8: case value_type::boolean: return 1;
    case value_type::u16: case value_type::i16: return 2;
    case value_type::u32: case value_type::i32: case value_type::f32: return 4;
    case value_type::u64: case value_type::i64: case value_type::f64: return 8;
    case value_type::string: case value_type::array: return 0;
  }
  return 0;
}

constexpr bool is_integer(value_type t) noexcept {
  switch (t) {
    case value_type::u8: case value_type::i8: case value_type::u16: case value_type::i16:
    case value_type::u32: case value_type::i32: case value_type::u64: case value_type::i64: return true;
    default: return false;
  }
}
constexpr bool is_signed_integer(value_type t) noexcept {
  return t == value_type::i8 || t == value_type::i16 || t == value_type::i32 || t == value_type::i64;
}
constexpr bool is_float(value_type t) noexcept { return t == value_type::f32 || t == value_type::f64; }

constexpr std::string_view convention_name(id_convention c) noexcept {
  return c == id_convention::bitnet ? "bitnet" : "upstream";
}

// True for the general.architecture values of BitNet models (gguf.md 7.1).
constexpr bool is_bitnet_arch(std::string_view arch) noexcept {
  return arch == "bitnet" || arch == "bitnet-25" || arch == "bitnet-b1.58";
}

class error : public std::runtime_error {
 public:
  error(std::string file, std::optional<std::uint64_t> offset, std::string message)
      : std::runtime_error(compose(file, offset, message)),
        file_(std::move(file)), offset_(offset), message_(std::move(message)) {}
  const std::string& file() const noexcept { return file_; }
  std::optional<std::uint64_t> offset() const noexcept { return offset_; }
  const std::string& message() const noexcept { return message_; }  // what() without file and offset

 private:
  static std::string compose(const std::string& file, std::optional<std::uint64_t> offset, const std::string& m) {
    std::string s = file;
    if (offset) s += detail::gguf_msg{} + ": offset " + std::to_string(*offset);
    s += ": ";
    s += m;
    return s;
  }
  std::string file_;
  std::optional<std::uint64_t> offset_;
  std::string message_;
};

struct tensor_info {
  std::string name;
  std::uint32_t n_dims = 0;
  std::array<std::uint64_t, 4> ne{1, 1, 1, 1};  // ggml order, ne[0] contiguous; missing dims = 1
  tensor_type type = tensor_type::f32;
  std::uint32_t raw_type_id = 0;   // the id stored in the file
  std::uint64_t offset = 0;        // relative to the data section
  std::uint64_t nbytes = 0;
  const std::uint8_t* data = nullptr;  // into the mapping; valid while the file lives
  std::uint64_t info_offset = 0;   // absolute file offset of this tensor's info record

  std::uint64_t n_elements() const noexcept { return ne[0] * ne[1] * ne[2] * ne[3]; }  // validated: no overflow
  std::span<const std::uint8_t> bytes() const noexcept { return {data, static_cast<std::size_t>(nbytes)}; }
};

// One metadata record, in file order.
struct kv_info {
  std::string_view key;                        // into the mapping
  value_type type = value_type::u8;
  value_type elem_type = value_type::u8;       // arrays: element type; scalars: == type
  std::uint64_t count = 1;                     // arrays: element count; scalars: 1
  std::uint64_t offset = 0;                    // absolute offset of the record (its key length)
  std::uint64_t value_offset = 0;              // just after the u32 value type
  std::uint64_t end = 0;                       // one past the record
  std::uint64_t elements_offset() const noexcept {  // first array element
    return type == value_type::array ? value_offset + 12 : value_offset;
  }
};

}  // namespace bitnet::gguf

namespace bitnet::detail {

// Renders untrusted bytes for a message: printable ASCII kept, others \xNN, long input cut.
inline std::string gguf_printable(std::string_view s, std::size_t max_len = 96) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  const std::size_t n = std::min(s.size(), max_len);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (s.size() > max_len) out += detail::gguf_msg{} + "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

// Length of the valid UTF-8 sequence at s[i] (1..4), or 0 if the bytes there are not one.
inline std::size_t gguf_utf8_len(std::string_view s, std::size_t i) noexcept {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  std::uint32_t cp = 0;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1Fu; }
  else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0Fu; }
  else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07u; }
  else return 0;
  if (len > s.size() - i) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3Fu);
  }
  static constexpr std::uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

// Quoted string for display: escapes quotes, backslashes, control bytes and bytes that are
// not valid UTF-8 (as \xNN); valid UTF-8 is kept. Cut after max_len bytes.
inline std::string gguf_quoted(std::string_view s, std::size_t max_len = 200) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  const std::size_t n = std::min(s.size(), max_len);
  for (std::size_t i = 0; i < n;) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t len = gguf_utf8_len(s.substr(0, n), i);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f || len == 0) {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.append(s.substr(i, len));
      i += len;
      continue;
    }
    ++i;
  }
  out.push_back('"');
  if (s.size() > max_len) out += detail::gguf_msg{} + "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

template <class F>
inline std::string gguf_shortest(F v) {  // shortest text that reads back to the same float
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

inline float gguf_load_f32(const std::uint8_t* p) noexcept { return std::bit_cast<float>(gguf_load_u32(p)); }
inline double gguf_load_f64(const std::uint8_t* p) noexcept { return std::bit_cast<double>(gguf_load_u64(p)); }

// Reads a validated integer element as (negative, value): value is the magnitude when negative.
struct gguf_int {
  bool negative = false;
  std::uint64_t bits = 0;  // two's complement value for signed types, plain value otherwise
  std::int64_t as_signed() const noexcept { return static_cast<std::int64_t>(bits); }
};
inline gguf_int gguf_load_int(gguf::value_type t, const std::uint8_t* p) noexcept {
  const auto sz = static_cast<unsigned>(gguf::value_size(t));
  std::uint64_t v = gguf_load_le(p, sz);
  if (gguf::is_signed_integer(t) && sz < 8 && (v >> (8 * sz - 1)) != 0) v |= ~std::uint64_t{0} << (8 * sz);  // sign-extend
  const bool neg = gguf::is_signed_integer(t) && (v >> 63) != 0;
  return {neg, v};
}

constexpr std::uint64_t gguf_pad(std::uint64_t x, std::uint64_t a) noexcept { return (x + a - 1) / a * a; }

inline constexpr std::uint64_t kGgufMinKvBytes = 8 + 1 + 4 + 1;      // key len, 1-byte key, type, 1-byte value
inline constexpr std::uint64_t kGgufMinTensorInfoBytes = 8 + 4 + 4 + 8;  // empty name, n_dims 0, type, offset

}  // namespace bitnet::detail

namespace bitnet::gguf {

class file {
 public:
  struct options {
    std::optional<id_convention> force_convention;  // skip classification, read ids this way
  };

  static file open(const std::string& path, options opts = {}) {
    std::string err;
    auto bytes = detail::gguf_bytes::map_file(path, err);
    if (!bytes) throw error(path, std::nullopt, err);
    return file(std::move(bytes), path, opts);
  }
  static file from_memory(std::vector<std::uint8_t> bytes, std::string name, options opts = {}) {
    return file(detail::gguf_bytes::from_vector(std::move(bytes)), std::move(name), opts);
  }

  file(file&&) noexcept = default;
  file& operator=(file&&) noexcept = default;
  file(const file&) = delete;
  file& operator=(const file&) = delete;
  ~file() = default;

  const std::string& path() const noexcept { return path_; }
  std::uint32_t version() const noexcept { return version_; }
  std::uint64_t alignment() const noexcept { return alignment_; }
  std::uint64_t size() const noexcept { return bytes_->size(); }               // file bytes
  const std::uint8_t* bytes() const noexcept { return bytes_->data(); }       // whole file
  bool memory_mapped() const noexcept { return bytes_->mapped(); }
  std::uint64_t data_offset() const noexcept { return data_offset_; }         // start of the data section
  id_convention convention() const noexcept { return convention_; }
  const std::string& convention_reason() const noexcept { return convention_reason_; }

  // ---- metadata ----
  const std::vector<kv_info>& metadata() const noexcept { return kvs_; }
  const kv_info* find(std::string_view key) const noexcept {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kvs_[it->second];
  }
  bool has(std::string_view key) const noexcept { return find(key) != nullptr; }
  value_type type_of(std::string_view key) const { return require(key).type; }

  std::string_view get_string(std::string_view key) const {
    const kv_info& kv = require(key);
    if (kv.type != value_type::string) type_error(kv, "string");
    return string_at(kv.value_offset);
  }
  std::uint64_t get_uint(std::string_view key) const {
    const kv_info& kv = require(key);
    if (!is_integer(kv.type)) type_error(kv, "an integer");
    const auto v = detail::gguf_load_int(kv.type, at(kv.value_offset));
    if (v.negative) fail(kv.offset, detail::gguf_msg{} + "key '" + shown(kv.key) + "': value " + std::to_string(v.as_signed()) +
                                        " is negative, expected an unsigned integer");
    return v.bits;
  }
  std::int64_t get_int(std::string_view key) const {
    const kv_info& kv = require(key);
    if (!is_integer(kv.type)) type_error(kv, "an integer");
    const auto v = detail::gguf_load_int(kv.type, at(kv.value_offset));
    if (!is_signed_integer(kv.type) && v.bits > static_cast<std::uint64_t>(INT64_MAX))
      fail(kv.offset, detail::gguf_msg{} + "key '" + shown(kv.key) + "': value " + std::to_string(v.bits) + " does not fit in int64");
    return v.as_signed();
  }
  double get_float(std::string_view key) const {
    const kv_info& kv = require(key);
    if (kv.type == value_type::f32) return detail::gguf_load_f32(at(kv.value_offset));
    if (kv.type == value_type::f64) return detail::gguf_load_f64(at(kv.value_offset));
    if (is_integer(kv.type)) {
      const auto v = detail::gguf_load_int(kv.type, at(kv.value_offset));
      return is_signed_integer(kv.type) ? static_cast<double>(v.as_signed()) : static_cast<double>(v.bits);
    }
    type_error(kv, "a number");
  }
  bool get_bool(std::string_view key) const {
    const kv_info& kv = require(key);
    if (kv.type != value_type::boolean) type_error(kv, "bool");
    return *at(kv.value_offset) != 0;
  }

  std::uint64_t get_uint_or(std::string_view key, std::uint64_t dflt) const { return has(key) ? get_uint(key) : dflt; }
  std::int64_t get_int_or(std::string_view key, std::int64_t dflt) const { return has(key) ? get_int(key) : dflt; }
  double get_float_or(std::string_view key, double dflt) const { return has(key) ? get_float(key) : dflt; }
  bool get_bool_or(std::string_view key, bool dflt) const { return has(key) ? get_bool(key) : dflt; }
  std::string_view get_string_or(std::string_view key, std::string_view dflt) const {
    return has(key) ? get_string(key) : dflt;
  }

  // ---- arrays ----
  value_type array_type(std::string_view key) const { return require_array(key).elem_type; }
  std::uint64_t array_size(std::string_view key) const { return require_array(key).count; }

  std::vector<std::string_view> get_string_array(std::string_view key) const {
    const kv_info& kv = require_array(key);
    if (kv.elem_type != value_type::string) array_type_error(kv, "string");
    std::vector<std::string_view> out;
    out.reserve(static_cast<std::size_t>(kv.count));  // validated: count * 8 <= file size
    std::uint64_t pos = kv.elements_offset();
    for (std::uint64_t i = 0; i < kv.count; ++i) {
      out.push_back(string_at(pos));
      pos += 8 + out.back().size();
    }
    return out;
  }
  std::vector<float> get_float_array(std::string_view key) const {  // f32 or f64 elements
    const kv_info& kv = require_array(key);
    if (!is_float(kv.elem_type)) array_type_error(kv, "f32 or f64");
    std::vector<float> out(static_cast<std::size_t>(kv.count));
    const std::uint8_t* p = at(kv.elements_offset());
    if (kv.elem_type == value_type::f32) {
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = detail::gguf_load_f32(p + 4 * i);
    } else {
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(detail::gguf_load_f64(p + 8 * i));
    }
    return out;
  }
  std::vector<double> get_double_array(std::string_view key) const {  // f32 or f64 elements, exact
    const kv_info& kv = require_array(key);
    if (!is_float(kv.elem_type)) array_type_error(kv, "f32 or f64");
    std::vector<double> out(static_cast<std::size_t>(kv.count));
    const std::uint8_t* p = at(kv.elements_offset());
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = kv.elem_type == value_type::f32 ? detail::gguf_load_f32(p + 4 * i) : detail::gguf_load_f64(p + 8 * i);
    return out;
  }
  std::vector<std::int64_t> get_int_array(std::string_view key) const {  // any integer elements
    const kv_info& kv = require_array(key);
    if (!is_integer(kv.elem_type)) array_type_error(kv, "integers");
    std::vector<std::int64_t> out(static_cast<std::size_t>(kv.count));
    const auto sz = value_size(kv.elem_type);
    const std::uint8_t* p = at(kv.elements_offset());
    for (std::size_t i = 0; i < out.size(); ++i) {
      const auto v = detail::gguf_load_int(kv.elem_type, p + sz * i);
      if (!is_signed_integer(kv.elem_type) && v.bits > static_cast<std::uint64_t>(INT64_MAX))
        fail(kv.offset, detail::gguf_msg{} + "key '" + shown(kv.key) + "': element " + std::to_string(i) + " = " + std::to_string(v.bits) +
                            " does not fit in int64");
      out[i] = v.as_signed();
    }
    return out;
  }
  std::vector<std::uint64_t> get_uint_array(std::string_view key) const {  // any integer elements, none negative
    const kv_info& kv = require_array(key);
    if (!is_integer(kv.elem_type)) array_type_error(kv, "integers");
    std::vector<std::uint64_t> out(static_cast<std::size_t>(kv.count));
    const auto sz = value_size(kv.elem_type);
    const std::uint8_t* p = at(kv.elements_offset());
    for (std::size_t i = 0; i < out.size(); ++i) {
      const auto v = detail::gguf_load_int(kv.elem_type, p + sz * i);
      if (v.negative)
        fail(kv.offset, detail::gguf_msg{} + "key '" + shown(kv.key) + "': element " + std::to_string(i) + " = " +
                            std::to_string(v.as_signed()) + " is negative, expected an unsigned integer");
      out[i] = v.bits;
    }
    return out;
  }
  std::vector<bool> get_bool_array(std::string_view key) const {
    const kv_info& kv = require_array(key);
    if (kv.elem_type != value_type::boolean) array_type_error(kv, "bool");
    std::vector<bool> out(static_cast<std::size_t>(kv.count));
    const std::uint8_t* p = at(kv.elements_offset());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = p[i] != 0;
    return out;
  }

  // Printable one-line value: scalars in full (strings gguf_quoted, cut at 200 bytes), arrays as
  // "[type x count] e0, e1, ..." with at most `max_elems` elements.
  std::string value_summary(std::string_view key, std::size_t max_elems = 8) const {
    const kv_info& kv = require(key);
    if (kv.type != value_type::array) return scalar_text(kv.type, kv.value_offset);
    std::string s = detail::gguf_msg{} + "[" + std::string(value_type_name(kv.elem_type)) + " x " + std::to_string(kv.count) + "]";
    std::uint64_t pos = kv.elements_offset();
    const std::uint64_t shown_n = std::min<std::uint64_t>(kv.count, max_elems);
    for (std::uint64_t i = 0; i < shown_n; ++i) {
      s += i == 0 ? " " : ", ";
      s += scalar_text(kv.elem_type, pos);
      pos += kv.elem_type == value_type::string ? 8 + detail::gguf_load_u64(at(pos)) : value_size(kv.elem_type);
    }
    if (kv.count > shown_n) s += ", ...";
    return s;
  }

  // ---- tensors ----
  const std::vector<tensor_info>& tensors() const noexcept { return tensors_; }
  const tensor_info* find_tensor(std::string_view name) const noexcept {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  const tensor_info& tensor(std::string_view name) const {
    if (const tensor_info* t = find_tensor(name)) return *t;
    throw error(path_, std::nullopt, detail::gguf_msg{} + "tensor '" + shown(name) + "' not found");
  }

 private:
  file(std::unique_ptr<detail::gguf_bytes> bytes, std::string path, const options& opts)
      : bytes_(std::move(bytes)), path_(std::move(path)) {
    parse(opts);
  }

  static std::string shown(std::string_view s) { return detail::gguf_printable(s); }
  const std::uint8_t* at(std::uint64_t pos) const noexcept { return bytes_->data() + pos; }
  std::string_view string_at(std::uint64_t pos) const noexcept {  // validated string record
    const std::uint64_t n = detail::gguf_load_u64(at(pos));
    return {reinterpret_cast<const char*>(at(pos + 8)), static_cast<std::size_t>(n)};
  }
  [[noreturn]] void fail(std::optional<std::uint64_t> offset, std::string msg) const {
    throw error(path_, offset, std::move(msg));
  }
  const kv_info& require(std::string_view key) const {
    if (const kv_info* kv = find(key)) return *kv;
    fail(std::nullopt, detail::gguf_msg{} + "key '" + shown(key) + "' not found");
  }
  const kv_info& require_array(std::string_view key) const {
    const kv_info& kv = require(key);
    if (kv.type != value_type::array) type_error(kv, "array");
    return kv;
  }
  static std::string describe(const kv_info& kv) {
    if (kv.type == value_type::array) return detail::gguf_msg{} + "array of " + std::string(value_type_name(kv.elem_type));
    return std::string(value_type_name(kv.type));
  }
  [[noreturn]] void type_error(const kv_info& kv, std::string_view expected) const {
    fail(kv.offset, detail::gguf_msg{} + "key '" + shown(kv.key) + "': expected " + std::string(expected) + ", got " + describe(kv));
  }
  [[noreturn]] void array_type_error(const kv_info& kv, std::string_view expected) const {
    fail(kv.offset, detail::gguf_msg{} + "key '" + shown(kv.key) + "': expected array of " + std::string(expected) + ", got " + describe(kv));
  }
  std::string scalar_text(value_type t, std::uint64_t pos) const {
    const std::uint8_t* p = at(pos);
    switch (t) {
      case value_type::string: return detail::gguf_quoted(string_at(pos));
      case value_type::boolean: return *p != 0 ? "true" : "false";
      case value_type::f32: return detail::gguf_shortest(detail::gguf_load_f32(p));
      case value_type::f64: return detail::gguf_shortest(detail::gguf_load_f64(p));
      default: {
        const auto v = detail::gguf_load_int(t, p);
        return is_signed_integer(t) ? std::to_string(v.as_signed()) : std::to_string(v.bits);
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // Parsing. Every read goes through `need`, which compares against the bytes left without
  // overflow. Messages are built only on failure.
  struct cursor {
    const file* f;
    std::uint64_t pos = 0;
    std::string context;  // e.g. "key 'general.name': " - set only around records

    std::uint64_t left() const noexcept { return f->size() - pos; }
    [[noreturn]] void fail_at(std::uint64_t at_pos, const std::string& msg) const { f->fail(at_pos, context + msg); }
    void need(std::uint64_t n, const char* what) const {
      if (n > left())
        fail_at(pos, detail::gguf_msg{} + std::string("unexpected end of file reading ") + what + ": need " + std::to_string(n) +
                         " bytes, " + std::to_string(left()) + " left");
    }
    std::uint32_t u32(const char* what) {
      need(4, what);
      const auto v = detail::gguf_load_u32(f->at(pos));
      pos += 4;
      return v;
    }
    std::uint64_t u64(const char* what) {
      need(8, what);
      const auto v = detail::gguf_load_u64(f->at(pos));
      pos += 8;
      return v;
    }
    std::string_view str(const char* what) {
      const std::uint64_t start = pos;
      const std::uint64_t n = u64(what);
      if (n > kMaxStringLength)
        fail_at(start, detail::gguf_msg{} + std::string(what) + " length " + std::to_string(n) + " exceeds the 1 GiB limit");
      if (n > left())
        fail_at(start, detail::gguf_msg{} + std::string(what) + " length " + std::to_string(n) + " exceeds the " +
                           std::to_string(left()) + " bytes left in the file");
      std::string_view s(reinterpret_cast<const char*>(f->at(pos)), static_cast<std::size_t>(n));
      pos += n;
      return s;
    }
  };

  // Skips one validated-on-the-way value of scalar type `t` (not array).
  void skip_scalar(cursor& c, value_type t, const char* what) const {
    if (t == value_type::string) {
      c.str(what);
      return;
    }
    const std::uint64_t sz = value_size(t);
    c.need(sz, what);
    if (t == value_type::boolean && *at(c.pos) > 1)
      c.fail_at(c.pos, detail::gguf_msg{} + "bool value is " + std::to_string(*at(c.pos)) + ", must be 0 or 1");
    c.pos += sz;
  }

  void parse(const options& opts) {
    const std::uint64_t n = size();
    cursor c{this, 0, {}};
    if (n >= 4 && std::memcmp(at(0), "GGUF", 4) != 0) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "%02x %02x %02x %02x", at(0)[0], at(0)[1], at(0)[2], at(0)[3]);
      fail(0, detail::gguf_msg{} + "bad magic '" + shown(std::string_view(reinterpret_cast<const char*>(at(0)), 4)) + "' (" + hex +
                  "), expected 'GGUF' (not a GGUF file)");
    }
    if (n < 24) fail(0, detail::gguf_msg{} + "file is " + std::to_string(n) + " bytes, too small for the 24-byte GGUF header");
    c.pos = 4;
    version_ = c.u32("version");
    if (version_ == 0) fail(4, "invalid GGUF version 0 (supported: 2 and 3)");
    if ((version_ & 0xFFFFu) == 0) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "0x%08x", version_);
      fail(4, detail::gguf_msg{} + std::string("GGUF version ") + buf + " looks byte-swapped: big-endian files are not supported");
    }
    if (version_ == 1) fail(4, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (version_ != 2 && version_ != 3)
      fail(4, detail::gguf_msg{} + "unsupported GGUF version " + std::to_string(version_) + " (only versions 2 and 3)");
    const std::uint64_t n_tensors = c.u64("tensor count");
    const std::uint64_t n_kv = c.u64("metadata count");
    {
      const std::uint64_t rem = n - 24;
      if (n_kv > rem / detail::kGgufMinKvBytes)
        fail(16, detail::gguf_msg{} + "metadata count " + std::to_string(n_kv) + " cannot fit in the " + std::to_string(rem) +
                     " bytes after the header (each entry takes at least " +
                     std::to_string(detail::kGgufMinKvBytes) + ")");
      const std::uint64_t rem2 = rem - n_kv * detail::kGgufMinKvBytes;
      if (n_tensors > rem2 / detail::kGgufMinTensorInfoBytes)
        fail(8, detail::gguf_msg{} + "tensor count " + std::to_string(n_tensors) + " cannot fit in the " + std::to_string(rem) +
                    " bytes after the header (each tensor info takes at least " +
                    std::to_string(detail::kGgufMinTensorInfoBytes) + ")");
    }

    try {
      parse_records(c, n_tensors, n_kv, opts);
    } catch (const error&) {
      diagnose_counts(n_tensors, n_kv, opts);  // throws when smaller counts explain the file
      throw;
    }
  }

  // A count larger than the records a file holds makes the parser read whatever follows the
  // last real record as one more, and it fails there with a symptom ("key length exceeds
  // 1 GiB", "data exceeds file size"). When the file parses with a smaller metadata and / or
  // tensor count (up to 4 fewer each) into a layout that ends where the file ends, the error
  // names the count instead.
  void diagnose_counts(std::uint64_t n_tensors, std::uint64_t n_kv, const options& opts) {
    for (std::uint64_t total = 1; total <= 8; ++total)
      for (std::uint64_t dk = 0; dk <= std::min<std::uint64_t>(total, 4); ++dk) {
        const std::uint64_t dt = total - dk;
        if (dt > 4 || dk > n_kv || dt > n_tensors) continue;
        cursor c{this, 24, {}};
        try {
          parse_records(c, n_tensors - dt, n_kv - dk, opts);
        } catch (const error&) {
          continue;
        }
        // Only a layout that accounts for the whole file explains it: the data of the last
        // tensor (or the records, without tensors) must end where the file ends (up to padding).
        std::uint64_t end = data_offset_;
        for (const auto& t : tensors_) end = std::max(end, data_offset_ + t.offset + t.nbytes);
        if (size() < end || size() > detail::gguf_pad(end, alignment_)) continue;
        std::string m;
        if (dk) m += detail::gguf_msg{} + "the metadata count at offset 16 is " + std::to_string(n_kv) + " but the file holds " +
                     std::to_string(n_kv - dk) + " metadata entries";
        if (dt) m += detail::gguf_msg{} + (dk ? "; " : "") + "the tensor count at offset 8 is " + std::to_string(n_tensors) +
                     " but the file holds " + std::to_string(n_tensors - dt) + " tensor infos";
        fail(dk ? 16 : 8, m + " (the file parses with those counts)");
      }
  }

  void parse_records(cursor& c, std::uint64_t n_tensors, std::uint64_t n_kv, const options& opts) {
    const std::uint64_t n = size();
    kvs_.clear();
    kv_index_.clear();
    tensors_.clear();
    tensor_index_.clear();
    alignment_ = kDefaultAlignment;
    // ---- metadata ----
    // Counts are only bounded by the file size here; reserve a capped amount and let the
    // records actually parsed grow the tables (memory follows real bytes, not claims).
    kvs_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n_kv, kReserveCap)));
    kv_index_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n_kv, kReserveCap)));
    for (std::uint64_t i = 0; i < n_kv; ++i) {
      kv_info kv;
      kv.offset = c.pos;
      c.context = detail::gguf_msg{} + "metadata entry " + std::to_string(i) + ": ";
      kv.key = c.str("key");
      if (kv.key.empty()) c.fail_at(kv.offset, "empty key");
      c.context = detail::gguf_msg{} + "key '" + shown(kv.key) + "': ";
      if (auto [it, fresh] = kv_index_.emplace(kv.key, kvs_.size()); !fresh)
        c.fail_at(kv.offset, detail::gguf_msg{} + "duplicate key (first defined at offset " + std::to_string(kvs_[it->second].offset) + ")");
      const std::uint64_t type_pos = c.pos;
      const std::uint32_t t = c.u32("value type");
      if (t > kMaxValueType) c.fail_at(type_pos, detail::gguf_msg{} + "invalid value type " + std::to_string(t));
      kv.type = static_cast<value_type>(t);
      kv.value_offset = c.pos;
      if (kv.type != value_type::array) {
        kv.elem_type = kv.type;
        skip_scalar(c, kv.type, "value");
      } else {
        const std::uint32_t et = c.u32("array element type");
        if (et == static_cast<std::uint32_t>(value_type::array))
          c.fail_at(kv.value_offset, "arrays of arrays are not supported");
        if (et > kMaxValueType) c.fail_at(kv.value_offset, detail::gguf_msg{} + "invalid array element type " + std::to_string(et));
        kv.elem_type = static_cast<value_type>(et);
        const std::uint64_t count_pos = c.pos;
        kv.count = c.u64("array count");
        if (kv.elem_type == value_type::string) {
          if (kv.count > c.left() / 8)
            c.fail_at(count_pos, detail::gguf_msg{} + "array of " + std::to_string(kv.count) + " strings cannot fit in the " +
                                     std::to_string(c.left()) + " bytes left");
          for (std::uint64_t j = 0; j < kv.count; ++j) {
            const std::uint64_t el = c.pos;
            const std::uint64_t len = c.u64("array element");
            if (len > kMaxStringLength || len > c.left())
              c.fail_at(el, detail::gguf_msg{} + "string element " + std::to_string(j) + " length " + std::to_string(len) +
                                " exceeds the " + std::to_string(c.left()) + " bytes left in the file");
            c.pos += len;
          }
        } else {
          const std::uint64_t sz = value_size(kv.elem_type);
          if (kv.count > c.left() / sz)
            c.fail_at(count_pos, detail::gguf_msg{} + "array of " + std::to_string(kv.count) + " " +
                                     std::string(value_type_name(kv.elem_type)) + " elements cannot fit in the " +
                                     std::to_string(c.left()) + " bytes left");
          if (kv.elem_type == value_type::boolean) {
            for (std::uint64_t j = 0; j < kv.count; ++j)
              if (*at(c.pos + j) > 1)
                c.fail_at(c.pos + j, detail::gguf_msg{} + "bool element " + std::to_string(j) + " is " + std::to_string(*at(c.pos + j)) +
                                         ", must be 0 or 1");
          }
          c.pos += kv.count * sz;
        }
      }
      kv.end = c.pos;
      kvs_.push_back(kv);
    }
    c.context.clear();

    // ---- general.alignment ----
    if (const kv_info* a = find("general.alignment")) {
      if (a->type != value_type::u32)
        fail(a->offset, detail::gguf_msg{} + "key 'general.alignment': must be of type u32, got " + describe(*a));
      const std::uint32_t v = detail::gguf_load_u32(at(a->value_offset));
      if (v == 0 || (v & (v - 1)) != 0)
        fail(a->offset, detail::gguf_msg{} + "key 'general.alignment': " + std::to_string(v) + " is not a non-zero power of two");
      alignment_ = v;
    }

    // ---- tensor infos ----
    tensors_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n_tensors, kReserveCap)));
    tensor_index_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(n_tensors, kReserveCap)));
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
      tensor_info t;
      t.info_offset = c.pos;
      c.context = detail::gguf_msg{} + "tensor info " + std::to_string(i) + ": ";
      const std::string_view name = c.str("tensor name");
      if (name.empty()) c.fail_at(t.info_offset, "the tensor name is empty (every tensor needs a name to be found by)");
      c.context = detail::gguf_msg{} + "tensor '" + shown(name) + "': ";
      if (name.size() > kMaxTensorNameLength)
        c.fail_at(t.info_offset, detail::gguf_msg{} + "name is " + std::to_string(name.size()) + " bytes, the limit is " +
                                     std::to_string(kMaxTensorNameLength));
      if (auto [it, fresh] = tensor_index_.emplace(name, tensors_.size()); !fresh)
        c.fail_at(t.info_offset, "duplicate tensor name (first defined at offset " +
                                     std::to_string(tensors_[it->second].info_offset) + ")");
      const std::uint64_t dims_pos = c.pos;
      t.n_dims = c.u32("n_dims");
      if (t.n_dims > kMaxDims)
        c.fail_at(dims_pos, detail::gguf_msg{} + "n_dims is " + std::to_string(t.n_dims) + ", at most " + std::to_string(kMaxDims) +
                                " are supported");
      for (std::uint32_t d = 0; d < t.n_dims; ++d) {
        const std::uint64_t p = c.pos;
        t.ne[d] = c.u64("dimension");
        if (t.ne[d] > static_cast<std::uint64_t>(INT64_MAX))
          c.fail_at(p, detail::gguf_msg{} + "dimension ne[" + std::to_string(d) + "] is " +
                           std::to_string(static_cast<std::int64_t>(t.ne[d])) + ", expected 0 .. " +
                           std::to_string(INT64_MAX));
      }
      t.raw_type_id = c.u32("type id");
      t.offset = c.u64("data offset");
      t.name.assign(name);
      tensors_.push_back(std::move(t));
    }
    c.context.clear();
    const std::uint64_t end_of_infos = c.pos;
    data_offset_ = end_of_infos;
    if (n_tensors > 0) {
      data_offset_ = detail::gguf_pad(end_of_infos, alignment_);  // end <= n < 2^63, alignment <= 2^31
      if (data_offset_ > n)
        fail(end_of_infos, detail::gguf_msg{} + "data section would start at " + std::to_string(data_offset_) + " (padded to alignment " +
                               std::to_string(alignment_) + "), past the end of the file (" + std::to_string(n) +
                               " bytes)");
    }

    decide_convention(opts);
    resolve_tensors();
  }

  void decide_convention(const options& opts) {
    std::optional<std::string_view> arch;
    if (const kv_info* a = find("general.architecture"); a && a->type == value_type::string)
      arch = string_at(a->value_offset);
    const tensor_info* fork_only = nullptr;  // ids 36..38
    const tensor_info* clash39 = nullptr;
    for (const auto& t : tensors_) {
      if (!fork_only && t.raw_type_id >= 36 && t.raw_type_id <= 38) fork_only = &t;
      if (!clash39 && t.raw_type_id == 39) clash39 = &t;
    }
    if (opts.force_convention) {
      convention_ = *opts.force_convention;
      convention_reason_ = "forced by the caller";
    } else if (arch && is_bitnet_arch(*arch)) {
      convention_ = id_convention::bitnet;
      convention_reason_ = detail::gguf_msg{} + "general.architecture is '" + shown(*arch) + "', a BitNet architecture";
    } else if (fork_only) {
      convention_ = id_convention::bitnet;
      convention_reason_ = detail::gguf_msg{} + "tensor '" + shown(fork_only->name) + "' has type id " +
                           std::to_string(fork_only->raw_type_id) + ", which only bitnet.cpp defines";
    } else if (clash39) {
      if (!arch)
        fail(clash39->info_offset,
             detail::gguf_msg{} + "tensor '" + shown(clash39->name) +
                 "': type id 39 is TL2 in bitnet.cpp files and MXFP4 upstream, and the file has no string "
                 "general.architecture to decide; cannot classify the file (force a convention to read it)");
      convention_ = id_convention::upstream;
      convention_reason_ = detail::gguf_msg{} + "general.architecture is '" + shown(*arch) +
                           "', not a BitNet architecture, so type id 39 is upstream MXFP4";
    } else {
      convention_ = id_convention::upstream;
      convention_reason_ = "no tensor uses a type id in 36..39, where the conventions differ";
    }
  }

  void resolve_tensors() {
    const std::uint64_t n = size();
    const std::uint64_t room = n - data_offset_;
    for (auto& t : tensors_) {
      const std::string ctx = detail::gguf_msg{} + "tensor '" + shown(t.name) + "': ";
      const auto ty = resolve_type_id(t.raw_type_id, convention_);
      if (!ty) {
        std::string m = detail::gguf_msg{} + ctx + "unknown type id " + std::to_string(t.raw_type_id);
        if (t.raw_type_id >= 36 && t.raw_type_id <= 38)
          m += detail::gguf_msg{} + " under the upstream convention (" + convention_reason_ + ")";
        fail(t.info_offset, m);
      }
      t.type = *ty;
      std::uint64_t elems = 1;
      for (auto d : t.ne) {
        if (!detail::mul_ok(elems, d, elems) || elems > static_cast<std::uint64_t>(INT64_MAX))
          fail(t.info_offset, detail::gguf_msg{} + ctx + "element count of shape " + shape_text(t) + " overflows int64");
      }
      const auto& tr = traits(t.type);
      if (tr.block > 1 && t.ne[0] % tr.block != 0)
        fail(t.info_offset, detail::gguf_msg{} + ctx + "ne[0] = " + std::to_string(t.ne[0]) + " is not a multiple of " +
                                std::string(tr.name) + "'s block size " + std::to_string(tr.block));
      std::string why;
      const auto nb = tensor_nbytes(t.type, t.ne, &why);
      if (!nb) fail(t.info_offset, detail::gguf_msg{} + ctx + std::string(tr.name) + " " + shape_text(t) + ": " + why);
      t.nbytes = *nb;
      if (t.offset % alignment_ != 0)
        fail(t.info_offset, detail::gguf_msg{} + ctx + "offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                                std::to_string(alignment_));
      if (t.offset > room || t.nbytes > room - t.offset) {
        const std::uint64_t start = data_offset_ + std::min(t.offset, room);
        std::string range;
        if (t.offset > room) {
          range = detail::gguf_msg{} + "starts at " + std::to_string(data_offset_) + " + " + std::to_string(t.offset);
        } else if (t.nbytes <= UINT64_MAX - start) {
          range = detail::gguf_msg{} + "[" + std::to_string(start) + ", " + std::to_string(start + t.nbytes) + ")";
        } else {  // the end does not fit in 64 bits
          range = detail::gguf_msg{} + "[" + std::to_string(start) + ", " + std::to_string(start) + " + " +
                  std::to_string(t.nbytes) + ")";
        }
        fail(t.info_offset, detail::gguf_msg{} + ctx + "data " + range + " exceeds file size " + std::to_string(n));
      }
      t.data = at(data_offset_ + t.offset);
    }
    // Overlaps: sort by offset, each must end before the next begins.
    std::vector<const tensor_info*> order;
    order.reserve(tensors_.size());
    for (const auto& t : tensors_) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](const tensor_info* a, const tensor_info* b) {
      return a->offset != b->offset ? a->offset < b->offset : a->info_offset < b->info_offset;
    });
    for (std::size_t i = 1; i < order.size(); ++i) {
      const tensor_info& a = *order[i - 1];
      const tensor_info& b = *order[i];
      if (b.offset < a.offset + a.nbytes) {
        const tensor_info& later = a.info_offset > b.info_offset ? a : b;  // report the one defined second
        const tensor_info& other = &later == &a ? b : a;
        fail(later.info_offset, detail::gguf_msg{} + "tensor '" + shown(later.name) + "': data " + range_text(later) + " overlaps tensor '" +
                                    shown(other.name) + "' " + range_text(other));
      }
    }
  }

  std::string range_text(const tensor_info& t) const {
    return detail::gguf_msg{} + "[" + std::to_string(data_offset_ + t.offset) + ", " + std::to_string(data_offset_ + t.offset + t.nbytes) + ")";
  }
  static std::string shape_text(const tensor_info& t) {
    std::string s = "[";
    for (std::uint32_t d = 0; d < std::max<std::uint32_t>(t.n_dims, 1); ++d) {
      if (d) s += ", ";
      s += std::to_string(t.ne[d]);
    }
    return s + "]";
  }

  static constexpr std::uint64_t kReserveCap = 4096;

  std::unique_ptr<detail::gguf_bytes> bytes_;
  std::string path_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = kDefaultAlignment;
  std::uint64_t data_offset_ = 0;
  id_convention convention_ = id_convention::upstream;
  std::string convention_reason_;
  std::vector<kv_info> kvs_;
  std::unordered_map<std::string_view, std::size_t> kv_index_;  // keys point into the mapping
  std::vector<tensor_info> tensors_;
  std::unordered_map<std::string_view, std::size_t> tensor_index_;  // names point into the mapping
};

// ---------------------------------------------------------------------------------------------
// Writer

// A tensor shape of 0..4 dims in ggml order (ne[0] contiguous).
struct shape {
  std::array<std::uint64_t, 4> ne{1, 1, 1, 1};
  std::uint32_t n_dims = 0;
  shape() = default;
  shape(std::initializer_list<std::uint64_t> dims) { assign(dims.begin(), dims.size()); }
  template <class I>
    requires(std::is_integral_v<I> && !std::is_same_v<I, bool> && !std::is_same_v<I, std::uint64_t>)
  shape(std::initializer_list<I> dims) {  // {n, m} with int / int64_t / size_t values
    if (dims.size() > kMaxDims)
      throw error("gguf writer", std::nullopt, detail::gguf_msg{} + "a shape has at most 4 dimensions, got " + std::to_string(dims.size()));
    std::size_t i = 0;
    for (I d : dims) {
      if constexpr (std::is_signed_v<I>) {
        if (d < 0) throw error("gguf writer", std::nullopt, detail::gguf_msg{} + "negative dimension " + std::to_string(d) + " in a shape");
      }
      ne[i++] = static_cast<std::uint64_t>(d);
    }
    n_dims = static_cast<std::uint32_t>(dims.size());
  }
  shape(std::span<const std::uint64_t> dims) { assign(dims.data(), dims.size()); }
  shape(const std::vector<std::uint64_t>& dims) { assign(dims.data(), dims.size()); }
  template <std::size_t N>
  shape(const std::array<std::uint64_t, N>& dims) { assign(dims.data(), N); }

 private:
  void assign(const std::uint64_t* p, std::size_t n) {
    if (n > kMaxDims) throw error("gguf writer", std::nullopt, detail::gguf_msg{} + "a shape has at most 4 dimensions, got " + std::to_string(n));
    n_dims = static_cast<std::uint32_t>(n);
    for (std::size_t i = 0; i < n; ++i) ne[i] = p[i];
  }
};

}  // namespace bitnet::gguf

namespace bitnet::detail {

template <class T>
inline constexpr bool gguf_char_like_v = std::is_same_v<T, char> || std::is_same_v<T, wchar_t> ||
                                       std::is_same_v<T, char8_t> || std::is_same_v<T, char16_t> ||
                                       std::is_same_v<T, char32_t>;
template <class T>
inline constexpr bool gguf_always_false_v = false;

// The GGUF value type that stores a C++ value of type T.
template <class T>
constexpr gguf::value_type gguf_value_type_of() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, bool>) {
    return gguf::value_type::boolean;
  } else if constexpr (std::is_same_v<U, float>) {
    return gguf::value_type::f32;
  } else if constexpr (std::is_same_v<U, double>) {
    return gguf::value_type::f64;
  } else if constexpr (std::is_integral_v<U> && !gguf_char_like_v<U>) {
    constexpr bool s = std::is_signed_v<U>;
    if constexpr (sizeof(U) == 1) return s ? gguf::value_type::i8 : gguf::value_type::u8;
    else if constexpr (sizeof(U) == 2) return s ? gguf::value_type::i16 : gguf::value_type::u16;
    else if constexpr (sizeof(U) == 4) return s ? gguf::value_type::i32 : gguf::value_type::u32;
    else if constexpr (sizeof(U) == 8) return s ? gguf::value_type::i64 : gguf::value_type::u64;
    else static_assert(gguf_always_false_v<U>, "no GGUF integer type of this size");
  } else if constexpr (std::is_convertible_v<const U&, std::string_view>) {
    return gguf::value_type::string;
  } else {
    static_assert(gguf_always_false_v<U>, "no GGUF value type for this C++ type (use a fixed-width integer, "
                                     "float, double, bool or a string)");
  }
}
}  // namespace bitnet::detail

namespace bitnet::gguf {

class writer {
 public:
  explicit writer(id_convention conv = id_convention::bitnet) : conv_(conv) {}

  id_convention convention() const noexcept { return conv_; }

  // Stores general.alignment (u32). Without it files use the default of 32.
  void set_alignment(std::uint32_t a) {
    if (a == 0 || (a & (a - 1)) != 0) fail(detail::gguf_msg{} + "alignment " + std::to_string(a) + " is not a non-zero power of two");
    set_u32("general.alignment", a);
  }

  // ---- scalars (setting an existing key replaces its value in place) ----
  void set_u8(std::string key, std::uint8_t v) { put_scalar(std::move(key), value_type::u8, v); }
  void set_i8(std::string key, std::int8_t v) { put_scalar(std::move(key), value_type::i8, static_cast<std::uint8_t>(v)); }
  void set_u16(std::string key, std::uint16_t v) { put_scalar(std::move(key), value_type::u16, v); }
  void set_i16(std::string key, std::int16_t v) { put_scalar(std::move(key), value_type::i16, static_cast<std::uint16_t>(v)); }
  void set_u32(std::string key, std::uint32_t v) { put_scalar(std::move(key), value_type::u32, v); }
  void set_i32(std::string key, std::int32_t v) { put_scalar(std::move(key), value_type::i32, static_cast<std::uint32_t>(v)); }
  void set_u64(std::string key, std::uint64_t v) { put_scalar(std::move(key), value_type::u64, v); }
  void set_i64(std::string key, std::int64_t v) { put_scalar(std::move(key), value_type::i64, static_cast<std::uint64_t>(v)); }
  void set_f32(std::string key, float v) { put_scalar(std::move(key), value_type::f32, std::bit_cast<std::uint32_t>(v)); }
  void set_f64(std::string key, double v) { put_scalar(std::move(key), value_type::f64, std::bit_cast<std::uint64_t>(v)); }
  void set_bool(std::string key, bool v) { put_scalar(std::move(key), value_type::boolean, v ? 1u : 0u); }
  void set_string(std::string key, std::string_view v) {
    std::vector<std::uint8_t> p;
    append_string(p, v);
    put(std::move(key), value_type::string, std::move(p));
  }

  // Generic: the stored type follows the C++ type (int32_t -> i32, float -> f32, "x" -> string, ...).
  template <class T>
  void set(std::string key, const T& v) {
    constexpr value_type t = detail::gguf_value_type_of<T>();
    if constexpr (t == value_type::string) {
      set_string(std::move(key), std::string_view(v));
    } else {
      std::vector<std::uint8_t> p;
      append_elem<T>(p, v);
      put(std::move(key), t, std::move(p));
    }
  }

  // ---- arrays ----
  template <class T>
  void set_array(std::string key, std::span<const T> values) {
    constexpr value_type t = detail::gguf_value_type_of<T>();
    std::vector<std::uint8_t> p;
    detail::gguf_store_le(p, static_cast<std::uint32_t>(t), 4);
    detail::gguf_store_le(p, values.size(), 8);
    for (const T& v : values) append_elem<T>(p, v);
    put(std::move(key), value_type::array, std::move(p));
  }
  template <class T>
  void set_array(std::string key, const std::vector<T>& values) {
    if constexpr (std::is_same_v<T, bool>) {
      set_array_bool(std::move(key), values);
    } else {
      set_array(std::move(key), std::span<const T>(values));
    }
  }
  void set_array_str(std::string key, std::span<const std::string> v) { set_array(std::move(key), v); }
  void set_array_str(std::string key, std::span<const std::string_view> v) { set_array(std::move(key), v); }
  void set_array_f32(std::string key, std::span<const float> v) { set_array(std::move(key), v); }
  void set_array_f64(std::string key, std::span<const double> v) { set_array(std::move(key), v); }
  void set_array_i32(std::string key, std::span<const std::int32_t> v) { set_array(std::move(key), v); }
  void set_array_u32(std::string key, std::span<const std::uint32_t> v) { set_array(std::move(key), v); }
  void set_array_i64(std::string key, std::span<const std::int64_t> v) { set_array(std::move(key), v); }
  void set_array_u64(std::string key, std::span<const std::uint64_t> v) { set_array(std::move(key), v); }
  void set_array_u8(std::string key, std::span<const std::uint8_t> v) { set_array(std::move(key), v); }
  void set_array_i8(std::string key, std::span<const std::int8_t> v) { set_array(std::move(key), v); }
  void set_array_u16(std::string key, std::span<const std::uint16_t> v) { set_array(std::move(key), v); }
  void set_array_i16(std::string key, std::span<const std::int16_t> v) { set_array(std::move(key), v); }
  void set_array_bool(std::string key, const std::vector<bool>& v) {
    std::vector<std::uint8_t> p;
    detail::gguf_store_le(p, static_cast<std::uint32_t>(value_type::boolean), 4);
    detail::gguf_store_le(p, v.size(), 8);
    for (bool b : v) p.push_back(b ? 1 : 0);
    put(std::move(key), value_type::array, std::move(p));
  }

  // Copies one record from a file verbatim (type and bytes).
  void copy_kv(const file& src, std::string_view key) {
    const kv_info* kv = src.find(key);
    if (!kv) fail(detail::gguf_msg{} + "copy_kv: key '" + detail::gguf_printable(key) + "' not found in " + src.path());
    std::vector<std::uint8_t> p(src.bytes() + kv->value_offset, src.bytes() + kv->end);
    put(std::string(key), kv->type, std::move(p));
  }

  bool has(std::string_view key) const noexcept { return index_of(key) != npos; }
  void erase(std::string_view key) {
    const std::size_t i = index_of(key);
    if (i != npos) kvs_.erase(kvs_.begin() + static_cast<std::ptrdiff_t>(i));
  }

  // ---- tensors, written in the order added ----
  // Every tensor is written by a producer that pushes its payload into a sink, in one or many
  // pieces, when the file is written: a writer never holds more than the producers keep (and
  // a streaming producer holds one chunk at a time). The payload size is checked against
  // type and shape when the tensor is added, and again against what the producer gives.
  using sink = std::function<void(std::span<const std::uint8_t>)>;
  using producer = std::function<void(const sink&)>;
  // (tensors done, tensor count, name of the tensor being written; "" when done)
  using progress_fn = std::function<void(std::size_t, std::size_t, std::string_view)>;

  // Streams the payload from `make` at write time.
  void add_tensor(std::string name, tensor_type type, shape ne, producer make) {
    tensor_entry e = make_entry(std::move(name), type, ne);
    e.make = std::move(make);
    tensors_.push_back(std::move(e));
  }
  // Copies `bytes`.
  void add_tensor(std::string name, tensor_type type, shape ne, std::span<const std::uint8_t> bytes) {
    add_tensor(std::move(name), type, ne, std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
  }
  // Takes ownership of `bytes` without copying.
  void add_tensor(std::string name, tensor_type type, shape ne, std::vector<std::uint8_t>&& bytes) {
    tensor_entry e = make_entry(std::move(name), type, ne, bytes.size());
    auto owned = std::make_shared<const std::vector<std::uint8_t>>(std::move(bytes));
    e.make = [owned](const sink& s) { s(*owned); };
    tensors_.push_back(std::move(e));
  }
  // Borrows `bytes`: they must stay alive and unchanged until the last to_bytes()/write().
  void add_tensor_ref(std::string name, tensor_type type, shape ne, std::span<const std::uint8_t> bytes) {
    tensor_entry e = make_entry(std::move(name), type, ne, bytes.size());
    e.make = [bytes](const sink& s) { s(bytes); };
    tensors_.push_back(std::move(e));
  }
  std::size_t tensor_count() const noexcept { return tensors_.size(); }
  std::uint64_t tensor_nbytes(std::size_t i) const { return tensors_.at(i).nbytes; }

  // ---- output ----
  std::vector<std::uint8_t> to_bytes(const progress_fn& progress = {}) const {
    std::vector<std::uint8_t> out;
    emit([&](std::span<const std::uint8_t> s) { out.insert(out.end(), s.begin(), s.end()); }, progress);
    return out;
  }
  // Streams the file to `path` through PATH.tmp in the same directory, renamed to `path` once
  // everything is written and closed: a failure (a producer's error, a full disk) leaves no
  // partial file and an existing `path` untouched.
  void write(const std::string& path, const progress_fn& progress = {}) const {
    const std::string tmp = path + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw error(path, std::nullopt, detail::gguf_msg{} + "cannot open " + tmp + " for writing: " + std::strerror(errno));
    std::vector<char> buf(std::size_t{1} << 20);
    std::setvbuf(f, buf.data(), _IOFBF, buf.size());
    std::uint64_t pos = 0;
    const auto discard = [&] {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
    };
    try {
      emit(
          [&](std::span<const std::uint8_t> s) {
            if (!s.empty() && std::fwrite(s.data(), 1, s.size(), f) != s.size())
              throw error(path, pos, detail::gguf_msg{} + "write failed: " + std::strerror(errno));
            pos += s.size();
          },
          progress);
    } catch (...) {
      std::fclose(f);
      discard();
      throw;
    }
    if (std::fclose(f) != 0) {
      const int e = errno;
      discard();
      throw error(path, std::nullopt, detail::gguf_msg{} + "close failed: " + std::strerror(e));
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
      discard();
      throw error(path, std::nullopt, detail::gguf_msg{} + "cannot rename " + tmp + " to it: " + ec.message());
    }
  }

 private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  struct kv_entry {
    std::string key;
    value_type type;
    std::vector<std::uint8_t> payload;  // encoded value, after the u32 type
  };
  struct tensor_entry {
    std::string name;
    tensor_type type;
    std::uint32_t id;
    shape ne;
    std::uint64_t nbytes;
    producer make;
  };

  [[noreturn]] static void fail(const std::string& m) { throw error("gguf writer", std::nullopt, m); }

  std::size_t index_of(std::string_view key) const noexcept {
    for (std::size_t i = 0; i < kvs_.size(); ++i)
      if (kvs_[i].key == key) return i;
    return npos;
  }
  void put(std::string key, value_type t, std::vector<std::uint8_t> payload) {
    if (key.empty()) fail("empty metadata key");
    if (key.size() > kMaxStringLength) fail("metadata key longer than 1 GiB");
    const std::size_t i = index_of(key);
    if (i != npos) {
      kvs_[i].type = t;
      kvs_[i].payload = std::move(payload);
    } else {
      kvs_.push_back({std::move(key), t, std::move(payload)});
    }
  }
  void put_scalar(std::string key, value_type t, std::uint64_t bits) {
    std::vector<std::uint8_t> p;
    detail::gguf_store_le(p, bits, static_cast<unsigned>(value_size(t)));
    put(std::move(key), t, std::move(p));
  }
  static void append_string(std::vector<std::uint8_t>& p, std::string_view s) {
    if (s.size() > kMaxStringLength) fail("string longer than 1 GiB");
    detail::gguf_store_le(p, s.size(), 8);
    p.insert(p.end(), s.begin(), s.end());
  }
  template <class T>
  static void append_elem(std::vector<std::uint8_t>& p, const T& v) {
    constexpr value_type t = detail::gguf_value_type_of<T>();
    if constexpr (t == value_type::string) {
      append_string(p, std::string_view(v));
    } else if constexpr (t == value_type::f32) {
      detail::gguf_store_le(p, std::bit_cast<std::uint32_t>(v), 4);
    } else if constexpr (t == value_type::f64) {
      detail::gguf_store_le(p, std::bit_cast<std::uint64_t>(v), 8);
    } else if constexpr (t == value_type::boolean) {
      p.push_back(v ? 1 : 0);
    } else {
      detail::gguf_store_le(p, static_cast<std::uint64_t>(v), sizeof(T));
    }
  }

  // A validated entry (not added yet); `size`, when given, must be the payload size.
  tensor_entry make_entry(std::string name, tensor_type type, const shape& ne,
                          std::optional<std::uint64_t> size = std::nullopt) const {
    const std::string shown = detail::gguf_printable(name);
    if (name.empty()) fail("a tensor name must not be empty");
    if (name.size() > kMaxTensorNameLength)
      fail(detail::gguf_msg{} + "tensor '" + shown + "': name is " + std::to_string(name.size()) + " bytes, the limit is " +
           std::to_string(kMaxTensorNameLength));
    for (const auto& t : tensors_)
      if (t.name == name) fail(detail::gguf_msg{} + "tensor '" + shown + "': duplicate tensor name");
    const auto id = type_id(type, conv_);
    if (!id)
      fail(detail::gguf_msg{} + "tensor '" + shown + "': type " + std::string(type_name(type)) + " has no id under the " +
           std::string(convention_name(conv_)) + " convention");
    std::string why;
    const auto nb = bitnet::tensor_nbytes(type, ne.ne, &why);
    if (!nb) fail(detail::gguf_msg{} + "tensor '" + shown + "': " + why);
    if (size && *size != *nb)
      fail(detail::gguf_msg{} + "tensor '" + shown + "': " + std::to_string(*size) + " bytes given, " +
           std::string(type_name(type)) + " of this shape needs " + std::to_string(*nb));
    return {std::move(name), type, *id, ne, *nb, {}};
  }

  // The whole file in order: header, metadata, tensor infos, padding, then each tensor's
  // payload from its producer (its size checked) and the padding after it.
  template <class Out>
  void emit(Out&& out, const progress_fn& progress) const {
    static constexpr std::uint8_t kZeros[256] = {};
    std::uint64_t align = 0;
    const std::vector<std::uint8_t> head = header(align);
    out(std::span<const std::uint8_t>(head));
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const tensor_entry& t = tensors_[i];
      if (progress) progress(i, tensors_.size(), t.name);
      std::uint64_t got = 0;
      const auto shown = [&] { return detail::gguf_msg{} + "tensor '" + detail::gguf_printable(t.name) + "': "; };
      t.make([&](std::span<const std::uint8_t> s) {
        got += s.size();
        if (got > t.nbytes)
          fail(shown() + "the producer gave more than the " + std::to_string(t.nbytes) + " bytes " +
               std::string(type_name(t.type)) + " of this shape needs");
        out(s);
      });
      if (got != t.nbytes)
        fail(shown() + "the producer gave " + std::to_string(got) + " bytes, " + std::string(type_name(t.type)) +
             " of this shape needs " + std::to_string(t.nbytes));
      for (std::uint64_t gap = detail::gguf_pad(t.nbytes, align) - t.nbytes; gap > 0;) {
        const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(gap, sizeof kZeros));
        out(std::span<const std::uint8_t>(kZeros, k));
        gap -= k;
      }
    }
    if (progress) progress(tensors_.size(), tensors_.size(), {});
  }

  // Header, metadata, tensor infos and the padding before the data section.
  std::vector<std::uint8_t> header(std::uint64_t& align) const {
    align = kDefaultAlignment;
    if (const std::size_t i = index_of("general.alignment"); i != npos) {
      const auto& kv = kvs_[i];
      if (kv.type != value_type::u32) fail("general.alignment must be of type u32");
      const auto a = detail::gguf_load_u32(kv.payload.data());
      if (a == 0 || (a & (a - 1)) != 0) fail(detail::gguf_msg{} + "general.alignment " + std::to_string(a) + " is not a power of two");
      align = a;
    }
    std::vector<std::uint8_t> out;
    detail::gguf_store_le(out, 0x46554747u, 4);  // "GGUF" (push_back: vector::insert trips GCC 12 -Wstringop-overflow)
    detail::gguf_store_le(out, 3, 4);
    detail::gguf_store_le(out, tensors_.size(), 8);
    detail::gguf_store_le(out, kvs_.size(), 8);
    for (const auto& kv : kvs_) {
      append_string(out, kv.key);
      detail::gguf_store_le(out, static_cast<std::uint32_t>(kv.type), 4);
      out.insert(out.end(), kv.payload.begin(), kv.payload.end());
    }
    std::uint64_t offset = 0;
    for (const auto& t : tensors_) {
      append_string(out, t.name);
      detail::gguf_store_le(out, t.ne.n_dims, 4);
      for (std::uint32_t d = 0; d < t.ne.n_dims; ++d) detail::gguf_store_le(out, t.ne.ne[d], 8);
      detail::gguf_store_le(out, t.id, 4);
      detail::gguf_store_le(out, offset, 8);
      offset += detail::gguf_pad(t.nbytes, align);
    }
    if (!tensors_.empty()) out.resize(static_cast<std::size_t>(detail::gguf_pad(out.size(), align)), 0);
    return out;
  }

  id_convention conv_;
  std::vector<kv_entry> kvs_;
  std::vector<tensor_entry> tensors_;
};

}  // namespace bitnet::gguf
