// Every GEMV and GEMM instantiation in the library's grid against scalar
// references: exact int32 dot products, and float results computed with the
// same epilogue ops in the same order (so they must be bit-identical).
#include <gtest/gtest.h>

#include <bitnet/bitnet.hpp>
#include <cstring>

#include "kernel_grid.hpp"

using namespace bitnet;
using bitnet::test::describe;
using bitnet::test::ref_per_token;
using bitnet::test::run_on_arch;
using bitnet::test::shape;

namespace {

// K equal to, below, above and multiples of the block; around the int16 widening
// boundary (14 or 15 chunks of 128); model widths; M around the row tile and primes
// (a GEMV call reads R streams of M / R rows, then the remainder one row at a time).
template <class C> std::vector<shape> edge_shapes() {
  constexpr std::int64_t B = C::block;
  constexpr std::int64_t R = [] {
    if constexpr (requires { C::rows; }) return C::rows;
    return 1;
  }();
  std::vector<std::int64_t> Ks{1, 31, B - 4, B, B + 4, 2 * B, 3 * B + 100, 14 * 128, 15 * 128, 16 * 128, 17 * 128 + 5, 2560};
  std::vector<std::int64_t> Ms{1, R, R + 1, 2 * R + 3, 13};
  std::vector<shape> v;
  for (auto K : Ks)
    for (auto M : Ms)
      if (K > 0) v.push_back({K, M});
  v.push_back({6912, 7});
  return v;
}

}  // namespace

template <class C> class GemvGrid : public ::testing::Test {};
TYPED_TEST_SUITE(GemvGrid, test::to_gtest<gemv_grid>::type, test::config_name);

template <class C> void GemvGrid_MatchesReference() {
  std::uint32_t seed = 1000;
  for (auto s : edge_shapes<C>()) {
    ++seed;
    const auto w = test::random_ternary(static_cast<std::size_t>(s.K * s.M), seed);
    const auto x = test::random_floats(static_cast<std::size_t>(s.K), seed + 7);
    ternary_weights tw{s.K, s.M, w, 0.03125f, {}};
    const auto W = repack(tw, C::block);
    activations X;
    X.quantize(x.data(), 1, s.K, s.K, act_quant::per_token);
    const auto want = ref_per_token(w, s.K, s.M, tw.scale, X, 0);
    // Output at an odd offset (misaligned), and a range that does not start at 0.
    std::vector<float> buf(static_cast<std::size_t>(s.M + 1), -1.0f);
    float* y = buf.data() + 1;
    const std::int64_t mid = s.M / 3;
    gemv<C>(W, X, 0, y, mid, s.M);
    gemv<C>(W, X, 0, y, 0, mid);
    for (std::int64_t m = 0; m < s.M; ++m)
      ASSERT_EQ(y[m], want[static_cast<std::size_t>(m)]) << describe(C::name(), s, seed) << " row " << m;
    // Through the file format: I2_S bytes and the spec's reference read them directly.
    if ((s.K * s.M) % 128 == 0) {
      const auto bytes = pack_i2s(w, s.K, s.M, tw.scale);
      const auto W2 = repack(tensor_type::i2_s, bytes, s.K, s.M, C::block);
      gemv<C>(W2, X, 0, y, 0, s.M);
      const auto ref = reference::i2s_matvec_ref(bytes, s.K, s.M, x.data());
      for (std::int64_t m = 0; m < s.M; ++m)
        ASSERT_EQ(y[m], ref[static_cast<std::size_t>(m)]) << "I2_S " << describe(C::name(), s, seed) << " row " << m;
    }
  }
}
TYPED_TEST(GemvGrid, MatchesReference) { run_on_arch<TypeParam>([]<class C>() { GemvGrid_MatchesReference<C>(); }); }

template <class C> void GemvGrid_DotIsExactInteger() {
  std::uint32_t seed = 7000;
  for (auto s : edge_shapes<C>()) {
    ++seed;
    const auto w = test::random_ternary(static_cast<std::size_t>(s.K * s.M), seed);
    const auto x = test::random_floats(static_cast<std::size_t>(s.K), seed + 5);
    const auto W = repack(ternary_weights{s.K, s.M, w, 0.5f, {}}, C::block);
    activations X;
    X.quantize(x.data(), 1, s.K, s.K, act_quant::per_token);
    std::vector<std::int32_t> d(static_cast<std::size_t>(s.M), -99);
    gemv_dot<C>(W, X, 0, d.data(), 0, s.M);
    for (std::int64_t m = 0; m < s.M; ++m)
      ASSERT_EQ(d[static_cast<std::size_t>(m)], reference::ternary_dot_ref(w.data() + m * s.K, X.q(0), s.K))
          << describe(C::name(), s, seed) << " row " << m;
  }
}
TYPED_TEST(GemvGrid, DotIsExactInteger) { run_on_arch<TypeParam>([]<class C>() { GemvGrid_DotIsExactInteger<C>(); }); }

template <class C> void GemvGrid_ExtremeValuesDoNotOverflow() {
  for (std::int64_t K : {std::int64_t{2048}, std::int64_t{6912}, std::int64_t{14336}}) {
    for (int wv : {-1, 1}) {
      for (int qv : {-128, 127}) {
        const std::int64_t M = 5;
        std::vector<std::int8_t> w(static_cast<std::size_t>(K * M), static_cast<std::int8_t>(wv));
        ternary_weights tw{K, M, w, 1.0f, {}};
        const auto W = repack(tw, C::block);
        activations X;
        std::vector<float> x(static_cast<std::size_t>(K), 1.0f);
        X.quantize(x.data(), 1, K, K, act_quant::per_token);
        for (std::int64_t k = 0; k < K; ++k) X.mutable_q(0)[k] = static_cast<std::int8_t>(qv);
        // Recompute the sum the kernels subtract (the q values were overwritten).
        const std::int32_t exact = static_cast<std::int32_t>(wv * qv * K);
        std::vector<float> y(static_cast<std::size_t>(M));
        gemv<C>(W, X, 0, y.data(), 0, M);
        // sum_q in X still describes the original q (=127 each); undo it like the epilogue does.
        const float expect =
            ((static_cast<float>(exact + static_cast<std::int32_t>(qv * K)) - static_cast<float>(X.sum(0))) /
             X.scale(0)) *
            1.0f;
        for (std::int64_t m = 0; m < M; ++m) ASSERT_EQ(y[m], expect) << C::name() << " K=" << K << " w=" << wv << " q=" << qv;
      }
    }
  }
}
TYPED_TEST(GemvGrid, ExtremeValuesDoNotOverflow) { run_on_arch<TypeParam>([]<class C>() { GemvGrid_ExtremeValuesDoNotOverflow<C>(); }); }

template <class C> void GemvGrid_PerBlockMatchesGgmlReference() {
  std::uint32_t seed = 5000;
  for (shape s : {shape{256, 1}, shape{256, 9}, shape{768, 5}, shape{2560, 11}, shape{6912, 3}}) {
    ++seed;
    const auto w = test::random_ternary(static_cast<std::size_t>(s.K * s.M), seed);
    const auto x = test::random_floats(static_cast<std::size_t>(s.K), seed + 1);
    // Distinct fp16-exact block scales, so the per-block path is exercised.
    std::vector<float> bs(static_cast<std::size_t>(s.K * s.M / 256));
    for (std::size_t i = 0; i < bs.size(); ++i) bs[i] = fp16_to_f32(f32_to_fp16(0.01f * static_cast<float>(i % 7 + 1)));
    activations X;
    X.quantize(x.data(), 1, s.K, s.K, act_quant::per_block);
    std::vector<float> y(static_cast<std::size_t>(s.M));
    const auto tq2 = pack_tq2(w, s.K, s.M, 0.0f, bs);
    const auto W2 = repack(tensor_type::tq2_0, tq2, s.K, s.M, C::block);
    ASSERT_TRUE(W2.per_block_scales() || bs.size() == 1);
    gemv<C>(W2, X, 0, y.data(), 0, s.M);
    const auto ref2 = reference::tq2_matvec_ref(tq2, s.K, s.M, x.data());
    for (std::int64_t m = 0; m < s.M; ++m)
      ASSERT_EQ(y[m], ref2[static_cast<std::size_t>(m)]) << "TQ2_0 " << describe(C::name(), s, seed) << " row " << m;
    const auto tq1 = pack_tq1(w, s.K, s.M, 0.0f, bs);
    const auto W1 = repack(tensor_type::tq1_0, tq1, s.K, s.M, C::block);
    gemv<C>(W1, X, 0, y.data(), 0, s.M);
    const auto ref1 = reference::tq1_matvec_ref(tq1, s.K, s.M, x.data());
    for (std::int64_t m = 0; m < s.M; ++m)
      ASSERT_EQ(y[m], ref1[static_cast<std::size_t>(m)]) << "TQ1_0 " << describe(C::name(), s, seed) << " row " << m;
  }
}
TYPED_TEST(GemvGrid, PerBlockMatchesGgmlReference) { run_on_arch<TypeParam>([]<class C>() { GemvGrid_PerBlockMatchesGgmlReference<C>(); }); }

template <class C> void GemvGrid_RejectsMismatchedOperands() {
  ternary_weights tw{256, 4, std::vector<std::int8_t>(1024, 1), 1.0f, {}};
  const auto W = repack(tw, C::block);
  const auto Wother = repack(tw, C::block == 128 ? 256 : 128);
  activations X;
  auto x = test::random_floats(512, 1);
  X.quantize(x.data(), 1, 512, 512, act_quant::per_token);
  float y[4];
  EXPECT_THROW(gemv<C>(W, X, 0, y, 0, 4), std::invalid_argument);  // K mismatch
  X.quantize(x.data(), 1, 256, 256, act_quant::per_token);
  EXPECT_THROW(gemv<C>(W, X, 0, y, 0, 5), std::invalid_argument);      // rows out of range
  EXPECT_THROW(gemv<C>(Wother, X, 0, y, 0, 4), std::invalid_argument);  // layout block mismatch
}
TYPED_TEST(GemvGrid, RejectsMismatchedOperands) { run_on_arch<TypeParam>([]<class C>() { GemvGrid_RejectsMismatchedOperands<C>(); }); }

template <class C> class GemmGrid : public ::testing::Test {};
TYPED_TEST_SUITE(GemmGrid, test::to_gtest<gemm_grid>::type, test::config_name);

template <class C> void GemmGrid_MatchesReference() {
  std::uint32_t seed = 9000;
  for (std::int64_t N : {std::int64_t{1}, std::int64_t{C::tokens}, std::int64_t{C::tokens + 1}, std::int64_t{11}}) {
    for (shape s : {shape{C::block, 1}, shape{300, C::rows + 1}, shape{2560, 13}, shape{17 * 128 + 5, 6}}) {
      ++seed;
      const auto w = test::random_ternary(static_cast<std::size_t>(s.K * s.M), seed);
      const auto x = test::random_floats(static_cast<std::size_t>(s.K * N), seed + 3);
      ternary_weights tw{s.K, s.M, w, 0.125f, {}};
      const auto W = repack(tw, C::block);
      activations X;
      X.quantize(x.data(), N, s.K, s.K, act_quant::per_token);
      const std::int64_t ldy = s.M + 3;
      std::vector<float> Y(static_cast<std::size_t>(N * ldy), -7.0f);
      const std::int64_t mid = (s.M + 1) / 2;
      gemm<C>(W, X, Y.data(), ldy, 0, mid);
      gemm<C>(W, X, Y.data(), ldy, mid, s.M);
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
TYPED_TEST(GemmGrid, MatchesReference) { run_on_arch<TypeParam>([]<class C>() { GemmGrid_MatchesReference<C>(); }); }

TEST(Repack, I2sAndTq2GiveIdenticalResults) {
  const std::int64_t K = 2560, M = 37;
  const auto w = test::random_ternary(static_cast<std::size_t>(K * M), 77);
  const float s = 0.0478515625f;  // fp16-exact, so TQ2_0's f16 scale equals I2_S's f32 scale
  const auto i2 = pack_i2s(w, K, M, s);
  const auto tq2 = pack_tq2(w, K, M, s);
  const auto tq1 = pack_tq1(w, K, M, s);
  const auto x = test::random_floats(static_cast<std::size_t>(K), 78);
  activations X;
  X.quantize(x.data(), 1, K, K, act_quant::per_token);
  const auto ks = select_kernels(cpu_features::detect());
  for (int block : {128, 256}) {
    const auto A = repack(tensor_type::i2_s, i2, K, M, block);
    const auto B = repack(tensor_type::tq2_0, tq2, K, M, block);
    const auto Cm = repack(tensor_type::tq1_0, tq1, K, M, block);
    ASSERT_EQ(A.packed_bytes(), B.packed_bytes());
    EXPECT_EQ(std::memcmp(A.row(0), B.row(0), A.packed_bytes()), 0) << "block " << block;
    EXPECT_EQ(std::memcmp(A.row(0), Cm.row(0), A.packed_bytes()), 0) << "block " << block;
    EXPECT_EQ(A.scale, B.scale);
    EXPECT_FALSE(B.per_block_scales());
  }
  const auto A = repack(tensor_type::i2_s, i2, K, M, ks.block());
  const auto B = repack(tensor_type::tq2_0, tq2, K, M, ks.block());
  std::vector<float> ya(M), yb(M);
  ks.gemv.fn(A, X, 0, ya.data(), 0, M);
  ks.gemv.fn(B, X, 0, yb.data(), 0, M);
  EXPECT_EQ(ya, yb) << ks.gemv.name;
}

// ---------------------------------------------------------------- dispatch

namespace {
template <class... C> void check_forced(type_list<C...>, const cpu_features& f) {
  auto one = [&]<class Cfg>() {
    if constexpr (arch_compiled<typename Cfg::arch>()) {
      if (!arch_runs_on<typename Cfg::arch>(f)) return;
      kernel_options o;
      o.gemv = Cfg::name();
      const auto ks = select_kernels(f, o);
      EXPECT_EQ(ks.gemv.name, Cfg::name());
      // The selected functions are exactly that instantiation.
      EXPECT_EQ(ks.gemv.fn, &gemv<Cfg>) << Cfg::name();
      EXPECT_EQ(ks.gemv.dot, &gemv_dot<Cfg>) << Cfg::name();
    }
  };
  (one.template operator()<C>(), ...);
}
template <class... C> void check_forced_gemm(type_list<C...>, const cpu_features& f) {
  auto one = [&]<class Cfg>() {
    if constexpr (arch_compiled<typename Cfg::arch>()) {
      if (!arch_runs_on<typename Cfg::arch>(f)) return;
      kernel_options o;
      o.gemv = std::string(Cfg::block == 128 ? "gemv_t2_q8/scalar/b128/r4/u1" : "gemv_t2_q8/scalar/b256/r4/u2");
      o.gemm = Cfg::name();
      const auto ks = select_kernels(f, o);
      EXPECT_EQ(ks.gemm.fn, &gemm<Cfg>) << Cfg::name();
    }
  };
  (one.template operator()<C>(), ...);
}
}  // namespace

TEST(Dispatch, EveryForcedOverrideRunsThatKernel) {
  const auto f = cpu_features::detect();
  check_forced(gemv_grid{}, f);
  check_forced_gemm(gemm_grid{}, f);
}

TEST(Dispatch, DefaultIsBestAvailableArch) {
  const auto f = cpu_features::detect();
  const auto ks = select_kernels(f);
  int best = 0;
  for (const auto& e : gemv_variants())
    if (e.runs_on(f)) best = std::max(best, e.rank);
  EXPECT_EQ(arch_rank(ks.arch), best);
  EXPECT_EQ(ks.gemv.block, ks.gemm.block);
  EXPECT_EQ(ks.gemm.arch, ks.arch);
}

TEST(Dispatch, NoAvx2MeansScalarAndCorrect) {
  // A CPU without AVX2 (features masked) gets the scalar path, never an AVX2 body.
  cpu_features none;
  const auto ks = select_kernels(none);
  EXPECT_EQ(ks.arch, "scalar");
  EXPECT_EQ(ks.gemv.name.rfind("gemv_t2_q8/scalar/", 0), 0u) << ks.gemv.name;
  const std::int64_t K = 640, M = 9;
  const auto w = test::random_ternary(static_cast<std::size_t>(K * M), 5);
  const auto x = test::random_floats(static_cast<std::size_t>(K), 6);
  ternary_weights tw{K, M, w, 0.5f, {}};
  const auto W = repack(tw, ks.block());
  activations X;
  X.quantize(x.data(), 1, K, K, act_quant::per_token);
  std::vector<float> y(M);
  ks.gemv.fn(W, X, 0, y.data(), 0, M);
  EXPECT_EQ(y, ref_per_token(w, K, M, 0.5f, X, 0));
  // Asking for an arch the CPU lacks is an error naming what is available.
  kernel_options o;
  o.arch = "avx2";
  try {
    select_kernels(none, o);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("not available"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("scalar"), std::string::npos) << e.what();
  }
}

TEST(Dispatch, UnknownNamesListValidOnes) {
  const auto f = cpu_features::detect();
  kernel_options o;
  o.gemv = "gemv_t2_q8/avx2/b128/r4/u3";
  try {
    select_kernels(f, o);
    FAIL();
  } catch (const std::invalid_argument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("unknown GEMV kernel 'gemv_t2_q8/avx2/b128/r4/u3'"), std::string::npos) << m;
    EXPECT_NE(m.find("gemv_t2_q8/scalar/b128/r1/u1"), std::string::npos) << m;
  }
  kernel_options a;
  a.arch = "sse9";
  try {
    select_kernels(f, a);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("avx2"), std::string::npos) << e.what();
  }
  kernel_options g;
  g.gemv = "gemv_t2_q8/scalar/b128/r4/u1";
  g.gemm = "gemm_t2_q8/scalar/b256/r2/t2";
  EXPECT_THROW(select_kernels(f, g), std::invalid_argument);  // blocks differ
}

TEST(Dispatch, EnvironmentOverride) {
  ::setenv("BITNET_ARCH", "scalar", 1);
  auto ks = select_kernels_from_env();
  EXPECT_EQ(ks.arch, "scalar");
  ::setenv("BITNET_GEMV", "gemv_t2_q8/scalar/b256/r4/u2", 1);
  ks = select_kernels_from_env();
  EXPECT_EQ(ks.gemv.name, "gemv_t2_q8/scalar/b256/r4/u2");
  EXPECT_EQ(ks.gemm.block, 256);
  ::setenv("BITNET_GEMV", "nonsense", 1);
  EXPECT_THROW(select_kernels_from_env(), std::invalid_argument);
  ::unsetenv("BITNET_ARCH");
  ::unsetenv("BITNET_GEMV");
}
