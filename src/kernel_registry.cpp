// src/kernel_registry.cpp - the kernel registries compiled once (optional).
//
// bitnet is header-only; this file is for hosts with many translation units.
// Define BITNET_EXTERN_KERNELS for the whole program and compile this file once:
// every other translation unit then only declares gemv_variants(), gemm_variants(),
// lut_gemv_variants() and lut_gemm_variants() instead of instantiating the whole
// kernel grid (see config.hpp). The project's own tests, tools and examples build
// this way (CMake target bitnet_kernels).
#define BITNET_KERNELS_IMPLEMENTATION 1
#include <bitnet/dispatch.hpp>
#include <bitnet/lut.hpp>
