// bitnet/runner/model.hpp - a model from a GGUF file: what it is, its weights, how they run.
//
// Opening is two steps, so a host can check a prompt before the slow part:
//   model_file::open(path)     maps and validates the file, reads the hyperparameters
//                              (config.hpp) and the tokenizer; no weight is touched.
//   model::load(file, opts, pool)
//                              reads every tensor, plans each projection (kernels.hpp: the
//                              planner decides layouts and kernels, separately from reading)
//                              and repacks it, tensors spread over the pool's threads.
//   model::open(path, opts, pool) does both.
// After loading, the file pages of repacked tensors are released (madvise), so weights are not
// resident twice; norm gains and biases are F32 copies; the output head (token_embd, or a
// llama file's output.weight) is copied once into memory advised for huge pages, which the
// head, read in full every token, streams about 1.5x faster than 4 KiB file pages.
//
// Projection tensors may be ternary (I2_S, TQ2_0, TQ1_0) or float (F32, F16, BF16, as
// bitnet.cpp's converter writes them before quantizing): a float tensor whose values are
// exactly {-s, 0, +s} loads losslessly as ternary; any other is ternarized with BitNet's
// absmean rule (s = mean |W|, w = clamp(round(W / s), -1, 1)) and info().notes says so.
//
// Errors are gguf::error (file, tensor or key, and what was expected) or std::invalid_argument
// (options); nothing here prints or exits.
#pragma once

#include <cstddef>   // std::size_t
#include <cstdint>   // fixed-width integers
#include <optional>  // the tokenizer (a file may have none)
#include <string>    // names
#include <vector>    // layers, owned copies

#include <bitnet/dense.hpp>  // the head's kernels
#include <bitnet/gguf.hpp>   // the model file

#include "bitnet/runner/config.hpp"
#include "bitnet/runner/kernels.hpp"
#include "bitnet/runner/thread_pool.hpp"
#include "bitnet/runner/tokenizer.hpp"

namespace bitnet::run {

// The cheap part of opening a model: the file, its hyperparameters and its tokenizer.
class model_file {
 public:
  static model_file open(const std::string& path);
  explicit model_file(gguf::file f);

  const gguf::file& file() const noexcept { return file_; }
  const config& cfg() const noexcept { return cfg_; }
  // The file's tokenizer (tokenizer.ggml.*), or nullptr when it has none.
  const tok::tokenizer* tokenizer() const noexcept { return tok_ ? &*tok_ : nullptr; }
  // The tokenizer, or a gguf::error naming the file when it has none.
  const tok::tokenizer& require_tokenizer() const;
  // tokenizer.chat_template, or "" when absent.
  const std::string& chat_template() const noexcept { return chat_template_; }
  // Things read and then ignored (an out-of-range padding id, ...).
  const std::vector<std::string>& warnings() const noexcept { return warnings_; }

 private:
  friend class model;
  gguf::file file_;
  config cfg_;
  std::optional<tok::tokenizer> tok_;
  std::string chat_template_;
  std::vector<std::string> warnings_;
};

struct load_options : plan_options {};

// One projection y = W x (+ optional per-tensor scale, then optional bias).
struct linear {
  projection w;
  const float* bias = nullptr;  // [M] or null
  float scale = 1.0f;           // `bitnet` arch: optional blk.N.*.scale
  bool has_scale = false;
  tensor_type file_type = tensor_type::i2_s;
};

struct block_weights {
  const float* attn_norm = nullptr;
  linear q, k, v;
  const float* attn_sub_norm = nullptr;  // null for llama
  linear o;
  const float* ffn_norm = nullptr;
  linear gate, up;
  const float* ffn_sub_norm = nullptr;   // null for llama
  linear down;
};

// A dense matrix of `rows` rows of `cols` values (token_embd, the head).
struct dense_view {
  tensor_type type = tensor_type::f16;
  const std::uint8_t* data = nullptr;
  std::size_t row_bytes = 0;
  std::int64_t rows = 0, cols = 0;
};

// What a loaded model is and how it runs, for summaries, --json and a server's model list.
struct model_info {
  std::string arch, name;                  // general.architecture, general.name
  std::int64_t n_layer = 0, n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_vocab = 0;
  std::int64_t n_ctx_train = 0;
  std::string rope, activation;            // rope_style_name, activation_name
  bool sub_norms = false;
  std::string ternary_types;               // "I2_S", "I2_S+TQ2_0", "F16" ...
  std::string head_tensor;                 // "token_embd.weight" (tied) or "output.weight"
  std::string head_type;                   // its type
  std::string gemv, gemm, head_kernel;     // what decode, prefill and the head run
  std::string weights_layout;              // the layout decode reads: "t2/b128", "lutd/g3/r32", "tuned"
  std::size_t repacked_bytes = 0;          // t2 codes
  std::size_t lut_bytes = 0, lut_copies = 0;
  std::size_t ternary_params = 0;          // weights of all projections
  std::vector<std::string> notes;          // what loading did that a user may want to know (ignored tensors, ternarization)
  std::vector<std::string> warnings;       // what was ignored that should not have been (tuning file, vocabulary ids)
  std::string weights_summary() const;     // "418.0 MiB as lutd/g3/r32" and the like
};

class model {
 public:
  static model load(model_file&& file, const load_options& opt, thread_pool& pool);
  static model load(gguf::file f, const load_options& opt, thread_pool& pool) {
    return load(model_file(std::move(f)), opt, pool);
  }
  static model open(const std::string& path, const load_options& opt, thread_pool& pool) {
    return load(model_file::open(path), opt, pool);
  }

  const config& cfg() const noexcept { return cfg_; }
  const model_info& info() const noexcept { return info_; }
  const gguf::file& file() const noexcept { return mf_.file_; }
  const tok::tokenizer* tokenizer() const noexcept { return mf_.tokenizer(); }
  const tok::tokenizer& require_tokenizer() const { return mf_.require_tokenizer(); }
  const std::string& chat_template() const noexcept { return mf_.chat_template(); }

  // The t2 kernels (decode / prefill where no LUT kernel runs; --precise's exact dot products).
  const kernel_set& kernels() const noexcept { return planner_.t2_kernels(); }
  const dense_kernels& head_kernels() const noexcept { return dk_; }
  act_quant activation_mode() const noexcept { return act_; }
  const std::vector<block_weights>& blocks() const noexcept { return blocks_; }
  const dense_view& token_embd() const noexcept { return embd_; }  // the embedding table
  const dense_view& head() const noexcept { return head_; }        // the output head
  const float* output_norm() const noexcept { return output_norm_; }
  const float* rope_freqs() const noexcept { return rope_freqs_; }  // [n_rot/2] or null
  // The default LUT pair when it runs at least one projection (not with a tuning file), else null.
  const lut_kernel_pair* default_lut_pair() const noexcept {
    return planner_.default_luts() && info_.lut_copies > 0 ? &*planner_.default_luts() : nullptr;
  }
  const std::string& tuning_warning() const noexcept { return planner_.tuning_warning(); }
  // Ternary weight bytes one decoded token reads (the layout each projection's GEMV uses).
  std::size_t decode_weight_bytes() const noexcept;

  model(model&&) noexcept = default;
  model& operator=(model&&) noexcept = default;

 private:
  model(model_file&& mf, const load_options& opt);
  void load_weights(thread_pool& pool);
  void fill_info();

  model_file mf_;
  config cfg_;
  planner planner_;
  act_quant act_ = act_quant::per_token;
  dense_kernels dk_;
  std::vector<block_weights> blocks_;
  dense_view embd_, head_;
  aligned_buffer<std::uint8_t> head_copy_;  // the head, when copied out of the mapping
  const float* output_norm_ = nullptr;
  const float* rope_freqs_ = nullptr;
  std::vector<std::vector<float>> owned_;  // F32 tensors copied out of the file
  model_info info_;
};

}  // namespace bitnet::run
