// tests/runner_fixtures.hpp - what the runner tests (test_model.cpp, test_precise.cpp) share:
// loading a synthetic model (model_builder.hpp) into the runner, random token ids, decoding
// token by token, and the named per-token model specs both test files run.
#pragma once

#include <cstdint>  // fixed-width integers
#include <random>   // token ids
#include <span>     // one-token views
#include <string>   // names
#include <vector>   // data

#include <bitnet/runner/session.hpp>
#include "model_builder.hpp"

namespace bitnet::test {

// keep_t2: for precise_session, which reads the t2 codes that default LUT kernels would replace.
inline run::model load_synth(const synth_model& sm, run::thread_pool& pool,
                             act_quant mode = act_quant::per_token, kernel_options ko = {}, bool keep_t2 = false) {
  run::load_options o;
  o.kernels = std::move(ko);
  o.activations = mode;
  o.keep_t2 = keep_t2;
  return run::model::load(gguf::file::from_memory(sm.bytes(), "synthetic.gguf"), o, pool);
}

inline std::vector<std::int32_t> random_tokens(std::size_t n, std::int64_t vocab, std::uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<std::int32_t> d(0, static_cast<std::int32_t>(vocab - 1));
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = d(g);
  return t;
}

// Decodes the tokens one by one with any session type; returns each position's logits as T.
template <class T = float, class S>
std::vector<std::vector<T>> decode_each(S& s, const std::vector<std::int32_t>& toks) {
  std::vector<std::vector<T>> out;
  for (const std::int32_t t : toks) {
    const auto l = s.eval(std::span<const std::int32_t>(&t, 1));
    out.emplace_back(l.begin(), l.end());
  }
  return out;
}

struct named_spec {
  std::string name;
  synth_spec spec;
};

// Per-token cases covering all four arches, all three ternary types, per-block TQ scales,
// .scale tensors and biases, padded K (384, 640), llama's head size from key_length and its
// untied output.weight.
inline std::vector<named_spec> per_token_model_specs() {
  std::vector<named_spec> c;
  synth_spec s;
  // bitnet-b1.58: GQA 8/2 heads of 32, I2_S, F16 head.
  s.arch = "bitnet-b1.58";
  c.push_back({"b158_gqa_i2s_f16head", s});
  // bitnet-25: MHA 4 heads of 64, TQ2_0 with per-block scales, F32 head.
  s = {};
  s.arch = "bitnet-25";
  s.n_head = s.n_head_kv = 4;
  s.wtype = tensor_type::tq2_0;
  s.per_block_scales = true;
  s.head_type = tensor_type::f32;
  s.seed = 2;
  c.push_back({"b25_mha_tq2_perblock_f32head", s});
  // bitnet (SiLU): MHA, TQ1_0, F16 head, per-tensor scales and biases (optional tensors).
  s = {};
  s.arch = "bitnet";
  s.n_head = s.n_head_kv = 4;
  s.wtype = tensor_type::tq1_0;
  s.tensor_scales = true;
  s.biases = true;
  s.seed = 3;
  c.push_back({"bitnet_mha_tq1_scales_biases", s});
  // bitnet (SiLU), GQA 6/2 heads of 64, I2_S with K = 384 and n_ff = 640 (padded rows), F32 head.
  s = {};
  s.arch = "bitnet";
  s.n_embd = 384;
  s.n_ff = 640;
  s.n_head = 6;
  s.n_head_kv = 2;
  s.head_type = tensor_type::f32;
  s.rope_base = 500000.0f;
  s.n_vocab = 333;
  s.seed = 4;
  c.push_back({"bitnet_gqa_i2s_padded", s});
  // llama (no sub-norms, normal RoPE, SiLU): GQA 4/2 with heads of 96 (q width 384 != n_embd
  // 256, attention.key_length), I2_S, an untied F16 output.weight.
  s = {};
  s.arch = "llama";
  s.n_head = 4;
  s.n_head_kv = 2;
  s.head_dim = 96;
  s.untied_head = true;
  s.rope_base = 1000042.0f;
  s.seed = 7;
  c.push_back({"llama_gqa_i2s_hd96_untied", s});
  // llama, TQ2_0 with per-block scales, MHA, tied head (no output.weight), F32 embeddings.
  s = {};
  s.arch = "llama";
  s.n_head = s.n_head_kv = 4;
  s.wtype = tensor_type::tq2_0;
  s.per_block_scales = true;
  s.head_type = tensor_type::f32;
  s.seed = 8;
  c.push_back({"llama_mha_tq2_perblock_tied", s});
  // llama, TQ1_0, GQA 8/2, untied F32 head, biases.
  s = {};
  s.arch = "llama";
  s.wtype = tensor_type::tq1_0;
  s.untied_head = true;
  s.head_type = tensor_type::f32;
  s.biases = true;
  s.rope_base = 500000.0f;
  s.seed = 9;
  c.push_back({"llama_gqa_tq1_untied_biases", s});
  return c;
}

}  // namespace bitnet::test
