// tests/test_real_model.cpp - the trained bitllama2.c 3M ternary model, converted by
// bitnet-convert's logic (tools/convert.hpp) for each ternary type and run by the runner's
// model (examples/runner: bitnet/runner/session.hpp), against the staged reference outputs
// (shared/data/bitllama2c/reference, PROVENANCE.md). The command-line path (bitnet-convert,
// then bitnet-generate --json) is checked by tests/real_model.cmake.
//
// A float64 re-implementation of the reference forward pass (PROVENANCE.md "Forward pass",
// written here from that text, on the checkpoint as decoded by read_llama2c) first proves that
// it reproduces the staged data: logits to 1e-5, all 160 greedy ids. It then supplies what the
// staged files lack: the top-1/top-2 logit margin of every greedy step.
//
// Logit tolerance. The runner computes in float32 and quantizes activations to int8 (rounding
// half to even of x*127/amax); float32 rounding moves some x*s across a rounding boundary, a
// whole int8 step changes, and that propagates through later layers and positions. The size of
// this effect is measured below by running the same float64 algorithm in float32: on the
// staged 32 positions it deviates by up to ~0.25 (mean ~0.04) from the float64 logits (max
// |logit| 22.8). The converted file itself holds the reference's model (docs/convert.md: block
// norm epsilon 1e-30, which vanishes against every mean square here as the reference's missing
// one; final norm epsilon 1e-5; TQ scales exact in .scale tensors), which the --precise tests
// below confirm to 1e-8. Bounds: max |diff| <= 0.5 (2.2 % of max |logit|, twice
// the float32 noise), mean |diff| <= 0.1, and the same argmax at all 32 positions (the staged
// smallest top-1/top-2 margin there is 0.41).
//
// Greedy ids. A float32 implementation cannot be expected to reproduce a float64 argmax where
// the two best logits are closer than its noise. The float64 reference has four such steps in
// the 160 (margin < 0.1): 56 (0.063), 66 (0.032), 68 (0.063) and 108 (0.0070). The test asserts
// this list (it is also the NEAR_TIES list of tests/real_model.cmake), requires the runner's
// ids to equal the reference up to the first difference, and accepts a first difference only at
// a near-tie step where the runner's token is the reference's runner-up within 0.1. It prints
// the outcome either way.
#include <gtest/gtest.h>

#include <algorithm>   // std::max_element
#include <cmath>       // std::sqrt, std::exp, std::pow, std::cos, std::sin, std::nearbyint
#include <cstdint>     // fixed-width integers
#include <cstdio>      // std::printf
#include <filesystem>  // data paths
#include <fstream>     // the reference logits
#include <limits>      // infinity
#include <span>        // token views
#include <string>      // names
#include <vector>      // data

#include "convert.hpp"
#include <bitnet/runner/session.hpp>
#include <bitnet/runner/precise.hpp>

namespace {

namespace cv = bitnet::convert;
using bitnet::tensor_type;

const std::filesystem::path kData = std::filesystem::path(BITNET_SHARED_DIR) / "data" / "bitllama2c";
const std::filesystem::path kCkpt = kData / "bitllama-3M-ternary.bin";
const std::filesystem::path kTok = kData / "tok512.model";
const std::filesystem::path kLogits = kData / "reference" / "bitllama-3M-logits.f32";

#define REQUIRE_DATA()                                                                              \
  do {                                                                                              \
    if (!std::filesystem::exists(kCkpt) || !std::filesystem::exists(kTok) || !std::filesystem::exists(kLogits)) \
      GTEST_SKIP() << "SKIP: staged bitllama2c data not found under " << kData << " (BITNET_SHARED_DIR)";   \
  } while (0)

// reference/bitllama-3M-greedy.json, "greedy_tokens_from_bos" (the first 32 are also its
// "logits_input_tokens").
const std::vector<std::int32_t> kGreedy = {
    1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267,
    337, 410, 408, 419, 292, 411, 269, 344, 444, 427, 421, 414, 276, 265, 263, 304, 341, 261, 420, 277,
    264, 311, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 286, 384, 393,
    269, 391, 266, 267, 337, 335, 312, 426, 13,  445, 323, 265, 416, 432, 358, 394, 261, 370, 268, 388,
    426, 338, 286, 262, 429, 295, 266, 269, 279, 292, 416, 439, 413, 409, 416, 327, 263, 415, 294, 267,
    400, 426, 338, 261, 419, 355, 311, 357, 343, 432, 313, 448, 415, 294, 439, 419, 263, 420, 289, 428,
    432, 376, 268, 414, 422, 450, 436, 13,  440, 285, 357, 343, 336, 432, 313, 442, 413, 439, 419, 334,
    433, 283, 432, 317, 426, 410, 448, 411, 280, 303, 272, 417, 264, 261, 273, 422, 267, 272, 417, 264};

constexpr int kLogitPositions = 32;
constexpr double kMaxAbsTol = 0.5, kMeanAbsTol = 0.1, kNearTie = 0.1;
const std::vector<int> kNearTieSteps = {56, 66, 68, 108};  // step s predicts kGreedy[s + 1]

const cv::llama2c_checkpoint& checkpoint() {
  static const cv::llama2c_checkpoint ck = cv::read_llama2c_file(kCkpt.string());
  return ck;
}

std::vector<float> staged_logits() {
  std::vector<float> v(static_cast<std::size_t>(kLogitPositions) * 512);
  std::ifstream in(kLogits, std::ios::binary);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  EXPECT_TRUE(in.good()) << kLogits;
  return v;
}

// ---------------------------------------------------------------- the reference forward pass
//
// BitLinear(x) = scale * W q(n(x)), n(x) = x / (rms(x) * in), q = per-token int8 fake
// quantization (127/amax, round half to even, clamp to [-128, 127], divided back). Llama-2
// block with GQA and RoPE on interleaved pairs, SiLU-gated FFN, final RMSNorm (eps 1e-5,
// weight final_norm), tied head. T = double or float (the same algorithm in float32).
template <class T>
class reference_forward {
 public:
  explicit reference_forward(const cv::llama2c_checkpoint& ck) : ck_(ck), c_(ck.config) {
    kc_.resize(static_cast<std::size_t>(c_.n_layers));
    vc_.resize(static_cast<std::size_t>(c_.n_layers));
  }

  std::vector<T> step(std::int32_t token, std::int64_t pos) {
    const std::int64_t d = c_.dim, hd = c_.head_dim(), kvd = c_.kv_dim();
    std::vector<T> x(ck_.tok_embeddings.begin() + token * d, ck_.tok_embeddings.begin() + (token + 1) * d);
    for (std::size_t l = 0; l < kc_.size(); ++l) {
      auto q = linear(0, l, x), k = linear(1, l, x), v = linear(2, l, x);
      for (std::int64_t i = 0; i < d; i += 2) {  // llama2.c: pair (i, i+1), frequency index (i % hd) / 2
        const T th = static_cast<T>(pos) / std::pow(T(10000), static_cast<T>(i % hd) / static_cast<T>(hd));
        const T co = std::cos(th), si = std::sin(th);
        const auto rot = [&](std::vector<T>& u) {
          const T a = u[i], b = u[i + 1];
          u[i] = a * co - b * si;
          u[i + 1] = a * si + b * co;
        };
        rot(q);
        if (i < kvd) rot(k);
      }
      kc_[l].insert(kc_[l].end(), k.begin(), k.end());
      vc_[l].insert(vc_[l].end(), v.begin(), v.end());
      std::vector<T> o(static_cast<std::size_t>(d), T(0));
      const std::int64_t group = c_.n_heads / c_.n_kv_heads;
      for (std::int64_t h = 0; h < c_.n_heads; ++h) {
        const std::int64_t kh = h / group;
        std::vector<T> s(static_cast<std::size_t>(pos + 1));
        T mx = -std::numeric_limits<T>::infinity();
        for (std::int64_t t = 0; t <= pos; ++t) {
          T a = 0;
          for (std::int64_t i = 0; i < hd; ++i) a += q[h * hd + i] * kc_[l][t * kvd + kh * hd + i];
          s[t] = a / std::sqrt(static_cast<T>(hd));
          mx = std::max(mx, s[t]);
        }
        T sum = 0;
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (std::int64_t t = 0; t <= pos; ++t)
          for (std::int64_t i = 0; i < hd; ++i) o[h * hd + i] += s[t] / sum * vc_[l][t * kvd + kh * hd + i];
      }
      const auto att = linear(3, l, o);
      for (std::int64_t i = 0; i < d; ++i) x[i] += att[i];
      auto g = linear(4, l, x);
      const auto u = linear(6, l, x);
      for (std::size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
      const auto down = linear(5, l, g);
      for (std::int64_t i = 0; i < d; ++i) x[i] += down[i];
    }
    T ss = 0;
    for (const T e : x) ss += e * e;
    const T inv = T(1) / std::sqrt(ss / static_cast<T>(d) + T(1e-5));
    std::vector<T> logits(static_cast<std::size_t>(c_.vocab_size));
    for (std::int64_t t = 0; t < c_.vocab_size; ++t) {
      T a = 0;
      for (std::int64_t i = 0; i < d; ++i) a += x[i] * inv * ck_.final_norm[i] * ck_.tok_embeddings[t * d + i];
      logits[t] = a;
    }
    return logits;
  }

 private:
  std::vector<T> linear(std::size_t kind, std::size_t layer, const std::vector<T>& x) const {
    const auto& m = ck_.mats[kind][layer];
    T ss = 0;
    for (const T e : x) ss += e * e;
    const T denom = std::sqrt(ss / static_cast<T>(m.cols)) * static_cast<T>(m.cols);
    std::vector<T> q(x.size());
    T amax = 0;
    for (std::size_t i = 0; i < x.size(); ++i) amax = std::max(amax, std::fabs(q[i] = x[i] / denom));
    const T s = T(127) / amax;
    for (auto& e : q) e = std::clamp(std::nearbyint(e * s), T(-128), T(127)) / s;
    std::vector<T> y(static_cast<std::size_t>(m.rows));
    for (std::int64_t r = 0; r < m.rows; ++r) {
      T a = 0;
      for (std::int64_t i = 0; i < m.cols; ++i) a += static_cast<T>(m.w[r * m.cols + i]) * q[i];
      y[r] = a * static_cast<T>(m.scale);
    }
    return y;
  }

  const cv::llama2c_checkpoint& ck_;
  cv::llama2c_config c_;
  std::vector<std::vector<T>> kc_, vc_;
};

struct greedy_step {
  std::int32_t best, second;
  double margin;
  std::vector<double> logits;
};

// Float64 reference along the staged greedy sequence (teacher-forced: step s sees kGreedy[0..s]).
const std::vector<greedy_step>& reference_steps() {
  static const std::vector<greedy_step> steps = [] {
    reference_forward<double> f(checkpoint());
    std::vector<greedy_step> out;
    for (std::size_t s = 0; s < kGreedy.size(); ++s) {
      greedy_step g;
      g.logits = f.step(kGreedy[s], static_cast<std::int64_t>(s));
      g.best = static_cast<std::int32_t>(std::max_element(g.logits.begin(), g.logits.end()) - g.logits.begin());
      g.second = g.best == 0 ? 1 : 0;
      for (std::int32_t v = 0; v < static_cast<std::int32_t>(g.logits.size()); ++v)
        if (v != g.best && g.logits[v] > g.logits[g.second]) g.second = v;
      g.margin = g.logits[g.best] - g.logits[g.second];
      out.push_back(std::move(g));
    }
    return out;
  }();
  return steps;
}

TEST(RealModelReference, Float64ForwardReproducesStagedData) {
  REQUIRE_DATA();
  const auto& steps = reference_steps();
  const auto staged = staged_logits();
  double worst = 0.0;
  for (int p = 0; p < kLogitPositions; ++p)
    for (int v = 0; v < 512; ++v)
      worst = std::max(worst, std::fabs(steps[p].logits[v] - staged[p * 512 + v]));
  EXPECT_LE(worst, 1e-5) << "float64 forward vs bitllama-3M-logits.f32";
  std::vector<int> near;
  for (std::size_t s = 0; s + 1 < kGreedy.size(); ++s) {
    EXPECT_EQ(steps[s].best, kGreedy[s + 1]) << "greedy step " << s;
    if (steps[s].margin < kNearTie) near.push_back(static_cast<int>(s));
  }
  EXPECT_EQ(near, kNearTieSteps) << "steps whose top-1/top-2 margin is below " << kNearTie;
  std::printf("float64 reference: max |logit diff| vs staged %.2g; near-tie steps (margin < %.2g):", worst, kNearTie);
  for (int s : near) std::printf(" %d (%.4f)", s, steps[static_cast<std::size_t>(s)].margin);
  std::printf("\n");
}

TEST(RealModelReference, Float32NoiseIsWithinTolerance) {
  // The same algorithm in float32: the size of the effect the logit tolerance must absorb.
  REQUIRE_DATA();
  const auto staged = staged_logits();
  reference_forward<float> f(checkpoint());
  double worst = 0.0, sum = 0.0;
  for (int p = 0; p < kLogitPositions; ++p) {
    const auto l = f.step(kGreedy[p], p);
    for (int v = 0; v < 512; ++v) {
      const double e = std::fabs(static_cast<double>(l[v]) - staged[p * 512 + v]);
      worst = std::max(worst, e);
      sum += e;
    }
  }
  const double mean = sum / (kLogitPositions * 512);
  std::printf("float32 evaluation of the reference: max |diff| %.4f, mean |diff| %.4f\n", worst, mean);
  EXPECT_LE(worst, kMaxAbsTol);
  EXPECT_LE(mean, kMeanAbsTol);
}

// ---------------------------------------------------------------- the converted model in the runner

class RealModel : public ::testing::TestWithParam<tensor_type> {
 protected:
  // keep_t2: for precise_session, which reads the t2 codes that default LUT kernels would replace.
  bitnet::run::model load(bool keep_t2 = false) {
    static const cv::sp_model sp = cv::read_sentencepiece_file(kTok.string());
    cv::llama2c_options o;
    o.type = GetParam();
    auto bytes = cv::build_llama2c(checkpoint(), sp, o).to_bytes();
    bitnet::run::load_options lo;
    lo.keep_t2 = keep_t2;
    return bitnet::run::model::load(bitnet::gguf::file::from_memory(std::move(bytes), "bitllama-3M converted"), lo,
                                    pool_);
  }
  bitnet::run::thread_pool pool_{2};
};

TEST_P(RealModel, LogitsMatchReference) {
  REQUIRE_DATA();
  const auto m = load();
  bitnet::run::session s(m, pool_, 512);
  const std::vector<std::int32_t> ids(kGreedy.begin(), kGreedy.begin() + kLogitPositions);
  const auto logits = s.eval(ids, /*all_logits=*/true);
  const auto staged = staged_logits();
  double worst = 0.0, sum = 0.0;
  int worst_pos = 0, worst_tok = 0;
  for (int p = 0; p < kLogitPositions; ++p) {
    const float* l = logits.data() + p * 512;
    const float* r = staged.data() + p * 512;
    for (int v = 0; v < 512; ++v) {
      const double e = std::fabs(static_cast<double>(l[v]) - r[v]);
      sum += e;
      if (e > worst) {
        worst = e;
        worst_pos = p;
        worst_tok = v;
      }
    }
    EXPECT_EQ(std::max_element(l, l + 512) - l, std::max_element(r, r + 512) - r) << "argmax at position " << p;
  }
  const double mean = sum / (kLogitPositions * 512);
  std::printf("%s: logits vs reference over %d positions: max |diff| %.4f (position %d, token %d), mean |diff| %.4f\n",
              std::string(bitnet::type_name(GetParam())).c_str(), kLogitPositions, worst, worst_pos, worst_tok, mean);
  EXPECT_LE(worst, kMaxAbsTol) << "position " << worst_pos << " token " << worst_tok;
  EXPECT_LE(mean, kMeanAbsTol);
}

TEST_P(RealModel, GreedyMatchesReference) {
  REQUIRE_DATA();
  const auto m = load();
  bitnet::run::session s(m, pool_, 512);
  std::vector<std::int32_t> got = {kGreedy[0]};
  auto logits = s.eval(std::span<const std::int32_t>(got));
  while (got.size() < kGreedy.size()) {
    const auto next = static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    got.push_back(next);
    logits = s.eval(std::span<const std::int32_t>(&got.back(), 1));
  }
  const auto& ref = reference_steps();
  const std::string type_s(bitnet::type_name(GetParam()));
  const char* type = type_s.c_str();
  for (std::size_t i = 1; i < kGreedy.size(); ++i) {
    if (got[i] == kGreedy[i]) continue;
    const std::size_t step = i - 1;
    const auto& r = ref[step];
    const double gap = r.logits[static_cast<std::size_t>(r.best)] - r.logits[static_cast<std::size_t>(got[i])];
    std::printf("%s: greedy ids equal the reference for indices 0..%zu; at index %zu the runner chose %d, the "
                "reference %d (float64 top-1/top-2 margin %.4f, runner's token %.4f below the top)\n",
                type, i - 1, i, got[i], kGreedy[i], r.margin, gap);
    const bool near_tie = std::find(kNearTieSteps.begin(), kNearTieSteps.end(), static_cast<int>(step)) !=
                          kNearTieSteps.end();
    EXPECT_TRUE(near_tie && gap < kNearTie)
        << "first difference at index " << i << ": runner " << got[i] << ", reference " << kGreedy[i]
        << "; not a near tie of the float64 reference (margin " << r.margin << ", gap " << gap << ")";
    return;  // the contexts differ from here on
  }
  std::printf("%s: all %zu greedy ids equal the reference\n", type, kGreedy.size());
}

// ---------------------------------------------------------------- precise mode (bitnet-generate --precise)
//
// precise_session keeps every non-integer quantity in double and takes the ternary products
// as exact int32 sums; on the converted file (TQ types: payload d = 1 and exact f32 .scale
// tensors; final norm epsilon 1e-5 from output_norm.layer_norm_rms_epsilon) it computes the
// reference's function up to double rounding (the block norms' epsilon of 1e-30 vanishes
// against every mean square here, as the reference's missing one), so: logits within kPreciseTol of the staged float32 file (which is the
// float64 result rounded to float32: up to 22.8 * 2^-24 = 1.4e-6 from that alone), within
// kPreciseRefTol of this test's float64 reference at all 160 teacher-forced steps (measured
// 6.6e-10: the file's final-norm epsilon is the f32 nearest to 1e-5, 2.5e-13 away), every
// argmax equal, and all 160 greedy ids equal - no near-tie exception. (Measured against the
// staged file: 9.5e-7.)
constexpr double kPreciseTol = 1e-5, kPreciseRefTol = 1e-8;

TEST_P(RealModel, PreciseLogitsMatchReference) {
  REQUIRE_DATA();
  const auto m = load(true);
  bitnet::run::precise_session s(m, pool_, 512);
  const auto staged = staged_logits();
  const auto& ref = reference_steps();
  double worst = 0.0, worst_ref = 0.0, sum = 0.0;
  for (std::size_t p = 0; p < kGreedy.size(); ++p) {
    s.eval(std::span<const std::int32_t>(&kGreedy[p], 1));
    const auto l = s.logits_double();
    const auto& r = ref[p].logits;
    for (std::size_t v = 0; v < l.size(); ++v) {
      worst_ref = std::max(worst_ref, std::fabs(l[v] - r[v]));
      if (p < static_cast<std::size_t>(kLogitPositions)) {
        const double e = std::fabs(l[v] - staged[p * 512 + v]);
        worst = std::max(worst, e);
        sum += e;
      }
    }
    EXPECT_EQ(std::max_element(l.begin(), l.end()) - l.begin(), ref[p].best) << "argmax at position " << p;
    if (p < static_cast<std::size_t>(kLogitPositions)) {
      const float* st = staged.data() + p * 512;
      EXPECT_EQ(std::max_element(l.begin(), l.end()) - l.begin(), std::max_element(st, st + 512) - st)
          << "argmax at position " << p << " (staged logits)";
    }
  }
  std::printf("%s --precise: logits vs staged (%d positions): max |diff| %.3g, mean %.3g; vs the float64 reference "
              "(%zu positions): max |diff| %.3g\n",
              std::string(bitnet::type_name(GetParam())).c_str(), kLogitPositions, worst,
              sum / (kLogitPositions * 512), kGreedy.size(), worst_ref);
  EXPECT_LE(worst, kPreciseTol);
  EXPECT_LE(worst_ref, kPreciseRefTol);
}

TEST_P(RealModel, PreciseGreedyEqualsReferenceExactly) {
  REQUIRE_DATA();
  const auto m = load(true);
  bitnet::run::precise_session s(m, pool_, 512);
  std::vector<std::int32_t> got = {kGreedy[0]};
  auto logits = s.eval(std::span<const std::int32_t>(got));
  while (got.size() < kGreedy.size()) {
    const auto l = s.logits_double();
    got.push_back(static_cast<std::int32_t>(std::max_element(l.begin(), l.end()) - l.begin()));
    // The float logits the CLI's greedy sampler sees pick the same token.
    EXPECT_EQ(std::max_element(logits.begin(), logits.end()) - logits.begin(), got.back()) << "index " << got.size() - 1;
    logits = s.eval(std::span<const std::int32_t>(&got.back(), 1));
  }
  EXPECT_EQ(got, kGreedy);
  std::size_t equal = 0;
  while (equal < got.size() && got[equal] == kGreedy[equal]) ++equal;
  std::printf("%s --precise: %zu of %zu greedy ids equal the reference before the first difference\n",
              std::string(bitnet::type_name(GetParam())).c_str(), equal, kGreedy.size());
}

INSTANTIATE_TEST_SUITE_P(Types, RealModel,
                         ::testing::Values(tensor_type::i2_s, tensor_type::tq2_0, tensor_type::tq1_0),
                         [](const auto& info) { return std::string(bitnet::type_name(info.param)); });

}  // namespace
