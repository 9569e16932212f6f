// bitnet/runner/config.hpp - the architectures the runner runs and their hyperparameters.
//
// read_config(file) reads the {arch}.* keys (spec bitnet-models.md section 2) and validates
// them; every error is a gguf::error naming the file, the key (and its offset) and what was
// expected. Architectures:
//
//   bitnet-b1.58, bitnet-25  BitNet b1.58 2B4T (build_bitnet_158): sub-norms before the output
//                            and down projections, ReLU² gate, NeoX RoPE, tied head (token_embd;
//                            an output.weight is ignored, as bitnet.cpp does)
//   bitnet                   1bitLLM (build_bitnet): as above with a SiLU gate, optional
//                            per-tensor blk.N.<proj>.scale
//   llama                    Llama3-8B-1.58, Falcon3 / Falcon-E 1.58-bit (build_llama): no
//                            sub-norms, SiLU gate, llama ("normal") RoPE on adjacent pairs,
//                            head_dim from attention.key_length, untied output.weight when
//                            present (else token_embd)
//
// Refused, with the key named: RoPE scaling (rope.scaling.type other than none, a factor other
// than 1), mixture of experts (expert_count > 0), per-layer values that differ, key and value
// head sizes that differ, anything out of range.
#pragma once

#include <cmath>        // std::isfinite
#include <cstdint>      // fixed-width integers
#include <optional>     // key offsets
#include <string>       // names, messages
#include <string_view>  // keys

#include <bitnet/gguf.hpp>  // the model file

namespace bitnet::run {

enum class ffn_activation { silu, relu_sqr };
enum class rope_style {
  neox,    // pairs (i, i + n_rot/2): the bitnet architectures
  normal,  // adjacent pairs (2i, 2i + 1): llama (ggml's LLAMA_ROPE_TYPE_NORM)
};
// How a sequence's final hidden states pool into one embedding ({arch}.pooling_type: 0..3).
enum class pooling { none, mean, cls, last };

inline const char* activation_name(ffn_activation a) noexcept { return a == ffn_activation::silu ? "silu" : "relu2"; }
inline const char* rope_style_name(rope_style r) noexcept { return r == rope_style::neox ? "neox" : "normal"; }
inline const char* pooling_name(pooling p) noexcept {
  switch (p) {
    case pooling::none: return "none";
    case pooling::mean: return "mean";
    case pooling::cls: return "cls";
    case pooling::last: return "last";
  }
  return "?";
}

// The architecture strings read_config accepts.
inline constexpr std::string_view kArchitectures = "bitnet, bitnet-b1.58, bitnet-25, llama";

struct config {
  std::string arch;  // general.architecture
  ffn_activation act = ffn_activation::relu_sqr;
  rope_style rope = rope_style::neox;
  bool sub_norms = true;          // attn_sub_norm / ffn_sub_norm (the bitnet architectures)
  bool untied_head = false;       // llama: output.weight is the head when present
  std::int64_t n_vocab = 0;       // rows of token_embd (set by model loading; the vocab_size key if read alone)
  std::int64_t n_ctx_train = 0;   // {arch}.context_length
  std::int64_t n_embd = 0, n_layer = 0, n_ff = 0, n_head = 0, n_head_kv = 0;
  std::int64_t head_dim = 0, n_rot = 0;
  float rope_base = 10000.0f, norm_eps = 0.0f;
  // Epsilon of the final RMSNorm: {arch}.output_norm.layer_norm_rms_epsilon if present
  // (bitnet-convert writes it when the block norms and the final norm differ), else norm_eps.
  float output_norm_eps = 0.0f;
  pooling pool = pooling::none;   // {arch}.pooling_type, for embedding models

  std::int64_t q_dim() const noexcept { return head_dim * n_head; }       // attention width (q, output projection input)
  std::int64_t n_embd_kv() const noexcept { return head_dim * n_head_kv; }
  std::int64_t n_gqa() const noexcept { return n_head / n_head_kv; }
};

namespace detail {

[[noreturn]] inline void file_error(const gguf::file& f, std::optional<std::uint64_t> offset, const std::string& m) {
  throw gguf::error(f.path(), offset, m);
}

inline std::optional<std::uint64_t> key_offset(const gguf::file& f, std::string_view key) {
  if (const auto* kv = f.find(key)) return kv->offset;
  return std::nullopt;
}

// A u32 hyperparameter, or a per-layer array of them whose entries must all be equal.
inline std::int64_t layer_uint(const gguf::file& f, const std::string& key, std::int64_t n_layer, bool required,
                               std::int64_t dflt) {
  if (!f.has(key)) {
    if (required) file_error(f, std::nullopt, "missing required key '" + key + "' (an unsigned integer)");
    return dflt;
  }
  std::uint64_t v = 0;
  if (f.type_of(key) == gguf::value_type::array) {
    const auto a = f.get_uint_array(key);
    if (a.empty()) file_error(f, key_offset(f, key), "key '" + key + "': empty per-layer array");
    if (n_layer > 0 && a.size() != static_cast<std::size_t>(n_layer))
      file_error(f, key_offset(f, key), "key '" + key + "': per-layer array has " + std::to_string(a.size()) +
                                            " entries, expected block_count = " + std::to_string(n_layer));
    for (const auto x : a)
      if (x != a[0])
        file_error(f, key_offset(f, key), "key '" + key + "': per-layer values differ (" + std::to_string(a[0]) +
                                              " and " + std::to_string(x) +
                                              "); this runner needs one value for all layers");
    v = a[0];
  } else {
    v = f.get_uint(key);
  }
  if (v == 0 || v > (std::uint64_t{1} << 31))
    file_error(f, key_offset(f, key), "key '" + key + "': value " + std::to_string(v) +
                                          " is out of range, expected 1 .. 2^31");
  return static_cast<std::int64_t>(v);
}

inline float finite_float(const gguf::file& f, const std::string& key, bool positive) {
  const float v = static_cast<float>(f.get_float(key));
  if (!std::isfinite(v) || (positive ? v <= 0.0f : v < 0.0f))
    file_error(f, key_offset(f, key),
               "key '" + key + "' must be " + (positive ? "a positive number" : "a finite number >= 0"));
  return v;
}

}  // namespace detail

// Reads and validates the hyperparameters. Throws gguf::error naming the file and key.
inline config read_config(const gguf::file& f) {
  using detail::file_error;
  using detail::key_offset;
  config c;
  if (!f.has("general.architecture"))
    file_error(f, std::nullopt, "missing key 'general.architecture' (expected one of " + std::string(kArchitectures) + ")");
  c.arch = std::string(f.get_string("general.architecture"));
  const bool llama = c.arch == "llama";
  if (!gguf::is_bitnet_arch(c.arch) && !llama)
    file_error(f, key_offset(f, "general.architecture"),
               "general.architecture is '" + bitnet::detail::gguf_printable(c.arch) + "', expected one of " +
                   std::string(kArchitectures) + " (this runner runs BitNet b1.58 and ternary llama models)");
  c.act = c.arch == "bitnet-b1.58" || c.arch == "bitnet-25" ? ffn_activation::relu_sqr : ffn_activation::silu;
  c.rope = llama ? rope_style::normal : rope_style::neox;
  c.sub_norms = !llama;
  c.untied_head = llama;
  const std::string a = c.arch + ".";

  c.n_layer = detail::layer_uint(f, a + "block_count", 0, true, 0);
  c.n_ctx_train = detail::layer_uint(f, a + "context_length", 0, true, 0);
  c.n_embd = detail::layer_uint(f, a + "embedding_length", 0, true, 0);
  c.n_ff = detail::layer_uint(f, a + "feed_forward_length", c.n_layer, true, 0);
  c.n_head = detail::layer_uint(f, a + "attention.head_count", c.n_layer, true, 0);
  c.n_head_kv = detail::layer_uint(f, a + "attention.head_count_kv", c.n_layer, false, c.n_head);
  if (c.n_head % c.n_head_kv != 0)
    file_error(f, key_offset(f, a + "attention.head_count_kv"),
               "attention.head_count " + std::to_string(c.n_head) + " is not a multiple of attention.head_count_kv " +
                   std::to_string(c.n_head_kv));
  const std::string kl = a + "attention.key_length", vl = a + "attention.value_length";
  if (llama && f.has(kl)) {
    // Llama-family files may give the head size (Falcon3: 256) instead of n_embd / n_head.
    c.head_dim = detail::layer_uint(f, kl, 0, false, 0);
    if (f.has(vl) && detail::layer_uint(f, vl, 0, false, 0) != c.head_dim)
      file_error(f, key_offset(f, vl), "key '" + vl + "' is " + std::to_string(f.get_uint(vl)) + ", expected " +
                                           kl + " = " + std::to_string(c.head_dim) +
                                           " (this runner needs one head size for keys and values)");
  } else {
    if (c.n_embd % c.n_head != 0)
      file_error(f, key_offset(f, a + "attention.head_count"),
                 "embedding_length " + std::to_string(c.n_embd) + " is not a multiple of attention.head_count " +
                     std::to_string(c.n_head) + (llama ? " and the file gives no " + kl : std::string()));
    c.head_dim = c.n_embd / c.n_head;
    for (const std::string& key : {kl, vl})
      if (f.has(key) && static_cast<std::int64_t>(f.get_uint(key)) != c.head_dim)
        file_error(f, key_offset(f, key), "key '" + key + "' is " + std::to_string(f.get_uint(key)) +
                                              ", expected embedding_length / head_count = " + std::to_string(c.head_dim));
  }
  if (llama && f.has(vl) && !f.has(kl))
    file_error(f, key_offset(f, vl), "key '" + vl + "' is given without " + kl);
  c.n_rot = detail::layer_uint(f, a + "rope.dimension_count", 0, false, c.head_dim);
  if (c.n_rot % 2 != 0 || c.n_rot > c.head_dim)
    file_error(f, key_offset(f, a + "rope.dimension_count"),
               "rope.dimension_count " + std::to_string(c.n_rot) + " must be even and at most the head size " +
                   std::to_string(c.head_dim));
  if ((c.arch == "bitnet-b1.58" || c.arch == "bitnet-25") && c.n_rot != c.head_dim)
    file_error(f, key_offset(f, a + "rope.dimension_count"),
               "rope.dimension_count " + std::to_string(c.n_rot) + " must equal the head size " +
                   std::to_string(c.head_dim) + " for " + c.arch);
  if (const std::string k = a + "rope.freq_base"; f.has(k)) c.rope_base = detail::finite_float(f, k, true);
  const std::string eps_key = a + "attention.layer_norm_rms_epsilon";
  if (!f.has(eps_key)) file_error(f, std::nullopt, "missing required key '" + eps_key + "' (a float, e.g. 1e-5)");
  c.norm_eps = detail::finite_float(f, eps_key, false);
  c.output_norm_eps = c.norm_eps;
  if (const std::string k = a + "output_norm.layer_norm_rms_epsilon"; f.has(k))
    c.output_norm_eps = detail::finite_float(f, k, false);
  if (const std::string k = a + "rope.scaling.type"; f.has(k) && f.get_string(k) != "none")
    file_error(f, key_offset(f, k), "key '" + k + "' is '" + bitnet::detail::gguf_printable(f.get_string(k)) +
                                        "': RoPE scaling is not supported (expected none)");
  if (const std::string k = a + "rope.scaling.factor"; f.has(k) && f.get_float(k) != 0.0 && f.get_float(k) != 1.0)
    file_error(f, key_offset(f, k), "key '" + k + "': RoPE scaling is not supported (expected 1)");
  for (const char* moe : {"expert_count", "expert_used_count"})
    if (const std::string k = a + moe; f.has(k) && f.get_uint(k) > 0)
      file_error(f, key_offset(f, k), "key '" + k + "' is " + std::to_string(f.get_uint(k)) +
                                          ": mixture-of-experts models are not supported");
  if (const std::string k = a + "pooling_type"; f.has(k)) {
    const auto p = f.get_uint(k);
    if (p > 3) file_error(f, key_offset(f, k), "key '" + k + "' is " + std::to_string(p) + ", expected 0 .. 3 (none, mean, cls, last)");
    c.pool = static_cast<pooling>(p);
  }
  if (const std::string k = a + "vocab_size"; f.has(k)) c.n_vocab = static_cast<std::int64_t>(f.get_uint(k));
  return c;
}

// The seven ternary projections of a block, as GGUF names them (blk.N.<name>.weight).
inline constexpr const char* kProjectionNames[7] = {"attn_q",   "attn_k", "attn_v",   "attn_output",
                                                    "ffn_gate", "ffn_up", "ffn_down"};

}  // namespace bitnet::run
