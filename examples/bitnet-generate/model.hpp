// bitnet-generate/model.hpp - a BitNet b1.58 model from GGUF: config, weights, blocks, forward.
//
// Reads top to bottom:
//   config   read_config(file): the {arch}.* hyperparameters (spec bitnet-models.md section 2),
//            validated; errors name the file, the key (and its offset) and what was expected.
//   weights  model::load(file, options, pool): every ternary projection repacked once into the
//            kernels' layout (ks.block()), after which the tensors' file pages are released
//            (madvise), so they are not resident twice; norm gains and biases are F32 views into the mapping;
//            token_embd serves as embedding table and as the tied output head (output.weight,
//            if present, is ignored, as bitnet.cpp does); from a mapped file it is copied once into
//            memory advised for huge pages (and its file pages released), which the head, read in
//            full every token, streams about 1.5x faster than 4 KiB file pages.
//   blocks   the per-layer weights (block_weights).
//   forward  session: KV cache sized by n_ctx, scratch for n_batch tokens, eval() for one token
//            (decode: GEMV) or many (prefill: the batched GEMM in chunks of n_batch), logits for
//            the last position or, on request, for every position.
//
// Forward pass (spec section 4, `build_bitnet_158` / `build_bitnet`), per token at position p:
//   x = token_embd[id]
//   per layer: h = RMSNorm(x, attn_norm); q, k, v = W·h (one quantization of h shared by all
//   three); NeoX RoPE on q, k; append k, v to the cache; causal softmax attention with
//   consecutive query heads sharing a KV head; o = RMSNorm(o, attn_sub_norm);
//   x += W_o·o; h = RMSNorm(x, ffn_norm); g, u = W·h (shared quantization);
//   a = act(g) ⊙ u with act = SiLU (`bitnet`) or ReLU² (`bitnet-b1.58`, `bitnet-25`);
//   a = RMSNorm(a, ffn_sub_norm); x += W_down·a.
//   logits = token_embd · RMSNorm(x, output_norm).
// Numerics: every ternary product goes through the library kernels with per-token int8
// activations (bitnet.cpp I2_S semantics) by default, or Q8_K per 256-block (ggml's TQ
// semantics) on request. RMSNorm as ggml (sum of squares in double, mean stored as float,
// 1/sqrtf(mean + eps), scale, then gain). RoPE angles by ggml's float recurrence
// theta_{i+1} = theta_i * powf(base, -2/n_rot), tabulated per position. Softmax: exp(s - max),
// sum in double, times float(1/sum). The head sees x as its dense kernel defines (F16 weights:
// x rounded to fp16, as ggml). The KV cache holds f32 by default (2 * n_layer * n_ctx *
// n_embd_kv * 4 bytes; no rounding) or, with kv_type::f16, keys and values rounded to f16 as
// llama.cpp's default cache does (half the memory and half the attention's memory traffic).
//
// Threads: a thread_pool splits the rows of every matrix product (q, k and v in one region,
// gate and up in one region), the attention heads (decode) or query tokens (prefill), and the
// vocabulary rows of the head. Attention loops use AVX2/F16C when the kernels' arch has AVX2,
// else portable loops; one choice per session. Rows
// and heads are independent and no reduction crosses threads, so results are bit-identical
// for any thread count. Decode and prefill run the same per-row and per-query code, so
// prefilling N tokens gives the same logits as decoding them one by one.
//
// Context: eval() refuses (throws context_full, state unchanged) a batch that would pass
// n_ctx positions; nothing wraps or is silently dropped.
// Allocation: the session allocates everything at construction; eval() of one token allocates
// nothing (all-position logits allocate their output buffer on first use).
#pragma once

#include <algorithm>    // std::max, std::min, std::fill
#include <cmath>        // std::sqrt, std::exp, std::pow, std::cos, std::sin, std::isfinite
#include <cstdint>      // fixed-width integers
#include <cstring>      // std::memcpy
#include <initializer_list>  // matmul job lists
#include <memory>       // LUT copies picked by a tuning file
#include <limits>       // infinity
#include <optional>     // offsets in errors
#include <span>         // views
#include <stdexcept>    // errors
#include <string>       // names, messages
#include <string_view>  // keys
#include <utility>      // std::move
#include <vector>       // layers, owned copies

#include <bitnet/bitnet.hpp>  // ternary kernels, repack, activations
#include <bitnet/dense.hpp>   // embedding / head GEMV
#include <bitnet/gguf.hpp>    // the model file
#include <bitnet/tuning.hpp>  // per-shape kernel picks (LUT GEMV / GEMM) from a tuning file

#if BITNET_X86
#include <immintrin.h>  // AVX2 / F16C attention loops
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>  // madvise: drop the file pages of repacked tensors
#include <unistd.h>    // sysconf(_SC_PAGESIZE)
#endif
#if defined(__GLIBC__)
#include <malloc.h>  // malloc_trim: return the repack temporaries' heap to the system
#endif

#include "thread_pool.hpp"

namespace bitnet::run {

// ================================================================ config

enum class ffn_activation { silu, relu_sqr };

inline const char* activation_name(ffn_activation a) noexcept { return a == ffn_activation::silu ? "silu" : "relu2"; }

struct config {
  std::string arch;        // general.architecture: bitnet, bitnet-b1.58 or bitnet-25
  ffn_activation act = ffn_activation::relu_sqr;
  std::int64_t n_vocab = 0;      // rows of token_embd (set by model::load; the vocab_size key if read alone)
  std::int64_t n_ctx_train = 0;  // {arch}.context_length
  std::int64_t n_embd = 0, n_layer = 0, n_ff = 0, n_head = 0, n_head_kv = 0;
  std::int64_t head_dim = 0, n_rot = 0;
  float rope_base = 10000.0f, norm_eps = 0.0f;
  // Epsilon of the final RMSNorm (output_norm): {arch}.output_norm.layer_norm_rms_epsilon if
  // present (bitnet-convert writes it when the block norms and the final norm differ), else norm_eps.
  float output_norm_eps = 0.0f;

  std::int64_t n_embd_kv() const noexcept { return head_dim * n_head_kv; }
  std::int64_t n_gqa() const noexcept { return n_head / n_head_kv; }
};

namespace detail {

[[noreturn]] inline void file_error(const gguf::file& f, std::optional<std::uint64_t> offset, const std::string& m) {
  throw gguf::error(f.path(), offset, m);
}

inline std::optional<std::uint64_t> key_offset(const gguf::file& f, std::string_view key) {
  if (const auto* kv = f.find(key)) return kv->offset;
  return std::nullopt;
}

// A u32 hyperparameter, or a per-layer array of them whose entries must all be equal.
inline std::int64_t layer_uint(const gguf::file& f, const std::string& key, std::int64_t n_layer, bool required,
                               std::int64_t dflt) {
  if (!f.has(key)) {
    if (required) file_error(f, std::nullopt, "missing required key '" + key + "' (an unsigned integer)");
    return dflt;
  }
  std::uint64_t v = 0;
  if (f.type_of(key) == gguf::value_type::array) {
    const auto a = f.get_uint_array(key);
    if (a.empty()) file_error(f, key_offset(f, key), "key '" + key + "': empty per-layer array");
    if (n_layer > 0 && a.size() != static_cast<std::size_t>(n_layer))
      file_error(f, key_offset(f, key), "key '" + key + "': per-layer array has " + std::to_string(a.size()) +
                                            " entries, expected block_count = " + std::to_string(n_layer));
    for (const auto x : a)
      if (x != a[0])
        file_error(f, key_offset(f, key), "key '" + key + "': per-layer values differ (" + std::to_string(a[0]) +
                                              " and " + std::to_string(x) +
                                              "); this runner needs one value for all layers");
    v = a[0];
  } else {
    v = f.get_uint(key);
  }
  if (v == 0 || v > (std::uint64_t{1} << 31))
    file_error(f, key_offset(f, key), "key '" + key + "': value " + std::to_string(v) +
                                          " is out of range, expected 1 .. 2^31");
  return static_cast<std::int64_t>(v);
}

}  // namespace detail

// Reads and validates the hyperparameters. Throws gguf::error naming the file and key.
inline config read_config(const gguf::file& f) {
  using detail::file_error;
  using detail::key_offset;
  config c;
  if (!f.has("general.architecture"))
    file_error(f, std::nullopt, "missing key 'general.architecture' (expected bitnet, bitnet-b1.58 or bitnet-25)");
  c.arch = std::string(f.get_string("general.architecture"));
  if (!gguf::is_bitnet_arch(c.arch))
    file_error(f, key_offset(f, "general.architecture"),
               "general.architecture is '" + bitnet::detail::gguf_printable(c.arch) +
                   "', expected one of bitnet, bitnet-b1.58, bitnet-25 (this runner only runs BitNet models)");
  c.act = c.arch == "bitnet" ? ffn_activation::silu : ffn_activation::relu_sqr;
  const std::string a = c.arch + ".";

  c.n_layer = detail::layer_uint(f, a + "block_count", 0, true, 0);
  c.n_ctx_train = detail::layer_uint(f, a + "context_length", 0, true, 0);
  c.n_embd = detail::layer_uint(f, a + "embedding_length", 0, true, 0);
  c.n_ff = detail::layer_uint(f, a + "feed_forward_length", c.n_layer, true, 0);
  c.n_head = detail::layer_uint(f, a + "attention.head_count", c.n_layer, true, 0);
  c.n_head_kv = detail::layer_uint(f, a + "attention.head_count_kv", c.n_layer, false, c.n_head);
  if (c.n_embd % c.n_head != 0)
    file_error(f, key_offset(f, a + "attention.head_count"),
               "embedding_length " + std::to_string(c.n_embd) + " is not a multiple of attention.head_count " +
                   std::to_string(c.n_head));
  c.head_dim = c.n_embd / c.n_head;
  if (c.n_head % c.n_head_kv != 0)
    file_error(f, key_offset(f, a + "attention.head_count_kv"),
               "attention.head_count " + std::to_string(c.n_head) + " is not a multiple of attention.head_count_kv " +
                   std::to_string(c.n_head_kv));
  for (const char* k : {"attention.key_length", "attention.value_length"}) {
    const std::string key = a + k;
    if (f.has(key) && static_cast<std::int64_t>(f.get_uint(key)) != c.head_dim)
      file_error(f, key_offset(f, key), "key '" + key + "' is " + std::to_string(f.get_uint(key)) +
                                            ", expected embedding_length / head_count = " +
                                            std::to_string(c.head_dim));
  }
  c.n_rot = detail::layer_uint(f, a + "rope.dimension_count", 0, false, c.head_dim);
  if (c.n_rot % 2 != 0 || c.n_rot > c.head_dim)
    file_error(f, key_offset(f, a + "rope.dimension_count"),
               "rope.dimension_count " + std::to_string(c.n_rot) + " must be even and at most the head size " +
                   std::to_string(c.head_dim));
  if (c.arch != "bitnet" && c.n_rot != c.head_dim)
    file_error(f, key_offset(f, a + "rope.dimension_count"),
               "rope.dimension_count " + std::to_string(c.n_rot) + " must equal the head size " +
                   std::to_string(c.head_dim) + " for " + c.arch);
  const std::string base_key = a + "rope.freq_base";
  c.rope_base = static_cast<float>(f.get_float_or(base_key, 10000.0));
  if (!std::isfinite(c.rope_base) || c.rope_base <= 0.0f)
    file_error(f, key_offset(f, base_key), "key '" + base_key + "' must be a positive number");
  const std::string eps_key = a + "attention.layer_norm_rms_epsilon";
  if (!f.has(eps_key)) file_error(f, std::nullopt, "missing required key '" + eps_key + "' (a float, e.g. 1e-5)");
  c.norm_eps = static_cast<float>(f.get_float(eps_key));
  if (!std::isfinite(c.norm_eps) || c.norm_eps < 0.0f)
    file_error(f, key_offset(f, eps_key), "key '" + eps_key + "' must be a finite number >= 0");
  c.output_norm_eps = c.norm_eps;
  if (const std::string k = a + "output_norm.layer_norm_rms_epsilon"; f.has(k)) {
    c.output_norm_eps = static_cast<float>(f.get_float(k));
    if (!std::isfinite(c.output_norm_eps) || c.output_norm_eps < 0.0f)
      file_error(f, key_offset(f, k), "key '" + k + "' must be a finite number >= 0");
  }
  if (const std::string k = a + "rope.scaling.type"; f.has(k) && f.get_string(k) != "none")
    file_error(f, key_offset(f, k), "key '" + k + "': RoPE scaling is not supported (expected none)");
  if (const std::string k = a + "rope.scaling.factor"; f.has(k) && f.get_float(k) != 0.0 && f.get_float(k) != 1.0)
    file_error(f, key_offset(f, k), "key '" + k + "': RoPE scaling is not supported (expected 1)");
  if (const std::string k = a + "expert_count"; f.has(k) && f.get_uint(k) > 0)
    file_error(f, key_offset(f, k), "key '" + k + "': mixture-of-experts models are not supported");
  if (const std::string k = a + "vocab_size"; f.has(k)) c.n_vocab = static_cast<std::int64_t>(f.get_uint(k));
  return c;
}

// ================================================================ weights

// One ternary projection y = W·x (+ optional per-tensor scale, then optional bias).
struct linear {
  ternary_matrix w;
  tensor_type file_type = tensor_type::i2_s;
  const float* bias = nullptr;  // [M] or null
  float scale = 1.0f;           // `bitnet` arch: optional blk.N.*.scale
  bool has_scale = false;
  // Set when a LUT kernel runs this projection (bit-identical results): the default LUT pair
  // where the CPU has one (lut.hpp, preferred_lut_kernels), or a tuning file's pick for the
  // shape. lut_gemv for decode, lut_gemm for prefill batches, each with its own layout copy
  // (one shared copy when the layouts agree); with both set, w keeps only its shape unless
  // load_options::keep_t2.
  std::shared_ptr<const lut_matrix> lut_v, lut_m;
  lut_gemv_fn lut_gemv = nullptr;
  lut_gemm_fn lut_gemm = nullptr;
};

// ================================================================ blocks

struct block_weights {
  const float* attn_norm = nullptr;
  linear q, k, v;
  const float* attn_sub_norm = nullptr;
  linear o;
  const float* ffn_norm = nullptr;
  linear gate, up;
  const float* ffn_sub_norm = nullptr;
  linear down;
};

// A dense matrix left in the file mapping (token_embd): rows of `cols` values.
struct dense_view {
  tensor_type type = tensor_type::f16;
  const std::uint8_t* data = nullptr;
  std::size_t row_bytes = 0;
  std::int64_t rows = 0, cols = 0;
};

struct load_options {
  kernel_options kernels;                    // arch / gemv / gemm overrides ("" = best)
  act_quant activations = act_quant::per_token;
  std::string tuning;                        // tuning file (tuning.hpp, bitnet-tune); "" = none
  std::int64_t tuning_batch = 128;           // the batch whose GEMM pick serves prefill
  // Without a tuning file or kernel names, run every per-tensor-scaled projection on the CPU's
  // preferred LUT pair when it has one (AVX-512 VNNI + VBMI: the 1.67-bit dot layout).
  bool default_luts = true;
  // The pair to use instead of this CPU's preferred one (tests; hosts with their own pick). Both
  // kernels must read the same layout.
  std::optional<lut_kernel_pair> luts;
  // Keep the t2 codes even when LUT kernels take both decode and prefill (hosts that read
  // linear::w themselves, like --precise); the default LUT pair is then not used.
  bool keep_t2 = false;
};

class model {
 public:
  // Validates and loads; repacks the ternary tensors in parallel on `pool`.
  static model load(gguf::file file, const load_options& opt, thread_pool& pool) {
    model m(std::move(file));
    m.cfg_ = read_config(m.file_);
    m.act_ = opt.activations;
    const cpu_features cpu = cpu_features::detect();
    m.ks_ = select_kernels(cpu, opt.kernels);
    m.dk_ = select_dense_kernels(cpu, opt.kernels.arch);
    if (!opt.tuning.empty()) {
      auto tk = select_tuned_kernels(cpu, opt.kernels, opt.tuning);
      m.tuning_ = std::move(tk.table);
      m.tuning_warning_ = std::move(tk.warning);
      m.tuning_features_ = tk.features;
    }
    m.tuning_batch_ = opt.tuning_batch;
    m.keep_t2_ = opt.keep_t2;
    const cpu_features capped = opt.kernels.arch.empty() ? cpu : cpu.capped(arch_rank(opt.kernels.arch));
    if (opt.default_luts && !opt.keep_t2 && m.tuning_.entries.empty() && opt.kernels.gemv.empty() &&
        opt.kernels.gemm.empty())
      m.default_luts_ = opt.luts ? opt.luts : preferred_lut_kernels(capped);
    const auto runs = [&](const auto& e) { return e.fn && e.runs_on && e.runs_on(capped); };
    if (opt.luts && !(runs(opt.luts->gemv) && runs(opt.luts->gemm)))
      throw std::invalid_argument("load_options::luts: this CPU cannot run " + opt.luts->gemv.name + " and " +
                                  opt.luts->gemm.name);
    if (m.default_luts_ && !(m.default_luts_->gemv.layout == m.default_luts_->gemm.layout))
      throw std::invalid_argument("load_options::luts: " + m.default_luts_->gemv.name + " and " +
                                  m.default_luts_->gemm.name + " read different layouts");
    m.load_weights(pool);
    return m;
  }
  static model load(const std::string& path, const load_options& opt, thread_pool& pool) {
    return load(gguf::file::open(path), opt, pool);
  }

  const config& cfg() const noexcept { return cfg_; }
  const kernel_set& kernels() const noexcept { return ks_; }
  const dense_kernels& head_kernels() const noexcept { return dk_; }
  std::string_view head_kernel_name() const noexcept { return dk_.kernel_name(embd_.type); }
  act_quant activation_mode() const noexcept { return act_; }
  const std::vector<block_weights>& blocks() const noexcept { return blocks_; }
  const dense_view& token_embd() const noexcept { return embd_; }
  const float* output_norm() const noexcept { return output_norm_; }
  const float* rope_freqs() const noexcept { return rope_freqs_; }  // [n_rot/2] or null
  bool has_output_weight() const noexcept { return has_output_weight_; }
  const gguf::file& file() const noexcept { return file_; }
  // "I2_S", "TQ2_0", "TQ1_0" or e.g. "I2_S+TQ2_0" for a mixed file.
  const std::string& ternary_types() const noexcept { return ternary_types_; }
  std::size_t repacked_bytes() const noexcept { return repacked_bytes_; }
  // Why a tuning file was ignored ("" if none was given or it loaded), and the LUT copies made:
  // by the tuning file, or by the default LUT pair (default_lut_pair()).
  const std::string& tuning_warning() const noexcept { return tuning_warning_; }
  // The default LUT pair when it runs at least one projection (not with a tuning file), else null.
  const lut_kernel_pair* default_lut_pair() const noexcept {
    return default_luts_ && lut_tensors_ > 0 ? &*default_luts_ : nullptr;
  }
  // What decode and prefill run: the default LUT pair's kernels and layout, else the t2 ones (a
  // tuning file's per-shape LUT picks come on top of those).
  const std::string& gemv_name() const noexcept {
    return default_lut_pair() ? default_luts_->gemv.name : ks_.gemv.name;
  }
  const std::string& gemm_name() const noexcept {
    return default_lut_pair() ? default_luts_->gemm.name : ks_.gemm.name;
  }
  std::string weights_layout() const {
    return default_lut_pair() ? default_luts_->gemv.layout.name() : "t2/b" + std::to_string(ks_.block());
  }
  std::size_t lut_bytes() const noexcept { return lut_bytes_; }
  std::size_t lut_tensors() const noexcept { return lut_tensors_; }
  // Ternary weight bytes one decoded token reads (the layout each projection's GEMV uses).
  std::size_t decode_weight_bytes() const noexcept {
    std::size_t n = 0;
    for (const auto& b : blocks_)
      for (const linear* L : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down})
        n += L->lut_gemv ? L->lut_v->packed_bytes() : L->w.packed_bytes();
    return n;
  }

 private:
  explicit model(gguf::file f) : file_(std::move(f)) {}

  [[noreturn]] void fail_tensor(const gguf::tensor_info* t, const std::string& name, const std::string& m) const {
    detail::file_error(file_, t ? std::optional<std::uint64_t>(t->info_offset) : std::nullopt,
                       "tensor '" + name + "': " + m);
  }

  static std::string shape_str(std::int64_t a, std::int64_t b = -1) {
    return b < 0 ? "[" + std::to_string(a) + "]" : "[" + std::to_string(a) + ", " + std::to_string(b) + "]";
  }
  static std::string shape_str(const gguf::tensor_info& t) {
    std::string s = "[";
    for (std::uint32_t d = 0; d < std::max<std::uint32_t>(t.n_dims, 1); ++d) s += (d ? ", " : "") + std::to_string(t.ne[d]);
    return s + "]";
  }

  const gguf::tensor_info& need(const std::string& name) const {
    const auto* t = file_.find_tensor(name);
    if (!t) detail::file_error(file_, std::nullopt, "missing tensor '" + name + "'");
    return *t;
  }
  bool shape_is(const gguf::tensor_info& t, std::int64_t a, std::int64_t b) const {
    return t.ne[0] == static_cast<std::uint64_t>(a) && t.ne[1] == static_cast<std::uint64_t>(b) && t.ne[2] == 1 &&
           t.ne[3] == 1;
  }

  // An F32 vector of n values: a view into the mapping, or an owned copy if misaligned.
  const float* f32_vector(const gguf::tensor_info& t, std::int64_t n) {
    if (t.type != tensor_type::f32)
      fail_tensor(&t, t.name, "type " + std::string(type_name(t.type)) + ", expected F32");
    if (!shape_is(t, n, 1)) fail_tensor(&t, t.name, "shape " + shape_str(t) + ", expected " + shape_str(n));
    // From a mapped file, copied out and the file pages released, like every other tensor: after
    // loading, the forward pass touches no page of the mapping. A norm left in place would map
    // back the whole large page-cache folio around it (2 MiB with file THP), ternary pages
    // included: about 60 MiB of resident memory for a 2B4T file.
    if (!file_.memory_mapped() && reinterpret_cast<std::uintptr_t>(t.data) % alignof(float) == 0)
      return reinterpret_cast<const float*>(t.data);
    owned_.emplace_back(static_cast<std::size_t>(n));
    std::memcpy(owned_.back().data(), t.data, static_cast<std::size_t>(n) * sizeof(float));
    release_file_pages(t);
    return owned_.back().data();
  }
  const float* f32_optional(const std::string& name, std::int64_t n) {
    const auto* t = file_.find_tensor(name);
    return t ? f32_vector(*t, n) : nullptr;
  }

  // Checks a ternary tensor's type and shape; the repack itself runs later, in parallel.
  struct pending_repack {
    const gguf::tensor_info* t;
    linear* dst;
  };
  void plan_linear(const std::string& base, std::int64_t K, std::int64_t M, linear& dst,
                   std::vector<pending_repack>& plan) {
    const std::string name = base + ".weight";
    const auto& t = need(name);
    if (t.type == tensor_type::tl1 || t.type == tensor_type::tl2)
      fail_tensor(&t, name, std::string(type_name(t.type)) +
                                " is not supported: its layout depends on bitnet.cpp's per-shape code-generation "
                                "tiles; use an I2_S, TQ2_0 or TQ1_0 file");
    if (t.type != tensor_type::i2_s && t.type != tensor_type::tq2_0 && t.type != tensor_type::tq1_0)
      fail_tensor(&t, name, "type " + std::string(type_name(t.type)) +
                                ", expected a ternary type (I2_S, TQ2_0 or TQ1_0)");
    if (!shape_is(t, K, M)) fail_tensor(&t, name, "shape " + shape_str(t) + ", expected " + shape_str(K, M));
    if (!ternary_shape_ok(t.type, K, M))
      fail_tensor(&t, name, "shape " + shape_str(K, M) + " is not valid for " + std::string(type_name(t.type)));
    if (act_ == act_quant::per_block && K % 256 != 0)
      fail_tensor(&t, name, "per-block (Q8_K) activations need K to be a multiple of 256, K = " + std::to_string(K));
    dst.file_type = t.type;
    dst.bias = f32_optional(base + ".bias", M);
    if (const auto* s = file_.find_tensor(base + ".scale")) {
      if (s->type != tensor_type::f32 || s->n_elements() != 1)
        fail_tensor(s, s->name, "expected a single F32 value");
      std::memcpy(&dst.scale, s->data, sizeof(float));
      dst.has_scale = true;
    }
    plan.push_back({&t, &dst});
    const std::string tn(type_name(t.type));
    if (ternary_types_.find(tn) == std::string::npos) ternary_types_ += (ternary_types_.empty() ? "" : "+") + tn;
  }

  void load_weights(thread_pool& pool) {
    const config& c = cfg_;
    const std::int64_t d = c.n_embd, dkv = c.n_embd_kv(), ff = c.n_ff;

    const auto& te = need("token_embd.weight");
    if (!dense_weight_type(te.type))
      fail_tensor(&te, te.name, "type " + std::string(type_name(te.type)) +
                                    ", expected F32, F16, BF16, Q8_0 or Q6_K");
    if (te.ne[0] != static_cast<std::uint64_t>(d) || te.ne[2] != 1 || te.ne[3] != 1 || te.ne[1] == 0)
      fail_tensor(&te, te.name, "shape " + shape_str(te) + ", expected [" + std::to_string(d) + ", n_vocab]");
    if ((te.type == tensor_type::q6_k && d % 256 != 0) || (te.type == tensor_type::q8_0 && d % 32 != 0))
      fail_tensor(&te, te.name, "embedding_length " + std::to_string(d) + " does not fit the " +
                                    std::string(type_name(te.type)) + " block");
    embd_ = {te.type, te.data, dense_row_bytes(te.type, d), static_cast<std::int64_t>(te.ne[1]), d};
    if (c.n_vocab != 0 && c.n_vocab != embd_.rows)
      detail::file_error(file_, detail::key_offset(file_, c.arch + ".vocab_size"),
                         "key '" + c.arch + ".vocab_size' is " + std::to_string(c.n_vocab) +
                             " but token_embd.weight has " + std::to_string(embd_.rows) + " rows");
    cfg_.n_vocab = embd_.rows;
    output_norm_ = f32_vector(need("output_norm.weight"), d);
    has_output_weight_ = file_.find_tensor("output.weight") != nullptr;
    rope_freqs_ = f32_optional("rope_freqs.weight", c.n_rot / 2);

    std::vector<pending_repack> plan;
    blocks_.resize(static_cast<std::size_t>(c.n_layer));
    for (std::int64_t l = 0; l < c.n_layer; ++l) {
      block_weights& b = blocks_[static_cast<std::size_t>(l)];
      const std::string p = "blk." + std::to_string(l) + ".";
      b.attn_norm = f32_vector(need(p + "attn_norm.weight"), d);
      b.attn_sub_norm = f32_vector(need(p + "attn_sub_norm.weight"), d);
      b.ffn_norm = f32_vector(need(p + "ffn_norm.weight"), d);
      b.ffn_sub_norm = f32_vector(need(p + "ffn_sub_norm.weight"), ff);
      plan_linear(p + "attn_q", d, d, b.q, plan);
      plan_linear(p + "attn_k", d, dkv, b.k, plan);
      plan_linear(p + "attn_v", d, dkv, b.v, plan);
      plan_linear(p + "attn_output", d, d, b.o, plan);
      plan_linear(p + "ffn_gate", d, ff, b.gate, plan);
      plan_linear(p + "ffn_up", d, ff, b.up, plan);
      plan_linear(p + "ffn_down", ff, d, b.down, plan);
    }

    // Repack every ternary tensor once, tensors spread over the pool's threads: to the default LUT
    // pair's layout where it applies (the t2 codes are then never made), else to t2.
    const int block = ks_.block();
    const bool direct_lut = default_luts_ && act_ == act_quant::per_token;
    std::vector<std::string> errors(plan.size());
    pool.run([&](int i, int nt) {
      for (std::size_t j = static_cast<std::size_t>(i); j < plan.size(); j += static_cast<std::size_t>(nt)) {
        const auto& pr = plan[j];
        linear& L = *pr.dst;
        const auto K = static_cast<std::int64_t>(pr.t->ne[0]), M = static_cast<std::int64_t>(pr.t->ne[1]);
        try {
          if (direct_lut) {
            const ternary_weights tw = unpack_ternary(pr.t->type, pr.t->bytes(), K, M);
            release_file_pages(*pr.t);
            if (tw.block_scales.empty()) {  // one weight scale: the LUT kernels take it
              L.lut_v = L.lut_m = std::make_shared<const lut_matrix>(repack_lut(tw, default_luts_->gemv.layout));
              L.lut_gemv = default_luts_->gemv.fn;
              L.lut_gemm = default_luts_->gemm.fn;
              L.w = shape_only(K, M, block, tw.scale);
            } else {
              L.w = repack(tw, block);
            }
            continue;
          }
          L.w = repack(pr.t->type, pr.t->bytes(), K, M, block);
          release_file_pages(*pr.t);  // right away, so the peak is not the file + the copy
        } catch (const std::exception& e) {
          errors[j] = e.what();
        }
      }
    });
    for (std::size_t j = 0; j < plan.size(); ++j)
      if (!errors[j].empty()) fail_tensor(plan[j].t, plan[j].t->name, errors[j]);
    copy_head(te);
    if (!direct_lut && act_ == act_quant::per_token && !tuning_.entries.empty()) add_tuned_luts(plan, pool);
    count_bytes(plan);
#if defined(__GLIBC__)
    ::malloc_trim(0);  // decoded per-tensor temporaries (TQ1_0, LUT copies) would stay resident otherwise
#endif
  }

  // For shapes whose tuned GEMV (batch 1) or GEMM (batch tuning_batch_) is a LUT kernel, a LUT
  // copy of the weights; the t2 codes go once no kernel reads them. Matrices a LUT kernel cannot
  // take (per-block scales) keep the t2 kernels, as tuned_matrix does.
  void add_tuned_luts(const std::vector<pending_repack>& plan, thread_pool& pool) {
    pool.run([&](int i, int nt) {
      for (std::size_t j = static_cast<std::size_t>(i); j < plan.size(); j += static_cast<std::size_t>(nt)) {
        linear& L = *plan[j].dst;
        if (L.w.per_block_scales()) continue;
        const auto pick = [&](const char* op, std::int64_t batch) -> std::optional<named_kernel> {
          const tuning_entry* e = tuning_.pick(op, L.w.M, L.w.K, batch);
          if (!e) return std::nullopt;
          auto k = find_kernel(e->kernel, tuning_features_);
          if (!k || !k->lut) return std::nullopt;
          return k;
        };
        const auto v = pick("gemv", 1), g = pick("gemm", tuning_batch_);
        if (v && v->lut_gemv) {
          L.lut_v = std::make_shared<const lut_matrix>(repack_lut(L.w, v->layout));
          L.lut_gemv = v->lut_gemv;
        }
        if (g && g->lut_gemm) {
          L.lut_m = L.lut_v && L.lut_v->layout == g->layout ? L.lut_v
                                                           : std::make_shared<const lut_matrix>(repack_lut(L.w, g->layout));
          L.lut_gemm = g->lut_gemm;
        }
        if (L.lut_gemv && L.lut_gemm && !keep_t2_)  // the t2 codes are never read again: keep the shape
          L.w = shape_only(L.w.K, L.w.M, L.w.block, L.w.scale);
      }
    });
  }

  static ternary_matrix shape_only(std::int64_t K, std::int64_t M, int block, float scale) {
    ternary_matrix shape;
    shape.K = K;
    shape.M = M;
    shape.Kp = pad_to(K, kActPad);
    shape.block = block;
    shape.scale = scale;
    return shape;
  }

  void count_bytes(const std::vector<pending_repack>& plan) {
    repacked_bytes_ = lut_bytes_ = lut_tensors_ = 0;
    for (const auto& pr : plan) {
      const linear& L = *pr.dst;
      repacked_bytes_ += L.w.packed_bytes();
      if (L.lut_v) lut_bytes_ += L.lut_v->packed_bytes(), ++lut_tensors_;
      if (L.lut_m && L.lut_m != L.lut_v) lut_bytes_ += L.lut_m->packed_bytes(), ++lut_tensors_;
    }
  }

  // The repacked copies are all that is read from now on: drop this process's pages of the
  // ternary tensors in the (read-only, private) file mapping, so resident memory is the
  // repacked weights plus the dense tensors, not the file on top of them. Only whole pages
  // inside a tensor are advised; a later read would fault them in again from the file.
  void release_file_pages(const gguf::tensor_info& t) const noexcept { release_file_pages(t.data, t.bytes().size()); }
  void release_file_pages([[maybe_unused]] const std::uint8_t* data, [[maybe_unused]] std::size_t n) const noexcept {
#if defined(__unix__) || defined(__APPLE__)
    if (!file_.memory_mapped()) return;
    const long ps = ::sysconf(_SC_PAGESIZE);
    if (ps <= 0) return;
    const auto page = static_cast<std::uintptr_t>(ps);
    const auto b = reinterpret_cast<std::uintptr_t>(data), e = b + n;
    const std::uintptr_t pb = (b + page - 1) / page * page, pe = e / page * page;
    if (pb < pe) ::madvise(reinterpret_cast<void*>(pb), pe - pb, MADV_DONTNEED);
#endif
  }

  // The head (token_embd) is read in full every token. From a mapped file, copy it into an
  // aligned_buffer (huge pages where the OS gives them: bench_dense's Q6_K 2B4T head streams
  // at about 16 GB/s from them against 11 GB/s from 4 KiB file pages), in 16 MiB pieces whose
  // file pages are released right after, so resident memory never holds both copies.
  void copy_head(const gguf::tensor_info& te) {
    if (!file_.memory_mapped()) return;  // already a private heap copy
    const std::size_t n = te.bytes().size();
    head_copy_.resize(n);
    constexpr std::size_t kPiece = std::size_t{16} << 20;
    for (std::size_t o = 0; o < n; o += kPiece) {
      const std::size_t len = std::min(kPiece, n - o);
      std::memcpy(head_copy_.data() + o, te.data + o, len);
      release_file_pages(te.data, o + len);  // from the start: pages straddling pieces go too
    }
    embd_.data = head_copy_.data();
  }

  gguf::file file_;
  config cfg_;
  act_quant act_ = act_quant::per_token;
  kernel_set ks_;
  dense_kernels dk_;
  std::vector<block_weights> blocks_;
  dense_view embd_;
  aligned_buffer<std::uint8_t> head_copy_;  // token_embd, when copied out of the mapping
  const float* output_norm_ = nullptr;
  const float* rope_freqs_ = nullptr;
  bool has_output_weight_ = false;
  std::string ternary_types_;
  std::size_t repacked_bytes_ = 0;
  tuning_table tuning_;
  std::string tuning_warning_;
  cpu_features tuning_features_;
  std::int64_t tuning_batch_ = 128;
  std::size_t lut_bytes_ = 0, lut_tensors_ = 0;
  std::optional<lut_kernel_pair> default_luts_;  // set when load_options allowed it and this CPU has one
  bool keep_t2_ = false;
  std::vector<std::vector<float>> owned_;  // F32 tensors copied out of a mapped file (or misaligned in it)
};

// ================================================================ forward

// Element type of the KV cache. f16 halves its memory and the attention's memory traffic;
// keys and values are rounded to f16 when stored (as llama.cpp's default cache).
enum class kv_type { f32, f16 };

inline const char* kv_type_name(kv_type t) noexcept { return t == kv_type::f32 ? "f32" : "f16"; }

// eval() would pass the end of the context.
class context_full : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

// The checks every eval() makes before touching state: at least one token, every id inside the
// vocabulary of V tokens (std::out_of_range), and room for all of them after position pos in a
// context of n_ctx (context_full). Shared by session and precise_session.
inline void check_eval(std::span<const std::int32_t> tokens, std::int64_t V, std::int64_t pos, std::int64_t n_ctx) {
  const std::int64_t n = static_cast<std::int64_t>(tokens.size());
  if (n == 0) throw std::invalid_argument("eval: no tokens");
  for (const std::int32_t id : tokens)
    if (id < 0 || id >= V)
      throw std::out_of_range("eval: token id " + std::to_string(id) + " is outside the vocabulary of " +
                              std::to_string(V) + " tokens");
  if (pos + n > n_ctx)
    throw context_full("context full: " + std::to_string(n) + " more token" + (n == 1 ? "" : "s") +
                       " at position " + std::to_string(pos) + " would pass the context size of " +
                       std::to_string(n_ctx) + " (-c)");
}

// RMSNorm as ggml: float squares summed in double, mean stored as float, 1/sqrtf(mean + eps),
// x * scale, then * g (separate rounding steps). y may alias x. The double sum runs in four
// fixed lanes (ggml sums sequentially; in double the two agree far below the float mean).
inline void rms_norm(const float* x, const float* g, float* y, std::int64_t n, float eps) noexcept {
  double lane[4] = {0.0, 0.0, 0.0, 0.0};
  std::int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; ++l) lane[l] += static_cast<double>(x[i + l] * x[i + l]);
  for (; i < n; ++i) lane[0] += static_cast<double>(x[i] * x[i]);
  const double sum = (lane[0] + lane[1]) + (lane[2] + lane[3]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = x[i] * scale;
    y[i] = v * g[i];
  }
}

// Attention inner loops over one head's cached rows, n positions of hd values each:
// dots    s_j = q · k_j for j < n;
// wsum    o = sum_j a_j v_j (o overwritten).
// Rows are f32 or f16 (kv_type). Portable versions keep 8 independent lanes (they vectorize
// without reassociation flags); on x86 CPUs with AVX2 the kernels below use FMA and F16C,
// with four positions' dot products in flight and the output held in registers across all
// positions (per position, the same arithmetic as a one-row dot and axpy). Whichever is
// chosen is used for every query of a session, so results do not depend on the batch or the
// thread count.
inline float kv_value(float v) noexcept { return v; }
inline float kv_value(std::uint16_t v) noexcept { return fp16_to_f32(v); }

template <class T> float dot_portable(const float* q, const T* k, std::int64_t n) noexcept {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += q[i + l] * kv_value(k[i + l]);
  float tail = 0.0f;
  for (; i < n; ++i) tail += q[i] * kv_value(k[i]);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

template <class T> void dots_portable(const float* q, const T* K, std::int64_t n, std::int64_t hd, float* s) noexcept {
  for (std::int64_t j = 0; j < n; ++j) s[j] = dot_portable(q, K + j * hd, hd);
}

template <class T> void wsum_portable(const float* a, const T* V, std::int64_t n, std::int64_t hd, float* o) noexcept {
  std::fill(o, o + hd, 0.0f);
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t i = 0; i < hd; ++i) o[i] += a[j] * kv_value(V[j * hd + i]);
}

#if BITNET_X86
BITNET_TARGET_AVX2 inline __m256 load8(const float* p) noexcept { return _mm256_loadu_ps(p); }
BITNET_TARGET_AVX2 inline __m256 load8(const std::uint16_t* p) noexcept {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// q · k for P rows k_0 .. k_{P-1} (hd apart): two accumulators per row (16 values per step),
// then a fixed reduction of each, so every row's result is the same for any P.
template <int P, class T>
BITNET_TARGET_AVX2 inline void dot_rows_avx2(const float* q, const T* k, std::int64_t hd, float* out) noexcept {
  __m256 a0[P], a1[P];
  for (int r = 0; r < P; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  std::int64_t i = 0;
  for (; i + 16 <= hd; i += 16) {
    const __m256 q0 = _mm256_loadu_ps(q + i), q1 = _mm256_loadu_ps(q + i + 8);
    for (int r = 0; r < P; ++r) {
      a0[r] = _mm256_fmadd_ps(q0, load8(k + r * hd + i), a0[r]);
      a1[r] = _mm256_fmadd_ps(q1, load8(k + r * hd + i + 8), a1[r]);
    }
  }
  const bool eight = i + 8 <= hd;
  if (eight)
    for (int r = 0; r < P; ++r) a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k + r * hd + i), a0[r]);
  for (int r = 0; r < P; ++r) {
    const __m256 a = _mm256_add_ps(a0[r], a1[r]);
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    float sum = _mm_cvtss_f32(v);
    for (std::int64_t t = eight ? i + 8 : i; t < hd; ++t) sum += q[t] * kv_value(k[r * hd + t]);
    out[r] = sum;
  }
}

template <class T>
BITNET_TARGET_AVX2 void dots_avx2(const float* q, const T* K, std::int64_t n, std::int64_t hd, float* s) noexcept {
  std::int64_t j = 0;
  for (; j + 4 <= n; j += 4) dot_rows_avx2<4>(q, K + j * hd, hd, s + j);
  for (; j < n; ++j) dot_rows_avx2<1>(q, K + j * hd, hd, s + j);
}

// o[d0 .. d0 + 8C) = sum_j a_j v_j over that slice, C accumulators held across all n rows.
template <int C, class T>
BITNET_TARGET_AVX2 inline void wsum_slice_avx2(const float* a, const T* V, std::int64_t n, std::int64_t hd,
                                               std::int64_t d0, float* o) noexcept {
  __m256 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
  for (std::int64_t j = 0; j < n; ++j) {
    const __m256 w = _mm256_broadcast_ss(a + j);
    for (int c = 0; c < C; ++c) acc[c] = _mm256_fmadd_ps(w, load8(V + j * hd + d0 + 8 * c), acc[c]);
  }
  for (int c = 0; c < C; ++c) _mm256_storeu_ps(o + d0 + 8 * c, acc[c]);
}

template <class T>
BITNET_TARGET_AVX2 void wsum_avx2(const float* a, const T* V, std::int64_t n, std::int64_t hd, float* o) noexcept {
  std::int64_t d = 0;
  for (; d + 64 <= hd; d += 64) wsum_slice_avx2<8>(a, V, n, hd, d, o);
  for (; d + 8 <= hd; d += 8) wsum_slice_avx2<1>(a, V, n, hd, d, o);
  for (; d < hd; ++d) {
    float acc = 0.0f;
    for (std::int64_t j = 0; j < n; ++j) acc += a[j] * kv_value(V[j * hd + d]);
    o[d] = acc;
  }
}
#endif

template <class T> struct attn_kernels {
  void (*dots)(const float*, const T*, std::int64_t, std::int64_t, float*) noexcept;
  void (*wsum)(const float*, const T*, std::int64_t, std::int64_t, float*) noexcept;
};

// AVX2 bodies when the ternary kernels' arch implies AVX2 (so --kernel-arch scalar also
// makes attention portable), else the portable loops.
template <class T> attn_kernels<T> select_attn_kernels([[maybe_unused]] std::string_view arch) noexcept {
#if BITNET_X86
  if (arch == arch::avx2::name || arch == arch::avx512bw::name || arch == arch::avx512vnni::name)
    return {&dots_avx2<T>, &wsum_avx2<T>};
#endif
  return {&dots_portable<T>, &wsum_portable<T>};
}

}  // namespace detail

class session {
 public:
  // n_ctx: positions the KV cache holds; n_batch: tokens per prefill chunk (scratch rows).
  session(const model& m, thread_pool& pool, std::int64_t n_ctx, std::int64_t n_batch = 64,
          kv_type kv = kv_type::f32)
      : m_(&m), pool_(&pool), n_ctx_(n_ctx), n_batch_(n_batch), kv_(kv),
        attn32_(detail::select_attn_kernels<float>(m.kernels().arch)),
        attn16_(detail::select_attn_kernels<std::uint16_t>(m.kernels().arch)) {
    const config& c = m.cfg();
    if (n_ctx <= 0) throw std::invalid_argument("session: the context size must be positive");
    if (n_batch <= 0) throw std::invalid_argument("session: the batch size must be positive");
    n_batch_ = std::min(n_batch_, n_ctx_);
    const std::int64_t d = c.n_embd, dkv = c.n_embd_kv(), ff = c.n_ff, T = n_batch_;
    const auto sz = [](std::int64_t n) { return static_cast<std::size_t>(n); };
    x_.resize(sz(T * d));
    h_.resize(sz(T * d));
    q_.resize(sz(T * d));
    k_.resize(sz(T * dkv));
    v_.resize(sz(T * dkv));
    att_.resize(sz(T * d));
    tmp_.resize(sz(T * d));
    g_.resize(sz(T * ff));
    u_.resize(sz(T * ff));
    if (kv_ == kv_type::f32) {
      kf_.resize(sz(c.n_layer * n_ctx_ * dkv));
      vf_.resize(sz(c.n_layer * n_ctx_ * dkv));
    } else {
      kh_.resize(sz(c.n_layer * n_ctx_ * dkv));
      vh_.resize(sz(c.n_layer * n_ctx_ * dkv));
    }
    scores_.resize(sz(pool.size() * n_ctx_));
    logits_.resize(sz(c.n_vocab));
    // Grow the quantized-activation buffers to their largest shape now, so eval() never does.
    {
      const std::int64_t K = std::max(d, ff);
      const std::vector<float> zeros(sz(T * K), 0.0f);
      xq_.quantize(zeros.data(), T, K, K, act_quant::per_token);
      head_x_.prepare_batch(m.token_embd().type, zeros.data(), 1, d, d);
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

  std::int64_t n_ctx() const noexcept { return n_ctx_; }
  std::int64_t n_batch() const noexcept { return n_batch_; }
  std::int64_t pos() const noexcept { return pos_; }
  void reset() noexcept { pos_ = 0; }  // cached keys/values are overwritten as positions are reused
  kv_type kv() const noexcept { return kv_; }
  std::size_t kv_bytes() const noexcept {
    return (kf_.size() + vf_.size()) * sizeof(float) + (kh_.size() + vh_.size()) * sizeof(std::uint16_t);
  }

  // Evaluates `tokens` at positions pos() .. pos()+n-1 and advances pos(). Returns the logits
  // of the last token (n_vocab floats) or, with all_logits, of every token (n rows of n_vocab).
  // Throws context_full (and evaluates nothing) if the tokens do not fit in the context, and
  // std::out_of_range for a token id outside the vocabulary.
  std::span<const float> eval(std::span<const std::int32_t> tokens, bool all_logits = false) {
    const std::int64_t n = static_cast<std::int64_t>(tokens.size());
    const std::int64_t V = m_->cfg().n_vocab;
    detail::check_eval(tokens, V, pos_, n_ctx_);
    if (all_logits && logits_all_.size() < static_cast<std::size_t>(n * V))
      logits_all_.resize(static_cast<std::size_t>(n * V));
    for (std::int64_t i = 0; i < n; i += n_batch_) {
      const std::int64_t T = std::min(n_batch_, n - i);
      const head_mode hm = all_logits ? head_mode::all : (i + T == n ? head_mode::last : head_mode::none);
      forward(tokens.data() + i, T, hm, all_logits ? logits_all_.data() + i * V : logits_.data());
    }
    if (all_logits) return {logits_all_.data(), static_cast<std::size_t>(n * V)};
    return {logits_.data(), static_cast<std::size_t>(V)};
  }

 private:
  enum class head_mode { none, last, all };
  static constexpr std::int64_t kRowGrain = 16;  // matmul rows per split unit (keeps tiles and cache lines whole)
  // Smallest decode claim (80 KiB of a 2B4T matrix), a multiple of every MAD row tile.
  static constexpr std::int64_t kDecodeGrain = 128;

  struct mm_job {
    const linear* L;
    float* y;
    std::int64_t ldy;
  };

  // y = W·xq_ for up to three projections sharing the quantized input, rows split over threads.
  void matmul(std::initializer_list<mm_job> jobs, std::int64_t T) {
    std::int64_t total = 0;
    for (const auto& j : jobs) total += j.L->w.M;
    const kernel_set& ks = m_->kernels();
    const auto body = [&](std::int64_t b, std::int64_t e) {
      std::int64_t off = 0;
      for (const auto& j : jobs) {
        const std::int64_t M = j.L->w.M, r0 = std::max(b, off) - off, r1 = std::min(e, off + M) - off;
        off += M;
        if (r0 >= r1) continue;
        if (T == 1) {
          if (j.L->lut_gemv)
            j.L->lut_gemv(*j.L->lut_v, xq_, 0, j.y, r0, r1);
          else
            ks.gemv.fn(j.L->w, xq_, 0, j.y, r0, r1);
        } else if (j.L->lut_gemm) {
          j.L->lut_gemm(*j.L->lut_m, xq_, j.y, j.ldy, r0, r1);
        } else {
          ks.gemm.fn(j.L->w, xq_, j.y, j.ldy, r0, r1);
        }
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
    // together (a static split waited on the slower memory path at every join). Prefill
    // chunks are compute-bound and even; they keep the static split, and so do LUT GEMVs,
    // which build their activation tables once per call.
    bool lut = false;
    for (const auto& j : jobs) lut = lut || j.L->lut_gemv;
    if (T == 1 && !lut)
      pool_->parallel_for_dynamic(total, kDecodeGrain, body);
    else
      pool_->parallel_for(total, kRowGrain, body);
  }

  void quantize(const float* x, std::int64_t T, std::int64_t K) { xq_.quantize(x, T, K, K, m_->activation_mode()); }

  void norm_rows(const float* x, const float* g, float* y, std::int64_t T, std::int64_t n) {
    norm_rows(x, g, y, T, n, m_->cfg().norm_eps);
  }
  void norm_rows(const float* x, const float* g, float* y, std::int64_t T, std::int64_t n, float eps) {
    pool_->parallel_for(T, 4, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t t = b; t < e; ++t) detail::rms_norm(x + t * n, g, y + t * n, n, eps);
    });
  }

  // NeoX rotation of one head vector at position p: pairs (i, i + n_rot/2).
  void rope(float* v, std::int64_t p) const noexcept {
    const std::int64_t half = m_->cfg().n_rot / 2;
    const float* cs = rope_.data() + 2 * p * half;
    for (std::int64_t i = 0; i < half; ++i) {
      const float c = cs[2 * i], s = cs[2 * i + 1];
      const float a = v[i], b = v[i + half];
      v[i] = a * c - b * s;
      v[i + half] = a * s + b * c;
    }
  }

  // Cache layout per layer: [kv_head][position][head_dim] (one head's keys are contiguous).
  template <class T> T* kv_at(aligned_buffer<T>& cache, std::int64_t l, std::int64_t kvh, std::int64_t p) noexcept {
    const config& c = m_->cfg();
    return cache.data() + ((l * c.n_head_kv + kvh) * n_ctx_ + p) * c.head_dim;
  }

  static void store(float* dst, const float* src, std::int64_t n) noexcept {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
  }
  static void store(std::uint16_t* dst, const float* src, std::int64_t n) noexcept {
    for (std::int64_t i = 0; i < n; ++i) dst[i] = f32_to_fp16(src[i]);
  }

  template <class T>
  void rope_and_store(std::int64_t l, std::int64_t p0, std::int64_t T_, aligned_buffer<T>& kc, aligned_buffer<T>& vc) {
    const config& c = m_->cfg();
    const std::int64_t d = c.n_embd, dkv = c.n_embd_kv(), hd = c.head_dim;
    pool_->parallel_for(T_, 8, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t t = b; t < e; ++t) {
        const std::int64_t p = p0 + t;
        for (std::int64_t h = 0; h < c.n_head; ++h) rope(q_.data() + t * d + h * hd, p);
        for (std::int64_t h = 0; h < c.n_head_kv; ++h) {
          float* k = k_.data() + t * dkv + h * hd;
          rope(k, p);
          store(kv_at(kc, l, h, p), k, hd);
          store(kv_at(vc, l, h, p), v_.data() + t * dkv + h * hd, hd);
        }
      }
    });
  }

  // One query (token t of the chunk, head h) against cached positions 0 .. p0+t.
  template <class T>
  void attend(std::int64_t l, std::int64_t p0, std::int64_t t, std::int64_t h, float* s, aligned_buffer<T>& kc,
              aligned_buffer<T>& vc, const detail::attn_kernels<T>& ak) {
    const config& c = m_->cfg();
    const std::int64_t hd = c.head_dim, p = p0 + t, kvh = h / c.n_gqa();
    const float* q = q_.data() + t * c.n_embd + h * hd;
    const T* K = kv_at(kc, l, kvh, 0);
    const T* Vc = kv_at(vc, l, kvh, 0);
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
    ak.wsum(s, Vc, p + 1, hd, att_.data() + t * c.n_embd + h * hd);
  }

  // Decode: heads split in contiguous ranges (heads sharing a KV head stay on one thread and
  // reuse its cached rows). Prefill: tokens round-robin (later tokens see more positions, so
  // contiguous chunks would leave the first threads idle), all heads of a token together.
  template <class T>
  void attention(std::int64_t l, std::int64_t p0, std::int64_t T_, aligned_buffer<T>& kc, aligned_buffer<T>& vc,
                 const detail::attn_kernels<T>& ak) {
    const std::int64_t H = m_->cfg().n_head;
    pool_->run([&](int i, int nt) {
      float* s = scores_.data() + static_cast<std::int64_t>(i) * n_ctx_;
      if (T_ == 1) {
        const auto [b, e] = thread_pool::split(H, 1, i, nt);
        for (std::int64_t h = b; h < e; ++h) attend(l, p0, 0, h, s, kc, vc, ak);
      } else {
        for (std::int64_t t = i; t < T_; t += nt)
          for (std::int64_t h = 0; h < H; ++h) attend(l, p0, t, h, s, kc, vc, ak);
      }
    });
  }

  void attention_block(std::int64_t l, std::int64_t p0, std::int64_t T) {
    if (kv_ == kv_type::f32) {
      rope_and_store(l, p0, T, kf_, vf_);
      attention(l, p0, T, kf_, vf_, attn32_);
    } else {
      rope_and_store(l, p0, T, kh_, vh_);
      attention(l, p0, T, kh_, vh_, attn16_);
    }
  }

  // a = act(g) ⊙ u over the T x n_ff elements.
  void glu(std::int64_t T) {
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

  void add_rows(float* x, const float* y, std::int64_t n) noexcept {
    for (std::int64_t i = 0; i < n; ++i) x[i] += y[i];
  }

  void forward(const std::int32_t* tok, std::int64_t T, head_mode hm, float* logits) {
    const model& m = *m_;
    const config& c = m.cfg();
    const std::int64_t d = c.n_embd, dkv = c.n_embd_kv(), ff = c.n_ff, p0 = pos_;
    const dense_view& E = m.token_embd();
    for (std::int64_t t = 0; t < T; ++t)
      dequantize_row(E.type, E.data + static_cast<std::size_t>(tok[t]) * E.row_bytes, x_.data() + t * d, d);

    for (std::int64_t l = 0; l < c.n_layer; ++l) {
      const block_weights& B = m.blocks()[static_cast<std::size_t>(l)];
      // attention
      norm_rows(x_.data(), B.attn_norm, h_.data(), T, d);
      quantize(h_.data(), T, d);
      matmul({{&B.q, q_.data(), d}, {&B.k, k_.data(), dkv}, {&B.v, v_.data(), dkv}}, T);
      attention_block(l, p0, T);
      norm_rows(att_.data(), B.attn_sub_norm, att_.data(), T, d);
      quantize(att_.data(), T, d);
      matmul({{&B.o, tmp_.data(), d}}, T);
      add_rows(x_.data(), tmp_.data(), T * d);
      // feed-forward
      norm_rows(x_.data(), B.ffn_norm, h_.data(), T, d);
      quantize(h_.data(), T, d);
      matmul({{&B.gate, g_.data(), ff}, {&B.up, u_.data(), ff}}, T);
      glu(T);
      norm_rows(g_.data(), B.ffn_sub_norm, g_.data(), T, ff);
      quantize(g_.data(), T, ff);
      matmul({{&B.down, tmp_.data(), d}}, T);
      add_rows(x_.data(), tmp_.data(), T * d);
    }
    pos_ += T;

    if (hm == head_mode::none) return;
    const std::int64_t first = hm == head_mode::all ? 0 : T - 1, rows = T - first;
    norm_rows(x_.data() + first * d, m.output_norm(), h_.data(), rows, d, c.output_norm_eps);
    head_x_.prepare_batch(E.type, h_.data(), rows, d, d);
    const dense_kernels& dk = m.head_kernels();
    const std::int64_t V = c.n_vocab;
    if (rows == 1) {
      pool_->parallel_for_dynamic(V, kDecodeGrain, [&](std::int64_t b, std::int64_t e) {
        dense_gemv(dk, E.type, E.data, E.row_bytes, head_x_, logits, b, e);
      });
    } else {
      pool_->parallel_for(V, 64, [&](std::int64_t b, std::int64_t e) {
        dense_gemm(dk, E.type, E.data, E.row_bytes, head_x_, logits, static_cast<std::size_t>(V), b, e);
      });
    }
  }

  const model* m_;
  thread_pool* pool_;
  std::int64_t n_ctx_, n_batch_, pos_ = 0;
  kv_type kv_;
  detail::attn_kernels<float> attn32_;
  detail::attn_kernels<std::uint16_t> attn16_;
  aligned_buffer<float> x_, h_, q_, k_, v_, att_, tmp_, g_, u_;  // [n_batch][width] scratch
  aligned_buffer<float> kf_, vf_;                                // f32 cache: [layer][kv_head][n_ctx][head_dim]
  aligned_buffer<std::uint16_t> kh_, vh_;                        // f16 cache, same layout
  aligned_buffer<float> scores_;                                 // [thread][n_ctx]
  aligned_buffer<float> rope_;                                   // [n_ctx][n_rot/2][cos, sin]
  std::vector<float> logits_, logits_all_;
  activations xq_;
  dense_activation head_x_;
};

}  // namespace bitnet::run
