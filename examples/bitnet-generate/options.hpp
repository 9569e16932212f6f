// bitnet-generate/options.hpp - bitnet-generate's command line: options, defaults, --help.
//
// parse_args() never exits: it returns the options or throws usage_error with a one-line
// message; main() prints it and exits with status 2. Every flag, its argument and its default
// appear in help_text(), generated from the table the parser uses (bitnet/runner/cli.hpp).
#pragma once

#include <cstdint>  // fixed-width integers
#include <string>   // option values
#include <vector>   // the flag table

#include <bitnet/runner/cli.hpp>

namespace bitnet::gen {

using run::usage_error;
namespace cli = run::cli;

struct options {
  std::string model;                 // -m
  std::string prompt;                // -p
  std::string prompt_file;           // -f
  bool prompt_given = false;
  std::string prompt_ids;            // --prompt-ids: token ids instead of text
  std::int64_t n_predict = 256;      // -n; -1 = until end of generation or a full context
  std::int64_t n_ctx = -1;           // -c; -1 = min(2048, the model's context_length), 0 = the model's
  std::int64_t n_batch = 64;         // -b
  int threads = 0;                   // -t; 0 = physical cores
  float temp = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  int repeat_last_n = 64;
  std::uint64_t seed = 0;
  bool seed_given = false;
  bool chat = false;
  std::string system;
  bool json = false;
  bool no_bos = false;
  bool ignore_eos = false;
  bool no_echo = false;
  std::string kernel_arch, gemv, gemm;  // "" = BITNET_ARCH / BITNET_GEMV / BITNET_GEMM, else best
  std::string act = "per-token";
  std::string kv_type = "f32";
  bool precise = false;
  bool no_lut = false;
  bool list_kernels = false;
  bool help = false;
};


namespace detail {

using cli::parse_float;
using cli::parse_int;
using cli::parse_u64;
using flag = cli::flag<options>;

inline const std::vector<flag>& flags() {
  static const std::vector<flag> f = {
      {"-m, --model", "PATH", "BitNet GGUF model file (required)",
       [](options& o, std::string_view, const std::string& v) { o.model = v; }},
      {"-p, --prompt", "TEXT", "prompt text, special tokens parsed (default: empty = start from BOS only)",
       [](options& o, std::string_view, const std::string& v) {
         o.prompt = v;
         o.prompt_given = true;
       }},
      {"-f, --file", "PATH", "read the prompt from a file (default: none)",
       [](options& o, std::string_view, const std::string& v) { o.prompt_file = v; }},
      {"--prompt-ids", "IDS",
       "the prompt as token ids (\"1,417,311\", \"1 417 311\" or \"[1, 417]\"), used as given: no BOS is added, "
       "so a sequence from another implementation replays exactly (default: none)",
       [](options& o, std::string_view, const std::string& v) { o.prompt_ids = v; }},
      {"-n, --n-predict", "N", "tokens to generate; -1 = until end of generation or a full context (default: 256)",
       [](options& o, std::string_view n, const std::string& v) { o.n_predict = parse_int(n, v, -1, INT32_MAX); }},
      {"-c, --ctx-size", "N",
       "context size: KV cache positions for prompt + output; 0 = the model's context_length "
       "(default: min(2048, context_length))",
       [](options& o, std::string_view n, const std::string& v) { o.n_ctx = parse_int(n, v, 0, INT32_MAX); }},
      {"-b, --batch-size", "N", "prompt tokens per prefill chunk (batched GEMM) (default: 64)",
       [](options& o, std::string_view n, const std::string& v) { o.n_batch = parse_int(n, v, 1, 65536); }},
      {"-t, --threads", "N", "threads (default: the number of physical cores)",
       [](options& o, std::string_view n, const std::string& v) { o.threads = static_cast<int>(parse_int(n, v, 1, 1024)); }},
      {"--temp", "T", "temperature; 0 = greedy (arg max) (default: 0.8)",
       [](options& o, std::string_view n, const std::string& v) { o.temp = parse_float(n, v, 0.0, 1e6); }},
      {"--top-k", "N", "keep the N most likely tokens; 0 = off (default: 40)",
       [](options& o, std::string_view n, const std::string& v) { o.top_k = static_cast<int>(parse_int(n, v, 0, INT32_MAX)); }},
      {"--top-p", "P", "keep the smallest set of tokens with probability >= P; 1 = off (default: 0.95)",
       [](options& o, std::string_view n, const std::string& v) { o.top_p = parse_float(n, v, 0.0, 1.0); }},
      {"--min-p", "P", "drop tokens less likely than P x the most likely; 0 = off (default: 0.05)",
       [](options& o, std::string_view n, const std::string& v) { o.min_p = parse_float(n, v, 0.0, 1.0); }},
      {"--repeat-penalty", "X", "divide positive / multiply negative logits of recent tokens; 1 = off (default: 1.0)",
       [](options& o, std::string_view n, const std::string& v) { o.repeat_penalty = parse_float(n, v, 1e-6, 1e6); }},
      {"--repeat-last-n", "N", "tokens the repetition penalty looks back over (prompt included) (default: 64)",
       [](options& o, std::string_view n, const std::string& v) { o.repeat_last_n = static_cast<int>(parse_int(n, v, 0, 1 << 20)); }},
      {"--seed", "N", "random seed for sampling (default: random, printed in the summary)",
       [](options& o, std::string_view n, const std::string& v) {
         o.seed = parse_u64(n, v);
         o.seed_given = true;
       }},
      {"--chat", "", "interactive chat; turns are read from stdin, -p is the first one (default: off)",
       [](options& o, std::string_view, const std::string&) { o.chat = true; }},
      {"--system", "TEXT", "system message for --chat (default: none)",
       [](options& o, std::string_view, const std::string& v) { o.system = v; }},
      {"--json", "", "print one JSON object (ids, text, timings) on stdout instead of streaming (default: off)",
       [](options& o, std::string_view, const std::string&) { o.json = true; }},
      {"--no-bos", "", "do not add BOS in front of the prompt (default: as the vocabulary says)",
       [](options& o, std::string_view, const std::string&) { o.no_bos = true; }},
      {"--ignore-eos", "", "keep generating after end-of-generation tokens (default: stop)",
       [](options& o, std::string_view, const std::string&) { o.ignore_eos = true; }},
      {"--no-echo", "", "do not print the prompt before the generated text (default: print it)",
       [](options& o, std::string_view, const std::string&) { o.no_echo = true; }},
      {"--kernel-arch", "NAME", "kernel arch: scalar, avx2, avx512bw, avx512vnni, neon64, neon64dp (default: $BITNET_ARCH, else the best this CPU runs)",
       [](options& o, std::string_view, const std::string& v) { o.kernel_arch = v; }},
      {"--gemv", "NAME", "ternary GEMV variant, e.g. gemv_t2_q8/avx2/b128/r4/u1 (default: $BITNET_GEMV, else the arch's)",
       [](options& o, std::string_view, const std::string& v) { o.gemv = v; }},
      {"--gemm", "NAME", "ternary GEMM variant for prefill (default: $BITNET_GEMM, else the arch's)",
       [](options& o, std::string_view, const std::string& v) { o.gemm = v; }},
      {"--no-lut", "",
       "keep the 2-bit t2 kernels where the default is the 1.67-bit dot LUT (AVX-512 VNNI + VBMI CPUs) (default: off)",
       [](options& o, std::string_view, const std::string&) { o.no_lut = true; }},
      {"--act", "MODE", "ternary activation quantization: per-token (int8 per token, bitnet.cpp) or per-block (Q8_K, ggml's TQ) (default: per-token)",
       [](options& o, std::string_view n, const std::string& v) {
         if (v != "per-token" && v != "per-block")
           throw usage_error{std::string(n) + ": expected per-token or per-block, got '" + v + "'"};
         o.act = v;
       }},
      {"--kv-type", "TYPE", "KV cache element type: f32 or f16 (half the memory; keys and values rounded to f16) (default: f32)",
       [](options& o, std::string_view n, const std::string& v) {
         if (v != "f32" && v != "f16") throw usage_error{std::string(n) + ": expected f32 or f16, got '" + v + "'"};
         o.kv_type = v;
       }},
      {"--precise", "",
       "verification mode: every non-integer quantity in double (int8 activations and exact int32 ternary sums "
       "as the fast path; one token at a time, slow); per-token activations, no --chat (default: off)",
       [](options& o, std::string_view, const std::string&) { o.precise = true; }},
      {"--list-kernels", "", "list the kernel variants of this build and CPU, then exit",
       [](options& o, std::string_view, const std::string&) { o.list_kernels = true; }},
      {"-h, --help", "", "this text",
       [](options& o, std::string_view, const std::string&) { o.help = true; }},
  };
  return f;
}

}  // namespace detail

inline std::string help_text() {
  std::string s =
      "usage: bitnet-generate -m MODEL.gguf [-p PROMPT] [options]\n"
      "\n"
      "Runs a ternary GGUF model (architectures bitnet, bitnet-b1.58, bitnet-25 and llama; projections\n"
      "in I2_S, TQ2_0, TQ1_0, or F32/F16/BF16 ternarized at load) on the CPU and streams the generated\n"
      "text to stdout; a summary (load time, prefill and decode tokens/s, kernels, threads) goes to stderr.\n"
      "\n"
      "options:\n";
  s += cli::options_help(detail::flags());
  s +=
      "\n"
      "Environment: BITNET_ARCH, BITNET_GEMV, BITNET_GEMM select kernels like the flags (flags win).\n"
      "Exit status: 0 ok, 1 error (model, prompt, context), 2 bad command line.\n";
  return s;
}

inline options parse_args(int argc, const char* const* argv) {
  options o;
  cli::parse_flags(argc, argv, detail::flags(), o);
  if (o.help || o.list_kernels) return o;
  if (o.model.empty()) throw usage_error{"no model given (-m MODEL.gguf)"};
  if (o.prompt_given && !o.prompt_file.empty()) throw usage_error{"-p and -f cannot be combined"};
  if (!o.prompt_ids.empty() && (o.prompt_given || !o.prompt_file.empty()))
    throw usage_error{"--prompt-ids cannot be combined with -p or -f"};
  if (!o.prompt_ids.empty() && o.chat) throw usage_error{"--prompt-ids and --chat cannot be combined"};
  if (o.chat && o.json) throw usage_error{"--chat and --json cannot be combined"};
  if (!o.system.empty() && !o.chat) throw usage_error{"--system needs --chat"};
  if (o.precise && o.chat) throw usage_error{"--precise and --chat cannot be combined"};
  if (o.precise && o.act != "per-token") throw usage_error{"--precise needs --act per-token"};
  return o;
}

}  // namespace bitnet::gen
