// bitnet/dense.hpp - GEMV for the non-ternary weights of a BitNet model (token
// embedding / tied output head and friends): F32, F16, BF16, Q8_0, Q6_K.
//
// Usage (one decode step, rows split across the host's own threads):
//
//   const bitnet::dense_kernels dk = bitnet::select_dense_kernels(bitnet::cpu_features::detect());
//   bitnet::dense_activation xa;                     // reusable; allocates only when K grows
//   xa.prepare(bitnet::tensor_type::f16, x, K);      // once per x: rounds / quantizes it
//   // thread t of T:
//   bitnet::dense_gemv(dk, bitnet::tensor_type::f16, W, row_bytes, xa, y, M * t / T, M * (t + 1) / T);
//
// Contract
// * W is a row-major matrix of M rows of K values in the weight type's GGUF layout,
//   row m at W + m*row_bytes (row_bytes >= dense_row_bytes(type, K)), any address.
// * y[m] = dot(row m, x) is written for m in [row_begin, row_end) only; y points to
//   element 0 of the whole output. Concurrent calls on disjoint row ranges that
//   share one prepared dense_activation are safe (it is only read).
// * Activation semantics (as ggml computes these products): F16 weights see x
//   rounded to fp16 (products exact, sums in f32), Q8_0 weights see Q8_0
//   activations, Q6_K weights see Q8_K activations; F32 and BF16 weights see x
//   unchanged. Formats and formulas: dense_ref.hpp.
// * Kernel names: "gemv_<weights>_<activations>/<arch>", e.g. "gemv_f16_f32/avx2",
//   "gemv_q8_0_q8/avx512bw", "gemv_q6k_q8k/neon64dp", "gemv_bf16_f32/scalar".
#pragma once

#include <algorithm>    // std::copy, std::max
#include <array>        // compile-time name buffers
#include <cstddef>      // std::size_t
#include <cstdint>      // fixed-width integers
#include <stdexcept>    // std::invalid_argument
#include <string>       // error messages
#include <string_view>  // names
#include <vector>       // activation storage

#include "arch.hpp"
#include "dense_ref.hpp"
#include "detail/dense_avx2.hpp"
#include "detail/dense_avx512.hpp"
#include "detail/dense_neon.hpp"
#include "types.hpp"

namespace bitnet {

// Kernel signatures. x is the activation form of the weight type.
using dense_gemv_f_fn = void (*)(const void* W, std::size_t row_bytes, const float* x, std::int64_t K, float* y,
                                 std::int64_t row_begin, std::int64_t row_end);
using dense_gemv_q8_0_fn = void (*)(const void* W, std::size_t row_bytes, const block_q8_0* x, std::int64_t K, float* y,
                                    std::int64_t row_begin, std::int64_t row_end);
using dense_gemv_q6k_fn = void (*)(const void* W, std::size_t row_bytes, const block_q8_k* x, std::int64_t K, float* y,
                                   std::int64_t row_begin, std::int64_t row_end);

template <class Fn> struct dense_kernel {
  Fn fn = nullptr;
  std::string_view name;  // canonical, e.g. "gemv_f16_f32/avx2"
};

// One arch's kernels; a value the caller holds (the library keeps no global state).
struct dense_kernels {
  dense_kernel<dense_gemv_f_fn> f32;
  dense_kernel<dense_gemv_f_fn> f16;
  dense_kernel<dense_gemv_f_fn> bf16;
  dense_kernel<dense_gemv_q8_0_fn> q8_0;
  dense_kernel<dense_gemv_q6k_fn> q6_k;
  std::string_view arch_name;

  // Canonical name of the kernel used for weight type t ("" if t is not dense).
  constexpr std::string_view kernel_name(tensor_type t) const noexcept {
    switch (t) {
      case tensor_type::f32: return f32.name;
      case tensor_type::f16: return f16.name;
      case tensor_type::bf16: return bf16.name;
      case tensor_type::q8_0: return q8_0.name;
      case tensor_type::q6_k: return q6_k.name;
      default: return {};
    }
  }
};

namespace detail::dense {

template <const std::string_view&... S> struct join {
  static constexpr auto buf = [] {
    std::array<char, (S.size() + ... + 0) + 1> a{};
    std::size_t i = 0;
    ((std::copy(S.begin(), S.end(), a.begin() + static_cast<std::ptrdiff_t>(i)), i += S.size()), ...);
    return a;
  }();
  static constexpr std::string_view value{buf.data(), buf.size() - 1};
};

inline constexpr std::string_view kSlash = "/";
inline constexpr std::string_view kOpF32 = "gemv_f32_f32";
inline constexpr std::string_view kOpF16 = "gemv_f16_f32";
inline constexpr std::string_view kOpBF16 = "gemv_bf16_f32";
inline constexpr std::string_view kOpQ8_0 = "gemv_q8_0_q8";
inline constexpr std::string_view kOpQ6K = "gemv_q6k_q8k";

// Which kernel struct implements each weight type for an arch. Arches with no
// body of their own for a type reuse one they are a superset of (the name then
// says which one runs).
template <class A> struct impl_of;
template <> struct impl_of<arch::scalar> {
  using f = scalar_kernels;
  using f_arch = arch::scalar;
  using q = scalar_kernels;
  using q_arch = arch::scalar;
};
#if BITNET_X86
template <> struct impl_of<arch::avx2> {
  using f = avx2_kernels;
  using f_arch = arch::avx2;
  using q = avx2_kernels;
  using q_arch = arch::avx2;
};
template <> struct impl_of<arch::avx512bw> {
  using f = avx512_kernels;
  using f_arch = arch::avx512bw;
  using q = avx512_kernels;
  using q_arch = arch::avx512bw;
};
#endif
#if BITNET_ARM64
template <> struct impl_of<arch::neon64> {
  using f = neon_kernels;
  using f_arch = arch::neon64;
  using q = neon_kernels;
  using q_arch = arch::neon64;
};
template <> struct impl_of<arch::neon64_dotprod> {
  using f = neon_kernels;  // float types gain nothing from sdot
  using f_arch = arch::neon64;
  using q = neon_dotprod_kernels;
  using q_arch = arch::neon64_dotprod;
};
#endif

template <class A> constexpr dense_kernels make_kernels() noexcept {
  using I = impl_of<A>;
  using F = typename I::f;
  using Q = typename I::q;
  dense_kernels k;
  k.f32 = {&F::gemv_f32_f32, join<kOpF32, kSlash, I::f_arch::name>::value};
  k.f16 = {&F::gemv_f16_f32, join<kOpF16, kSlash, I::f_arch::name>::value};
  k.bf16 = {&F::gemv_bf16_f32, join<kOpBF16, kSlash, I::f_arch::name>::value};
  k.q8_0 = {&Q::gemv_q8_0_q8, join<kOpQ8_0, kSlash, I::q_arch::name>::value};
  k.q6_k = {&Q::gemv_q6k_q8k, join<kOpQ6K, kSlash, I::q_arch::name>::value};
  k.arch_name = A::name;
  return k;
}

[[noreturn]] inline void bad_override(std::string_view name, const std::string& why) {
  std::string msg = "select_dense_kernels: arch override '" + std::string(name) + "' " + why + "; valid names:";
  for (auto n : all_arch_names()) msg.append(" ").append(n);
  throw std::invalid_argument(msg);
}

template <class A> dense_kernels checked(const cpu_features& f, std::string_view name) {
  if (!arch_runs_on<A>(f)) bad_override(name, "cannot run on this CPU (or is not built for it)");
  return make_kernels<A>();
}

}  // namespace detail::dense

// The kernels of arch A (the caller checks arch_runs_on<A> before calling them).
// Only arches with dense bodies: scalar, avx2, avx512bw, neon64, neon64_dotprod.
template <class A> constexpr dense_kernels dense_kernels_for() noexcept { return detail::dense::make_kernels<A>(); }

// Best kernels for the CPU, or the named arch. An override must be one of
// all_arch_names() and runnable on `f`, else std::invalid_argument (which lists
// the valid names). "avx512vnni" selects the avx512bw kernels (no VNNI bodies).
inline dense_kernels select_dense_kernels(const cpu_features& f, std::string_view arch_override = "") {
  if (arch_override.empty()) {
#if BITNET_X86
    if (arch_runs_on<arch::avx512bw>(f)) return detail::dense::make_kernels<arch::avx512bw>();
    if (arch_runs_on<arch::avx2>(f)) return detail::dense::make_kernels<arch::avx2>();
#endif
#if BITNET_ARM64
    if (arch_runs_on<arch::neon64_dotprod>(f)) return detail::dense::make_kernels<arch::neon64_dotprod>();
    if (arch_runs_on<arch::neon64>(f)) return detail::dense::make_kernels<arch::neon64>();
#endif
    return detail::dense::make_kernels<arch::scalar>();
  }
  if (arch_rank(arch_override) < 0) detail::dense::bad_override(arch_override, "is unknown");
  if (arch_override == arch::scalar::name) return detail::dense::make_kernels<arch::scalar>();
#if BITNET_X86
  if (arch_override == arch::avx2::name) return detail::dense::checked<arch::avx2>(f, arch_override);
  if (arch_override == arch::avx512bw::name) return detail::dense::checked<arch::avx512bw>(f, arch_override);
  if (arch_override == arch::avx512vnni::name) {
    if (!arch_runs_on<arch::avx512vnni>(f)) detail::dense::bad_override(arch_override, "cannot run on this CPU");
    return detail::dense::make_kernels<arch::avx512bw>();
  }
#endif
#if BITNET_ARM64
  if (arch_override == arch::neon64::name) return detail::dense::checked<arch::neon64>(f, arch_override);
  if (arch_override == arch::neon64_dotprod::name)
    return detail::dense::checked<arch::neon64_dotprod>(f, arch_override);
#endif
  detail::dense::bad_override(arch_override, "is not built for this CPU family");
}

// ---------------------------------------------------------------- activations

enum class dense_act_form : std::uint8_t { none, f32, f16, q8_0, q8_k };

constexpr dense_act_form dense_activation_form(tensor_type wtype) noexcept {
  switch (wtype) {
    case tensor_type::f32:
    case tensor_type::bf16: return dense_act_form::f32;
    case tensor_type::f16: return dense_act_form::f16;
    case tensor_type::q8_0: return dense_act_form::q8_0;
    case tensor_type::q6_k: return dense_act_form::q8_k;
    default: return dense_act_form::none;
  }
}

// N activation rows in the form one weight type needs. Storage is reused: prepare()
// allocates only when N*K grows beyond what was seen before.
class dense_activation {
 public:
  dense_activation() = default;

  // Single row x[0..K).
  void prepare(tensor_type wtype, const float* x, std::int64_t K) { prepare_batch(wtype, x, 1, K, K); }

  // N rows, row n at x + n*ldx.
  void prepare_batch(tensor_type wtype, const float* x, std::int64_t N, std::int64_t K, std::int64_t ldx) {
    const dense_act_form form = dense_activation_form(wtype);
    if (form == dense_act_form::none)
      throw std::invalid_argument("dense_activation: weight type " + std::string(type_name(wtype)) + " is not dense");
    if (N <= 0 || K <= 0 || ldx < K)
      throw std::invalid_argument("dense_activation: need N > 0, K > 0, ldx >= K (N=" + std::to_string(N) +
                                  ", K=" + std::to_string(K) + ", ldx=" + std::to_string(ldx) + ")");
    const std::int64_t block = form == dense_act_form::q8_0 ? kQK8_0 : form == dense_act_form::q8_k ? kQK_K : 1;
    if (K % block != 0)
      throw std::invalid_argument("dense_activation: K=" + std::to_string(K) + " must be a multiple of " +
                                  std::to_string(block) + " for " + std::string(type_name(wtype)) + " weights");
    form_ = dense_act_form::none;
    const auto n = static_cast<std::size_t>(N), k = static_cast<std::size_t>(K);
    for (std::size_t r = 0; r < n; ++r) {
      const float* xr = x + r * static_cast<std::size_t>(ldx);
      switch (form) {
        case dense_act_form::f32:
          grow(f_, n * k);
          std::copy(xr, xr + k, f_.data() + r * k);
          break;
        case dense_act_form::f16:
          grow(f_, n * k);
          round_row_to_f16(xr, f_.data() + r * k, K);
          break;
        case dense_act_form::q8_0:
          grow(q80_, n * k / kQK8_0);
          quantize_row_q8_0(xr, q80_.data() + r * k / kQK8_0, K);
          break;
        case dense_act_form::q8_k:
          grow(q8k_, n * k / kQK_K);
          quantize_row_q8_k(xr, q8k_.data() + r * k / kQK_K, K);
          break;
        case dense_act_form::none: break;
      }
    }
    form_ = form;
    n_ = N;
    k_ = K;
  }

  dense_act_form form() const noexcept { return form_; }
  std::int64_t rows() const noexcept { return n_; }
  std::int64_t K() const noexcept { return k_; }
  // Row n of the prepared form (nullptr if another form is prepared).
  const float* f32(std::int64_t n = 0) const noexcept {
    return form_ == dense_act_form::f32 || form_ == dense_act_form::f16 ? f_.data() + n * k_ : nullptr;
  }
  const block_q8_0* q8_0(std::int64_t n = 0) const noexcept {
    return form_ == dense_act_form::q8_0 ? q80_.data() + n * (k_ / kQK8_0) : nullptr;
  }
  const block_q8_k* q8_k(std::int64_t n = 0) const noexcept {
    return form_ == dense_act_form::q8_k ? q8k_.data() + n * (k_ / kQK_K) : nullptr;
  }

 private:
  template <class T> static void grow(std::vector<T>& v, std::size_t n) {
    if (v.size() < n) v.resize(n);
  }
  std::vector<float> f_;
  std::vector<block_q8_0> q80_;
  std::vector<block_q8_k> q8k_;
  dense_act_form form_ = dense_act_form::none;
  std::int64_t n_ = 0;
  std::int64_t k_ = 0;
};

// ---------------------------------------------------------------- entry points

namespace detail::dense {

inline void check_gemv(const dense_kernels& k, tensor_type wtype, const void* W, std::size_t row_bytes,
                       const dense_activation& x, std::int64_t n, const float* y, std::int64_t row_begin,
                       std::int64_t row_end) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument("dense_gemv(" + std::string(type_name(wtype)) + "): " + why);
  };
  if (!dense_weight_type(wtype)) fail("not a dense weight type");
  if (k.kernel_name(wtype).empty()) fail("kernel table has no kernel for this type");
  if (x.form() != dense_activation_form(wtype)) fail("activation was not prepared for this weight type");
  if (n < 0 || n >= x.rows()) fail("activation row out of range");
  if (row_begin < 0 || row_end < row_begin)
    fail("bad row range [" + std::to_string(row_begin) + ", " + std::to_string(row_end) + ")");
  if (row_bytes < dense_row_bytes(wtype, x.K()))
    fail("row_bytes=" + std::to_string(row_bytes) + " is less than one row of K=" + std::to_string(x.K()));
  if (row_end > row_begin && (W == nullptr || y == nullptr)) fail("null W or y");
}

inline void run(const dense_kernels& k, tensor_type wtype, const void* W, std::size_t row_bytes,
                const dense_activation& x, std::int64_t n, float* y, std::int64_t r0, std::int64_t r1) {
  const std::int64_t K = x.K();
  switch (wtype) {
    case tensor_type::f32: return k.f32.fn(W, row_bytes, x.f32(n), K, y, r0, r1);
    case tensor_type::f16: return k.f16.fn(W, row_bytes, x.f32(n), K, y, r0, r1);
    case tensor_type::bf16: return k.bf16.fn(W, row_bytes, x.f32(n), K, y, r0, r1);
    case tensor_type::q8_0: return k.q8_0.fn(W, row_bytes, x.q8_0(n), K, y, r0, r1);
    case tensor_type::q6_k: return k.q6_k.fn(W, row_bytes, x.q8_k(n), K, y, r0, r1);
    default: return;
  }
}

}  // namespace detail::dense

// y[m] = dot(row m of W, x) for m in [row_begin, row_end), x prepared for wtype
// (row 0 of a batch). Throws std::invalid_argument on inconsistent arguments.
inline void dense_gemv(const dense_kernels& k, tensor_type wtype, const void* W, std::size_t row_bytes,
                       const dense_activation& x, float* y, std::int64_t row_begin, std::int64_t row_end) {
  detail::dense::check_gemv(k, wtype, W, row_bytes, x, 0, y, row_begin, row_end);
  if (row_end > row_begin) detail::dense::run(k, wtype, W, row_bytes, x, 0, y, row_begin, row_end);
}

// Convenience: prepares `scratch` from x[0..K), then runs the row range. Do not
// share one scratch between threads with this overload; prepare once and use the
// overload above instead.
inline void dense_gemv(const dense_kernels& k, tensor_type wtype, const void* W, std::size_t row_bytes, const float* x,
                       std::int64_t K, float* y, std::int64_t row_begin, std::int64_t row_end,
                       dense_activation& scratch) {
  scratch.prepare(wtype, x, K);
  dense_gemv(k, wtype, W, row_bytes, scratch, y, row_begin, row_end);
}

// Batched: y[n*ldy + m] = dot(row m, x_n) for every prepared row n and m in
// [row_begin, row_end). Rows are walked in tiles of about 64 KiB of weights so each
// tile is read from memory once and re-read from cache for the other x_n.
inline void dense_gemm(const dense_kernels& k, tensor_type wtype, const void* W, std::size_t row_bytes,
                       const dense_activation& x, float* y, std::size_t ldy, std::int64_t row_begin,
                       std::int64_t row_end) {
  detail::dense::check_gemv(k, wtype, W, row_bytes, x, 0, y, row_begin, row_end);
  if (x.rows() > 1 && ldy < static_cast<std::size_t>(row_end))
    throw std::invalid_argument("dense_gemm: ldy must be >= row_end");
  const std::int64_t tile =
      std::max<std::int64_t>(1, static_cast<std::int64_t>((64u << 10) / std::max<std::size_t>(row_bytes, 1)));
  for (std::int64_t r = row_begin; r < row_end; r += tile) {
    const std::int64_t e = std::min(row_end, r + tile);
    for (std::int64_t n = 0; n < x.rows(); ++n)
      detail::dense::run(k, wtype, W, row_bytes, x, n, y + static_cast<std::size_t>(n) * ldy, r, e);
  }
}

}  // namespace bitnet
