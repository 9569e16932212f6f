// bitnet/tuning.hpp - per-shape kernel choice (MAD t2 or LUT) from a tuning file.
//
// `bitnet-tune` times every applicable kernel on each layer shape and writes the
// winners; a host loads the file once and asks, per (op, M, K, batch), which kernel
// to run. Nothing here is global: the host holds the table.
//
// File format (text, UTF-8, lines end with '\n'; blank lines and lines starting with
// '#' are ignored anywhere after line 1):
//   line 1   bitnet-tuning 1                                      magic + format version
//   line 2   cpu <arch,arch,...> <CPU model string to end of line>    fingerprint
//   then     <op> <M> <K> <batch> <kernel> [<median_us>]             one per tuned case
// op is "gemv" or "gemm"; M rows, K inputs, batch the activation rows timed (1 for
// gemv); kernel a canonical name from dispatch.hpp or lut.hpp; median_us optional,
// informative. Fields are separated by spaces or tabs.
// The arch list is every arch this CPU runs (cpu_features::detect()), in the order of
// all_arch_names(); the model string is the CPUID brand string (x86) or the first
// "model name" / "CPU part" line of /proc/cpuinfo, with runs of spaces collapsed.
//
// load_tuning(path) returns the table, or an empty table and a warning when the file
// cannot be read, has another version (stale), another fingerprint (foreign), a
// malformed or duplicate line, or names a kernel this build lacks or this CPU cannot
// run (stale). The host prints the warning and goes on with its default kernels.
//
// pick(op, M, K, batch): the entry for (op, M, K) with the largest tuned batch <= batch,
// else the smallest tuned batch; nullptr when the shape was not tuned.
// Hosts: select_tuned_kernels(f, options, path) / select_tuned_kernels_from_env()
// (BITNET_TUNING) give dispatch's kernel_set plus the table; prepare(weights) returns a
// tuned_matrix running the picked kernels for that matrix's shape.
#pragma once

#include <algorithm>    // std::sort
#include <cstdint>      // fixed-width integers
#include <cstdio>       // std::snprintf
#include <cstdlib>      // std::getenv
#include <fstream>      // reading tuning files and /proc/cpuinfo
#include <optional>     // kernel lookup
#include <sstream>      // parsing lines
#include <stdexcept>    // errors
#include <string>       // names, text
#include <string_view>  // ops
#include <vector>       // entries

#include "dispatch.hpp"
#include "lut.hpp"

#if BITNET_X86
#include <cpuid.h>  // brand string
#endif

namespace bitnet {

inline constexpr int kTuningFormatVersion = 1;

namespace detail {
inline std::string collapse_spaces(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

inline std::string cpu_model_string() {
#if BITNET_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002u + i, &a, &b, &c, &d);
      const unsigned r[4] = {a, b, c, d};
      for (int j = 0; j < 4; ++j)
        for (int k = 0; k < 4; ++k) brand[16 * i + 4 * j + k] = static_cast<char>((r[j] >> (8 * k)) & 0xFF);
    }
    const std::string s = collapse_spaces(brand);
    if (!s.empty()) return s;
  }
#endif
  std::ifstream in("/proc/cpuinfo");
  std::string line, part;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = collapse_spaces(line.substr(0, colon)), value = collapse_spaces(line.substr(colon + 1));
    if (key == "model name" && !value.empty()) return value;
    if (key == "CPU part" && part.empty()) part = "CPU part " + value;
  }
  return part.empty() ? "unknown" : part;
}
}  // namespace detail

// "cpu <arches> <model>" for this CPU (the second line of a tuning file).
inline std::string cpu_fingerprint(const cpu_features& f) {
  std::string arches;
  for (auto n : all_arch_names()) {
    bool runs = false;
    if (n == arch::scalar::name) runs = true;
    if (n == arch::avx2::name) runs = arch_compiled<arch::avx2>() && f.avx2;
    if (n == arch::avx512bw::name) runs = arch_compiled<arch::avx512bw>() && f.avx512bw;
    if (n == arch::avx512vnni::name) runs = arch_compiled<arch::avx512vnni>() && f.avx512vnni;
    if (n == arch::neon64::name) runs = arch_compiled<arch::neon64>() && f.neon64;
    if (n == arch::neon64_dotprod::name) runs = arch_compiled<arch::neon64_dotprod>() && f.neon64 && f.dotprod;
    if (!runs) continue;
    if (!arches.empty()) arches += ',';
    arches += n;
  }
  return "cpu " + arches + " " + detail::cpu_model_string();
}

// A kernel of either family, found by its canonical name.
struct named_kernel {
  std::string name;
  bool lut = false;
  int block = 0;       // t2 layout block (MAD kernels)
  lut_layout layout;   // LUT layout (LUT kernels)
  gemv_fn mad_gemv = nullptr;
  gemm_fn mad_gemm = nullptr;
  lut_gemv_fn lut_gemv = nullptr;
  lut_gemm_fn lut_gemm = nullptr;
  bool is_gemv() const noexcept { return mad_gemv || lut_gemv; }
};

// The kernel called `name` if this build has it and this CPU runs it.
inline std::optional<named_kernel> find_kernel(std::string_view name, const cpu_features& f) {
  named_kernel k;
  k.name = std::string(name);
  for (const auto& e : gemv_variants())
    if (e.name == name && e.runs_on(f)) {
      k.block = e.block;
      k.mad_gemv = e.fn;
      return k;
    }
  for (const auto& e : gemm_variants())
    if (e.name == name && e.runs_on(f)) {
      k.block = e.block;
      k.mad_gemm = e.fn;
      return k;
    }
  k.lut = true;
  for (const auto& e : lut_gemv_variants())
    if (e.name == name && e.runs_on(f)) {
      k.layout = e.layout;
      k.lut_gemv = e.fn;
      return k;
    }
  for (const auto& e : lut_gemm_variants())
    if (e.name == name && e.runs_on(f)) {
      k.layout = e.layout;
      k.lut_gemm = e.fn;
      return k;
    }
  return std::nullopt;
}

struct tuning_entry {
  std::string op;  // "gemv" or "gemm"
  std::int64_t M = 0, K = 0, batch = 1;
  std::string kernel;
  double median_us = 0.0;  // 0 = not recorded
};

struct tuning_table {
  std::string fingerprint;  // "cpu ..." line
  std::vector<tuning_entry> entries;

  bool empty() const noexcept { return entries.empty(); }

  const tuning_entry* pick(std::string_view op, std::int64_t M, std::int64_t K, std::int64_t batch) const noexcept {
    const tuning_entry *below = nullptr, *smallest = nullptr;
    for (const auto& e : entries) {
      if (e.op != op || e.M != M || e.K != K) continue;
      if (e.batch <= batch && (!below || e.batch > below->batch)) below = &e;
      if (!smallest || e.batch < smallest->batch) smallest = &e;
    }
    return below ? below : smallest;
  }

  // The file text (entries sorted by op, M, K, batch).
  std::string to_text() const {
    std::vector<tuning_entry> v = entries;
    std::sort(v.begin(), v.end(), [](const tuning_entry& a, const tuning_entry& b) {
      if (a.op != b.op) return a.op > b.op;  // gemv first
      if (a.M != b.M) return a.M < b.M;
      if (a.K != b.K) return a.K < b.K;
      return a.batch < b.batch;
    });
    std::string s = "bitnet-tuning " + std::to_string(kTuningFormatVersion) + "\n" + fingerprint + "\n";
    s += "# op M K batch kernel median_us\n";
    for (const auto& e : v) {
      s += e.op + " " + std::to_string(e.M) + " " + std::to_string(e.K) + " " + std::to_string(e.batch) + " " + e.kernel;
      if (e.median_us > 0.0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, " %.1f", e.median_us);
        s += buf;
      }
      s += "\n";
    }
    return s;
  }
};

struct tuning_load_result {
  tuning_table table;   // empty when `warning` is set
  std::string warning;  // why the file was ignored; empty on success
  bool ok() const noexcept { return warning.empty(); }
};

namespace detail {
inline bool parse_positive(const std::string& s, std::int64_t& v) {
  if (s.empty() || s.size() > 12) return false;
  v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  return v > 0;
}
}  // namespace detail

// Parses tuning-file text; `source` names it in warnings.
inline tuning_load_result parse_tuning(const std::string& text, const std::string& source, const cpu_features& f) {
  tuning_load_result r;
  auto fail = [&](const std::string& why) {
    r.table = {};
    r.warning = "tuning file " + source + " ignored: " + why;
    return r;
  };
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line)) return fail("empty file");
  const std::string magic = detail::collapse_spaces(line);
  const std::string want_magic = "bitnet-tuning " + std::to_string(kTuningFormatVersion);
  if (magic.rfind("bitnet-tuning ", 0) != 0) return fail("not a bitnet tuning file (line 1 is not 'bitnet-tuning <version>')");
  if (magic != want_magic)
    return fail("stale format '" + magic + "', this build reads '" + want_magic + "'; re-run bitnet-tune");
  if (!std::getline(in, line)) return fail("no CPU fingerprint line");
  const std::string fp = detail::collapse_spaces(line), here = cpu_fingerprint(f);
  if (fp.rfind("cpu ", 0) != 0) return fail("line 2 is not a 'cpu ...' fingerprint");
  if (fp != here) return fail("made on another CPU ('" + fp + "'), this one is '" + here + "'; re-run bitnet-tune");
  r.table.fingerprint = fp;
  int lineno = 2;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string t = detail::collapse_spaces(line);
    if (t.empty() || t[0] == '#') continue;
    std::istringstream ls(t);
    std::vector<std::string> fields;
    for (std::string w; ls >> w;) fields.push_back(w);
    const std::string at = "line " + std::to_string(lineno) + ": ";
    if (fields.size() != 5 && fields.size() != 6)
      return fail(at + "expected '<op> <M> <K> <batch> <kernel> [median_us]', got '" + t + "'");
    tuning_entry e;
    e.op = fields[0];
    if (e.op != "gemv" && e.op != "gemm") return fail(at + "unknown op '" + e.op + "' (gemv or gemm)");
    if (!detail::parse_positive(fields[1], e.M) || !detail::parse_positive(fields[2], e.K) ||
        !detail::parse_positive(fields[3], e.batch))
      return fail(at + "M, K and batch must be positive integers");
    e.kernel = fields[4];
    if (fields.size() == 6) {
      std::istringstream ns(fields[5]);
      if (!(ns >> e.median_us) || !ns.eof() || !(e.median_us >= 0.0)) return fail(at + "bad median_us '" + fields[5] + "'");
    }
    const auto k = find_kernel(e.kernel, f);
    if (!k) return fail(at + "kernel '" + e.kernel + "' is not in this build or not runnable on this CPU (stale)");
    if (k->is_gemv() != (e.op == "gemv")) return fail(at + "kernel '" + e.kernel + "' is not a " + e.op + " kernel");
    for (const auto& o : r.table.entries)
      if (o.op == e.op && o.M == e.M && o.K == e.K && o.batch == e.batch) return fail(at + "duplicate entry");
    r.table.entries.push_back(std::move(e));
  }
  return r;
}

inline tuning_load_result load_tuning(const std::string& path, const cpu_features& f = cpu_features::detect()) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    tuning_load_result r;
    r.warning = "tuning file " + path + " ignored: cannot open it";
    return r;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_tuning(ss.str(), path, f);
}

// One weight matrix prepared for the kernels a tuning table picks for its shape:
// the GEMV pick for batch 1 and the GEMM pick for `gemm_batch`, each falling back to
// the host's kernel_set when the shape is untuned or the pick cannot take this
// matrix (LUT kernels need one per-tensor scale). Holds one repacked copy per
// distinct layout (at most two).
class tuned_matrix {
 public:
  tuned_matrix(const ternary_weights& w, const tuning_table& table, const kernel_set& fallback,
               const cpu_features& f = cpu_features::detect(), std::int64_t gemm_batch = 128)
      : M_(w.M), K_(w.K) {
    gemv_ = choose(table.pick("gemv", w.M, w.K, 1), w, f, fallback.gemv.name);
    gemm_ = choose(table.pick("gemm", w.M, w.K, gemm_batch), w, f, fallback.gemm.name);
    for (named_kernel* k : {&gemv_, &gemm_}) {
      if (k->lut) {
        if (!lut_ || !(lut_->layout == k->layout)) {
          if (lut_) lut2_ = repack_lut(w, k->layout);
          else lut_ = repack_lut(w, k->layout);
        }
      } else if (!t2_ || t2_->block != k->block) {
        if (t2_) t22_ = repack(w, k->block);
        else t2_ = repack(w, k->block);
      }
    }
  }

  const std::string& gemv_name() const noexcept { return gemv_.name; }
  const std::string& gemm_name() const noexcept { return gemm_.name; }
  std::int64_t rows() const noexcept { return M_; }
  std::int64_t cols() const noexcept { return K_; }

  void gemv(const activations& X, std::int64_t n, float* y, std::int64_t r0, std::int64_t r1) const {
    if (gemv_.lut)
      gemv_.lut_gemv(lut_for(gemv_.layout), X, n, y, r0, r1);
    else
      gemv_.mad_gemv(t2_for(gemv_.block), X, n, y, r0, r1);
  }
  void gemm(const activations& X, float* Y, std::int64_t ldy, std::int64_t r0, std::int64_t r1) const {
    if (gemm_.lut)
      gemm_.lut_gemm(lut_for(gemm_.layout), X, Y, ldy, r0, r1);
    else
      gemm_.mad_gemm(t2_for(gemm_.block), X, Y, ldy, r0, r1);
  }

 private:
  static named_kernel choose(const tuning_entry* e, const ternary_weights& w, const cpu_features& f,
                             const std::string& fallback) {
    if (e) {
      auto k = find_kernel(e->kernel, f);
      if (k && !(k->lut && !w.block_scales.empty())) return *k;
    }
    auto k = find_kernel(fallback, f);
    if (!k) throw std::invalid_argument("tuned_matrix: fallback kernel '" + fallback + "' is not runnable here");
    return *k;
  }
  const lut_matrix& lut_for(const lut_layout& L) const { return lut_->layout == L ? *lut_ : *lut2_; }
  const ternary_matrix& t2_for(int block) const { return t2_->block == block ? *t2_ : *t22_; }

  std::int64_t M_, K_;
  named_kernel gemv_, gemm_;
  std::optional<ternary_matrix> t2_, t22_;
  std::optional<lut_matrix> lut_, lut2_;
};

// What a tuning host holds: dispatch's kernel_set (unchanged behaviour, used for untuned
// shapes), the loaded table, and the reason a given file was ignored.
struct tuned_kernels {
  kernel_set defaults;
  tuning_table table;
  std::string warning;     // empty when no file was given or it loaded
  cpu_features features;   // the CPU as the kernels see it (capped by kernel_options::arch)
  tuned_matrix prepare(const ternary_weights& w, std::int64_t gemm_batch = 128) const {
    return tuned_matrix(w, table, defaults, features, gemm_batch);
  }
};

// select_kernels(f, o) plus the tuning file at `tuning_path` ("" = none). Explicit kernel
// names in `o` (BITNET_GEMV / BITNET_GEMM) win over a file, which is then not loaded; with
// `o.arch` (BITNET_ARCH) the CPU is capped, so only a file tuned with that cap matches.
inline tuned_kernels select_tuned_kernels(const cpu_features& f, const kernel_options& o,
                                          const std::string& tuning_path) {
  tuned_kernels t;
  t.features = o.arch.empty() || arch_rank(o.arch) < 0 ? f : f.capped(arch_rank(o.arch));
  t.defaults = select_kernels(f, o);
  if (tuning_path.empty()) return t;
  if (!o.gemv.empty() || !o.gemm.empty()) {
    t.warning = "tuning file " + tuning_path + " ignored: explicit GEMV/GEMM kernel names take precedence";
    return t;
  }
  auto r = load_tuning(tuning_path, t.features);
  t.table = std::move(r.table);
  t.warning = std::move(r.warning);
  return t;
}

// Detect the CPU, apply BITNET_ARCH / BITNET_GEMV / BITNET_GEMM, load BITNET_TUNING.
inline tuned_kernels select_tuned_kernels_from_env() {
  const char* p = std::getenv("BITNET_TUNING");
  return select_tuned_kernels(cpu_features::detect(), kernel_options::from_env(), p ? p : "");
}

}  // namespace bitnet
