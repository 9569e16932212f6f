// bitnet/runner/session.hpp - evaluation state: KV cache, scratch, the forward pass.
//
// A session holds the KV cache of n_seq sequences (slots), n_ctx positions each, and scratch
// for n_batch tokens. Two ways in:
//   eval(tokens)      appends tokens to sequence 0 and returns the logits of the last one (or,
//                     with all_logits, of every one): the single-sequence path the CLI,
//                     perplexity and the benchmark use.
//   decode(batch)     tokens of any sequences in one forward pass (a server's continuous
//                     batching): each token goes at its sequence's next position; logits come
//                     back for the tokens the batch marks, in batch order. A sequence's tokens
//                     in one batch see each other causally.
// Sequences are independent: seq_clear(s) empties a slot for reuse, seq_truncate(s, n) keeps
// its first n positions (later tokens overwrite the rest).
//
// Forward pass (spec bitnet-models.md section 4; config.hpp for the architectures), per token
// at position p of its sequence:
//   x = token_embd[id]
//   per layer: h = RMSNorm(x, attn_norm); q, k, v = W h (one quantization of h shared by all
//   three); RoPE on q, k (NeoX or normal, config::rope); append k, v to the sequence's cache;
//   causal softmax attention, consecutive query heads sharing a KV head;
//   [bitnet archs: o = RMSNorm(o, attn_sub_norm)]; x += W_o o; h = RMSNorm(x, ffn_norm);
//   g, u = W h (shared quantization); a = act(g) * u (SiLU or ReLU²);
//   [bitnet archs: a = RMSNorm(a, ffn_sub_norm)]; x += W_down a.
//   logits = head * RMSNorm(x, output_norm)
// Numerics: every projection through the library kernels with per-token int8 activations
// (bitnet.cpp's I2_S semantics) or, on request, Q8_K per 256-block (ggml's TQ semantics).
// RMSNorm as ggml; RoPE angles by ggml's float recurrence theta_{i+1} = theta_i * powf(base,
// -2/n_rot), tabulated per position; softmax exp(s - max), sum in double, times float(1/sum);
// the head sees x as its dense kernel defines (F16 weights: x rounded to fp16, as ggml). The
// KV cache holds f32 (no rounding) or, with kv_type::f16, keys and values rounded to f16 as
// llama.cpp's default cache.
//
// Threads: the pool splits the rows of every projection (q, k and v in one region, gate and up
// in one), the attention heads (one token) or tokens (a batch), and the head's vocabulary rows.
// Rows and heads are independent and no reduction crosses threads, and a token's rows are
// computed by the same code whatever the batch: results are bit-identical for any thread
// count, for prefill and decode, and for a token alone or batched with other sequences'.
//
// Errors: context_full (nothing evaluated) when tokens do not fit; std::out_of_range for a
// token id outside the vocabulary or a bad sequence index; std::invalid_argument for an empty
// batch. The session allocates everything at construction; eval() of one token allocates
// nothing (batches with several logits rows size their output buffer on first use).
#pragma once

#include <cstdint>    // fixed-width integers
#include <initializer_list>  // matmul job lists
#include <span>       // views
#include <stdexcept>  // errors
#include <string>     // messages
#include <vector>     // buffers

#include "bitnet/runner/attention.hpp"
#include "bitnet/runner/model.hpp"

namespace bitnet::run {

// Element type of the KV cache. f16 halves its memory and the attention's memory traffic;
// keys and values are rounded to f16 when stored (as llama.cpp's default cache).
enum class kv_type { f32, f16 };

inline const char* kv_type_name(kv_type t) noexcept { return t == kv_type::f32 ? "f32" : "f16"; }

// eval() / decode() would pass the end of a sequence's context.
class context_full : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
// The checks an evaluation of one sequence makes before touching state: at least one token,
// every id inside the vocabulary of V tokens (std::out_of_range), and room for all of them after
// position pos in a context of n_ctx (context_full). session and precise_session use it.
inline void check_eval(std::span<const std::int32_t> tokens, std::int64_t V, std::int64_t pos, std::int64_t n_ctx) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  if (n == 0) throw std::invalid_argument("eval: no tokens");
  for (const std::int32_t id : tokens)
    if (id < 0 || id >= V)
      throw std::out_of_range("eval: token id " + std::to_string(id) + " is outside the vocabulary of " +
                              std::to_string(V) + " tokens");
  if (pos + n > n_ctx)
    throw context_full("context full: " + std::to_string(n) + " more token" + (n == 1 ? "" : "s") + " at position " +
                       std::to_string(pos) + " would pass the context size of " + std::to_string(n_ctx) + " (-c)");
}
}  // namespace detail

// A sequence that tokens are appended to, returning the logits of the last one: what the
// generation loop (generate.hpp) drives. session implements it for its sequence 0.
class evaluator {
 public:
  virtual ~evaluator() = default;
  virtual std::span<const float> eval(std::span<const std::int32_t> tokens) = 0;
  virtual std::int64_t pos() const = 0;    // tokens evaluated so far
  virtual std::int64_t n_ctx() const = 0;  // positions it holds
};

struct session_options {
  std::int64_t n_ctx = 2048;   // KV cache positions per sequence
  std::int64_t n_batch = 64;   // tokens per forward pass (larger inputs are split)
  kv_type kv = kv_type::f32;
  int n_seq = 1;               // sequences (KV cache slots)
  bool embeddings = false;     // also keep the output tokens' final hidden states (embeddings())
};

// Tokens of one or more sequences for session::decode.
class batch {
 public:
  void add(std::int32_t token, int seq, bool logits) {
    tokens_.push_back(token);
    seqs_.push_back(seq);
    logits_.push_back(logits ? 1 : 0);
  }
  void clear() noexcept {
    tokens_.clear();
    seqs_.clear();
    logits_.clear();
  }
  std::size_t size() const noexcept { return tokens_.size(); }
  bool empty() const noexcept { return tokens_.empty(); }
  std::span<const std::int32_t> tokens() const noexcept { return tokens_; }
  std::span<const std::int32_t> seqs() const noexcept { return seqs_; }
  std::span<const std::uint8_t> logits() const noexcept { return logits_; }

 private:
  std::vector<std::int32_t> tokens_, seqs_;
  std::vector<std::uint8_t> logits_;
};

class session : public evaluator {
 public:
  session(const model& m, thread_pool& pool, const session_options& o);
  session(const model& m, thread_pool& pool, std::int64_t n_ctx, std::int64_t n_batch = 64, kv_type kv = kv_type::f32)
      : session(m, pool, session_options{n_ctx, n_batch, kv, 1, false}) {}

  // ---- sequence 0
  // Evaluates `tokens` at positions pos() .. pos()+n-1 and advances pos(). Returns the logits
  // of the last token (n_vocab floats) or, with all_logits, of every token (n rows).
  std::span<const float> eval(std::span<const std::int32_t> tokens, bool all_logits);
  std::span<const float> eval(std::span<const std::int32_t> tokens) override { return eval(tokens, false); }
  std::int64_t pos() const noexcept override { return seq_len_[0]; }
  std::int64_t n_ctx() const noexcept override { return n_ctx_; }
  // Empties every sequence (cached keys and values are overwritten as positions are reused).
  void reset() noexcept;

  // ---- any sequences
  // Evaluates the batch (in chunks of n_batch tokens); returns the logits of its marked tokens,
  // one row of n_vocab per marked token, in batch order.
  std::span<const float> decode(const batch& b);
  int n_seq() const noexcept { return static_cast<int>(seq_len_.size()); }
  std::int64_t seq_pos(int seq) const { return seq_len_.at(static_cast<std::size_t>(seq)); }
  void seq_clear(int seq) { seq_truncate(seq, 0); }
  void seq_truncate(int seq, std::int64_t n);

  // With session_options::embeddings: the final hidden states (after output_norm, n_embd
  // floats per row) of the tokens whose logits the last eval/decode returned, same rows.
  std::span<const float> embeddings() const;

  std::int64_t n_batch() const noexcept { return n_batch_; }
  kv_type kv() const noexcept { return kv_; }
  std::size_t kv_bytes() const noexcept;
  const model& get_model() const noexcept { return *m_; }

 private:
  enum class outputs { none, last, all, marked };
  struct mm_job {
    const linear* L;
    float* y;
    std::int64_t ldy;
  };

  void check(std::span<const std::int32_t> tokens, std::span<const std::int32_t> seqs) const;
  void forward(const std::int32_t* tok, const std::int32_t* seq, const std::uint8_t* marks, std::int64_t T,
               outputs mode, float* logits, float* embd);
  void matmul(std::initializer_list<mm_job> jobs, std::int64_t T);
  void quantize(const float* x, std::int64_t T, std::int64_t K);
  void norm_rows(const float* x, const float* g, float* y, std::int64_t T, std::int64_t n, float eps);
  void rope(float* v, std::int64_t p) const noexcept;
  template <class T> T* kv_at(aligned_buffer<T>& cache, std::int64_t s, std::int64_t l, std::int64_t kvh, std::int64_t p) noexcept;
  template <class T> void rope_and_store(std::int64_t l, std::int64_t T_, aligned_buffer<T>& kc, aligned_buffer<T>& vc);
  template <class T>
  void attend(std::int64_t l, std::int64_t t, std::int64_t h, float* s, aligned_buffer<T>& kc, aligned_buffer<T>& vc,
              const detail::attn_kernels<T>& ak);
  template <class T>
  void attention(std::int64_t l, std::int64_t T_, aligned_buffer<T>& kc, aligned_buffer<T>& vc, const detail::attn_kernels<T>& ak);
  void attention_block(std::int64_t l, std::int64_t T);
  void glu(std::int64_t T);

  const model* m_;
  thread_pool* pool_;
  std::int64_t n_ctx_, n_batch_;
  kv_type kv_;
  bool keep_embd_;
  std::vector<std::int64_t> seq_len_;                 // positions cached per sequence
  detail::attn_kernels<float> attn32_;
  detail::attn_kernels<std::uint16_t> attn16_;
  aligned_buffer<float> x_, h_, q_, k_, v_, att_, tmp_, g_, u_;  // [n_batch][width] scratch
  aligned_buffer<float> kf_, vf_;                     // f32 cache: [seq][layer][kv_head][n_ctx][head_dim]
  aligned_buffer<std::uint16_t> kh_, vh_;             // f16 cache, same layout
  aligned_buffer<float> scores_;                      // [thread][n_ctx]
  aligned_buffer<float> rope_;                        // [n_ctx][n_rot/2][cos, sin]
  std::vector<std::int64_t> pos_;                     // [n_batch]: position of each token of a chunk
  std::vector<std::int32_t> seq_, zeros_;             // [n_batch]: sequence of each token; all zero
  std::vector<std::int64_t> rows_;                    // [n_batch]: the chunk's output rows
  std::vector<float> logits_, logits_out_, embd_out_;
  std::size_t n_out_ = 0;                             // rows in the last result
  activations xq_;
  dense_activation head_x_;
};

// An embedding of a token sequence: evaluates `tokens` as sequence `seq` from its start (the
// sequence is cleared first) and pools the final hidden states of all its positions (the head's
// input, after output_norm): mean, the first (cls) or the last. The session needs
// session_options::embeddings; pooling::none is refused (std::invalid_argument). A model's own
// choice, for embedding models, is config::pool ({arch}.pooling_type). Not normalized.
std::vector<float> embed(session& s, std::span<const std::int32_t> tokens, pooling p, int seq = 0);

}  // namespace bitnet::run
