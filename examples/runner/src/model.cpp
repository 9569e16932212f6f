// Reading a model file and loading its weights (model.hpp has the contract).
#include "bitnet/runner/model.hpp"

#include <algorithm>  // std::max, std::min
#include <atomic>     // ternarization counts across threads
#include <cstdio>     // std::snprintf
#include <cstring>    // std::memcpy
#include <exception>  // per-tensor errors from the pool's threads
#include <string>     // names, messages

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>  // madvise: drop the file pages of repacked tensors
#include <unistd.h>    // sysconf(_SC_PAGESIZE)
#endif
#if defined(__GLIBC__)
#include <malloc.h>  // malloc_trim: return the repack temporaries' heap to the system
#endif

#include "bitnet/runner/ternarize.hpp"

namespace bitnet::run {

namespace {

std::string shape_str(std::int64_t a, std::int64_t b = -1) {
  return b < 0 ? "[" + std::to_string(a) + "]" : "[" + std::to_string(a) + ", " + std::to_string(b) + "]";
}
std::string shape_str(const gguf::tensor_info& t) {
  std::string s = "[";
  for (std::uint32_t d = 0; d < std::max<std::uint32_t>(t.n_dims, 1); ++d) s += (d ? ", " : "") + std::to_string(t.ne[d]);
  return s + "]";
}
bool shape_is(const gguf::tensor_info& t, std::int64_t a, std::int64_t b) {
  return t.ne[0] == static_cast<std::uint64_t>(a) && t.ne[1] == static_cast<std::uint64_t>(b) && t.ne[2] == 1 && t.ne[3] == 1;
}
bool is_ternary_type(tensor_type t) noexcept {
  return t == tensor_type::i2_s || t == tensor_type::tq2_0 || t == tensor_type::tq1_0;
}

// True when every non-zero 256-block scale of a TQ2_0 / TQ1_0 payload is the same (as
// formats.hpp's unpackers decide): its f16 d is the last two bytes of each block.
bool tq_scales_uniform(tensor_type t, std::span<const std::uint8_t> bytes) {
  const std::size_t blk = t == tensor_type::tq2_0 ? 66 : 54;
  float common = 0.0f;
  for (std::size_t o = blk - 2; o + 2 <= bytes.size(); o += blk) {
    std::uint16_t h;
    std::memcpy(&h, bytes.data() + o, 2);
    const float d = fp16_to_f32(h);
    if (d == 0.0f) continue;
    if (common == 0.0f) common = d;
    else if (d != common) return false;
  }
  return true;
}

std::string mib(std::size_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return b;
}

}  // namespace

// ================================================================ the file

model_file model_file::open(const std::string& path) { return model_file(gguf::file::open(path)); }

model_file::model_file(gguf::file f) : file_(std::move(f)) {
  cfg_ = read_config(file_);
  if (file_.has("tokenizer.ggml.model")) {
    try {
      tok::vocab_data v = tok::vocab_from_gguf(file_);
      warnings_ = std::move(v.warnings);
      tok_.emplace(std::move(v));
    } catch (const gguf::error&) {
      throw;
    } catch (const std::exception& e) {
      throw gguf::error(file_.path(), std::nullopt, e.what());
    }
  }
  if (file_.has("tokenizer.chat_template")) chat_template_ = std::string(file_.get_string("tokenizer.chat_template"));
}

const tok::tokenizer& model_file::require_tokenizer() const {
  if (!tok_) throw gguf::error(file_.path(), std::nullopt, "tokenizer: the GGUF file has no tokenizer.ggml.model");
  return *tok_;
}

// ================================================================ loading

model::model(model_file&& mf, const load_options& opt)
    : mf_(std::move(mf)), cfg_(mf_.cfg()), planner_(opt), act_(opt.activations),
      dk_(select_dense_kernels(cpu_features::detect(), opt.kernels.arch)) {}

model model::load(model_file&& file, const load_options& opt, thread_pool& pool) {
  model m(std::move(file), opt);
  m.load_weights(pool);
  m.fill_info();
  return m;
}

namespace {

// The steps of load_weights that read the file: validated views, F32 copies, released pages.
class reader {
 public:
  reader(const gguf::file& f, std::vector<std::vector<float>>& owned) : f_(f), owned_(owned) {}

  [[noreturn]] void fail_tensor(const gguf::tensor_info* t, const std::string& name, const std::string& m) const {
    detail::file_error(f_, t ? std::optional<std::uint64_t>(t->info_offset) : std::nullopt, "tensor '" + name + "': " + m);
  }
  const gguf::tensor_info& need(const std::string& name) const {
    const auto* t = f_.find_tensor(name);
    if (!t) detail::file_error(f_, std::nullopt, "missing tensor '" + name + "'");
    return *t;
  }

  // An F32 vector of n values, copied out of the file (whose pages are then released: after
  // loading, the forward pass touches no page of the mapping; a norm left in place would map
  // back the whole large page-cache folio around it, ternary pages included).
  const float* f32_vector(const gguf::tensor_info& t, std::int64_t n) {
    if (t.type != tensor_type::f32) fail_tensor(&t, t.name, "type " + std::string(type_name(t.type)) + ", expected F32");
    if (!shape_is(t, n, 1)) fail_tensor(&t, t.name, "shape " + shape_str(t) + ", expected " + shape_str(n));
    owned_.emplace_back(static_cast<std::size_t>(n));
    std::memcpy(owned_.back().data(), t.data, static_cast<std::size_t>(n) * sizeof(float));
    release(t);
    return owned_.back().data();
  }
  const float* f32_optional(const std::string& name, std::int64_t n) {
    const auto* t = f_.find_tensor(name);
    return t ? f32_vector(*t, n) : nullptr;
  }

  // A dense matrix [cols, n_vocab] (embedding table or head).
  dense_view dense(const gguf::tensor_info& t, std::int64_t cols) const {
    if (!dense_weight_type(t.type))
      fail_tensor(&t, t.name, "type " + std::string(type_name(t.type)) + ", expected F32, F16, BF16, Q8_0 or Q6_K");
    if (t.ne[0] != static_cast<std::uint64_t>(cols) || t.ne[2] != 1 || t.ne[3] != 1 || t.ne[1] == 0)
      fail_tensor(&t, t.name, "shape " + shape_str(t) + ", expected [" + std::to_string(cols) + ", n_vocab]");
    if ((t.type == tensor_type::q6_k && cols % 256 != 0) || (t.type == tensor_type::q8_0 && cols % 32 != 0))
      fail_tensor(&t, t.name, "embedding_length " + std::to_string(cols) + " does not fit the " +
                                  std::string(type_name(t.type)) + " block");
    return {t.type, t.data, dense_row_bytes(t.type, cols), static_cast<std::int64_t>(t.ne[1]), cols};
  }

  // Drops this process's pages of a tensor in the (read-only, private) file mapping, so
  // resident memory is the repacked weights plus what the forward pass reads, not the file on
  // top of them. Only whole pages inside the range are advised; a later read faults them in
  // again from the file.
  void release(const gguf::tensor_info& t) const noexcept { release(t.data, t.bytes().size()); }
  void release([[maybe_unused]] const std::uint8_t* data, [[maybe_unused]] std::size_t n) const noexcept {
#if defined(__unix__) || defined(__APPLE__)
    if (!f_.memory_mapped()) return;
    const long ps = ::sysconf(_SC_PAGESIZE);
    if (ps <= 0) return;
    const auto page = static_cast<std::uintptr_t>(ps);
    const auto b = reinterpret_cast<std::uintptr_t>(data), e = b + n;
    const std::uintptr_t pb = (b + page - 1) / page * page, pe = e / page * page;
    if (pb < pe) ::madvise(reinterpret_cast<void*>(pb), pe - pb, MADV_DONTNEED);
#endif
  }

 private:
  const gguf::file& f_;
  std::vector<std::vector<float>>& owned_;
};

// One projection as read: its tensor, where it goes, its shape.
struct pending {
  const gguf::tensor_info* t;
  linear* dst;
  std::int64_t K, M;
};

}  // namespace

void model::load_weights(thread_pool& pool) {
  const gguf::file& f = file();
  reader rd(f, owned_);
  const config& c = cfg_;
  const std::int64_t d = c.n_embd, qd = c.q_dim(), dkv = c.n_embd_kv(), ff = c.n_ff;

  const auto& te = rd.need("token_embd.weight");
  embd_ = rd.dense(te, d);
  if (c.n_vocab != 0 && c.n_vocab != embd_.rows)
    detail::file_error(f, detail::key_offset(f, c.arch + ".vocab_size"),
                       "key '" + c.arch + ".vocab_size' is " + std::to_string(c.n_vocab) + " but token_embd.weight has " +
                           std::to_string(embd_.rows) + " rows");
  cfg_.n_vocab = embd_.rows;
  if (const tok::tokenizer* tk = tokenizer(); tk && static_cast<std::int64_t>(tk->n_vocab()) != cfg_.n_vocab)
    detail::file_error(f, std::nullopt,
                       "the vocabulary has " + std::to_string(tk->n_vocab()) + " tokens but token_embd.weight has " +
                           std::to_string(cfg_.n_vocab) + " rows");
  const gguf::tensor_info* head_t = &te;
  if (const auto* ow = f.find_tensor("output.weight")) {
    if (c.untied_head) {
      head_ = rd.dense(*ow, d);
      if (head_.rows != cfg_.n_vocab)
        rd.fail_tensor(ow, ow->name, "shape " + shape_str(*ow) + ", expected [" + std::to_string(d) + ", " +
                                         std::to_string(cfg_.n_vocab) + "] (the rows of token_embd.weight)");
      head_t = ow;
    } else {
      info_.notes.push_back("output.weight is ignored; the head is token_embd (as bitnet.cpp)");
    }
  }
  if (head_t == &te) head_ = embd_;
  info_.head_tensor = head_t->name;
  output_norm_ = rd.f32_vector(rd.need("output_norm.weight"), d);
  rope_freqs_ = rd.f32_optional("rope_freqs.weight", c.n_rot / 2);

  // Read: every projection's tensor checked (type, shape); norms, biases and scales copied.
  std::vector<pending> todo;
  const auto projection_tensor = [&](const std::string& base, std::int64_t K, std::int64_t M, linear& dst) {
    const std::string name = base + ".weight";
    const auto& t = rd.need(name);
    if (t.type == tensor_type::tl1 || t.type == tensor_type::tl2)
      rd.fail_tensor(&t, name, std::string(type_name(t.type)) +
                                   " is not supported: its layout depends on bitnet.cpp's per-shape code-generation "
                                   "tiles; use an I2_S, TQ2_0 or TQ1_0 file");
    if (!is_ternary_type(t.type) && !is_float_type(t.type))
      rd.fail_tensor(&t, name, "type " + std::string(type_name(t.type)) +
                                   ", expected a ternary type (I2_S, TQ2_0 or TQ1_0) or a float type to ternarize "
                                   "(F32, F16, BF16)");
    if (!shape_is(t, K, M)) rd.fail_tensor(&t, name, "shape " + shape_str(t) + ", expected " + shape_str(K, M));
    if (is_ternary_type(t.type) && !ternary_shape_ok(t.type, K, M))
      rd.fail_tensor(&t, name, "shape " + shape_str(K, M) + " is not valid for " + std::string(type_name(t.type)));
    if (act_ == act_quant::per_block && K % 256 != 0)
      rd.fail_tensor(&t, name, "per-block (Q8_K) activations need K to be a multiple of 256, K = " + std::to_string(K));
    dst.file_type = t.type;
    dst.bias = rd.f32_optional(base + ".bias", M);
    if (const auto* s = f.find_tensor(base + ".scale")) {
      if (s->type != tensor_type::f32 || s->n_elements() != 1) rd.fail_tensor(s, s->name, "expected a single F32 value");
      std::memcpy(&dst.scale, s->data, sizeof(float));
      dst.has_scale = true;
    }
    todo.push_back({&t, &dst, K, M});
  };
  blocks_.resize(static_cast<std::size_t>(c.n_layer));
  for (std::int64_t l = 0; l < c.n_layer; ++l) {
    block_weights& b = blocks_[static_cast<std::size_t>(l)];
    const std::string p = "blk." + std::to_string(l) + ".";
    b.attn_norm = rd.f32_vector(rd.need(p + "attn_norm.weight"), d);
    b.ffn_norm = rd.f32_vector(rd.need(p + "ffn_norm.weight"), d);
    if (c.sub_norms) {
      b.attn_sub_norm = rd.f32_vector(rd.need(p + "attn_sub_norm.weight"), qd);
      b.ffn_sub_norm = rd.f32_vector(rd.need(p + "ffn_sub_norm.weight"), ff);
    }
    projection_tensor(p + "attn_q", d, qd, b.q);
    projection_tensor(p + "attn_k", d, dkv, b.k);
    projection_tensor(p + "attn_v", d, dkv, b.v);
    projection_tensor(p + "attn_output", qd, d, b.o);
    projection_tensor(p + "ffn_gate", d, ff, b.gate);
    projection_tensor(p + "ffn_up", d, ff, b.up);
    projection_tensor(p + "ffn_down", ff, d, b.down);
  }

  // Plan and repack, tensors spread over the pool's threads. Float tensors are ternarized here
  // (read), TQ payloads' block scales looked at (does one scale serve the whole matrix?), then
  // the planner decides and projection::make executes its plan.
  std::vector<std::string> errors(todo.size());
  std::atomic<int> exact{0}, absmean{0};
  pool.run([&](int i, int nt) {
    for (std::size_t j = static_cast<std::size_t>(i); j < todo.size(); j += static_cast<std::size_t>(nt)) {
      const pending& pr = todo[j];
      try {
        weights_source src{pr.K, pr.M, pr.t->type, pr.t->bytes(), nullptr};
        projection_desc desc{pr.K, pr.M, pr.t->type, false};
        std::optional<ternarized> tz;
        if (is_float_type(pr.t->type)) {
          tz = ternarize(pr.t->type, pr.t->bytes(), pr.K, pr.M);
          (tz->exact ? exact : absmean).fetch_add(1, std::memory_order_relaxed);
          src.decoded = &tz->w;
        } else if (pr.t->type != tensor_type::i2_s) {
          desc.per_block_scales = !tq_scales_uniform(pr.t->type, pr.t->bytes());
        }
        pr.dst->w = projection::make(planner_.plan(desc), src);
        rd.release(*pr.t);  // right away, so the peak is not the file + the copy
      } catch (const std::exception& e) {
        errors[j] = e.what();
      }
    }
  });
  for (std::size_t j = 0; j < todo.size(); ++j)
    if (!errors[j].empty()) rd.fail_tensor(todo[j].t, todo[j].t->name, errors[j]);
  if (exact + absmean > 0) {
    std::string n = std::to_string(exact + absmean) + " float projection tensors ternarized: " + std::to_string(exact) +
                    " exactly ternary x one scale (lossless), " + std::to_string(absmean) +
                    " by BitNet's absmean rule (s = mean |W|, w = clamp(round(W / s), -1, 1))";
    info_.notes.push_back(std::move(n));
  }

  // The head is read in full every token: from a mapped file, copy it into an aligned_buffer
  // (huge pages where the OS gives them: bench_dense's Q6_K 2B4T head streams at about 16 GB/s
  // from them against 11 GB/s from 4 KiB file pages), in 16 MiB pieces whose file pages are
  // released right after, so resident memory never holds both copies.
  if (f.memory_mapped()) {
    const std::size_t n = head_t->bytes().size();
    head_copy_.resize(n);
    constexpr std::size_t kPiece = std::size_t{16} << 20;
    for (std::size_t o = 0; o < n; o += kPiece) {
      const std::size_t len = std::min(kPiece, n - o);
      std::memcpy(head_copy_.data() + o, head_t->data + o, len);
      rd.release(head_t->data, o + len);  // from the start: pages straddling pieces go too
    }
    head_.data = head_copy_.data();
    if (head_t == &te) embd_.data = head_copy_.data();
  }
#if defined(__GLIBC__)
  ::malloc_trim(0);  // decoded per-tensor temporaries (TQ1_0, LUT copies) would stay resident otherwise
#endif
}

std::size_t model::decode_weight_bytes() const noexcept {
  std::size_t n = 0;
  for (const auto& b : blocks_)
    for (const linear* L : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down}) n += L->w.decode_bytes();
  return n;
}

void model::fill_info() {
  model_info& i = info_;
  const config& c = cfg_;
  const gguf::file& f = file();
  i.arch = c.arch;
  i.name = std::string(f.get_string_or("general.name", ""));
  i.n_layer = c.n_layer;
  i.n_embd = c.n_embd;
  i.n_ff = c.n_ff;
  i.n_head = c.n_head;
  i.n_head_kv = c.n_head_kv;
  i.head_dim = c.head_dim;
  i.n_vocab = c.n_vocab;
  i.n_ctx_train = c.n_ctx_train;
  i.rope = rope_style_name(c.rope);
  i.activation = activation_name(c.act);
  i.sub_norms = c.sub_norms;
  i.head_type = std::string(type_name(head_.type));
  i.head_kernel = std::string(dk_.kernel_name(head_.type));
  i.repacked_bytes = i.lut_bytes = i.lut_copies = i.ternary_params = 0;
  for (const auto& b : blocks_)
    for (const linear* L : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down}) {
      const std::string tn(type_name(L->file_type));
      if (i.ternary_types.find(tn) == std::string::npos) i.ternary_types += (i.ternary_types.empty() ? "" : "+") + tn;
      i.repacked_bytes += L->w.t2_bytes();
      i.lut_bytes += L->w.lut_bytes();
      i.lut_copies += L->w.lut_copies();
      i.ternary_params += static_cast<std::size_t>(L->w.K() * L->w.M());
    }
  const kernel_set& ks = planner_.t2_kernels();
  const lut_kernel_pair* lut = default_lut_pair();
  const std::string tuned = i.lut_copies > 0 && !lut ? " + tuning file LUT picks" : "";
  i.gemv = (lut ? lut->gemv.name : ks.gemv.name) + tuned;
  i.gemm = (lut ? lut->gemm.name : ks.gemm.name) + tuned;
  i.weights_layout = lut ? lut->gemv.layout.name() : "t2/b" + std::to_string(ks.block());
  if (const std::string& w = planner_.tuning_warning(); !w.empty()) i.warnings.push_back(w);
  for (const auto& w : mf_.warnings()) i.warnings.push_back(w);
}

std::string model_info::weights_summary() const {
  if (weights_layout.rfind("t2/", 0) != 0)
    return mib(lut_bytes + repacked_bytes) + " as " + weights_layout + (repacked_bytes > 0 ? " and t2" : "");
  return mib(repacked_bytes) + " as " + weights_layout + (lut_copies > 0 ? " + " + mib(lut_bytes) + " of tuned LUT copies" : "");
}

}  // namespace bitnet::run
