// bitnet-embed-example - the kernels inside your own engine, in one page.
//
//   bitnet-embed-example [MODEL.gguf [TENSOR]] [THREADS]
//
// 1. Get one ternary matrix: a tensor of a GGUF file (default blk.0.ffn_up.weight), or, without
//    arguments, a random 2560 x 6912 I2_S matrix (the 2B4T ffn_up shape) built here.
// 2. Select kernels once for this CPU (BITNET_ARCH / BITNET_GEMV / BITNET_GEMM override).
// 3. Repack once into the kernels' layout (ks.block()); the file bytes are no longer needed.
// 4. Quantize the input vector once: per-token int8 for I2_S (bitnet.cpp's semantics), Q8_K
//    per 256-block for TQ2_0/TQ1_0 (ggml's), matching what bitnet::reference computes.
// 5. Split the output rows across the host's own std::threads; each calls ks.gemv.fn on its
//    row range (the library owns no threads and keeps no state).
// 6. Check every output against bitnet::reference (scalar, straight from the file layout).
// Build target: bitnet-embed-example. Exit status 0 when all rows match.
#include <algorithm>  // std::max
#include <cmath>      // std::fabs
#include <cstdio>     // std::printf
#include <cstdlib>    // std::atoi
#include <optional>   // the file, when one is given
#include <span>       // tensor bytes
#include <random>     // demo data
#include <string>     // names
#include <thread>     // the host's threads
#include <vector>     // buffers

#include <bitnet/bitnet.hpp>
#include <bitnet/gguf.hpp>

int main(int argc, char** argv) try {
  // 1. A ternary matrix in its file format: K inputs (ne[0]) x M rows (ne[1]).
  bitnet::tensor_type type = bitnet::tensor_type::i2_s;
  std::int64_t K = 2560, M = 6912;
  std::vector<std::uint8_t> owned;
  std::span<const std::uint8_t> bytes;
  std::optional<bitnet::gguf::file> file;
  if (argc > 1 && std::string(argv[1]).find(".gguf") != std::string::npos) {
    file.emplace(bitnet::gguf::file::open(argv[1]));
    const auto& t = file->tensor(argc > 2 ? argv[2] : "blk.0.ffn_up.weight");
    type = t.type;
    K = static_cast<std::int64_t>(t.ne[0]);
    M = static_cast<std::int64_t>(t.ne[1]);
    bytes = t.bytes();
  } else {
    std::mt19937 g(1);
    std::vector<std::int8_t> w(static_cast<std::size_t>(K * M));
    for (auto& v : w) v = static_cast<std::int8_t>(static_cast<int>(g() % 3) - 1);
    owned = bitnet::pack_i2s(w, K, M, 0.0125f);
    bytes = owned;
  }
  const int threads = argc > 1 && std::string(argv[argc - 1]).find_first_not_of("0123456789") == std::string::npos
                          ? std::max(1, std::atoi(argv[argc - 1]))
                          : 4;

  // 2-3. Kernels for this CPU, and the matrix repacked once for them.
  const bitnet::kernel_set ks = bitnet::select_kernels_from_env();
  const bitnet::ternary_matrix W = bitnet::repack(type, bytes, K, M, ks.block());

  // 4. One input vector, quantized once; every thread reads the same activations.
  std::vector<float> x(static_cast<std::size_t>(K));
  std::mt19937 g(2);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-1.0f, 1.0f)(g);
  const bool i2s = type == bitnet::tensor_type::i2_s;
  bitnet::activations X;
  X.quantize(x.data(), 1, K, K, i2s ? bitnet::act_quant::per_token : bitnet::act_quant::per_block);

  // 5. Rows split across the host's threads; disjoint ranges of y, no locking.
  std::vector<float> y(static_cast<std::size_t>(M));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    const std::int64_t r0 = M * t / threads, r1 = M * (t + 1) / threads;
    pool.emplace_back([&, r0, r1] { ks.gemv.fn(W, X, 0, y.data(), r0, r1); });
  }
  for (auto& th : pool) th.join();

  // 6. The scalar reference reads the file layout directly; integer sums are exact, so only
  // the float epilogue's rounding may differ.
  const std::vector<float> ref = i2s ? bitnet::reference::i2s_matvec_ref(bytes, K, M, x.data())
                                 : type == bitnet::tensor_type::tq2_0 ? bitnet::reference::tq2_matvec_ref(bytes, K, M, x.data())
                                                                      : bitnet::reference::tq1_matvec_ref(bytes, K, M, x.data());
  double worst = 0.0, scale = 0.0;
  for (std::int64_t m = 0; m < M; ++m) {
    worst = std::max(worst, static_cast<double>(std::fabs(y[static_cast<std::size_t>(m)] - ref[static_cast<std::size_t>(m)])));
    scale = std::max(scale, static_cast<double>(std::fabs(ref[static_cast<std::size_t>(m)])));
  }
  const bool ok = worst <= 1e-5 * std::max(scale, 1.0);
  std::printf("%s %lld x %lld, gemv %s, %d threads: y[0..3] = %.5f %.5f %.5f %.5f; max |y - reference| = %.3g -> %s\n",
              std::string(bitnet::type_name(type)).c_str(), static_cast<long long>(K), static_cast<long long>(M),
              ks.gemv.name.c_str(), threads, y[0], y[1], y[2], y[3], worst, ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bitnet-embed-example: error: %s\n", e.what());
  return 1;
}
