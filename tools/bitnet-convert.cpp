// bitnet-convert - make GGUF files for the bitnet runner.
//
//   bitnet-convert from-llama2c CHECKPOINT.bin TOKENIZER.model -o OUT.gguf [options]
//   bitnet-convert convert IN.gguf -o OUT.gguf [--type T] [--head-type H]
//   bitnet-convert synth --shape S -o OUT.gguf [options]
//
// Exit codes: 0 ok, 1 conversion failed (one message on stderr), 2 usage error.
// The logic lives in convert.hpp; docs/convert.md describes the mapping.
#include "convert.hpp"

#include <cerrno>       // errno for strtoull
#include <chrono>       // timing for the summary line
#include <cmath>        // std::isfinite for --eps
#include <cstdint>      // fixed-width integers
#include <cstdio>       // std::fprintf
#include <cstdlib>      // std::strtoull, std::strtof
#include <exception>    // std::exception in main
#include <filesystem>   // input == output check
#include <memory>       // shared progress state
#include <optional>     // optional flags
#include <string>       // arguments
#include <string_view>  // argument parsing
#include <vector>       // argument lists

#include <unistd.h>  // isatty: \r progress only on a terminal

namespace {

namespace cv = bitnet::convert;

struct usage_error {
  std::string msg;
};

constexpr const char* kMainHelp =
    "usage: bitnet-convert <command> [options]\n"
    "\n"
    "commands:\n"
    "  from-llama2c  convert a bitllama2.c ternary checkpoint + SentencePiece model to GGUF (arch bitnet)\n"
    "  convert       re-pack the ternary tensors of a GGUF (I2_S / TQ2_0 / TQ1_0) and/or requantize its head\n"
    "  synth         write a GGUF with random ternary weights in a real model's shape\n"
    "\n"
    "Run 'bitnet-convert <command> --help' for the options of a command.\n"
    "Exit codes: 0 ok, 1 conversion failed, 2 usage error.\n";

constexpr const char* kLlama2cHelp =
    "usage: bitnet-convert from-llama2c CHECKPOINT.bin TOKENIZER.model -o OUT.gguf [options]\n"
    "\n"
    "Reads a bitllama2.c ternary checkpoint (magic \"ak42\", version 1) and the SentencePiece\n"
    "ModelProto of its vocabulary, and writes a GGUF of architecture 'bitnet': four RMSNorms per\n"
    "layer of weight 1, each matrix's scale/in_features kept exactly (--scales), wq/wk rows\n"
    "permuted to NeoX RoPE order, token_embd = tok_embeddings (the tied head).\n"
    "\n"
    "options:\n"
    "  -o, --output PATH        output GGUF (required)\n"
    "  --type i2_s|tq2_0|tq1_0  ternary tensor type (default i2_s)\n"
    "  --order lsb|msb          2-bit code order inside each checkpoint byte (default: the order in which a\n"
    "                           probe text gets the lower perplexity; refused when the two are close)\n"
    "  --head-type f32|f16|q8_0|q6_k\n"
    "                           type of token_embd.weight (default f32: the checkpoint's values)\n"
    "  --eps X                  attention.layer_norm_rms_epsilon, the four block norms (default 1e-30,\n"
    "                           see docs/convert.md)\n"
    "  --output-eps X           output_norm.layer_norm_rms_epsilon, the final norm (default 1e-5, the\n"
    "                           reference's)\n"
    "  --scales folded|tensor   where scale/in_features goes: folded into the ternary payload (TQ's f16\n"
    "                           block d rounds it) or an exact F32 blk.N.<name>.scale tensor with payload\n"
    "                           scale 1 (default: tensor for tq2_0/tq1_0, folded for i2_s)\n"
    "  --name NAME              general.name (default: the checkpoint's file name without extension)\n"
    "  -q, --quiet              no progress on stderr\n"
    "  -h, --help               this text\n";

constexpr const char* kConvertHelp =
    "usage: bitnet-convert convert IN.gguf -o OUT.gguf [--type T] [--head-type H]\n"
    "\n"
    "Re-packs every ternary tensor (I2_S, TQ2_0, TQ1_0) to --type without loss of the ternary\n"
    "values, and requantizes token_embd.weight (and output.weight if present) to --head-type.\n"
    "Float projections (blk.N.attn_q.weight ... in F32, F16 or BF16, as bitnet.cpp's converter writes\n"
    "them before quantizing) are ternarized to --type: losslessly when their values are ternary x one\n"
    "scale, else by BitNet's absmean rule (s = mean |W|, w = clamp(round(W / s), -1, 1)).\n"
    "Everything else (metadata and tensors) is copied byte for byte; general.file_type is updated.\n"
    "I2_S -> TQ rounds each tensor's f32 scale to f16 (reported when that changes it);\n"
    "TQ -> I2_S needs all 256-blocks of a tensor to share one scale.\n"
    "\n"
    "options:\n"
    "  -o, --output PATH        output GGUF (required; may not be IN itself)\n"
    "  --type i2_s|tq2_0|tq1_0  target ternary type (default: keep)\n"
    "  --head-type f32|f16|q8_0|q6_k\n"
    "                           target type of the embedding/head (default: keep)\n"
    "  -t, --threads N          threads for requantization (default: up to 8, the CPU count)\n"
    "  -q, --quiet              no progress on stderr\n"
    "  -h, --help               this text\n";

constexpr const char* kSynthHelp =
    "usage: bitnet-convert synth --shape S -o OUT.gguf [options]\n"
    "\n"
    "Writes a model with random ternary weights (P(0) = 3/8), norm weights ~ 1 + N(0, 0.05),\n"
    "embeddings ~ N(0, 0.02) and a synthetic tokenizer, deterministic in --seed. Shapes:\n"
    "  2b4t   bitnet-b1.58, 30 layers, d 2560, ff 6912, heads 20/5, vocab 128256, ctx 4096, rope 500000, BPE\n"
    "  large  bitnet, 24 layers, d 1536, ff 4096, heads 16/16, vocab 32002, ctx 2048, SentencePiece\n"
    "  3b     bitnet, 26 layers, d 3200, ff 8640, heads 32/32, vocab 32002, ctx 2048, SentencePiece\n"
    "         (ffn_down has K = 8640, not a multiple of 256: only i2_s; d 3200 rules out q6_k heads)\n"
    "  8b     Llama3-8B-1.58 dimensions (32 layers, d 4096, ff 14336, heads 32/8, vocab 128256),\n"
    "         emitted as arch bitnet-b1.58 (sub-norms, ReLU^2); llama3-8b is the llama form\n"
    "  falcon3-1b  llama, 18 layers, d 2048, ff 8192, heads 8/4 of 256, vocab 131072, ctx 8192,\n"
    "              rope 1000042, eps 1e-6, untied head, BPE (falcon3 pre-tokenizer)\n"
    "  falcon3-3b  llama, 22 layers, d 3072, ff 9216, heads 12/4 of 256, vocab 131072, ctx 32768,\n"
    "              rope 1000042, eps 1e-6, untied head, BPE (falcon3 pre-tokenizer)\n"
    "  llama3-8b   llama, 32 layers, d 4096, ff 14336, heads 32/8 of 128, vocab 128256, ctx 8192,\n"
    "              rope 500000, untied head, BPE (Llama-3)\n"
    "  tiny   bitnet-b1.58, 2 layers, d 256, ff 512, heads 4/2, vocab 1024, ctx 512, BPE\n"
    "\n"
    "options:\n"
    "  --shape NAME             one of the above (required)\n"
    "  -o, --output PATH        output GGUF (required)\n"
    "  --type i2_s|tq2_0|tq1_0  ternary tensor type (default i2_s)\n"
    "  --head-type f16|f32|q8_0|q6_k   embedding/head type (default f16)\n"
    "  --layers N               override the layer count\n"
    "  --vocab N                override the vocabulary size\n"
    "  --seed S                 random seed (default 1)\n"
    "  -t, --threads N          threads for head quantization (default: up to 8, the CPU count)\n"
    "  -q, --quiet              no progress on stderr\n"
    "  -h, --help               this text\n";

// ---------------------------------------------------------------- argument helpers

struct args {
  std::vector<std::string_view> v;
  std::size_t i = 0;
  bool more() const { return i < v.size(); }
  std::string_view next() { return v[i++]; }
  std::string_view value(std::string_view flag) {
    if (!more()) throw usage_error{std::string(flag) + " needs a value"};
    return next();
  }
};

std::uint64_t parse_u64(std::string_view flag, std::string_view s, std::uint64_t lo, std::uint64_t hi) {
  const std::string t(s);
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(t.c_str(), &end, 10);
  if (t.empty() || t[0] == '-' || end != t.c_str() + t.size() || errno != 0 || v < lo || v > hi)
    throw usage_error{std::string(flag) + " " + t + ": expected an integer in " + std::to_string(lo) + ".." +
                      std::to_string(hi)};
  return v;
}

bitnet::tensor_type ternary_arg(std::string_view flag, std::string_view s) {
  if (auto t = cv::parse_ternary_type(s)) return *t;
  throw usage_error{std::string(flag) + " " + std::string(s) + ": expected i2_s, tq2_0 or tq1_0"};
}
bitnet::tensor_type head_arg(std::string_view flag, std::string_view s) {
  if (auto t = cv::parse_head_type(s)) return *t;
  throw usage_error{std::string(flag) + " " + std::string(s) + ": expected f32, f16, q8_0 or q6_k"};
}

// Progress: '\r' updates on a terminal, otherwise a line at most every 2 seconds.
cv::progress_fn make_progress(bool quiet, std::string what) {
  if (quiet) return {};
  const bool tty = isatty(2) != 0;
  using clock = std::chrono::steady_clock;
  auto last = std::make_shared<clock::time_point>(clock::now());
  return [tty, what, last](std::size_t done, std::size_t total, std::string_view name) {
    if (total == 0) return;
    if (tty) {
      if (done == total) {
        std::fprintf(stderr, "\r%s: %zu/%zu tensors%-48s\n", what.c_str(), done, total, "");
      } else {
        std::fprintf(stderr, "\r%s: [%zu/%zu] %-48.*s", what.c_str(), done + 1, total, static_cast<int>(name.size()),
                     name.data());
      }
      std::fflush(stderr);
    } else if (done < total && clock::now() - *last >= std::chrono::seconds(2)) {
      *last = clock::now();
      std::fprintf(stderr, "%s: %zu/%zu tensors (%.*s)\n", what.c_str(), done, total, static_cast<int>(name.size()),
                   name.data());
    }
  };
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string stem_of(const std::string& path) {
  std::string s = path;
  if (auto p = s.find_last_of('/'); p != std::string::npos) s = s.substr(p + 1);
  if (auto p = s.find_last_of('.'); p != std::string::npos && p > 0) s = s.substr(0, p);
  return s;
}

// ---------------------------------------------------------------- commands

int cmd_from_llama2c(args& a) {
  std::vector<std::string> pos;
  std::string out;
  cv::llama2c_options o;
  cv::code_order order = cv::code_order::lsb;
  bool order_given = false, quiet = false;
  while (a.more()) {
    const std::string_view s = a.next();
    if (s == "-h" || s == "--help") {
      std::fputs(kLlama2cHelp, stdout);
      return 0;
    } else if (s == "-o" || s == "--output") {
      out = a.value(s);
    } else if (s == "--type") {
      o.type = ternary_arg(s, a.value(s));
    } else if (s == "--head-type") {
      o.head = head_arg(s, a.value(s));
    } else if (s == "--order") {
      const std::string_view v = a.value(s);
      if (v == "lsb") order = cv::code_order::lsb;
      else if (v == "msb") order = cv::code_order::msb;
      else throw usage_error{"--order " + std::string(v) + ": expected lsb or msb"};
      order_given = true;
    } else if (s == "--eps") {
      const std::string v(a.value(s));
      char* end = nullptr;
      const float e = std::strtof(v.c_str(), &end);
      if (v.empty() || end != v.c_str() + v.size() || !(e > 0.0f) || !std::isfinite(e))
        throw usage_error{"--eps " + v + ": expected a finite positive number"};
      o.eps = e;
    } else if (s == "--output-eps") {
      const std::string v(a.value(s));
      char* end = nullptr;
      const float e = std::strtof(v.c_str(), &end);
      if (v.empty() || end != v.c_str() + v.size() || !(e >= 0.0f) || !std::isfinite(e))
        throw usage_error{"--output-eps " + v + ": expected a finite number >= 0"};
      o.output_eps = e;
    } else if (s == "--scales") {
      const std::string_view v = a.value(s);
      if (v == "folded") o.scales = cv::llama2c_scales::folded;
      else if (v == "tensor") o.scales = cv::llama2c_scales::tensor;
      else throw usage_error{"--scales " + std::string(v) + ": expected folded or tensor"};
    } else if (s == "--name") {
      o.name = a.value(s);
    } else if (s == "-q" || s == "--quiet") {
      quiet = true;
    } else if (!s.empty() && s[0] == '-') {
      throw usage_error{"from-llama2c: unknown option " + std::string(s)};
    } else {
      pos.emplace_back(s);
    }
  }
  if (pos.size() != 2) throw usage_error{"from-llama2c: expected CHECKPOINT.bin and TOKENIZER.model"};
  if (out.empty()) throw usage_error{"from-llama2c: -o OUT.gguf is required"};
  if (o.name.empty()) o.name = stem_of(pos[0]);

  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::uint8_t> bytes = cv::read_file(pos[0]);
  try {  // the checkpoint's own errors first (header, layout), before the tokenizer's
    (void)cv::read_llama2c(bytes, pos[0], order);
  } catch (const cv::error&) {
    if (order_given) throw;
    (void)cv::read_llama2c(bytes, pos[0], cv::code_order::msb);  // readable MSB-first: the probe decides
  }
  const cv::sp_model sp = cv::read_sentencepiece_file(pos[1]);
  // The code order: a checkpoint read in the wrong order is noise with valid codes. Score a
  // probe text both ways and take (or check the given order against) the likelier one.
  {
    const cv::order_probe pr = cv::probe_llama2c_order(bytes, pos[0], sp, o);
    const auto name = [](cv::code_order c) { return c == cv::code_order::lsb ? "lsb" : "msb"; };
    char figures[160];
    std::snprintf(figures, sizeof figures, "a probe text of %lld tokens has perplexity %.4g read LSB-first and %.4g MSB-first",
                  static_cast<long long>(pr.tokens), pr.ppl_lsb, pr.ppl_msb);
    constexpr double kClear = 1.5;  // a trained model: tens of times apart; noise against noise: about 1
    if (!order_given) {
      if (pr.ratio() < kClear) {
        std::fprintf(stderr, "bitnet-convert: error: %s: cannot tell the 2-bit code order: %s; give --order lsb or --order msb\n",
                     pos[0].c_str(), figures);
        return 1;
      }
      order = pr.likelier();
      if (!quiet) std::fprintf(stderr, "%s: code order %s (%s)\n", pos[0].c_str(), name(order), figures);
    } else if (pr.likelier() != order && pr.ratio() >= kClear) {
      std::fprintf(stderr, "bitnet-convert: warning: %s: --order %s given, but %s; the checkpoint looks %s-first\n",
                   pos[0].c_str(), name(order), figures, order == cv::code_order::lsb ? "MSB" : "LSB");
    }
  }
  const cv::llama2c_checkpoint ck = cv::read_llama2c(bytes, pos[0], order);
  if (!quiet) {
    const auto& c = ck.config;
    std::fprintf(stderr,
                 "%s: dim %d, hidden %d, layers %d, heads %d/%d, vocab %d, seq %d; codes: %llu zero, %llu +1, %llu -1\n",
                 pos[0].c_str(), c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
                 static_cast<unsigned long long>(ck.zeros), static_cast<unsigned long long>(ck.plus),
                 static_cast<unsigned long long>(ck.minus));
    std::fprintf(stderr, "%s: %zu pieces, model_type %d, add_dummy_prefix %s, bos %d, eos %d, unk %d\n",
                 pos[1].c_str(), sp.pieces.size(), sp.model_type, sp.add_dummy_prefix ? "true" : "false", sp.bos_id,
                 sp.eos_id, sp.unk_id);
    if (sp.model_type != 2)
      std::fprintf(stderr,
                   "note: %s is not a BPE SentencePiece model (model_type %d); the GGUF 'llama' tokenizer merges "
                   "pieces by score as SentencePiece BPE does, so prompts may tokenize differently\n",
                   pos[1].c_str(), sp.model_type);
    if (o.type != bitnet::tensor_type::i2_s)
      std::fprintf(stderr, "note: %s stores each folded scale as f16 (relative rounding <= 2^-11)\n",
                   std::string(bitnet::type_name(o.type)).c_str());
  }
  const bitnet::gguf::writer g = cv::build_llama2c(ck, sp, o, pos[1]);
  g.write(out, make_progress(quiet, "writing " + out));
  if (!quiet) std::fprintf(stderr, "wrote %s (%zu tensors) in %.2f s\n", out.c_str(), g.tensor_count(), seconds_since(t0));
  return 0;
}

int cmd_convert(args& a) {
  std::vector<std::string> pos;
  std::string out;
  cv::convert_options o;
  bool quiet = false;
  while (a.more()) {
    const std::string_view s = a.next();
    if (s == "-h" || s == "--help") {
      std::fputs(kConvertHelp, stdout);
      return 0;
    } else if (s == "-o" || s == "--output") {
      out = a.value(s);
    } else if (s == "--type") {
      o.type = ternary_arg(s, a.value(s));
    } else if (s == "--head-type") {
      o.head = head_arg(s, a.value(s));
    } else if (s == "-t" || s == "--threads") {
      o.threads = static_cast<unsigned>(parse_u64(s, a.value(s), 1, 256));
    } else if (s == "-q" || s == "--quiet") {
      quiet = true;
    } else if (!s.empty() && s[0] == '-') {
      throw usage_error{"convert: unknown option " + std::string(s)};
    } else {
      pos.emplace_back(s);
    }
  }
  if (pos.size() != 1) throw usage_error{"convert: expected one input IN.gguf"};
  if (out.empty()) throw usage_error{"convert: -o OUT.gguf is required"};
  {
    std::error_code ec;
    if (std::filesystem::exists(out, ec) && std::filesystem::equivalent(pos[0], out, ec))
      throw usage_error{"convert: the output " + out + " is the input file; choose another path"};
  }
  if (!o.type && !o.head) throw usage_error{"convert: nothing to do; give --type and/or --head-type"};

  const auto t0 = std::chrono::steady_clock::now();
  const bitnet::gguf::file in = bitnet::gguf::file::open(pos[0]);
  cv::convert_notes notes;
  const bitnet::gguf::writer g = cv::build_converted(in, o, &notes);
  if (!quiet)
    for (const auto& w : notes.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  g.write(out, make_progress(quiet, "writing " + out));
  if (!quiet && notes.ternarized > 0)
    std::fprintf(stderr,
                 "note: %zu float projection tensors ternarized: %d exactly ternary x one scale (lossless), %d by "
                 "BitNet's absmean rule (s = mean |W|, w = clamp(round(W / s), -1, 1))\n",
                 notes.ternarized, notes.ternarize->exact.load(), notes.ternarize->absmean.load());
  if (!quiet)
    std::fprintf(stderr, "wrote %s: %zu ternary tensors re-packed, %zu requantized, %zu copied, in %.2f s\n",
                 out.c_str(), notes.repacked, notes.requantized, notes.copied, seconds_since(t0));
  return 0;
}

int cmd_synth(args& a) {
  std::string out;
  cv::synth_options o;
  bool have_shape = false, quiet = false;
  while (a.more()) {
    const std::string_view s = a.next();
    if (s == "-h" || s == "--help") {
      std::fputs(kSynthHelp, stdout);
      return 0;
    } else if (s == "-o" || s == "--output") {
      out = a.value(s);
    } else if (s == "--shape") {
      o.shape = a.value(s);
      have_shape = true;
      if (!cv::find_synth_shape(o.shape))
        throw usage_error{"--shape " + o.shape + ": expected one of " + cv::synth_shape_names()};
    } else if (s == "--type") {
      o.type = ternary_arg(s, a.value(s));
    } else if (s == "--head-type") {
      o.head = head_arg(s, a.value(s));
    } else if (s == "--layers") {
      o.layers = static_cast<std::int64_t>(parse_u64(s, a.value(s), 1, 4096));
    } else if (s == "--vocab") {
      o.vocab = static_cast<std::int64_t>(parse_u64(s, a.value(s), 1, std::uint64_t{1} << 24));
    } else if (s == "--seed") {
      o.seed = parse_u64(s, a.value(s), 0, UINT64_MAX);
    } else if (s == "-t" || s == "--threads") {
      o.threads = static_cast<unsigned>(parse_u64(s, a.value(s), 1, 256));
    } else if (s == "-q" || s == "--quiet") {
      quiet = true;
    } else {
      throw usage_error{"synth: unexpected argument " + std::string(s)};
    }
  }
  if (!have_shape) throw usage_error{"synth: --shape is required"};
  if (out.empty()) throw usage_error{"synth: -o OUT.gguf is required"};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> notes;
  const bitnet::gguf::writer g = cv::build_synth(o, &notes);
  if (!quiet)
    for (const auto& n : notes) std::fprintf(stderr, "note: %s\n", n.c_str());
  g.write(out, make_progress(quiet, "writing " + out));
  if (!quiet) std::fprintf(stderr, "wrote %s (%zu tensors) in %.2f s\n", out.c_str(), g.tensor_count(), seconds_since(t0));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) a.v.emplace_back(argv[i]);
  const char* cmd_name = "";
  try {
    if (!a.more()) throw usage_error{"no command given"};
    const std::string_view cmd = a.next();
    cmd_name = argv[1];
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
      std::fputs(kMainHelp, stdout);
      return 0;
    }
    if (cmd == "from-llama2c") return cmd_from_llama2c(a);
    if (cmd == "convert") return cmd_convert(a);
    if (cmd == "synth") return cmd_synth(a);
    throw usage_error{"unknown command '" + std::string(cmd) + "'"};
  } catch (const usage_error& e) {
    std::fprintf(stderr, "bitnet-convert: %s\n", e.msg.c_str());
    const std::string c = cmd_name;
    if (c == "from-llama2c" || c == "convert" || c == "synth")
      std::fprintf(stderr, "Run 'bitnet-convert %s --help' for usage.\n", c.c_str());
    else
      std::fputs(kMainHelp, stderr);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bitnet-convert: error: %s\n", e.what());
    return 1;
  }
}
