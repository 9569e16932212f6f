// bitnet/runner/kernels.hpp - the runner's one place that decides and runs ternary kernels.
//
// Deciding is one step and loading executes it:
//   planner      made once per model from the load options and the CPU (the t2 kernel set,
//                the CPU's default LUT pair, a tuning file). plan(desc) maps one projection's
//                shape and file format to a projection_plan: the layouts its weights are
//                repacked to and the kernels decode (one token) and prefill (a batch) call.
//                It reads no file and touches no weights.
//   projection   one projection's weights in the planned layouts, and the two calls the forward
//                pass makes: gemv (one activation row) and gemm (a batch of rows). It holds t2
//                codes only when a kernel (or --precise) reads them: no kernel is ever handed a
//                matrix without codes.
// The rest of the runner sees only these two types (and the t2 kernel_set, for --precise's
// exact dot products). When the kernel library gains its own planning call, planner::plan's
// body becomes that call and projection::make executes the plan it returns.
//
// Decisions (bit-identical results whichever is taken; only speed and memory differ):
//   * LUT kernels take per-token activations and one weight scale per matrix; anything else
//     (per-block Q8_K activations, TQ matrices whose block scales differ) runs on t2.
//   * Without a tuning file or kernel names, the CPU's preferred LUT pair (AVX-512 VNNI + VBMI:
//     the 1.67-bit dot layout) runs decode and prefill, made straight from the file; no t2
//     codes are made.
//   * With a tuning file, each shape gets its tuned GEMV (batch 1) and GEMM (batch
//     tuning_batch); where both are LUT kernels the t2 codes are not kept.
//   * keep_t2 (--precise reads the t2 codes) turns the default LUT pair off and keeps t2.
#pragma once

#include <cstddef>     // std::size_t
#include <cstdint>     // fixed-width integers
#include <memory>      // shared LUT copies (decode and prefill may share one)
#include <optional>    // optional LUT picks
#include <span>        // file bytes
#include <string>      // kernel names
#include <utility>     // std::move

#include <bitnet/bitnet.hpp>  // kernel_set, repack, activations, LUT kernels
#include <bitnet/tuning.hpp>  // tuning files: per-shape kernel picks

namespace bitnet::run {

// What the planner is told about one projection y = W x: its shape and what the file holds.
struct projection_desc {
  std::int64_t K = 0, M = 0;                // inputs (ne[0]) and outputs (ne[1])
  tensor_type format = tensor_type::i2_s;   // the file's type (F32/F16/BF16 for ternarized float tensors)
  bool per_block_scales = false;            // TQ blocks whose scales differ
};

// One LUT kernel of a plan: its name, the layout it reads, and the function.
struct lut_pick {
  std::string name;
  lut_layout layout;
  lut_gemv_fn gemv = nullptr;  // set in a decode pick
  lut_gemm_fn gemm = nullptr;  // set in a prefill pick
};

// How one projection runs.
struct projection_plan {
  bool t2 = true;                              // t2 codes (layout t2/b<t2_block>) are made and kept
  int t2_block = 128;
  gemv_fn t2_gemv = nullptr;                   // the t2 kernels (used where no LUT pick is set)
  gemm_fn t2_gemm = nullptr;
  std::optional<lut_pick> decode_lut, prefill_lut;
  std::string decode_name, prefill_name;       // the kernels decode and prefill call
};

// What planning depends on besides the projection (load_options carries these).
struct plan_options {
  kernel_options kernels;                      // arch / gemv / gemm overrides ("" = best)
  act_quant activations = act_quant::per_token;
  std::string tuning;                          // tuning file (tuning.hpp, bitnet-tune); "" = none
  std::int64_t tuning_batch = 128;             // the batch whose GEMM pick serves prefill
  bool default_luts = true;                    // the CPU's preferred LUT pair where it has one
  std::optional<lut_kernel_pair> luts;         // that pair replaced (tests, hosts with their own pick)
  bool keep_t2 = false;                        // keep the t2 codes (hosts that read them, --precise)
};

class planner {
 public:
  explicit planner(const plan_options& o, const cpu_features& cpu = cpu_features::detect()) : o_(o) {
    ks_ = select_kernels(cpu, o.kernels);
    if (!o.tuning.empty()) {
      auto tk = select_tuned_kernels(cpu, o.kernels, o.tuning);
      tuning_ = std::move(tk.table);
      warning_ = std::move(tk.warning);
      tuning_features_ = tk.features;
    }
    const cpu_features capped = o.kernels.arch.empty() ? cpu : cpu.capped(arch_rank(o.kernels.arch));
    const auto runs = [&](const auto& e) { return e.fn && e.runs_on && e.runs_on(capped); };
    if (o.luts && !(runs(o.luts->gemv) && runs(o.luts->gemm)))
      throw std::invalid_argument("load_options::luts: this CPU cannot run " + o.luts->gemv.name + " and " +
                                  o.luts->gemm.name);
    if (o.default_luts && !o.keep_t2 && tuning_.entries.empty() && o.kernels.gemv.empty() && o.kernels.gemm.empty())
      luts_ = o.luts ? o.luts : preferred_lut_kernels(capped);
    if (luts_ && !(luts_->gemv.layout == luts_->gemm.layout))
      throw std::invalid_argument("load_options::luts: " + luts_->gemv.name + " and " + luts_->gemm.name +
                                  " read different layouts");
  }

  projection_plan plan(const projection_desc& d) const {
    projection_plan p;
    p.t2_block = ks_.block();
    p.t2_gemv = ks_.gemv.fn;
    p.t2_gemm = ks_.gemm.fn;
    p.decode_name = ks_.gemv.name;
    p.prefill_name = ks_.gemm.name;
    if (o_.activations != act_quant::per_token || d.per_block_scales) return p;
    if (luts_) {
      p.decode_lut = lut_pick{luts_->gemv.name, luts_->gemv.layout, luts_->gemv.fn, nullptr};
      p.prefill_lut = lut_pick{luts_->gemm.name, luts_->gemm.layout, nullptr, luts_->gemm.fn};
    } else if (!tuning_.entries.empty()) {
      const auto pick = [&](const char* op, std::int64_t batch) -> std::optional<named_kernel> {
        const tuning_entry* e = tuning_.pick(op, d.M, d.K, batch);
        if (!e) return std::nullopt;
        auto k = find_kernel(e->kernel, tuning_features_);
        if (!k || !k->lut) return std::nullopt;
        return k;
      };
      if (const auto v = pick("gemv", 1); v && v->lut_gemv) p.decode_lut = lut_pick{v->name, v->layout, v->lut_gemv, nullptr};
      if (const auto g = pick("gemm", o_.tuning_batch); g && g->lut_gemm)
        p.prefill_lut = lut_pick{g->name, g->layout, nullptr, g->lut_gemm};
    }
    if (p.decode_lut) p.decode_name = p.decode_lut->name;
    if (p.prefill_lut) p.prefill_name = p.prefill_lut->name;
    p.t2 = !(p.decode_lut && p.prefill_lut) || o_.keep_t2;
    return p;
  }

  const kernel_set& t2_kernels() const noexcept { return ks_; }
  // The LUT pair every one-scale projection runs on (not with a tuning file or kernel names).
  const std::optional<lut_kernel_pair>& default_luts() const noexcept { return luts_; }
  bool tuned() const noexcept { return !tuning_.entries.empty(); }
  // Why a tuning file was ignored ("" if none was given or it loaded).
  const std::string& tuning_warning() const noexcept { return warning_; }

 private:
  plan_options o_;
  kernel_set ks_;
  std::optional<lut_kernel_pair> luts_;
  tuning_table tuning_;
  std::string warning_;
  cpu_features tuning_features_;
};

// Where a projection's weights come from: the file's payload, or weights decoded at read time
// (float tensors, ternarized).
struct weights_source {
  std::int64_t K = 0, M = 0;
  tensor_type format = tensor_type::i2_s;
  std::span<const std::uint8_t> bytes;       // the payload of a ternary tensor
  const ternary_weights* decoded = nullptr;  // or the decoded weights
};

class projection {
 public:
  projection() = default;

  // Repacks `src` into the layouts `p` names.
  static projection make(const projection_plan& p, const weights_source& src) {
    projection r;
    r.K_ = src.K;
    r.M_ = src.M;
    r.t2_gemv_ = p.t2_gemv;
    r.t2_gemm_ = p.t2_gemm;
    std::optional<ternary_weights> unpacked;
    const auto decoded = [&]() -> const ternary_weights& {
      if (src.decoded) return *src.decoded;
      if (!unpacked) unpacked = unpack_ternary(src.format, src.bytes, src.K, src.M);
      return *unpacked;
    };
    if (p.t2) r.t2_ = src.decoded ? repack(*src.decoded, p.t2_block) : repack(src.format, src.bytes, src.K, src.M, p.t2_block);
    if (p.decode_lut) {
      r.lut_v_ = std::make_shared<const lut_matrix>(repack_lut(decoded(), p.decode_lut->layout));
      r.lut_gemv_ = p.decode_lut->gemv;
    }
    if (p.prefill_lut) {
      r.lut_m_ = r.lut_v_ && r.lut_v_->layout == p.prefill_lut->layout
                     ? r.lut_v_
                     : std::make_shared<const lut_matrix>(repack_lut(decoded(), p.prefill_lut->layout));
      r.lut_gemm_ = p.prefill_lut->gemm;
    }
    r.scale_ = r.t2_ ? r.t2_->scale : r.lut_v_ ? r.lut_v_->scale : r.lut_m_->scale;
    return r;
  }

  std::int64_t K() const noexcept { return K_; }
  std::int64_t M() const noexcept { return M_; }
  float weight_scale() const noexcept { return scale_; }  // the common scale (per-block: see t2())

  // y[r0, r1) = W x for activation row 0 of x (decode).
  void gemv(const activations& x, float* y, std::int64_t r0, std::int64_t r1) const {
    if (lut_v_)
      lut_gemv_(*lut_v_, x, 0, y, r0, r1);
    else
      t2_gemv_(*t2_, x, 0, y, r0, r1);
  }
  // Y[t][r0, r1) = W x_t for every activation row t of x (prefill); rows of Y are ldy apart.
  void gemm(const activations& x, float* y, std::int64_t ldy, std::int64_t r0, std::int64_t r1) const {
    if (lut_m_)
      lut_gemm_(*lut_m_, x, y, ldy, r0, r1);
    else
      t2_gemm_(*t2_, x, y, ldy, r0, r1);
  }

  // A LUT GEMV builds its activation tables per call: its rows are split statically.
  bool decode_builds_tables() const noexcept { return lut_v_ != nullptr; }
  // The t2 codes, when kept (nullptr otherwise).
  const ternary_matrix* t2() const noexcept { return t2_ ? &*t2_ : nullptr; }
  bool per_block_scales() const noexcept { return t2_ && t2_->per_block_scales(); }
  std::size_t t2_bytes() const noexcept { return t2_ ? t2_->packed_bytes() : 0; }
  // Bytes of the LUT copies and how many there are (decode and prefill may share one).
  std::size_t lut_bytes() const noexcept {
    return (lut_v_ ? lut_v_->packed_bytes() : 0) + (lut_m_ && lut_m_ != lut_v_ ? lut_m_->packed_bytes() : 0);
  }
  std::size_t lut_copies() const noexcept { return (lut_v_ ? 1u : 0u) + (lut_m_ && lut_m_ != lut_v_ ? 1u : 0u); }
  // Weight bytes one GEMV call reads.
  std::size_t decode_bytes() const noexcept { return lut_v_ ? lut_v_->packed_bytes() : t2_bytes(); }

 private:
  std::int64_t K_ = 0, M_ = 0;
  float scale_ = 0.0f;
  std::optional<ternary_matrix> t2_;
  std::shared_ptr<const lut_matrix> lut_v_, lut_m_;
  gemv_fn t2_gemv_ = nullptr;
  gemm_fn t2_gemm_ = nullptr;
  lut_gemv_fn lut_gemv_ = nullptr;
  lut_gemm_fn lut_gemm_ = nullptr;
};

}  // namespace bitnet::run
