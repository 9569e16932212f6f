// bitnet/config.hpp - kernel configurations: the knobs, their caps, one name.
//
// A configuration is a type. Its name() is the single canonical string used by
// tests, benchmarks, dispatch, overrides and the tuner, e.g.
//   gemv_t2_q8/avx2/b128/r4/u2   ternary 2-bit GEMV, per-token int8 activations
//   gemm_t2_q8/avx2/b128/r2/t4   ternary GEMM, 2 rows x 4 tokens per tile
// "t2" is the library's repacked 2-bit layout (repack.hpp); b<Block> is its block
// (weights per row per packed chunk), r<Rows> rows per tile, u<Unroll> chunks
// per unrolled step, t<Tokens> activation rows per GEMM tile.
// Every compile-time repetition is capped here by static_assert.
#pragma once

#include <string>       // name()
#include <string_view>  // arch names

#include "arch.hpp"

// Kernel registries (dispatch.hpp, lut.hpp) list every instantiation of the grid;
// a translation unit that calls them compiles all of it. Header-only use is the
// default (the registries are inline). A host with many translation units can
// define BITNET_EXTERN_KERNELS everywhere and compile src/kernel_registry.cpp
// once: the registries are then only declared here and defined in that file.
#if defined(BITNET_EXTERN_KERNELS) && !defined(BITNET_KERNELS_IMPLEMENTATION)
#define BITNET_REGISTRY_EXTERN 1
#else
#define BITNET_REGISTRY_EXTERN 0
#endif
#if defined(BITNET_KERNELS_IMPLEMENTATION)
#define BITNET_REGISTRY_LINKAGE
#else
#define BITNET_REGISTRY_LINKAGE inline
#endif

namespace bitnet {

inline constexpr int kMaxUnroll = 8;
inline constexpr int kMaxRows = 8;
inline constexpr int kMaxTokens = 8;
inline constexpr int kMaxTile = 16;  // Rows * Tokens (accumulator registers)

template <int Block> constexpr bool valid_block() noexcept { return Block == 128 || Block == 256; }

template <class Arch, int Block, int Rows, int Unroll> struct gemv_config {
  static_assert(valid_block<Block>(), "Block must be 128 or 256 weights");
  static_assert(Rows >= 1 && Rows <= kMaxRows, "Rows is capped at kMaxRows");
  static_assert(Unroll >= 1 && Unroll <= kMaxUnroll, "Unroll is capped at kMaxUnroll");
  using arch = Arch;
  static constexpr int block = Block, rows = Rows, unroll = Unroll;
  static std::string name() {
    return "gemv_t2_q8/" + std::string(Arch::name) + "/b" + std::to_string(Block) + "/r" + std::to_string(Rows) +
           "/u" + std::to_string(Unroll);
  }
};

template <class Arch, int Block, int Rows, int Tokens> struct gemm_config {
  static_assert(valid_block<Block>(), "Block must be 128 or 256 weights");
  static_assert(Rows >= 1 && Rows <= kMaxRows, "Rows is capped at kMaxRows");
  static_assert(Tokens >= 1 && Tokens <= kMaxTokens, "Tokens is capped at kMaxTokens");
  static_assert(Rows * Tokens <= kMaxTile, "Rows * Tokens is capped at kMaxTile");
  using arch = Arch;
  static constexpr int block = Block, rows = Rows, tokens = Tokens;
  static std::string name() {
    return "gemm_t2_q8/" + std::string(Arch::name) + "/b" + std::to_string(Block) + "/r" + std::to_string(Rows) +
           "/t" + std::to_string(Tokens);
  }
};

}  // namespace bitnet
