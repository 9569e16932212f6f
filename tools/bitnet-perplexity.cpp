// bitnet-perplexity - teacher-forced evaluation of a BitNet GGUF model: perplexity over a text
// or a token-id sequence, saved logits, and KL divergence against saved logits.
//
//   bitnet-perplexity -m MODEL.gguf -f TEXT [-c CTX] [--stride S] [--chunks N] [-t THREADS] [--no-bos]
//   bitnet-perplexity -m MODEL.gguf --ids "1 403 407 ..." --save-logits base.bnlogits
//   bitnet-perplexity -m OTHER.gguf --kl-divergence base.bnlogits      (tokens from the file)
//
// Which positions are scored (windows), the estimator of the standard error and the logits
// file format: tools/perplexity.hpp and docs/perplexity.md. The model, tokenizer, session and
// thread pool are the runner component's (bitnet/runner).
//
// stdout: the results (or, with --json, one JSON object). stderr: progress with an ETA, notes,
// errors (one line, "bitnet-perplexity: error: ..."). Exit status: 0 ok, 1 error, 2 bad
// command line.
#include <algorithm>   // std::min, std::max
#include <chrono>      // timings, ETA
#include <cmath>       // std::isfinite, std::fabs, std::exp, std::sqrt
#include <cstdint>     // fixed-width integers
#include <cstdio>      // stdio
#include <exception>   // top-level handler
#include <filesystem>  // --save-logits vs --kl-divergence path check, --ids FILE
#include <fstream>     // -f, --ids FILE
#include <iterator>    // std::istreambuf_iterator
#include <memory>      // optional reader / writer
#include <optional>    // the tokenizer
#include <span>        // token spans
#include <sstream>     // JSON
#include <string>      // text
#include <string_view> // flags
#include <vector>      // ids, rows

#include <unistd.h>  // isatty: '\r' progress only on a terminal

#include <bitnet/runner/cli.hpp>
#include <bitnet/runner/runner.hpp>

#include "perplexity.hpp"

namespace {

namespace br = bitnet::run;
namespace tok = bitnet::tok;
namespace ppl = bitnet::ppl;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

class failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
[[noreturn]] void fail(const std::string& m) { throw failure(m); }

// ---------------------------------------------------------------- command line

using br::usage_error;
using br::cli::parse_int;

struct options {
  std::string model, text_file, ids, save_logits, kl_file;
  std::int64_t n_ctx = -1;   // -1 = default (the logits file's, else min(512, context_length)), 0 = context_length
  std::int64_t stride = 0;   // 0 = default (the logits file's, else n_ctx / 2)
  std::int64_t chunks = 0;   // 0 = all windows
  std::int64_t n_batch = 64;
  int threads = 0;
  bool no_bos = false, json = false, quiet = false, help = false;
  std::string kernel_arch, act = "per-token", kv_type = "f32";
};

using flag = br::cli::flag<options>;

const std::vector<flag>& flags() {
  static const std::vector<flag> f = {
      {"-m, --model", "PATH", "BitNet GGUF model file (required)",
       [](options& o, std::string_view, const std::string& v) { o.model = v; }},
      {"-f, --file", "PATH", "text file to score (UTF-8; tokenized with BOS unless --no-bos, special tokens not parsed) (default: none)",
       [](options& o, std::string_view, const std::string& v) { o.text_file = v; }},
      {"--ids", "FILE_OR_LIST",
       "score these token ids instead of a text: a list (\"1 403 407\", \"1,403,407\", \"[1, 403]\") or a file "
       "holding one; used as given (no BOS added) (default: none)",
       [](options& o, std::string_view, const std::string& v) { o.ids = v; }},
      {"-c, --ctx-size", "N",
       "window size in tokens, at most the model's context_length; 0 = context_length "
       "(default: the --kl-divergence file's, else min(512, context_length))",
       [](options& o, std::string_view n, const std::string& v) { o.n_ctx = parse_int(n, v, 0, INT32_MAX); }},
      {"--stride", "N",
       "tokens between the ends of consecutive windows; each later window scores only its last N targets, "
       "with at least CTX - N positions of context (default: the --kl-divergence file's, else CTX / 2)",
       [](options& o, std::string_view n, const std::string& v) { o.stride = parse_int(n, v, 1, INT32_MAX); }},
      {"--chunks", "N", "evaluate at most N windows; 0 = all (default: 0)",
       [](options& o, std::string_view n, const std::string& v) { o.chunks = parse_int(n, v, 0, INT32_MAX); }},
      {"-b, --batch-size", "N", "tokens per forward call (batched GEMM); results do not depend on it (default: 64)",
       [](options& o, std::string_view n, const std::string& v) { o.n_batch = parse_int(n, v, 1, 65536); }},
      {"-t, --threads", "N", "threads; results do not depend on it (default: the number of physical cores)",
       [](options& o, std::string_view n, const std::string& v) { o.threads = static_cast<int>(parse_int(n, v, 1, 1024)); }},
      {"--no-bos", "", "no BOS: neither in front of the text nor at the start of later windows (default: as the vocabulary says)",
       [](options& o, std::string_view, const std::string&) { o.no_bos = true; }},
      {"--save-logits", "FILE", "write the float32 logits of every scored position to FILE (format: docs/perplexity.md) (default: none)",
       [](options& o, std::string_view, const std::string& v) { o.save_logits = v; }},
      {"--kl-divergence", "FILE",
       "compare with logits saved by --save-logits: KL(base || this) mean and max, top-1 agreement, largest "
       "logit difference; without -f / --ids the file's tokens are scored (default: none)",
       [](options& o, std::string_view, const std::string& v) { o.kl_file = v; }},
      {"--json", "", "print the results as one JSON object on stdout (default: text)",
       [](options& o, std::string_view, const std::string&) { o.json = true; }},
      {"--kernel-arch", "NAME", "kernel arch: scalar, avx2, avx512bw, avx512vnni, neon64, neon64dp (default: $BITNET_ARCH, else the best this CPU runs)",
       [](options& o, std::string_view, const std::string& v) { o.kernel_arch = v; }},
      {"--kv-type", "TYPE",
       "KV cache element type: f32, or f16 (keys and values rounded to f16, as bitnet.cpp / llama.cpp keep them) "
       "(default: f32)",
       [](options& o, std::string_view n, const std::string& v) {
         if (v != "f32" && v != "f16") throw usage_error{std::string(n) + ": expected f32 or f16, got '" + v + "'"};
         o.kv_type = v;
       }},
      {"--act", "MODE", "ternary activation quantization: per-token (bitnet.cpp) or per-block (Q8_K, ggml's TQ) (default: per-token)",
       [](options& o, std::string_view n, const std::string& v) {
         if (v != "per-token" && v != "per-block")
           throw usage_error{std::string(n) + ": expected per-token or per-block, got '" + v + "'"};
         o.act = v;
       }},
      {"-q, --quiet", "", "no progress or notes on stderr; errors still go there (default: off)",
       [](options& o, std::string_view, const std::string&) { o.quiet = true; }},
      {"-h, --help", "", "this text", [](options& o, std::string_view, const std::string&) { o.help = true; }},
  };
  return f;
}

std::string help_text() {
  std::string s =
      "usage: bitnet-perplexity -m MODEL.gguf (-f TEXT | --ids IDS | --kl-divergence FILE) [options]\n"
      "\n"
      "Teacher-forced evaluation of a BitNet GGUF model: perplexity over a text or token ids,\n"
      "optionally saving the logits, or comparing them with saved ones (KL divergence).\n"
      "\n"
      "Scored positions: the tokens are split into windows of at most CTX tokens. The first window\n"
      "scores every target in it (token 1 onward, each with all tokens before it as context). Each\n"
      "later window ends STRIDE tokens after the previous one, starts CTX tokens before its end, has\n"
      "BOS in its first position (unless --no-bos), and scores only its last STRIDE targets, each with\n"
      "at least CTX - STRIDE positions of context. Every token but the first is scored exactly once.\n"
      "\n"
      "PPL = exp(mean NLL) over the scored positions; +/- is its standard error by the delta method,\n"
      "PPL * sd(NLL) / sqrt(n), which treats positions as independent (an underestimate for text).\n"
      "KL(base || this) is in nats, computed in double from log-softmax of both rows.\n"
      "\n"
      "options:\n";
  s += br::cli::options_help(flags());
  s +=
      "\n"
      "Output: results on stdout, progress with an ETA on stderr. Environment: BITNET_ARCH,\n"
      "BITNET_GEMV, BITNET_GEMM select kernels. Exit status: 0 ok, 1 error, 2 bad command line.\n";
  return s;
}

options parse_args(int argc, const char* const* argv) {
  options o;
  br::cli::parse_flags(argc, argv, flags(), o);
  if (o.help) return o;
  if (o.model.empty()) throw usage_error{"no model given (-m MODEL.gguf)"};
  if (!o.text_file.empty() && !o.ids.empty()) throw usage_error{"-f and --ids cannot be combined"};
  if (o.text_file.empty() && o.ids.empty() && o.kl_file.empty())
    throw usage_error{"nothing to score: give -f TEXT, --ids IDS or --kl-divergence FILE"};
  if (o.n_ctx == 1) throw usage_error{"-c: a window needs at least 2 tokens"};
  if (!o.save_logits.empty() && !o.kl_file.empty()) {
    std::error_code ec;
    if (o.save_logits == o.kl_file || (std::filesystem::exists(o.save_logits, ec) &&
                                       std::filesystem::equivalent(o.save_logits, o.kl_file, ec)))
      throw usage_error{"--save-logits and --kl-divergence name the same file"};
  }
  return o;
}

// ---------------------------------------------------------------- output helpers

std::string json_string(std::string_view s) {
  std::string o = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      o += '\\';
      o += ch;
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o += ch;
    }
  }
  return o + "\"";
}

// Round-trip precision; NaN / inf (e.g. the standard error of one position) become null.
std::string json_num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
std::string json_ms(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", std::isfinite(v) ? v : 0.0);
  return buf;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string duration(double s) {
  char buf[64];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.0f s", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s / 3600), static_cast<int>(s / 60) % 60);
  }
  return buf;
}

// '\r' updates on a terminal, otherwise a line at most every 2 seconds.
class progress {
 public:
  progress(bool quiet, std::int64_t total, std::size_t windows)
      : on_(!quiet), tty_(isatty(2) != 0), total_(total), windows_(windows), t0_(clock_type::now()), last_(t0_) {}

  void update(std::int64_t done, std::size_t window, const ppl::running_stats& nll) {
    if (!on_) return;
    const auto now = clock_type::now();
    const bool end = done >= total_;
    if (!tty_ && !end && now - last_ < std::chrono::seconds(2)) return;
    if (!tty_ && end && !printed_) return;  // a short run needs no progress lines
    last_ = now;
    const double el = std::chrono::duration<double>(now - t0_).count();
    const double rate = el > 0 ? static_cast<double>(done) / el : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0.0;
    std::fprintf(stderr, "%sbitnet-perplexity: window %zu/%zu, %lld/%lld tokens (%.0f%%), PPL %.4f, %.1f tok/s, %s %s%s",
                 tty_ ? "\r" : "", window, windows_, static_cast<long long>(done), static_cast<long long>(total_),
                 total_ ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 100.0, std::exp(nll.mean), rate,
                 end ? "took" : "ETA", duration(end ? el : eta).c_str(), tty_ && !end ? "   " : "\n");
    std::fflush(stderr);
    printed_ = true;
  }

 private:
  bool on_, tty_;
  std::int64_t total_;
  std::size_t windows_;
  clock_type::time_point t0_, last_;
  bool printed_ = false;
};

// ---------------------------------------------------------------- inputs

std::string read_file(const std::string& path, const char* what) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) fail(path + ": no such " + what + " (or not a regular file)");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path + ": cannot read the " + what);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// --ids: an existing file holding a list, else the list itself.
std::vector<std::int32_t> read_ids(const std::string& arg) {
  std::error_code ec;
  if (std::filesystem::exists(arg, ec)) return ppl::parse_ids(read_file(arg, "ids file"), arg);
  const bool list_like = arg.find_first_not_of("0123456789 \t\r\n,[]") == std::string::npos;
  if (!list_like) fail("--ids " + arg + ": no such file, and not a list of token ids");
  return ppl::parse_ids(arg, "--ids");
}

struct kl_result {
  ppl::running_stats kl, base_nll;
  std::int64_t agree = 0, n = 0;
  double max_diff = 0.0;
  std::int64_t max_diff_pos = -1;
  std::int32_t max_diff_tok = -1;
};

// ---------------------------------------------------------------- main flow

int run(const options& o) {
  const auto t_load = clock_type::now();
  const auto note = [&](const std::string& m) {
    if (!o.quiet) std::fprintf(stderr, "bitnet-perplexity: %s\n", m.c_str());
  };

  // The base logits first: a bad file fails before the model is loaded.
  std::unique_ptr<ppl::logits_reader> base;
  if (!o.kl_file.empty()) base = std::make_unique<ppl::logits_reader>(o.kl_file);

  br::model_file mf = br::model_file::open(o.model);
  const br::config cfg = mf.cfg();
  const tok::tokenizer& tk = mf.require_tokenizer();
  const auto n_vocab = static_cast<std::int64_t>(tk.n_vocab());
  const std::int32_t bos = !o.no_bos && tk.data().add_bos && tk.bos() >= 0 ? tk.bos() : -1;

  // The tokens.
  std::vector<std::int32_t> tokens;
  std::string source;
  if (!o.text_file.empty()) {
    source = "text";
    const std::string text = read_file(o.text_file, "text file");
    if (text.empty()) fail(o.text_file + ": the text is empty");
    try {
      tokens = tk.encode(text, !o.no_bos, false);
    } catch (const std::exception& e) {
      fail(o.text_file + ": " + e.what());
    }
    if (tokens.size() < 2)
      fail(o.text_file + ": the text gives " + std::to_string(tokens.size()) + " token" +
           (tokens.size() == 1 ? "" : "s") + (bos >= 0 ? " including BOS" : "") +
           "; at least 2 are needed to score one position");
  } else if (!o.ids.empty()) {
    source = "ids";
    tokens = read_ids(o.ids);
    for (std::size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] >= n_vocab)
        fail("--ids: id " + std::to_string(i) + " is " + std::to_string(tokens[i]) + ", outside the vocabulary of " +
             std::to_string(n_vocab) + " tokens");
    if (tokens.size() < 2)
      fail("--ids: " + std::to_string(tokens.size()) + " id" + (tokens.size() == 1 ? "" : "s") +
           "; at least 2 are needed to score one position");
  } else {
    source = "logits-file";
    tokens = base->tokens();
  }
  const auto N = static_cast<std::int64_t>(tokens.size());

  // Window size and stride.
  std::int64_t n_ctx = o.n_ctx;
  if (n_ctx < 0) n_ctx = base ? base->header().n_ctx : std::min<std::int64_t>(512, cfg.n_ctx_train);
  if (n_ctx == 0) n_ctx = cfg.n_ctx_train;
  if (n_ctx > cfg.n_ctx_train)
    fail((o.n_ctx >= 0 ? "-c " : "the logits file's context ") + std::to_string(n_ctx) + " is larger than " + o.model +
         "'s context_length " + std::to_string(cfg.n_ctx_train));
  const std::int64_t stride = o.stride > 0 ? o.stride : base ? base->header().stride : std::max<std::int64_t>(1, n_ctx / 2);
  std::vector<ppl::window> plan;
  try {
    plan = ppl::plan_windows(N, n_ctx, stride, bos >= 0, o.chunks);
  } catch (const ppl::error& e) {
    fail(e.what());
  }
  const std::int64_t n_used = plan.back().end, n_scored = n_used - 1;

  // The base file must describe this same evaluation.
  if (base) {
    const ppl::logits_header& h = base->header();
    const std::string& p = base->path();
    if (h.n_vocab != n_vocab)
      fail(p + ": logits for a vocabulary of " + std::to_string(h.n_vocab) + " tokens, " + o.model + " has " +
           std::to_string(n_vocab));
    if (h.n_ctx != n_ctx || h.stride != stride)
      fail(p + ": saved with windows of " + std::to_string(h.n_ctx) + " tokens and stride " + std::to_string(h.stride) +
           ", this run uses " + std::to_string(n_ctx) + " and " + std::to_string(stride) + " (give the same -c and --stride)");
    if (h.bos != bos)
      fail(p + ": saved with BOS id " + std::to_string(h.bos) + " at window starts, this run uses " + std::to_string(bos) +
           " (--no-bos, or another vocabulary)");
    const auto& bt = base->tokens();
    for (std::int64_t i = 0; i < std::min<std::int64_t>(n_used, static_cast<std::int64_t>(bt.size())); ++i)
      if (bt[static_cast<std::size_t>(i)] != tokens[static_cast<std::size_t>(i)])
        fail(p + ": another token sequence: token " + std::to_string(i) + " is " +
             std::to_string(bt[static_cast<std::size_t>(i)]) + " in the file, " +
             std::to_string(tokens[static_cast<std::size_t>(i)]) + " here");
    if (n_used > static_cast<std::int64_t>(bt.size()))
      fail(p + ": another token sequence: the file holds " + std::to_string(bt.size()) + " tokens, this run evaluates " +
           std::to_string(n_used));
    const auto file_plan = ppl::plan_windows(static_cast<std::int64_t>(bt.size()), n_ctx, stride, bos >= 0);
    for (std::size_t w = 0; w < plan.size(); ++w)
      if (w >= file_plan.size() || !(plan[w] == file_plan[w]))
        fail(p + ": another token sequence: it covers " + std::to_string(bt.size()) + " tokens, this run " +
             std::to_string(N) + ", so window " + std::to_string(w) + " differs");
    if (static_cast<std::int64_t>(h.n_positions) > n_scored)
      note("comparing the first " + std::to_string(n_scored) + " of the " + std::to_string(h.n_positions) +
           " positions in " + p);
  }

  // Model and state.
  const int threads = o.threads > 0 ? o.threads : br::physical_cores();
  br::thread_pool pool(threads);
  br::load_options lo;
  lo.kernels = bitnet::kernel_options::from_env();
  if (!o.kernel_arch.empty()) lo.kernels.arch = o.kernel_arch;
  lo.activations = o.act == "per-block" ? bitnet::act_quant::per_block : bitnet::act_quant::per_token;
  const br::model m = br::model::load(std::move(mf), lo, pool);
  for (const auto& w : m.info().warnings) note("warning: " + w);
  br::session sess(m, pool, n_ctx, o.n_batch, o.kv_type == "f16" ? br::kv_type::f16 : br::kv_type::f32);
  const double load_s = seconds_since(t_load);

  std::unique_ptr<ppl::logits_writer> writer;
  if (!o.save_logits.empty()) {
    ppl::logits_header h;
    h.n_vocab = static_cast<std::uint32_t>(n_vocab);
    h.n_ctx = static_cast<std::uint32_t>(n_ctx);
    h.stride = static_cast<std::uint32_t>(stride);
    h.bos = bos;
    h.n_tokens = static_cast<std::uint64_t>(n_used);
    h.n_positions = static_cast<std::uint64_t>(n_scored);
    writer = std::make_unique<ppl::logits_writer>(
        o.save_logits, h, std::vector<std::int32_t>(tokens.begin(), tokens.begin() + n_used));
  }

  std::int64_t total_eval = 0;
  for (const auto& w : plan) total_eval += w.evaluated();
  note(std::to_string(N) + " tokens (" + source + "), " + std::to_string(plan.size()) + " window" +
       (plan.size() == 1 ? "" : "s") + " of up to " + std::to_string(n_ctx) + " tokens, stride " +
       std::to_string(stride) + ", " + std::to_string(n_scored) + " scored positions, " +
       std::to_string(total_eval) + " tokens to evaluate, " + std::to_string(threads) + " threads");

  // Evaluation.
  ppl::running_stats nll;
  kl_result kl;
  std::vector<float> base_row(base ? static_cast<std::size_t>(n_vocab) : 0);
  std::vector<std::int32_t> buf;
  progress prog(o.quiet, total_eval, plan.size());
  std::int64_t done = 0;
  const auto t_eval = clock_type::now();
  for (std::size_t wi = 0; wi < plan.size(); ++wi) {
    const ppl::window& w = plan[wi];
    buf.assign(tokens.begin() + w.start, tokens.begin() + (w.end - 1));
    if (wi > 0 && bos >= 0) buf[0] = bos;
    sess.reset();
    const std::int64_t a = w.first_row(), len = w.evaluated();
    if (a > 0) {
      sess.eval(std::span<const std::int32_t>(buf.data(), static_cast<std::size_t>(a)));
      done += a;
    }
    for (std::int64_t p = a; p < len; p += sess.n_batch()) {
      const std::int64_t T = std::min(sess.n_batch(), len - p);
      const auto logits = sess.eval(std::span<const std::int32_t>(buf.data() + p, static_cast<std::size_t>(T)), true);
      for (std::int64_t r = 0; r < T; ++r) {
        const float* x = logits.data() + r * n_vocab;
        const std::int64_t pos = w.start + p + r;  // absolute position; its row predicts tokens[pos + 1]
        const std::int32_t target = tokens[static_cast<std::size_t>(pos + 1)];
        const ppl::row_summary s = ppl::summarize_row(x, n_vocab);
        if (!std::isfinite(s.lse)) fail(o.model + ": non-finite logits at position " + std::to_string(pos));
        nll.add(ppl::nll(x, s, target));
        if (writer) writer->write_row(x);
        if (base) {
          base->read_row(base_row.data());
          const ppl::row_summary sb = ppl::summarize_row(base_row.data(), n_vocab);
          kl.kl.add(ppl::kl_divergence(base_row.data(), sb, x, s, n_vocab));
          kl.base_nll.add(ppl::nll(base_row.data(), sb, target));
          kl.agree += sb.argmax == s.argmax;
          ++kl.n;
          for (std::int64_t v = 0; v < n_vocab; ++v) {
            const double d = std::fabs(static_cast<double>(x[v]) - static_cast<double>(base_row[static_cast<std::size_t>(v)]));
            if (d > kl.max_diff) {
              kl.max_diff = d;
              kl.max_diff_pos = pos;
              kl.max_diff_tok = static_cast<std::int32_t>(v);
            }
          }
        }
      }
      done += T;
      prog.update(done, wi + 1, nll);
    }
  }
  const double eval_s = seconds_since(t_eval);
  if (writer) writer->finish();

  // Results.
  const ppl::perplexity_estimate pe = ppl::perplexity(nll);
  const double tok_s = eval_s > 0 ? static_cast<double>(total_eval) / eval_s : 0.0;
  const double scored_s = eval_s > 0 ? static_cast<double>(n_scored) / eval_s : 0.0;
  if (o.json) {
    std::ostringstream j;
    j << "{\"model\":" << json_string(o.model) << ",\"arch\":" << json_string(m.cfg().arch)
      << ",\"ternary\":" << json_string(m.info().ternary_types)
      << ",\"head\":" << json_string(m.info().head_type) << ",\"source\":\"" << source << "\""
      << ",\"n_tokens\":" << N << ",\"n_ctx\":" << n_ctx << ",\"stride\":" << stride << ",\"bos\":" << bos
      << ",\"windows\":" << plan.size() << ",\"scored\":" << n_scored << ",\"nll_mean\":" << json_num(nll.mean)
      << ",\"nll_sd\":" << json_num(std::sqrt(nll.variance())) << ",\"ppl\":" << json_num(pe.ppl)
      << ",\"ppl_se\":" << json_num(pe.se) << ",\"timings\":{\"load_ms\":" << json_ms(load_s * 1e3)
      << ",\"eval_ms\":" << json_ms(eval_s * 1e3) << ",\"tokens_evaluated\":" << total_eval
      << ",\"tok_s\":" << json_ms(tok_s) << ",\"scored_per_s\":" << json_ms(scored_s) << "}"
      << ",\"threads\":" << threads << ",\"batch\":" << sess.n_batch()
      << ",\"kernels\":{\"gemv\":" << json_string(m.info().gemv)
      << ",\"gemm\":" << json_string(m.info().gemm) << ",\"head\":" << json_string(m.info().head_kernel)
      << ",\"activations\":" << json_string(o.act) << "},\"kv_type\":\"" << o.kv_type << "\""
      << ",\"save_logits\":" << (o.save_logits.empty() ? std::string("null") : json_string(o.save_logits));
    if (base) {
      j << ",\"kl\":{\"file\":" << json_string(base->path()) << ",\"positions\":" << kl.n
        << ",\"mean\":" << json_num(kl.kl.mean) << ",\"mean_se\":" << json_num(kl.kl.std_error())
        << ",\"max\":" << json_num(kl.kl.max) << ",\"max_position\":" << kl.kl.argmax
        << ",\"top1_agree\":" << kl.agree << ",\"top1_agree_pct\":"
        << json_num(100.0 * static_cast<double>(kl.agree) / static_cast<double>(kl.n))
        << ",\"max_abs_logit_diff\":" << json_num(kl.max_diff) << ",\"max_abs_logit_diff_position\":" << kl.max_diff_pos
        << ",\"max_abs_logit_diff_token\":" << kl.max_diff_tok << ",\"base_nll_mean\":" << json_num(kl.base_nll.mean)
        << ",\"base_ppl\":" << json_num(ppl::perplexity(kl.base_nll).ppl) << "}";
    }
    j << "}\n";
    std::fputs(j.str().c_str(), stdout);
    return 0;
  }
  std::printf("model        %s (%s, %s, head %s)\n", o.model.c_str(), m.cfg().arch.c_str(), m.info().ternary_types.c_str(),
              m.info().head_type.c_str());
  std::printf("scored       %lld positions of %lld tokens (%s), %zu window%s of up to %lld, stride %lld\n",
              static_cast<long long>(n_scored), static_cast<long long>(N), source.c_str(), plan.size(),
              plan.size() == 1 ? "" : "s", static_cast<long long>(n_ctx), static_cast<long long>(stride));
  std::printf("perplexity   %s +/- %s  (mean NLL %s nats, sd %s)\n", fmt("%.4f", pe.ppl).c_str(),
              fmt("%.4f", pe.se).c_str(), fmt("%.6f", nll.mean).c_str(), fmt("%.4f", std::sqrt(nll.variance())).c_str());
  std::printf("speed        %lld tokens evaluated in %.2f s: %.1f tok/s (%.1f scored positions/s), %d thread%s, load %.0f ms\n",
              static_cast<long long>(total_eval), eval_s, tok_s, scored_s, threads, threads == 1 ? "" : "s", load_s * 1e3);
  if (writer) std::printf("saved        %lld x %lld float32 logits to %s\n", static_cast<long long>(n_scored),
                          static_cast<long long>(n_vocab), o.save_logits.c_str());
  if (base) {
    std::printf("KL(base || this) against %s, %lld positions, nats:\n", base->path().c_str(), static_cast<long long>(kl.n));
    std::printf("  mean       %.6g +/- %.2g\n", kl.kl.mean, kl.kl.std_error());
    std::printf("  max        %.6g (position %lld)\n", kl.kl.max, static_cast<long long>(kl.kl.argmax));
    std::printf("  top-1      %.2f %% agree (%lld of %lld)\n", 100.0 * static_cast<double>(kl.agree) / static_cast<double>(kl.n),
                static_cast<long long>(kl.agree), static_cast<long long>(kl.n));
    std::printf("  max |logit difference| %.6g (position %lld, token %d)\n", kl.max_diff,
                static_cast<long long>(kl.max_diff_pos), kl.max_diff_tok);
    std::printf("  PPL        base %.4f, this %.4f\n", ppl::perplexity(kl.base_nll).ppl, pe.ppl);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  try {
    o = parse_args(argc, argv);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "bitnet-perplexity: error: %s (see --help)\n", e.msg.c_str());
    return 2;
  }
  if (o.help) {
    std::fputs(help_text().c_str(), stdout);
    return 0;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    for (char& ch : msg)
      if (ch == '\n') ch = ' ';
    std::fprintf(stderr, "bitnet-perplexity: error: %s\n", msg.c_str());
    return 1;
  }
}
