// tests/test_precise.cpp - bitnet-generate's --precise forward pass (bitnet/runner/
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
#include <span>       // token views
#include <string>     // names
#include <vector>     // data

#include <bitnet/runner/precise.hpp>
#include "runner_fixtures.hpp"

namespace {

using bitnet::act_quant;
using bitnet::tensor_type;
using bitnet::run::model;
using bitnet::run::precise_session;
using bitnet::run::session;
using bitnet::run::thread_pool;
using bitnet::test::synth_model;
using bitnet::test::synth_spec;

using bitnet::test::load_synth;
using bitnet::test::random_tokens;

std::vector<std::vector<double>> decode_each_double(precise_session& s, const std::vector<std::int32_t>& toks) {
  std::vector<std::vector<double>> out;
  for (const std::int32_t t : toks) {
    s.eval(std::span<const std::int32_t>(&t, 1));
    const auto l = s.logits_double();
    out.emplace_back(l.begin(), l.end());
  }
  return out;
}

using case_t = bitnet::test::named_spec;

// test_model.cpp's per-token cases (runner_fixtures.hpp): precise.hpp's per-block loop,
// .scale tensors and biases, padded K.
std::vector<case_t> cases() { return bitnet::test::per_token_model_specs(); }

class PreciseCase : public ::testing::TestWithParam<case_t> {};

TEST_P(PreciseCase, AgreesWithFastPath) {
  const case_t& tc = GetParam();
  const synth_model sm = bitnet::test::make_model(tc.spec);
  thread_pool pool(2);
  const model m = load_synth(sm, pool, act_quant::per_token, {}, true);
  const auto toks = random_tokens(9, tc.spec.n_vocab, 11);
  session fast(m, pool, 16);
  precise_session prec(m, pool, 16);
  const auto f = bitnet::test::decode_each<double>(fast, toks);
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
  const model m1 = load_synth(sm, p1, act_quant::per_token, {}, true),
              m3 = load_synth(sm, p3, act_quant::per_token, {}, true);
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
  const model mb = load_synth(sm, pool, act_quant::per_block);
  EXPECT_THROW(precise_session(mb, pool, 8), std::invalid_argument);
  const model m = load_synth(sm, pool, act_quant::per_token, {}, true);
  precise_session s(m, pool, 2);
  // Without keep_t2, LUT kernels replace the t2 codes it reads: refused, not read out of bounds.
  bitnet::run::load_options o;
  for (const auto& e : bitnet::lut_gemv_variants())
    if (e.name == "gemv_lutd_q8/scalar/g3/r16") o.luts.emplace(bitnet::lut_kernel_pair{e, {}});
  for (const auto& e : bitnet::lut_gemm_variants())
    if (e.name == "gemm_lutd_q8/scalar/g3/r16/t2") o.luts->gemm = e;
  const model ml = model::load(bitnet::gguf::file::from_memory(sm.bytes(), "synthetic.gguf"), o, pool);
  ASSERT_GT(ml.info().lut_copies, 0u);
  EXPECT_THROW(precise_session(ml, pool, 8), std::invalid_argument);
  const std::vector<std::int32_t> three = {1, 2, 3};
  EXPECT_THROW(s.eval(std::span<const std::int32_t>(three)), bitnet::run::context_full);
  EXPECT_EQ(s.pos(), 0);
  const std::int32_t bad = static_cast<std::int32_t>(m.cfg().n_vocab);
  EXPECT_THROW(s.eval(std::span<const std::int32_t>(&bad, 1)), std::out_of_range);
}

}  // namespace
