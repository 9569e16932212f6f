// examples/server/options.hpp - bitnet-server's command line: options, defaults, --help.
//
// parse_args() never exits: it returns the options or throws usage_error with a one-line
// message (main prints it and exits with status 2). --help is generated from the same flag
// table the parser uses (bitnet/runner/cli.hpp), so it lists every flag with its default.
#pragma once

#include <cstdint>  // fixed-width integers
#include <cstdlib>  // std::getenv
#include <string>   // option values
#include <vector>   // the flag table

#include <bitnet/runner/cli.hpp>

namespace bitnet::serve {

using run::usage_error;
namespace cli = run::cli;

struct options {
  std::string model;                // -m
  std::string alias;                // --alias: the model id clients see; "" = the file name
  std::string host = "127.0.0.1";   // --host
  int port = 8080;                  // --port; 0 = any free port (printed)
  int threads = 0;                  // -t; 0 = physical cores
  std::int64_t n_ctx = -1;          // -c, per slot; -1 = min(2048, context_length), 0 = context_length
  int parallel = 4;                 // --parallel: slots
  std::int64_t queue = 16;          // --queue: requests waiting for a slot
  std::int64_t chunk = 64;          // -b: prompt tokens prefilled per step
  std::string api_key;              // --api-key (or BITNET_API_KEY)
  std::int64_t max_body = 1 << 20;  // --max-body bytes
  int shutdown_timeout = 10;        // --shutdown-timeout seconds
  int http_threads = 0;             // --http-threads; 0 = 2 x (parallel + queue) + 4
  std::string kv_type = "f32";      // --kv-type
  bool no_lut = false;              // --no-lut
  bool quiet = false;               // --quiet: no per-request log lines
  bool help = false;
};

namespace detail {

using cli::parse_int;
using flag = cli::flag<options>;

inline const std::vector<flag>& flags() {
  static const std::vector<flag> f = {
      {"-m, --model", "PATH", "BitNet GGUF model file (required)",
       [](options& o, std::string_view, const std::string& v) { o.model = v; }},
      {"--alias", "NAME", "model id in /v1/models and responses (default: the model's file name)",
       [](options& o, std::string_view, const std::string& v) { o.alias = v; }},
      {"--host", "ADDR", "address to listen on; 0.0.0.0 = every interface (default: 127.0.0.1)",
       [](options& o, std::string_view, const std::string& v) { o.host = v; }},
      {"--port", "N", "TCP port; 0 = any free port, printed at start (default: 8080)",
       [](options& o, std::string_view n, const std::string& v) { o.port = static_cast<int>(parse_int(n, v, 0, 65535)); }},
      {"-t, --threads", "N", "threads of the forward pass (default: the number of physical cores)",
       [](options& o, std::string_view n, const std::string& v) { o.threads = static_cast<int>(parse_int(n, v, 1, 1024)); }},
      {"-c, --ctx-size", "N",
       "context of each slot (prompt + output); 0 = the model's context_length (default: min(2048, context_length))",
       [](options& o, std::string_view n, const std::string& v) { o.n_ctx = parse_int(n, v, 0, INT32_MAX); }},
      {"--parallel", "S",
       "sequence slots decoded together; the KV cache holds S x ctx-size positions (default: 4)",
       [](options& o, std::string_view n, const std::string& v) { o.parallel = static_cast<int>(parse_int(n, v, 1, 256)); }},
      {"--queue", "N", "requests that may wait for a free slot; beyond that: 503 with Retry-After (default: 16)",
       [](options& o, std::string_view n, const std::string& v) { o.queue = parse_int(n, v, 0, 1 << 20); }},
      {"-b, --batch-size", "N",
       "prompt tokens prefilled per step, next to the generating slots' tokens (default: 64)",
       [](options& o, std::string_view n, const std::string& v) { o.chunk = parse_int(n, v, 1, 65536); }},
      {"--api-key", "KEY",
       "require 'Authorization: Bearer KEY' on every endpoint but /health (default: $BITNET_API_KEY, else none)",
       [](options& o, std::string_view n, const std::string& v) {
         if (v.empty()) throw usage_error{std::string(n) + ": the key is empty"};
         o.api_key = v;
       }},
      {"--max-body", "BYTES", "largest request body; larger ones get 400 (default: 1048576)",
       [](options& o, std::string_view n, const std::string& v) { o.max_body = parse_int(n, v, 1024, INT32_MAX); }},
      {"--shutdown-timeout", "SEC",
       "on SIGINT / SIGTERM, how long requests in flight may take to finish before they are cut (default: 10)",
       [](options& o, std::string_view n, const std::string& v) { o.shutdown_timeout = static_cast<int>(parse_int(n, v, 0, 86400)); }},
      {"--http-threads", "N", "HTTP worker threads (default: 2 x (parallel + queue) + 4)",
       [](options& o, std::string_view n, const std::string& v) { o.http_threads = static_cast<int>(parse_int(n, v, 1, 4096)); }},
      {"--kv-type", "TYPE", "KV cache element type: f32 or f16 (half the memory) (default: f32)",
       [](options& o, std::string_view n, const std::string& v) {
         if (v != "f32" && v != "f16") throw usage_error{std::string(n) + ": expected f32 or f16, got '" + v + "'"};
         o.kv_type = v;
       }},
      {"--no-lut", "", "keep the 2-bit t2 kernels where the default is the 1.67-bit dot LUT (default: off)",
       [](options& o, std::string_view, const std::string&) { o.no_lut = true; }},
      {"-q, --quiet", "", "no log line per request (start, shutdown and errors are still logged) (default: off)",
       [](options& o, std::string_view, const std::string&) { o.quiet = true; }},
      {"-h, --help", "", "this text", [](options& o, std::string_view, const std::string&) { o.help = true; }},
  };
  return f;
}

}  // namespace detail

inline std::string help_text() {
  std::string s =
      "usage: bitnet-server -m MODEL.gguf [options]\n"
      "\n"
      "Serves a ternary GGUF model over HTTP with OpenAI-compatible endpoints: POST /v1/chat/completions,\n"
      "POST /v1/completions (streaming with \"stream\": true), GET /v1/models, GET /health, GET /metrics\n"
      "(Prometheus). Requests share the forward pass: at every step the next token of each busy slot\n"
      "goes through one batched pass, so the weights are read once per step for all of them.\n"
      "Everything it prints goes to stderr, with timestamps.\n"
      "\n"
      "options:\n";
  s += cli::options_help(detail::flags());
  s +=
      "\n"
      "Environment: BITNET_API_KEY (the key, when --api-key is not given); BITNET_ARCH, BITNET_GEMV,\n"
      "BITNET_GEMM select kernels as in bitnet-generate.\n"
      "Signals: SIGINT / SIGTERM stop accepting requests, let those in flight finish (--shutdown-timeout)\n"
      "and exit 0. Exit status: 0 after a signal, 1 error (model, address in use), 2 bad command line.\n";
  return s;
}

inline options parse_args(int argc, const char* const* argv) {
  options o;
  cli::parse_flags(argc, argv, detail::flags(), o);
  if (o.help) return o;
  if (o.model.empty()) throw usage_error{"no model given (-m MODEL.gguf)"};
  if (o.api_key.empty())
    if (const char* k = std::getenv("BITNET_API_KEY"); k && *k) o.api_key = k;
  return o;
}

}  // namespace bitnet::serve
