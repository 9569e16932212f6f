// bitnet/runner/ternarize.hpp - float projection tensors (F32, F16, BF16) as ternary weights.
//
// bitnet.cpp's converter writes a BitNet model's projections as floats before quantizing them;
// such files hold either values that are already ternary times one scale (a converted BitNet
// checkpoint) or latent full-precision weights. ternarize() turns either into the ternary
// weights the kernels run:
//   * exact:   every value is 0 or +-s for one s > 0 (s from the first non-zero value): the
//              weights are taken as they are, w = v / s, scale s. Nothing is lost: the result
//              equals the same model stored as I2_S.
//   * absmean: otherwise BitNet b1.58's weight quantizer: s = mean |W| over the whole tensor
//              (summed in double, row-major, then rounded to float; at least 1e-5), and
//              w = clamp(round_half_even(W / s), -1, 1) per weight (W / s in double).
// An all-zero tensor is exact with scale 1.
#pragma once

#include <algorithm>  // std::clamp, std::max
#include <cmath>      // std::fabs, std::nearbyint
#include <cstdint>    // fixed-width integers
#include <span>       // tensor bytes
#include <stdexcept>  // errors
#include <string>     // messages
#include <vector>     // rows

#include <bitnet/dense_ref.hpp>  // dequantize_row (F32, F16, BF16 rows to float, exactly)
#include <bitnet/formats.hpp>  // ternary_weights

namespace bitnet::run {

inline bool is_float_type(tensor_type t) noexcept {
  return t == tensor_type::f32 || t == tensor_type::f16 || t == tensor_type::bf16;
}

struct ternarized {
  ternary_weights w;
  bool exact = false;  // the values were ternary x one scale already (nothing was rounded)
};

// The K x M float tensor `bytes` of type t (F32, F16 or BF16; ne = [K, M]) as ternary weights.
inline ternarized ternarize(tensor_type t, std::span<const std::uint8_t> bytes, std::int64_t K, std::int64_t M) {
  if (!is_float_type(t)) throw std::invalid_argument("ternarize: expected an F32, F16 or BF16 tensor");
  const std::size_t row_bytes = dense_row_bytes(t, K);
  if (K <= 0 || M <= 0 || bytes.size() != row_bytes * static_cast<std::size_t>(M))
    throw std::invalid_argument("ternarize: " + std::to_string(bytes.size()) + " bytes do not hold " +
                                std::to_string(M) + " rows of " + std::to_string(K) + " values");
  const auto n = static_cast<std::size_t>(K * M);
  std::vector<float> v(n);
  for (std::int64_t m = 0; m < M; ++m)
    dequantize_row(t, bytes.data() + static_cast<std::size_t>(m) * row_bytes, v.data() + m * K, K);

  ternarized r;
  r.w.K = K;
  r.w.M = M;
  r.w.w.resize(n);
  float s = 0.0f;
  bool exact = true;
  for (const float x : v) {
    if (x == 0.0f) continue;
    if (s == 0.0f) s = std::fabs(x);
    if (std::fabs(x) != s) {
      exact = false;
      break;
    }
  }
  if (exact) {
    for (std::size_t i = 0; i < n; ++i) r.w.w[i] = static_cast<std::int8_t>(v[i] > 0.0f ? 1 : v[i] < 0.0f ? -1 : 0);
    r.w.scale = s == 0.0f ? 1.0f : s;
    r.exact = true;
    return r;
  }
  double sum = 0.0;
  for (const float x : v) sum += std::fabs(static_cast<double>(x));
  const double mean = std::max(sum / static_cast<double>(n), 1e-5);
  for (std::size_t i = 0; i < n; ++i)
    r.w.w[i] = static_cast<std::int8_t>(std::clamp(std::nearbyint(static_cast<double>(v[i]) / mean), -1.0, 1.0));
  r.w.scale = static_cast<float>(mean);
  return r;
}

}  // namespace bitnet::run
