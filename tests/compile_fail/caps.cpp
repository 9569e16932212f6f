// Compile-fail probes: each BITNET_CF_CASE instantiates one configuration past
// its cap and must be rejected by a static_assert; case 0 is the control that
// must compile, so a broken include path cannot pass for a working cap.
#include <bitnet/bitnet.hpp>

#ifndef BITNET_CF_CASE
#define BITNET_CF_CASE 0
#endif

int main() {
#if BITNET_CF_CASE == 0
  using ok = bitnet::gemv_config<bitnet::arch::avx2, 128, bitnet::kMaxRows, bitnet::kMaxUnroll>;
  bitnet::detail::static_for<bitnet::detail::kMaxStaticFor>([](auto) {});
  return ok::unroll == bitnet::kMaxUnroll ? 0 : 1;
#elif BITNET_CF_CASE == 1
  return bitnet::gemv_config<bitnet::arch::avx2, 128, 4, bitnet::kMaxUnroll + 1>::unroll;
#elif BITNET_CF_CASE == 2
  return bitnet::gemv_config<bitnet::arch::avx2, 128, bitnet::kMaxRows + 1, 1>::rows;
#elif BITNET_CF_CASE == 3
  return bitnet::gemm_config<bitnet::arch::avx2, 128, 4, bitnet::kMaxTokens + 1>::tokens;
#elif BITNET_CF_CASE == 4
  return bitnet::gemm_config<bitnet::arch::avx2, 128, 4, 8>::tokens;  // 32 accumulators > kMaxTile
#elif BITNET_CF_CASE == 5
  bitnet::detail::static_for<bitnet::detail::kMaxStaticFor + 1>([](auto) {});
  return 0;
#elif BITNET_CF_CASE == 6
  return bitnet::gemv_config<bitnet::arch::avx2, 8640, 4, 1>::block;  // a model dimension as block
#endif
}
