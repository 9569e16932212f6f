// tuning.hpp: the tuning-file format round trip, every reason a file is ignored
// (missing, stale version, foreign CPU, malformed or duplicate lines, unknown or
// unrunnable kernels), pick()'s batch rule, and tuned_matrix running the picked
// kernels with results bit-identical to the default MAD kernels.
#include <gtest/gtest.h>

#include <bitnet/bitnet.hpp>
#include <bitnet/tuning.hpp>
#include <cstdio>
#include <fstream>
#include <string>

#include "test_data.hpp"

using namespace bitnet;

namespace {

std::string temp_path(const char* name) { return std::string(BITNET_BINARY_DIR) + "/test_tuning_" + name + ".txt"; }

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A valid table for this CPU, naming only kernels this build runs here.
tuning_table sample_table(const cpu_features& f) {
  tuning_table t;
  t.fingerprint = cpu_fingerprint(f);
  t.entries.push_back({"gemv", 2560, 2560, 1, "gemv_lut_q8/scalar/g3/r32/u1", 12.5});
  t.entries.push_back({"gemv", 640, 2560, 1, std::string(default_gemv_name("scalar")), 0.0});
  t.entries.push_back({"gemm", 2560, 2560, 128, "gemm_lutv_q8/scalar/g3/r1/t16", 900.0});
  t.entries.push_back({"gemm", 2560, 2560, 8, "gemm_t2_q8/scalar/b128/r2/t4", 0.0});
  return t;
}

std::string expect_ignored(const std::string& text, const char* name, const cpu_features& f) {
  const auto path = temp_path(name);
  write_file(path, text);
  const auto r = load_tuning(path, f);
  EXPECT_FALSE(r.ok()) << name;
  EXPECT_TRUE(r.table.empty()) << name;
  EXPECT_NE(r.warning.find(path), std::string::npos) << r.warning;
  std::remove(path.c_str());
  return r.warning;
}

}  // namespace

TEST(Tuning, RoundTripAndPick) {
  const auto f = cpu_features::detect();
  const auto t = sample_table(f);
  const auto path = temp_path("roundtrip");
  write_file(path, t.to_text());
  const auto r = load_tuning(path, f);
  std::remove(path.c_str());
  ASSERT_TRUE(r.ok()) << r.warning;
  ASSERT_EQ(r.table.entries.size(), t.entries.size());
  EXPECT_EQ(r.table.fingerprint, t.fingerprint);
  const auto* e = r.table.pick("gemv", 2560, 2560, 1);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->kernel, "gemv_lut_q8/scalar/g3/r32/u1");
  EXPECT_EQ(e->median_us, 12.5);
  // Batch rule: largest tuned batch <= the request, else the smallest tuned batch.
  EXPECT_EQ(r.table.pick("gemm", 2560, 2560, 128)->batch, 128);
  EXPECT_EQ(r.table.pick("gemm", 2560, 2560, 512)->batch, 128);
  EXPECT_EQ(r.table.pick("gemm", 2560, 2560, 64)->batch, 8);
  EXPECT_EQ(r.table.pick("gemm", 2560, 2560, 2)->batch, 8);
  EXPECT_EQ(r.table.pick("gemm", 640, 2560, 128), nullptr);
  EXPECT_EQ(r.table.pick("gemv", 2560, 6912, 1), nullptr);
  // The text is stable: writing the loaded table gives the same bytes.
  EXPECT_EQ(r.table.to_text(), t.to_text());
}

TEST(Tuning, FingerprintNamesArchesAndModel) {
  const auto f = cpu_features::detect();
  const auto fp = cpu_fingerprint(f);
  EXPECT_EQ(fp.rfind("cpu scalar", 0), 0u) << fp;
  if (arch_available<arch::avx2>()) {
    EXPECT_NE(fp.find(",avx2"), std::string::npos) << fp;
  }
  EXPECT_GT(fp.size(), std::string("cpu scalar ").size()) << "no model string: " << fp;
  EXPECT_EQ(fp.find("  "), std::string::npos) << fp;
  // Masking features changes the fingerprint (a CPU without AVX2 is another CPU).
  EXPECT_EQ(cpu_fingerprint(cpu_features{}).rfind("cpu scalar ", 0), 0u);
}

TEST(Tuning, IgnoresBadFilesWithAReason) {
  const auto f = cpu_features::detect();
  const std::string good = sample_table(f).to_text();
  auto with_line = [&](const std::string& extra) { return good + extra + "\n"; };
  {
    const auto r = load_tuning(temp_path("does_not_exist"), f);
    EXPECT_FALSE(r.ok());
    EXPECT_NE(r.warning.find("cannot open"), std::string::npos) << r.warning;
  }
  EXPECT_NE(expect_ignored("", "empty", f).find("empty"), std::string::npos);
  EXPECT_NE(expect_ignored("hello\n", "magic", f).find("not a bitnet tuning file"), std::string::npos);
  std::string v2 = good;
  v2.replace(0, std::string("bitnet-tuning 1").size(), "bitnet-tuning 2");
  EXPECT_NE(expect_ignored(v2, "version", f).find("stale format"), std::string::npos);
  const std::string foreign = "bitnet-tuning 1\ncpu scalar,neon64 Some Other CPU\ngemv 1 1 1 " +
                              std::string(default_gemv_name("scalar")) + "\n";
  EXPECT_NE(expect_ignored(foreign, "foreign", f).find("another CPU"), std::string::npos);
  EXPECT_NE(expect_ignored(with_line("gemv 10 10 1"), "fields", f).find("expected"), std::string::npos);
  EXPECT_NE(expect_ignored(with_line("gemx 10 10 1 gemv_lut_q8/scalar/g3/r32/u1"), "op", f).find("unknown op"),
            std::string::npos);
  EXPECT_NE(expect_ignored(with_line("gemv 10 -3 1 gemv_lut_q8/scalar/g3/r32/u1"), "num", f).find("positive"),
            std::string::npos);
  EXPECT_NE(expect_ignored(with_line("gemv 10 10 1 gemv_lut_q8/scalar/g3/r32/u1 fast"), "us", f).find("median_us"),
            std::string::npos);
  EXPECT_NE(expect_ignored(with_line("gemv 10 10 1 gemv_lut_q8/scalar/g5/r32/u1"), "unknown", f).find("stale"),
            std::string::npos);
  EXPECT_NE(expect_ignored(with_line("gemm 10 10 1 gemv_lut_q8/scalar/g3/r32/u1"), "kind", f).find("not a gemm"),
            std::string::npos);
  EXPECT_NE(expect_ignored(with_line("gemv 2560 2560 1 gemv_lut_q8/scalar/g2/r32/u1"), "dup", f).find("duplicate"),
            std::string::npos);
  // A kernel this CPU cannot run: the same file read as if AVX2 were absent is foreign
  // (fingerprint), and a file claiming this fingerprint but naming an arch it lacks is stale.
  if (arch_available<arch::avx2>()) {
    cpu_features none;
    tuning_table t;
    t.fingerprint = cpu_fingerprint(none);
    t.entries.push_back({"gemv", 10, 10, 1, "gemv_lut_q8/avx2/g3/r32/u1", 0.0});
    EXPECT_NE(expect_ignored(t.to_text(), "unrunnable", none).find("not runnable"), std::string::npos);
  }
  // Comments and blank lines are fine.
  const auto path = temp_path("comments");
  write_file(path, with_line("\n# a comment\n\n"));
  EXPECT_TRUE(load_tuning(path, f).ok());
  std::remove(path.c_str());
}

TEST(Tuning, TunedMatrixRunsThePicksBitIdenticalToMad) {
  const auto f = cpu_features::detect();
  const auto ks = select_kernels(f);
  const std::int64_t K = 2560, M = 2560, N = 20;
  const auto w = test::random_ternary(static_cast<std::size_t>(K * M), 5);
  const auto x = test::random_floats(static_cast<std::size_t>(K * N), 6);
  ternary_weights tw{K, M, w, 0.75f, {}};
  activations X;
  X.quantize(x.data(), N, K, K, act_quant::per_token);
  const auto W = repack(tw, ks.block());
  std::vector<float> want1(M), wantN(static_cast<std::size_t>(M * N));
  ks.gemv.fn(W, X, 3, want1.data(), 0, M);
  ks.gemm.fn(W, X, wantN.data(), M, 0, M);

  // Picks from the table: a LUT GEMV and a vector-LUT GEMM (best arch available here).
  std::string lut_gemv = "gemv_lut_q8/scalar/g3/r32/u1", lut_gemm = "gemm_lutv_q8/scalar/g3/r1/t16";
  for (const auto& e : lut_gemv_variants())
    if (e.runs_on(f) && e.rank > 0 && e.layout.g == 3) lut_gemv = e.name;
  for (const auto& e : lut_gemm_variants())
    if (e.runs_on(f) && e.rank > 0 && e.layout.kind == lut_kind::vector) lut_gemm = e.name;
  tuning_table t;
  t.fingerprint = cpu_fingerprint(f);
  t.entries.push_back({"gemv", M, K, 1, lut_gemv, 0.0});
  t.entries.push_back({"gemm", M, K, 128, lut_gemm, 0.0});
  const tuned_matrix tm(tw, t, ks, f);
  EXPECT_EQ(tm.gemv_name(), lut_gemv);
  EXPECT_EQ(tm.gemm_name(), lut_gemm);
  std::vector<float> y1(M), yN(static_cast<std::size_t>(M * N));
  tm.gemv(X, 3, y1.data(), 0, M / 2);
  tm.gemv(X, 3, y1.data(), M / 2, M);
  tm.gemm(X, yN.data(), M, 0, M);
  EXPECT_EQ(y1, want1);
  EXPECT_EQ(yN, wantN);

  // Untuned shape: the host's defaults. Per-block scales: a LUT pick falls back to MAD.
  const tuned_matrix dflt(tw, tuning_table{}, ks, f);
  EXPECT_EQ(dflt.gemv_name(), ks.gemv.name);
  EXPECT_EQ(dflt.gemm_name(), ks.gemm.name);
  ternary_weights blocks = tw;
  blocks.block_scales.assign(static_cast<std::size_t>(M * K / 256), 0.5f);
  const tuned_matrix fb(blocks, t, ks, f);
  EXPECT_EQ(fb.gemv_name(), ks.gemv.name);
}

TEST(Tuning, SelectTunedKernelsFromEnvironment) {
  const auto f = cpu_features::detect();
  const std::int64_t K = 520, M = 300;
  tuning_table t;
  t.fingerprint = cpu_fingerprint(f);
  t.entries.push_back({"gemv", M, K, 1, "gemv_lut_q8/scalar/g2/r32/u1", 0.0});
  const auto path = temp_path("env");
  write_file(path, t.to_text());
  ::setenv("BITNET_TUNING", path.c_str(), 1);
  auto tk = select_tuned_kernels_from_env();
  EXPECT_TRUE(tk.warning.empty()) << tk.warning;
  ASSERT_EQ(tk.table.entries.size(), 1u);
  ternary_weights tw{K, M, test::random_ternary(static_cast<std::size_t>(K * M), 9), 0.5f, {}};
  const auto tm = tk.prepare(tw);
  EXPECT_EQ(tm.gemv_name(), "gemv_lut_q8/scalar/g2/r32/u1");
  EXPECT_EQ(tm.gemm_name(), tk.defaults.gemm.name);
  // An explicit kernel name wins over the file, with a warning.
  ::setenv("BITNET_GEMV", std::string(default_gemv_name("scalar")).c_str(), 1);
  tk = select_tuned_kernels_from_env();
  EXPECT_NE(tk.warning.find("take precedence"), std::string::npos) << tk.warning;
  EXPECT_TRUE(tk.table.empty());
  ::unsetenv("BITNET_GEMV");
  // A capped CPU (BITNET_ARCH) is another fingerprint unless the file was tuned capped.
  if (arch_available<arch::avx2>()) {
    ::setenv("BITNET_ARCH", "scalar", 1);
    tk = select_tuned_kernels_from_env();
    EXPECT_NE(tk.warning.find("another CPU"), std::string::npos) << tk.warning;
    ::unsetenv("BITNET_ARCH");
  }
  ::setenv("BITNET_TUNING", temp_path("missing").c_str(), 1);
  tk = select_tuned_kernels_from_env();
  EXPECT_NE(tk.warning.find("cannot open"), std::string::npos);
  EXPECT_EQ(tk.defaults.gemv.name, select_kernels(f).gemv.name);
  ::unsetenv("BITNET_TUNING");
  std::remove(path.c_str());
}
