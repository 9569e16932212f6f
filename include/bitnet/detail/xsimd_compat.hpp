// bitnet/detail/xsimd_compat.hpp - every difference between xsimd 8.1 and 13 lives here.
//
// We use xsimd for its architecture tag types (xsimd::avx2, xsimd::avx512bw,
// xsimd::neon64) and name them in kernel configs. xsimd 8.1 has no tags for
// AVX512-VNNI or the Armv8.2 dot-product extension; xsimd >= 11 has
// `avx512vnni<avx512bw>` and xsimd 13 has `i8mm<neon64>` but still no dotprod.
// So both get a small tag of ours, derived from the xsimd tag they extend.
#pragma once

#include <xsimd/xsimd.hpp>  // arch tag types, version macros

namespace bitnet::detail {

inline constexpr int kXsimdMajor = XSIMD_VERSION_MAJOR;

// xsimd tags exist for x86 and ARM regardless of the host compiler's target
// flags (they are plain structs); only their batch kernels are gated.
using xsimd_avx2 = xsimd::avx2;
using xsimd_avx512bw = xsimd::avx512bw;
using xsimd_neon64 = xsimd::neon64;

#if XSIMD_VERSION_MAJOR >= 11
using xsimd_avx512vnni = xsimd::avx512vnni<xsimd::avx512bw>;
#else
struct xsimd_avx512vnni : xsimd::avx512bw {
  static constexpr char const* name() noexcept { return "avx512vnni"; }
};
#endif

struct xsimd_neon64_dotprod : xsimd::neon64 {
  static constexpr char const* name() noexcept { return "neon64+dotprod"; }
};

}  // namespace bitnet::detail
