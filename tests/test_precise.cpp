// tests/test_precise.cpp - bitnet-generate's --precise forward pass (examples/bitnet-generate/
// precise.hpp) on the synthetic models of tests/model_builder.hpp: it must be the same model as
// the fast path (model.hpp's session), only computed in double.
//
// Tolerance: the fast path's own, from tests/test_model.cpp (where the fast path meets a double
// reference): per position NMSE <= 1e-3 and max |error| <= 0.1 x RMS(logits); the bound is there
// for int8 rounding flips (float32 moves some x*s across a rounding boundary, and the whole int8
// step propagates). Where no flip happens the two agree to float32 rounding, so at least half of
// the positions must also have NMSE <= 1e-10 (a structural difference - a missing scale, a wrong
// RoPE pair, a wrong epsilon - would show there). With an F16 head that floor is 1e-6 instead:
// the fast path rounds the head's input to f16 (ggml's F16 matmul, relative 2^-11; measured
// NMSE 5e-8 .. 7e-8), --precise keeps it in double. The real model (tests/test_real_model.cpp)
// checks --precise against the float64 reference to 1e-8.
#include <gtest/gtest.h>

#include <algorithm>  // std::max
#include <cmath>      // std::sqrt, std::fabs
#include <cstdint>    // fixed-width integers
#include <cstdio>     // std::printf
#include <random>     // token ids
#include <span>       // token views
#include <string>     // names
#include <vector>     // data

#include "bitnet-generate/model.hpp"
#include "bitnet-generate/precise.hpp"
#include "model_builder.hpp"

namespace {

using bitnet::act_quant;
using bitnet::tensor_type;
using bitnet::run::model;
using bitnet::run::precise_session;
using bitnet::run::session;
using bitnet::run::thread_pool;
using bitnet::test::synth_model;
using bitnet::test::synth_spec;

model load(const synth_model& sm, thread_pool& pool, act_quant mode = act_quant::per_token) {
  bitnet::run::load_options o;
  o.activations = mode;
  return model::load(bitnet::gguf::file::from_memory(sm.bytes(), "synthetic.gguf"), o, pool);
}

std::vector<std::int32_t> random_tokens(std::size_t n, std::int64_t vocab, std::uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<std::int32_t> d(0, static_cast<std::int32_t>(vocab - 1));
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = d(g);
  return t;
}

template <class S> std::vector<std::vector<double>> decode_each(S& s, const std::vector<std::int32_t>& toks) {
  std::vector<std::vector<double>> out;
  for (const std::int32_t t : toks) {
    const auto l = s.eval(std::span<const std::int32_t>(&t, 1));
    out.emplace_back(l.begin(), l.end());
  }
  return out;
}

std::vector<std::vector<double>> decode_each_double(precise_session& s, const std::vector<std::int32_t>& toks) {
  std::vector<std::vector<double>> out;
  for (const std::int32_t t : toks) {
    s.eval(std::span<const std::int32_t>(&t, 1));
    const auto l = s.logits_double();
    out.emplace_back(l.begin(), l.end());
  }
  return out;
}

struct case_t {
  std::string name;
  synth_spec spec;
};

// test_model.cpp's per-token cases: all three arches, all three ternary types, per-block TQ
// scales (precise.hpp's per-block loop), .scale tensors and biases, padded K (384, 640).
std::vector<case_t> cases() {
  std::vector<case_t> c;
  synth_spec s;
  s.arch = "bitnet-b1.58";
  c.push_back({"b158_gqa_i2s_f16head", s});
  s = {};
  s.arch = "bitnet-25";
  s.n_head = s.n_head_kv = 4;
  s.wtype = tensor_type::tq2_0;
  s.per_block_scales = true;
  s.head_type = tensor_type::f32;
  s.seed = 2;
  c.push_back({"b25_mha_tq2_perblock_f32head", s});
  s = {};
  s.arch = "bitnet";
  s.n_head = s.n_head_kv = 4;
  s.wtype = tensor_type::tq1_0;
  s.tensor_scales = true;
  s.biases = true;
  s.seed = 3;
  c.push_back({"bitnet_mha_tq1_scales_biases", s});
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
  return c;
}

class PreciseCase : public ::testing::TestWithParam<case_t> {};

TEST_P(PreciseCase, AgreesWithFastPath) {
  const case_t& tc = GetParam();
  const synth_model sm = bitnet::test::make_model(tc.spec);
  thread_pool pool(2);
  const model m = load(sm, pool);
  const auto toks = random_tokens(9, tc.spec.n_vocab, 11);
  session fast(m, pool, 16);
  precise_session prec(m, pool, 16);
  const auto f = decode_each(fast, toks);
  const auto p = decode_each_double(prec, toks);
  double worst = 0.0;
  int tight = 0;
  for (std::size_t t = 0; t < toks.size(); ++t) {
    double se = 0.0, sr = 0.0, err = 0.0;
    for (std::size_t i = 0; i < p[t].size(); ++i) {
      const double e = f[t][i] - p[t][i];
      se += e * e;
      sr += p[t][i] * p[t][i];
      err = std::max(err, std::fabs(e));
    }
    const double nmse = se / sr, scale = std::sqrt(sr / static_cast<double>(p[t].size()));
    worst = std::max(worst, nmse);
    tight += nmse <= (tc.spec.head_type == tensor_type::f16 ? 1e-6 : 1e-10);
    EXPECT_LE(nmse, 1e-3) << tc.name << ": position " << t;
    EXPECT_LE(err, 0.1 * scale) << tc.name << ": position " << t;
  }
  EXPECT_GE(tight, static_cast<int>(toks.size()) / 2) << tc.name;
  std::printf("[ %s ] --precise vs fast path: largest NMSE %.3g; %d of %zu positions at float precision (f16 precision with an F16 head)\n",
              tc.name.c_str(), worst, tight, toks.size());
}

TEST_P(PreciseCase, ThreadCountAndBatchDoNotChangeResults) {
  const case_t& tc = GetParam();
  const synth_model sm = bitnet::test::make_model(tc.spec);
  thread_pool p1(1), p3(3);
  const model m1 = load(sm, p1), m3 = load(sm, p3);
  const auto toks = random_tokens(6, tc.spec.n_vocab, 7);
  precise_session a(m1, p1, 8), b(m3, p3, 8);
  const auto la = decode_each_double(a, toks);
  b.eval(std::span<const std::int32_t>(toks));  // all at once: the last position's logits
  const auto lb = b.logits_double();
  ASSERT_EQ(la.back().size(), lb.size());
  for (std::size_t i = 0; i < lb.size(); ++i) ASSERT_EQ(la.back()[i], lb[i]) << tc.name << ": logit " << i;
  EXPECT_EQ(b.pos(), 6);
}

INSTANTIATE_TEST_SUITE_P(Synthetic, PreciseCase, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Precise, RefusesPerBlockActivationsAndFullContext) {
  const synth_model sm = bitnet::test::make_model({});
  thread_pool pool(2);
  const model mb = load(sm, pool, act_quant::per_block);
  EXPECT_THROW(precise_session(mb, pool, 8), std::invalid_argument);
  const model m = load(sm, pool);
  precise_session s(m, pool, 2);
  const std::vector<std::int32_t> three = {1, 2, 3};
  EXPECT_THROW(s.eval(std::span<const std::int32_t>(three)), bitnet::run::context_full);
  EXPECT_EQ(s.pos(), 0);
  const std::int32_t bad = static_cast<std::int32_t>(m.cfg().n_vocab);
  EXPECT_THROW(s.eval(std::span<const std::int32_t>(&bad, 1)), std::out_of_range);
}

}  // namespace
