// bitnet/dispatch.hpp - the compiled kernel grid and runtime selection.
//
// `gemv_grid` / `gemm_grid` list every instantiation this build compiles; tests,
// benchmarks, the tuner and dispatch all walk these same lists, by the same
// canonical names (config.hpp). `select_kernels()` returns a `kernel_set` value
// that the caller holds: the library keeps no global state and owns no threads.
//
// Selection: the best arch the CPU runs (AVX-512 VNNI > AVX-512BW > AVX2 >
// NEON dotprod > NEON > scalar) and that arch's default variants. Overrides:
//   API:          kernel_options{.arch = "avx2", .gemv = "gemv_t2_q8/avx2/b128/r4/u2", .gemm = ...}
//   environment:  BITNET_ARCH, BITNET_GEMV, BITNET_GEMM (same values), read by
//                 kernel_options::from_env().
// An unknown name, or one the CPU cannot run, throws std::invalid_argument whose
// message lists the valid names.
#pragma once

#include <cstdint>      // fixed-width integers
#include <cstdlib>      // std::getenv
#include <stdexcept>    // errors
#include <string>       // names
#include <string_view>  // names
#include <vector>       // the registry

#include "arch.hpp"
#include "gemv.hpp"

namespace bitnet {

template <class... T> struct type_list {};

// The grid. Scalar variants exist for every block so the fallback covers any layout.
using gemv_grid = type_list<
    gemv_config<arch::scalar, 128, 1, 1>, gemv_config<arch::scalar, 128, 4, 1>, gemv_config<arch::scalar, 256, 4, 2>,
    gemv_config<arch::avx2, 128, 1, 1>, gemv_config<arch::avx2, 128, 1, 4>, gemv_config<arch::avx2, 128, 2, 2>,
    gemv_config<arch::avx2, 128, 4, 1>, gemv_config<arch::avx2, 128, 4, 2>, gemv_config<arch::avx2, 128, 4, 4>,
    gemv_config<arch::avx2, 128, 8, 1>, gemv_config<arch::avx2, 256, 2, 1>, gemv_config<arch::avx2, 256, 4, 1>,
    gemv_config<arch::avx2, 256, 4, 2>, gemv_config<arch::avx512bw, 256, 1, 1>, gemv_config<arch::avx512bw, 256, 4, 1>,
    gemv_config<arch::avx512vnni, 256, 1, 1>, gemv_config<arch::avx512vnni, 256, 4, 1>,
    gemv_config<arch::neon64, 128, 1, 1>, gemv_config<arch::neon64, 128, 4, 1>, gemv_config<arch::neon64, 256, 4, 1>,
    gemv_config<arch::neon64_dotprod, 128, 1, 1>, gemv_config<arch::neon64_dotprod, 128, 4, 1>,
    gemv_config<arch::neon64_dotprod, 256, 4, 1>>;

using gemm_grid = type_list<
    gemm_config<arch::scalar, 128, 1, 1>, gemm_config<arch::scalar, 128, 2, 4>, gemm_config<arch::scalar, 256, 2, 2>,
    gemm_config<arch::avx2, 128, 1, 4>, gemm_config<arch::avx2, 128, 1, 8>, gemm_config<arch::avx2, 128, 2, 4>,
    gemm_config<arch::avx2, 128, 3, 3>, gemm_config<arch::avx2, 256, 2, 4>, gemm_config<arch::avx512bw, 256, 4, 4>,
    gemm_config<arch::avx512vnni, 256, 4, 4>, gemm_config<arch::avx512vnni, 256, 2, 8>,
    gemm_config<arch::avx512vnni, 256, 8, 2>, gemm_config<arch::neon64, 128, 4, 4>,
    gemm_config<arch::neon64_dotprod, 128, 2, 4>, gemm_config<arch::neon64_dotprod, 128, 4, 4>,
    gemm_config<arch::neon64_dotprod, 256, 2, 4>>;

// Default variant per arch (what selection picks without a name override).
inline std::string_view default_gemv_name(std::string_view arch_name) noexcept {
  if (arch_name == arch::avx2::name) return "gemv_t2_q8/avx2/b128/r4/u1";
  if (arch_name == arch::avx512bw::name) return "gemv_t2_q8/avx512bw/b256/r4/u1";
  if (arch_name == arch::avx512vnni::name) return "gemv_t2_q8/avx512vnni/b256/r4/u1";
  if (arch_name == arch::neon64::name) return "gemv_t2_q8/neon64/b128/r4/u1";
  if (arch_name == arch::neon64_dotprod::name) return "gemv_t2_q8/neon64dp/b128/r4/u1";
  return "gemv_t2_q8/scalar/b128/r4/u1";
}
inline std::string_view default_gemm_name(std::string_view arch_name) noexcept {
  if (arch_name == arch::avx2::name) return "gemm_t2_q8/avx2/b128/r1/t4";
  if (arch_name == arch::avx512bw::name) return "gemm_t2_q8/avx512bw/b256/r4/t4";
  if (arch_name == arch::avx512vnni::name) return "gemm_t2_q8/avx512vnni/b256/r2/t8";
  if (arch_name == arch::neon64::name) return "gemm_t2_q8/neon64/b128/r4/t4";
  if (arch_name == arch::neon64_dotprod::name) return "gemm_t2_q8/neon64dp/b128/r2/t4";
  return "gemm_t2_q8/scalar/b128/r2/t4";
}

using gemv_fn = void (*)(const ternary_matrix&, const activations&, std::int64_t, float*, std::int64_t, std::int64_t);
using gemm_fn = void (*)(const ternary_matrix&, const activations&, float*, std::int64_t, std::int64_t, std::int64_t);
using gemv_dot_fn = void (*)(const ternary_matrix&, const activations&, std::int64_t, std::int32_t*, std::int64_t,
                             std::int64_t);

struct gemv_entry {
  std::string name;
  std::string_view arch;
  int rank;
  int block;
  bool (*runs_on)(const cpu_features&);
  gemv_fn fn;
  gemv_dot_fn dot;  // the same kernel returning exact int32 sums of w * q (gemv.hpp: gemv_dot)
};
struct gemm_entry {
  std::string name;
  std::string_view arch;
  int rank;
  int block;
  bool (*runs_on)(const cpu_features&);
  gemm_fn fn;
};

namespace detail {
template <class C> void add_gemv(std::vector<gemv_entry>& v) {
  if constexpr (arch_compiled<typename C::arch>())
    v.push_back({C::name(), C::arch::name, C::arch::rank, C::block, &arch_runs_on<typename C::arch>, &gemv<C>,
                 &gemv_dot<C>});
}
template <class C> void add_gemm(std::vector<gemm_entry>& v) {
  if constexpr (arch_compiled<typename C::arch>())
    v.push_back({C::name(), C::arch::name, C::arch::rank, C::block, &arch_runs_on<typename C::arch>, &gemm<C>});
}
template <class... C> std::vector<gemv_entry> make_gemv_entries(type_list<C...>) {
  std::vector<gemv_entry> v;
  (add_gemv<C>(v), ...);
  return v;
}
template <class... C> std::vector<gemm_entry> make_gemm_entries(type_list<C...>) {
  std::vector<gemm_entry> v;
  (add_gemm<C>(v), ...);
  return v;
}
}  // namespace detail

// Every variant compiled into this build (whether or not this CPU runs it).
#if BITNET_REGISTRY_EXTERN
std::vector<gemv_entry> gemv_variants();  // defined in src/kernel_registry.cpp (config.hpp)
std::vector<gemm_entry> gemm_variants();
#else
BITNET_REGISTRY_LINKAGE std::vector<gemv_entry> gemv_variants() { return detail::make_gemv_entries(gemv_grid{}); }
BITNET_REGISTRY_LINKAGE std::vector<gemm_entry> gemm_variants() { return detail::make_gemm_entries(gemm_grid{}); }
#endif

struct kernel_options {
  std::string arch;  // "" = best available
  std::string gemv;  // "" = the arch's default
  std::string gemm;  // "" = the arch's default with the GEMV's block

  static kernel_options from_env() {
    kernel_options o;
    if (const char* a = std::getenv("BITNET_ARCH")) o.arch = a;
    if (const char* g = std::getenv("BITNET_GEMV")) o.gemv = g;
    if (const char* g = std::getenv("BITNET_GEMM")) o.gemm = g;
    return o;
  }
};

// What a host holds: the chosen kernels and the layout block to repack with.
struct kernel_set {
  gemv_entry gemv;
  gemm_entry gemm;
  std::string_view arch;
  int block() const noexcept { return gemv.block; }
};

namespace detail {
template <class E> std::string list_names(const std::vector<E>& v, const cpu_features& f) {
  std::string s;
  for (const auto& e : v) {
    s += "\n  " + e.name;
    if (!e.runs_on(f)) s += " (not supported by this CPU)";
  }
  return s;
}
template <class E>
const E& find_named(const std::vector<E>& v, std::string_view name, const cpu_features& f, const char* what) {
  for (const auto& e : v) {
    if (e.name != name) continue;
    if (!e.runs_on(f))
      throw std::invalid_argument(std::string(what) + " kernel '" + std::string(name) +
                                  "' is compiled but this CPU cannot run it; valid names:" + list_names(v, f));
    return e;
  }
  throw std::invalid_argument(std::string("unknown ") + what + " kernel '" + std::string(name) +
                              "'; valid names:" + list_names(v, f));
}
}  // namespace detail

inline kernel_set select_kernels(const cpu_features& f, const kernel_options& o = {}) {
  const auto gv = gemv_variants();
  const auto gm = gemm_variants();
  std::string_view arch_name;
  if (!o.arch.empty()) {
    if (arch_rank(o.arch) < 0) {
      std::string names;
      for (auto n : all_arch_names()) names.append(" ").append(n);
      throw std::invalid_argument("unknown arch '" + o.arch + "'; valid names:" + names);
    }
    bool runnable = false;
    for (const auto& e : gv)
      if (e.arch == o.arch && e.runs_on(f)) {
        runnable = true;
        arch_name = e.arch;
      }
    if (!runnable) {
      std::string names;
      for (auto n : all_arch_names()) {
        for (const auto& e : gv)
          if (e.arch == n && e.runs_on(f)) {
            names.append(" ").append(n);
            break;
          }
      }
      throw std::invalid_argument("arch '" + o.arch + "' is not available on this CPU or in this build; available:" +
                                  names);
    }
  } else {
    int best = -1;
    for (const auto& e : gv)
      if (e.runs_on(f) && e.rank > best) {
        best = e.rank;
        arch_name = e.arch;
      }
  }
  kernel_set ks{};
  const std::string gname = o.gemv.empty() ? std::string(default_gemv_name(arch_name)) : o.gemv;
  ks.gemv = detail::find_named(gv, gname, f, "GEMV");
  if (!o.arch.empty() && !o.gemv.empty() && ks.gemv.arch != arch_name)
    throw std::invalid_argument("GEMV kernel '" + gname + "' does not belong to arch '" + o.arch + "'");
  ks.arch = ks.gemv.arch;
  if (!o.gemm.empty()) {
    ks.gemm = detail::find_named(gm, o.gemm, f, "GEMM");
    if (ks.gemm.block != ks.gemv.block)
      throw std::invalid_argument("GEMM kernel '" + o.gemm + "' uses block " + std::to_string(ks.gemm.block) +
                                  " but GEMV kernel '" + ks.gemv.name + "' uses block " +
                                  std::to_string(ks.gemv.block) + "; both must share one weight layout");
  } else {
    const std::string dname(default_gemm_name(ks.arch));
    const gemm_entry* pick = nullptr;
    for (const auto& e : gm)
      if (e.name == dname && e.block == ks.gemv.block && e.runs_on(f)) pick = &e;
    if (!pick)  // the default has another block: take the first GEMM of this arch and block
      for (const auto& e : gm)
        if (!pick && e.arch == ks.arch && e.block == ks.gemv.block && e.runs_on(f)) pick = &e;
    if (!pick)  // fall back to scalar with the same block (always compiled)
      for (const auto& e : gm)
        if (!pick && e.arch == arch::scalar::name && e.block == ks.gemv.block) pick = &e;
    ks.gemm = *pick;
  }
  return ks;
}

// Detect the CPU and apply the environment overrides.
inline kernel_set select_kernels_from_env() { return select_kernels(cpu_features::detect(), kernel_options::from_env()); }

}  // namespace bitnet
