// tests/test_sampler.cpp - bitnet/runner/sampler.hpp against hand-computed
// distributions. Logits are chosen as logarithms of small integers so every expected
// probability is a simple fraction (softmax(ln w) = w / sum w); tolerances are float rounding
// of a softmax over a handful of values (1e-6).
#include <gtest/gtest.h>

#include <algorithm>  // std::sort
#include <cmath>    // std::log
#include <cstdint>  // fixed-width integers
#include <map>      // expected distributions
#include <vector>   // logits

#include <bitnet/runner/sampler.hpp>

namespace {

using bitnet::run::candidate;
using bitnet::run::rng;
using bitnet::run::sampler;
using bitnet::run::sampler_params;

sampler_params plain(float temp = 1.0f) {  // every filter off
  sampler_params p;
  p.temp = temp;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.repeat_penalty = 1.0f;
  p.seed = 1;
  return p;
}

std::vector<float> logs(std::initializer_list<double> w) {
  std::vector<float> l;
  for (double x : w) l.push_back(static_cast<float>(std::log(x)));
  return l;
}

// Expects exactly the ids of `want` (in this order) with these probabilities.
void expect_dist(std::span<const candidate> got, const std::vector<std::pair<std::int32_t, double>>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].id, want[i].first) << "rank " << i;
    EXPECT_NEAR(got[i].p, want[i].second, 1e-6) << "id " << want[i].first;
  }
}

TEST(Rng, MatchesXoshiro256StarStarWithSplitmix64Seeding) {
  // Expected values from an independent Python transcription of the published algorithms.
  rng r(42);
  EXPECT_EQ(r.next(), 0x15780b2e0c2ec716ull);
  EXPECT_EQ(r.next(), 0x6104d9866d113a7eull);
  EXPECT_EQ(r.next(), 0xae17533239e499a1ull);
  rng z(0);
  EXPECT_EQ(z.next(), 0x99ec5f36cb75f2b4ull);
  // uniform() = top 53 bits / 2^53.
  rng u(0);
  EXPECT_EQ(u.uniform(), static_cast<double>(0x99ec5f36cb75f2b4ull >> 11) / 9007199254740992.0);
}

TEST(Sampler, GreedyIsArgMaxLowestIdOnTies) {
  sampler s(plain(0.0f), 4);
  const std::vector<float> l = {1.0f, 3.0f, 3.0f, 2.0f};
  EXPECT_EQ(s.sample(l), 1);
  EXPECT_EQ(s.sample(l), 1);  // no randomness
}

TEST(Sampler, RepetitionPenaltyDividesPositiveMultipliesNegativeOncePerToken) {
  sampler_params p = plain(0.0f);
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 3;
  sampler s(p, 4);
  const std::vector<float> l = {2.0f, -1.0f, 1.5f, 0.5f};
  EXPECT_EQ(s.sample(l), 0);
  s.accept(0);
  s.accept(0);  // twice in the window, penalized once: 2.0 -> 1.0
  s.accept(1);  // -1 -> -2
  // {1.0, -2.0, 1.5, 0.5}: arg max 2
  EXPECT_EQ(s.sample(l), 2);
  // With temperature: the penalized logits define the distribution {e^1, e^-2, e^1.5, e^0.5}.
  sampler_params q = p;
  q.temp = 1.0f;
  sampler t(q, 4);
  t.accept(0);
  t.accept(1);
  const double w0 = std::exp(1.0), w1 = std::exp(-2.0), w2 = std::exp(1.5), w3 = std::exp(0.5), sum = w0 + w1 + w2 + w3;
  expect_dist(t.distribution(l), {{2, w2 / sum}, {0, w0 / sum}, {3, w3 / sum}, {1, w1 / sum}});
}

TEST(Sampler, RepetitionWindowForgetsOldTokens) {
  sampler_params p = plain(0.0f);
  p.repeat_penalty = 10.0f;
  p.repeat_last_n = 2;
  sampler s(p, 3);
  const std::vector<float> l = {3.0f, 2.0f, 1.0f};
  s.accept(0);
  s.accept(1);
  EXPECT_EQ(s.sample(l), 2);  // {0.3, 0.2, 1.0}
  s.accept(2);                // window now {1, 2}: token 0 is no longer penalized
  EXPECT_EQ(s.sample(l), 0);  // {3.0, 0.2, 0.1}
}

TEST(Sampler, TemperatureScalesLogits) {
  sampler s1(plain(1.0f), 3);
  expect_dist(s1.distribution(logs({1, 2, 4})), {{2, 4.0 / 7}, {1, 2.0 / 7}, {0, 1.0 / 7}});
  sampler s2(plain(0.5f), 3);  // weights squared: 1, 4, 16
  expect_dist(s2.distribution(logs({1, 2, 4})), {{2, 16.0 / 21}, {1, 4.0 / 21}, {0, 1.0 / 21}});
}

TEST(Sampler, TopK) {
  sampler_params p = plain();
  p.top_k = 2;
  sampler s(p, 4);
  expect_dist(s.distribution(logs({1, 2, 4, 8})), {{3, 8.0 / 12}, {2, 4.0 / 12}});
}

TEST(Sampler, TopPKeepsShortestPrefixReachingP) {
  sampler_params p = plain();
  p.top_p = 0.6f;  // 0.4 < 0.6 <= 0.4 + 0.3
  sampler s(p, 4);
  expect_dist(s.distribution(logs({1, 2, 3, 4})), {{3, 4.0 / 7}, {2, 3.0 / 7}});
  p.top_p = 0.75f;  // 0.7 < 0.75 <= 0.9
  sampler t(p, 4);
  expect_dist(t.distribution(logs({1, 2, 3, 4})), {{3, 4.0 / 9}, {2, 3.0 / 9}, {1, 2.0 / 9}});
}

TEST(Sampler, MinPRelativeToTheMostLikely) {
  sampler_params p = plain();
  p.min_p = 0.6f;  // keep p >= 0.6 * 0.4 = 0.24
  sampler s(p, 4);
  expect_dist(s.distribution(logs({1, 2, 3, 4})), {{3, 4.0 / 7}, {2, 3.0 / 7}});
}

TEST(Sampler, ChainOrderTopKTopPMinPThenTemperature) {
  sampler_params p = plain(2.0f);
  p.top_k = 4;      // {10, 4, 3, 2}
  p.top_p = 0.8f;   // probabilities /19: .526, .737 cumulative, .895 -> keep 3
  p.min_p = 0.35f;  // relative to 10: keep w >= 3.5 -> {10, 4}
  sampler s(p, 5);
  // temperature 2: weights become sqrt(w)
  const double a = std::sqrt(10.0), b = 2.0;
  expect_dist(s.distribution(logs({1, 2, 3, 4, 10})), {{4, a / (a + b)}, {3, b / (a + b)}});
}

TEST(Sampler, PickWalksTheCumulativeDistribution) {
  sampler s(plain(), 3);
  (void)s.distribution(logs({5, 3, 2}));  // 0.5, 0.3, 0.2
  EXPECT_EQ(s.pick(0.0), 0);
  EXPECT_EQ(s.pick(0.49), 0);
  EXPECT_EQ(s.pick(0.51), 1);
  EXPECT_EQ(s.pick(0.79), 1);
  EXPECT_EQ(s.pick(0.81), 2);
  EXPECT_EQ(s.pick(0.999999), 2);
}

TEST(Sampler, SeededRunsRepeatAndFrequenciesFollowTheDistribution) {
  sampler_params p = plain();
  p.seed = 1234;
  sampler a(p, 3), b(p, 3);
  const auto l = logs({1, 2, 4});
  std::map<std::int32_t, int> count;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const auto x = a.sample(l);
    ASSERT_EQ(x, b.sample(l)) << "draw " << i;
    ++count[x];
  }
  // Standard deviation of a frequency: sqrt(p(1-p)/n) <= 0.0036; allow 5 of them.
  EXPECT_NEAR(count[0] / double(n), 1.0 / 7, 0.018);
  EXPECT_NEAR(count[1] / double(n), 2.0 / 7, 0.018);
  EXPECT_NEAR(count[2] / double(n), 4.0 / 7, 0.018);
  p.seed = 1235;
  sampler c(p, 3);
  int same = 0;
  sampler a2(plain(), 3);
  for (int i = 0; i < 64; ++i) same += c.sample(l) == a2.sample(l);
  EXPECT_LT(same, 64);
}

TEST(Sampler, RejectsBadParameters) {
  sampler_params p = plain();
  p.top_p = 1.5f;
  EXPECT_THROW(sampler(p, 4), std::invalid_argument);
  p = plain();
  p.repeat_penalty = 0.0f;
  EXPECT_THROW(sampler(p, 4), std::invalid_argument);
  EXPECT_THROW(sampler(plain(), 0), std::invalid_argument);
  sampler s(plain(), 4);
  const std::vector<float> three = {1, 2, 3};
  EXPECT_THROW(s.sample(three), std::invalid_argument);
}

// logprobs: the log-softmax in long double over a vocabulary with ties, and the top list against
// a full sort of the same values.
TEST(Logprobs, LogSoftmaxOfRawLogitsAndTopListByValueThenId) {
  std::vector<float> l(1000);
  for (std::size_t i = 0; i < l.size(); ++i) l[i] = static_cast<float>(static_cast<int>((i * 7919) % 613) - 300) / 37.0f;
  l[17] = l[900] = 9.5f;  // a tie at the top: the lower id first
  long double sum = 0.0L;
  for (const float x : l) sum += std::exp(static_cast<long double>(x));
  std::vector<bitnet::run::token_logprob> top;
  for (const std::int32_t id : {0, 17, 900, 999}) {
    const float got = bitnet::run::logprobs(l, id, 5, top);
    const long double want = static_cast<long double>(l[static_cast<std::size_t>(id)]) - std::log(sum);
    EXPECT_NEAR(got, static_cast<double>(want), 2e-6) << "id " << id;
  }
  std::vector<std::int32_t> order(l.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int32_t>(i);
  // By value, then by id (std::sort with a total order: libstdc++'s stable_sort trips clang's
  // deprecation warning for get_temporary_buffer).
  std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    const float la = l[static_cast<std::size_t>(a)], lb = l[static_cast<std::size_t>(b)];
    return la != lb ? la > lb : a < b;
  });
  ASSERT_EQ(top.size(), 5u);
  EXPECT_EQ(top[0].id, 17);
  EXPECT_EQ(top[1].id, 900);
  for (std::size_t r = 0; r < top.size(); ++r) {
    EXPECT_EQ(top[r].id, order[r]) << "rank " << r;
    EXPECT_NEAR(top[r].logprob, static_cast<double>(l[static_cast<std::size_t>(order[r])] - std::log(sum)), 2e-6);
  }
  EXPECT_EQ((bitnet::run::logprobs(l, 3, 0, top), top.size()), 0u);
  EXPECT_EQ((bitnet::run::logprobs(std::span<const float>(l.data(), 3), 1, 10, top), top.size()), 3u);
  EXPECT_THROW(bitnet::run::logprobs(l, 1000, 1, top), std::out_of_range);
  EXPECT_THROW(bitnet::run::logprobs(std::span<const float>(), 0, 1, top), std::invalid_argument);
}

}  // namespace
