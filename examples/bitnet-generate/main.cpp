// bitnet-generate - text generation with a ternary GGUF model on the CPU.
//
// A thin program over the runner component (bitnet/runner/*.hpp): open the file and check the
// prompt (cheap), load the weights, then generate (runner::generate) with the text streamed to
// stdout, or chat (runner::conversation) turn by turn from stdin. The command line is
// options.hpp.
//
// stdout carries only the text (or, with --json, one JSON object); everything else, including
// the closing summary, goes to stderr. Exit status: 0 ok, 1 error, 2 bad command line.
// Context: a prompt longer than the context is an error (nothing is generated); generation
// that reaches the end of the context stops there with a note on stderr (stop reason
// "context_full" in --json) and exits 0.
#include <algorithm>  // std::min
#include <chrono>     // load time
#include <cmath>      // std::isfinite
#include <cstdint>    // fixed-width integers
#include <cstdio>     // stdio streams
#include <cstdlib>    // std::getenv (BITNET_TUNING)
#include <exception>  // top-level handler
#include <fstream>    // -f
#include <iostream>   // std::getline for chat turns
#include <iterator>   // std::istreambuf_iterator
#include <optional>   // the precise session
#include <random>     // std::random_device for the default seed
#include <sstream>    // JSON text
#include <stdexcept>  // std::runtime_error
#include <string>     // text
#include <vector>     // ids

#include <bitnet/runner/runner.hpp>

#include "options.hpp"

namespace {

namespace br = bitnet::run;
namespace tok = bitnet::tok;
namespace gen = bitnet::gen;
using clock_type = std::chrono::steady_clock;

double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

class run_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& m) { throw run_error(m); }

void out(std::string_view s) {
  if (s.empty()) return;
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// ---------------------------------------------------------------- JSON

std::string json_string(std::string_view s) {  // s is valid UTF-8 (stream_decoder output)
  std::string o = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += ch;
        }
    }
  }
  return o + "\"";
}

std::string json_ids(const std::vector<std::int32_t>& ids) {
  std::string o = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) o += ',';
    o += std::to_string(ids[i]);
  }
  return o + "]";
}

std::string json_num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", std::isfinite(v) ? v : 0.0);
  return buf;
}

// ---------------------------------------------------------------- running

struct stats {
  double load_ms = 0, prefill_ms = 0, decode_ms = 0;
  std::int64_t prefill_tokens = 0, decode_tokens = 0, generated = 0;
  void add(const br::generation& g) {
    prefill_ms += g.prefill_ms;
    decode_ms += g.decode_ms;
    prefill_tokens += g.prefill_tokens;
    decode_tokens += g.decode_tokens;
    generated += static_cast<std::int64_t>(g.ids.size());
  }
};

struct runner {
  const gen::options& opt;
  const br::model& m;
  br::session& sess;
  br::evaluator& seq;  // sess, or the --precise session
  const tok::tokenizer& tk;
  br::sampler& smp;
  stats st;
  bool precise;

  br::generation_params params() const {
    br::generation_params p;
    p.max_tokens = opt.n_predict;
    p.ignore_eos = opt.ignore_eos;
    return p;
  }
  void note_context_full() const {
    std::fprintf(stderr, "bitnet-generate: stopped: the context of %lld positions is full (raise -c)\n",
                 static_cast<long long>(sess.n_ctx()));
  }
};

// Plain completion: prefill the prompt, then stream (or collect, for --json) the continuation.
br::generation complete(runner& r, const std::vector<std::int32_t>& prompt_ids) {
  const gen::options& o = r.opt;
  tok::stream_decoder sd(r.tk);
  std::string prompt_text;
  for (const auto id : prompt_ids) prompt_text += sd.push(id);  // also primes the decoder's spacing
  if (!o.json && !o.no_echo) out(prompt_text);
  const br::generation g = br::generate(r.seq, r.smp, r.tk, prompt_ids, r.params(), [&](const br::generated_piece& p) {
    if (!o.json) out(p.text);
    return true;
  }, &sd);
  r.st.add(g);
  if (!o.json) out("\n");
  if (g.stop == br::stop_reason::context_full) r.note_context_full();
  return g;
}

// Chat: one user message per line of stdin (-p / -f, if given, is the first; an empty line is
// skipped, end of input ends the chat), in the model's chat format (runner chat.hpp). The KV
// cache carries the whole conversation; a turn that no longer fits ends the chat with a note.
int chat(runner& r, const std::string& first_message) {
  const gen::options& o = r.opt;
  br::conversation conv(br::chat_format::detect(r.m), o.system, !o.no_bos);
  br::generation_params params = r.params();
  params.stop = conv.format().stop_strings();
  const auto blank = [](const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; };
  std::string msg = first_message;
  for (bool have = !blank(msg);; have = false) {
    if (!have) {
      std::fputs("> ", stderr);
      std::fflush(stderr);
      if (!std::getline(std::cin, msg)) break;
      if (blank(msg)) continue;
    }
    if (const std::size_t bad = tok::detail::utf8_first_invalid(msg); bad != std::string::npos)
      fail("chat input is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
    const bool opening = conv.first();
    const std::vector<std::int32_t> turn = conv.next_turn(msg);
    if (r.sess.pos() + static_cast<std::int64_t>(turn.size()) > r.sess.n_ctx()) {
      if (opening)
        fail("the first chat turn is " + std::to_string(turn.size()) + " tokens but the context holds " +
             std::to_string(r.sess.n_ctx()) + " positions (-c)");
      r.note_context_full();
      break;
    }
    const br::generation g = br::generate(r.seq, r.smp, r.tk, turn, params, [](const br::generated_piece& p) {
      out(p.text);
      return true;
    });
    r.st.add(g);
    out("\n");
    if (g.stop == br::stop_reason::context_full) {
      r.note_context_full();
      break;
    }
    conv.reply_done(g);
  }
  return 0;
}

// ---------------------------------------------------------------- summary

double per_s(std::int64_t n, double ms) { return ms > 0 ? 1000.0 * static_cast<double>(n) / ms : 0.0; }

void print_summary(const runner& r, int threads, std::uint64_t seed, const char* why) {
  const br::model_info& i = r.m.info();
  const stats& s = r.st;
  std::fprintf(stderr,
               "\nbitnet-generate: %s, %lld layers, d %lld, %lld/%lld heads, vocab %lld; weights %s (%s), "
               "head %s\n",
               i.arch.c_str(), static_cast<long long>(i.n_layer), static_cast<long long>(i.n_embd),
               static_cast<long long>(i.n_head), static_cast<long long>(i.n_head_kv), static_cast<long long>(i.n_vocab),
               i.ternary_types.c_str(), i.weights_summary().c_str(), i.head_type.c_str());
  std::fprintf(stderr, "bitnet-generate: kernels gemv %s, gemm %s, head %s; activations %s%s; threads %d\n",
               i.gemv.c_str(), i.gemm.c_str(), i.head_kernel.c_str(), r.opt.act.c_str(),
               r.precise ? "; --precise (double forward pass, exact int32 ternary sums)" : "", threads);
  std::fprintf(stderr, "bitnet-generate: context %lld (KV cache %s, %.1f MiB), seed %llu, stop: %s\n",
               static_cast<long long>(r.sess.n_ctx()), br::kv_type_name(r.sess.kv()),
               static_cast<double>(r.sess.kv_bytes()) / (1024.0 * 1024.0), static_cast<unsigned long long>(seed), why);
  std::fprintf(stderr,
               "bitnet-generate: load %.0f ms | prefill %lld tokens in %.1f ms (%.2f tok/s) | "
               "generated %lld tokens, decode %lld in %.1f ms (%.2f tok/s)\n",
               s.load_ms, static_cast<long long>(s.prefill_tokens), s.prefill_ms, per_s(s.prefill_tokens, s.prefill_ms),
               static_cast<long long>(s.generated), static_cast<long long>(s.decode_tokens), s.decode_ms,
               per_s(s.decode_tokens, s.decode_ms));
}

void print_json(const runner& r, const std::vector<std::int32_t>& prompt_ids, const br::generation& g, int threads,
                std::uint64_t seed) {
  const stats& s = r.st;
  const br::model_info& i = r.m.info();
  std::ostringstream j;
  j << "{\"model\":" << json_string(r.opt.model) << ",\"arch\":" << json_string(i.arch)
    << ",\"prompt_ids\":" << json_ids(prompt_ids) << ",\"generated_ids\":" << json_ids(g.ids)
    << ",\"text\":" << json_string(g.text) << ",\"stop\":\"" << br::stop_reason_name(g.stop) << "\""
    << ",\"timings\":{\"load_ms\":" << json_num(s.load_ms) << ",\"prefill_tokens\":" << s.prefill_tokens
    << ",\"prefill_ms\":" << json_num(s.prefill_ms) << ",\"prefill_tok_s\":" << json_num(per_s(s.prefill_tokens, s.prefill_ms))
    << ",\"decode_tokens\":" << s.decode_tokens << ",\"decode_ms\":" << json_num(s.decode_ms)
    << ",\"decode_tok_s\":" << json_num(per_s(s.decode_tokens, s.decode_ms)) << "}"
    << ",\"kernels\":{\"gemv\":" << json_string(i.gemv) << ",\"gemm\":" << json_string(i.gemm)
    << ",\"head\":" << json_string(i.head_kernel) << ",\"activations\":" << json_string(r.opt.act)
    << ",\"precise\":" << (r.precise ? "true" : "false") << "}"
    << ",\"threads\":" << threads << ",\"n_ctx\":" << r.sess.n_ctx() << ",\"kv_type\":\"" << br::kv_type_name(r.sess.kv())
    << "\"" << ",\"seed\":" << seed << "}\n";
  out(j.str());
}

void list_kernels(const gen::options& o) {
  const auto f = bitnet::cpu_features::detect();
  const auto list = [&](const char* what, const auto& entries) {
    std::printf("%s:\n", what);
    for (const auto& e : entries) std::printf("  %s%s\n", e.name.c_str(), e.runs_on(f) ? "" : "  (not on this CPU)");
  };
  list("ternary GEMV variants (decode, t2 layout)", bitnet::gemv_variants());
  list("ternary GEMM variants (prefill, t2 layout)", bitnet::gemm_variants());
  list("LUT GEMV variants (decode; by default or from a tuning file)", bitnet::lut_gemv_variants());
  list("LUT GEMM variants (prefill; by default or from a tuning file)", bitnet::lut_gemm_variants());
  bitnet::kernel_options ko = bitnet::kernel_options::from_env();
  if (!o.kernel_arch.empty()) ko.arch = o.kernel_arch;
  if (!o.gemv.empty()) ko.gemv = o.gemv;
  if (!o.gemm.empty()) ko.gemm = o.gemm;
  const auto ks = bitnet::select_kernels(f, ko);
  std::printf("selected: %s, %s; head kernels arch %s\n", ks.gemv.name.c_str(), ks.gemm.name.c_str(),
              std::string(bitnet::select_dense_kernels(f, ko.arch).arch_name).c_str());
  const auto lut = bitnet::preferred_lut_kernels(ko.arch.empty() ? f : f.capped(bitnet::arch_rank(ko.arch)));
  if (lut && !o.no_lut && !o.precise && o.act == "per-token" && ko.gemv.empty() && ko.gemm.empty() &&
      !std::getenv("BITNET_TUNING"))
    std::printf("  for projections with one weight scale (BitNet's): %s, %s (--no-lut: the above)\n",
                lut->gemv.name.c_str(), lut->gemm.name.c_str());
}

// ---------------------------------------------------------------- main flow

int run(const gen::options& o) {
  const auto t_load = clock_type::now();

  // The prompt, checked before anything slow happens.
  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file, std::ios::binary);
    if (!in) fail(o.prompt_file + ": cannot read the prompt file");
    prompt.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (const std::size_t bad = tok::detail::utf8_first_invalid(prompt); bad != std::string::npos)
    fail("the prompt is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");

  // File, config and vocabulary (cheap: the weights are not touched yet).
  br::model_file mf = br::model_file::open(o.model);
  const br::config& cfg = mf.cfg();
  const tok::tokenizer& tkf = mf.require_tokenizer();

  std::int64_t n_ctx = o.n_ctx < 0 ? std::min<std::int64_t>(2048, cfg.n_ctx_train) : o.n_ctx == 0 ? cfg.n_ctx_train : o.n_ctx;
  if (n_ctx > cfg.n_ctx_train)
    std::fprintf(stderr, "bitnet-generate: warning: context %lld is larger than the model was trained for (%lld)\n",
                 static_cast<long long>(n_ctx), static_cast<long long>(cfg.n_ctx_train));

  std::vector<std::int32_t> prompt_ids;
  if (!o.prompt_ids.empty()) {
    try {
      prompt_ids = br::parse_ids(o.prompt_ids, "--prompt-ids");
    } catch (const std::invalid_argument& e) {
      fail(e.what());
    }
    if (prompt_ids.empty()) fail("--prompt-ids: no token ids given");
    for (std::size_t i = 0; i < prompt_ids.size(); ++i)
      if (prompt_ids[i] >= static_cast<std::int32_t>(tkf.n_vocab()))
        fail("--prompt-ids: id " + std::to_string(i) + " is " + std::to_string(prompt_ids[i]) +
             ", outside the vocabulary of " + std::to_string(tkf.n_vocab()) + " tokens");
  } else if (!o.chat) {
    prompt_ids = tkf.encode(prompt, !o.no_bos, true);
    if (prompt_ids.empty()) {
      if (o.no_bos) fail("the prompt is empty and --no-bos leaves no token to start from");
      if (tkf.bos() < 0) fail("the prompt is empty and the vocabulary has no BOS token to start from");
      prompt_ids.push_back(tkf.bos());
    }
  }
  if (static_cast<std::int64_t>(prompt_ids.size()) > n_ctx)
    fail("the prompt is " + std::to_string(prompt_ids.size()) + " tokens but the context holds " +
         std::to_string(n_ctx) + " positions (-c " + std::to_string(n_ctx) + ")");

  // Weights and state.
  const int threads = o.threads > 0 ? o.threads : br::physical_cores();
  br::thread_pool pool(threads);
  br::load_options lo;
  lo.kernels = bitnet::kernel_options::from_env();
  if (!o.kernel_arch.empty()) lo.kernels.arch = o.kernel_arch;
  if (!o.gemv.empty()) lo.kernels.gemv = o.gemv;
  if (!o.gemm.empty()) lo.kernels.gemm = o.gemm;
  lo.activations = o.act == "per-block" ? bitnet::act_quant::per_block : bitnet::act_quant::per_token;
  if (const char* t = std::getenv("BITNET_TUNING")) lo.tuning = t;  // bitnet-tune file: LUT kernels per shape
  lo.tuning_batch = o.n_batch;
  lo.default_luts = !o.no_lut;
  lo.keep_t2 = o.precise;  // the double forward pass reads the t2 codes
  const br::model m = br::model::load(std::move(mf), lo, pool);
  for (const auto& w : m.info().warnings) std::fprintf(stderr, "bitnet-generate: warning: %s\n", w.c_str());
  for (const auto& n : m.info().notes) std::fprintf(stderr, "bitnet-generate: note: %s\n", n.c_str());
  br::session sess(m, pool, n_ctx, o.n_batch, o.kv_type == "f16" ? br::kv_type::f16 : br::kv_type::f32);

  br::sampler_params sp;
  sp.temp = o.temp;
  sp.top_k = o.top_k;
  sp.top_p = o.top_p;
  sp.min_p = o.min_p;
  sp.repeat_penalty = o.repeat_penalty;
  sp.repeat_last_n = o.repeat_last_n;
  sp.seed = o.seed_given ? o.seed : (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  br::sampler smp(sp, m.cfg().n_vocab);

  std::optional<br::precise_session> precise;
  if (o.precise) precise.emplace(m, pool, n_ctx);
  runner r{o, m, sess, precise ? static_cast<br::evaluator&>(*precise) : sess, m.require_tokenizer(), smp, {},
           precise.has_value()};
  r.st.load_ms = ms_since(t_load);

  if (o.chat) {
    const int rc = chat(r, prompt);
    print_summary(r, threads, sp.seed, "chat ended");
    return rc;
  }
  const br::generation g = complete(r, prompt_ids);
  if (o.json) print_json(r, prompt_ids, g, threads, sp.seed);
  print_summary(r, threads, sp.seed, br::stop_reason_name(g.stop));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gen::options o;
  try {
    o = gen::parse_args(argc, argv);
  } catch (const gen::usage_error& e) {
    std::fprintf(stderr, "bitnet-generate: error: %s (see --help)\n", e.msg.c_str());
    return 2;
  }
  if (o.help) {
    std::fputs(gen::help_text().c_str(), stdout);
    return 0;
  }
  try {
    if (o.list_kernels) {
      list_kernels(o);
      return 0;
    }
    return run(o);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    for (char& ch : msg)
      if (ch == '\n') ch = ' ';
    std::fprintf(stderr, "bitnet-generate: error: %s\n", msg.c_str());
    return 1;
  }
}
