// The forward pass (session.hpp has the contract).
#include "bitnet/runner/session.hpp"

#include <algorithm>  // std::max, std::min, std::fill
#include <cmath>      // std::sqrt, std::exp, std::pow, std::cos, std::sin
#include <cstring>    // std::memcpy
#include <limits>     // infinity
#include <string>     // messages

namespace bitnet::run {

namespace {
constexpr std::int64_t kRowGrain = 16;  // matmul rows per split unit (keeps tiles and cache lines whole)
// Smallest decode claim (80 KiB of a 2B4T matrix), a multiple of every MAD row tile.
constexpr std::int64_t kDecodeGrain = 128;

std::size_t sz(std::int64_t n) { return static_cast<std::size_t>(n); }

void store(float* dst, const float* src, std::int64_t n) noexcept { std::memcpy(dst, src, sz(n) * sizeof(float)); }
void store(std::uint16_t* dst, const float* src, std::int64_t n) noexcept {
  for (std::int64_t i = 0; i < n; ++i) dst[i] = f32_to_fp16(src[i]);
}
void add_rows(float* x, const float* y, std::int64_t n) noexcept {
  for (std::int64_t i = 0; i < n; ++i) x[i] += y[i];
}
}  // namespace

session::session(const model& m, thread_pool& pool, const session_options& o)
    : m_(&m), pool_(&pool), n_ctx_(o.n_ctx), n_batch_(o.n_batch), kv_(o.kv), keep_embd_(o.embeddings),
      attn32_(detail::select_attn_kernels<float>(m.kernels().arch)),
      attn16_(detail::select_attn_kernels<std::uint16_t>(m.kernels().arch)) {
  const config& c = m.cfg();
  if (o.n_ctx <= 0) throw std::invalid_argument("session: the context size must be positive");
  if (o.n_batch <= 0) throw std::invalid_argument("session: the batch size must be positive");
  if (o.n_seq <= 0 || o.n_seq > 4096) throw std::invalid_argument("session: the number of sequences must be 1 .. 4096");
  n_batch_ = std::min(n_batch_, n_ctx_ * o.n_seq);
  seq_len_.assign(sz(o.n_seq), 0);
  const std::int64_t d = c.n_embd, qd = c.q_dim(), dkv = c.n_embd_kv(), ff = c.n_ff, T = n_batch_;
  x_.resize(sz(T * d));
  h_.resize(sz(T * d));
  q_.resize(sz(T * qd));
  k_.resize(sz(T * dkv));
  v_.resize(sz(T * dkv));
  att_.resize(sz(T * qd));
  tmp_.resize(sz(T * d));
  g_.resize(sz(T * ff));
  u_.resize(sz(T * ff));
  const std::int64_t cache = o.n_seq * c.n_layer * n_ctx_ * dkv;
  if (kv_ == kv_type::f32) {
    kf_.resize(sz(cache));
    vf_.resize(sz(cache));
  } else {
    kh_.resize(sz(cache));
    vh_.resize(sz(cache));
  }
  scores_.resize(sz(pool.size() * n_ctx_));
  logits_.resize(sz(c.n_vocab));
  if (keep_embd_) embd_out_.resize(sz(d));
  pos_.resize(sz(T));
  seq_.resize(sz(T));
  zeros_.assign(sz(T), 0);
  rows_.resize(sz(T));
  // Grow the quantized-activation buffers to their largest shape now, so eval() never does.
  {
    const std::int64_t K = std::max({d, qd, ff});
    const std::vector<float> zeros(sz(T * K), 0.0f);
    xq_.quantize(zeros.data(), T, K, K, act_quant::per_token);
    head_x_.prepare_batch(m.head().type, zeros.data(), 1, d, d);
  }
  // RoPE table: cos/sin of theta_i(p) for every position, ggml's float recurrence.
  const std::int64_t half = c.n_rot / 2;
  rope_.resize(sz(2 * n_ctx_ * half));
  const float theta_scale = std::pow(c.rope_base, -2.0f / static_cast<float>(c.n_rot));
  for (std::int64_t p = 0; p < n_ctx_; ++p) {
    float theta = static_cast<float>(p);
    for (std::int64_t i = 0; i < half; ++i) {
      const float t = m.rope_freqs() ? theta / m.rope_freqs()[i] : theta;
      rope_[sz(2 * (p * half + i))] = std::cos(t);
      rope_[sz(2 * (p * half + i) + 1)] = std::sin(t);
      theta *= theta_scale;
    }
  }
}

void session::reset() noexcept { std::fill(seq_len_.begin(), seq_len_.end(), 0); }

void session::seq_truncate(int seq, std::int64_t n) {
  if (seq < 0 || seq >= n_seq())
    throw std::out_of_range("session: sequence " + std::to_string(seq) + " is outside 0 .. " + std::to_string(n_seq() - 1));
  auto& len = seq_len_[sz(seq)];
  if (n < 0 || n > len)
    throw std::out_of_range("session: cannot keep " + std::to_string(n) + " positions of sequence " + std::to_string(seq) +
                            ", which holds " + std::to_string(len));
  len = n;
}

std::size_t session::kv_bytes() const noexcept {
  return (kf_.size() + vf_.size()) * sizeof(float) + (kh_.size() + vh_.size()) * sizeof(std::uint16_t);
}

std::span<const float> session::embeddings() const {
  if (!keep_embd_) throw std::logic_error("session: embeddings were not requested (session_options::embeddings)");
  return {embd_out_.data(), n_out_ * sz(m_->cfg().n_embd)};
}

// Every token id inside the vocabulary, every sequence index valid, and room for all of them.
void session::check(std::span<const std::int32_t> tokens, std::span<const std::int32_t> seqs) const {
  const std::int64_t V = m_->cfg().n_vocab;
  if (seqs.empty()) return detail::check_eval(tokens, V, seq_len_[0], n_ctx_);
  detail::check_eval(tokens, V, 0, n_ctx_ + static_cast<std::int64_t>(tokens.size()));  // ids only
  std::vector<std::int64_t> add(seq_len_.size(), 0);
  for (const std::int32_t s : seqs) {
    if (s < 0 || s >= n_seq())
      throw std::out_of_range("decode: sequence " + std::to_string(s) + " is outside 0 .. " + std::to_string(n_seq() - 1));
    ++add[sz(s)];
  }
  for (std::size_t s = 0; s < add.size(); ++s)
    if (seq_len_[s] + add[s] > n_ctx_)
      throw context_full("context full: " + std::to_string(add[s]) + " more token" + (add[s] == 1 ? "" : "s") +
                         " of sequence " + std::to_string(s) + " at position " + std::to_string(seq_len_[s]) +
                         " would pass the context size of " + std::to_string(n_ctx_));
}

std::span<const float> session::eval(std::span<const std::int32_t> tokens, bool all_logits) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  const std::int64_t V = m_->cfg().n_vocab, d = m_->cfg().n_embd;
  check(tokens, {});
  if (all_logits && logits_out_.size() < sz(n * V)) logits_out_.resize(sz(n * V));
  if (keep_embd_ && embd_out_.size() < sz((all_logits ? n : 1) * d)) embd_out_.resize(sz((all_logits ? n : 1) * d));
  for (std::int64_t i = 0; i < n; i += n_batch_) {
    const std::int64_t T = std::min(n_batch_, n - i);
    const outputs mode = all_logits ? outputs::all : (i + T == n ? outputs::last : outputs::none);
    forward(tokens.data() + i, zeros_.data(), nullptr, T, mode, all_logits ? logits_out_.data() + i * V : logits_.data(),
            keep_embd_ ? embd_out_.data() + (all_logits ? i * d : 0) : nullptr);
  }
  n_out_ = all_logits ? sz(n) : 1;
  if (all_logits) return {logits_out_.data(), sz(n * V)};
  return {logits_.data(), sz(V)};
}

std::span<const float> session::decode(const batch& b) {
  const std::int64_t V = m_->cfg().n_vocab, d = m_->cfg().n_embd, n = static_cast<std::int64_t>(b.size());
  if (b.empty()) throw std::invalid_argument("decode: empty batch");
  check(b.tokens(), b.seqs());
  std::size_t marked = 0;
  for (const auto f : b.logits()) marked += f != 0;
  if (logits_out_.size() < marked * sz(V)) logits_out_.resize(marked * sz(V));
  if (keep_embd_ && embd_out_.size() < marked * sz(d)) embd_out_.resize(marked * sz(d));
  std::size_t row = 0;
  for (std::int64_t i = 0; i < n; i += n_batch_) {
    const std::int64_t T = std::min(n_batch_, n - i);
    forward(b.tokens().data() + i, b.seqs().data() + i, b.logits().data() + i, T, outputs::marked,
            logits_out_.data() + row * sz(V), keep_embd_ ? embd_out_.data() + row * sz(d) : nullptr);
    for (std::int64_t t = 0; t < T; ++t) row += b.logits()[sz(i + t)] != 0;
  }
  n_out_ = marked;
  return {logits_out_.data(), marked * sz(V)};
}

// y = W xq_ for up to three projections sharing the quantized input, rows split over threads.
void session::matmul(std::initializer_list<mm_job> jobs, std::int64_t T) {
  std::int64_t total = 0;
  for (const auto& j : jobs) total += j.L->w.M();
  const auto body = [&](std::int64_t b, std::int64_t e) {
    std::int64_t off = 0;
    for (const auto& j : jobs) {
      const std::int64_t M = j.L->w.M(), r0 = std::max(b, off) - off, r1 = std::min(e, off + M) - off;
      off += M;
      if (r0 >= r1) continue;
      if (T == 1)
        j.L->w.gemv(xq_, j.y, r0, r1);
      else
        j.L->w.gemm(xq_, j.y, j.ldy, r0, r1);
      if (j.L->has_scale || j.L->bias) {
        for (std::int64_t t = 0; t < T; ++t) {
          float* y = j.y + t * j.ldy;
          if (j.L->has_scale)
            for (std::int64_t r = r0; r < r1; ++r) y[r] *= j.L->scale;
          if (j.L->bias)
            for (std::int64_t r = r0; r < r1; ++r) y[r] += j.L->bias[r];
        }
      }
    }
  };
  // Decode streams every weight once: rows are claimed at run time so the threads finish
  // together (a static split waited on the slower memory path at every join). Prefill chunks
  // are compute-bound and even; they keep the static split, and so do LUT GEMVs, which build
  // their activation tables once per call.
  bool tables = false;
  for (const auto& j : jobs) tables = tables || j.L->w.decode_builds_tables();
  if (T == 1 && !tables)
    pool_->parallel_for_dynamic(total, kDecodeGrain, body);
  else
    pool_->parallel_for(total, kRowGrain, body);
}

void session::quantize(const float* x, std::int64_t T, std::int64_t K) { xq_.quantize(x, T, K, K, m_->activation_mode()); }

void session::norm_rows(const float* x, const float* g, float* y, std::int64_t T, std::int64_t n, float eps) {
  pool_->parallel_for(T, 4, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t t = b; t < e; ++t) detail::rms_norm(x + t * n, g, y + t * n, n, eps);
  });
}

// One head vector at position p: NeoX pairs (i, i + n_rot/2) or normal pairs (2i, 2i + 1).
void session::rope(float* v, std::int64_t p) const noexcept {
  const config& c = m_->cfg();
  const std::int64_t half = c.n_rot / 2;
  const float* cs = rope_.data() + 2 * p * half;
  if (c.rope == rope_style::neox) {
    for (std::int64_t i = 0; i < half; ++i) {
      const float co = cs[2 * i], si = cs[2 * i + 1];
      const float a = v[i], b = v[i + half];
      v[i] = a * co - b * si;
      v[i + half] = a * si + b * co;
    }
  } else {
    for (std::int64_t i = 0; i < half; ++i) {
      const float co = cs[2 * i], si = cs[2 * i + 1];
      const float a = v[2 * i], b = v[2 * i + 1];
      v[2 * i] = a * co - b * si;
      v[2 * i + 1] = a * si + b * co;
    }
  }
}

// Cache layout: [seq][layer][kv_head][position][head_dim] (one head's keys are contiguous).
template <class T>
T* session::kv_at(aligned_buffer<T>& cache, std::int64_t s, std::int64_t l, std::int64_t kvh, std::int64_t p) noexcept {
  const config& c = m_->cfg();
  return cache.data() + (((s * c.n_layer + l) * c.n_head_kv + kvh) * n_ctx_ + p) * c.head_dim;
}

template <class T>
void session::rope_and_store(std::int64_t l, std::int64_t T_, aligned_buffer<T>& kc, aligned_buffer<T>& vc) {
  const config& c = m_->cfg();
  const std::int64_t qd = c.q_dim(), dkv = c.n_embd_kv(), hd = c.head_dim;
  pool_->parallel_for(T_, 8, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t t = b; t < e; ++t) {
      const std::int64_t p = pos_[sz(t)], s = seq_[sz(t)];
      for (std::int64_t h = 0; h < c.n_head; ++h) rope(q_.data() + t * qd + h * hd, p);
      for (std::int64_t h = 0; h < c.n_head_kv; ++h) {
        float* k = k_.data() + t * dkv + h * hd;
        rope(k, p);
        store(kv_at(kc, s, l, h, p), k, hd);
        store(kv_at(vc, s, l, h, p), v_.data() + t * dkv + h * hd, hd);
      }
    }
  });
}

// One query (token t of the chunk, head h) against its sequence's cached positions 0 .. pos.
template <class T>
void session::attend(std::int64_t l, std::int64_t t, std::int64_t h, float* s, aligned_buffer<T>& kc,
                     aligned_buffer<T>& vc, const detail::attn_kernels<T>& ak) {
  const config& c = m_->cfg();
  const std::int64_t hd = c.head_dim, p = pos_[sz(t)], sq = seq_[sz(t)], kvh = h / c.n_gqa(), qd = c.q_dim();
  const float* q = q_.data() + t * qd + h * hd;
  const T* K = kv_at(kc, sq, l, kvh, 0);
  const T* Vc = kv_at(vc, sq, l, kvh, 0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  ak.dots(q, K, p + 1, hd, s);
  float mx = -std::numeric_limits<float>::infinity();
  for (std::int64_t j = 0; j <= p; ++j) {
    s[j] *= scale;
    mx = std::max(mx, s[j]);
  }
  double sum = 0.0;
  for (std::int64_t j = 0; j <= p; ++j) {
    s[j] = std::exp(s[j] - mx);
    sum += static_cast<double>(s[j]);
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (std::int64_t j = 0; j <= p; ++j) s[j] *= inv;
  ak.wsum(s, Vc, p + 1, hd, att_.data() + t * qd + h * hd);
}

// One token: heads split in contiguous ranges (heads sharing a KV head stay on one thread and
// reuse its cached rows). Several: tokens round-robin (later tokens see more positions, so
// contiguous chunks would leave the first threads idle), all heads of a token together.
template <class T>
void session::attention(std::int64_t l, std::int64_t T_, aligned_buffer<T>& kc, aligned_buffer<T>& vc,
                        const detail::attn_kernels<T>& ak) {
  const std::int64_t H = m_->cfg().n_head;
  pool_->run([&](int i, int nt) {
    float* s = scores_.data() + static_cast<std::int64_t>(i) * n_ctx_;
    if (T_ == 1) {
      const auto [b, e] = thread_pool::split(H, 1, i, nt);
      for (std::int64_t h = b; h < e; ++h) attend(l, 0, h, s, kc, vc, ak);
    } else {
      for (std::int64_t t = i; t < T_; t += nt)
        for (std::int64_t h = 0; h < H; ++h) attend(l, t, h, s, kc, vc, ak);
    }
  });
}

void session::attention_block(std::int64_t l, std::int64_t T) {
  if (kv_ == kv_type::f32) {
    rope_and_store(l, T, kf_, vf_);
    attention(l, T, kf_, vf_, attn32_);
  } else {
    rope_and_store(l, T, kh_, vh_);
    attention(l, T, kh_, vh_, attn16_);
  }
}

// a = act(g) * u over the T x n_ff elements.
void session::glu(std::int64_t T) {
  const std::int64_t ff = m_->cfg().n_ff;
  const bool silu = m_->cfg().act == ffn_activation::silu;
  // Elementwise; SiLU's exp is worth splitting even for one token, ReLU² only for batches.
  // The activation is chosen outside the loops, and ReLU clears negatives by their sign bit,
  // so that loop vectorizes (a float compare does not without -fno-trapping-math; as a scalar
  // compare-and-jump per element it was about 1% of a 2B4T decode). The same values as
  // std::max(g, 0) for every non-NaN g (-0 squares to +0 either way).
  pool_->parallel_for(T * ff, silu ? 2048 : 16384, [&](std::int64_t b, std::int64_t e) {
    float* g = g_.data();
    const float* u = u_.data();
    if (silu) {
      for (std::int64_t i = b; i < e; ++i) g[i] = (g[i] / (1.0f + std::exp(-g[i]))) * u[i];
    } else {
      for (std::int64_t i = b; i < e; ++i) {
        std::int32_t bits;
        std::memcpy(&bits, g + i, sizeof bits);
        bits &= ~(bits >> 31);
        float r;
        std::memcpy(&r, &bits, sizeof r);
        g[i] = (r * r) * u[i];
      }
    }
  });
}

// T tokens (of sequences seq[], all zero for sequence 0) at their sequences' next positions.
// Writes the logits of the output rows (mode; marked: marks[t] != 0) to `logits`, rows n_vocab
// apart, and with `embd` their final hidden states.
void session::forward(const std::int32_t* tok, const std::int32_t* seq, const std::uint8_t* marks, std::int64_t T,
                      outputs mode, float* logits, float* embd) {
  const model& m = *m_;
  const config& c = m.cfg();
  const std::int64_t d = c.n_embd, qd = c.q_dim(), dkv = c.n_embd_kv(), ff = c.n_ff;
  for (std::int64_t t = 0; t < T; ++t) {
    seq_[sz(t)] = seq[t];
    pos_[sz(t)] = seq_len_[sz(seq[t])]++;
  }
  const dense_view& E = m.token_embd();
  for (std::int64_t t = 0; t < T; ++t)
    dequantize_row(E.type, E.data + static_cast<std::size_t>(tok[t]) * E.row_bytes, x_.data() + t * d, d);

  for (std::int64_t l = 0; l < c.n_layer; ++l) {
    const block_weights& B = m.blocks()[sz(l)];
    // attention
    norm_rows(x_.data(), B.attn_norm, h_.data(), T, d, c.norm_eps);
    quantize(h_.data(), T, d);
    matmul({{&B.q, q_.data(), qd}, {&B.k, k_.data(), dkv}, {&B.v, v_.data(), dkv}}, T);
    attention_block(l, T);
    if (B.attn_sub_norm) norm_rows(att_.data(), B.attn_sub_norm, att_.data(), T, qd, c.norm_eps);
    quantize(att_.data(), T, qd);
    matmul({{&B.o, tmp_.data(), d}}, T);
    add_rows(x_.data(), tmp_.data(), T * d);
    // feed-forward
    norm_rows(x_.data(), B.ffn_norm, h_.data(), T, d, c.norm_eps);
    quantize(h_.data(), T, d);
    matmul({{&B.gate, g_.data(), ff}, {&B.up, u_.data(), ff}}, T);
    glu(T);
    if (B.ffn_sub_norm) norm_rows(g_.data(), B.ffn_sub_norm, g_.data(), T, ff, c.norm_eps);
    quantize(g_.data(), T, ff);
    matmul({{&B.down, tmp_.data(), d}}, T);
    add_rows(x_.data(), tmp_.data(), T * d);
  }

  // The output rows: none, the last, all, or the marked ones, gathered into h_.
  std::int64_t rows = 0;
  switch (mode) {
    case outputs::none: break;
    case outputs::last: rows_[0] = T - 1, rows = 1; break;
    case outputs::all:
      for (std::int64_t t = 0; t < T; ++t) rows_[sz(rows++)] = t;
      break;
    case outputs::marked:
      for (std::int64_t t = 0; t < T; ++t)
        if (marks[t]) rows_[sz(rows++)] = t;
      break;
  }
  if (rows == 0) return;
  pool_->parallel_for(rows, 4, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r)
      detail::rms_norm(x_.data() + rows_[sz(r)] * d, m.output_norm(), h_.data() + r * d, d, c.output_norm_eps);
  });
  if (embd) std::memcpy(embd, h_.data(), sz(rows * d) * sizeof(float));
  const dense_view& H = m.head();
  head_x_.prepare_batch(H.type, h_.data(), rows, d, d);
  const dense_kernels& dk = m.head_kernels();
  const std::int64_t V = c.n_vocab;
  if (rows == 1) {
    pool_->parallel_for_dynamic(V, kDecodeGrain, [&](std::int64_t b, std::int64_t e) {
      dense_gemv(dk, H.type, H.data, H.row_bytes, head_x_, logits, b, e);
    });
  } else {
    pool_->parallel_for(V, 64, [&](std::int64_t b, std::int64_t e) {
      dense_gemm(dk, H.type, H.data, H.row_bytes, head_x_, logits, static_cast<std::size_t>(V), b, e);
    });
  }
}

std::vector<float> embed(session& s, std::span<const std::int32_t> tokens, pooling p, int seq) {
  if (p == pooling::none) throw std::invalid_argument("embed: pooling none gives no single embedding; use embeddings()");
  s.seq_clear(seq);
  batch b;
  for (const std::int32_t t : tokens) b.add(t, seq, true);
  (void)s.decode(b);
  const std::span<const float> rows = s.embeddings();
  const std::size_t d = static_cast<std::size_t>(s.get_model().cfg().n_embd), n = tokens.size();
  std::vector<float> out(d, 0.0f);
  if (p == pooling::mean) {
    std::vector<double> acc(d, 0.0);
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t i = 0; i < d; ++i) acc[i] += rows[r * d + i];
    for (std::size_t i = 0; i < d; ++i) out[i] = static_cast<float>(acc[i] / static_cast<double>(n));
  } else {
    const std::size_t r = p == pooling::cls ? 0 : n - 1;
    std::copy(rows.begin() + static_cast<std::ptrdiff_t>(r * d), rows.begin() + static_cast<std::ptrdiff_t>((r + 1) * d),
              out.begin());
  }
  return out;
}

}  // namespace bitnet::run
