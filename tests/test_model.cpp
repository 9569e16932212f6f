// tests/test_model.cpp - the runner's forward pass (examples/runner: bitnet/runner/session.hpp) against
// an independent reference written here for clarity: weights are the plain ternary values and
// scales the synthetic model was built from (tests/model_builder.hpp), arithmetic is double,
// and nothing from the library's kernels, repacking or activation code is used. The one step
// done in float is the activation quantization, because it is part of the model definition
// (ternary-formats.md 1.4 per token, 2.3 per block): the reference quantizes exactly as the
// spec writes it. Two other roundings belong to the computation being specified and are
// mirrored too: an F16 head sees its input rounded to f16 (bitnet-models.md 4.1), and with an
// f16 KV cache keys and values are rounded to f16 when stored.
//
// Tolerance (logits). Without quantization the runner's float arithmetic differs from the
// double reference by float rounding only: NMSE (sum of squared errors / sum of squared
// reference logits) ~1e-14 after two layers. The quantizers are discontinuous, though: when
// some x·s_x lies within ~1e-5 of a rounding boundary the two sides may round it differently,
// and the change of one int8 step propagates (through the KV cache, to later positions too).
// Measured on these models: one such flip (a tie at distance 2e-6) gave NMSE 3e-4 and a
// largest error of 5% of RMS(logits). Structural errors, measured by planting them in the
// reference: RoPE on adjacent pairs NMSE 7e-3 .. 0.75, RoPE exponent -i/hd instead of -2i/hd
// 3e-3 .. 0.55, the wrong GQA head mapping (h % n_kv) 0.9 .. 1.6, attn_sub_norm left out
// 0.14 .. 0.36, SiLU and ReLU² swapped 0.06 .. 0.2. So each position must satisfy
// NMSE <= 1e-3 and max |error| <= 0.1 x RMS(logits). The test prints the largest NMSE seen.
//
// Prefill vs decode, and thread counts: the runner computes each row and each query with the
// same code whatever the batch or the split, so these are compared bit for bit.
#include <gtest/gtest.h>

#include <algorithm>  // std::max
#include <atomic>     // allocation counter
#include <cmath>      // std::sqrt, std::exp, std::pow, std::nearbyint
#include <cstdint>    // fixed-width integers
#include <cstdlib>    // std::malloc, std::free for the counting operator new
#include <new>        // operator new / delete replacements
#include <random>     // attention loop inputs
#include <cstring>    // std::memcmp
#include <string>     // names
#include <type_traits>  // is_same_v
#include <vector>     // data

#include "runner_fixtures.hpp"

// Counts every allocation through operator new (the whole test binary; only differences are
// looked at, around code that runs while no other thread allocates). Sanitizer runtimes bring
// their own operator new, so there the counting test is skipped.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BITNET_TEST_COUNT_NEW 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define BITNET_TEST_COUNT_NEW 0
#endif
#endif
#ifndef BITNET_TEST_COUNT_NEW
#define BITNET_TEST_COUNT_NEW 1
#endif

std::atomic<long> g_allocations{0};

#if BITNET_TEST_COUNT_NEW
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// Through a volatile pointer: GCC's -Wmismatched-new-delete would otherwise flag free() here.
void (*volatile g_free)(void*) = std::free;
void operator delete(void* p) noexcept { g_free(p); }
void operator delete(void* p, std::size_t) noexcept { g_free(p); }
#endif

namespace {

using bitnet::act_quant;
using bitnet::tensor_type;
using bitnet::test::synth_linear;
using bitnet::test::synth_model;
using bitnet::test::synth_spec;
using vec = std::vector<double>;

// ---------------------------------------------------------------- the reference

// Spec 1.4: amax in double (floored at 1e-5), s = float(127/amax), q = clamp(rne(x*s)) with a
// float product. Returns q and 1/s (the factor that turns the integer sums back into floats).
struct quantized {
  std::vector<int> q;
  std::vector<double> inv_scale;  // per element: 1/s (per token) or d of its 256-block (Q8_K)
};

quantized quantize_per_token(const vec& xd) {
  quantized r;
  std::vector<float> x(xd.begin(), xd.end());
  double amax = 1e-5;
  for (float v : x) amax = std::max(amax, static_cast<double>(std::fabs(v)));
  const float s = static_cast<float>(127.0 / amax);
  for (float v : x) {
    const float prod = v * s;
    r.q.push_back(std::clamp(static_cast<int>(std::nearbyint(prod)), -128, 127));
    r.inv_scale.push_back(1.0 / static_cast<double>(s));
  }
  return r;
}

// Spec 2.3 (ggml Q8_K): per 256: vmax = the first x of largest |x|, iscale = -127/vmax,
// q = min(127, rne(iscale*x)), d = 1/iscale (all-zero block: d = 0).
quantized quantize_per_block(const vec& xd) {
  quantized r;
  std::vector<float> x(xd.begin(), xd.end());
  for (std::size_t b = 0; b < x.size(); b += 256) {
    float amax = 0.0f, vmax = 0.0f;
    for (std::size_t j = b; j < b + 256; ++j)
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        vmax = x[j];
      }
    const float iscale = amax == 0.0f ? 0.0f : -127.0f / vmax;
    const double d = amax == 0.0f ? 0.0 : static_cast<double>(1.0f / iscale);
    for (std::size_t j = b; j < b + 256; ++j) {
      r.q.push_back(amax == 0.0f ? 0 : std::min(127, static_cast<int>(std::nearbyint(iscale * x[j]))));
      r.inv_scale.push_back(d);
    }
  }
  return r;
}

vec linear(const synth_linear& L, const vec& x, act_quant mode) {
  const quantized xq = mode == act_quant::per_token ? quantize_per_token(x) : quantize_per_block(x);
  vec y(static_cast<std::size_t>(L.M));
  for (std::int64_t m = 0; m < L.M; ++m) {
    double acc = 0.0;
    for (std::int64_t k = 0; k < L.K; ++k) {
      const auto kk = static_cast<std::size_t>(k);
      acc += L.weight(m, k) * xq.q[kk] * xq.inv_scale[kk];
    }
    if (L.has_tensor_scale) acc *= L.tensor_scale;
    if (!L.bias.empty()) acc += L.bias[static_cast<std::size_t>(m)];
    y[static_cast<std::size_t>(m)] = acc;
  }
  return y;
}

vec rms_norm(const vec& x, const std::vector<float>& g, double eps) {
  double ss = 0.0;
  for (double v : x) ss += v * v;
  const double r = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  vec y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * g[i];
  return y;
}

// RoPE, theta_i = p * base^(-2i/hd). NeoX (the bitnet archs): element i pairs with i + hd/2;
// normal (llama): element 2i pairs with 2i + 1.
void rope(vec& v, std::int64_t n_heads, std::int64_t hd, std::int64_t p, double base, bool neox) {
  for (std::int64_t h = 0; h < n_heads; ++h)
    for (std::int64_t i = 0; i < hd / 2; ++i) {
      const double th = static_cast<double>(p) * std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
      const auto a_i = static_cast<std::size_t>(neox ? h * hd + i : h * hd + 2 * i);
      const auto b_i = static_cast<std::size_t>(neox ? h * hd + i + hd / 2 : h * hd + 2 * i + 1);
      const double a = v[a_i], b = v[b_i];
      v[a_i] = a * std::cos(th) - b * std::sin(th);
      v[b_i] = a * std::sin(th) + b * std::cos(th);
    }
}

// Logits at every position of `tokens`, evaluated from position 0.
// kv_f16: keys and values are rounded to f16 when cached (the runner's --kv-type f16).
std::vector<vec> reference_forward(const synth_model& M, const std::vector<std::int32_t>& tokens, act_quant mode,
                                   bool kv_f16 = false) {
  const synth_spec& s = M.spec;
  const bool llama = s.arch == "llama", silu = s.arch == "bitnet" || llama;
  const std::int64_t d = s.n_embd, H = s.n_head, Hkv = s.n_head_kv, hd = s.head_dim ? s.head_dim : d / H, group = H / Hkv;
  const double eps = s.eps;
  std::vector<std::vector<vec>> kc(static_cast<std::size_t>(s.n_layer)), vc(kc.size());
  std::vector<vec> out;
  for (std::size_t p = 0; p < tokens.size(); ++p) {
    vec x(static_cast<std::size_t>(d));
    for (std::int64_t i = 0; i < d; ++i) x[static_cast<std::size_t>(i)] = M.embd[static_cast<std::size_t>(tokens[p] * d + i)];
    for (std::size_t l = 0; l < M.layers.size(); ++l) {
      const auto& L = M.layers[l];
      vec h = rms_norm(x, L.attn_norm, eps);
      vec q = linear(L.q, h, mode), k = linear(L.k, h, mode), v = linear(L.v, h, mode);
      rope(q, H, hd, static_cast<std::int64_t>(p), s.rope_base, !llama);
      rope(k, Hkv, hd, static_cast<std::int64_t>(p), s.rope_base, !llama);
      if (kv_f16)
        for (vec* kv : {&k, &v})
          for (double& e : *kv) e = bitnet::fp16_to_f32(bitnet::f32_to_fp16(static_cast<float>(e)));
      kc[l].push_back(k);
      vc[l].push_back(v);
      vec att(static_cast<std::size_t>(H * hd), 0.0);
      for (std::int64_t head = 0; head < H; ++head) {
        const std::int64_t kvh = head / group;  // consecutive query heads share a KV head
        vec sc(p + 1);
        double mx = -1e300;
        for (std::size_t j = 0; j <= p; ++j) {
          double dot = 0.0;
          for (std::int64_t i = 0; i < hd; ++i)
            dot += q[static_cast<std::size_t>(head * hd + i)] * kc[l][j][static_cast<std::size_t>(kvh * hd + i)];
          sc[j] = dot / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, sc[j]);
        }
        double sum = 0.0;
        for (double& e : sc) sum += (e = std::exp(e - mx));
        for (std::size_t j = 0; j <= p; ++j)
          for (std::int64_t i = 0; i < hd; ++i)
            att[static_cast<std::size_t>(head * hd + i)] += sc[j] / sum * vc[l][j][static_cast<std::size_t>(kvh * hd + i)];
      }
      if (!llama) att = rms_norm(att, L.attn_sub_norm, eps);  // llama has no sub-norms
      const vec o = linear(L.o, att, mode);
      for (std::size_t i = 0; i < x.size(); ++i) x[i] += o[i];
      h = rms_norm(x, L.ffn_norm, eps);
      const vec g = linear(L.gate, h, mode), u = linear(L.up, h, mode);
      vec a(g.size());
      for (std::size_t i = 0; i < g.size(); ++i) {
        const double act = silu ? g[i] / (1.0 + std::exp(-g[i])) : std::max(g[i], 0.0) * std::max(g[i], 0.0);
        a[i] = act * u[i];
      }
      if (!llama) a = rms_norm(a, L.ffn_sub_norm, eps);
      const vec dn = linear(L.down, a, mode);
      for (std::size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
    }
    vec xn = rms_norm(x, M.output_norm, eps);
    // The head's input as its weight type defines it (spec 4.1): F16 weights see x in fp16.
    if (s.head_type == tensor_type::f16)
      for (double& e : xn) e = bitnet::fp16_to_f32(bitnet::f32_to_fp16(static_cast<float>(e)));
    // The head: an untied output.weight (llama) or the embedding table.
    const std::vector<float>& head = M.output.empty() ? M.embd : M.output;
    vec logits(static_cast<std::size_t>(s.n_vocab));
    for (std::int64_t t = 0; t < s.n_vocab; ++t) {
      double acc = 0.0;
      for (std::int64_t i = 0; i < d; ++i) acc += head[static_cast<std::size_t>(t * d + i)] * xn[static_cast<std::size_t>(i)];
      logits[static_cast<std::size_t>(t)] = acc;
    }
    out.push_back(std::move(logits));
  }
  return out;
}

// ---------------------------------------------------------------- helpers

using bitnet::run::model;
using bitnet::run::session;
using bitnet::run::thread_pool;

using bitnet::test::decode_each;
using bitnet::test::load_synth;
using bitnet::test::random_tokens;

double rms(const vec& v) {
  double s = 0.0;
  for (double x : v) s += x * x;
  return std::sqrt(s / static_cast<double>(v.size()));
}

struct case_t {
  std::string name;
  synth_spec spec;
  act_quant mode = act_quant::per_token;
  bitnet::run::kv_type kv = bitnet::run::kv_type::f32;
};

// runner_fixtures.hpp's per-token cases, plus per-block activations and an f16 KV cache.
std::vector<case_t> cases() {
  std::vector<case_t> c;
  for (auto& n : bitnet::test::per_token_model_specs()) c.push_back({n.name, n.spec});
  // bitnet-b1.58, TQ2_0, per-block (Q8_K) activations.
  synth_spec s;
  s.wtype = tensor_type::tq2_0;
  s.n_layer = 3;
  s.seed = 5;
  c.push_back({"b158_tq2_q8k_activations", s, act_quant::per_block});
  // bitnet-b1.58 GQA with an f16 KV cache.
  s = {};
  s.seed = 6;
  c.push_back({"b158_gqa_i2s_kv_f16", s, act_quant::per_token, bitnet::run::kv_type::f16});
  // Float projections: F16 values that are ternary x scale (loaded losslessly), and BF16
  // full-precision weights (ternarized at load by the absmean rule; the reference uses the
  // builder's own ternarization of the same values).
  s = {};
  s.wtype = tensor_type::f16;
  s.seed = 10;
  c.push_back({"b158_f16_ternary_x_scale", s});
  s = {};
  s.arch = "llama";
  s.wtype = tensor_type::bf16;
  s.latent_type = tensor_type::bf16;
  s.latent = true;
  s.untied_head = true;
  s.seed = 11;
  c.push_back({"llama_bf16_latent_absmean", s});
  return c;
}

class ModelCase : public ::testing::TestWithParam<case_t> {};

// The logits of every position: the first n_prefill tokens in one batch, the rest one by one.
std::vector<float> prefill_then_decode(const model& m, thread_pool& pool, const std::vector<std::int32_t>& toks,
                                       std::size_t n_prefill, bitnet::run::kv_type kv = bitnet::run::kv_type::f32) {
  session s(m, pool, 16, 4, kv);
  const auto pre = s.eval(std::span<const std::int32_t>(toks.data(), n_prefill), true);
  std::vector<float> v(pre.begin(), pre.end());
  for (std::size_t p = n_prefill; p < toks.size(); ++p) {
    const auto l = s.eval(std::span<const std::int32_t>(&toks[p], 1));
    v.insert(v.end(), l.begin(), l.end());
  }
  return v;
}

// ---------------------------------------------------------------- tests

TEST_P(ModelCase, DecodeMatchesReference) {
  const case_t& tc = GetParam();
  const synth_model sm = bitnet::test::make_model(tc.spec);
  thread_pool pool(2);
  const model m = load_synth(sm, pool, tc.mode);
  const auto toks = random_tokens(9, tc.spec.n_vocab, 11);
  const auto ref = reference_forward(sm, toks, tc.mode, tc.kv == bitnet::run::kv_type::f16);
  session s(m, pool, 16, 64, tc.kv);
  const auto got = decode_each(s, toks);
  double worst = 0.0;
  int tight = 0;
  for (std::size_t p = 0; p < toks.size(); ++p) {
    double se = 0.0, sr = 0.0, err = 0.0;
    std::size_t at = 0;
    for (std::size_t i = 0; i < ref[p].size(); ++i) {
      const double e = static_cast<double>(got[p][i]) - ref[p][i];
      se += e * e;
      sr += ref[p][i] * ref[p][i];
      if (std::fabs(e) > err) {
        err = std::fabs(e);
        at = i;
      }
    }
    const double nmse = se / sr, scale = rms(ref[p]);
    worst = std::max(worst, nmse);
    tight += nmse <= 1e-10;
    EXPECT_LE(nmse, 1e-3) << tc.name << ": position " << p;
    EXPECT_LE(err, 0.1 * scale) << tc.name << ": position " << p << ", logit " << at << ": runner " << got[p][at]
                                << ", reference " << ref[p][at] << " (rms " << scale << ")";
  }
  // For these seeds most positions see no flip; checked so that a loss of float accuracy
  // (say, an f16 step somewhere) would show even where it stays under the loose bound.
  EXPECT_GE(tight, static_cast<int>(toks.size()) / 2) << tc.name;
  std::printf("[ %s ] largest NMSE over %zu positions: %.3g; %d positions at float precision (NMSE <= 1e-10)\n",
              tc.name.c_str(), toks.size(), worst, tight);
}

TEST_P(ModelCase, PrefillEqualsDecode) {
  const case_t& tc = GetParam();
  const synth_model sm = bitnet::test::make_model(tc.spec);
  thread_pool pool(2);
  const model m = load_synth(sm, pool, tc.mode);
  const auto toks = random_tokens(9, tc.spec.n_vocab, 12);
  const std::int64_t V = tc.spec.n_vocab;

  session dec(m, pool, 16, 64, tc.kv);
  const auto one_by_one = decode_each(dec, toks);

  // All 9 positions in one prefill, and in chunks of 4 (4 + 4 + 1).
  for (const std::int64_t batch : {16, 4}) {
    session pre(m, pool, 16, batch, tc.kv);
    const auto all = pre.eval(toks, true);
    ASSERT_EQ(all.size(), toks.size() * static_cast<std::size_t>(V));
    for (std::size_t p = 0; p < toks.size(); ++p)
      EXPECT_EQ(0, std::memcmp(all.data() + p * static_cast<std::size_t>(V), one_by_one[p].data(),
                               static_cast<std::size_t>(V) * sizeof(float)))
          << tc.name << ": batch " << batch << ", position " << p;
  }
  // Prefill 5 (last logits only), then decode 4.
  session mixed(m, pool, 16, 3, tc.kv);
  const auto last = mixed.eval(std::span<const std::int32_t>(toks.data(), 5));
  EXPECT_EQ(0, std::memcmp(last.data(), one_by_one[4].data(), static_cast<std::size_t>(V) * sizeof(float)));
  for (std::size_t p = 5; p < toks.size(); ++p) {
    const auto l = mixed.eval(std::span<const std::int32_t>(&toks[p], 1));
    EXPECT_EQ(0, std::memcmp(l.data(), one_by_one[p].data(), static_cast<std::size_t>(V) * sizeof(float)))
        << tc.name << ": position " << p;
  }
}

TEST_P(ModelCase, ThreadCountDoesNotChangeResults) {
  const case_t& tc = GetParam();
  const synth_model sm = bitnet::test::make_model(tc.spec);
  const auto toks = random_tokens(7, tc.spec.n_vocab, 13);
  std::vector<std::vector<float>> first;
  for (const int threads : {1, 2, 3}) {
    thread_pool pool(threads);
    const model m = load_synth(sm, pool, tc.mode);
    session s(m, pool, 16, 4, tc.kv);
    std::vector<std::vector<float>> got;
    const auto pre = s.eval(std::span<const std::int32_t>(toks.data(), 5), true);
    got.emplace_back(pre.begin(), pre.end());
    for (std::size_t p = 5; p < toks.size(); ++p) {
      const auto l = s.eval(std::span<const std::int32_t>(&toks[p], 1));
      got.emplace_back(l.begin(), l.end());
    }
    if (first.empty()) {
      first = got;
      continue;
    }
    ASSERT_EQ(got.size(), first.size());
    for (std::size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(got[i], first[i]) << tc.name << ": " << threads << " threads, step " << i;
  }
}

// The default LUT pair (the 1.67-bit dot layout, made straight from the file at load) against the
// t2 kernels: the same exact int32 sums and epilogue, so prefill and decode logits are identical.
// The portable pair runs everywhere; the CPU's preferred pair too where it has one. Projections
// with per-block scales stay on t2.
TEST_P(ModelCase, LutLayoutGivesTheT2Logits) {
  const case_t& tc = GetParam();
  if (tc.mode != act_quant::per_token) GTEST_SKIP() << "LUT kernels take per-token activations only";
  const synth_model sm = bitnet::test::make_model(tc.spec);
  thread_pool pool(2);
  const auto toks = random_tokens(9, tc.spec.n_vocab, 15);
  const auto load = [&](std::optional<bitnet::lut_kernel_pair> luts) {
    bitnet::run::load_options o;
    o.default_luts = luts.has_value();
    o.luts = std::move(luts);
    return model::load(bitnet::gguf::file::from_memory(sm.bytes(), "synthetic.gguf"), o, pool);
  };
  const auto logits = [&](const model& m) { return prefill_then_decode(m, pool, toks, 6, tc.kv); };
  const model t2 = load(std::nullopt);
  ASSERT_EQ(t2.info().lut_copies, 0u);
  const auto want = logits(t2);
  const auto find = [](std::string_view gv, std::string_view gm) {
    bitnet::lut_kernel_pair p;
    for (auto& e : bitnet::lut_gemv_variants())
      if (e.name == gv) p.gemv = e;
    for (auto& e : bitnet::lut_gemm_variants())
      if (e.name == gm) p.gemm = e;
    return p;
  };
  std::vector<bitnet::lut_kernel_pair> pairs{find("gemv_lutd_q8/scalar/g3/r16", "gemm_lutd_q8/scalar/g3/r16/t2")};
  if (auto p = bitnet::preferred_lut_kernels(bitnet::cpu_features::detect())) pairs.push_back(std::move(*p));
  const std::size_t projections = 7 * static_cast<std::size_t>(tc.spec.n_layer);
  for (const auto& pair : pairs) {
    ASSERT_TRUE(pair.gemv.fn && pair.gemm.fn) << pair.gemv.name << " / " << pair.gemm.name;
    const model m = load(pair);
    if (tc.spec.per_block_scales) {
      EXPECT_EQ(m.info().lut_copies, 0u) << tc.name;
      EXPECT_EQ(m.default_lut_pair(), nullptr);
    } else {
      EXPECT_EQ(m.info().lut_copies, projections) << tc.name;
      EXPECT_EQ(m.info().repacked_bytes, 0u) << tc.name << ": the t2 codes were made anyway";
      ASSERT_NE(m.default_lut_pair(), nullptr);
      EXPECT_EQ(m.default_lut_pair()->gemv.name, pair.gemv.name);
    }
    const auto got = logits(m);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)))
        << tc.name << ", " << pair.gemv.name;
  }
}

// Logits of a model file, prefill then decode, through the runner's default kernels.
std::vector<float> logits_of(const std::vector<std::uint8_t>& bytes, const std::vector<std::int32_t>& toks,
                             std::vector<std::string>* notes = nullptr) {
  thread_pool pool(2);
  const model m = model::load(bitnet::gguf::file::from_memory(bytes, "m.gguf"), {}, pool);
  if (notes) *notes = m.info().notes;
  return prefill_then_decode(m, pool, toks, 5);
}

// A float BitNet GGUF (as bitnet.cpp's converter writes before quantizing) whose values are
// ternary x one scale holds the same model as its I2_S form: bit-identical logits, for the
// bitnet and llama architectures and for F32 and F16 storage.
TEST(ModelLoad, FloatTernaryTimesScaleGivesTheI2sLogits) {
  for (const char* arch : {"bitnet-b1.58", "llama"})
    for (const tensor_type ft : {tensor_type::f16, tensor_type::f32}) {
      synth_spec s;
      s.arch = arch;
      s.seed = 21;
      s.wtype = tensor_type::i2_s;
      const auto toks = random_tokens(8, s.n_vocab, 22);
      const auto want = logits_of(bitnet::test::make_model(s).bytes(), toks);
      s.wtype = ft;
      std::vector<std::string> notes;
      const auto got = logits_of(bitnet::test::make_model(s).bytes(), toks, &notes);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float))) << arch << " " << bitnet::type_name(ft);
      ASSERT_FALSE(notes.empty());
      EXPECT_NE(notes.back().find("14 exactly ternary x one scale (lossless), 0 by BitNet's absmean rule"),
                std::string::npos)
          << notes.back();
    }
}

// Full-precision float weights are ternarized by the absmean rule: the same logits as an I2_S
// file of the builder's own ternarization of the same values (model_builder.hpp).
TEST(ModelLoad, LatentFloatWeightsAreTernarizedByAbsmean) {
  for (const tensor_type ft : {tensor_type::f32, tensor_type::f16, tensor_type::bf16}) {
    synth_spec s;
    s.arch = "llama";
    s.latent = true;
    s.seed = 23;
    s.wtype = ft;
    s.latent_type = ft;
    const auto toks = random_tokens(8, s.n_vocab, 24);
    std::vector<std::string> notes;
    const auto got = logits_of(bitnet::test::make_model(s).bytes(), toks, &notes);
    s.wtype = tensor_type::i2_s;
    const auto want = logits_of(bitnet::test::make_model(s).bytes(), toks);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float))) << bitnet::type_name(ft);
    ASSERT_FALSE(notes.empty());
    EXPECT_NE(notes.back().find("0 exactly ternary x one scale (lossless), 14 by BitNet's absmean rule"), std::string::npos)
        << notes.back();
  }
}

TEST(ModelLoad, RefusesAnUnusableLutPair) {
  const synth_model sm = bitnet::test::make_model({});
  thread_pool pool(1);
  const auto load = [&](bitnet::lut_kernel_pair p) {
    bitnet::run::load_options o;
    o.luts = std::move(p);
    return model::load(bitnet::gguf::file::from_memory(sm.bytes(), "synthetic.gguf"), o, pool);
  };
  bitnet::lut_kernel_pair mixed, empty;
  for (const auto& e : bitnet::lut_gemv_variants())
    if (e.name == "gemv_lutd_q8/scalar/g3/r16") mixed.gemv = e;
  for (const auto& e : bitnet::lut_gemm_variants())
    if (e.name == "gemm_lutv_q8/scalar/g3/r1/t16") mixed.gemm = e;
  ASSERT_TRUE(mixed.gemv.fn && mixed.gemm.fn);
  try {
    load(mixed);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("read different layouts"), std::string::npos) << e.what();
  }
  try {
    load(empty);  // no kernels at all
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cannot run"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Synthetic, ModelCase, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Model, ForcedScalarKernelsAgree) {
  // Scalar ternary kernels give the same integers and epilogue; only the head's float
  // accumulation order differs (a few ulps of the logits).
  const synth_model sm = bitnet::test::make_model({});
  thread_pool pool(2);
  const model best = load_synth(sm, pool);
  bitnet::kernel_options ko;
  ko.arch = "scalar";
  const model scalar = load_synth(sm, pool, act_quant::per_token, ko);
  EXPECT_NE(scalar.kernels().gemv.name.find("/scalar/"), std::string::npos) << scalar.kernels().gemv.name;
  EXPECT_NE(scalar.info().head_kernel.find("/scalar"), std::string::npos);
  const auto toks = random_tokens(5, 300, 14);
  session a(best, pool, 8), b(scalar, pool, 8);
  const auto la = a.eval(toks, true);
  const auto lb = b.eval(toks, true);
  const std::vector<float> va(la.begin(), la.end()), vb(lb.begin(), lb.end());
  double worst = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < va.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs(va[i] - vb[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(va[i])));
  }
  EXPECT_LE(worst, 1e-4 * scale);
}

// The attention loops the session picks for an AVX2 kernel arch, against a double-precision
// sum, for head sizes with every kind of tail (16-value steps, one 8-value step, scalar
// values, 64-value output slices) and position counts around the four-row step; f32 and f16 rows.
template <class T> void check_attention_loops(const bitnet::run::detail::attn_kernels<T>& ak) {
  using bitnet::run::detail::kv_value;
  std::mt19937 gen(17);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const auto stored = [](float v) {
    if constexpr (std::is_same_v<T, float>) return v;
    else return bitnet::f32_to_fp16(v);
  };
  for (std::int64_t hd : {1, 7, 8, 15, 16, 24, 64, 72, 100, 128, 200})
    for (std::int64_t n : {1, 3, 4, 5, 9, 33}) {
      const auto sz = [](std::int64_t v) { return static_cast<std::size_t>(v); };
      std::vector<float> q(sz(hd)), a(sz(n));
      std::vector<T> K(sz(n * hd)), V(K.size());
      for (auto& v : q) v = nd(gen);
      for (auto& v : a) v = nd(gen);
      for (auto& v : K) v = stored(nd(gen));
      for (auto& v : V) v = stored(nd(gen));
      std::vector<float> s_end(sz(n + 1), 42.0f);
      ak.dots(q.data(), K.data(), n, hd, s_end.data());
      for (std::int64_t j = 0; j < n; ++j) {
        double d = 0.0;
        for (std::int64_t i = 0; i < hd; ++i) d += static_cast<double>(q[sz(i)]) * kv_value(K[sz(j * hd + i)]);
        ASSERT_NEAR(s_end[sz(j)], d, 1e-5 * (1.0 + std::sqrt(static_cast<double>(hd))))
            << "hd " << hd << " n " << n << " j " << j;
      }
      ASSERT_EQ(s_end[sz(n)], 42.0f) << "wrote past the scores, n " << n;
      std::vector<float> o(sz(hd + 1), 42.0f);
      ak.wsum(a.data(), V.data(), n, hd, o.data());
      for (std::int64_t i = 0; i < hd; ++i) {
        double d = 0.0;
        for (std::int64_t j = 0; j < n; ++j) d += static_cast<double>(a[sz(j)]) * kv_value(V[sz(j * hd + i)]);
        ASSERT_NEAR(o[sz(i)], d, 1e-5 * (1.0 + static_cast<double>(n))) << "hd " << hd << " n " << n << " i " << i;
      }
      ASSERT_EQ(o[sz(hd)], 42.0f) << "wrote past the output, hd " << hd;
    }
}

TEST(Model, AttentionLoopsMatchADoubleSum) {
  namespace bd = bitnet::run::detail;
  check_attention_loops(bd::select_attn_kernels<float>(bitnet::arch::scalar::name));
  check_attention_loops(bd::select_attn_kernels<std::uint16_t>(bitnet::arch::scalar::name));
#if BITNET_X86
  if (!bitnet::cpu_features::detect().avx2) GTEST_SKIP() << "this CPU has no AVX2 (portable loops checked)";
  check_attention_loops(bd::select_attn_kernels<float>(bitnet::arch::avx2::name));
  check_attention_loops(bd::select_attn_kernels<std::uint16_t>(bitnet::arch::avx2::name));
#endif
}

TEST(Model, ContextOverflowIsRefused) {
  const synth_model sm = bitnet::test::make_model({});
  thread_pool pool(2);
  const model m = load_synth(sm, pool);
  const auto toks = random_tokens(6, 300, 15);
  {
    session s(m, pool, 5);
    try {
      s.eval(toks);  // 6 tokens into 5 positions: nothing is evaluated
      FAIL() << "expected context_full";
    } catch (const bitnet::run::context_full& e) {
      EXPECT_NE(std::string(e.what()).find("context full"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("context size of 5"), std::string::npos) << e.what();
    }
    EXPECT_EQ(s.pos(), 0);
    s.eval(std::span<const std::int32_t>(toks.data(), 5));
    EXPECT_EQ(s.pos(), 5);
    EXPECT_THROW(s.eval(std::span<const std::int32_t>(toks.data(), 1)), bitnet::run::context_full);
    EXPECT_EQ(s.pos(), 5);
    s.reset();
    EXPECT_NO_THROW(s.eval(std::span<const std::int32_t>(toks.data(), 1)));
  }
  session s(m, pool, 8);
  const std::int32_t bad = 300;
  EXPECT_THROW(s.eval(std::span<const std::int32_t>(&bad, 1)), std::out_of_range);
}

TEST(Model, DecodeAllocatesNothing) {
  if (!BITNET_TEST_COUNT_NEW) GTEST_SKIP() << "a sanitizer runtime replaces operator new; allocations are not counted";
  synth_spec sp;
  sp.arch = "bitnet";  // SiLU: the elementwise step also runs on the pool
  const synth_model sm = bitnet::test::make_model(sp);
  thread_pool pool(3);
  const model m = load_synth(sm, pool);
  session s(m, pool, 32, 8);
  const auto toks = random_tokens(12, 300, 16);
  s.eval(std::span<const std::int32_t>(toks.data(), 4));  // prefill (may size buffers)
  {  // the counter sees allocations (a global keeps the compiler from eliding this pair)
    static std::vector<float>* escape = nullptr;
    const long a = g_allocations.load();
    escape = new std::vector<float>(100);
    EXPECT_GE(g_allocations.load() - a, 2);
    delete escape;
  }
  const long before = g_allocations.load();
  for (std::size_t p = 4; p < toks.size(); ++p) s.eval(std::span<const std::int32_t>(&toks[p], 1));
  EXPECT_EQ(g_allocations.load() - before, 0) << "allocations during 8 decode steps";
}

// ---------------------------------------------------------------- load errors

std::string load_error(bitnet::gguf::writer& w) {
  thread_pool pool(1);
  try {
    (void)model::load(bitnet::gguf::file::from_memory(w.to_bytes(), "bad.gguf"), {}, pool);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ModelLoad, ErrorsNameFileKeyAndExpectation) {
  const auto has = [](const std::string& s, const char* part) { return s.find(part) != std::string::npos; };
  {
    synth_model sm = bitnet::test::make_model({});
    sm.writer.set_string("general.architecture", "gpt2");
    const std::string e = load_error(sm.writer);
    EXPECT_TRUE(has(e, "bad.gguf") && has(e, "'gpt2'") && has(e, "bitnet-b1.58") && has(e, "llama")) << e;
  }
  {
    synth_model sm = bitnet::test::make_model({});
    sm.writer.erase("bitnet-b1.58.attention.layer_norm_rms_epsilon");
    const std::string e = load_error(sm.writer);
    EXPECT_TRUE(has(e, "bad.gguf") && has(e, "bitnet-b1.58.attention.layer_norm_rms_epsilon")) << e;
  }
  {
    synth_model sm = bitnet::test::make_model({});
    sm.writer.set_u32("bitnet-b1.58.attention.head_count_kv", 3);
    const std::string e = load_error(sm.writer);
    EXPECT_TRUE(has(e, "head_count 8") && has(e, "head_count_kv 3")) << e;
  }
  {
    synth_model sm = bitnet::test::make_model({});
    sm.writer.set_u32("bitnet-b1.58.feed_forward_length", 768);
    const std::string e = load_error(sm.writer);
    EXPECT_TRUE(has(e, "blk.0.ffn_sub_norm.weight") && has(e, "expected [768]")) << e;
  }
  {
    synth_model sm = bitnet::test::make_model({});
    sm.writer.set_u32("bitnet-b1.58.rope.dimension_count", 16);
    const std::string e = load_error(sm.writer);
    EXPECT_TRUE(has(e, "rope.dimension_count 16") && has(e, "head size 32")) << e;
  }
  {
    synth_model sm = bitnet::test::make_model({});
    sm.writer.set_array("bitnet-b1.58.feed_forward_length", std::vector<std::uint32_t>{512, 768});
    const std::string e = load_error(sm.writer);
    EXPECT_TRUE(has(e, "per-layer values differ")) << e;
  }
  {
    // A model without one of its tensors.
    synth_spec s;
    s.n_layer = 1;
    synth_model sm = bitnet::test::make_model(s);
    bitnet::gguf::writer w;
    const auto bytes = sm.bytes();
    const auto f = bitnet::gguf::file::from_memory(bytes, "src.gguf");
    for (const auto& kv : f.metadata()) w.copy_kv(f, kv.key);
    for (const auto& t : f.tensors())
      if (t.name != "blk.0.attn_v.weight") w.add_tensor(t.name, t.type, bitnet::gguf::shape(std::span<const std::uint64_t>(t.ne.data(), t.n_dims)), t.bytes());
    const std::string e = load_error(w);
    EXPECT_TRUE(has(e, "missing tensor 'blk.0.attn_v.weight'")) << e;
  }
}

}  // namespace
