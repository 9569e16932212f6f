// Every LUT GEMV and GEMM instantiation (lut.hpp) against scalar references: exact
// int32 sums recomputed from the ternary values, the per-token epilogue in the same
// float order (so outputs must be bit-identical), and bit-identity with the t2 (MAD)
// kernels on the same inputs. Shapes come from each configuration: K around the group,
// the octet and the int16 K block; M around the row tile, primes; split row ranges
// that cut tiles; misaligned outputs; extreme values for int16 overflow.
#include <gtest/gtest.h>

#include <bitnet/bitnet.hpp>
#include <bitnet/lut.hpp>
#include <cstring>
#include <set>

#include "kernel_grid.hpp"

using namespace bitnet;
using bitnet::test::describe;
using bitnet::test::ref_per_token;
using bitnet::test::run_on_arch;
using bitnet::test::shape;

namespace {

template <class C> constexpr std::int64_t block_groups() {
  if constexpr (C::kind == lut_kind::shuffle)
    return detail::lut_block_groups<C::g, C::unroll>();
  else if constexpr (C::kind == lut_kind::dot)
    return 32 * kLutdSuperBlocks;  // groups per table build
  else
    return detail::lutv_table_groups<C::tokens>();
}

template <class C> std::vector<shape> lut_shapes() {
  constexpr std::int64_t G = C::g, KB = block_groups<C>();
  constexpr std::int64_t R = C::kind == lut_kind::vector ? C::rows + 16 : C::rows;
  std::vector<std::int64_t> Ks{1,      2,          3,          5,           8 * G - 1,  8 * G,      8 * G + 1,
                               KB * G - 1, KB * G, KB * G + 1, 2 * KB * G + 7, 2560,      2561};
  std::vector<std::int64_t> Ms{1, R - 1, R, R + 1, 2 * R + 3, 13, 97};
  std::vector<shape> v;
  for (auto K : Ks)
    for (auto M : Ms)
      if (K > 0 && M > 0) v.push_back({K, M});
  v.push_back({6912, 7});
  // Every third of split_rows spans nine or ten row tiles: kLutStreams (4) tiles two apart
  // streamed together, then single ones.
  v.push_back({2 * KB * G + 7, 25 * R + 5});
  v.push_back({2561, 25 * R + 5});
  return v;
}

// Three calls on ranges that cut row tiles: [0, a), [a, b), [b, M).
template <class Fn> void split_rows(std::int64_t M, Fn call) {
  const std::int64_t a = M / 3, b = std::min(M, 2 * M / 3 + 1);
  call(a, b);
  call(0, a);
  call(b, M);
}

}  // namespace

// ---------------------------------------------------------------- GEMV

template <class C> class LutGemvGrid : public ::testing::Test {};
TYPED_TEST_SUITE(LutGemvGrid, test::to_gtest<lut_gemv_grid>::type, test::config_name);

template <class C> void LutGemv_MatchesReference() {
  std::uint32_t seed = 2000;
  const auto ks = select_kernels(cpu_features::detect());
  for (auto s : lut_shapes<C>()) {
    ++seed;
    const auto w = test::random_ternary(static_cast<std::size_t>(s.K * s.M), seed);
    const auto x = test::random_floats(static_cast<std::size_t>(s.K), seed + 7);
    ternary_weights tw{s.K, s.M, w, 0.03125f, {}};
    const auto W = repack_lut(tw, C::layout());
    activations X;
    X.quantize(x.data(), 1, s.K, s.K, act_quant::per_token);
    const auto want = ref_per_token(w, s.K, s.M, tw.scale, X, 0);
    std::vector<float> buf(static_cast<std::size_t>(s.M + 2), -1.0f);
    float* y = buf.data() + 1;  // misaligned output
    split_rows(s.M, [&](std::int64_t r0, std::int64_t r1) { gemv_lut<C>(W, X, 0, y, r0, r1); });
    for (std::int64_t m = 0; m < s.M; ++m)
      ASSERT_EQ(y[m], want[static_cast<std::size_t>(m)]) << describe(C::name(), s, seed) << " row " << m;
    ASSERT_EQ(buf[0], -1.0f) << describe(C::name(), s, seed) << ": wrote before the output";
    ASSERT_EQ(buf[static_cast<std::size_t>(s.M + 1)], -1.0f) << describe(C::name(), s, seed) << ": wrote past the output";
    // The MAD (t2) kernel dispatch picks gives the same floats, bit for bit.
    const auto Wt2 = repack(tw, ks.block());
    std::vector<float> ymad(static_cast<std::size_t>(s.M));
    ks.gemv.fn(Wt2, X, 0, ymad.data(), 0, s.M);
    ASSERT_EQ(std::memcmp(ymad.data(), y, ymad.size() * sizeof(float)), 0)
        << describe(C::name(), s, seed) << " vs " << ks.gemv.name;
  }
}
TYPED_TEST(LutGemvGrid, MatchesReferenceAndMad) { run_on_arch<TypeParam>([]<class C>() { LutGemv_MatchesReference<C>(); }); }

template <class C> void LutGemv_FromFiles() {
  // I2_S / TQ2_0 / TQ1_0 bytes -> (t2 or direct) -> LUT layout, against the spec's I2_S reference.
  std::uint32_t seed = 3000;
  for (shape s : {shape{256, 5}, shape{2560, C::rows + 3}, shape{768, 64}}) {
    ++seed;
    const auto w = test::random_ternary(static_cast<std::size_t>(s.K * s.M), seed);
    const auto x = test::random_floats(static_cast<std::size_t>(s.K), seed + 1);
    const float sw = 0.0478515625f;  // fp16-exact, so TQ files carry the same per-tensor scale
    const auto i2 = pack_i2s(w, s.K, s.M, sw);
    const auto ref = reference::i2s_matvec_ref(i2, s.K, s.M, x.data());
    activations X;
    X.quantize(x.data(), 1, s.K, s.K, act_quant::per_token);
    std::vector<lut_matrix> Ws;
    Ws.push_back(repack_lut(repack(tensor_type::i2_s, i2, s.K, s.M, 128), C::layout()));
    Ws.push_back(repack_lut(tensor_type::tq2_0, pack_tq2(w, s.K, s.M, sw), s.K, s.M, C::layout()));
    Ws.push_back(repack_lut(tensor_type::tq1_0, pack_tq1(w, s.K, s.M, sw), s.K, s.M, C::layout()));
    for (std::size_t f = 0; f < Ws.size(); ++f) {
      std::vector<float> y(static_cast<std::size_t>(s.M));
      gemv_lut<C>(Ws[f], X, 0, y.data(), 0, s.M);
      for (std::int64_t m = 0; m < s.M; ++m)
        ASSERT_EQ(y[m], ref[static_cast<std::size_t>(m)]) << "source " << f << " " << describe(C::name(), s, seed);
    }
  }
}
TYPED_TEST(LutGemvGrid, FromFileFormats) { run_on_arch<TypeParam>([]<class C>() { LutGemv_FromFiles<C>(); }); }

// All weights -1 or +1 and activations -128 or 127: the largest |table entry| in every
// lookup, over whole int16 K blocks. Also a mix of all 27 patterns at -128.
template <class C> void LutGemv_Extremes() {
  for (std::int64_t K : {std::int64_t{2048}, std::int64_t{6912}, std::int64_t{14336}}) {
    for (int wv : {-1, 1, 0}) {
      for (int qv : {-128, 127}) {
        const std::int64_t M = C::rows + 5;
        std::vector<std::int8_t> w(static_cast<std::size_t>(K * M), static_cast<std::int8_t>(wv));
        if (wv == 0)  // every pattern, by row and position
          for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<std::int8_t>((i * 7 + i / 3) % 3) - 1;
        ternary_weights tw{K, M, w, 1.0f, {}};
        const auto W = repack_lut(tw, C::layout());
        activations X;
        std::vector<float> x(static_cast<std::size_t>(K), 1.0f);
        X.quantize(x.data(), 1, K, K, act_quant::per_token);
        for (std::int64_t k = 0; k < K; ++k) X.mutable_q(0)[k] = static_cast<std::int8_t>(qv);
        std::vector<float> y(static_cast<std::size_t>(M));
        gemv_lut<C>(W, X, 0, y.data(), 0, M);
        for (std::int64_t m = 0; m < M; ++m) {
          // X.sum(0) still describes the original q; the epilogue subtracts it after adding it.
          std::int64_t exact = 0;
          for (std::int64_t k = 0; k < K; ++k) exact += w[static_cast<std::size_t>(m * K + k)] * qv;
          const float expect = ((static_cast<float>(static_cast<std::int32_t>(exact) + X.sum(0)) -
                                 static_cast<float>(X.sum(0))) / X.scale(0)) * 1.0f;
          ASSERT_EQ(y[m], expect) << C::name() << " K=" << K << " w=" << wv << " q=" << qv << " row " << m;
        }
      }
    }
  }
}
TYPED_TEST(LutGemvGrid, ExtremeValuesDoNotOverflow) { run_on_arch<TypeParam>([]<class C>() { LutGemv_Extremes<C>(); }); }

template <class C> void LutGemv_Rejects() {
  ternary_weights tw{300, 4, std::vector<std::int8_t>(1200, 1), 1.0f, {}};
  const auto W = repack_lut(tw, C::layout());
  lut_layout other = C::layout();
  if (C::kind == lut_kind::dot)
    other.kind = lut_kind::shuffle;
  else
    other.g = C::g == 2 ? 3 : 2;
  const auto Wother = repack_lut(tw, other);
  activations X;
  auto x = test::random_floats(600, 1);
  X.quantize(x.data(), 1, 600, 600, act_quant::per_token);
  float y[4];
  EXPECT_THROW(gemv_lut<C>(W, X, 0, y, 0, 4), std::invalid_argument);  // K mismatch
  X.quantize(x.data(), 1, 300, 300, act_quant::per_token);
  EXPECT_THROW(gemv_lut<C>(W, X, 0, y, 0, 5), std::invalid_argument);       // rows out of range
  EXPECT_THROW(gemv_lut<C>(W, X, 1, y, 0, 4), std::invalid_argument);       // activation row out of range
  EXPECT_THROW(gemv_lut<C>(Wother, X, 0, y, 0, 4), std::invalid_argument);  // layout mismatch
  activations Xb;
  std::vector<float> x256(256, 0.5f);
  ternary_weights tw256{256, 4, std::vector<std::int8_t>(1024, 1), 1.0f, {}};
  Xb.quantize(x256.data(), 1, 256, 256, act_quant::per_block);
  EXPECT_THROW(gemv_lut<C>(repack_lut(tw256, C::layout()), Xb, 0, y, 0, 4), std::invalid_argument);  // per-block
}
TYPED_TEST(LutGemvGrid, RejectsMismatchedOperands) { run_on_arch<TypeParam>([]<class C>() { LutGemv_Rejects<C>(); }); }

// ---------------------------------------------------------------- GEMM

template <class C> class LutGemmGrid : public ::testing::Test {};
TYPED_TEST_SUITE(LutGemmGrid, test::to_gtest<lut_gemm_grid>::type, test::config_name);

template <class C> void LutGemm_MatchesReference() {
  std::uint32_t seed = 9500;
  constexpr std::int64_t G = C::g, KB = block_groups<C>();
  const std::int64_t rt = C::kind == lut_kind::vector ? 16 : C::rows;
  // C::tokens + 7: a full pass and, for T = 8, the tail's passes of 4, 2 and 1 tokens.
  for (std::int64_t N : {std::int64_t{1}, std::int64_t{C::tokens}, std::int64_t{C::tokens + 1}, std::int64_t{11},
                         std::int64_t{C::tokens + 7}, std::int64_t{33}}) {
    for (shape s : {shape{1, 3}, shape{3 * G * KB + 2, rt + 1}, shape{300, 2 * rt + 3}, shape{2560, 13},
                    shape{17 * 128 + 5, 6}}) {
      ++seed;
      const auto w = test::random_ternary(static_cast<std::size_t>(s.K * s.M), seed);
      const auto x = test::random_floats(static_cast<std::size_t>(s.K * N), seed + 3);
      ternary_weights tw{s.K, s.M, w, 0.125f, {}};
      const auto W = repack_lut(tw, C::layout());
      activations X;
      X.quantize(x.data(), N, s.K, s.K, act_quant::per_token);
      const std::int64_t ldy = s.M + 3;
      std::vector<float> Y(static_cast<std::size_t>(N * ldy), -7.0f);
      split_rows(s.M, [&](std::int64_t r0, std::int64_t r1) { gemm_lut<C>(W, X, Y.data(), ldy, r0, r1); });
      for (std::int64_t t = 0; t < N; ++t) {
        const auto want = ref_per_token(w, s.K, s.M, tw.scale, X, t);
        for (std::int64_t m = 0; m < s.M; ++m)
          ASSERT_EQ(Y[static_cast<std::size_t>(t * ldy + m)], want[static_cast<std::size_t>(m)])
              << describe(C::name(), s, seed) << " N=" << N << " token " << t << " row " << m;
        for (std::int64_t m = s.M; m < ldy; ++m) ASSERT_EQ(Y[static_cast<std::size_t>(t * ldy + m)], -7.0f);
      }
    }
  }
}
TYPED_TEST(LutGemmGrid, MatchesReference) { run_on_arch<TypeParam>([]<class C>() { LutGemm_MatchesReference<C>(); }); }

template <class C> void LutGemm_Extremes() {
  const std::int64_t K = 6912, M = 21, N = 3;
  for (int wv : {-1, 1}) {
    for (int qv : {-128, 127}) {
      std::vector<std::int8_t> w(static_cast<std::size_t>(K * M), static_cast<std::int8_t>(wv));
      ternary_weights tw{K, M, w, 1.0f, {}};
      const auto W = repack_lut(tw, C::layout());
      activations X;
      std::vector<float> x(static_cast<std::size_t>(K * N), 1.0f);
      X.quantize(x.data(), N, K, K, act_quant::per_token);
      for (std::int64_t t = 0; t < N; ++t)
        for (std::int64_t k = 0; k < K; ++k) X.mutable_q(t)[k] = static_cast<std::int8_t>(qv);
      std::vector<float> Y(static_cast<std::size_t>(N * M));
      gemm_lut<C>(W, X, Y.data(), M, 0, M);
      const auto exact = static_cast<std::int32_t>(wv * qv * K);
      for (std::int64_t t = 0; t < N; ++t) {
        // X.sum still describes the overwritten q (127 each). The shuffle and vector kernels add it to
        // their exact sum w*q; the dot GEMM sums codes (w + 1) * q like the t2 kernels, so its dot_c
        // carries the new sum of q (qv * K).
        const std::int32_t dot_c =
            C::kind == lut_kind::dot ? exact + static_cast<std::int32_t>(qv * K) : exact + X.sum(t);
        const float expect = ((static_cast<float>(dot_c) - static_cast<float>(X.sum(t))) / X.scale(t)) * 1.0f;
        for (std::int64_t m = 0; m < M; ++m)
          ASSERT_EQ(Y[static_cast<std::size_t>(t * M + m)], expect) << C::name() << " w=" << wv << " q=" << qv;
      }
    }
  }
}
TYPED_TEST(LutGemmGrid, ExtremeValuesDoNotOverflow) { run_on_arch<TypeParam>([]<class C>() { LutGemm_Extremes<C>(); }); }

// ---------------------------------------------------------------- layout and registries

TEST(LutLayout, IndicesDecodeToTheirPatterns) {
  // Every G-group of weights maps to an index and sign whose table entry is w . b.
  for (int w0 = -1; w0 <= 1; ++w0)
    for (int w1 = -1; w1 <= 1; ++w1) {
      int w[3] = {w0, w1, 0};
      bool neg = true;
      const int e = detail::lut_index<2>(w, neg);
      EXPECT_FALSE(neg);
      EXPECT_EQ(detail::lut_entry_weight<2>(e, 0), w0);
      EXPECT_EQ(detail::lut_entry_weight<2>(e, 1), w1);
      for (int w2 = -1; w2 <= 1; ++w2) {
        int v[3] = {w0, w1, w2};
        const int m = detail::lut_index<3>(v, neg);
        ASSERT_LE(m, 13);
        const int sgn = neg ? -1 : 1;
        for (int i = 0; i < 3; ++i) EXPECT_EQ(sgn * detail::lut_entry_weight<3>(m, i), v[i]) << w0 << w1 << w2;
      }
    }
}

TEST(LutLayout, RepackValidatesAndCountsBytes) {
  ternary_weights tw{1000, 70, test::random_ternary(70000, 3), 0.5f, {}};
  const auto a = repack_lut(tw, {lut_kind::shuffle, 3, 32});
  EXPECT_EQ(a.groups(), 336);                      // ceil(1000 / 3) = 334 -> octets
  EXPECT_EQ(a.tiles(), 3);                         // 70 rows in 32-row tiles
  EXPECT_EQ(a.packed_bytes(), 3u * 42 * 5 * 32);   // 1.67 bits per weight plus padding
  const auto b = repack_lut(tw, {lut_kind::shuffle, 2, 64});
  EXPECT_EQ(b.packed_bytes(), 2u * 63 * 4 * 64);   // 500 groups -> 504
  const auto c = repack_lut(tw, {lut_kind::vector, 3, 0});
  EXPECT_EQ(c.packed_bytes(), 70u * 352);          // 334 groups -> 352, one byte each
  EXPECT_THROW(repack_lut(tw, {lut_kind::shuffle, 4, 32}), std::invalid_argument);
  EXPECT_THROW(repack_lut(tw, {lut_kind::shuffle, 3, 24}), std::invalid_argument);
  EXPECT_THROW(repack_lut(tw, {lut_kind::vector, 2, 0}), std::invalid_argument);
  const auto d = repack_lut(tw, {lut_kind::dot, 3, 32});
  EXPECT_EQ(d.groups(), 352);                      // 334 groups -> blocks of 32
  EXPECT_EQ(d.tiles(), 3);
  EXPECT_EQ(d.packed_bytes(), 3u * 11 * 2 * 320);  // 1.67 bits per weight plus padding
  EXPECT_EQ(d.layout.name(), "lutd/g3/r32");
  EXPECT_THROW(repack_lut(tw, {lut_kind::dot, 3, 24}), std::invalid_argument);
  EXPECT_THROW(repack_lut(tw, {lut_kind::dot, 3, 128}), std::invalid_argument);
  EXPECT_THROW(repack_lut(tw, {lut_kind::dot, 2, 32}), std::invalid_argument);
  ternary_weights longk{180100, 1, std::vector<std::int8_t>(180100, 1), 1.0f, {}};  // int32 range of the correction
  EXPECT_THROW(repack_lut(longk, {lut_kind::dot, 3, 16}), std::invalid_argument);
  ternary_weights blocks{256, 2, std::vector<std::int8_t>(512, 1), 0.0f, {0.5f, 0.25f}};
  EXPECT_THROW(repack_lut(blocks, {lut_kind::shuffle, 3, 32}), std::invalid_argument);
}

namespace {
template <class E, class... C> void check_registry(const std::vector<E>& v, type_list<C...>) {
  std::set<std::string> names;
  for (const auto& e : v) EXPECT_TRUE(names.insert(e.name).second) << "duplicate " << e.name;
  std::size_t compiled = 0;
  auto one = [&]<class Cfg>() {
    if constexpr (arch_compiled<typename Cfg::arch>()) {
      ++compiled;
      bool found = false;
      for (const auto& e : v)
        if (e.name == Cfg::name()) {
          found = true;
          EXPECT_EQ(e.layout, Cfg::layout()) << e.name;
          EXPECT_EQ(e.arch, Cfg::arch::name);
          if constexpr (std::is_same_v<E, lut_gemv_entry>)
            EXPECT_EQ(e.fn, &gemv_lut<Cfg>) << e.name;
          else
            EXPECT_EQ(e.fn, &gemm_lut<Cfg>) << e.name;
        }
      EXPECT_TRUE(found) << Cfg::name();
    }
  };
  (one.template operator()<C>(), ...);
  EXPECT_EQ(v.size(), compiled);
}
}  // namespace

TEST(LutRegistry, EveryCompiledConfigIsRegisteredOnce) {
  check_registry(lut_gemv_variants(), lut_gemv_grid{});
  check_registry(lut_gemm_variants(), lut_gemm_grid{});
}

TEST(LutRegistry, EveryRunnableEntryComputesTheSameResult) {
  // Through the registry's function pointers, on one shape: all agree with the reference.
  const auto f = cpu_features::detect();
  const std::int64_t K = 1000, M = 77, N = 5;
  const auto w = test::random_ternary(static_cast<std::size_t>(K * M), 11);
  const auto x = test::random_floats(static_cast<std::size_t>(K * N), 12);
  ternary_weights tw{K, M, w, 0.25f, {}};
  activations X;
  X.quantize(x.data(), N, K, K, act_quant::per_token);
  for (const auto& e : lut_gemv_variants()) {
    if (!e.runs_on(f)) continue;
    const auto W = repack_lut(tw, e.layout);
    std::vector<float> y(static_cast<std::size_t>(M));
    e.fn(W, X, 2, y.data(), 0, M);
    EXPECT_EQ(y, ref_per_token(w, K, M, tw.scale, X, 2)) << e.name;
  }
  for (const auto& e : lut_gemm_variants()) {
    if (!e.runs_on(f)) continue;
    const auto W = repack_lut(tw, e.layout);
    std::vector<float> Y(static_cast<std::size_t>(N * M));
    e.fn(W, X, Y.data(), M, 0, M);
    for (std::int64_t t = 0; t < N; ++t)
      EXPECT_EQ(std::vector<float>(Y.begin() + t * M, Y.begin() + (t + 1) * M), ref_per_token(w, K, M, tw.scale, X, t))
          << e.name << " token " << t;
  }
}
