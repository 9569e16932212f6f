// tests/dense_check.hpp - checks for the dense GEMV kernels, shared by the GoogleTest
// suite (tests/test_dense.cpp) and the gtest-free cross-arch self-check
// (tests/cross/dense_selfcheck.cpp, run under qemu-aarch64).
//
// Every check returns "" on success or a message naming kernel, shape, seed,
// index, expected and actual values.
//
// References are independent of the library's kernels: the test decodes every
// format itself (from the spec text, shared/spec/gguf.md 7.3) and forms the dot
// product in double. Tolerances follow from the arithmetic (see tol_float/tol_q).
#pragma once

#include <bitnet/dense.hpp>

#include <cmath>    // std::fabs, std::ldexp, std::sqrt
#include <cstdint>  // fixed-width integers
#include <cstring>  // std::memcpy
#include <sstream>  // messages
#include <string>   // messages
#include <vector>   // buffers

namespace dense_check {

using bitnet::tensor_type;

// ---------------------------------------------------------------- randomness
struct rng {
  std::uint64_t s;
  explicit rng(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x1234567ull) {}
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  int irange(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<std::uint64_t>(hi - lo + 1)); }
  float normal() {  // Box-Muller, one value
    const double u1 = uniform() + 1e-300, u2 = uniform();
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
};

// ---------------------------------------------------------------- weights
// A matrix stored at an odd offset from an allocation, with padded rows, so that
// kernels see misaligned rows and a row stride larger than one row.
struct wmat {
  tensor_type t{};
  std::int64_t M = 0, K = 0;
  std::size_t row_bytes = 0;
  std::vector<std::uint8_t> buf;
  std::size_t off = 0;
  std::uint8_t* base() { return buf.data() + off; }
  const std::uint8_t* base() const { return buf.data() + off; }
  const std::uint8_t* row(std::int64_t m) const { return base() + static_cast<std::size_t>(m) * row_bytes; }
  std::uint8_t* row(std::int64_t m) { return base() + static_cast<std::size_t>(m) * row_bytes; }
};

inline wmat alloc_w(tensor_type t, std::int64_t M, std::int64_t K, std::size_t misalign, std::size_t pad) {
  wmat w;
  w.t = t;
  w.M = M;
  w.K = K;
  w.row_bytes = bitnet::dense_row_bytes(t, K) + pad;
  w.off = misalign;
  w.buf.assign(misalign + w.row_bytes * static_cast<std::size_t>(M) + 64, 0xA5);
  return w;
}

inline std::uint16_t rd16(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline void wr16(std::uint8_t* p, std::uint16_t v) { std::memcpy(p, &v, 2); }

// Random weights. Quantized types get random bytes (every bit pattern of ql/qh/qs
// and the int8 scales is legal) and a positive fp16 d in [dlo, dhi).
inline void fill_random(wmat& w, rng& r, float scale = 1.0f) {
  for (std::int64_t m = 0; m < w.M; ++m) {
    std::uint8_t* p = w.row(m);
    switch (w.t) {
      case tensor_type::f32:
        for (std::int64_t j = 0; j < w.K; ++j) {
          const float v = r.normal() * scale;
          std::memcpy(p + 4 * j, &v, 4);
        }
        break;
      case tensor_type::f16:
        for (std::int64_t j = 0; j < w.K; ++j) wr16(p + 2 * j, bitnet::f32_to_fp16(r.normal() * scale));
        break;
      case tensor_type::bf16:
        for (std::int64_t j = 0; j < w.K; ++j) wr16(p + 2 * j, bitnet::f32_to_bf16(r.normal() * scale));
        break;
      case tensor_type::q8_0:
        for (std::int64_t b = 0; b < w.K / 32; ++b) {
          std::uint8_t* blk = p + 34 * b;
          wr16(blk, bitnet::f32_to_fp16(static_cast<float>(0.001 + 0.05 * r.uniform()) * scale));
          for (int j = 0; j < 32; ++j) blk[2 + j] = static_cast<std::uint8_t>(r.next());
        }
        break;
      case tensor_type::q6_k:
        for (std::int64_t b = 0; b < w.K / 256; ++b) {
          std::uint8_t* blk = p + 210 * b;
          for (int j = 0; j < 208; ++j) blk[j] = static_cast<std::uint8_t>(r.next());
          wr16(blk + 208, bitnet::f32_to_fp16(static_cast<float>(1e-4 + 2e-3 * r.uniform()) * scale));
        }
        break;
      default: break;
    }
  }
}

// ---------------------------------------------------------------- independent decoding
// Q6_K code of element i (0..255) of a block, straight from the spec text.
inline int spec_q6k_code(const std::uint8_t* blk, int i) {
  const int h = i / 128, r = i % 128, k = r / 32, l = r % 32;
  const std::uint8_t* ql = blk + 64 * h;
  const std::uint8_t* qh = blk + 128 + 32 * h;
  switch (k) {
    case 0: return (ql[l] & 15) | (((qh[l] >> 0) & 3) << 4);
    case 1: return (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
    case 2: return (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
    default: return (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
  }
}

// Integer part and scale of element j of row m: value = scale_j * int_j for the
// quantized types (scale per block), value = scale_j (int_j = 1) for float types.
struct term {
  double scale;
  std::int64_t ival;
};
inline term weight_term(const wmat& w, std::int64_t m, std::int64_t j) {
  const std::uint8_t* p = w.row(m);
  switch (w.t) {
    case tensor_type::f32: {
      float v;
      std::memcpy(&v, p + 4 * j, 4);
      return {v, 1};
    }
    case tensor_type::f16: return {bitnet::fp16_to_f32(rd16(p + 2 * j)), 1};
    case tensor_type::bf16: return {bitnet::bf16_to_f32(rd16(p + 2 * j)), 1};
    case tensor_type::q8_0: {
      const std::uint8_t* blk = p + 34 * (j / 32);
      return {bitnet::fp16_to_f32(rd16(blk)), static_cast<std::int8_t>(blk[2 + j % 32])};
    }
    case tensor_type::q6_k: {
      const std::uint8_t* blk = p + 210 * (j / 256);
      const int i = static_cast<int>(j % 256);
      const auto sc = static_cast<std::int8_t>(blk[192 + i / 16]);
      return {bitnet::fp16_to_f32(rd16(blk + 208)), static_cast<std::int64_t>(sc) * (spec_q6k_code(blk, i) - 32)};
    }
    default: return {0.0, 0};
  }
}

// Activation element j in its prepared form, same split.
inline term act_term(const bitnet::dense_activation& a, std::int64_t j) {
  switch (a.form()) {
    case bitnet::dense_act_form::f32:
    case bitnet::dense_act_form::f16: return {a.f32()[j], 1};
    case bitnet::dense_act_form::q8_0: {
      const auto& b = a.q8_0()[j / 32];
      return {bitnet::fp16_to_f32(b.d), b.qs[j % 32]};
    }
    case bitnet::dense_act_form::q8_k: {
      const auto& b = a.q8_k()[j / 256];
      return {b.d, b.qs[j % 256]};
    }
    default: return {0.0, 0};
  }
}

inline std::int64_t block_of(tensor_type t) { return t == tensor_type::q8_0 ? 32 : t == tensor_type::q6_k ? 256 : 1; }

struct ref_row {
  double value = 0.0;    // exact up to double rounding
  double abs_sum = 0.0;  // sum of |terms| (per block |d| * sum |ints| for quantized types)
  std::int64_t blocks = 0;
};

inline ref_row reference_row(const wmat& w, std::int64_t m, const bitnet::dense_activation& a) {
  ref_row r;
  const std::int64_t bs = block_of(w.t);
  if (bs == 1) {
    for (std::int64_t j = 0; j < w.K; ++j) {
      const double t = weight_term(w, m, j).scale * act_term(a, j).scale;
      r.value += t;
      r.abs_sum += std::fabs(t);
    }
    r.blocks = w.K;
    return r;
  }
  for (std::int64_t b = 0; b < w.K / bs; ++b) {
    std::int64_t isum = 0, iabs = 0;
    double d = 0.0;
    for (std::int64_t j = b * bs; j < (b + 1) * bs; ++j) {
      const term tw = weight_term(w, m, j), ta = act_term(a, j);
      isum += tw.ival * ta.ival;
      iabs += std::llabs(tw.ival * ta.ival);
      d = tw.scale * ta.scale;
    }
    r.value += d * static_cast<double>(isum);
    r.abs_sum += std::fabs(d) * static_cast<double>(iabs);
  }
  r.blocks = w.K / bs;
  return r;
}

// Error bounds. u = 2^-24. Float types: every kernel keeps at least 8 independent
// partial sums, so no term passes through more than K/8 + 40 roundings (main
// loop, <= 31-element tail, lane reductions, the product for F32/BF16). Quantized
// types: the int32 block sums are exact; per block the conversion to f32, dw*dx
// and the product round (3), then at most nb + a few lane-reduction additions.
inline double gamma(double n) {
  const double u = 0x1.0p-24;
  return n * u / (1.0 - n * u);
}
inline double tolerance(tensor_type t, const ref_row& r) {
  const double n = block_of(t) == 1 ? static_cast<double>(r.blocks) / 8.0 + 40.0 : static_cast<double>(r.blocks) + 16.0;
  return gamma(n) * r.abs_sum + 1e-30;
}

// ---------------------------------------------------------------- running kernels
inline void call_kernel(const bitnet::dense_kernels& k, tensor_type t, const wmat& w, const bitnet::dense_activation& a,
                        float* y, std::int64_t r0, std::int64_t r1) {
  const std::int64_t K = a.K();
  switch (t) {
    case tensor_type::f32: k.f32.fn(w.base(), w.row_bytes, a.f32(), K, y, r0, r1); break;
    case tensor_type::f16: k.f16.fn(w.base(), w.row_bytes, a.f32(), K, y, r0, r1); break;
    case tensor_type::bf16: k.bf16.fn(w.base(), w.row_bytes, a.f32(), K, y, r0, r1); break;
    case tensor_type::q8_0: k.q8_0.fn(w.base(), w.row_bytes, a.q8_0(), K, y, r0, r1); break;
    case tensor_type::q6_k: k.q6_k.fn(w.base(), w.row_bytes, a.q8_k(), K, y, r0, r1); break;
    default: break;
  }
}

struct shape {
  std::int64_t M, K, r0, r1;
  std::size_t misalign, pad;
};

inline std::string describe(const bitnet::dense_kernels& k, tensor_type t, const shape& s, std::uint64_t seed) {
  std::ostringstream o;
  o << k.kernel_name(t) << " M=" << s.M << " K=" << s.K << " rows=[" << s.r0 << "," << s.r1
    << ") misalign=" << s.misalign << " pad=" << s.pad << " seed=" << seed;
  return o.str();
}

// Random weights and activations; the kernel of `k` must be within tolerance of the
// double reference, and within the sum of both tolerances of the scalar kernel; rows
// outside the range must stay untouched.
inline std::string check_random(const bitnet::dense_kernels& k, tensor_type t, const shape& s, std::uint64_t seed,
                                float wscale = 1.0f, float xscale = 1.0f) {
  rng r(seed);
  wmat w = alloc_w(t, s.M, s.K, s.misalign, s.pad);
  fill_random(w, r, wscale);
  std::vector<float> x(static_cast<std::size_t>(s.K));
  for (auto& v : x) v = r.normal() * xscale;
  bitnet::dense_activation a;
  a.prepare(t, x.data(), s.K);
  const float sentinel = -12345.5f;
  std::vector<float> y(static_cast<std::size_t>(s.M), sentinel), ys(static_cast<std::size_t>(s.M), sentinel);
  call_kernel(k, t, w, a, y.data(), s.r0, s.r1);
  call_kernel(bitnet::dense_kernels_for<bitnet::arch::scalar>(), t, w, a, ys.data(), s.r0, s.r1);
  std::ostringstream err;
  int nerr = 0;
  for (std::int64_t m = 0; m < s.M; ++m) {
    const auto mi = static_cast<std::size_t>(m);
    if (m < s.r0 || m >= s.r1) {
      if (y[mi] != sentinel && nerr++ < 5) err << "\n  row " << m << " outside the range was written: " << y[mi];
      continue;
    }
    const ref_row ref = reference_row(w, m, a);
    const double tol = tolerance(t, ref);
    const double e_ref = std::fabs(static_cast<double>(y[mi]) - ref.value);
    const double e_sc = std::fabs(static_cast<double>(y[mi]) - static_cast<double>(ys[mi]));
    if ((!(e_ref <= tol) || !(e_sc <= 2 * tol)) && nerr++ < 5)
      err << "\n  row " << m << ": got " << y[mi] << ", double reference " << ref.value << " (err " << e_ref
          << "), scalar kernel " << ys[mi] << " (diff " << e_sc << "), tolerance " << tol;
  }
  if (nerr == 0) return "";
  return describe(k, t, s, seed) + ": " + std::to_string(nerr) + " bad rows" + err.str();
}

// ---------------------------------------------------------------- exact cases
// Values chosen so that every partial sum in any order is exactly representable in
// f32: all arches must return the exact result bit for bit.
inline std::string check_exact_float(const bitnet::dense_kernels& k, tensor_type t, std::int64_t K,
                                     std::uint64_t seed) {
  rng r(seed);
  const std::int64_t M = 5;
  wmat w = alloc_w(t, M, K, 3, 6);
  std::vector<float> x(static_cast<std::size_t>(K));
  // |w| <= 8 * 2^-3, |x| <= 8 * 2^-2: integer multiples of 2^-5 with |sum| <= 64 K 2^-5 < 2^24 * 2^-5.
  for (auto& v : x) v = std::ldexp(static_cast<float>(r.irange(-8, 8)), -2);
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t j = 0; j < K; ++j) {
      const float v = std::ldexp(static_cast<float>(r.irange(-8, 8)), -3);
      std::uint8_t* p = w.row(m);
      if (t == tensor_type::f32) std::memcpy(p + 4 * j, &v, 4);
      if (t == tensor_type::f16) wr16(p + 2 * j, bitnet::f32_to_fp16(v));
      if (t == tensor_type::bf16) wr16(p + 2 * j, bitnet::f32_to_bf16(v));
    }
  bitnet::dense_activation a;
  a.prepare(t, x.data(), K);
  std::vector<float> y(M);
  call_kernel(k, t, w, a, y.data(), 0, M);
  for (std::int64_t m = 0; m < M; ++m) {
    const ref_row ref = reference_row(w, m, a);
    if (static_cast<double>(y[static_cast<std::size_t>(m)]) != ref.value) {
      std::ostringstream o;
      o << k.kernel_name(t) << " exact K=" << K << " seed=" << seed << " row " << m << ": got "
        << y[static_cast<std::size_t>(m)] << ", exact " << ref.value;
      return o.str();
    }
  }
  return "";
}

// Hand-built Q8_0 weights and activations with power-of-two scales and K <= 1024,
// so |sum| <= 1024 * 128 * 127 < 2^24: the result is exact in every arch. The
// value ranges include -128 weights and +-127 activations.
inline std::string check_exact_q8_0(const bitnet::dense_kernels& k, std::int64_t K, std::uint64_t seed, int mode) {
  rng r(seed);
  const std::int64_t M = 3, nb = K / 32;
  wmat w = alloc_w(tensor_type::q8_0, M, K, 1, 1);
  std::vector<float> dummy(static_cast<std::size_t>(K), 1.0f);
  bitnet::dense_activation a;
  a.prepare(tensor_type::q8_0, dummy.data(), K);
  auto* xb = const_cast<bitnet::block_q8_0*>(a.q8_0());
  // One power-of-two d per activation and per weight row: the sum is D times an
  // integer below 2^24, exact in any order.
  const std::uint16_t dx = bitnet::f32_to_fp16(std::ldexp(1.0f, r.irange(-6, 3)));
  for (std::int64_t b = 0; b < nb; ++b) {
    xb[b].d = dx;
    for (int j = 0; j < 32; ++j)
      xb[b].qs[j] = static_cast<std::int8_t>(mode == 0 ? r.irange(-127, 127) : (mode == 1 ? 127 : -127));
  }
  for (std::int64_t m = 0; m < M; ++m) {
    const std::uint16_t dw = bitnet::f32_to_fp16(std::ldexp(1.0f, r.irange(-6, 3)));
    for (std::int64_t b = 0; b < nb; ++b) {
      std::uint8_t* blk = w.row(m) + 34 * b;
      wr16(blk, dw);
      for (int j = 0; j < 32; ++j)
        blk[2 + j] = static_cast<std::uint8_t>(mode == 0 ? r.irange(-128, 127)
                                                         : (m == 0 ? -128 : (m == 1 ? 127 : r.irange(-128, 127))));
    }
  }
  std::vector<float> y(M);
  call_kernel(k, tensor_type::q8_0, w, a, y.data(), 0, M);
  for (std::int64_t m = 0; m < M; ++m) {
    const ref_row ref = reference_row(w, m, a);
    if (static_cast<double>(y[static_cast<std::size_t>(m)]) != ref.value) {
      std::ostringstream o;
      o << k.kernel_name(tensor_type::q8_0) << " exact K=" << K << " mode=" << mode << " seed=" << seed << " row " << m
        << ": got " << y[static_cast<std::size_t>(m)] << ", exact " << ref.value;
      return o.str();
    }
  }
  return "";
}

// One Q6_K block with any values: every kernel computes the exact int32 block sum,
// then (float)(fp16(dw) * dx) * (float)isum. The test forms the same two float
// operations from its own exact integer sum, so the result must match bit for bit.
// Modes: 0 random, 1 extremes (scales -128/127, codes 0/63, q +-127), 2 random codes
// with all scales -128, 3 mixed extremes.
inline std::string check_exact_q6k_block(const bitnet::dense_kernels& k, std::uint64_t seed, int mode) {
  rng r(seed);
  const std::int64_t M = 4, K = 256;
  wmat w = alloc_w(tensor_type::q6_k, M, K, 5, 3);
  std::vector<float> dummy(K, 1.0f);
  bitnet::dense_activation a;
  a.prepare(tensor_type::q6_k, dummy.data(), K);
  auto* xb = const_cast<bitnet::block_q8_k*>(a.q8_k());
  xb->d = static_cast<float>(0.001 + r.uniform());
  for (int j = 0; j < 256; ++j) {
    int v = r.irange(-127, 127);
    if (mode == 1) v = (j & 1) ? 127 : -127;
    if (mode == 3) v = (j % 3 == 0) ? 127 : -127;
    xb->qs[j] = static_cast<std::int8_t>(v);
  }
  for (int g = 0; g < 16; ++g) {
    int s = 0;
    for (int j = 0; j < 16; ++j) s += xb->qs[16 * g + j];
    xb->bsums[g] = static_cast<std::int16_t>(s);
  }
  for (std::int64_t m = 0; m < M; ++m) {
    std::uint8_t* blk = w.row(m);
    for (int j = 0; j < 192; ++j) {
      std::uint8_t v = static_cast<std::uint8_t>(r.next());
      if (mode == 1) v = (m & 1) ? 0xFF : 0x00;  // all codes 63 or all 0
      if (mode == 3) v = (j & 1) ? 0xFF : 0x00;
      blk[j] = v;
    }
    for (int j = 0; j < 16; ++j) {
      int sc = r.irange(-128, 127);
      if (mode == 1) sc = (m < 2) ? -128 : 127;
      if (mode == 2) sc = -128;
      if (mode == 3) sc = (j & 1) ? 127 : -128;
      blk[192 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(sc));
    }
    wr16(blk + 208, bitnet::f32_to_fp16(static_cast<float>(1e-3 + r.uniform())));
  }
  std::vector<float> y(M);
  call_kernel(k, tensor_type::q6_k, w, a, y.data(), 0, M);
  for (std::int64_t m = 0; m < M; ++m) {
    const std::uint8_t* blk = w.row(m);
    std::int64_t isum = 0;
    for (int i = 0; i < 256; ++i)
      isum += static_cast<std::int64_t>(static_cast<std::int8_t>(blk[192 + i / 16])) * (spec_q6k_code(blk, i) - 32) *
              xb->qs[i];
    const float d = bitnet::fp16_to_f32(rd16(blk + 208)) * xb->d;
    const float want = d * static_cast<float>(isum);
    if (y[static_cast<std::size_t>(m)] != want) {
      std::ostringstream o;
      o << k.kernel_name(tensor_type::q6_k) << " exact block mode=" << mode << " seed=" << seed << " row " << m
        << ": got " << y[static_cast<std::size_t>(m)] << ", want " << want << " (isum " << isum << ")";
      return o.str();
    }
  }
  return "";
}

// Several Q6_K blocks with power-of-two d's and small enough magnitudes that every
// partial sum is exact (sum |sc*(c-32)*q| < 2^24 is checked, not assumed).
inline std::string check_exact_q6k_multi(const bitnet::dense_kernels& k, std::int64_t K, std::uint64_t seed) {
  rng r(seed);
  const std::int64_t M = 3, nb = K / 256;
  wmat w = alloc_w(tensor_type::q6_k, M, K, 7, 0);
  std::vector<float> dummy(static_cast<std::size_t>(K), 1.0f);
  bitnet::dense_activation a;
  a.prepare(tensor_type::q6_k, dummy.data(), K);
  auto* xb = const_cast<bitnet::block_q8_k*>(a.q8_k());
  const int qmax = static_cast<int>(std::max<std::int64_t>(1, 120 / nb));
  const float dx = std::ldexp(1.0f, r.irange(-4, 2));  // one power of two per row: see check_exact_q8_0
  for (std::int64_t b = 0; b < nb; ++b) {
    xb[b].d = dx;
    for (int j = 0; j < 256; ++j) xb[b].qs[j] = static_cast<std::int8_t>(r.irange(-qmax, qmax));
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += xb[b].qs[16 * g + j];
      xb[b].bsums[g] = static_cast<std::int16_t>(s);
    }
  }
  for (std::int64_t m = 0; m < M; ++m) {
    const std::uint16_t dw = bitnet::f32_to_fp16(std::ldexp(1.0f, r.irange(-5, 1)));
    for (std::int64_t b = 0; b < nb; ++b) {
      std::uint8_t* blk = w.row(m) + 210 * b;
      for (int j = 0; j < 192; ++j) blk[j] = static_cast<std::uint8_t>(r.next());
      for (int j = 0; j < 16; ++j)
        blk[192 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(r.irange(-15, 15)));
      wr16(blk + 208, dw);
    }
  }
  std::vector<float> y(M);
  call_kernel(k, tensor_type::q6_k, w, a, y.data(), 0, M);
  for (std::int64_t m = 0; m < M; ++m) {
    const ref_row ref = reference_row(w, m, a);
    std::int64_t iabs = 0;
    for (std::int64_t j = 0; j < K; ++j) iabs += std::llabs(weight_term(w, m, j).ival * act_term(a, j).ival);
    if (iabs >= (std::int64_t{1} << 24)) return "check_exact_q6k_multi: test data too large for exactness";
    if (static_cast<double>(y[static_cast<std::size_t>(m)]) != ref.value) {
      std::ostringstream o;
      o << k.kernel_name(tensor_type::q6_k) << " exact K=" << K << " seed=" << seed << " row " << m << ": got "
        << y[static_cast<std::size_t>(m)] << ", exact " << ref.value;
      return o.str();
    }
  }
  return "";
}

// ---------------------------------------------------------------- suites
inline std::vector<shape> edge_shapes(tensor_type t) {
  const std::int64_t b = block_of(t);
  std::vector<std::int64_t> ks;
  if (b == 1)
    ks = {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 129, 255, 257, 1000, 2560};
  else
    ks = {b, 2 * b, 3 * b, 5 * b, 7 * b, (b == 32 ? 80 : 10) * b};
  std::vector<shape> out;
  std::size_t i = 0;
  for (auto K : ks) {
    const std::size_t mis = i % 4 == 0 ? 0 : (i % 4 == 1 ? 1 : (i % 4 == 2 ? 2 : 3));
    const std::size_t pad = i % 3 == 0 ? 0 : (i % 3 == 1 ? 1 : 30);
    out.push_back({1, K, 0, 1, mis, pad});
    out.push_back({7, K, 0, 7, mis + 1, pad});
    out.push_back({13, K, 3, 11, mis, pad + 2});  // range not starting at 0, not ending at M
    out.push_back({4, K, 2, 2, mis, pad});        // empty range: nothing written
    ++i;
  }
  return out;
}

inline const tensor_type kDenseTypes[] = {tensor_type::f32, tensor_type::f16, tensor_type::bf16, tensor_type::q8_0,
                                          tensor_type::q6_k};

// Everything for one kernel table and weight type. Returns all failure messages.
inline std::vector<std::string> run_type_suite(const bitnet::dense_kernels& k, tensor_type t, std::uint64_t seed0) {
  std::vector<std::string> fails;
  auto add = [&](std::string s) {
    if (!s.empty()) fails.push_back(std::move(s));
  };
  std::uint64_t seed = seed0;
  for (const auto& s : edge_shapes(t)) add(check_random(k, t, s, ++seed));
  // Extreme magnitudes, per type within what its scales can hold (fp16 d for Q8_0
  // weights and activations and for Q6_K weights, fp16 values for F16), reaching
  // fp16 subnormals at the small end; finite and overflow-free in any order.
  float wbig = 1.0e15f, wsmall = 1.0e-15f, xbig = 1.0e10f, xsmall = 1.0e-10f;
  if (t == tensor_type::f16) wbig = 6.0e3f, wsmall = 1.0e-3f, xbig = 10.0f, xsmall = 1.0e-3f;
  if (t == tensor_type::q8_0) wbig = 1.0e3f, wsmall = 1.0e-3f, xbig = 1.0e4f, xsmall = 1.0e-3f;
  if (t == tensor_type::q6_k) wbig = 1.0e3f, wsmall = 1.0e-3f;
  add(check_random(k, t, {5, 4 * 256, 0, 5, 1, 3}, ++seed, wbig, xbig));
  add(check_random(k, t, {5, 4 * 256, 0, 5, 2, 0}, ++seed, wsmall, xsmall));
  if (block_of(t) == 1) {
    for (std::int64_t K : {1, 8, 31, 33, 64, 777, 4096}) add(check_exact_float(k, t, K, ++seed));
  } else if (t == tensor_type::q8_0) {
    for (std::int64_t K : {32, 64, 96, 160, 1024})
      for (int mode = 0; mode < 3; ++mode) add(check_exact_q8_0(k, K, ++seed, mode));
  } else {
    for (int mode = 0; mode < 4; ++mode)
      for (int rep = 0; rep < 3; ++rep) add(check_exact_q6k_block(k, ++seed, mode));
    for (std::int64_t K : {256, 512, 768, 1280, 2560}) add(check_exact_q6k_multi(k, K, ++seed));
  }
  return fails;
}

}  // namespace dense_check
