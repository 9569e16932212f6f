// bitnet-tune - time every MAD (t2) and LUT kernel on each layer shape, write a tuning file.
//
//   bitnet-tune (--shape NAME[,NAME...] | -m MODEL.gguf) [-t THREADS] [--batch 1,128]
//               [-o FILE] [--plot FILE.svg] [--arch NAME] [--cache] [--min-time SEC]
//               [--filter TEXT] [--include-scalar] [--clock wall|cpu]
//
// For each distinct (M, K) and batch, every compiled variant this CPU runs is timed with
// THREADS threads splitting the rows (a barrier-synchronised pool; the main thread is one
// of them); outputs are checked bit for bit against dispatch's default kernel first. Batch
// 1 times GEMV kernels, larger batches GEMM kernels. GEMV weights stream from memory
// (rotating copies over 1 GiB, at most 4096, as in a decode step) unless --cache; GEMM
// reuses one copy.
// Results: a ranked table on stdout, the tuning file (tuning.hpp), an SVG bar chart.
// Progress goes to stderr. Exit codes: 0 ok, 1 failure, 2 usage error.
#include <bitnet/bitnet.hpp>
#include <bitnet/gguf.hpp>
#include <bitnet/lut.hpp>
#include <bitnet/tuning.hpp>

#include <algorithm>    // sorting
#include <barrier>      // the timing pool
#include <chrono>       // timing
#include <cmath>        // std::ceil, std::log10
#include <cstdint>      // fixed-width integers
#include <cstdio>       // output
#include <cstdlib>      // std::strtol
#include <cstring>      // std::memcmp
#include <exception>    // std::exception in main
#include <fstream>      // files
#include <functional>   // pool jobs
#include <map>          // layouts
#include <optional>     // reference outputs
#include <random>       // inputs
#include <string>       // names
#include <string_view>  // parsing
#include <thread>       // the timing pool
#include <time.h>       // clock_gettime(CLOCK_THREAD_CPUTIME_ID) for --clock cpu
#include <vector>       // everything

namespace {

using namespace bitnet;

struct usage_error {
  std::string msg;
};

constexpr const char* kHelp =
    "usage: bitnet-tune (--shape NAME[,NAME...] | -m MODEL.gguf) [options]\n"
    "\n"
    "Times every MAD (t2) and LUT kernel this build has and this CPU runs on each distinct\n"
    "ternary layer shape, prints a ranked table, writes a tuning file (see docs/lut.md) and\n"
    "optionally an SVG chart.\n"
    "\n"
    "  --shape NAME     2b4t, large, 3b, 8b, or MxK (rows x inputs, e.g. 2560x6912); comma list\n"
    "  -m FILE          every distinct shape of the ternary tensors of a GGUF model (timed on its weights)\n"
    "  -t N             threads splitting the rows of each call (default 1)\n"
    "  --batch LIST     activation rows to time, comma list (default 1,128); 1 = GEMV, more = GEMM\n"
    "  -o FILE          tuning file to write (default bitnet-tuning.txt)\n"
    "  --plot FILE      SVG bar chart of throughput per kernel and shape (default: none)\n"
    "  --arch NAME      only kernels of arches up to NAME (e.g. avx2 on an AVX-512 CPU); the\n"
    "                   file's fingerprint is then that of the capped CPU (BITNET_ARCH=NAME)\n"
    "  --cache          GEMV on one matrix reused (in cache) instead of streamed from memory\n"
    "  --min-time SEC   timing per kernel and case, at least 5 runs (default 0.3)\n"
    "  --clock wall|cpu wall time per call (default), or the slowest thread's CPU time per call\n"
    "                   (for machines shared with other jobs: time slices do not count)\n"
    "  --filter TEXT    only kernels whose name contains TEXT (the default kernels always run)\n"
    "  --include-scalar also time scalar kernels when a SIMD arch is available\n"
    "  --help           this text\n";

// ---------------------------------------------------------------- shapes

struct layer_shape {
  std::string label;
  std::int64_t M, K;
};

std::vector<layer_shape> named_shapes(const std::string& name) {
  if (name == "2b4t")  // BitNet-b1.58-2B-4T: d 2560, n_ff 6912, 5 KV heads of 128
    return {{"2b4t attn_q/o", 2560, 2560}, {"2b4t attn_k/v", 640, 2560}, {"2b4t ffn_gate/up", 6912, 2560},
            {"2b4t ffn_down", 2560, 6912}};
  if (name == "large")  // bitnet_b1_58-large: d 1536, n_ff 4096
    return {{"large attn", 1536, 1536}, {"large ffn_gate/up", 4096, 1536}, {"large ffn_down", 1536, 4096}};
  if (name == "3b")  // bitnet_b1_58-3B: d 3200, n_ff 8640
    return {{"3b attn", 3200, 3200}, {"3b ffn_gate/up", 8640, 3200}, {"3b ffn_down", 3200, 8640}};
  if (name == "8b")  // Llama3-8B-1.58: d 4096, n_ff 14336, 8 KV heads of 128
    return {{"8b attn_q/o", 4096, 4096}, {"8b attn_k/v", 1024, 4096}, {"8b ffn_gate/up", 14336, 4096},
            {"8b ffn_down", 4096, 14336}};
  const auto x = name.find('x');
  if (x != std::string::npos) {
    char* end = nullptr;
    const long m = std::strtol(name.c_str(), &end, 10);
    const long k = std::strtol(name.c_str() + x + 1, &end, 10);
    if (m > 0 && k > 0 && *end == '\0' && end != name.c_str() + x + 1)
      return {{name, static_cast<std::int64_t>(m), static_cast<std::int64_t>(k)}};
  }
  throw usage_error{"unknown shape '" + name + "' (2b4t, large, 3b, 8b or MxK)"};
}

struct model_shape {
  layer_shape shape;
  ternary_weights weights;  // the first tensor of this shape
};

std::vector<model_shape> model_shapes(const std::string& path) {
  const auto f = gguf::file::open(path);
  std::vector<model_shape> out;
  for (const auto& t : f.tensors()) {
    if (t.type != tensor_type::i2_s && t.type != tensor_type::tq2_0 && t.type != tensor_type::tq1_0) continue;
    const auto K = static_cast<std::int64_t>(t.ne[0]), M = static_cast<std::int64_t>(t.ne[1]);
    bool seen = false;
    for (const auto& s : out)
      if (s.shape.M == M && s.shape.K == K) seen = true;
    if (seen) continue;
    std::fprintf(stderr, "model: %s  %lld x %lld  (%s)\n", t.name.c_str(), static_cast<long long>(M),
                 static_cast<long long>(K), std::string(type_name(t.type)).c_str());
    out.push_back({{t.name, M, K}, unpack_ternary(t.type, t.bytes(), K, M)});
    if (!out.back().weights.block_scales.empty())
      std::fprintf(stderr, "model: %s has per-block scales; LUT kernels will be skipped for it\n", t.name.c_str());
  }
  if (out.empty()) throw std::runtime_error(path + ": no ternary (I2_S, TQ2_0, TQ1_0) tensors");
  return out;
}

// ---------------------------------------------------------------- kernels

struct kernel {
  named_kernel k;
  std::string_view arch;
  int rank = 0;
  std::string family() const {
    if (!k.lut) return "MAD t2";
    return k.layout.kind == lut_kind::vector ? "LUT vector" : (k.layout.kind == lut_kind::dot ? "LUT dot" : "LUT shuffle");
  }
  std::string layout_key() const { return k.lut ? k.layout.name() : "t2/b" + std::to_string(k.block); }
};

std::vector<kernel> all_kernels(const cpu_features& f, bool include_scalar) {
  bool simd = false;
  for (const auto& e : gemv_variants())
    if (e.runs_on(f) && e.rank > 0) simd = true;
  std::vector<kernel> v;
  auto add = [&](const std::string& name, std::string_view arch, int rank) {
    if (rank == 0 && simd && !include_scalar) return;
    if (auto k = find_kernel(name, f)) v.push_back({*k, arch, rank});
  };
  for (const auto& e : gemv_variants()) add(e.name, e.arch, e.rank);
  for (const auto& e : lut_gemv_variants()) add(e.name, e.arch, e.rank);
  for (const auto& e : gemm_variants()) add(e.name, e.arch, e.rank);
  for (const auto& e : lut_gemm_variants()) add(e.name, e.arch, e.rank);
  return v;
}

// ---------------------------------------------------------------- the timing pool

class pool {
 public:
  explicit pool(int n) : n_(n), start_(n), done_(n), cpu_(static_cast<std::size_t>(n)) {
    for (int i = 1; i < n; ++i)
      th_.emplace_back([this, i] {
        for (;;) {
          start_.arrive_and_wait();
          if (quit_) return;
          job_(i);
          done_.arrive_and_wait();
        }
      });
  }
  ~pool() {
    quit_ = true;
    start_.arrive_and_wait();
    for (auto& t : th_) t.join();
  }
  int size() const { return n_; }
  // Runs job(0..n-1) on all threads; returns the wall time in seconds, or with cpu_clock
  // the largest CPU time any thread spent in its job (insensitive to time slicing on a
  // shared machine; memory stalls still count).
  double run(const std::function<void(int)>& job, bool cpu_clock = false) {
    job_ = [&](int i) {
      const double c0 = thread_cpu_seconds();
      job(i);
      cpu_[static_cast<std::size_t>(i)] = thread_cpu_seconds() - c0;
    };
    const auto t0 = std::chrono::steady_clock::now();
    start_.arrive_and_wait();
    job_(0);
    done_.arrive_and_wait();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return cpu_clock ? *std::max_element(cpu_.begin(), cpu_.end()) : wall;
  }
  static double thread_cpu_seconds() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  }

 private:
  int n_;
  std::barrier<> start_, done_;
  std::function<void(int)> job_;
  std::vector<double> cpu_;
  bool quit_ = false;
  std::vector<std::thread> th_;
};

// Rows of thread i: split at multiples of 128 (whole LUT tiles and MAD row tiles).
std::pair<std::int64_t, std::int64_t> rows_of(int i, int n, std::int64_t M) {
  const std::int64_t units = (M + 127) / 128;
  const std::int64_t a = std::min(M, units * i / n * 128), b = i + 1 == n ? M : std::min(M, units * (i + 1) / n * 128);
  return {a, b};
}

struct result {
  std::string kernel, family, shape;
  std::int64_t M = 0, K = 0, batch = 1;
  double median_s = 0.0;
  bool is_default = false;
  double gws() const { return static_cast<double>(M * K * batch) / median_s / 1e9; }
};

// Weights in one kernel's layout; `copies` rotate through memory in the streaming mode.
struct prepared {
  std::vector<ternary_matrix> t2;
  std::vector<lut_matrix> lut;
  std::size_t bytes() const { return t2.empty() ? lut[0].packed_bytes() : t2[0].packed_bytes(); }
  std::size_t count() const { return t2.empty() ? lut.size() : t2.size(); }
};

prepared prepare(const kernel& k, const ternary_weights& w, bool stream) {
  prepared p;
  if (k.k.lut)
    p.lut.push_back(repack_lut(w, k.k.layout));
  else
    p.t2.push_back(repack(w, k.k.block));
  if (stream) {
    constexpr std::size_t kFootprint = std::size_t{1} << 30;
    const std::size_t n = std::clamp<std::size_t>((kFootprint + p.bytes() - 1) / p.bytes(), 2, 4096);
    for (std::size_t i = 1; i < n; ++i) {
      if (k.k.lut)
        p.lut.push_back(p.lut[0].clone());
      else
        p.t2.push_back(p.t2[0].clone());
    }
  }
  return p;
}

// One call of kernel k on copy c, rows [r0, r1).
void call(const kernel& k, const prepared& p, std::size_t c, const activations& X, float* Y, std::int64_t ldy,
          std::int64_t r0, std::int64_t r1) {
  if (k.k.lut_gemv) k.k.lut_gemv(p.lut[c], X, 0, Y, r0, r1);
  if (k.k.lut_gemm) k.k.lut_gemm(p.lut[c], X, Y, ldy, r0, r1);
  if (k.k.mad_gemv) k.k.mad_gemv(p.t2[c], X, 0, Y, r0, r1);
  if (k.k.mad_gemm) k.k.mad_gemm(p.t2[c], X, Y, ldy, r0, r1);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ---------------------------------------------------------------- output

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '&') o += "&amp;";
    else if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

// Grouped bars: one panel per batch, one group per shape, one bar per kernel (sorted by
// throughput), coloured by family, labelled with the kernel name and its G weights/s.
std::string svg_chart(const std::vector<result>& results, const std::vector<std::int64_t>& batches,
                      const std::string& title) {
  const int bar = 15, gap = 34, left = 70, panel_h = 300, label_h = 170, top = 90;
  struct group {
    std::string shape;
    std::vector<const result*> bars;
  };
  std::vector<std::vector<group>> panels;
  int width = 0;
  for (auto b : batches) {
    std::vector<group> gs;
    for (const auto& r : results) {
      if (r.batch != b) continue;
      auto it = std::find_if(gs.begin(), gs.end(), [&](const group& g) { return g.shape == r.shape; });
      if (it == gs.end()) {
        gs.push_back({r.shape, {}});
        it = gs.end() - 1;
      }
      it->bars.push_back(&r);
    }
    int w = left + 20;
    for (auto& g : gs) {
      std::sort(g.bars.begin(), g.bars.end(), [](const result* a, const result* c) { return a->gws() > c->gws(); });
      w += static_cast<int>(g.bars.size()) * bar + gap;
    }
    width = std::max(width, w);
    panels.push_back(std::move(gs));
  }
  width = std::max(width, 760);
  const int ph = panel_h + label_h + 60;
  const int height = top + ph * static_cast<int>(panels.size()) + 20;
  std::string s;
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) + "\" height=\"" +
       std::to_string(height) + "\" font-family=\"DejaVu Sans, Arial, sans-serif\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"10\" y=\"24\" font-size=\"18\" font-weight=\"bold\">bitnet-tune: throughput per kernel and "
       "layer shape</text>\n";
  s += "<text x=\"10\" y=\"44\" font-size=\"12\">" + xml_escape(title) + "</text>\n";
  struct fam {
    const char* name;
    const char* color;
  };
  const fam fams[] = {{"MAD t2", "#4C72B0"}, {"LUT shuffle", "#DD8452"}, {"LUT vector", "#55A868"}};
  int lx = 10;
  for (const auto& f : fams) {
    s += "<rect x=\"" + std::to_string(lx) + "\" y=\"56\" width=\"14\" height=\"14\" fill=\"" + f.color + "\"/>";
    s += "<text x=\"" + std::to_string(lx + 20) + "\" y=\"68\" font-size=\"13\">" + f.name + "</text>\n";
    lx += 130;
  }
  s += "<text x=\"10\" y=\"88\" font-size=\"12\">black outline: fastest per shape (the tuning-file pick); "
       "*: dispatch's default kernel</text>\n";
  for (std::size_t p = 0; p < panels.size(); ++p) {
    const int y0 = top + static_cast<int>(p) * ph + 30, base = y0 + panel_h;
    double vmax = 0.0;
    for (const auto& g : panels[p])
      for (const auto* r : g.bars) vmax = std::max(vmax, r->gws());
    if (vmax <= 0.0) continue;
    const double step = std::pow(10.0, std::floor(std::log10(vmax / 4)));
    const double tick = vmax / step > 20 ? 5 * step : (vmax / step > 8 ? 2 * step : step);
    const double ymax = std::ceil(vmax * 1.1 / tick) * tick;  // headroom for the value labels
    const std::int64_t b = batches[p];
    s += "<text x=\"" + std::to_string(left) + "\" y=\"" + std::to_string(y0 - 8) +
         "\" font-size=\"15\" font-weight=\"bold\">" + (b == 1 ? std::string("GEMV, batch 1") : "GEMM, batch " + std::to_string(b)) +
         " - G weights/s (higher is better)</text>\n";
    for (double v = 0; v <= ymax + 1e-9; v += tick) {
      const int y = base - static_cast<int>(v / ymax * panel_h);
      s += "<line x1=\"" + std::to_string(left) + "\" x2=\"" + std::to_string(width - 10) + "\" y1=\"" +
           std::to_string(y) + "\" y2=\"" + std::to_string(y) + "\" stroke=\"#ddd\"/>";
      s += "<text x=\"" + std::to_string(left - 6) + "\" y=\"" + std::to_string(y + 4) +
           "\" font-size=\"11\" text-anchor=\"end\">" + fmt("%g", v) + "</text>\n";
    }
    int x = left + 20;
    for (const auto& g : panels[p]) {
      const int gx = x;
      for (std::size_t i = 0; i < g.bars.size(); ++i) {
        const result* r = g.bars[i];
        const int h = static_cast<int>(r->gws() / ymax * panel_h);
        const char* color = r->family == "MAD t2" ? fams[0].color : (r->family == "LUT shuffle" ? fams[1].color : fams[2].color);
        s += "<rect x=\"" + std::to_string(x) + "\" y=\"" + std::to_string(base - h) + "\" width=\"" +
             std::to_string(bar - 2) + "\" height=\"" + std::to_string(h) + "\" fill=\"" + color + "\"" +
             (i == 0 ? " stroke=\"black\" stroke-width=\"2\"" : "") + "><title>" + xml_escape(r->kernel) + ": " +
             fmt("%.1f", r->gws()) + " G weights/s</title></rect>";
        // Kernel name, vertical, below the axis; value above the bar.
        std::string name = r->kernel.substr(r->kernel.find('_') + 1);  // drop "gemv_" / "gemm_"
        if (r->is_default) name += " *";
        const int tx = x + bar / 2 + 3;
        s += "<text transform=\"translate(" + std::to_string(tx) + "," + std::to_string(base + 6) +
             ") rotate(90)\" font-size=\"10\">" + xml_escape(name) + "</text>";
        s += "<text transform=\"translate(" + std::to_string(tx) + "," + std::to_string(base - h - 4) +
             ") rotate(-90)\" font-size=\"9\" fill=\"#333\">" + fmt("%.0f", r->gws()) + "</text>\n";
        x += bar;
      }
      s += "<text x=\"" + std::to_string((gx + x) / 2) + "\" y=\"" + std::to_string(base + label_h + 22) +
           "\" font-size=\"12\" font-weight=\"bold\" text-anchor=\"middle\">" + xml_escape(g.shape) + "</text>\n";
      s += "<line x1=\"" + std::to_string(gx) + "\" x2=\"" + std::to_string(x - 2) + "\" y1=\"" +
           std::to_string(base + label_h + 8) + "\" y2=\"" + std::to_string(base + label_h + 8) +
           "\" stroke=\"#999\"/>\n";
      x += gap;
    }
    s += "<line x1=\"" + std::to_string(left) + "\" x2=\"" + std::to_string(width - 10) + "\" y1=\"" +
         std::to_string(base) + "\" y2=\"" + std::to_string(base) + "\" stroke=\"black\"/>\n";
  }
  s += "</svg>\n";
  return s;
}

// ---------------------------------------------------------------- main

struct options {
  std::vector<std::string> shapes;
  std::string model, out = "bitnet-tuning.txt", plot, arch, filter;
  int threads = 1;
  std::vector<std::int64_t> batches{1, 128};
  bool cache = false, include_scalar = false, cpu_clock = false;
  double min_time = 0.3;
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> v;
  std::size_t a = 0;
  while (a <= s.size()) {
    const auto b = s.find(',', a);
    v.push_back(s.substr(a, b == std::string::npos ? std::string::npos : b - a));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  return v;
}

options parse(int argc, char** argv) {
  options o;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw usage_error{std::string(argv[i]) + " needs a value"};
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      std::exit(0);
    } else if (a == "--shape") {
      for (auto& s : split_commas(value(i))) o.shapes.push_back(s);
    } else if (a == "-m" || a == "--model") {
      o.model = value(i);
    } else if (a == "-t" || a == "--threads") {
      const std::string v = value(i);
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (*end != '\0' || n < 1 || n > 256) throw usage_error{"-t needs a thread count in [1, 256], got '" + v + "'"};
      o.threads = static_cast<int>(n);
    } else if (a == "--batch") {
      o.batches.clear();
      for (auto& s : split_commas(value(i))) {
        char* end = nullptr;
        const long n = std::strtol(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0' || n < 1 || n > 4096) throw usage_error{"--batch needs integers in [1, 4096], got '" + s + "'"};
        if (std::find(o.batches.begin(), o.batches.end(), n) == o.batches.end()) o.batches.push_back(n);
      }
      std::sort(o.batches.begin(), o.batches.end());
    } else if (a == "-o") {
      o.out = value(i);
    } else if (a == "--plot") {
      o.plot = value(i);
    } else if (a == "--arch") {
      o.arch = value(i);
      if (arch_rank(o.arch) < 0) throw usage_error{"unknown arch '" + o.arch + "'"};
    } else if (a == "--cache") {
      o.cache = true;
    } else if (a == "--clock") {
      const std::string v = value(i);
      if (v != "wall" && v != "cpu") throw usage_error{"--clock is wall or cpu, got '" + v + "'"};
      o.cpu_clock = v == "cpu";
    } else if (a == "--include-scalar") {
      o.include_scalar = true;
    } else if (a == "--filter") {
      o.filter = value(i);
    } else if (a == "--min-time") {
      const std::string v = value(i);
      char* end = nullptr;
      o.min_time = std::strtod(v.c_str(), &end);
      if (*end != '\0' || !(o.min_time > 0.0) || o.min_time > 60.0) throw usage_error{"--min-time needs seconds in (0, 60]"};
    } else {
      throw usage_error{"unknown argument '" + std::string(a) + "'"};
    }
  }
  if (o.shapes.empty() == o.model.empty()) throw usage_error{"give either --shape or -m"};
  return o;
}

int run(const options& o) {
  cpu_features f = cpu_features::detect();
  if (!o.arch.empty()) f = f.capped(arch_rank(o.arch));
  const kernel_set ks = select_kernels(f);
  const auto kernels = all_kernels(f, o.include_scalar);
  std::fprintf(stderr, "bitnet-tune: %s; %d thread%s; %zu kernels; defaults %s, %s\n", cpu_fingerprint(f).c_str(),
               o.threads, o.threads == 1 ? "" : "s", kernels.size(), ks.gemv.name.c_str(), ks.gemm.name.c_str());

  std::vector<model_shape> shapes;
  if (!o.model.empty()) {
    shapes = model_shapes(o.model);
  } else {
    for (const auto& n : o.shapes)
      for (const auto& s : named_shapes(n)) {
        bool seen = false;
        for (const auto& t : shapes)
          if (t.shape.M == s.M && t.shape.K == s.K) seen = true;
        if (seen) continue;
        std::mt19937 rng(static_cast<std::uint32_t>(s.M * 31 + s.K));
        std::uniform_int_distribution<int> d(0, 99), sg(0, 1);
        ternary_weights w{s.K, s.M, std::vector<std::int8_t>(static_cast<std::size_t>(s.M * s.K)), 0.02f, {}};
        for (auto& v : w.w) v = d(rng) < 34 ? 0 : (sg(rng) ? 1 : -1);
        shapes.push_back({s, std::move(w)});
      }
  }

  pool threads(o.threads);
  std::vector<result> results;
  std::vector<std::string> failures;
  std::size_t case_no = 0;
  const std::size_t ncases = shapes.size() * o.batches.size();
  for (const auto& ms : shapes) {
    const auto& s = ms.shape;
    const auto& w = ms.weights;
    const std::int64_t maxb = o.batches.back();
    std::vector<float> x(static_cast<std::size_t>(s.K * maxb));
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> ud(-2.0f, 2.0f);
    for (auto& v : x) v = ud(rng);
    for (std::int64_t batch : o.batches) {
      ++case_no;
      const bool gemv = batch == 1;
      activations X;
      X.quantize(x.data(), batch, s.K, s.K, act_quant::per_token);
      // Reference: dispatch's default kernel.
      std::vector<float> want(static_cast<std::size_t>(s.M * batch)), got(want.size());
      {
        const auto W = repack(w, ks.block());
        if (gemv)
          ks.gemv.fn(W, X, 0, want.data(), 0, s.M);
        else
          ks.gemm.fn(W, X, want.data(), s.M, 0, s.M);
      }
      // Candidates, grouped by layout so one set of streamed copies serves several kernels.
      std::vector<const kernel*> cand;
      for (const auto& k : kernels) {
        if (k.k.is_gemv() != gemv) continue;
        const bool dflt = k.k.name == (gemv ? ks.gemv.name : ks.gemm.name);
        if (!dflt && !o.filter.empty() && k.k.name.find(o.filter) == std::string::npos) continue;
        if (k.k.lut && !w.block_scales.empty()) continue;
        cand.push_back(&k);
      }
      // (std::sort with a full key: libstdc++'s stable_sort uses the deprecated get_temporary_buffer.)
      std::sort(cand.begin(), cand.end(), [](const kernel* a, const kernel* b) {
        return a->layout_key() != b->layout_key() ? a->layout_key() < b->layout_key() : a->k.name < b->k.name;
      });
      const bool stream = gemv && !o.cache;
      std::string key;
      prepared p;
      for (std::size_t ci = 0; ci < cand.size(); ++ci) {
        const kernel& k = *cand[ci];
        std::fprintf(stderr, "[%zu/%zu] %s %lldx%lld batch %lld: %zu/%zu %s", case_no, ncases, s.label.c_str(),
                     static_cast<long long>(s.M), static_cast<long long>(s.K), static_cast<long long>(batch), ci + 1,
                     cand.size(), k.k.name.c_str());
        if (k.layout_key() != key) {
          p = prepared{};
          p = prepare(k, w, stream);
          key = k.layout_key();
        }
        std::fill(got.begin(), got.end(), 0.0f);
        threads.run([&](int i) {
          const auto [r0, r1] = rows_of(i, threads.size(), s.M);
          call(k, p, 0, X, got.data(), s.M, r0, r1);
        });
        if (std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) != 0) {
          std::fprintf(stderr, "  DIFFERS from %s, skipped\n", (gemv ? ks.gemv.name : ks.gemm.name).c_str());
          failures.push_back(k.k.name + " on " + s.label);
          continue;
        }
        std::vector<double> times;
        double total = 0.0;
        std::size_t c = 0;
        while (times.size() < 5 || (total < o.min_time && times.size() < 100000)) {
          c = (c + 1) % p.count();
          const double t = threads.run(
              [&](int i) {
                const auto [r0, r1] = rows_of(i, threads.size(), s.M);
                call(k, p, c, X, got.data(), s.M, r0, r1);
              },
              o.cpu_clock);
          times.push_back(t);
          total += t;
        }
        result r;
        r.kernel = k.k.name;
        r.family = k.family();
        const std::string dims = std::to_string(s.M) + "x" + std::to_string(s.K);
        r.shape = s.label == dims ? dims : s.label + " " + dims;
        r.M = s.M;
        r.K = s.K;
        r.batch = batch;
        r.median_s = median(times);
        r.is_default = k.k.name == (gemv ? ks.gemv.name : ks.gemm.name);
        std::fprintf(stderr, "  %.1f us\n", r.median_s * 1e6);
        results.push_back(r);
      }
    }
  }

  // Ranked table and the tuning file.
  tuning_table table;
  table.fingerprint = cpu_fingerprint(f);
  std::printf("%-44s %-28s %6s %12s %10s %8s\n", "kernel", "shape", "batch", "median", "G w/s", "x best");
  for (const auto& ms : shapes)
    for (std::int64_t batch : o.batches) {
      std::vector<const result*> v;
      for (const auto& r : results)
        if (r.M == ms.shape.M && r.K == ms.shape.K && r.batch == batch) v.push_back(&r);
      if (v.empty()) continue;
      std::sort(v.begin(), v.end(), [](const result* a, const result* b) { return a->median_s < b->median_s; });
      const double best = v[0]->median_s;
      const result* best_mad = nullptr;
      const result* dflt = nullptr;
      for (const auto* r : v) {
        if (!best_mad && r->family == "MAD t2") best_mad = r;
        if (r->is_default) dflt = r;
        const std::string t = r->median_s < 1e-3 ? fmt("%.1f us", r->median_s * 1e6) : fmt("%.3f ms", r->median_s * 1e3);
        std::printf("%-44s %-28s %6lld %12s %10.1f %8.2f%s\n", r->kernel.c_str(), r->shape.c_str(),
                    static_cast<long long>(batch), t.c_str(), r->gws(), r->median_s / best, r->is_default ? "  (default)" : "");
      }
      std::printf("  -> pick %s: %.2fx the best MAD (%s), %.2fx the default (%s)\n\n", v[0]->kernel.c_str(),
                  best_mad ? best_mad->median_s / best : 0.0, best_mad ? best_mad->kernel.c_str() : "-",
                  dflt ? dflt->median_s / best : 0.0, dflt ? dflt->kernel.c_str() : "-");
      table.entries.push_back({batch == 1 ? "gemv" : "gemm", ms.shape.M, ms.shape.K, batch, v[0]->kernel, best * 1e6});
    }
  {
    std::ofstream out(o.out, std::ios::binary);
    out << table.to_text();
    if (!out) throw std::runtime_error("cannot write " + o.out);
  }
  const auto check = load_tuning(o.out, f);
  if (!check.ok()) throw std::runtime_error("the written file does not load back: " + check.warning);
  std::fprintf(stderr, "wrote %s (%zu entries)\n", o.out.c_str(), table.entries.size());
  if (!o.plot.empty()) {
    std::string title = cpu_fingerprint(f).substr(4) + "; " + std::to_string(o.threads) + " thread" +
                        (o.threads == 1 ? "" : "s") + (o.cache ? "; GEMV in cache" : "; GEMV weights streamed from memory") + "; GEMM in cache" +
                        (o.cpu_clock ? "; CPU time per call" : "; wall time per call");
    std::ofstream out(o.plot, std::ios::binary);
    out << svg_chart(results, o.batches, title);
    if (!out) throw std::runtime_error("cannot write " + o.plot);
    std::fprintf(stderr, "wrote %s\n", o.plot.c_str());
  }
  if (!failures.empty()) {
    std::fprintf(stderr, "bitnet-tune: %zu kernel(s) gave results different from the default and were skipped:\n",
                 failures.size());
    for (const auto& s : failures) std::fprintf(stderr, "  %s\n", s.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const usage_error& e) {
    std::fprintf(stderr, "bitnet-tune: %s\n\n%s", e.msg.c_str(), kHelp);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bitnet-tune: %s\n", e.what());
    return 1;
  }
}
