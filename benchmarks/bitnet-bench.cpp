// bitnet-bench - end-to-end speed of the runner, in the spirit of llama-bench.
//
// For every (model, thread count, test) it times the runner's own session::eval():
//   ppN  prefill N tokens from an empty context (logits of the last position only)
//   tgN  decode N tokens one at a time from an empty context
// and prints tok/s (median of -r repetitions, with min..max), the bytes streamed per second,
// and, for decode, the fraction of the memory roofline. The roofline is the read bandwidth
// measured in the same run, right before each timed decode repetition (median; bench_common.hpp's
// chunked read through 1.25 GiB, on 1 thread; for T threads the same chunks split in T parts
// read at once) divided by the bytes
// one decoded token streams: every ternary weight as repacked, every row of the output head
// in its own type, and the KV cache rows attention reads (mean over the test's positions).
// Prefill rows show the weights streamed once per n_batch chunk (GB/s) and no roofline (it
// is compute-bound).
//
// Synthetic models (--synth) are written once with tools/convert.hpp's synth logic and cached
// next to this binary (synth-cache/), so later runs only mmap them.
// Table (or --json) on stdout; progress on stderr.

#include <sys/resource.h>  // getrusage: CPU time per test (how much of the cores the run got)

#include <algorithm>  // std::sort, std::max
#include <chrono>     // timing
#include <cstdint>    // fixed-width integers
#include <cstdio>     // output
#include <cstdlib>    // std::getenv
#include <exception>  // top-level handler
#include <filesystem> // the synth cache
#include <fstream>    // /proc/self/statm
#include <optional>   // the per-test bandwidth buffer
#include <string>     // arguments
#include <vector>     // lists

#include <bitnet/bitnet.hpp>
#include <bitnet/gguf.hpp>

#include <bitnet/runner/runner.hpp>

#include "bench_common.hpp"
#include "convert.hpp"

namespace {

namespace br = bitnet::run;
namespace cv = bitnet::convert;

constexpr const char* kHelp =
    "usage: bitnet-bench (-m MODEL.gguf | --synth SHAPE) [options]\n"
    "\n"
    "Times the runner's prefill (ppN) and decode (tgN) and reports tok/s, GB/s and, for decode,\n"
    "the fraction of the memory roofline (read bandwidth measured in this run / bytes per token).\n"
    "\n"
    "  -m, --model FILE      a BitNet GGUF (I2_S / TQ2_0 / TQ1_0)\n"
    "  --synth SHAPE         a synthetic model of a real shape, written once into synth-cache/\n"
    "                        next to this binary: 2b4t, large, 3b, 8b, falcon3-1b, falcon3-3b,\n"
    "                        llama3-8b (or tiny); bitnet-convert synth --help lists them\n"
    "  --type LIST           ternary types for --synth: i2_s,tq2_0,tq1_0 (default i2_s)\n"
    "  --head-type LIST      head types for --synth: f16,q8_0,q6_k (default q6_k)\n"
    "  -p, --n-prompt LIST   prefill tests, tokens (default 128; 0 = none)\n"
    "  -n, --n-gen LIST      decode tests, tokens (default 128; 0 = none)\n"
    "  -t, --threads LIST    thread counts (default 1,2)\n"
    "  -r, --repetitions N   timed repetitions per test, after one warm-up (default 3)\n"
    "  -b, --batch N         prefill chunk (session n_batch; default 128)\n"
    "  --kv-type f32|f16     KV cache element type (default f32)\n"
    "  --tuning FILE         a bitnet-tune file: LUT kernels where it picks them (default\n"
    "                        $BITNET_TUNING, else none); BITNET_ARCH/GEMV/GEMM apply as usual\n"
    "  --no-lut              keep the 2-bit t2 kernels on CPUs whose default is the 1.67-bit\n"
    "                        dot LUT (AVX-512 VNNI + VBMI)\n"
    "  --json                one JSON object on stdout instead of the table\n"
    "  -h, --help            this text\n"
    "LIST is comma-separated, e.g. -t 1,2 -p 128,512.\n";

struct usage_error {
  std::string msg;
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> v;
  std::size_t b = 0;
  for (;;) {
    const std::size_t e = s.find(',', b);
    v.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return v;
}

std::vector<int> int_list(const std::string& flag, const std::string& s, int lo, int hi) {
  std::vector<int> v;
  for (const auto& x : split_list(s)) {
    std::size_t used = 0;
    int n = 0;
    try {
      n = std::stoi(x, &used);
    } catch (...) {
      used = 0;
    }
    if (used != x.size() || x.empty() || n < lo || n > hi)
      throw usage_error{flag + ": '" + x + "' is not an integer in " + std::to_string(lo) + " .. " + std::to_string(hi)};
    v.push_back(n);
  }
  return v;
}

bitnet::tensor_type type_arg(const std::string& flag, const std::string& s, bool head) {
  using bitnet::tensor_type;
  if (!head && s == "i2_s") return tensor_type::i2_s;
  if (!head && s == "tq2_0") return tensor_type::tq2_0;
  if (!head && s == "tq1_0") return tensor_type::tq1_0;
  if (head && s == "f16") return tensor_type::f16;
  if (head && s == "q8_0") return tensor_type::q8_0;
  if (head && s == "q6_k") return tensor_type::q6_k;
  throw usage_error{flag + ": '" + s + "', expected " + (head ? "f16, q8_0 or q6_k" : "i2_s, tq2_0 or tq1_0")};
}

struct options {
  std::vector<std::string> models;
  std::string synth;
  std::vector<std::string> types{"i2_s"}, heads{"q6_k"};
  std::vector<int> pp{128}, tg{128}, threads{1, 2};
  int reps = 3, n_batch = 128;
  std::string tuning;  // --tuning / BITNET_TUNING
  bool json = false, kv_f16 = false, no_lut = false;
};

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Read bandwidth with nt threads (bench_common.hpp's measure_read_bandwidth for nt = 1, on one
// shared buffer): each 4 MiB chunk of the 1.25 GiB region is split in nt parts
// read at once (the decode's row split); median over chunks of chunk bytes / wall time.
double read_bandwidth(br::thread_pool& pool, const bitnet::bench::read_buffer& buf) {
  const std::size_t chunk = std::size_t{4} << 20, n = buf.bytes() / chunk;
  std::vector<double> r;
  std::vector<std::uint64_t> sink(static_cast<std::size_t>(pool.size()) * 8);
  for (int pass = 0; pass < 2; ++pass)
    for (std::size_t i = 0; i < n; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      pool.run([&](int t, int nt) {
        const std::size_t part = chunk / static_cast<std::size_t>(nt) / 64 * 64;
        const std::size_t off = i * chunk + part * static_cast<std::size_t>(t);
        const std::size_t len = t == nt - 1 ? chunk - part * static_cast<std::size_t>(t) : part;
        sink[static_cast<std::size_t>(t) * 8] += buf.sum(off, len);
      });
      r.push_back(static_cast<double>(chunk) / seconds_since(t0));
    }
  benchmark::DoNotOptimize(sink.data());
  std::sort(r.begin(), r.end());
  return r[r.size() / 2];
}

struct stats {
  double median = 0, lo = 0, hi = 0;
};
stats summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

struct row {
  std::string model, ternary, head, weights, test;  // weights: the layout decode reads
  double size_gib = 0;
  int threads = 0, n = 0;
  bool decode = false;
  stats tps;
  double cpu_frac = 0;  // process CPU time / (wall time x threads) over the timed repetitions
  double gbps = 0, roofline_tps = 0, frac = 0, bytes_per_token = 0, bw = 0, rss_mib = 0, kv_mib = 0;
};

// Resident set now (MiB): the model's mapped pages that were touched, the repacked weights,
// the session; read while the model is loaded (the bandwidth buffer is freed by then).
double rss_mib() {
  std::ifstream f("/proc/self/statm");
  double size = 0, resident = 0;
  if (!(f >> size >> resident)) return 0;
  return resident * 4096.0 / (1 << 20);
}

std::string cache_path(const std::string& exe, const std::string& shape, const std::string& type,
                       const std::string& head) {
  std::filesystem::path dir = std::filesystem::absolute(std::filesystem::path(exe)).parent_path() / "synth-cache";
  std::filesystem::create_directories(dir);
  return (dir / ("synth-" + shape + "-" + type + "-" + head + ".gguf")).string();
}

std::string ensure_synth(const std::string& exe, const std::string& shape, const std::string& type,
                         const std::string& head) {
  const std::string path = cache_path(exe, shape, type, head);
  if (std::filesystem::exists(path)) return path;
  cv::synth_options o;
  o.shape = shape;
  o.type = type_arg("--type", type, false);
  o.head = type_arg("--head-type", head, true);
  std::fprintf(stderr, "bitnet-bench: writing synthetic model %s (once)\n", path.c_str());
  const auto t0 = std::chrono::steady_clock::now();
  const bitnet::gguf::writer g = cv::build_synth(o);
  g.write(path);  // through PATH.tmp, renamed when complete
  std::fprintf(stderr, "bitnet-bench: wrote %s in %.1f s\n", path.c_str(), seconds_since(t0));
  return path;
}

// Bytes one decoded token at position p streams: ternary weights as repacked, the whole head,
// and the K and V rows of positions 0 .. p in every layer.
double kv_bytes_read(const br::config& c, double positions, bool f16) {
  return 2.0 * static_cast<double>(c.n_layer * c.n_embd_kv()) * (f16 ? 2.0 : 4.0) * positions;
}

void run_model(const options& o, const std::string& path, const std::vector<double>& bw, std::vector<row>& out) {
  for (std::size_t ti = 0; ti < o.threads.size(); ++ti) {
    const int nt = o.threads[ti];
    br::thread_pool pool(nt);
    std::fprintf(stderr, "bitnet-bench: loading %s (%d thread%s)\n", path.c_str(), nt, nt == 1 ? "" : "s");
    br::load_options lo;
    lo.kernels = bitnet::kernel_options::from_env();
    lo.tuning = o.tuning;
    lo.tuning_batch = o.n_batch;
    lo.default_luts = !o.no_lut;
    const auto tl = std::chrono::steady_clock::now();
    const br::model m = br::model::open(path, lo, pool);
    if (!m.tuning_warning().empty()) std::fprintf(stderr, "bitnet-bench: warning: %s\n", m.tuning_warning().c_str());
    const auto* lut = m.default_lut_pair();
    const br::model_info& info = m.info();
    std::fprintf(stderr, "bitnet-bench: loaded in %.1f s; gemv %s, gemm %s", seconds_since(tl),
                 lut ? lut->gemv.name.c_str() : m.kernels().gemv.name.c_str(),
                 lut ? lut->gemm.name.c_str() : m.kernels().gemm.name.c_str());
    if (lut && info.lut_copies < 7 * static_cast<std::size_t>(m.cfg().n_layer))
      std::fprintf(stderr, " on %zu tensors (per-block scales: the rest on %s)", info.lut_copies,
                   m.kernels().gemv.name.c_str());
    else if (info.lut_copies > 0 && !lut)
      std::fprintf(stderr, "; tuning file: %zu LUT copies (%.0f MiB)", info.lut_copies,
                   static_cast<double>(info.lut_bytes) / (1 << 20));
    std::fprintf(stderr, "\n");
    const br::config& c = m.cfg();
    int max_pos = 1;
    for (int p : o.pp) max_pos = std::max(max_pos, p);
    for (int n : o.tg) max_pos = std::max(max_pos, n);
    br::session s(m, pool, max_pos, o.n_batch, o.kv_f16 ? br::kv_type::f16 : br::kv_type::f32);
    const auto& E = m.head();
    const double head_bytes = static_cast<double>(E.row_bytes) * static_cast<double>(E.rows);
    const double weights = static_cast<double>(m.decode_weight_bytes()) + head_bytes;
    const double file_gib = static_cast<double>(std::filesystem::file_size(path)) / (1 << 30);
    std::string head_name(bitnet::type_name(E.type));
    const std::string name = std::filesystem::path(path).stem().string();
    const std::string layout = info.lut_copies > 0 && !lut ? "tuned" : info.weights_layout;

    auto tokens = [&](int n) {
      std::vector<std::int32_t> t(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 7919 + 11) % c.n_vocab);
      return t;
    };
    auto one = [&](bool decode, int n) {
      const auto toks = tokens(n);
      s.reset();
      const auto t0 = std::chrono::steady_clock::now();
      if (decode) {
        for (int i = 0; i < n; ++i) s.eval(std::span<const std::int32_t>(toks.data() + i, 1));
      } else {
        s.eval(toks);
      }
      return seconds_since(t0);
    };
    for (int pass = 0; pass < 2; ++pass) {
      const bool decode = pass == 1;
      for (int n : decode ? o.tg : o.pp) {
        if (n == 0) continue;
        const std::string test = (decode ? "tg" : "pp") + std::to_string(n);
        std::fprintf(stderr, "bitnet-bench: %s t=%d %s: warm-up", name.c_str(), nt, test.c_str());
        one(decode, decode ? std::min(n, 16) : n);
        // Decode: the read bandwidth is measured again right before every timed repetition, with
        // this pool, and the roofline uses the median of those (next to the run-start figure,
        // it follows a shared host's memory bandwidth as it drifts during the run). The buffer
        // is freed before the RSS below is read.
        std::vector<double> tps, bws;
        std::optional<bitnet::bench::read_buffer> bwbuf;
        if (decode) bwbuf.emplace(bitnet::bench::kDramFootprint);
        double wall = 0, cpu = 0;
        for (int r = 0; r < o.reps; ++r) {
          std::fprintf(stderr, ", %d/%d", r + 1, o.reps);
          if (bwbuf) bws.push_back(read_bandwidth(pool, *bwbuf));
          const double cpu0 = cpu_seconds();
          const double sec = one(decode, n);
          cpu += cpu_seconds() - cpu0;
          wall += sec;
          tps.push_back(n / sec);
        }
        bwbuf.reset();
        std::fprintf(stderr, "\n");
        row w;
        w.model = name;
        w.ternary = info.ternary_types;
        w.head = head_name;
        w.weights = layout;
        w.size_gib = file_gib;
        w.threads = nt;
        w.n = n;
        w.test = test;
        w.decode = decode;
        w.tps = summarize(tps);
        w.cpu_frac = cpu / (wall * nt);
        w.bw = decode ? summarize(bws).median : bw[ti];
        w.rss_mib = rss_mib();
        w.kv_mib = static_cast<double>(s.kv_bytes()) / (1 << 20);
        if (decode) {
          w.bytes_per_token = weights + kv_bytes_read(c, (n - 1) / 2.0 + 1.0, o.kv_f16);
          w.gbps = w.tps.median * w.bytes_per_token / 1e9;
          w.roofline_tps = w.bw / w.bytes_per_token;
          w.frac = w.tps.median / w.roofline_tps;
        } else {
          const double chunks = (n + o.n_batch - 1) / o.n_batch;
          const double bytes = chunks * static_cast<double>(info.repacked_bytes + info.lut_bytes) + head_bytes +
                               kv_bytes_read(c, n / 2.0, o.kv_f16) * n;
          w.bytes_per_token = bytes / n;
          w.gbps = w.tps.median * w.bytes_per_token / 1e9;
        }
        out.push_back(w);
      }
    }
  }
}

int run(int argc, char** argv) {
  options o;
  bool have_p = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw usage_error{a + " needs a value"};
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    } else if (a == "-m" || a == "--model") {
      o.models.push_back(val());
    } else if (a == "--synth") {
      o.synth = val();
      if (!cv::find_synth_shape(o.synth))
        throw usage_error{"--synth '" + o.synth + "': expected one of " + cv::synth_shape_names()};
    } else if (a == "--type") {
      o.types = split_list(val());
      for (const auto& t : o.types) type_arg(a, t, false);
    } else if (a == "--head-type") {
      o.heads = split_list(val());
      for (const auto& t : o.heads) type_arg(a, t, true);
    } else if (a == "-p" || a == "--n-prompt") {
      o.pp = int_list(a, val(), 0, 1 << 16);
      have_p = true;
    } else if (a == "-n" || a == "--n-gen") {
      o.tg = int_list(a, val(), 0, 1 << 16);
    } else if (a == "-t" || a == "--threads") {
      o.threads = int_list(a, val(), 1, 256);
    } else if (a == "-r" || a == "--repetitions") {
      o.reps = int_list(a, val(), 1, 1000).at(0);
    } else if (a == "-b" || a == "--batch") {
      o.n_batch = int_list(a, val(), 1, 1 << 16).at(0);
    } else if (a == "--kv-type") {
      const std::string v = val();
      if (v != "f32" && v != "f16") throw usage_error{"--kv-type: '" + v + "', expected f32 or f16"};
      o.kv_f16 = v == "f16";
    } else if (a == "--tuning") {
      o.tuning = val();
    } else if (a == "--no-lut") {
      o.no_lut = true;
    } else if (a == "--json") {
      o.json = true;
    } else {
      throw usage_error{"unexpected argument '" + a + "'"};
    }
  }
  (void)have_p;
  if (o.tuning.empty())
    if (const char* t = std::getenv("BITNET_TUNING")) o.tuning = t;
  if (o.models.empty() == o.synth.empty()) throw usage_error{"give exactly one of -m MODEL and --synth SHAPE"};
  if (!o.synth.empty())
    for (const auto& t : o.types)
      for (const auto& h : o.heads) o.models.push_back(ensure_synth(argv[0], o.synth, t, h));

  // Read bandwidth per thread count, before any model is mapped (the 1.25 GiB buffer is freed).
  std::vector<double> bw;
  {
    std::fprintf(stderr, "bitnet-bench: measuring read bandwidth\n");
    const bitnet::bench::read_buffer buf(bitnet::bench::kDramFootprint);
    for (int nt : o.threads) {
      br::thread_pool pool(nt);
      bw.push_back(read_bandwidth(pool, buf));
    }
  }

  std::vector<row> rows;
  for (const auto& p : o.models) run_model(o, p, bw, rows);

  double peak_mib = 0;
  for (const row& r : rows) peak_mib = std::max(peak_mib, r.rss_mib);
  // The arch the runs used: the best for this CPU unless BITNET_ARCH / BITNET_GEMV / BITNET_GEMM say otherwise.
  const std::string arch(bitnet::select_kernels(bitnet::cpu_features::detect(), bitnet::kernel_options::from_env()).arch);

  if (o.json) {
    std::printf("{\"arch\": \"%s\", \"max_rss_mib\": %.1f, \"n_batch\": %d, \"kv_type\": \"%s\", \"results\": [", arch.c_str(),
                peak_mib, o.n_batch, o.kv_f16 ? "f16" : "f32");
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const row& r = rows[i];
      std::printf("%s\n  {\"model\": \"%s\", \"ternary\": \"%s\", \"head\": \"%s\", \"weights\": \"%s\", "
                  "\"size_gib\": %.3f, \"threads\": %d, "
                  "\"test\": \"%s\", \"tok_s\": %.3f, \"tok_s_min\": %.3f, \"tok_s_max\": %.3f, \"gb_s\": %.3f, "
                  "\"read_bw_gb_s\": %.3f, \"bytes_per_token\": %.0f, \"roofline_tok_s\": %.3f, "
                  "\"roofline_frac\": %.4f, \"rss_mib\": %.1f, \"kv_mib\": %.1f, \"cpu_frac\": %.3f}",
                  i ? "," : "", r.model.c_str(), r.ternary.c_str(), r.head.c_str(), r.weights.c_str(), r.size_gib,
                  r.threads, r.test.c_str(), r.tps.median, r.tps.lo, r.tps.hi, r.gbps, r.bw / 1e9, r.bytes_per_token,
                  r.decode ? r.roofline_tps : 0.0,
                  r.decode ? r.frac : 0.0, r.rss_mib, r.kv_mib, r.cpu_frac);
    }
    std::printf("\n]}\n");
    return 0;
  }
  std::printf("| %-28s | %-7s | %-4s | %-11s | %8s | %3s | %6s | %22s | %6s | %8s | %9s | %4s |\n", "model", "ternary",
              "head", "weights", "size", "thr", "test", "tok/s (median, min-max)", "GB/s", "read BW", "roofline",
              "cpu");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|------|\n", std::string(30, '-').c_str(), std::string(9, '-').c_str(),
              std::string(6, '-').c_str(), std::string(13, '-').c_str(), std::string(10, '-').c_str(),
              std::string(5, '-').c_str(),
              std::string(8, '-').c_str(), std::string(24, '-').c_str(), std::string(8, '-').c_str(),
              std::string(10, '-').c_str(), std::string(11, '-').c_str());
  for (const row& r : rows) {
    char tps[64], roof[32];
    std::snprintf(tps, sizeof tps, "%.2f (%.2f-%.2f)", r.tps.median, r.tps.lo, r.tps.hi);
    if (r.decode)
      std::snprintf(roof, sizeof roof, "%.1f%%", 100.0 * r.frac);
    else
      std::snprintf(roof, sizeof roof, "-");
    std::printf("| %-28s | %-7s | %-4s | %-11s | %4.2f GiB | %3d | %6s | %22s | %6.2f | %8.2f | %9s | %3.0f%% |\n",
                r.model.c_str(), r.ternary.c_str(), r.head.c_str(), r.weights.c_str(), r.size_gib, r.threads,
                r.test.c_str(), tps, r.gbps,
                r.bw / 1e9, roof, 100.0 * r.cpu_frac);
  }
  std::printf("\nkernels: %s; weights: the layout decode reads (t2/b<block>: 2 bits per weight; lutd/g3/r32: the\n"
              "1.67-bit dot LUT, the default with AVX-512 VBMI unless --no-lut; tuned: a tuning file's picks);\n"
              "read BW: GB/s with this many threads, for decode the median of one measurement\n"
              "right before each timed repetition, else at the start of the run; roofline: decode tok/s over\n"
              "read BW / bytes per token (repacked ternary weights + head + KV read); largest RSS with a\n"
              "model loaded %.0f MiB; prefill chunk %d, KV %s; cpu: process CPU time / (wall x threads)\n"
              "while timed (below 100%% = the threads were not running all the time)\n",
              arch.c_str(), peak_mib, o.n_batch, o.kv_f16 ? "f16" : "f32");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "bitnet-bench: %s\n(see --help)\n", e.msg.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bitnet-bench: error: %s\n", e.what());
    return 1;
  }
}
