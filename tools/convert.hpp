// tools/convert.hpp - the reusable logic of bitnet-convert (see docs/convert.md).
//
//   read_llama2c        bitllama2.c ternary checkpoint (shared/data/PROVENANCE.md) -> decoded tensors
//   parse_sentencepiece SentencePiece ModelProto (protobuf wire format, our own reader)
//   read_llama2c_vocab  llama2.c tokenizer.bin (used to cross-check the proto reader)
//   neox_row_order      RoPE row permutation, interleaved pairs -> NeoX halves
//   build_llama2c       checkpoint + vocab -> `bitnet` GGUF (norms 1, 1/d folded, rows permuted)
//   probe_llama2c_order which 2-bit code order makes the checkpoint a language model (a forward pass)
//   build_converted     GGUF -> GGUF: ternary re-packing, head requantization
//   build_synth         random ternary model of a named real shape
//
// Errors are `convert::error` whose what() names the file, the field and what was expected.
// Nothing here prints: progress goes through a caller-supplied callback.
#pragma once

#include <algorithm>    // std::min, std::max, std::find
#include <array>        // fixed tables
#include <atomic>       // ternarization counts from the producers
#include <bit>          // std::bit_cast for float fields
#include <cerrno>       // errno after fopen
#include <cmath>        // std::isfinite, std::sqrt, std::fabs
#include <cstdint>      // fixed-width integers
#include <cstdio>       // std::FILE streaming output, std::snprintf
#include <cstring>      // std::memcpy, std::strerror
#include <filesystem>   // regular-file checks, temp-file cleanup
#include <fstream>      // reading input files
#include <exception>    // std::exception_ptr across worker threads
#include <functional>   // producers, sinks, progress callbacks
#include <limits>       // infinity: an order a checkpoint cannot be read in
#include <memory>       // std::make_shared for owned payloads
#include <optional>     // optional targets
#include <span>         // byte views
#include <stdexcept>    // std::runtime_error
#include <string>       // names and messages
#include <string_view>  // parsing
#include <thread>       // parallel head quantization
#include <utility>      // std::move, std::pair
#include <vector>       // buffers

#include <bitnet/dense_ref.hpp>  // quantize_row_q8_0 / quantize_row_q6_k, dequantize_row
#include <bitnet/formats.hpp>    // pack_* / unpack_ternary / ternary_shape_ok
#include <bitnet/gguf.hpp>       // gguf::file (input), gguf::writer (metadata encoding)
#include <bitnet/half.hpp>       // fp16 conversions
#include <bitnet/types.hpp>      // tensor_type, tensor_nbytes
#include <bitnet/runner/runner.hpp>  // from-llama2c's order probe (a forward pass); float projections (ternarize)

namespace bitnet::convert {

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fail(const std::string& msg) { throw error(msg); }

// (done, total, current tensor name)
using progress_fn = gguf::writer::progress_fn;

namespace detail {

inline std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

inline std::uint32_t load_u32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}
inline std::int32_t load_i32(const std::uint8_t* p) noexcept { return static_cast<std::int32_t>(load_u32(p)); }
inline float load_f32(const std::uint8_t* p) noexcept { return std::bit_cast<float>(load_u32(p)); }

inline std::string shape_text(const gguf::shape& s) {
  std::string t = "[";
  for (std::uint32_t d = 0; d < s.n_dims; ++d) t += (d ? ", " : "") + std::to_string(s.ne[d]);
  return t + "]";
}

// Splits [0, n) over up to `threads` std::threads (the calling thread takes a share).
template <class F>
inline void parallel_for(std::int64_t n, unsigned threads, F&& f) {
  if (threads <= 1 || n < 2) {
    f(std::int64_t{0}, n);
    return;
  }
  const auto t = static_cast<std::int64_t>(std::min<std::int64_t>(threads, n));
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errs(static_cast<std::size_t>(t));
  for (std::int64_t i = 1; i < t; ++i)
    pool.emplace_back([&, i] {
      try {
        f(n * i / t, n * (i + 1) / t);
      } catch (...) {
        errs[static_cast<std::size_t>(i)] = std::current_exception();
      }
    });
  try {
    f(std::int64_t{0}, n / t);
  } catch (...) {
    errs[0] = std::current_exception();
  }
  for (auto& th : pool) th.join();
  for (auto& e : errs)
    if (e) std::rethrow_exception(e);
}

inline unsigned default_threads() {
  const unsigned h = std::thread::hardware_concurrency();
  return h == 0 ? 1u : std::min(h, 8u);
}

}  // namespace detail

// Whole file into memory, with a message naming the file on failure.
inline std::vector<std::uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(path + ": no such file");
  if (!std::filesystem::is_regular_file(path, ec)) fail(path + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path + ": cannot open: " + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const auto n = static_cast<std::streamoff>(in.tellg());
  if (n < 0) fail(path + ": cannot determine the file size");
  in.seekg(0, std::ios::beg);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(n));
  if (n > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), n)) fail(path + ": read failed");
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Type names for the command line

inline std::optional<tensor_type> parse_ternary_type(std::string_view s) {
  if (s == "i2_s" || s == "I2_S") return tensor_type::i2_s;
  if (s == "tq2_0" || s == "TQ2_0") return tensor_type::tq2_0;
  if (s == "tq1_0" || s == "TQ1_0") return tensor_type::tq1_0;
  return std::nullopt;
}
inline std::optional<tensor_type> parse_head_type(std::string_view s) {
  if (s == "f32" || s == "F32") return tensor_type::f32;
  if (s == "f16" || s == "F16") return tensor_type::f16;
  if (s == "q8_0" || s == "Q8_0") return tensor_type::q8_0;
  if (s == "q6_k" || s == "Q6_K") return tensor_type::q6_k;
  return std::nullopt;
}
inline bool is_ternary_file_type(tensor_type t) noexcept {
  return t == tensor_type::i2_s || t == tensor_type::tq1_0 || t == tensor_type::tq2_0;
}

// llama.cpp's llama_ftype numbering (informational general.file_type): upstream values
// for F32/F16/Q8_0/Q6_K/TQ1_0/TQ2_0, bitnet.cpp's fork value 40 for I2_S.
inline std::uint32_t file_type_of(tensor_type t) noexcept {
  switch (t) {
    case tensor_type::f32: return 0;
    case tensor_type::f16: return 1;
    case tensor_type::q8_0: return 7;
    case tensor_type::q6_k: return 18;
    case tensor_type::tq1_0: return 36;
    case tensor_type::tq2_0: return 37;
    case tensor_type::i2_s: return 40;
    default: return 0;
  }
}

// The shape rule of a ternary file type, in words (formats.hpp's ternary_shape_ok).
inline std::string ternary_requirement(tensor_type t) {
  if (t == tensor_type::i2_s) return "I2_S needs K*M to be a multiple of 128 (its 128-weight groups)";
  return std::string(type_name(t)) + " needs K to be a multiple of 256 (its 256-weight blocks run along rows)";
}

// Why a ternary type cannot hold a K x M weight matrix ("" if it can).
inline std::string ternary_shape_problem(tensor_type t, std::int64_t K, std::int64_t M) {
  if (ternary_shape_ok(t, K, M)) return {};
  if (!is_ternary_file_type(t)) return std::string(type_name(t)) + " is not a ternary file type";
  const std::string dims = "K = ne[0] = " + std::to_string(K) + ", M = ne[1] = " + std::to_string(M);
  if (t == tensor_type::i2_s)
    return ternary_requirement(t) + "; " + dims + " gives K*M mod 128 = " + std::to_string((K * M) % 128);
  return ternary_requirement(t) + "; " + dims + " gives K mod 256 = " + std::to_string(K % 256);
}

// Why a dense head type cannot hold rows of K values ("" if it can).
inline std::string head_shape_problem(tensor_type t, std::int64_t K) {
  const std::int64_t block = traits(t).block;
  if (K > 0 && K % block == 0) return {};
  return std::string(type_name(t)) + " needs the row length ne[0] = " + std::to_string(K) + " to be a multiple of " +
         std::to_string(block) + " (its block size)";
}

// ---------------------------------------------------------------------------------------------
// bitllama2.c checkpoint (format: shared/data/PROVENANCE.md)

inline constexpr std::uint32_t kLlama2cMagic = 0x616b3432;  // "24ka" bytes, "ak42" as a u32
inline constexpr std::int32_t kLlama2cVersion = 1;
inline constexpr std::size_t kLlama2cHeaderBytes = 256;

enum class code_order { lsb, msb };  // code j of a byte at bits 2j.. (lsb) or 6-2j.. (msb)

struct llama2c_config {
  std::int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
  std::int64_t head_dim() const noexcept { return dim / n_heads; }
  std::int64_t kv_dim() const noexcept { return head_dim() * n_kv_heads; }
};

// The seven matrices in file order, with the GGUF name of each.
struct llama2c_kind {
  const char* name;  // checkpoint name
  const char* gguf;  // blk.N.<gguf>.weight
};
inline constexpr std::array<llama2c_kind, 7> kLlama2cKinds{{
    {"wq", "attn_q"}, {"wk", "attn_k"}, {"wv", "attn_v"}, {"wo", "attn_output"},
    {"w1", "ffn_gate"}, {"w2", "ffn_down"}, {"w3", "ffn_up"},
}};

// (rows = out features, cols = in features) of matrix kind k.
inline std::pair<std::int64_t, std::int64_t> llama2c_shape(const llama2c_config& c, std::size_t k) {
  const std::int64_t d = c.dim, h = c.hidden_dim, kv = c.kv_dim();
  switch (k) {
    case 0: return {d, d};
    case 1: case 2: return {kv, d};
    case 3: return {d, d};
    case 4: case 6: return {h, d};
    default: return {d, h};  // w2
  }
}

struct llama2c_matrix {
  std::int64_t rows = 0, cols = 0;  // [rows][cols] row-major = [out][in]
  float scale = 0.0f;
  std::vector<std::int8_t> w;       // {-1, 0, +1}
};

struct llama2c_checkpoint {
  llama2c_config config;
  std::vector<float> final_norm;      // [dim]
  std::vector<float> tok_embeddings;  // [vocab][dim]
  std::array<std::vector<llama2c_matrix>, 7> mats;  // [kind][layer]
  std::uint64_t zeros = 0, plus = 0, minus = 0;    // code counts over all matrices
};

namespace detail {
struct llama2c_section {
  std::string what;
  std::uint64_t offset, size;
};
}  // namespace detail

// Reads and validates a checkpoint held in memory; `name` is used in messages.
inline llama2c_checkpoint read_llama2c(std::span<const std::uint8_t> b, const std::string& name,
                                       code_order order = code_order::lsb) {
  const auto bad = [&](const std::string& m) { fail(name + ": " + m); };
  if (b.size() < kLlama2cHeaderBytes)
    bad("file is " + std::to_string(b.size()) + " bytes, smaller than the 256-byte bitllama2.c header (truncated?)");
  const std::uint32_t magic = detail::load_u32(b.data());
  if (magic != kLlama2cMagic)
    bad("magic: got " + detail::hex32(magic) + ", expected " + detail::hex32(kLlama2cMagic) +
        " (\"ak42\", a bitllama2.c ternary checkpoint)");
  const std::int32_t version = detail::load_i32(b.data() + 4);
  if (version != kLlama2cVersion)
    bad("version: got " + std::to_string(version) + ", expected " + std::to_string(kLlama2cVersion));

  llama2c_checkpoint ck;
  llama2c_config& c = ck.config;
  struct field {
    const char* name;
    std::int32_t* dst;
    std::int32_t max;
  };
  const field fields[7] = {{"dim", &c.dim, 1 << 16},          {"hidden_dim", &c.hidden_dim, 1 << 18},
                           {"n_layers", &c.n_layers, 4096},    {"n_heads", &c.n_heads, 4096},
                           {"n_kv_heads", &c.n_kv_heads, 4096}, {"vocab_size", &c.vocab_size, 1 << 24},
                           {"max_seq_len", &c.seq_len, 1 << 24}};
  for (int i = 0; i < 7; ++i) {
    const std::int32_t v = detail::load_i32(b.data() + 8 + 4 * i);
    if (v < 1 || v > fields[i].max)
      bad(std::string("header field ") + fields[i].name + " (offset " + std::to_string(8 + 4 * i) + ") = " +
          std::to_string(v) + ": expected 1.." + std::to_string(fields[i].max));
    *fields[i].dst = v;
  }
  if (c.dim % c.n_heads != 0)
    bad("header: dim " + std::to_string(c.dim) + " is not a multiple of n_heads " + std::to_string(c.n_heads));
  if (c.n_heads % c.n_kv_heads != 0)
    bad("header: n_heads " + std::to_string(c.n_heads) + " is not a multiple of n_kv_heads " +
        std::to_string(c.n_kv_heads));
  if (c.head_dim() % 2 != 0)
    bad("header: head_dim = dim / n_heads = " + std::to_string(c.head_dim()) + " is odd; RoPE needs pairs");
  const std::uint8_t shared = b[36];
  if (shared != 1)
    bad("header byte 36 (shared_classifier) = " + std::to_string(shared) +
        ": expected 1 (the format has the classifier tied to tok_embeddings)");
  for (std::size_t i = 37; i < kLlama2cHeaderBytes; ++i)
    if (b[i] != 0) bad("header byte " + std::to_string(i) + " = " + std::to_string(b[i]) + ": expected zero padding");

  // Layout: every section with its offset; the file must end exactly after the last one.
  std::vector<detail::llama2c_section> sec;
  std::uint64_t off = kLlama2cHeaderBytes;
  const auto add = [&](std::string what, std::uint64_t size) {
    sec.push_back({std::move(what), off, size});
    off += size;
  };
  add("final_norm", 4ull * static_cast<std::uint64_t>(c.dim));
  add("tok_embeddings", 4ull * static_cast<std::uint64_t>(c.vocab_size) * static_cast<std::uint64_t>(c.dim));
  for (std::size_t k = 0; k < 7; ++k) {
    const auto [rows, cols] = llama2c_shape(c, k);
    const std::uint64_t n = static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(cols);
    for (std::int32_t l = 0; l < c.n_layers; ++l) {
      const std::string m = std::string(kLlama2cKinds[k].name) + " of layer " + std::to_string(l);
      add(m + " (scale)", 4);
      add(m + " (codes)", (n + 3) / 4);
    }
  }
  if (b.size() != off) {
    const std::string shape = "dim " + std::to_string(c.dim) + ", hidden_dim " + std::to_string(c.hidden_dim) +
                              ", n_layers " + std::to_string(c.n_layers) + ", n_heads " + std::to_string(c.n_heads) +
                              ", n_kv_heads " + std::to_string(c.n_kv_heads) + ", vocab_size " +
                              std::to_string(c.vocab_size);
    if (b.size() < off) {
      std::string where;
      for (const auto& s : sec)
        if (b.size() < s.offset + s.size) {
          where = s.what + " [" + std::to_string(s.offset) + ", " + std::to_string(s.offset + s.size) + ")";
          break;
        }
      bad("truncated: the file is " + std::to_string(b.size()) + " bytes, the layout for " + shape + " needs " +
          std::to_string(off) + " (the file ends inside " + where + ")");
    }
    bad("size: the file is " + std::to_string(b.size()) + " bytes, the layout for " + shape + " ends at " +
        std::to_string(off) + ": " + std::to_string(b.size() - off) + " trailing bytes after " + sec.back().what);
  }

  const auto floats = [&](const detail::llama2c_section& s, const char* what) {
    std::vector<float> v(static_cast<std::size_t>(s.size / 4));
    for (std::size_t i = 0; i < v.size(); ++i) {
      v[i] = detail::load_f32(b.data() + s.offset + 4 * i);
      if (!std::isfinite(v[i]))
        bad(std::string(what) + "[" + std::to_string(i) + "] (offset " + std::to_string(s.offset + 4 * i) +
            ") is not finite");
    }
    return v;
  };
  ck.final_norm = floats(sec[0], "final_norm");
  ck.tok_embeddings = floats(sec[1], "tok_embeddings");

  static constexpr std::int8_t kValue[4] = {0, 1, 0, -1};  // 00 -> 0, 01 -> +1, 11 -> -1 (10 invalid)
  std::size_t si = 2;
  for (std::size_t k = 0; k < 7; ++k) {
    const auto [rows, cols] = llama2c_shape(c, k);
    const std::uint64_t n = static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(cols);
    ck.mats[k].resize(static_cast<std::size_t>(c.n_layers));
    for (std::int32_t l = 0; l < c.n_layers; ++l) {
      const auto& ss = sec[si++];
      const auto& cs = sec[si++];
      llama2c_matrix& m = ck.mats[k][static_cast<std::size_t>(l)];
      const std::string what = std::string(kLlama2cKinds[k].name) + " of layer " + std::to_string(l);
      m.rows = rows;
      m.cols = cols;
      m.scale = detail::load_f32(b.data() + ss.offset);
      if (!std::isfinite(m.scale) || m.scale < 0.0f)
        bad(what + ": scale (offset " + std::to_string(ss.offset) + ") = " + std::to_string(m.scale) +
            ": expected a finite non-negative number");
      m.w.resize(static_cast<std::size_t>(n));
      const std::uint8_t* p = b.data() + cs.offset;
      for (std::uint64_t e = 0; e < (n + 3) / 4 * 4; ++e) {
        const unsigned j = static_cast<unsigned>(e % 4);
        const unsigned shift = order == code_order::lsb ? 2 * j : 6 - 2 * j;
        const unsigned code = (p[e / 4] >> shift) & 3u;
        if (e >= n) {  // unused fields of the last byte
          if (code != 0)
            bad(what + ": byte at offset " + std::to_string(cs.offset + e / 4) +
                " has non-zero padding bits after the last code");
          continue;
        }
        if (code == 2)
          bad(what + ": code 0b10 at element " + std::to_string(e) + " (row " + std::to_string(e / cols) +
              ", column " + std::to_string(e % cols) + "), byte offset " + std::to_string(cs.offset + e / 4) +
              ": invalid, only 00 (0), 01 (+1) and 11 (-1) occur" +
              (order == code_order::lsb ? " (read LSB-first; is the file MSB-first? try --order msb)"
                                        : " (read MSB-first; is the file LSB-first? try --order lsb)"));
        const std::int8_t v = kValue[code];
        m.w[static_cast<std::size_t>(e)] = v;
        if (v == 0) ++ck.zeros;
        else if (v > 0) ++ck.plus;
        else ++ck.minus;
      }
    }
  }
  return ck;
}

inline llama2c_checkpoint read_llama2c_file(const std::string& path, code_order order = code_order::lsb) {
  const auto bytes = read_file(path);
  return read_llama2c(bytes, path, order);
}

// ---------------------------------------------------------------------------------------------
// SentencePiece ModelProto (protobuf wire format; only the fields a GGUF vocab needs)
//
//   ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
//   SentencePiece   1 piece (string), 2 score (float), 3 type (enum, default NORMAL = 1)
//   TrainerSpec     3 model_type (1 unigram, 2 bpe, 3 word, 4 char), 4 vocab_size,
//                   35 byte_fallback, 40 unk_id (0), 41 bos_id (1), 42 eos_id (2), 43 pad_id (-1)
//   NormalizerSpec  1 name, 3 add_dummy_prefix (true), 4 remove_extra_whitespaces (true),
//                   5 escape_whitespaces (true)
// Unknown fields are skipped by wire type; groups (wire types 3, 4) are rejected.

struct sp_piece {
  std::string piece;
  float score = 0.0f;
  std::int32_t type = 1;  // 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte
};

struct sp_model {
  std::vector<sp_piece> pieces;
  std::int32_t model_type = 1;  // unigram is the proto default
  std::int32_t vocab_size = 0;  // as trained (0 if absent)
  std::int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  bool byte_fallback = false;
  std::string normalizer_name;
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
};

namespace detail {

class proto_reader {
 public:
  proto_reader(std::span<const std::uint8_t> b, std::uint64_t base, const std::string& file, std::string where)
      : b_(b), base_(base), file_(file), where_(std::move(where)) {}

  bool done() const noexcept { return pos_ >= b_.size(); }
  std::uint64_t offset() const noexcept { return base_ + pos_; }

  [[noreturn]] void fail_at(std::uint64_t at, const std::string& m) const {
    convert::fail(file_ + ": offset " + std::to_string(at) + ": " + where_ + ": " + m);
  }

  std::uint64_t varint(const char* what) {
    const std::uint64_t start = offset();
    std::uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      if (pos_ >= b_.size()) fail_at(start, std::string("unexpected end of data inside a varint (") + what + ")");
      const std::uint8_t c = b_[pos_++];
      if (i == 9 && c > 1) fail_at(start, std::string("varint (") + what + ") overflows 64 bits");
      v |= static_cast<std::uint64_t>(c & 0x7Fu) << (7 * i);
      if ((c & 0x80u) == 0) return v;
    }
    fail_at(start, std::string("varint (") + what + ") is longer than 10 bytes");
  }
  std::uint32_t fixed32(const char* what) {
    if (b_.size() - pos_ < 4)
      fail_at(offset(), std::string("unexpected end of data: need 4 bytes for ") + what + ", " +
                            std::to_string(b_.size() - pos_) + " left");
    const std::uint32_t v = load_u32(b_.data() + pos_);
    pos_ += 4;
    return v;
  }
  std::span<const std::uint8_t> bytes(const char* what, std::uint64_t* start = nullptr) {
    const std::uint64_t at = offset();
    const std::uint64_t n = varint(what);
    if (n > b_.size() - pos_)
      fail_at(at, std::string("length ") + std::to_string(n) + " of " + what + " exceeds the " +
                      std::to_string(b_.size() - pos_) + " bytes left");
    if (start) *start = offset();
    auto s = b_.subspan(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  // Reads a tag; returns (field number, wire type).
  std::pair<std::uint32_t, std::uint32_t> tag() {
    const std::uint64_t at = offset();
    const std::uint64_t t = varint("field tag");
    const std::uint64_t field = t >> 3;
    const auto wire = static_cast<std::uint32_t>(t & 7u);
    if (field == 0 || field > 0x1FFFFFFF) fail_at(at, "invalid field number " + std::to_string(field));
    return {static_cast<std::uint32_t>(field), wire};
  }
  void skip(std::uint32_t field, std::uint32_t wire) {
    const std::uint64_t at = offset();
    switch (wire) {
      case 0: (void)varint("skipped field"); return;
      case 1:
        if (b_.size() - pos_ < 8) fail_at(at, "unexpected end of data in a 64-bit field " + std::to_string(field));
        pos_ += 8;
        return;
      case 2: (void)bytes("skipped field"); return;
      case 5: (void)fixed32("skipped field"); return;
      default:
        fail_at(at, "field " + std::to_string(field) + " has wire type " + std::to_string(wire) +
                        (wire == 3 || wire == 4 ? " (a group; not supported)" : " (invalid)"));
    }
  }
  void expect_wire(std::uint32_t field, std::uint32_t wire, std::uint32_t want, const char* name) const {
    if (wire != want)
      fail_at(offset(), "field " + std::to_string(field) + " (" + name + ") has wire type " + std::to_string(wire) +
                            ", expected " + std::to_string(want));
  }

 private:
  std::span<const std::uint8_t> b_;
  std::size_t pos_ = 0;
  std::uint64_t base_;
  const std::string& file_;
  std::string where_;
};

inline std::int32_t as_int32(std::uint64_t v) noexcept { return static_cast<std::int32_t>(static_cast<std::uint32_t>(v)); }

}  // namespace detail

inline sp_model parse_sentencepiece(std::span<const std::uint8_t> data, const std::string& name) {
  sp_model m;
  detail::proto_reader top(data, 0, name, "ModelProto");
  while (!top.done()) {
    const auto [field, wire] = top.tag();
    if (field == 1) {
      top.expect_wire(field, wire, 2, "pieces");
      std::uint64_t start = 0;
      const auto body = top.bytes("pieces", &start);
      sp_piece p;
      const std::size_t idx = m.pieces.size();
      detail::proto_reader r(body, start, name, "piece " + std::to_string(idx));
      bool has_piece = false;
      while (!r.done()) {
        const auto [f, w] = r.tag();
        if (f == 1) {
          r.expect_wire(f, w, 2, "piece");
          const auto s = r.bytes("piece");
          p.piece.assign(reinterpret_cast<const char*>(s.data()), s.size());
          has_piece = true;
        } else if (f == 2) {
          r.expect_wire(f, w, 5, "score");
          p.score = std::bit_cast<float>(r.fixed32("score"));
        } else if (f == 3) {
          r.expect_wire(f, w, 0, "type");
          const std::uint64_t at = r.offset();
          p.type = detail::as_int32(r.varint("type"));
          if (p.type < 1 || p.type > 6)
            r.fail_at(at, "type " + std::to_string(p.type) + " is not a SentencePiece type (expected 1..6)");
        } else {
          r.skip(f, w);
        }
      }
      if (!has_piece || p.piece.empty()) r.fail_at(start, "empty or missing piece string");
      if (!std::isfinite(p.score)) r.fail_at(start, "score is not finite");
      m.pieces.push_back(std::move(p));
    } else if (field == 2) {
      top.expect_wire(field, wire, 2, "trainer_spec");
      std::uint64_t start = 0;
      const auto body = top.bytes("trainer_spec", &start);
      detail::proto_reader r(body, start, name, "trainer_spec");
      while (!r.done()) {
        const auto [f, w] = r.tag();
        std::int32_t* dst = nullptr;
        const char* fname = "";
        switch (f) {
          case 3: dst = &m.model_type; fname = "model_type"; break;
          case 4: dst = &m.vocab_size; fname = "vocab_size"; break;
          case 40: dst = &m.unk_id; fname = "unk_id"; break;
          case 41: dst = &m.bos_id; fname = "bos_id"; break;
          case 42: dst = &m.eos_id; fname = "eos_id"; break;
          case 43: dst = &m.pad_id; fname = "pad_id"; break;
          default: break;
        }
        if (dst) {
          r.expect_wire(f, w, 0, fname);
          *dst = detail::as_int32(r.varint(fname));
        } else if (f == 35) {
          r.expect_wire(f, w, 0, "byte_fallback");
          m.byte_fallback = r.varint("byte_fallback") != 0;
        } else {
          r.skip(f, w);
        }
      }
    } else if (field == 3) {
      top.expect_wire(field, wire, 2, "normalizer_spec");
      std::uint64_t start = 0;
      const auto body = top.bytes("normalizer_spec", &start);
      detail::proto_reader r(body, start, name, "normalizer_spec");
      while (!r.done()) {
        const auto [f, w] = r.tag();
        if (f == 1) {
          r.expect_wire(f, w, 2, "name");
          const auto s = r.bytes("name");
          m.normalizer_name.assign(reinterpret_cast<const char*>(s.data()), s.size());
        } else if (f == 3) {
          r.expect_wire(f, w, 0, "add_dummy_prefix");
          m.add_dummy_prefix = r.varint("add_dummy_prefix") != 0;
        } else if (f == 4) {
          r.expect_wire(f, w, 0, "remove_extra_whitespaces");
          m.remove_extra_whitespaces = r.varint("remove_extra_whitespaces") != 0;
        } else if (f == 5) {
          r.expect_wire(f, w, 0, "escape_whitespaces");
          m.escape_whitespaces = r.varint("escape_whitespaces") != 0;
        } else {
          r.skip(f, w);
        }
      }
    } else {
      top.skip(field, wire);
    }
  }
  if (m.pieces.empty()) fail(name + ": ModelProto has no pieces (is this a SentencePiece .model file?)");
  const auto n = static_cast<std::int64_t>(m.pieces.size());
  const auto check_id = [&](const char* what, std::int32_t id, bool optional) {
    if (optional && id < 0) return;
    if (id < 0 || id >= n)
      fail(name + ": trainer_spec." + what + " = " + std::to_string(id) + ": expected a piece id in 0.." +
           std::to_string(n - 1));
  };
  check_id("unk_id", m.unk_id, false);
  check_id("bos_id", m.bos_id, true);
  check_id("eos_id", m.eos_id, true);
  check_id("pad_id", m.pad_id, true);
  return m;
}

inline sp_model read_sentencepiece_file(const std::string& path) {
  const auto bytes = read_file(path);
  try {
    return parse_sentencepiece(bytes, path);
  } catch (const error& e) {
    fail(std::string(e.what()) + " (expected a SentencePiece ModelProto, the tokenizer.model file)");
  }
}

// llama2.c tokenizer.bin: i32 max_token_length, then per token f32 score, i32 length, bytes
// (to the end of the file). Its exporter replaced U+2581 by a space and wrote BOS/EOS as
// "\n<s>\n" and "\n</s>\n".
struct llama2c_vocab {
  std::int32_t max_token_length = 0;
  std::vector<std::string> tokens;
  std::vector<float> scores;
};

inline llama2c_vocab read_llama2c_vocab(std::span<const std::uint8_t> b, const std::string& name) {
  llama2c_vocab v;
  if (b.size() < 4) fail(name + ": file is " + std::to_string(b.size()) + " bytes, too small for max_token_length");
  v.max_token_length = detail::load_i32(b.data());
  if (v.max_token_length < 1) fail(name + ": max_token_length = " + std::to_string(v.max_token_length) + ": expected >= 1");
  std::size_t p = 4;
  while (p < b.size()) {
    const std::size_t i = v.tokens.size();
    if (b.size() - p < 8)
      fail(name + ": offset " + std::to_string(p) + ": token " + std::to_string(i) + ": truncated score/length");
    const float s = detail::load_f32(b.data() + p);
    const std::int32_t len = detail::load_i32(b.data() + p + 4);
    p += 8;
    if (len < 0 || static_cast<std::size_t>(len) > b.size() - p)
      fail(name + ": offset " + std::to_string(p - 4) + ": token " + std::to_string(i) + ": length " +
           std::to_string(len) + " exceeds the " + std::to_string(b.size() - p) + " bytes left");
    v.scores.push_back(s);
    v.tokens.emplace_back(reinterpret_cast<const char*>(b.data() + p), static_cast<std::size_t>(len));
    p += static_cast<std::size_t>(len);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// RoPE: llama2.c rotates interleaved pairs (2i, 2i+1) of each head; llama.cpp's bitnet arch
// rotates NeoX halves (i, i + head_dim/2), both with frequency index i. Permuting the rows of
// wq and wk within each head by order[r] (output row r takes input row order[r]) makes the
// NeoX rotation of the permuted q/k equal the permuted interleaved rotation; q.k is unchanged
// because both sides get the same permutation.
inline std::vector<std::int64_t> neox_row_order(std::int64_t rows, std::int64_t head_dim) {
  if (head_dim <= 0 || head_dim % 2 != 0 || rows % head_dim != 0)
    fail("RoPE permutation: rows " + std::to_string(rows) + " and head_dim " + std::to_string(head_dim) +
         ": expected an even head_dim that divides rows");
  std::vector<std::int64_t> order(static_cast<std::size_t>(rows));
  const std::int64_t half = head_dim / 2;
  for (std::int64_t h = 0; h < rows / head_dim; ++h)
    for (std::int64_t i = 0; i < half; ++i) {
      order[static_cast<std::size_t>(h * head_dim + i)] = h * head_dim + 2 * i;
      order[static_cast<std::size_t>(h * head_dim + half + i)] = h * head_dim + 2 * i + 1;
    }
  return order;
}

template <class T>
inline std::vector<T> permute_rows(std::span<const T> w, std::int64_t cols, std::span<const std::int64_t> order) {
  const auto rows = static_cast<std::int64_t>(order.size());
  if (cols <= 0 || static_cast<std::uint64_t>(w.size()) != static_cast<std::uint64_t>(rows * cols))
    fail("permute_rows: " + std::to_string(w.size()) + " values do not form " + std::to_string(rows) + " rows of " +
         std::to_string(cols));
  std::vector<T> out(w.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t src = order[static_cast<std::size_t>(r)];
    if (src < 0 || src >= rows) fail("permute_rows: source row " + std::to_string(src) + " out of range");
    std::copy_n(w.begin() + src * cols, cols, out.begin() + r * cols);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Dense head/embedding encoding (F32, F16, Q8_0, Q6_K) with the quantizers of dense_ref.hpp.

// Encodes `rows` rows of K floats into `out` (dense_row_bytes(t, K) per row).
inline void encode_rows(tensor_type t, const float* x, std::int64_t rows, std::int64_t K, std::uint8_t* out,
                        unsigned threads = 1) {
  const std::size_t rb = dense_row_bytes(t, K);
  detail::parallel_for(rows, threads, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const float* src = x + r * K;
      std::uint8_t* dst = out + static_cast<std::size_t>(r) * rb;
      switch (t) {
        case tensor_type::f32: std::memcpy(dst, src, static_cast<std::size_t>(K) * 4); break;
        case tensor_type::f16:
          for (std::int64_t i = 0; i < K; ++i) {
            const std::uint16_t h = f32_to_fp16(src[i]);
            std::memcpy(dst + 2 * i, &h, 2);
          }
          break;
        case tensor_type::q8_0: {
          std::vector<block_q8_0> blk(static_cast<std::size_t>(K / kQK8_0));
          quantize_row_q8_0(src, blk.data(), K);
          std::memcpy(dst, blk.data(), rb);
          break;
        }
        case tensor_type::q6_k: {
          std::vector<block_q6_k> blk(static_cast<std::size_t>(K / kQK_K));
          quantize_row_q6_k(src, blk.data(), K);
          std::memcpy(dst, blk.data(), rb);
          break;
        }
        default: fail("encode_rows: " + std::string(type_name(t)) + " is not a head type (F32, F16, Q8_0, Q6_K)");
      }
    }
  });
}

// Producer that encodes a [rows][K] float source, chunk by chunk; `fill(r0, r1, dst)` writes
// rows [r0, r1) as floats into dst.
inline gguf::writer::producer dense_producer(tensor_type t, std::int64_t rows, std::int64_t K,
                                            std::function<void(std::int64_t, std::int64_t, float*)> fill,
                                            unsigned threads = detail::default_threads()) {
  return [=](const gguf::writer::sink& s) {
    const std::int64_t chunk = std::max<std::int64_t>(1, (std::int64_t{1} << 22) / K);  // ~16 MiB of floats
    std::vector<float> f;
    std::vector<std::uint8_t> enc;
    const std::size_t rb = dense_row_bytes(t, K);
    for (std::int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const std::int64_t r1 = std::min(rows, r0 + chunk);
      f.resize(static_cast<std::size_t>((r1 - r0) * K));
      fill(r0, r1, f.data());
      enc.resize(static_cast<std::size_t>(r1 - r0) * rb);
      encode_rows(t, f.data(), r1 - r0, K, enc.data(), threads);
      s(enc);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// bitllama2.c -> GGUF (arch `bitnet`)

inline constexpr float kLlama2cDefaultEps = 1e-30f;
inline constexpr float kLlama2cOutputEps = 1e-5f;  // the reference's final RMSNorm

// Where from-llama2c puts a matrix's folded scale (scale / in_features).
enum class llama2c_scales {
  automatic,  // tensor for TQ2_0 / TQ1_0, folded for I2_S
  folded,     // in the ternary payload: I2_S's f32 tensor scale (exact), TQ's f16 block d (rounded)
  tensor,     // payload scale 1.0 (exact in every type) and the f32 value in blk.N.<name>.scale [1]
};

inline bool llama2c_scale_tensors(llama2c_scales s, tensor_type type) noexcept {
  return s == llama2c_scales::tensor || (s == llama2c_scales::automatic && type != tensor_type::i2_s);
}

struct llama2c_options {
  tensor_type type = tensor_type::i2_s;  // ternary output type
  tensor_type head = tensor_type::f32;   // token_embd (tied head)
  // Epsilon of the four block RMSNorms. The reference's n() has none; 1e-30 vanishes in float
  // and in double against this model's smallest mean square (4.9e-10: 1e-30 is below half an
  // ulp), so the results are those of eps = 0, while an all-zero row stays finite. 1e-15 was
  // not negligible in double (int8 flips in --precise); see docs/convert.md.
  float eps = kLlama2cDefaultEps;
  // The final norm's epsilon, written as bitnet.output_norm.layer_norm_rms_epsilon.
  float output_eps = kLlama2cOutputEps;
  llama2c_scales scales = llama2c_scales::automatic;
  std::string name;                      // general.name
};

// Names of the decoded checkpoint tensors in GGUF (blk.N.attn_q.weight, ...).
inline std::string llama2c_gguf_name(std::size_t kind, std::int64_t layer) {
  return "blk." + std::to_string(layer) + "." + kLlama2cKinds[kind].gguf + ".weight";
}

// The folded per-tensor scale: scale / in_features (the 1/d of n()), rounded once to f32.
inline float llama2c_folded_scale(const llama2c_matrix& m) {
  return static_cast<float>(static_cast<double>(m.scale) / static_cast<double>(m.cols));
}

// Ternary values of one checkpoint matrix as the GGUF tensor holds them (wq/wk rows permuted).
inline std::vector<std::int8_t> llama2c_gguf_weights(const llama2c_checkpoint& ck, std::size_t kind,
                                                     std::size_t layer) {
  const llama2c_matrix& m = ck.mats[kind][layer];
  if (kind == 0 || kind == 1) {
    const auto order = neox_row_order(m.rows, ck.config.head_dim());
    return permute_rows<std::int8_t>(m.w, m.cols, order);
  }
  return m.w;
}

// The returned stream reads `ck` while it writes: keep `ck` alive until write()/to_bytes().
inline gguf::writer build_llama2c(const llama2c_checkpoint& ck, const sp_model& sp, const llama2c_options& o,
                                 const std::string& tokenizer_name = "tokenizer") {
  const llama2c_config& c = ck.config;
  if (!is_ternary_file_type(o.type))
    fail("--type " + std::string(type_name(o.type)) + ": expected a ternary type (i2_s, tq2_0, tq1_0)");
  if (o.head != tensor_type::f32 && o.head != tensor_type::f16 && o.head != tensor_type::q8_0 &&
      o.head != tensor_type::q6_k)
    fail("--head-type " + std::string(type_name(o.head)) + ": expected f32, f16, q8_0 or q6_k");
  if (!(o.eps > 0.0f) || !std::isfinite(o.eps)) fail("--eps: expected a finite positive number");
  if (!(o.output_eps >= 0.0f) || !std::isfinite(o.output_eps)) fail("--output-eps: expected a finite number >= 0");
  const bool scale_tensors = llama2c_scale_tensors(o.scales, o.type);
  if (static_cast<std::int64_t>(sp.pieces.size()) != c.vocab_size)
    fail(tokenizer_name + ": " + std::to_string(sp.pieces.size()) + " pieces, but the checkpoint's vocab_size is " +
         std::to_string(c.vocab_size) + " (wrong tokenizer for this model?)");
  if (const auto p = head_shape_problem(o.head, c.dim); !p.empty()) fail("tensor 'token_embd.weight': " + p);
  for (std::size_t k = 0; k < 7; ++k) {
    const auto [rows, cols] = llama2c_shape(c, k);
    if (const auto p = ternary_shape_problem(o.type, cols, rows); !p.empty())
      fail("tensor '" + llama2c_gguf_name(k, 0) + "' (" + kLlama2cKinds[k].name + ", and every layer's): " + p);
  }

  gguf::writer g;
  gguf::writer& w = g;
  const std::string a = "bitnet";
  w.set_string("general.architecture", a);
  w.set_string("general.name", o.name.empty() ? std::string("bitllama2c") : o.name);
  w.set_string("general.description",
               scale_tensors ? "converted from a bitllama2.c ternary checkpoint by bitnet-convert: norms = 1, "
                               "scale/in_features in each blk.N.<name>.scale (ternary payload scale 1), "
                               "wq/wk rows in NeoX order"
                             : "converted from a bitllama2.c ternary checkpoint by bitnet-convert: norms = 1, "
                               "scale/in_features folded into each ternary tensor, wq/wk rows in NeoX order");
  w.set_u32("general.file_type", file_type_of(o.type));
  w.set_u32("general.quantization_version", 2);
  w.set_u32(a + ".vocab_size", static_cast<std::uint32_t>(c.vocab_size));
  w.set_u32(a + ".context_length", static_cast<std::uint32_t>(c.seq_len));
  w.set_u32(a + ".embedding_length", static_cast<std::uint32_t>(c.dim));
  w.set_u32(a + ".block_count", static_cast<std::uint32_t>(c.n_layers));
  w.set_u32(a + ".feed_forward_length", static_cast<std::uint32_t>(c.hidden_dim));
  w.set_u32(a + ".attention.head_count", static_cast<std::uint32_t>(c.n_heads));
  w.set_u32(a + ".attention.head_count_kv", static_cast<std::uint32_t>(c.n_kv_heads));
  w.set_u32(a + ".rope.dimension_count", static_cast<std::uint32_t>(c.head_dim()));
  w.set_f32(a + ".rope.freq_base", 10000.0f);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", o.eps);
  w.set_f32(a + ".output_norm.layer_norm_rms_epsilon", o.output_eps);

  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<std::int32_t> types;
  for (const auto& p : sp.pieces) {
    tokens.push_back(p.piece);
    scores.push_back(p.score);
    types.push_back(p.type);  // SentencePiece and GGUF share the codes 1..6
  }
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_array("tokenizer.ggml.tokens", tokens);
  w.set_array("tokenizer.ggml.scores", scores);
  w.set_array("tokenizer.ggml.token_type", types);
  if (sp.bos_id >= 0) w.set_u32("tokenizer.ggml.bos_token_id", static_cast<std::uint32_t>(sp.bos_id));
  if (sp.eos_id >= 0) w.set_u32("tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(sp.eos_id));
  w.set_u32("tokenizer.ggml.unknown_token_id", static_cast<std::uint32_t>(sp.unk_id));
  if (sp.pad_id >= 0) w.set_u32("tokenizer.ggml.padding_token_id", static_cast<std::uint32_t>(sp.pad_id));
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
  w.set_bool("tokenizer.ggml.add_space_prefix", sp.add_dummy_prefix);

  const auto d = static_cast<std::uint64_t>(c.dim);
  const auto ones = [](std::int64_t n) {
    std::vector<std::uint8_t> b(static_cast<std::size_t>(n) * 4);
    const float one = 1.0f;
    for (std::int64_t i = 0; i < n; ++i) std::memcpy(b.data() + 4 * i, &one, 4);
    return b;
  };
  const float* emb = ck.tok_embeddings.data();
  g.add_tensor("token_embd.weight", o.head, {d, static_cast<std::uint64_t>(c.vocab_size)},
        dense_producer(o.head, c.vocab_size, c.dim, [emb, dim = c.dim](std::int64_t r0, std::int64_t r1, float* dst) {
          std::copy(emb + r0 * dim, emb + r1 * dim, dst);
        }));
  {
    std::vector<std::uint8_t> fn(static_cast<std::size_t>(c.dim) * 4);
    std::memcpy(fn.data(), ck.final_norm.data(), fn.size());
    g.add_tensor("output_norm.weight", tensor_type::f32, {d}, std::move(fn));
  }
  const tensor_type ty = o.type;
  const auto ternary = [&](std::size_t kind, std::int32_t l) {
    const auto [rows, cols] = llama2c_shape(c, kind);
    g.add_tensor(llama2c_gguf_name(kind, l), ty, {static_cast<std::uint64_t>(cols), static_cast<std::uint64_t>(rows)},
          [&ck, kind, l, ty, scale_tensors](const gguf::writer::sink& s) {
            const auto& m = ck.mats[kind][static_cast<std::size_t>(l)];
            ternary_weights t;
            t.K = m.cols;
            t.M = m.rows;
            t.w = llama2c_gguf_weights(ck, kind, static_cast<std::size_t>(l));
            t.scale = scale_tensors ? 1.0f : llama2c_folded_scale(m);
            s(pack_ternary(ty, t));
          });
    if (scale_tensors) {
      std::vector<std::uint8_t> b(4);
      const float v = llama2c_folded_scale(ck.mats[kind][static_cast<std::size_t>(l)]);
      std::memcpy(b.data(), &v, 4);
      g.add_tensor("blk." + std::to_string(l) + "." + kLlama2cKinds[kind].gguf + ".scale", tensor_type::f32, {1},
                  std::move(b));
    }
  };
  for (std::int32_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    g.add_tensor(p + "attn_norm.weight", tensor_type::f32, {d}, ones(c.dim));
    ternary(0, l);
    ternary(1, l);
    ternary(2, l);
    g.add_tensor(p + "attn_sub_norm.weight", tensor_type::f32, {d}, ones(c.dim));
    ternary(3, l);
    g.add_tensor(p + "ffn_norm.weight", tensor_type::f32, {d}, ones(c.dim));
    ternary(4, l);
    ternary(6, l);
    g.add_tensor(p + "ffn_sub_norm.weight", tensor_type::f32, {static_cast<std::uint64_t>(c.hidden_dim)},
                ones(c.hidden_dim));
    ternary(5, l);
  }
  return g;
}

// ---------------------------------------------------------------------------------------------
// The code order of a checkpoint. Read in the wrong order, every group of four consecutive
// weights is reversed: the value counts are the same and nothing is invalid, but the model
// produces noise (1 of 160 greedy ids right on bitllama-3M). So each order is tried: the
// checkpoint is converted in memory and a plain English probe text is scored by the runner's
// forward pass; a trained model reads it with a far lower perplexity in its own order.

inline constexpr std::string_view kOrderProbeText =
    "Once upon a time, there was a little girl. She liked to play with her friends in the park. "
    "One day, they found a big red ball and played with it all day. They were very happy.";

struct order_probe {
  // Perplexity of the probe text read each way; infinity for an order the checkpoint cannot be
  // read in (its message in error_lsb / error_msb).
  double ppl_lsb = 0.0, ppl_msb = 0.0;
  std::string error_lsb, error_msb;
  std::int64_t tokens = 0;  // scored positions
  code_order likelier() const noexcept { return ppl_msb < ppl_lsb ? code_order::msb : code_order::lsb; }
  double ratio() const noexcept {  // worse / better perplexity
    return std::max(ppl_lsb, ppl_msb) / std::max(1e-300, std::min(ppl_lsb, ppl_msb));
  }
};

// The checkpoint bytes `ckpt`, read in each order with vocabulary `sp`, scored on the probe text.
inline order_probe probe_llama2c_order(std::span<const std::uint8_t> ckpt, const std::string& name, const sp_model& sp,
                                       const llama2c_options& o) {
  order_probe r;
  run::thread_pool pool(std::min(2u, detail::default_threads()));
  for (const code_order order : {code_order::lsb, code_order::msb}) {
    const bool lsb = order == code_order::lsb;
    llama2c_checkpoint ck;
    try {
      ck = read_llama2c(ckpt, name, order);
    } catch (const error& e) {
      (lsb ? r.error_lsb : r.error_msb) = e.what();
      (lsb ? r.ppl_lsb : r.ppl_msb) = std::numeric_limits<double>::infinity();
      continue;
    }
    llama2c_options oo = o;
    oo.type = tensor_type::i2_s;
    oo.head = tensor_type::f32;
    const run::model m = run::model::load(gguf::file::from_memory(build_llama2c(ck, sp, oo).to_bytes(), name), {}, pool);
    const auto ids = m.require_tokenizer().encode(kOrderProbeText, true, false);
    const auto n = static_cast<std::int64_t>(ids.size());
    run::session s(m, pool, n, n);
    const auto logits = s.eval(ids, true);
    const std::int64_t V = m.cfg().n_vocab;
    double nll = 0.0;
    for (std::int64_t p = 0; p + 1 < n; ++p) {
      const float* x = logits.data() + p * V;
      double mx = x[0], sum = 0.0;
      for (std::int64_t v = 1; v < V; ++v) mx = std::max(mx, static_cast<double>(x[v]));
      for (std::int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(x[v]) - mx);
      nll += mx + std::log(sum) - static_cast<double>(x[ids[static_cast<std::size_t>(p + 1)]]);
    }
    r.tokens = n - 1;
    (lsb ? r.ppl_lsb : r.ppl_msb) = std::exp(nll / static_cast<double>(std::max<std::int64_t>(1, n - 1)));
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// GGUF -> GGUF

struct convert_options {
  std::optional<tensor_type> type;  // re-pack every ternary tensor to this type
  std::optional<tensor_type> head;  // requantize token_embd / output.weight to this type
  unsigned threads = detail::default_threads();
};

// Notes about lossy steps (scale rounding) for the caller to print.
// Float projection tensors ternarized while the file is written (counted by the producers).
struct ternarize_counts {
  std::atomic<int> exact{0}, absmean{0};
};

struct convert_notes {
  std::vector<std::string> warnings;
  std::size_t repacked = 0, requantized = 0, copied = 0;
  std::size_t scales_checked = 0, scales_rounded = 0;  // I2_S -> TQ: per-tensor scales rounded to f16
  double worst_scale_change = 0.0;
  std::string worst_scale_tensor;
  std::size_t ternarized = 0;  // float projections to ternarize; how, once written:
  std::shared_ptr<ternarize_counts> ternarize = std::make_shared<ternarize_counts>();
};

// blk.<N>.<projection>.weight (config.hpp's kProjectionNames).
inline bool is_projection_name(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return false;
  const auto dot = name.find('.', 4);
  if (dot == std::string_view::npos || dot == 4) return false;
  for (std::size_t i = 4; i < dot; ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  const std::string_view rest = name.substr(dot + 1);
  for (const char* p : run::kProjectionNames)
    if (rest.size() == std::char_traits<char>::length(p) + 7 && rest.substr(0, rest.size() - 7) == p &&
        rest.substr(rest.size() - 7) == ".weight")
      return true;
  return false;
}

inline bool is_head_tensor(std::string_view name) noexcept {
  return name == "token_embd.weight" || name == "output.weight";
}

// Holds `in` by reference: it must outlive the returned stream's write().
inline gguf::writer build_converted(const gguf::file& in, const convert_options& o, convert_notes* notes = nullptr) {
  convert_notes local;
  convert_notes& n = notes ? *notes : local;
  if (o.type && !is_ternary_file_type(*o.type))
    fail("--type " + std::string(type_name(*o.type)) + ": expected a ternary type (i2_s, tq2_0, tq1_0)");
  if (o.head && *o.head != tensor_type::f32 && *o.head != tensor_type::f16 && *o.head != tensor_type::q8_0 &&
      *o.head != tensor_type::q6_k)
    fail("--head-type " + std::string(type_name(*o.head)) + ": expected f32, f16, q8_0 or q6_k");

  id_convention conv = in.convention();
  if (o.type && !type_id(*o.type, conv)) {
    // I2_S exists only in bitnet.cpp's ids. A file with no tensor in 36..39 (a float llama file)
    // reads the same under either convention, so the output can use the fork's.
    bool clash = false;
    for (const auto& t : in.tensors()) clash = clash || (t.raw_type_id >= 36 && t.raw_type_id <= 39);
    if (!clash) conv = id_convention::bitnet;
  }
  if (o.type && !type_id(*o.type, conv))
    fail(in.path() + ": " + std::string(type_name(*o.type)) + " has no type id in this file's " +
         std::string(gguf::convention_name(conv)) + " id convention (" + in.convention_reason() + ")");
  gguf::writer g(conv);
  for (const auto& kv : in.metadata()) g.copy_kv(in, kv.key);  // general.alignment too

  std::optional<tensor_type> ternary_seen;
  for (const auto& t : in.tensors()) {
    gguf::shape ne;
    ne.n_dims = t.n_dims;
    ne.ne = t.ne;
    const std::string ctx = in.path() + ": tensor '" + t.name + "' (" + std::string(type_name(t.type)) + " " +
                            detail::shape_text(ne) + "): ";
    if (o.type && run::is_float_type(t.type) && is_projection_name(t.name)) {
      // A float projection (bitnet.cpp's converter writes them before quantizing): ternarized
      // as the runner loads it (exact ternary x scale, else absmean), then packed.
      const std::int64_t K = static_cast<std::int64_t>(t.ne[0]);
      const std::int64_t M = static_cast<std::int64_t>(t.ne[1] * t.ne[2] * t.ne[3]);
      if (const auto p = ternary_shape_problem(*o.type, K, M); !p.empty()) fail(ctx + "cannot convert to " + p);
      ++n.ternarized;
      const tensor_type to = *o.type, from = t.type;
      const auto* src = &t;
      g.add_tensor(t.name, to, ne, [src, from, to, K, M, counts = n.ternarize](const gguf::writer::sink& sk) {
        const run::ternarized tz = run::ternarize(from, src->bytes(), K, M);
        (tz.exact ? counts->exact : counts->absmean).fetch_add(1, std::memory_order_relaxed);
        sk(pack_ternary(to, tz.w));
      });
      ternary_seen = to;
      continue;
    }
    const bool ternary = is_ternary_file_type(t.type);
    if (ternary && o.type && *o.type != t.type) {
      const std::int64_t K = static_cast<std::int64_t>(t.ne[0]);
      const std::int64_t M = static_cast<std::int64_t>(t.ne[1] * t.ne[2] * t.ne[3]);
      if (const auto p = ternary_shape_problem(*o.type, K, M); !p.empty()) fail(ctx + "cannot convert to " + p);
      // Decode once here to report unrepresentable scales before writing anything.
      ternary_weights w;
      try {
        w = unpack_ternary(t.type, t.bytes(), K, M);
      } catch (const std::exception& e) {
        fail(ctx + e.what());
      }
      if (*o.type == tensor_type::i2_s && !w.block_scales.empty())
        fail(ctx + "its 256-blocks have different scales; I2_S holds one scale per tensor");
      if (*o.type != tensor_type::i2_s && t.type == tensor_type::i2_s) {
        ++n.scales_checked;
        const float r = fp16_to_f32(f32_to_fp16(w.scale));
        if (r != w.scale) {
          ++n.scales_rounded;
          const double rel = std::fabs(static_cast<double>(r) - w.scale) / std::fabs(static_cast<double>(w.scale));
          if (rel > n.worst_scale_change) {
            n.worst_scale_change = rel;
            n.worst_scale_tensor = t.name + " (" + bitnet::detail::gguf_shortest(w.scale) + " -> " +
                                   bitnet::detail::gguf_shortest(r) + ")";
          }
        }
      }
      ++n.repacked;
      const tensor_type to = *o.type;
      const tensor_type from = t.type;
      const auto* src = &t;
      g.add_tensor(t.name, to, ne, [src, from, to, K, M](const gguf::writer::sink& s) {
        s(pack_ternary(to, unpack_ternary(from, src->bytes(), K, M)));
      });
      ternary_seen = to;
      continue;
    }
    if (ternary) ternary_seen = t.type;
    if (is_head_tensor(t.name) && o.head && *o.head != t.type) {
      if (!dense_weight_type(t.type)) fail(ctx + "cannot requantize: its type is not a dense type this tool reads");
      const auto K = static_cast<std::int64_t>(t.ne[0]);
      const auto rows = static_cast<std::int64_t>(t.ne[1] * t.ne[2] * t.ne[3]);
      if (const auto p = head_shape_problem(*o.head, K); !p.empty()) fail(ctx + "cannot requantize: " + p);
      const std::size_t src_rb = dense_row_bytes(t.type, K);
      const tensor_type from = t.type;
      const std::uint8_t* base = t.data;
      ++n.requantized;
      g.add_tensor(t.name, *o.head, ne,
            dense_producer(*o.head, rows, K,
                           [base, src_rb, from, K](std::int64_t r0, std::int64_t r1, float* dst) {
                             for (std::int64_t r = r0; r < r1; ++r)
                               dequantize_row(from, base + static_cast<std::size_t>(r) * src_rb, dst + (r - r0) * K, K);
                           },
                           o.threads));
      continue;
    }
    ++n.copied;
    g.add_tensor_ref(t.name, t.type, ne, t.bytes());
  }
  if (n.scales_rounded > 0)
    n.warnings.push_back(std::to_string(n.scales_rounded) + " of " + std::to_string(n.scales_checked) +
                         " I2_S scales are not f16 values; " + std::string(type_name(*o.type)) +
                         " stores the nearest f16 (largest relative change " +
                         bitnet::detail::gguf_shortest(static_cast<float>(n.worst_scale_change)) + ", tensor " + n.worst_scale_tensor +
                         "); the ternary values are unchanged");
  if (o.type && !ternary_seen)
    n.warnings.push_back("no ternary or float projection tensors in " + in.path() + "; --type had no effect");
  if (ternary_seen) g.set_u32("general.file_type", file_type_of(*ternary_seen));
  return g;
}

// ---------------------------------------------------------------------------------------------
// Synthetic models

// splitmix64: fast, and good enough for synthetic weights.
struct splitmix64 {
  std::uint64_t s;
  std::uint64_t next() noexcept {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

// Independent stream per (seed, tensor name): a tensor's contents do not depend on the
// output type, the layer count or the order of generation.
inline splitmix64 tensor_rng(std::uint64_t seed, std::string_view name) {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (const char ch : name) h = (h ^ static_cast<unsigned char>(ch)) * 0x100000001b3ull;
  splitmix64 r{seed ^ 0x5DEECE66Dull};
  r.s ^= h;
  (void)r.next();
  return r;
}

// Approximately N(0, 1): Irwin-Hall sum of four 16-bit uniforms, standardized (|z| <= 3.46).
inline float approx_normal(std::uint64_t u) noexcept {
  const auto a = static_cast<std::int64_t>(u & 0xFFFF) + static_cast<std::int64_t>((u >> 16) & 0xFFFF) +
                 static_cast<std::int64_t>((u >> 32) & 0xFFFF) + static_cast<std::int64_t>(u >> 48);
  return static_cast<float>(static_cast<double>(a - 131070) * (1.0 / 37837.23));
}

// Ternary weights: P(0) = 6/16, P(+1) = P(-1) = 5/16 (about the 37 % zeros of the trained 3M model).
inline void random_ternary(splitmix64& r, std::int8_t* w, std::size_t n) {
  static constexpr std::int8_t kMap[16] = {-1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  while (i < n) {
    std::uint64_t u = r.next();
    for (int j = 0; j < 16 && i < n; ++j, ++i, u >>= 4) w[i] = kMap[u & 15u];
  }
}

enum class vocab_kind { spm, bpe };

struct synth_shape {
  std::string name, arch;
  std::int64_t layers, dim, ff, heads, kv_heads, vocab, ctx;
  float rope_base;
  vocab_kind vocab_type;
  std::string note;           // printed by the tool
  std::int64_t head_dim = 0;  // 0: dim / heads (else written as attention.key_length / value_length)
  float eps = 1e-5f;
  std::string pre = "llama-bpe";  // BPE pre-tokenizer name
  // Arch llama: no sub-norms; an untied output.weight of the head type.
};

// Real dimensions: BitNet b1.58 2B4T and 1bitLLM from spec bitnet-models.md section 5;
// Falcon3-1B / -3B (Falcon3-*-1.58bit share them) and Llama3-8B-1.58 (Llama-3-8B) from the
// models' config.json on Hugging Face (tiiuae/Falcon3-1B-Instruct, tiiuae/Falcon3-3B-Instruct,
// HF1BitLLM/Llama3-8B-1.58-100B-tokens).
inline const std::vector<synth_shape>& synth_shapes() {
  static const std::vector<synth_shape> k{
      {"2b4t", "bitnet-b1.58", 30, 2560, 6912, 20, 5, 128256, 4096, 500000.0f, vocab_kind::bpe,
       "BitNet-b1.58-2B-4T shape"},
      {"large", "bitnet", 24, 1536, 4096, 16, 16, 32002, 2048, 10000.0f, vocab_kind::spm,
       "1bitLLM/bitnet_b1_58-large shape"},
      {"3b", "bitnet", 26, 3200, 8640, 32, 32, 32002, 2048, 10000.0f, vocab_kind::spm,
       "1bitLLM/bitnet_b1_58-3B shape (ffn_down has K = 8640: I2_S only)"},
      {"8b", "bitnet-b1.58", 32, 4096, 14336, 32, 8, 128256, 8192, 500000.0f, vocab_kind::bpe,
       "Llama3-8B-1.58 dimensions emitted as arch bitnet-b1.58 (sub-norms, ReLU^2); llama3-8b is the llama form"},
      {"falcon3-1b", "llama", 18, 2048, 8192, 8, 4, 131072, 8192, 1000042.0f, vocab_kind::bpe,
       "Falcon3-1B(-1.58bit) shape, arch llama: heads of 256, untied head", 256, 1e-6f, "falcon3"},
      {"falcon3-3b", "llama", 22, 3072, 9216, 12, 4, 131072, 32768, 1000042.0f, vocab_kind::bpe,
       "Falcon3-3B(-1.58bit) shape, arch llama: heads of 256, untied head", 256, 1e-6f, "falcon3"},
      {"llama3-8b", "llama", 32, 4096, 14336, 32, 8, 128256, 8192, 500000.0f, vocab_kind::bpe,
       "Llama3-8B-1.58-100B-tokens shape, arch llama: untied head"},
      {"tiny", "bitnet-b1.58", 2, 256, 512, 4, 2, 1024, 512, 10000.0f, vocab_kind::bpe, "tiny test model"},
  };
  return k;
}

// "2b4t, large, ..." for messages.
inline std::string synth_shape_names() {
  std::string names;
  for (const auto& sh : synth_shapes()) names += (names.empty() ? "" : ", ") + sh.name;
  return names;
}

inline const synth_shape* find_synth_shape(std::string_view name) {
  for (const auto& s : synth_shapes())
    if (s.name == name) return &s;
  return nullptr;
}

struct synth_options {
  std::string shape = "tiny";
  tensor_type type = tensor_type::i2_s;
  tensor_type head = tensor_type::f16;
  std::optional<std::int64_t> layers, vocab;
  std::uint64_t seed = 1;
  unsigned threads = detail::default_threads();
};

// The synthetic tokenizer vocabulary.
struct synth_vocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;         // empty for BPE
  std::vector<std::int32_t> types;
  std::vector<std::string> merges;   // BPE only
  std::uint32_t bos = 0, eos = 0, eot = 0, unk = 0;
};

namespace detail {
// GPT-2 byte-level mapping: printable bytes map to themselves, the others to U+0100 onwards.
inline std::string gpt2_byte_token(unsigned b) {
  unsigned cp = b;
  const bool direct = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  if (!direct) {
    unsigned n = 0;
    for (unsigned x = 0; x < b; ++x)
      if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}
}  // namespace detail

// BPE: 256 byte tokens, filler tokens built by merges (space-or-letter + letter, breadth
// first), then the special tokens at the end (Llama-3 layout when vocab >= 128256).
// SPM: <unk>, <s>, </s>, 256 byte pieces, then filler pieces with decreasing scores.
inline synth_vocab make_synth_vocab(vocab_kind kind, std::int64_t n) {
  synth_vocab v;
  const std::string letters = "etaoinshrdlcumwfgypbvkjxqz";
  const bool bpe = kind == vocab_kind::bpe;
  const std::int64_t n_special = bpe ? (n >= 128256 ? 256 : 3) : 0;
  const std::int64_t min_n = bpe ? 256 + n_special + 1 : 3 + 256 + 1;
  if (n < min_n || n > (std::int64_t{1} << 24))
    fail("--vocab " + std::to_string(n) + ": expected " + std::to_string(min_n) + ".." + std::to_string(1 << 24) +
         " for a " + (bpe ? "byte-level BPE" : "SentencePiece") + " vocabulary");
  const std::string space = bpe ? detail::gpt2_byte_token(' ') : std::string("\xE2\x96\x81");
  if (bpe) {
    for (unsigned b = 0; b < 256; ++b) {
      v.tokens.push_back(detail::gpt2_byte_token(b));
      v.types.push_back(1);
    }
  } else {
    v.tokens = {"<unk>", "<s>", "</s>"};
    v.types = {2, 3, 3};
    v.scores = {0.0f, 0.0f, 0.0f};
    char buf[8];
    for (unsigned b = 0; b < 256; ++b) {
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      v.tokens.push_back(buf);
      v.types.push_back(6);
      v.scores.push_back(0.0f);
    }
    v.unk = 0;
    v.bos = 1;
    v.eos = 2;
    v.eot = 2;
  }
  const std::int64_t fill_end = n - n_special;
  // Level 0: the space marker and the letters (for SPM these are pieces of their own).
  std::vector<std::string> level{space};
  for (char ch : letters) level.emplace_back(1, ch);
  float score = -1.0f;
  if (!bpe)
    for (const auto& s : level) {
      if (static_cast<std::int64_t>(v.tokens.size()) >= fill_end) break;
      v.tokens.push_back(s);
      v.types.push_back(1);
      v.scores.push_back(score--);
    }
  while (static_cast<std::int64_t>(v.tokens.size()) < fill_end) {
    std::vector<std::string> next;
    for (const auto& a : level) {
      for (char ch : letters) {
        if (static_cast<std::int64_t>(v.tokens.size()) >= fill_end) break;
        std::string t = a + ch;
        if (bpe) v.merges.push_back(a + " " + std::string(1, ch));
        v.tokens.push_back(t);
        v.types.push_back(1);
        if (!bpe) v.scores.push_back(score--);
        next.push_back(std::move(t));
      }
    }
    level = std::move(next);
  }
  if (bpe) {
    const std::int64_t s0 = fill_end;
    for (std::int64_t i = 0; i < n_special; ++i) {
      std::string t;
      if (i == 0) t = "<|begin_of_text|>";
      else if (i == 1) t = "<|end_of_text|>";
      else if (n_special == 256 && i == 9) t = "<|eot_id|>";
      else if (n_special != 256 && i == 2) t = "<|eot_id|>";
      else if (n_special == 256 && i == 6) t = "<|start_header_id|>";
      else if (n_special == 256 && i == 7) t = "<|end_header_id|>";
      else t = "<|reserved_special_token_" + std::to_string(i) + "|>";
      v.tokens.push_back(t);
      v.types.push_back(3);
    }
    v.bos = static_cast<std::uint32_t>(s0);
    v.eos = static_cast<std::uint32_t>(s0 + 1);
    v.eot = static_cast<std::uint32_t>(s0 + (n_special == 256 ? 9 : 2));
  }
  return v;
}

// Scale of a synthetic ternary matrix with K inputs: 1/sqrt(K * P(nonzero)) keeps outputs at
// about unit RMS for unit-RMS inputs; rounded to an f16 value so every ternary format stores
// it exactly (all three types then hold the same model, and conversions are lossless).
inline float synth_scale(std::int64_t K) {
  const float s = static_cast<float>(1.0 / std::sqrt(static_cast<double>(K) * 0.625));
  return fp16_to_f32(f32_to_fp16(s));
}

inline gguf::writer build_synth(const synth_options& o, std::vector<std::string>* notes = nullptr) {
  const synth_shape* sh = find_synth_shape(o.shape);
  if (!sh) fail("--shape " + o.shape + ": unknown shape; expected one of " + synth_shape_names());
  if (!is_ternary_file_type(o.type))
    fail("--type " + std::string(type_name(o.type)) + ": expected a ternary type (i2_s, tq2_0, tq1_0)");
  if (o.head != tensor_type::f32 && o.head != tensor_type::f16 && o.head != tensor_type::q8_0 &&
      o.head != tensor_type::q6_k)
    fail("--head-type " + std::string(type_name(o.head)) + ": expected f16, f32, q8_0 or q6_k");
  const std::int64_t L = o.layers.value_or(sh->layers);
  const std::int64_t V = o.vocab.value_or(sh->vocab);
  if (L < 1 || L > 4096) fail("--layers " + std::to_string(L) + ": expected 1..4096");
  const bool llama = sh->arch == "llama";
  const std::int64_t d = sh->dim, ff = sh->ff, hd = sh->head_dim ? sh->head_dim : sh->dim / sh->heads,
                     qd = hd * sh->heads, kv = hd * sh->kv_heads;

  // Every ternary matrix must fit the type; name the first that does not.
  struct mat {
    const char* name;
    std::int64_t K, M;
  };
  const mat mats[7] = {{"attn_q", d, qd},   {"attn_k", d, kv},   {"attn_v", d, kv}, {"attn_output", qd, d},
                       {"ffn_gate", d, ff}, {"ffn_up", d, ff}, {"ffn_down", ff, d}};
  std::string bad;
  for (const auto& m : mats)
    if (!ternary_shape_ok(o.type, m.K, m.M))
      bad += std::string(bad.empty() ? "" : ", ") + "blk.N." + m.name + ".weight (K = " + std::to_string(m.K) +
             ", M = " + std::to_string(m.M) + ")";
  if (!bad.empty()) {
    std::string ok;
    for (const tensor_type t : {tensor_type::i2_s, tensor_type::tq2_0, tensor_type::tq1_0}) {
      bool all = true;
      for (const auto& m : mats) all = all && ternary_shape_ok(t, m.K, m.M);
      if (all) ok += std::string(ok.empty() ? "" : " or ") + std::string(type_name(t));
    }
    fail("--shape " + sh->name + " --type " + std::string(type_name(o.type)) + ": " + ternary_requirement(o.type) +
         "; these tensors do not fit: " + bad + (ok.empty() ? std::string() : "; this shape fits " + ok));
  }
  if (const auto p = head_shape_problem(o.head, d); !p.empty())
    fail("--shape " + sh->name + " --head-type " + std::string(type_name(o.head)) + ": tensor 'token_embd.weight': " + p);
  if (notes && !sh->note.empty()) notes->push_back(sh->note);

  const synth_vocab voc = make_synth_vocab(sh->vocab_type, V);
  gguf::writer g;
  gguf::writer& w = g;
  const std::string& a = sh->arch;
  w.set_string("general.architecture", a);
  w.set_string("general.name", "synthetic-" + sh->name);
  w.set_string("general.description", "random ternary weights (bitnet-convert synth --shape " + sh->name +
                                          " --seed " + std::to_string(o.seed) + "); not a trained model");
  w.set_u32("general.file_type", file_type_of(o.type));
  w.set_u32("general.quantization_version", 2);
  w.set_u32(a + ".vocab_size", static_cast<std::uint32_t>(V));
  w.set_u32(a + ".context_length", static_cast<std::uint32_t>(sh->ctx));
  w.set_u32(a + ".embedding_length", static_cast<std::uint32_t>(d));
  w.set_u32(a + ".block_count", static_cast<std::uint32_t>(L));
  w.set_u32(a + ".feed_forward_length", static_cast<std::uint32_t>(ff));
  w.set_u32(a + ".attention.head_count", static_cast<std::uint32_t>(sh->heads));
  w.set_u32(a + ".attention.head_count_kv", static_cast<std::uint32_t>(sh->kv_heads));
  w.set_u32(a + ".rope.dimension_count", static_cast<std::uint32_t>(hd));
  if (sh->head_dim) {
    w.set_u32(a + ".attention.key_length", static_cast<std::uint32_t>(hd));
    w.set_u32(a + ".attention.value_length", static_cast<std::uint32_t>(hd));
  }
  w.set_f32(a + ".rope.freq_base", sh->rope_base);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", sh->eps);
  if (sh->vocab_type == vocab_kind::bpe) {
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", sh->pre);
    w.set_array("tokenizer.ggml.tokens", voc.tokens);
    w.set_array("tokenizer.ggml.token_type", voc.types);
    w.set_array("tokenizer.ggml.merges", voc.merges);
    w.set_u32("tokenizer.ggml.bos_token_id", voc.bos);
    w.set_u32("tokenizer.ggml.eos_token_id", voc.eos);
    w.set_u32("tokenizer.ggml.eot_token_id", voc.eot);
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    w.set_bool("tokenizer.ggml.add_space_prefix", false);
  } else {
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_array("tokenizer.ggml.tokens", voc.tokens);
    w.set_array("tokenizer.ggml.scores", voc.scores);
    w.set_array("tokenizer.ggml.token_type", voc.types);
    w.set_u32("tokenizer.ggml.bos_token_id", voc.bos);
    w.set_u32("tokenizer.ggml.eos_token_id", voc.eos);
    w.set_u32("tokenizer.ggml.unknown_token_id", voc.unk);
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    w.set_bool("tokenizer.ggml.add_space_prefix", true);
  }

  const std::uint64_t seed = o.seed;
  const auto norm = [&](std::string name, std::int64_t n) {
    g.add_tensor(name, tensor_type::f32, {static_cast<std::uint64_t>(n)}, [seed, name, n](const gguf::writer::sink& s) {
      splitmix64 r = tensor_rng(seed, name);
      std::vector<std::uint8_t> b(static_cast<std::size_t>(n) * 4);
      for (std::int64_t i = 0; i < n; ++i) {
        const float x = 1.0f + 0.05f * approx_normal(r.next());
        std::memcpy(b.data() + 4 * i, &x, 4);
      }
      s(b);
    });
  };
  const tensor_type ty = o.type;
  const auto ternary = [&](std::string name, std::int64_t K, std::int64_t M) {
    g.add_tensor(name, ty, {static_cast<std::uint64_t>(K), static_cast<std::uint64_t>(M)},
          [seed, name, K, M, ty](const gguf::writer::sink& s) {
            splitmix64 r = tensor_rng(seed, name);
            ternary_weights t;
            t.K = K;
            t.M = M;
            t.w.resize(static_cast<std::size_t>(K * M));
            random_ternary(r, t.w.data(), t.w.size());
            t.scale = synth_scale(K);
            s(pack_ternary(ty, t));
          });
  };
  const auto dense = [&](const std::string& name) {
    g.add_tensor(name, o.head, {static_cast<std::uint64_t>(d), static_cast<std::uint64_t>(V)},
          dense_producer(o.head, V, d,
                         [seed, name, d](std::int64_t r0, std::int64_t r1, float* dst) {
                           // One stream per row, so chunking and threading do not change the values.
                           for (std::int64_t r = r0; r < r1; ++r) {
                             splitmix64 rr = tensor_rng(seed ^ static_cast<std::uint64_t>(r) * 0x9E3779B97F4A7C15ull, name);
                             for (std::int64_t i = 0; i < d; ++i) dst[(r - r0) * d + i] = 0.02f * approx_normal(rr.next());
                           }
                         },
                         o.threads));
  };
  dense("token_embd.weight");
  if (llama) dense("output.weight");  // the llama models' untied head
  norm("output_norm.weight", d);
  for (std::int64_t l = 0; l < L; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    norm(p + "attn_norm.weight", d);
    ternary(p + "attn_q.weight", d, qd);
    ternary(p + "attn_k.weight", d, kv);
    ternary(p + "attn_v.weight", d, kv);
    if (!llama) norm(p + "attn_sub_norm.weight", qd);
    ternary(p + "attn_output.weight", qd, d);
    norm(p + "ffn_norm.weight", d);
    ternary(p + "ffn_gate.weight", d, ff);
    ternary(p + "ffn_up.weight", d, ff);
    if (!llama) norm(p + "ffn_sub_norm.weight", ff);
    ternary(p + "ffn_down.weight", ff, d);
  }
  return g;
}

}  // namespace bitnet::convert
