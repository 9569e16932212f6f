// bitnet-server-bench - a load driver for bitnet-server: aggregate generation throughput and
// per-request latency against the number of concurrent clients.
//
// For each concurrency C (-C 1,2,4,8,16), C client threads each send R streaming completion
// requests one after another (the same short prompt, "max_tokens": N, "ignore_eos": true, so
// every request generates exactly N tokens; greedy). Timestamps are taken on the client as the
// server-sent events arrive. Reported per level:
//   aggregate tok/s   completion tokens of all requests / wall time of the level (first request
//                     sent to last response ended): what the server delivers to C users at once
//   per-request tok/s a request's decode rate, (N - 1) / (last token - first token), median
//   latency           whole request (p50, p90, p99) and time to first token (p50, p99)
//   steps             the server's forward passes in the level and the mean sequences per pass
//                     (from /metrics: bitnet_steps_total, bitnet_batch_size_sum)
// and the ratio of each level's aggregate tok/s to the first level's. Nothing here times the
// server's internals; run the server with --parallel >= the largest C so no request queues.
//
//   bitnet-server -m MODEL.gguf -t 2 --parallel 16 -c 256 &
//   bitnet-server-bench --port 8080 -C 1,2,4,8,16 -n 64 -r 2
#include <httplib.h>

#include <algorithm>  // std::sort
#include <chrono>     // timestamps
#include <cstdio>     // output
#include <exception>  // errors
#include <mutex>      // results
#include <string>     // text
#include <thread>     // clients
#include <vector>     // results

#include <nlohmann/json.hpp>

#include <bitnet/runner/cli.hpp>

namespace {

using clock_type = std::chrono::steady_clock;
using json = nlohmann::json;
namespace cli = bitnet::run::cli;
using bitnet::run::usage_error;

struct options {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;
  std::vector<int> levels{1, 2, 4, 8, 16};
  int max_tokens = 64;
  int requests = 2;
  std::string prompt = "Once upon a time";
  bool help = false;
};

const std::vector<cli::flag<options>>& flags() {
  static const std::vector<cli::flag<options>> f = {
      {"--host", "ADDR", "server address (default: 127.0.0.1)",
       [](options& o, std::string_view, const std::string& v) { o.host = v; }},
      {"--port", "N", "server port (default: 8080)",
       [](options& o, std::string_view n, const std::string& v) { o.port = static_cast<int>(cli::parse_int(n, v, 1, 65535)); }},
      {"--api-key", "KEY", "sent as 'Authorization: Bearer KEY' (default: none)",
       [](options& o, std::string_view, const std::string& v) { o.api_key = v; }},
      {"-C, --concurrency", "LIST", "concurrent clients per level, comma-separated (default: 1,2,4,8,16)",
       [](options& o, std::string_view n, const std::string& v) {
         o.levels.clear();
         std::size_t at = 0;
         while (at <= v.size()) {
           const std::size_t comma = std::min(v.find(',', at), v.size());
           o.levels.push_back(static_cast<int>(cli::parse_int(n, v.substr(at, comma - at), 1, 1024)));
           at = comma + 1;
         }
       }},
      {"-n, --max-tokens", "N", "tokens generated per request (default: 64)",
       [](options& o, std::string_view n, const std::string& v) { o.max_tokens = static_cast<int>(cli::parse_int(n, v, 2, 1 << 20)); }},
      {"-r, --requests", "R", "requests per client and level (default: 2)",
       [](options& o, std::string_view n, const std::string& v) { o.requests = static_cast<int>(cli::parse_int(n, v, 1, 100000)); }},
      {"-p, --prompt", "TEXT", "prompt of every request (default: \"Once upon a time\")",
       [](options& o, std::string_view, const std::string& v) { o.prompt = v; }},
      {"-h, --help", "", "this text", [](options& o, std::string_view, const std::string&) { o.help = true; }},
  };
  return f;
}

struct sample {
  double latency_ms = 0, ttft_ms = 0, decode_tok_s = 0;
  int tokens = 0;
  std::string error;
};

httplib::Headers headers(const options& o) {
  httplib::Headers h;
  if (!o.api_key.empty()) h.emplace("Authorization", "Bearer " + o.api_key);
  return h;
}

// One streaming request; the token count comes from the final usage chunk.
sample one_request(const options& o) {
  sample s;
  httplib::Client c(o.host, o.port);
  c.set_read_timeout(600, 0);
  const json body = {{"prompt", o.prompt},      {"max_tokens", o.max_tokens}, {"temperature", 0},
                     {"ignore_eos", true},      {"stream", true},             {"stream_options", {{"include_usage", true}}}};
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.headers = headers(o);
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  std::string buf;
  clock_type::time_point first{}, last{};
  int text_events = 0;
  const auto t0 = clock_type::now();
  req.content_receiver = [&](const char* d, std::size_t n, std::uint64_t, std::uint64_t) {
    buf.append(d, n);
    for (std::size_t end; (end = buf.find("\n\n")) != std::string::npos; buf.erase(0, end + 2)) {
      const std::string ev = buf.substr(0, end);
      if (ev.rfind("data: ", 0) != 0 || ev == "data: [DONE]") continue;
      const json j = json::parse(ev.substr(6), nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("error")) s.error = j["error"].value("message", "error event");
      if (j.contains("usage") && j["usage"].is_object()) s.tokens = j["usage"].value("completion_tokens", 0);
      if (j.contains("choices") && !j["choices"].empty() && !j["choices"][0].value("text", "").empty()) {
        const auto now = clock_type::now();
        if (text_events++ == 0) first = now;
        last = now;
      }
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  if (!c.send(req, res, err)) {
    s.error = "request failed: " + httplib::to_string(err);
    return s;
  }
  if (res.status != 200) {
    s.error = "HTTP " + std::to_string(res.status) + ": " + res.body;
    return s;
  }
  const auto t1 = clock_type::now();
  const auto ms = [](clock_type::time_point a, clock_type::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  s.latency_ms = ms(t0, t1);
  s.ttft_ms = text_events ? ms(t0, first) : s.latency_ms;
  if (s.tokens > 1 && last > first) s.decode_tok_s = (s.tokens - 1) / (ms(first, last) / 1000.0);
  return s;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double at = p * static_cast<double>(v.size() - 1);
  const auto i = static_cast<std::size_t>(at);
  const double f = at - static_cast<double>(i);
  return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

// bitnet_steps_total and bitnet_batch_size_sum from /metrics.
std::pair<double, double> steps(const options& o) {
  httplib::Client c(o.host, o.port);
  const auto r = c.Get("/metrics", headers(o));
  if (!r || r->status != 200) return {0, 0};
  const auto value = [&](const std::string& name) {
    const std::size_t at = r->body.find("\n" + name + " ");
    return at == std::string::npos ? 0.0 : std::stod(r->body.substr(at + name.size() + 2));
  };
  return {value("bitnet_steps_total"), value("bitnet_batch_size_sum")};
}

int run(const options& o) {
  {  // one warm-up request (page faults, first allocations) that is not measured
    const sample w = one_request(o);
    if (!w.error.empty()) throw std::runtime_error("warm-up request: " + w.error);
  }
  std::printf("prompt \"%s\", %d tokens per request (ignore_eos, greedy), %d request(s) per client\n\n", o.prompt.c_str(),
              o.max_tokens, o.requests);
  std::printf("| clients | requests | aggregate tok/s | vs first | per-request tok/s (median) | latency p50 / p90 / p99 (ms) | first token p50 / p99 (ms) | steps | sequences per step |\n");
  std::printf("|---:|---:|---:|---:|---:|---|---|---:|---:|\n");
  double base = 0;
  for (const int C : o.levels) {
    std::vector<sample> all;
    std::mutex mu;
    const auto [steps0, seqs0] = steps(o);
    const auto t0 = clock_type::now();
    std::vector<std::thread> clients;
    for (int c = 0; c < C; ++c)
      clients.emplace_back([&] {
        for (int r = 0; r < o.requests; ++r) {
          sample s = one_request(o);
          std::lock_guard<std::mutex> lock(mu);
          all.push_back(std::move(s));
        }
      });
    for (auto& t : clients) t.join();
    const double wall = std::chrono::duration<double>(clock_type::now() - t0).count();
    const auto [steps1, seqs1] = steps(o);
    std::vector<double> lat, ttft, rate;
    long long tokens = 0;
    for (const auto& s : all) {
      if (!s.error.empty()) throw std::runtime_error("a request failed at concurrency " + std::to_string(C) + ": " + s.error);
      lat.push_back(s.latency_ms);
      ttft.push_back(s.ttft_ms);
      rate.push_back(s.decode_tok_s);
      tokens += s.tokens;
    }
    const double agg = static_cast<double>(tokens) / wall;
    if (base == 0) base = agg;
    const double st = steps1 - steps0;
    std::printf("| %d | %zu | %.1f | %.2fx | %.1f | %.0f / %.0f / %.0f | %.0f / %.0f | %.0f | %.2f |\n", C, all.size(), agg,
                agg / base, percentile(rate, 0.5), percentile(lat, 0.5), percentile(lat, 0.9), percentile(lat, 0.99),
                percentile(ttft, 0.5), percentile(ttft, 0.99), st, st > 0 ? (seqs1 - seqs0) / st : 0.0);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  try {
    cli::parse_flags(argc, argv, flags(), o);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "bitnet-server-bench: error: %s (see --help)\n", e.msg.c_str());
    return 2;
  }
  if (o.help) {
    std::printf("usage: bitnet-server-bench [--host ADDR] [--port N] [options]\n\n"
                "Load driver for bitnet-server: aggregate tok/s and latency percentiles against concurrency.\n\noptions:\n%s",
                cli::options_help(flags()).c_str());
    return 0;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bitnet-server-bench: error: %s\n", e.what());
    return 1;
  }
}
