// bitnet-generate - text generation with a BitNet b1.58 GGUF model on the CPU.
//
// Reads top to bottom: the model (config, weights, blocks, forward) is model.hpp, the
// tokenizer tokenizer.hpp, the sampler sampler.hpp, the command line cli.hpp; this file ties
// them together: open and validate the file, tokenize, load the weights, prefill the prompt,
// then sample / stream / decode until end of generation, -n tokens, or a full context.
//
// stdout carries only the text (or, with --json, one JSON object); everything else, including
// the closing summary, goes to stderr. Exit status: 0 ok, 1 error, 2 bad command line.
// Context: a prompt longer than the context is an error (nothing is generated); generation
// that reaches the end of the context stops there with a note on stderr (stop reason
// "context_full" in --json) and exits 0.
#include <algorithm>  // std::min
#include <chrono>     // timings
#include <cmath>      // std::isfinite
#include <cstdint>    // fixed-width integers
#include <cstdio>     // stdio streams
#include <cstdlib>    // std::getenv (BITNET_TUNING)
#include <exception>  // top-level handler
#include <fstream>    // -f
#include <iostream>   // std::getline for chat turns
#include <iterator>   // std::istreambuf_iterator
#include <optional>   // the tokenizer, built after the file is validated
#include <random>     // std::random_device for the default seed
#include <span>       // token spans
#include <sstream>    // JSON text
#include <stdexcept>  // std::runtime_error
#include <string>     // text
#include <vector>     // ids

#include <bitnet/bitnet.hpp>
#include <bitnet/gguf.hpp>

#include "cli.hpp"
#include "model.hpp"
#include "precise.hpp"
#include "sampler.hpp"
#include "thread_pool.hpp"
#include "tokenizer.hpp"

namespace {

namespace br = bitnet::run;
namespace tok = bitnet::tok;
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

// ---------------------------------------------------------------- generation

struct stats {
  double load_ms = 0, prefill_ms = 0, decode_ms = 0;
  std::int64_t prefill_tokens = 0, decode_tokens = 0, generated = 0;
};

enum class stop_reason { eog, length, context_full, stop_string };

const char* stop_name(stop_reason s) {
  switch (s) {
    case stop_reason::eog: return "eos";
    case stop_reason::length: return "length";
    case stop_reason::context_full: return "context_full";
    case stop_reason::stop_string: return "stop_string";
  }
  return "?";
}

struct runner {
  const br::options& opt;
  const br::model& m;
  br::session& sess;
  const tok::tokenizer& tk;
  br::sampler& smp;
  stats st;
  br::precise_session* precise;  // --precise: evaluates instead of sess (no --chat)

  std::span<const float> eval(std::span<const std::int32_t> ids) { return precise ? precise->eval(ids) : sess.eval(ids); }

  // Evaluates prompt-side tokens (timed as prefill); returns the last position's logits.
  std::span<const float> prefill(const std::vector<std::int32_t>& ids) {
    const auto t0 = clock_type::now();
    const auto l = eval(ids);
    st.prefill_ms += ms_since(t0);
    st.prefill_tokens += static_cast<std::int64_t>(ids.size());
    for (const auto id : ids) smp.accept(id);
    return l;
  }

  // Samples up to `limit` tokens (-1: no limit) starting from `logits`. on_token(id) sees each
  // kept token and returns false to stop (a stop string). The final sampled token is left
  // unevaluated in `pending` (-1 if none): a chat's next turn feeds it first.
  template <class OnToken>
  stop_reason generate(std::span<const float> logits, std::int64_t limit, std::int32_t& pending, OnToken&& on_token) {
    const auto t0 = clock_type::now();
    stop_reason why = stop_reason::length;
    pending = -1;
    for (std::int64_t i = 0; limit < 0 || i < limit; ++i) {
      const std::int32_t id = smp.sample(logits);
      smp.accept(id);
      pending = id;
      if (tk.is_eog(id) && !opt.ignore_eos) {
        why = stop_reason::eog;
        break;
      }
      ++st.generated;
      if (!on_token(id)) {
        why = stop_reason::stop_string;
        break;
      }
      if (limit >= 0 && i + 1 == limit) break;
      if ((precise ? precise->pos() : sess.pos()) >= sess.n_ctx()) {
        why = stop_reason::context_full;
        break;
      }
      logits = eval(std::span<const std::int32_t>(&pending, 1));
      ++st.decode_tokens;
      pending = -1;
    }
    st.decode_ms += ms_since(t0);
    return why;
  }

  void note_context_full() const {
    std::fprintf(stderr, "bitnet-generate: stopped: the context of %lld positions is full (raise -c)\n",
                 static_cast<long long>(sess.n_ctx()));
  }
};

struct completion {
  std::vector<std::int32_t> generated;
  std::string text;
  stop_reason why = stop_reason::length;
};

// Plain completion: prefill the prompt, then stream (or collect, for --json) the continuation.
completion complete(runner& r, const std::vector<std::int32_t>& prompt_ids) {
  const br::options& o = r.opt;
  tok::stream_decoder sd(r.tk);
  std::string prompt_text;
  for (const auto id : prompt_ids) prompt_text += sd.push(id);  // also primes the decoder's spacing
  if (!o.json && !o.no_echo) out(prompt_text);
  completion c;
  std::int32_t pending = -1;
  c.why = r.generate(r.prefill(prompt_ids), o.n_predict, pending, [&](std::int32_t id) {
    c.generated.push_back(id);
    const std::string piece = sd.push(id);
    c.text += piece;
    if (!o.json) out(piece);
    return true;
  });
  const std::string rest = sd.flush();
  c.text += rest;
  if (!o.json) out(rest + "\n");
  if (c.why == stop_reason::context_full) r.note_context_full();
  return c;
}

// ---------------------------------------------------------------- chat

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

void append(std::vector<std::int32_t>& v, const std::vector<std::int32_t>& w) { v.insert(v.end(), w.begin(), w.end()); }

// Chat. With <|eot_id|> in the vocabulary, the BitNet b1.58 2B4T format (spec 6.4):
//   <|begin_of_text|>System: {system}<|eot_id|>User: {user}<|eot_id|>Assistant: {reply}<|eot_id|>User: ...
// headers and contents tokenized separately, contents trimmed, specials not parsed in user
// text. Otherwise a plain-text fallback:
//   [BOS]{system}\n\nUser: {user}\nAssistant: {reply}\nUser: ...
// whose replies also stop at the text "\nUser:" (held back, never printed; the next message
// then continues the model's own "User:").
// Turns: -p / -f (if given) is the first user message, then one line of stdin per turn; an empty
// line is skipped, end of input ends the chat. The KV cache carries the whole conversation;
// a turn that no longer fits ends the chat with a note.
int chat(runner& r, const std::string& first_message) {
  const br::options& o = r.opt;
  const tok::tokenizer& tk = r.tk;
  const auto eot = tk.find_token("<|eot_id|>");
  const bool b2 = eot.has_value();
  const auto enc = [&](std::string_view s) { return tk.encode(s, false, false); };
  const std::string stop_text = "\nUser:";

  std::vector<std::int32_t> head;  // tokens for the next turn, before the user's message
  if (!o.no_bos && tk.bos() >= 0) head.push_back(tk.bos());
  if (!o.system.empty()) {
    if (b2) {
      append(head, enc("System: "));
      append(head, enc(trim(o.system)));
      head.push_back(*eot);
    } else {
      append(head, enc(trim(o.system) + "\n\n"));
    }
  }
  bool first = true, model_wrote_user = false;
  std::string msg = first_message;
  for (;;) {
    if (!first || trim(msg).empty()) {
      std::fputs("> ", stderr);
      std::fflush(stderr);
      if (!std::getline(std::cin, msg)) break;
      if (trim(msg).empty()) continue;
    }
    if (const std::size_t bad = tok::detail::utf8_first_invalid(msg); bad != std::string::npos)
      fail("chat input is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
    std::vector<std::int32_t> turn = head;
    if (b2) {
      append(turn, enc("User: "));
      append(turn, enc(trim(msg)));
      turn.push_back(*eot);
      append(turn, enc("Assistant: "));
    } else {
      // After a reply that ended by writing "\nUser:" itself, the message just continues it.
      const std::string lead = first ? "User: " : model_wrote_user ? " " : "\nUser: ";
      append(turn, enc(lead + trim(msg) + "\nAssistant:"));
    }
    if (r.sess.pos() + static_cast<std::int64_t>(turn.size()) > r.sess.n_ctx()) {
      if (first)
        fail("the first chat turn is " + std::to_string(turn.size()) + " tokens but the context holds " +
             std::to_string(r.sess.n_ctx()) + " positions (-c)");
      r.note_context_full();
      break;
    }
    first = false;
    tok::stream_decoder sd(tk);
    for (const auto id : turn) (void)sd.push(id);
    std::string held;  // fallback format: text that may be the start of the stop string
    std::int32_t pending = -1;
    const auto why = r.generate(r.prefill(turn), o.n_predict, pending, [&](std::int32_t id) {
      if (b2) {
        out(sd.push(id));
        return true;
      }
      held += sd.push(id);
      if (const auto at = held.find(stop_text); at != std::string::npos) {
        out(held.substr(0, at));
        return false;
      }
      std::size_t keep = 0;  // longest suffix of `held` that is a prefix of the stop text
      for (std::size_t k = std::min(held.size(), stop_text.size() - 1); k > 0; --k)
        if (held.compare(held.size() - k, k, stop_text, 0, k) == 0) {
          keep = k;
          break;
        }
      out(held.substr(0, held.size() - keep));
      held.erase(0, held.size() - keep);
      return true;
    });
    if (why != stop_reason::stop_string) out(held + sd.flush());
    out("\n");
    if (why == stop_reason::context_full) {
      r.note_context_full();
      break;
    }
    // The reply's end. A reply cut by -n printed a last token that was not evaluated yet: it
    // goes first. Then, for 2B4T, an <|eot_id|> (also when the reply ended with EOS); the
    // fallback continues with "\nUser: ...".
    head.clear();
    if (pending >= 0 && (why == stop_reason::length || why == stop_reason::stop_string)) head.push_back(pending);
    if (b2) head.push_back(*eot);
    model_wrote_user = why == stop_reason::stop_string;
  }
  return 0;
}

// ---------------------------------------------------------------- summary

std::string mib(std::size_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return b;
}

double per_s(std::int64_t n, double ms) { return ms > 0 ? 1000.0 * static_cast<double>(n) / ms : 0.0; }

// The kernels decode and prefill run, for the reports.
std::string tuned_suffix(const br::model& m) {
  return m.lut_tensors() > 0 && !m.default_lut_pair() ? " + tuning file LUT picks" : "";
}
std::string gemv_name(const br::model& m) { return m.gemv_name() + tuned_suffix(m); }
std::string gemm_name(const br::model& m) { return m.gemm_name() + tuned_suffix(m); }

// The repacked ternary weights: size and layout.
std::string repacked(const br::model& m) {
  if (m.default_lut_pair())
    return mib(m.lut_bytes() + m.repacked_bytes()) + " as " + m.weights_layout() +
           (m.repacked_bytes() > 0 ? " and t2" : "");
  return mib(m.repacked_bytes()) + " as " + m.weights_layout() +
         (m.lut_tensors() > 0 ? " + " + mib(m.lut_bytes()) + " of tuned LUT copies" : "");
}

void print_summary(const runner& r, int threads, std::uint64_t seed, const char* why) {
  const br::config& c = r.m.cfg();
  const stats& s = r.st;
  std::fprintf(stderr,
               "\nbitnet-generate: %s, %lld layers, d %lld, %lld/%lld heads, vocab %lld; weights %s (%s), "
               "head %s\n",
               c.arch.c_str(), static_cast<long long>(c.n_layer), static_cast<long long>(c.n_embd),
               static_cast<long long>(c.n_head), static_cast<long long>(c.n_head_kv), static_cast<long long>(c.n_vocab),
               r.m.ternary_types().c_str(), repacked(r.m).c_str(),
               std::string(bitnet::type_name(r.m.token_embd().type)).c_str());
  std::fprintf(stderr, "bitnet-generate: kernels gemv %s, gemm %s, head %s; activations %s%s; threads %d\n",
               gemv_name(r.m).c_str(), gemm_name(r.m).c_str(),
               std::string(r.m.head_kernel_name()).c_str(), r.opt.act.c_str(),
               r.precise ? "; --precise (double forward pass, exact int32 ternary sums)" : "", threads);
  std::fprintf(stderr, "bitnet-generate: context %lld (KV cache %s, %s), seed %llu, stop: %s\n",
               static_cast<long long>(r.sess.n_ctx()), br::kv_type_name(r.sess.kv()), mib(r.sess.kv_bytes()).c_str(),
               static_cast<unsigned long long>(seed), why);
  std::fprintf(stderr,
               "bitnet-generate: load %.0f ms | prefill %lld tokens in %.1f ms (%.2f tok/s) | "
               "generated %lld tokens, decode %lld in %.1f ms (%.2f tok/s)\n",
               s.load_ms, static_cast<long long>(s.prefill_tokens), s.prefill_ms, per_s(s.prefill_tokens, s.prefill_ms),
               static_cast<long long>(s.generated), static_cast<long long>(s.decode_tokens), s.decode_ms,
               per_s(s.decode_tokens, s.decode_ms));
}

void print_json(const runner& r, const std::vector<std::int32_t>& prompt_ids, const completion& c, int threads,
                std::uint64_t seed) {
  const stats& s = r.st;
  std::ostringstream j;
  j << "{\"model\":" << json_string(r.opt.model) << ",\"arch\":" << json_string(r.m.cfg().arch)
    << ",\"prompt_ids\":" << json_ids(prompt_ids) << ",\"generated_ids\":" << json_ids(c.generated)
    << ",\"text\":" << json_string(c.text) << ",\"stop\":\"" << stop_name(c.why) << "\""
    << ",\"timings\":{\"load_ms\":" << json_num(s.load_ms) << ",\"prefill_tokens\":" << s.prefill_tokens
    << ",\"prefill_ms\":" << json_num(s.prefill_ms) << ",\"prefill_tok_s\":" << json_num(per_s(s.prefill_tokens, s.prefill_ms))
    << ",\"decode_tokens\":" << s.decode_tokens << ",\"decode_ms\":" << json_num(s.decode_ms)
    << ",\"decode_tok_s\":" << json_num(per_s(s.decode_tokens, s.decode_ms)) << "}"
    << ",\"kernels\":{\"gemv\":" << json_string(gemv_name(r.m))
    << ",\"gemm\":" << json_string(gemm_name(r.m)) << ",\"head\":" << json_string(r.m.head_kernel_name())
    << ",\"activations\":" << json_string(r.opt.act) << ",\"precise\":" << (r.precise ? "true" : "false") << "}"
    << ",\"threads\":" << threads << ",\"n_ctx\":" << r.sess.n_ctx() << ",\"kv_type\":\"" << br::kv_type_name(r.sess.kv()) << "\"" << ",\"seed\":" << seed << "}\n";
  out(j.str());
}

void list_kernels(const br::options& o) {
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

int run(const br::options& o) {
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
  bitnet::gguf::file file = bitnet::gguf::file::open(o.model);
  const br::config cfg = br::read_config(file);
  std::optional<tok::tokenizer> tk_storage;
  try {
    tk_storage.emplace(tok::vocab_from_gguf(file));
  } catch (const bitnet::gguf::error&) {
    throw;
  } catch (const std::exception& e) {
    fail(o.model + ": " + e.what());
  }
  const tok::tokenizer& tk = *tk_storage;

  std::int64_t n_ctx = o.n_ctx < 0 ? std::min<std::int64_t>(2048, cfg.n_ctx_train) : o.n_ctx == 0 ? cfg.n_ctx_train : o.n_ctx;
  if (n_ctx > cfg.n_ctx_train)
    std::fprintf(stderr, "bitnet-generate: warning: context %lld is larger than the model was trained for (%lld)\n",
                 static_cast<long long>(n_ctx), static_cast<long long>(cfg.n_ctx_train));

  std::vector<std::int32_t> prompt_ids;
  if (!o.chat) {
    prompt_ids = tk.encode(prompt, !o.no_bos, true);
    if (prompt_ids.empty()) {
      if (o.no_bos) fail("the prompt is empty and --no-bos leaves no token to start from");
      if (tk.bos() < 0) fail("the prompt is empty and the vocabulary has no BOS token to start from");
      prompt_ids.push_back(tk.bos());
    }
    if (static_cast<std::int64_t>(prompt_ids.size()) > n_ctx)
      fail("the prompt is " + std::to_string(prompt_ids.size()) + " tokens but the context holds " +
           std::to_string(n_ctx) + " positions (-c " + std::to_string(n_ctx) + ")");
  }

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
  const br::model m = br::model::load(std::move(file), lo, pool);
  if (!m.tuning_warning().empty()) std::fprintf(stderr, "bitnet-generate: warning: %s\n", m.tuning_warning().c_str());
  if (static_cast<std::int64_t>(tk.n_vocab()) != m.cfg().n_vocab)
    fail(o.model + ": the vocabulary has " + std::to_string(tk.n_vocab()) + " tokens but token_embd.weight has " +
         std::to_string(m.cfg().n_vocab) + " rows");
  if (m.has_output_weight())
    std::fprintf(stderr, "bitnet-generate: note: output.weight is ignored; the head is token_embd (as bitnet.cpp)\n");
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
  runner r{o, m, sess, tk, smp, {}, precise ? &*precise : nullptr};
  r.st.load_ms = ms_since(t_load);

  if (o.chat) {
    const int rc = chat(r, prompt);
    print_summary(r, threads, sp.seed, "chat ended");
    return rc;
  }
  const completion c = complete(r, prompt_ids);
  if (o.json) print_json(r, prompt_ids, c, threads, sp.seed);
  print_summary(r, threads, sp.seed, stop_name(c.why));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  br::options o;
  try {
    o = br::parse_args(argc, argv);
  } catch (const br::usage_error& e) {
    std::fprintf(stderr, "bitnet-generate: error: %s (see --help)\n", e.msg.c_str());
    return 2;
  }
  if (o.help) {
    std::fputs(br::help_text().c_str(), stdout);
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
