// tests/model_builder.hpp - small synthetic BitNet / ternary-llama GGUF models with known weights.
//
// make_model(spec) draws random ternary weights, scales, norm gains, biases and an embedding
// table, keeps them in plain arrays (the truth a reference forward pass reads), and writes the
// same values into a GGUF file with gguf::writer: I2_S, TQ2_0 or TQ1_0 projections, or float
// projections (F32, F16, BF16) holding ternary x scale exactly; F32 or F16 token_embd; for arch
// `llama` no sub-norms, an optional head size other than n_embd / n_head (attention.key_length)
// and an optional untied output.weight. All scales are fp16-representable so every format
// stores them exactly. With `latent`, float projections hold random full-precision weights
// instead, and the truth is their ternarization by BitNet's absmean rule, computed here
// (s = mean |W| in double, row-major, rounded to float; w = clamp(rne(W / s), -1, 1)).
// Optionally adds a tiny SentencePiece vocabulary (byte fallback covers any text).
#pragma once

#include <algorithm>  // std::max
#include <cmath>      // std::sqrt, std::fabs, std::nearbyint
#include <cstdint>    // fixed-width integers
#include <cstdio>     // std::snprintf for byte-token names
#include <cstring>    // std::memcpy
#include <random>     // std::mt19937
#include <span>       // tensor bytes
#include <stdexcept>  // errors
#include <string>     // names
#include <vector>     // weights

#include <bitnet/bitnet.hpp>
#include <bitnet/gguf.hpp>

namespace bitnet::test {

struct synth_spec {
  std::string arch = "bitnet-b1.58";
  std::int64_t n_embd = 256, n_layer = 2, n_ff = 512, n_head = 8, n_head_kv = 2, n_vocab = 300, n_ctx_train = 64;
  std::int64_t head_dim = 0;      // 0: n_embd / n_head; otherwise written as attention.key_length (llama)
  bool untied_head = false;       // llama: an output.weight of its own (head_type)
  bool latent = false;            // random full-precision weights (see above): stored as they are in a
                                  // float wtype, as their ternarization in a ternary one
  tensor_type latent_type = tensor_type::f32;  // the float type the latent values are rounded to
                                               // (must be wtype when that is a float type)
  tensor_type wtype = tensor_type::i2_s;
  tensor_type head_type = tensor_type::f16;
  bool per_block_scales = false;  // TQ only: a different scale per (row, 256-block)
  bool biases = false;            // blk.N.<proj>.bias
  bool tensor_scales = false;     // blk.N.<proj>.scale (the `bitnet` arch's optional scales)
  float rope_base = 10000.0f, eps = 1e-5f;
  std::uint32_t seed = 1;
  bool vocab = false;  // tokenizer.ggml.* for a SentencePiece vocabulary of n_vocab tokens
};

struct synth_linear {
  std::int64_t K = 0, M = 0;
  std::vector<std::int8_t> w;    // [M][K] in {-1, 0, 1}
  std::vector<float> scale;      // 1 entry (per tensor) or [M][K/256] (per block)
  std::vector<float> bias;       // [M] or empty
  std::vector<float> latent;     // spec.latent: the stored full-precision weights [M][K]
  float tensor_scale = 1.0f;     // blk.N.<proj>.scale, when has_tensor_scale
  bool has_tensor_scale = false;
  // Real weight (m, k) = w * block scale.
  double weight(std::int64_t m, std::int64_t k) const {
    const float s = scale.size() == 1 ? scale[0] : scale[static_cast<std::size_t>(m * (K / 256) + k / 256)];
    return static_cast<double>(w[static_cast<std::size_t>(m * K + k)]) * static_cast<double>(s);
  }
};

struct synth_layer {
  std::vector<float> attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm;
  synth_linear q, k, v, o, gate, up, down;
};

struct synth_model {
  synth_spec spec;
  std::vector<float> embd;  // [n_vocab][n_embd], exactly the stored values
  std::vector<float> output;  // [n_vocab][n_embd] untied head (empty: the head is embd)
  std::vector<float> output_norm;
  std::vector<synth_layer> layers;
  gguf::writer writer;

  std::vector<std::uint8_t> bytes() const { return writer.to_bytes(); }
};

namespace detail {

inline float f16_exact(float v) { return fp16_to_f32(f32_to_fp16(v)); }

inline std::vector<float> uniform(std::mt19937& g, std::size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

inline bool is_float(tensor_type t) {
  return t == tensor_type::f32 || t == tensor_type::f16 || t == tensor_type::bf16;
}

// The absmean ternarization of latent weights (see the file comment).
inline void ternarize_absmean(synth_linear& L, const std::vector<float>& latent) {
  double sum = 0.0;
  for (const float x : latent) sum += std::fabs(static_cast<double>(x));
  const double mean = std::max(sum / static_cast<double>(latent.size()), 1e-5);
  for (std::size_t i = 0; i < latent.size(); ++i) {
    const double q = std::nearbyint(static_cast<double>(latent[i]) / mean);
    L.w[i] = static_cast<std::int8_t>(q > 1.0 ? 1 : q < -1.0 ? -1 : q);
  }
  L.scale = {static_cast<float>(mean)};
}

inline synth_linear make_linear(std::mt19937& g, const synth_spec& s, std::int64_t K, std::int64_t M) {
  synth_linear L;
  L.K = K;
  L.M = M;
  std::uniform_int_distribution<int> tri(0, 2);
  L.w.resize(static_cast<std::size_t>(K * M));
  for (auto& x : L.w) x = static_cast<std::int8_t>(tri(g) - 1);
  // Outputs of unit-RMS inputs then have an RMS near 1: sqrt(2K/3) * s ~ 1.
  const float base = 1.0f / std::sqrt(static_cast<float>(K) * 2.0f / 3.0f);
  if (s.per_block_scales) {
    L.scale = uniform(g, static_cast<std::size_t>(M * (K / 256)), 0.5f * base, 1.5f * base);
    for (auto& x : L.scale) x = f16_exact(x);
  } else {
    L.scale = {f16_exact(base * std::uniform_real_distribution<float>(0.8f, 1.2f)(g))};
  }
  if (s.latent && is_float(s.wtype) && s.latent_type != s.wtype)
    throw std::invalid_argument("model_builder: latent_type must be the float wtype");
  if (s.latent) {
    // Full-precision weights around the ternary grid, so that the absmean rule has real
    // rounding to do (values near +-s/2 and beyond +-1.5 s occur).
    const std::vector<float> noise = uniform(g, L.w.size(), -0.6f, 0.6f);
    L.latent.resize(L.w.size());
    for (std::size_t i = 0; i < L.w.size(); ++i) {
      const float v = (static_cast<float>(L.w[i]) + noise[i]) * L.scale[0];  // as stored:
      L.latent[i] = s.latent_type == tensor_type::f16 ? fp16_to_f32(f32_to_fp16(v))
                    : s.latent_type == tensor_type::bf16 ? bf16_to_f32(f32_to_bf16(v))
                                                         : v;
    }
    ternarize_absmean(L, L.latent);
  }
  if (s.biases) L.bias = uniform(g, static_cast<std::size_t>(M), -0.2f, 0.2f);
  if (s.tensor_scales) {
    L.tensor_scale = std::uniform_real_distribution<float>(0.5f, 2.0f)(g);
    L.has_tensor_scale = true;
  }
  return L;
}

inline void add_linear(gguf::writer& w, const synth_spec& s, const std::string& name, const synth_linear& L) {
  std::vector<std::uint8_t> b;
  std::span<const float> bs;
  if (L.scale.size() > 1) bs = L.scale;
  switch (s.wtype) {
    case tensor_type::i2_s: b = pack_i2s(L.w, L.K, L.M, L.scale[0]); break;
    case tensor_type::tq2_0: b = pack_tq2(L.w, L.K, L.M, L.scale[0], bs); break;
    case tensor_type::tq1_0: b = pack_tq1(L.w, L.K, L.M, L.scale[0], bs); break;
    case tensor_type::f32:
    case tensor_type::f16:
    case tensor_type::bf16: {
      if (L.scale.size() != 1) throw std::invalid_argument("model_builder: float projections have one scale");
      const std::size_t es = s.wtype == tensor_type::f32 ? 4 : 2;
      b.resize(L.w.size() * es);
      for (std::size_t i = 0; i < L.w.size(); ++i) {
        const float v = L.latent.empty() ? static_cast<float>(L.w[i]) * L.scale[0] : L.latent[i];
        if (s.wtype == tensor_type::f32) {
          std::memcpy(b.data() + 4 * i, &v, 4);
        } else {
          const std::uint16_t h = s.wtype == tensor_type::f16 ? f32_to_fp16(v) : f32_to_bf16(v);
          const float back = s.wtype == tensor_type::f16 ? fp16_to_f32(h) : bf16_to_f32(h);
          if (L.latent.empty() && back != v) throw std::invalid_argument("model_builder: a weight is not exact in this type");
          std::memcpy(b.data() + 2 * i, &h, 2);
        }
      }
      break;
    }
    default: throw std::invalid_argument("model_builder: not a projection type");
  }
  w.add_tensor(name + ".weight", s.wtype, {static_cast<std::uint64_t>(L.K), static_cast<std::uint64_t>(L.M)},
               std::move(b));
  if (!L.bias.empty())
    w.add_tensor(name + ".bias", tensor_type::f32, {static_cast<std::uint64_t>(L.M)},
                 std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(L.bias.data()), L.bias.size() * 4));
  if (L.has_tensor_scale)
    w.add_tensor(name + ".scale", tensor_type::f32, {1},
                 std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(&L.tensor_scale), 4));
}

inline void add_f32(gguf::writer& w, const std::string& name, const std::vector<float>& v) {
  w.add_tensor(name, tensor_type::f32, {static_cast<std::uint64_t>(v.size())},
               std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(v.data()), v.size() * 4));
}

// A SentencePiece vocabulary: <unk>, <s>, </s>, the 256 byte tokens, then word pieces.
inline void add_vocab(gguf::writer& w, std::int64_t n_vocab) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<std::int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.emplace_back(buf);
    types.push_back(6);
  }
  const std::string sp = "\xE2\x96\x81";
  for (int i = 0; static_cast<std::int64_t>(tokens.size()) < n_vocab; ++i) {
    std::string piece = i % 2 == 0 ? sp : "";
    piece += static_cast<char>('a' + (i / 2) % 26);
    if (i >= 52) piece += static_cast<char>('a' + (i / 52) % 26);
    tokens.push_back(piece);
    types.push_back(1);
  }
  tokens.resize(static_cast<std::size_t>(n_vocab));
  types.resize(static_cast<std::size_t>(n_vocab));
  std::vector<float> scores(tokens.size(), 0.0f);
  for (std::size_t i = 259; i < scores.size(); ++i) scores[i] = -static_cast<float>(i - 259);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_array("tokenizer.ggml.tokens", tokens);
  w.set_array("tokenizer.ggml.scores", scores);
  w.set_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
}

}  // namespace detail

inline synth_model make_model(const synth_spec& s) {
  std::mt19937 g(s.seed);
  synth_model m;
  m.spec = s;
  const bool llama = s.arch == "llama";
  const std::int64_t d = s.n_embd, hd = s.head_dim ? s.head_dim : d / s.n_head, qd = hd * s.n_head,
                     dkv = hd * s.n_head_kv, ff = s.n_ff;
  m.embd = detail::uniform(g, static_cast<std::size_t>(s.n_vocab * d), -1.0f, 1.0f);
  if (s.head_type == tensor_type::f16)
    for (auto& x : m.embd) x = detail::f16_exact(x);
  m.output_norm = detail::uniform(g, static_cast<std::size_t>(d), 0.5f, 1.5f);
  for (std::int64_t l = 0; l < s.n_layer; ++l) {
    synth_layer L;
    L.attn_norm = detail::uniform(g, static_cast<std::size_t>(d), 0.5f, 1.5f);
    if (!llama) L.attn_sub_norm = detail::uniform(g, static_cast<std::size_t>(qd), 0.5f, 1.5f);
    L.ffn_norm = detail::uniform(g, static_cast<std::size_t>(d), 0.5f, 1.5f);
    if (!llama) L.ffn_sub_norm = detail::uniform(g, static_cast<std::size_t>(ff), 0.5f, 1.5f);
    L.q = detail::make_linear(g, s, d, qd);
    L.k = detail::make_linear(g, s, d, dkv);
    L.v = detail::make_linear(g, s, d, dkv);
    L.o = detail::make_linear(g, s, qd, d);
    L.gate = detail::make_linear(g, s, d, ff);
    L.up = detail::make_linear(g, s, d, ff);
    L.down = detail::make_linear(g, s, ff, d);
    m.layers.push_back(std::move(L));
  }

  gguf::writer& w = m.writer;
  const std::string a = s.arch + ".";
  w.set_string("general.architecture", s.arch);
  w.set_string("general.name", "synthetic " + s.arch);
  w.set_u32(a + "context_length", static_cast<std::uint32_t>(s.n_ctx_train));
  w.set_u32(a + "embedding_length", static_cast<std::uint32_t>(d));
  w.set_u32(a + "block_count", static_cast<std::uint32_t>(s.n_layer));
  w.set_u32(a + "feed_forward_length", static_cast<std::uint32_t>(ff));
  w.set_u32(a + "attention.head_count", static_cast<std::uint32_t>(s.n_head));
  w.set_u32(a + "attention.head_count_kv", static_cast<std::uint32_t>(s.n_head_kv));
  w.set_u32(a + "rope.dimension_count", static_cast<std::uint32_t>(hd));
  if (s.head_dim) {
    w.set_u32(a + "attention.key_length", static_cast<std::uint32_t>(hd));
    w.set_u32(a + "attention.value_length", static_cast<std::uint32_t>(hd));
  }
  w.set_f32(a + "rope.freq_base", s.rope_base);
  w.set_f32(a + "attention.layer_norm_rms_epsilon", s.eps);
  if (s.vocab) detail::add_vocab(w, s.n_vocab);

  const auto add_dense = [&](const char* name, const std::vector<float>& v) {
    if (s.head_type == tensor_type::f16) {
      std::vector<std::uint8_t> b(v.size() * 2);
      for (std::size_t i = 0; i < v.size(); ++i) {
        const std::uint16_t h = f32_to_fp16(v[i]);
        std::memcpy(b.data() + 2 * i, &h, 2);
      }
      w.add_tensor(name, tensor_type::f16, {static_cast<std::uint64_t>(d), static_cast<std::uint64_t>(s.n_vocab)},
                   std::move(b));
    } else {
      w.add_tensor(name, tensor_type::f32, {static_cast<std::uint64_t>(d), static_cast<std::uint64_t>(s.n_vocab)},
                   std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(v.data()), v.size() * 4));
    }
  };
  add_dense("token_embd.weight", m.embd);
  if (s.untied_head) {
    m.output = detail::uniform(g, static_cast<std::size_t>(s.n_vocab * d), -0.5f, 0.5f);
    if (s.head_type == tensor_type::f16)
      for (auto& x : m.output) x = detail::f16_exact(x);
    add_dense("output.weight", m.output);
  }
  detail::add_f32(w, "output_norm.weight", m.output_norm);
  for (std::int64_t l = 0; l < s.n_layer; ++l) {
    const synth_layer& L = m.layers[static_cast<std::size_t>(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    detail::add_f32(w, p + "attn_norm.weight", L.attn_norm);
    detail::add_linear(w, s, p + "attn_q", L.q);
    detail::add_linear(w, s, p + "attn_k", L.k);
    detail::add_linear(w, s, p + "attn_v", L.v);
    if (!llama) detail::add_f32(w, p + "attn_sub_norm.weight", L.attn_sub_norm);
    detail::add_linear(w, s, p + "attn_output", L.o);
    detail::add_f32(w, p + "ffn_norm.weight", L.ffn_norm);
    detail::add_linear(w, s, p + "ffn_gate", L.gate);
    detail::add_linear(w, s, p + "ffn_up", L.up);
    if (!llama) detail::add_f32(w, p + "ffn_sub_norm.weight", L.ffn_sub_norm);
    detail::add_linear(w, s, p + "ffn_down", L.down);
  }
  return m;
}

}  // namespace bitnet::test
