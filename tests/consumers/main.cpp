// A host program using bitnet as a dependency: selects kernels, runs one GEMV
// and checks it against the reference. Built by both consumer projects.
#include <bitnet/bitnet.hpp>
#include <cstdio>
#include <vector>

int main() {
  const std::int64_t K = 512, M = 8;
  std::vector<std::int8_t> w(K * M);
  std::vector<float> x(K);
  for (std::int64_t i = 0; i < K * M; ++i) w[i] = static_cast<std::int8_t>(i % 3 - 1);
  for (std::int64_t k = 0; k < K; ++k) x[k] = static_cast<float>(k % 7) - 3.0f;
  const auto bytes = bitnet::pack_i2s(w, K, M, 0.5f);
  const auto ks = bitnet::select_kernels(bitnet::cpu_features::detect());
  const auto W = bitnet::repack(bitnet::tensor_type::i2_s, bytes, K, M, ks.block());
  bitnet::activations X;
  X.quantize(x.data(), 1, K, K, bitnet::act_quant::per_token);
  std::vector<float> y(M);
  ks.gemv.fn(W, X, 0, y.data(), 0, M);
  const auto ref = bitnet::reference::i2s_matvec_ref(bytes, K, M, x.data());
  for (std::int64_t m = 0; m < M; ++m)
    if (y[m] != ref[m]) {
      std::printf("consumer: mismatch at row %lld with %s\n", static_cast<long long>(m), ks.gemv.name.c_str());
      return 1;
    }
  std::printf("consumer: ok (%s)\n", ks.gemv.name.c_str());
  return 0;
}
