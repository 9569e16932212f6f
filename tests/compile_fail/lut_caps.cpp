// Compile-fail probes for the LUT caps (lut.hpp): each BITNET_CF_CASE instantiates one
// configuration past a cap and must be rejected by its static_assert; case 0 is the
// control that must compile: the largest configuration allowed by every cap, with its
// kernels instantiated, so a broken include path cannot pass for a working cap.
#include <bitnet/lut.hpp>

#ifndef BITNET_CF_CASE
#define BITNET_CF_CASE 0
#endif

int main() {
  using bitnet::arch::avx2;
  using bitnet::arch::scalar;
#if BITNET_CF_CASE == 0
  using v = bitnet::lut_gemv_config<scalar, 3, bitnet::kMaxLutRows, bitnet::kMaxLutUnroll>;
  using m = bitnet::lut_gemm_config<avx2, 2, 64, bitnet::kMaxLutTokens>;
  using x = bitnet::lutv_gemm_config<avx2, bitnet::kMaxLutvRows, bitnet::kMaxLutvTokens>;
  auto pv = &bitnet::gemv_lut<v>;
  auto pm = &bitnet::gemm_lut<m>;
  auto px = &bitnet::gemm_lut<x>;
  using d = bitnet::lutd_gemv_config<scalar, bitnet::kMaxLutdRows>;
  auto pd = &bitnet::gemv_lut<d>;
  using dm = bitnet::lutd_gemm_config<scalar, bitnet::kMaxLutdRows, bitnet::kMaxLutdTile / (bitnet::kMaxLutdRows / 16)>;
  using dt = bitnet::lutd_gemm_config<scalar, 16, bitnet::kMaxLutdTokens>;
  auto pdm = &bitnet::gemm_lut<dm>;
  auto pdt = &bitnet::gemm_lut<dt>;
  return (pv && pm && px && pd && pdm && pdt && v::rows == bitnet::kMaxLutRows) ? 0 : 1;
#elif BITNET_CF_CASE == 1
  return bitnet::lut_gemv_config<avx2, 4, 32, 1>::g;  // 81 patterns do not fit a 16-entry shuffle
#elif BITNET_CF_CASE == 2
  return bitnet::lut_gemv_config<scalar, 3, bitnet::kMaxLutRows + 16, 1>::rows;
#elif BITNET_CF_CASE == 3
  return bitnet::lut_gemv_config<avx2, 3, 48, 1>::rows;  // not a whole number of 32-byte shuffles
#elif BITNET_CF_CASE == 4
  return bitnet::lut_gemv_config<avx2, 3, 32, bitnet::kMaxLutUnroll + 1>::unroll;
#elif BITNET_CF_CASE == 5
  return bitnet::lut_gemm_config<avx2, 3, 32, bitnet::kMaxLutTokens + 1>::tokens;
#elif BITNET_CF_CASE == 6
  return bitnet::lut_gemm_config<scalar, 3, 96, 2>::tokens;  // 6 index vectors x 2 tokens > kMaxLutTile
#elif BITNET_CF_CASE == 7
  return bitnet::lutv_gemm_config<avx2, bitnet::kMaxLutvRows + 1, 16>::rows;
#elif BITNET_CF_CASE == 8
  return bitnet::lutv_gemm_config<avx2, 1, bitnet::kMaxLutvTokens + 16>::tokens;
#elif BITNET_CF_CASE == 9
  return bitnet::lutv_gemm_config<avx2, 1, 24>::tokens;  // not a whole number of int16 vectors
#elif BITNET_CF_CASE == 10
  return bitnet::lutd_gemv_config<scalar, bitnet::kMaxLutdRows + 16>::rows;
#elif BITNET_CF_CASE == 11
  return bitnet::lutd_gemv_config<avx2, 32>::rows;  // no AVX2 dot body (needs vpermb + vpdpbusd)
#elif BITNET_CF_CASE == 12
  return bitnet::lutd_gemm_config<scalar, 16, bitnet::kMaxLutdTokens + 1>::tokens;
#elif BITNET_CF_CASE == 13
  return bitnet::lutd_gemm_config<scalar, 64, 8>::tokens;  // 4 subtiles x 8 tokens accumulators > kMaxLutdTile
#endif
}
