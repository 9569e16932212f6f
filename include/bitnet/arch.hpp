// bitnet/arch.hpp - the instruction sets we build kernels for, CPU detection,
// and name parsing for overrides.
//
// Each arch is a tag type holding its canonical short name (used in kernel
// names such as "gemv_t2_q8/avx2/b128/r4/u2"), the xsimd tag it corresponds to,
// and a rank (higher = preferred). Kernel bodies for an arch are compiled with
// BITNET_TARGET_<ARCH> function attributes, so a baseline build of the host
// still contains them and runtime dispatch decides whether they may run.
#pragma once

#include <cstdint>      // feature bits
#include <string>       // names
#include <string_view>  // names
#include <type_traits>  // is_same_v
#include <vector>       // name lists

#include "detail/xsimd_compat.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#define BITNET_X86 1
#else
#define BITNET_X86 0
#endif
#if defined(__aarch64__)
#define BITNET_ARM64 1
#include <sys/auxv.h>  // getauxval(AT_HWCAP) for asimd/dotprod
#else
#define BITNET_ARM64 0
#endif

#if BITNET_X86
#define BITNET_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define BITNET_TARGET_AVX512BW __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))
#define BITNET_TARGET_AVX512VNNI \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))
// The same targets plus always_inline, for lambdas inside those bodies.
// VNNI plus VBMI (vpermb): only the LUT dot kernels (lut.hpp, lutd) use it; they run on the
// avx512vnni tag when cpu_features::avx512vbmi is set as well.
#define BITNET_TARGET_AVX512VBMI \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")))
#define BITNET_INLINE_AVX512VBMI \
  __attribute__((always_inline, target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")))
#define BITNET_INLINE_AVX2 __attribute__((always_inline, target("avx2,fma,f16c")))
#define BITNET_INLINE_AVX512BW \
  __attribute__((always_inline, target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))
#define BITNET_INLINE_AVX512VNNI \
  __attribute__((always_inline, target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))
#endif
#if BITNET_ARM64
#if defined(__clang__)
#define BITNET_TARGET_DOTPROD __attribute__((target("dotprod")))
#define BITNET_INLINE_DOTPROD __attribute__((always_inline, target("dotprod")))
#else
#define BITNET_TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#define BITNET_INLINE_DOTPROD __attribute__((always_inline, target("arch=armv8.2-a+dotprod")))
#endif
#endif

namespace bitnet {

namespace arch {
struct scalar {
  static constexpr std::string_view name = "scalar";
  static constexpr int rank = 0;
  static constexpr int bytes = 16;  // nominal vector width used for tiling decisions
};
struct avx2 {
  static constexpr std::string_view name = "avx2";
  static constexpr int rank = 20;
  static constexpr int bytes = 32;
  using xsimd_arch = detail::xsimd_avx2;
};
struct avx512bw {
  static constexpr std::string_view name = "avx512bw";
  static constexpr int rank = 30;
  static constexpr int bytes = 64;
  using xsimd_arch = detail::xsimd_avx512bw;
};
struct avx512vnni {
  static constexpr std::string_view name = "avx512vnni";
  static constexpr int rank = 31;
  static constexpr int bytes = 64;
  using xsimd_arch = detail::xsimd_avx512vnni;
};
struct neon64 {
  static constexpr std::string_view name = "neon64";
  static constexpr int rank = 10;
  static constexpr int bytes = 16;
  using xsimd_arch = detail::xsimd_neon64;
};
struct neon64_dotprod {
  static constexpr std::string_view name = "neon64dp";
  static constexpr int rank = 11;
  static constexpr int bytes = 16;
  using xsimd_arch = detail::xsimd_neon64_dotprod;
};
}  // namespace arch

// Whether kernels for an arch are compiled into this build at all (depends
// only on the target CPU family, not on -m flags).
template <class A> constexpr bool arch_compiled() noexcept {
  if constexpr (std::is_same_v<A, arch::scalar>) return true;
#if BITNET_X86
  if constexpr (std::is_same_v<A, arch::avx2> || std::is_same_v<A, arch::avx512bw> ||
                std::is_same_v<A, arch::avx512vnni>)
    return true;
#endif
#if BITNET_ARM64
  if constexpr (std::is_same_v<A, arch::neon64> || std::is_same_v<A, arch::neon64_dotprod>) return true;
#endif
  return false;
}

// What the running CPU (and OS) can execute.
struct cpu_features {
  bool avx2 = false;  // AVX2 + FMA + F16C, OS saves YMM
  bool avx512bw = false;
  bool avx512vnni = false;
  bool avx512vbmi = false;  // VNNI and VBMI (byte permutes): the lutd kernels' extra requirement
  bool neon64 = false;
  bool dotprod = false;

  static cpu_features detect() noexcept {
    cpu_features f;
#if BITNET_X86
    __builtin_cpu_init();
    // __builtin_cpu_supports checks OS support (XGETBV) as well as CPUID;
    // xsimd 8.1's available_architectures() does not, so it is not used here.
    f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    f.avx512bw = f.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    f.avx512vnni = f.avx512bw && __builtin_cpu_supports("avx512vnni");
    f.avx512vbmi = f.avx512vnni && __builtin_cpu_supports("avx512vbmi");
#endif
#if BITNET_ARM64
    f.neon64 = true;  // Advanced SIMD is mandatory on AArch64
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
    f.dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
    return f;
  }

  // Features with everything above `max_rank` switched off (used by BITNET_ARCH).
  cpu_features capped(int max_rank) const noexcept {
    cpu_features f = *this;
    if (max_rank < arch::avx2::rank) f.avx2 = false;
    if (max_rank < arch::avx512bw::rank) f.avx512bw = false;
    if (max_rank < arch::avx512vnni::rank) f.avx512vnni = f.avx512vbmi = false;
    if (max_rank < arch::neon64::rank) f.neon64 = false;
    if (max_rank < arch::neon64_dotprod::rank) f.dotprod = false;
    return f;
  }
};

template <class A> constexpr bool arch_runs_on(const cpu_features& f) noexcept {
  if constexpr (!arch_compiled<A>()) {
    return false;
  } else if constexpr (std::is_same_v<A, arch::scalar>) {
    return true;
  } else if constexpr (std::is_same_v<A, arch::avx2>) {
    return f.avx2;
  } else if constexpr (std::is_same_v<A, arch::avx512bw>) {
    return f.avx512bw;
  } else if constexpr (std::is_same_v<A, arch::avx512vnni>) {
    return f.avx512vnni;
  } else if constexpr (std::is_same_v<A, arch::neon64>) {
    return f.neon64;
  } else if constexpr (std::is_same_v<A, arch::neon64_dotprod>) {
    return f.neon64 && f.dotprod;
  } else {
    return false;
  }
}

// Convenience for tests and benchmarks: can this machine run arch A?
template <class A> inline bool arch_available() noexcept { return arch_runs_on<A>(cpu_features::detect()); }

inline const std::vector<std::string_view>& all_arch_names() {
  static const std::vector<std::string_view> names{arch::scalar::name,   arch::neon64::name,
                                                   arch::neon64_dotprod::name, arch::avx2::name,
                                                   arch::avx512bw::name, arch::avx512vnni::name};
  return names;
}

// Rank of a named arch, or -1 if the name is unknown.
inline int arch_rank(std::string_view name) noexcept {
  if (name == arch::scalar::name) return arch::scalar::rank;
  if (name == arch::avx2::name) return arch::avx2::rank;
  if (name == arch::avx512bw::name) return arch::avx512bw::rank;
  if (name == arch::avx512vnni::name) return arch::avx512vnni::rank;
  if (name == arch::neon64::name) return arch::neon64::rank;
  if (name == arch::neon64_dotprod::name) return arch::neon64_dotprod::rank;
  return -1;
}

}  // namespace bitnet
