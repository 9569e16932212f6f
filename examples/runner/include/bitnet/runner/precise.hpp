// bitnet/runner/precise.hpp - a verification forward pass: every non-integer quantity in double.
//
// precise_session runs the same graph as session (model.hpp) on the same loaded model - the
// repacked ternary weights, the norm gains, the token_embd mapping; nothing is copied - but
// keeps every real-valued quantity in double:
//   * embeddings: the row dequantized (exact for F32; F16/BF16/Q8_0/Q6_K give their float values)
//     and widened to double;
//   * RMSNorm: sum of squares, mean, 1/sqrt(mean + eps), x * inv * gain, all in double
//     (block norms use {arch}.attention.layer_norm_rms_epsilon, the output norm
//     config::output_norm_eps);
//   * activation quantization, per token: amax = max(1e-5, max|x|), s = 127 / amax,
//     q = clamp(round-half-even(x * s), -128, 127), all in double;
//   * ternary products: the exact int32 sum of w*q from the library's own GEMV kernel
//     (kernel_set::gemv.dot, on the model's repacked matrices), then y = (double)dot / s * s_w,
//     times the optional per-tensor `.scale`, plus the optional bias. A matrix whose TQ blocks
//     have different scales sums each 256-block separately (scalar loop over the codes);
//   * RoPE (angles p / base^(2i/n_rot), divided by rope_freqs if present; NeoX or normal pairs
//     as the architecture says), attention scores, softmax (exp(s - max), o += (e / sum) * v),
//     the KV cache, SiLU / ReLU², the residual stream and the head (sum over d of h * head row,
//     in double).
// The only rounding left is double's, about 1e-16 relative: an int8 rounding boundary is
// crossed only where the exact value is within ~1e-14 of it, so a float64 reference of the
// same model (same constants) gives the same integers, logits equal to ~1e-12 relative, and
// the same greedy ids (bitllama-3M: all 160; tests/test_real_model.cpp).
//
// Slow and simple by design (one token at a time, no batching; rows of the products and of
// the head are split over the pool's threads, no reduction crosses threads, so results do not
// depend on the thread count). Supports every architecture of config.hpp with per-token
// activations; per-block (Q8_K) activations are refused with an error.
#pragma once

#include <algorithm>  // std::max, std::min, std::clamp
#include <cmath>      // std::sqrt, std::exp, std::pow, std::cos, std::sin, std::nearbyint
#include <cstdint>    // fixed-width integers
#include <limits>     // infinity
#include <span>       // views
#include <stdexcept>  // errors
#include <string>     // messages
#include <vector>     // state

#include "bitnet/runner/session.hpp"  // the model, evaluator, context_full

namespace bitnet::run {

class precise_session : public evaluator {
 public:
  precise_session(const model& m, thread_pool& pool, std::int64_t n_ctx) : m_(&m), pool_(&pool), n_ctx_(n_ctx) {
    const config& c = m.cfg();
    if (n_ctx <= 0) throw std::invalid_argument("precise session: the context size must be positive");
    if (m.activation_mode() != act_quant::per_token)
      throw std::invalid_argument(
          "--precise supports per-token activations only (the int8 quantization of bitnet.cpp); drop --act per-block");
    for (const block_weights& B : m.blocks())
      for (const linear* L : {&B.q, &B.k, &B.v, &B.o, &B.gate, &B.up, &B.down})
        if (!L->w.t2())
          throw std::invalid_argument("precise session: the model holds LUT copies in place of the t2 codes it reads; "
                                      "load it with load_options::keep_t2");
    const auto sz = [](std::int64_t n) { return static_cast<std::size_t>(n); };
    const std::int64_t d = c.n_embd, qd = c.q_dim(), dkv = c.n_embd_kv(), ff = c.n_ff, K = std::max({d, qd, ff});
    x_.resize(sz(d));
    h_.resize(sz(K));
    q_.resize(sz(qd));
    k_.resize(sz(dkv));
    v_.resize(sz(dkv));
    att_.resize(sz(qd));
    tmp_.resize(sz(d));
    g_.resize(sz(ff));
    u_.resize(sz(ff));
    qf_.resize(sz(K));
    qi_.resize(sz(K));
    dot_.resize(sz(K));
    kc_.resize(sz(c.n_layer * n_ctx_ * dkv));
    vc_.resize(sz(c.n_layer * n_ctx_ * dkv));
    logits_.resize(sz(c.n_vocab));
    logits_f_.resize(sz(c.n_vocab));
    const std::int64_t half = c.n_rot / 2;
    inv_freq_.resize(sz(half));
    for (std::int64_t i = 0; i < half; ++i) {
      double div = std::pow(static_cast<double>(c.rope_base), static_cast<double>(2 * i) / static_cast<double>(c.n_rot));
      if (m.rope_freqs()) div *= static_cast<double>(m.rope_freqs()[i]);
      inv_freq_[sz(i)] = div;  // theta_i(p) = p / div
    }
  }

  std::int64_t n_ctx() const noexcept override { return n_ctx_; }
  std::int64_t pos() const noexcept override { return pos_; }
  void reset() noexcept { pos_ = 0; }

  // Evaluates `tokens` one by one at positions pos() .. and returns the last token's logits,
  // rounded to float (logits_double() has them unrounded). Errors as session::eval.
  std::span<const float> eval(std::span<const std::int32_t> tokens) override {
    const std::int64_t n = static_cast<std::int64_t>(tokens.size());
    detail::check_eval(tokens, m_->cfg().n_vocab, pos_, n_ctx_);
    for (std::int64_t i = 0; i < n; ++i) step(tokens[static_cast<std::size_t>(i)], i + 1 == n);
    for (std::size_t v = 0; v < logits_.size(); ++v) logits_f_[v] = static_cast<float>(logits_[v]);
    return {logits_f_.data(), logits_f_.size()};
  }

  // The last evaluated token's logits in double.
  std::span<const double> logits_double() const noexcept { return {logits_.data(), logits_.size()}; }

 private:
  static constexpr std::int64_t kRowGrain = 16;

  static void rms_norm(const double* x, const float* g, double* y, std::int64_t n, double eps) noexcept {
    double ss = 0.0;
    for (std::int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
    for (std::int64_t i = 0; i < n; ++i) y[i] = x[i] * inv * static_cast<double>(g[i]);
  }

  // Quantizes x[0..K) per token in double into xq_ (exact integers) and returns s = 127 / amax.
  double quantize(const double* x, std::int64_t K) {
    double amax = 0.0;
    for (std::int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[k]));
    amax = std::max(amax, 1e-5);
    const double s = 127.0 / amax;
    qsum_ = 0;
    for (std::int64_t k = 0; k < K; ++k) {
      const double r = std::clamp(std::nearbyint(x[k] * s), -128.0, 127.0);
      qi_[static_cast<std::size_t>(k)] = static_cast<std::int8_t>(r);
      qf_[static_cast<std::size_t>(k)] = static_cast<float>(r);
      qsum_ += static_cast<std::int32_t>(r);
    }
    // Sizes xq_ for K (integers in, so its own quantization reproduces them: amax 127 gives
    // s = 1), then stores our integers regardless; dot() corrects for xq_'s own sum of q.
    xq_.quantize(qf_.data(), 1, K, K, act_quant::per_token);
    std::int8_t* q = xq_.mutable_q(0);
    for (std::int64_t k = 0; k < K; ++k) q[k] = qi_[static_cast<std::size_t>(k)];
    return s;
  }

  // y = W·q / s (double epilogue) for the activations in xq_.
  void matvec(const linear& L, double s, double* y) {
    const ternary_matrix& W = *L.w.t2();
    const kernel_set& ks = m_->kernels();
    const std::int32_t corr = xq_.sum(0) - qsum_;  // the kernel subtracts xq_.sum(0), codes are w + 1
    const double sw = static_cast<double>(W.scale), ts = L.has_scale ? static_cast<double>(L.scale) : 1.0;
    pool_->parallel_for(W.M, kRowGrain, [&](std::int64_t b, std::int64_t e) {
      if (!W.per_block_scales()) {
        ks.gemv.dot(W, xq_, 0, dot_.data(), b, e);
        for (std::int64_t r = b; r < e; ++r) {
          const std::int32_t dv = dot_[static_cast<std::size_t>(r)] + corr;
          y[r] = static_cast<double>(dv) / s * sw * ts;
        }
      } else {
        const std::int64_t nb = W.Kp / 256;
        const std::int8_t* q = qi_.data();
        for (std::int64_t r = b; r < e; ++r) {
          double acc = 0.0;
          for (std::int64_t blk = 0; blk < nb; ++blk) {
            std::int32_t dv = 0;
            for (std::int64_t k = blk * 256; k < std::min(W.K, (blk + 1) * 256); ++k)
              dv += (W.code(r, k) - 1) * q[k];
            acc += static_cast<double>(dv) * static_cast<double>(W.block_scales[static_cast<std::size_t>(r * nb + blk)]);
          }
          y[r] = acc / s * ts;
        }
      }
      if (L.bias)
        for (std::int64_t r = b; r < e; ++r) y[r] += static_cast<double>(L.bias[r]);
    });
  }

  void rope(double* v, std::int64_t p) const noexcept {
    const std::int64_t half = m_->cfg().n_rot / 2;
    const bool neox = m_->cfg().rope == rope_style::neox;
    for (std::int64_t i = 0; i < half; ++i) {
      const double th = static_cast<double>(p) / inv_freq_[static_cast<std::size_t>(i)];
      const double co = std::cos(th), si = std::sin(th);
      const std::int64_t ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
      const double a = v[ia], b = v[ib];
      v[ia] = a * co - b * si;
      v[ib] = a * si + b * co;
    }
  }

  double* cache_at(std::vector<double>& cache, std::int64_t l, std::int64_t p) noexcept {
    const config& c = m_->cfg();
    return cache.data() + (l * n_ctx_ + p) * c.n_embd_kv();
  }

  void attention(std::int64_t l, std::int64_t p) {
    const config& c = m_->cfg();
    const std::int64_t hd = c.head_dim, dkv = c.n_embd_kv();
    const double* K = cache_at(kc_, l, 0);
    const double* Vc = cache_at(vc_, l, 0);
    const double sq = std::sqrt(static_cast<double>(hd));
    pool_->parallel_for(c.n_head, 1, [&](std::int64_t b, std::int64_t e) {
      std::vector<double> s(static_cast<std::size_t>(p + 1));
      for (std::int64_t h = b; h < e; ++h) {
        const std::int64_t kvh = h / c.n_gqa();
        const double* q = q_.data() + h * hd;
        double mx = -std::numeric_limits<double>::infinity();
        for (std::int64_t j = 0; j <= p; ++j) {
          double a = 0.0;
          for (std::int64_t i = 0; i < hd; ++i) a += q[i] * K[j * dkv + kvh * hd + i];
          s[static_cast<std::size_t>(j)] = a / sq;
          mx = std::max(mx, a / sq);
        }
        double sum = 0.0;
        for (auto& v : s) sum += (v = std::exp(v - mx));
        double* o = att_.data() + h * hd;
        std::fill(o, o + hd, 0.0);
        for (std::int64_t j = 0; j <= p; ++j)
          for (std::int64_t i = 0; i < hd; ++i) o[i] += s[static_cast<std::size_t>(j)] / sum * Vc[j * dkv + kvh * hd + i];
      }
    });
  }

  void step(std::int32_t tok, bool want_logits) {
    const model& m = *m_;
    const config& c = m.cfg();
    const std::int64_t d = c.n_embd, qd = c.q_dim(), ff = c.n_ff, p = pos_;
    const double eps = static_cast<double>(c.norm_eps);
    const dense_view& E = m.token_embd();
    {
      std::vector<float> row(static_cast<std::size_t>(d));
      dequantize_row(E.type, E.data + static_cast<std::size_t>(tok) * E.row_bytes, row.data(), d);
      for (std::int64_t i = 0; i < d; ++i) x_[static_cast<std::size_t>(i)] = static_cast<double>(row[static_cast<std::size_t>(i)]);
    }
    for (std::int64_t l = 0; l < c.n_layer; ++l) {
      const block_weights& B = m.blocks()[static_cast<std::size_t>(l)];
      rms_norm(x_.data(), B.attn_norm, h_.data(), d, eps);
      double s = quantize(h_.data(), d);
      matvec(B.q, s, q_.data());
      matvec(B.k, s, k_.data());
      matvec(B.v, s, v_.data());
      for (std::int64_t h = 0; h < c.n_head; ++h) rope(q_.data() + h * c.head_dim, p);
      for (std::int64_t h = 0; h < c.n_head_kv; ++h) rope(k_.data() + h * c.head_dim, p);
      std::copy(k_.begin(), k_.end(), cache_at(kc_, l, p));
      std::copy(v_.begin(), v_.end(), cache_at(vc_, l, p));
      attention(l, p);
      if (B.attn_sub_norm) rms_norm(att_.data(), B.attn_sub_norm, att_.data(), qd, eps);
      s = quantize(att_.data(), qd);
      matvec(B.o, s, tmp_.data());
      for (std::int64_t i = 0; i < d; ++i) x_[static_cast<std::size_t>(i)] += tmp_[static_cast<std::size_t>(i)];
      rms_norm(x_.data(), B.ffn_norm, h_.data(), d, eps);
      s = quantize(h_.data(), d);
      matvec(B.gate, s, g_.data());
      matvec(B.up, s, u_.data());
      for (std::int64_t i = 0; i < ff; ++i) {
        const double g = g_[static_cast<std::size_t>(i)];
        double a;
        if (c.act == ffn_activation::silu) {
          a = g / (1.0 + std::exp(-g));
        } else {
          const double r = std::max(g, 0.0);
          a = r * r;
        }
        g_[static_cast<std::size_t>(i)] = a * u_[static_cast<std::size_t>(i)];
      }
      if (B.ffn_sub_norm) rms_norm(g_.data(), B.ffn_sub_norm, g_.data(), ff, eps);
      s = quantize(g_.data(), ff);
      matvec(B.down, s, tmp_.data());
      for (std::int64_t i = 0; i < d; ++i) x_[static_cast<std::size_t>(i)] += tmp_[static_cast<std::size_t>(i)];
    }
    ++pos_;
    if (!want_logits) return;
    rms_norm(x_.data(), m.output_norm(), h_.data(), d, static_cast<double>(c.output_norm_eps));
    const dense_view& H = m.head();
    pool_->parallel_for(c.n_vocab, 64, [&](std::int64_t b, std::int64_t e) {
      std::vector<float> row(static_cast<std::size_t>(d));
      for (std::int64_t v = b; v < e; ++v) {
        dequantize_row(H.type, H.data + static_cast<std::size_t>(v) * H.row_bytes, row.data(), d);
        double a = 0.0;
        for (std::int64_t i = 0; i < d; ++i) a += h_[static_cast<std::size_t>(i)] * static_cast<double>(row[static_cast<std::size_t>(i)]);
        logits_[static_cast<std::size_t>(v)] = a;
      }
    });
  }

  const model* m_;
  thread_pool* pool_;
  std::int64_t n_ctx_, pos_ = 0;
  std::vector<double> x_, h_, q_, k_, v_, att_, tmp_, g_, u_;
  std::vector<double> kc_, vc_;  // [layer][position][n_embd_kv]
  std::vector<double> inv_freq_;
  std::vector<double> logits_;
  std::vector<float> logits_f_, qf_;
  std::vector<std::int8_t> qi_;
  std::int32_t qsum_ = 0;
  std::vector<std::int32_t> dot_;
  activations xq_;
};

}  // namespace bitnet::run
