// bitnet/runner/sampler.hpp - next-token sampling with llama.cpp's semantics and order.
//
// Chain, applied to the logits of one position:
//   1. repetition penalty over the distinct tokens among the last repeat_last_n accepted ids:
//      a positive logit is divided by the penalty, a negative one multiplied (1 = off);
//   2. temp <= 0: greedy, the arg max (lowest id on ties); stop here;
//   3. top-k: keep the k largest (0 = off); candidates are then ordered by logit, descending,
//      ties by ascending id (a total order, so the result does not depend on the sort);
//   4. top-p: softmax of the remaining logits; keep the shortest prefix whose probability
//      reaches p (1 = off);
//   5. min-p: keep the logits >= max + ln(min_p), i.e. probability >= min_p * max probability
//      (0 = off);
//   6. temperature: logits / temp; softmax;
//   7. draw u in [0, 1) from the seeded generator and take the first candidate whose
//      cumulative probability exceeds u * total.
// Steps 3-5 see untempered logits, as in llama.cpp's default chain (top_k, top_p, min_p, temp).
// Reproducible: the generator is xoshiro256** seeded by splitmix64, and u is built from the
// top 53 bits of one output (no std::*_distribution, whose output is implementation-defined).
// No allocation per token: candidate and history buffers are sized once.
#pragma once

#include <algorithm>  // std::nth_element, std::sort, std::max_element, heaps
#include <cmath>      // std::exp, std::log
#include <cstdint>    // fixed-width integers
#include <span>       // logits
#include <stdexcept>  // parameter errors
#include <string>     // messages
#include <vector>     // buffers

namespace bitnet::run {

// xoshiro256** (Blackman and Vigna), seeded through splitmix64.
class rng {
 public:
  explicit rng(std::uint64_t seed = 0) noexcept {
    for (auto& w : s_) {
      seed += 0x9E3779B97F4A7C15ull;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      w = z ^ (z >> 31);
    }
  }
  std::uint64_t next() noexcept {
    const std::uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  // Uniform in [0, 1): the top 53 bits scaled by 2^-53 (exact in double).
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

struct sampler_params {
  float temp = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  int repeat_last_n = 64;
  std::uint64_t seed = 0;
};

struct candidate {
  std::int32_t id;
  float logit;  // after penalty (and, in the final distribution, after temperature)
  float p;      // probability in the final distribution
};

class sampler {
 public:
  sampler(const sampler_params& p, std::int64_t n_vocab) : p_(p), rng_(p.seed) {
    if (n_vocab <= 0) throw std::invalid_argument("sampler: empty vocabulary");
    if (!(p.top_p >= 0.0f && p.top_p <= 1.0f)) throw std::invalid_argument("sampler: top-p must be in [0, 1]");
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) throw std::invalid_argument("sampler: min-p must be in [0, 1]");
    if (p.top_k < 0) throw std::invalid_argument("sampler: top-k must be >= 0");
    if (!(p.repeat_penalty > 0.0f)) throw std::invalid_argument("sampler: the repetition penalty must be > 0");
    if (p.repeat_last_n < 0) throw std::invalid_argument("sampler: repeat-last-n must be >= 0");
    if (!(p.temp == p.temp)) throw std::invalid_argument("sampler: temperature is NaN");
    n_vocab_ = n_vocab;
    cand_.reserve(static_cast<std::size_t>(n_vocab));
    history_.assign(static_cast<std::size_t>(p.repeat_last_n), -1);
    penalized_.assign(static_cast<std::size_t>(n_vocab), 0);
  }

  const sampler_params& params() const noexcept { return p_; }

  // Records an id (prompt or generated) for the repetition penalty.
  void accept(std::int32_t id) noexcept {
    if (history_.empty()) return;
    history_[head_] = id;
    head_ = (head_ + 1) % history_.size();
  }

  // The next token for these logits (n_vocab values).
  std::int32_t sample(std::span<const float> logits) {
    if (p_.temp <= 0.0f) return greedy(logits);
    distribution(logits);
    return pick(rng_.uniform());
  }

  // Greedy choice after the repetition penalty: arg max, lowest id on ties.
  std::int32_t greedy(std::span<const float> logits) {
    check(logits);
    mark_history();
    std::int32_t best = 0;
    float best_v = penalized(logits, 0);
    for (std::int64_t i = 1; i < n_vocab_; ++i) {
      const float v = penalized(logits, static_cast<std::int32_t>(i));
      if (v > best_v) {
        best_v = v;
        best = static_cast<std::int32_t>(i);
      }
    }
    return best;
  }

  // Steps 1 and 3-6: the candidates that remain, in order, with their probabilities.
  std::span<const candidate> distribution(std::span<const float> logits) {
    check(logits);
    cand_.clear();
    mark_history();
    for (std::int64_t i = 0; i < n_vocab_; ++i) {
      const auto id = static_cast<std::int32_t>(i);
      cand_.push_back({id, penalized(logits, id), 0.0f});
    }
    const auto before = [](const candidate& a, const candidate& b) {
      return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
    };
    if (p_.top_k > 0 && p_.top_k < n_vocab_) {
      std::nth_element(cand_.begin(), cand_.begin() + p_.top_k - 1, cand_.end(), before);
      cand_.resize(static_cast<std::size_t>(p_.top_k));
    }
    std::sort(cand_.begin(), cand_.end(), before);
    if (p_.top_p < 1.0f) {
      softmax(1.0f);
      double cum = 0.0;
      std::size_t keep = cand_.size();
      for (std::size_t i = 0; i < cand_.size(); ++i) {
        cum += cand_[i].p;
        if (cum >= p_.top_p) {
          keep = i + 1;
          break;
        }
      }
      cand_.resize(keep);
    }
    if (p_.min_p > 0.0f) {
      const float min_logit = cand_[0].logit + std::log(p_.min_p);
      std::size_t keep = 1;
      while (keep < cand_.size() && cand_[keep].logit >= min_logit) ++keep;
      cand_.resize(keep);
    }
    for (auto& c : cand_) c.logit /= p_.temp;
    softmax(1.0f);
    return cand_;
  }

  // The candidate of the last distribution() at uniform value u in [0, 1).
  std::int32_t pick(double u) const {
    double total = 0.0;
    for (const auto& c : cand_) total += c.p;
    const double target = u * total;
    double cum = 0.0;
    for (const auto& c : cand_) {
      cum += c.p;
      if (cum > target) return c.id;
    }
    return cand_.back().id;
  }

 private:
  void check(std::span<const float> logits) const {
    if (static_cast<std::int64_t>(logits.size()) != n_vocab_)
      throw std::invalid_argument("sampler: got " + std::to_string(logits.size()) + " logits for a vocabulary of " +
                                  std::to_string(n_vocab_));
  }

  // Marks the distinct ids of the window (each is penalized once).
  void mark_history() {
    ++stamp_;
    if (stamp_ == 0) {  // wrapped: clear old marks
      std::fill(penalized_.begin(), penalized_.end(), 0u);
      stamp_ = 1;
    }
    for (const std::int32_t id : history_)
      if (id >= 0 && id < n_vocab_) penalized_[static_cast<std::size_t>(id)] = stamp_;
  }

  // The logit of id after the repetition penalty (mark_history() must have run for this call).
  float penalized(std::span<const float> logits, std::int32_t id) const {
    const float v = logits[static_cast<std::size_t>(id)];
    if (p_.repeat_penalty == 1.0f || history_.empty()) return v;
    if (penalized_[static_cast<std::size_t>(id)] != stamp_) return v;
    return v > 0.0f ? v / p_.repeat_penalty : v * p_.repeat_penalty;
  }

  // p = softmax(logit * scale) over the current candidates (sorted: the first is the max).
  void softmax(float scale) {
    const float mx = cand_[0].logit * scale;
    double sum = 0.0;
    for (auto& c : cand_) {
      c.p = std::exp(c.logit * scale - mx);
      sum += c.p;
    }
    for (auto& c : cand_) c.p = static_cast<float>(c.p / sum);
  }

  sampler_params p_;
  rng rng_;
  std::int64_t n_vocab_ = 0;
  std::vector<candidate> cand_;
  std::vector<std::int32_t> history_;  // ring buffer of the last repeat_last_n ids (-1 = empty)
  std::size_t head_ = 0;
  std::vector<std::uint32_t> penalized_;  // == stamp_: in the current window
  std::uint32_t stamp_ = 0;
};

// The model's log-probabilities at one position, as OpenAI's `logprobs` report them: the
// log-softmax of the raw logits (temperature 1, before any penalty or truncation), summed in
// double. Returns the log-probability of `id` and writes the top_n most likely tokens to `top`
// (descending, ties by ascending id; fewer when the vocabulary is smaller). Allocates only
// `top`'s top_n entries.
struct token_logprob {
  std::int32_t id;
  float logprob;
};

inline float logprobs(std::span<const float> logits, std::int32_t id, int top_n, std::vector<token_logprob>& top) {
  const auto n = static_cast<std::int64_t>(logits.size());
  if (n == 0) throw std::invalid_argument("logprobs: no logits");
  if (id < 0 || id >= n)
    throw std::out_of_range("logprobs: token id " + std::to_string(id) + " is outside the vocabulary of " +
                            std::to_string(n) + " tokens");
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (const float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  const double lse = static_cast<double>(mx) + std::log(sum);
  const auto lp = [&](std::int64_t i) {
    return static_cast<float>(static_cast<double>(logits[static_cast<std::size_t>(i)]) - lse);
  };
  // A min-heap of the best top_n (the worst at the front): one pass over the vocabulary.
  const auto better = [](const token_logprob& a, const token_logprob& b) {
    return a.logprob != b.logprob ? a.logprob > b.logprob : a.id < b.id;
  };
  top.clear();
  const auto k = static_cast<std::size_t>(std::clamp<std::int64_t>(top_n, 0, n));
  top.reserve(k);
  for (std::int64_t i = 0; i < n && k > 0; ++i) {
    const token_logprob c{static_cast<std::int32_t>(i), lp(i)};
    if (top.size() < k) {
      top.push_back(c);
      std::push_heap(top.begin(), top.end(), better);
    } else if (better(c, top.front())) {
      std::pop_heap(top.begin(), top.end(), better);
      top.back() = c;
      std::push_heap(top.begin(), top.end(), better);
    }
  }
  std::sort_heap(top.begin(), top.end(), better);
  return lp(id);
}

}  // namespace bitnet::run
