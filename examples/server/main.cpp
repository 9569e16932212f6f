// bitnet-server - an OpenAI-compatible HTTP server for ternary GGUF models, serving many
// requests at once by batching their next tokens into one forward pass (scheduler.hpp).
//
// A thin front end over the runner component (bitnet/runner/*.hpp): the model is loaded once;
// one scheduler thread steps a multi-sequence session on the runner's thread pool; HTTP is
// cpp-httplib's thread pool (Debian's libcpp-httplib-dev), JSON is nlohmann-json (openai.hpp).
// Each completion request is parsed and checked on its HTTP thread, queued as a job, and
// answered as the scheduler releases its tokens: server-sent events for "stream": true, one
// JSON object otherwise. Both are written with chunked transfer encoding, so the HTTP thread
// notices a client that went away (a failed write, or the socket reading end-of-file) and
// cancels the job, which frees its slot at the next step.
//
// Threads: SIGINT and SIGTERM are blocked in every thread and taken by one signal thread
// (sigtimedwait), which runs the shutdown: refuse new requests (503), wait for those in flight
// up to --shutdown-timeout, cut the rest, stop the listener, exit 0. SIGPIPE is ignored (a
// write to a closed socket fails with EPIPE instead).
#include <httplib.h>
#include <pthread.h>  // pthread_sigmask
#include <signal.h>   // sigtimedwait
#include <sys/socket.h>  // setsockopt
#include <sys/time.h> // gettimeofday for log timestamps

#include <algorithm>  // std::min
#include <atomic>     // flags and counters shared between threads
#include <chrono>     // timeouts
#include <cstdarg>    // log formatting
#include <cstdio>     // stderr
#include <cstring>    // strsignal
#include <ctime>      // created timestamps
#include <exception>  // handler errors
#include <filesystem> // the model id from the file name
#include <map>        // request counters
#include <memory>     // shared jobs
#include <mutex>      // log and counters
#include <string>     // text
#include <thread>     // the signal thread
#include <vector>     // tokens

#include <bitnet/runner/chat.hpp>
#include <bitnet/runner/model.hpp>
#include <bitnet/runner/thread_pool.hpp>

#include "openai.hpp"
#include "options.hpp"
#include "scheduler.hpp"

namespace {

namespace bs = bitnet::serve;
namespace br = bitnet::run;
using bs::json;
using namespace std::chrono_literals;

// ---------------------------------------------------------------- log (stderr, timestamped)

std::mutex g_log_mutex;

void logf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void logf(const char* fmt, ...) {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  std::tm tm{};
  const std::time_t secs = tv.tv_sec;
  gmtime_r(&secs, &tm);
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(tv.tv_usec / 1000));
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::fprintf(stderr, "%s bitnet-server: %s\n", stamp, msg);
  std::fflush(stderr);
}

// ---------------------------------------------------------------- the server

class server {
 public:
  server(const bs::options& o, const br::model& m, bs::scheduler& sched, bs::model_context mc)
      : opt_(o), m_(m), sched_(sched), mc_(std::move(mc)), started_(std::time(nullptr)) {
    const int threads = o.http_threads > 0 ? o.http_threads : static_cast<int>(2 * (o.parallel + o.queue) + 4);
    svr_.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
    svr_.set_payload_max_length(static_cast<std::size_t>(o.max_body));
    svr_.set_keep_alive_timeout(2);  // idle connections hold an HTTP thread this long (and delay shutdown)
    svr_.set_tcp_nodelay(true);      // stream events go out as they are written
    // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which lets a second server bind
    // the same port and silently take half of the connections instead of failing.
    svr_.set_socket_options([](socket_t sock) {
      const int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });

    svr_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (opt_.api_key.empty() || req.path == "/health" || authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, bs::api_error(401, "invalid or missing API key (expected 'Authorization: Bearer KEY')", {},
                                    "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    });
    svr_.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // our own errors have bodies
      if (res.status == 413) {  // Content-Length over the limit (httplib skipped the body)
        res.set_header("Connection", "close");
        send_error(res, too_large());
      } else if (res.status == 404) {
        send_error(res, bs::api_error(404, "no endpoint " + req.method + " " + req.path, {}, "not_found"));
      } else {
        send_error(res, bs::api_error(res.status, "the request could not be handled (HTTP " + std::to_string(res.status) + ")"));
      }
      return httplib::Server::HandlerResponse::Handled;
    }));
    svr_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      logf("internal error: %s", what.c_str());
      send_error(res, bs::api_error(500, "internal error: " + what, {}, {}, "server_error"));
    });
    svr_.set_logger([this](const httplib::Request& req, const httplib::Response& res) { count(req, res); });

    svr_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& rd) {
      generate(bs::endpoint::chat, req, res, rd);
    });
    svr_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& rd) {
      generate(bs::endpoint::completions, req, res, rd);
    });
    svr_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, json{{"object", "list"}, {"data", json::array({model_object()})}});
    });
    svr_.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.matches[1] == mc_.model_id)
        send_json(res, 200, model_object());
      else
        send_error(res, bs::api_error(404, "the model '" + req.matches[1].str() + "' does not exist", "model", "model_not_found"));
    });
    svr_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      const bs::scheduler_stats s = sched_.stats();
      json j = {{"status", closing_ ? "shutting down" : "ok"},
                {"slots", s.slots},
                {"slots_busy", s.active},
                {"queued", s.queued}};
      send_json(res, closing_ ? 503 : 200, j);
    });
    svr_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
    });
  }

  // Binds (port 0: any free port); returns the port, or -1.
  int bind() {
    if (opt_.port == 0) return svr_.bind_to_any_port(opt_.host);
    return svr_.bind_to_port(opt_.host, opt_.port) ? opt_.port : -1;
  }
  void listen() { svr_.listen_after_bind(); }
  // Stops the listener (waits, bounded, for listen() to have started: a stop before it is lost).
  void stop() {
    for (int i = 0; i < 500 && !svr_.is_running(); ++i) std::this_thread::sleep_for(10ms);
    svr_.stop();
  }

  // Shutdown: refuse new requests, wait for those in flight (bounded), cut the rest.
  void drain(std::chrono::seconds timeout, const sigset_t& signals) {
    closing_ = true;
    sched_.close();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    const timespec tick{0, 100'000'000};
    bool forced = false;
    while (!(sched_.idle() && in_flight_ == 0)) {
      if (std::chrono::steady_clock::now() >= deadline) break;
      if (sigtimedwait(&signals, nullptr, &tick) > 0) {
        forced = true;
        logf("second signal: not waiting any longer");
        break;
      }
    }
    if (!(sched_.idle() && in_flight_ == 0)) {
      const bs::scheduler_stats s = sched_.stats();
      logf("cutting %d request(s) in flight and %zu queued%s", s.active, s.queued, forced ? "" : " (--shutdown-timeout)");
      sched_.cancel_all(bs::finish_reason::shutdown);
      const auto cut_deadline = std::chrono::steady_clock::now() + 5s;
      while (in_flight_ > 0 && std::chrono::steady_clock::now() < cut_deadline) std::this_thread::sleep_for(10ms);
    }
  }

 private:
  bool authorized(const httplib::Request& req) const {
    const std::string want = "Bearer " + opt_.api_key;
    const std::string& got = req.get_header_value("Authorization");
    // Compared in constant time for equal lengths (the key's length is not a secret worth keeping).
    if (got.size() != want.size()) return false;
    unsigned char diff = 0;
    for (std::size_t i = 0; i < got.size(); ++i) diff |= static_cast<unsigned char>(got[i] ^ want[i]);
    return diff == 0;
  }

  static void send_json(httplib::Response& res, int status, const json& j) {
    res.status = status;
    res.set_content(bs::dump(j), "application/json");
  }
  static void send_error(httplib::Response& res, const bs::api_error& e) {
    if (e.status == 503) res.set_header("Retry-After", "1");
    send_json(res, e.status, bs::error_body(e));
  }
  bs::api_error too_large() const {
    return bs::api_error(400, "the request body is larger than " + std::to_string(opt_.max_body) + " bytes (--max-body)", {},
                         "request_too_large");
  }

  json model_object() const {
    return {{"id", mc_.model_id}, {"object", "model"}, {"created", started_}, {"owned_by", "bitnet"},
            {"meta", {{"arch", m_.info().arch}, {"n_ctx", mc_.n_ctx}, {"n_vocab", m_.info().n_vocab},
                      {"slots", opt_.parallel}}}};
  }

  // POST /v1/chat/completions and /v1/completions.
  void generate(bs::endpoint kind, const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    const auto t0 = std::chrono::steady_clock::now();
    if (closing_) {
      send_error(res, bs::api_error(503, "the server is shutting down", {}, "shutting_down", "server_error"));
      return;
    }
    std::string body;
    bool too_big = false;
    const bool read_ok = reader([&](const char* d, std::size_t n) {
      if (body.size() + n > static_cast<std::size_t>(opt_.max_body)) {
        too_big = true;
        return false;
      }
      body.append(d, n);
      return true;
    });
    if (too_big || res.status == 413) {
      res.set_header("Connection", "close");  // the rest of the body is not read
      send_error(res, too_large());
      return;
    }
    if (!read_ok) {
      res.set_header("Connection", "close");
      send_error(res, bs::api_error(400, "could not read the request body"));
      return;
    }
    bs::request r;
    try {
      const json j = bs::parse_body(body);
      r = kind == bs::endpoint::chat ? bs::parse_chat(j, mc_) : bs::parse_completion(j, mc_);
    } catch (const bs::api_error& e) {
      if (!opt_.quiet) logf("%s %s %d: %s", req.method.c_str(), req.path.c_str(), e.status, e.what());
      send_error(res, e);
      return;
    }
    auto job = std::make_shared<bs::job>(r.spec);
    switch (sched_.submit(job)) {
      case bs::scheduler::admission::accepted: break;
      case bs::scheduler::admission::queue_full:
        ++rejected_full_;
        send_error(res, bs::api_error(503, "all slots are busy and the queue is full; retry later", {}, "queue_full",
                                      "server_error"));
        return;
      case bs::scheduler::admission::closed:
        send_error(res, bs::api_error(503, "the server is shutting down", {}, "shutting_down", "server_error"));
        return;
    }

    auto writer = std::make_shared<bs::response_writer>(r, mc_, bs::new_id(kind), static_cast<std::int64_t>(std::time(nullptr)));
    ++in_flight_;
    const std::string what = req.path + (r.stream ? " (stream)" : "");
    // Runs when httplib is done with the response, whatever happened: a job still running then
    // lost its client.
    const auto release = [this, job, what, t0](bool) {
      if (!job->ended()) {
        job->cancel();
        if (!opt_.quiet) logf("%s: the client went away; cancelled", what.c_str());
      } else if (!opt_.quiet) {
        const bs::job_result x = job->result();
        logf("%s: %lld prompt + %lld generated tokens, %s, queued %.0f ms, first token %.0f ms, total %.0f ms",
             what.c_str(), static_cast<long long>(x.prompt_tokens), static_cast<long long>(x.completion_tokens),
             bs::finish_reason_name(x.reason), x.queued_ms, x.first_token_ms,
             std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      --in_flight_;
    };
    const auto failure = [](const bs::job_result& x) {
      if (x.reason == bs::finish_reason::shutdown)
        return bs::api_error(503, "the server shut down before the request finished", {}, "shutting_down", "server_error");
      if (x.reason == bs::finish_reason::cancelled)
        return bs::api_error(503, "the request was cancelled", {}, "cancelled", "server_error");
      return bs::api_error(500, "generation failed: " + x.error, {}, {}, "server_error");
    };
    const auto ok = [](const bs::job_result& x) {
      return x.reason == bs::finish_reason::stop || x.reason == bs::finish_reason::length;
    };

    if (r.stream) {
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");  // nginx: pass events through unbuffered
      res.set_chunked_content_provider(
          "text/event-stream",
          [job, writer, failure, ok](std::size_t, httplib::DataSink& sink) {
            std::vector<bs::token_out> tokens;
            for (;;) {
              tokens.clear();
              const bool ended = job->wait(tokens, 100ms);
              std::string out = writer->chunks(tokens);
              if (ended) {
                const bs::job_result x = job->result();
                out += ok(x) ? writer->stream_end(x) : writer->stream_error(failure(x));
              }
              if (!out.empty() && !sink.write(out.data(), out.size())) {
                job->cancel();
                return false;
              }
              if (ended) {
                sink.done();
                return true;
              }
              if (!sink.is_writable()) {  // the client closed the connection
                job->cancel();
                return false;
              }
            }
          },
          release);
    } else {
      res.set_chunked_content_provider(
          "application/json",
          [job, writer, failure, ok](std::size_t, httplib::DataSink& sink) {
            std::vector<bs::token_out> tokens;
            for (;;) {
              tokens.clear();
              const bool ended = job->wait(tokens, 100ms);
              writer->add(tokens);
              if (ended) {
                const bs::job_result x = job->result();
                const std::string out = bs::dump(ok(x) ? writer->body(x) : bs::error_body(failure(x)));
                if (!sink.write(out.data(), out.size())) return false;
                sink.done();
                return true;
              }
              if (!sink.is_writable()) {
                job->cancel();
                return false;
              }
            }
          },
          release);
    }
  }

  // Requests by endpoint and status (the logger runs once per response).
  void count(const httplib::Request& req, const httplib::Response& res) {
    std::string ep = req.path;
    if (ep != "/v1/chat/completions" && ep != "/v1/completions" && ep != "/v1/models" && ep != "/health" && ep != "/metrics")
      ep = ep.rfind("/v1/models/", 0) == 0 ? "/v1/models" : "other";
    std::lock_guard<std::mutex> lock(count_mutex_);
    ++requests_[{ep, res.status}];
  }

  std::string metrics_text() {
    const bs::scheduler_stats s = sched_.stats();
    std::string o;
    const auto line = [&](const std::string& l) { o += l + "\n"; };
    const auto num = [](double v) {
      char b[64];
      std::snprintf(b, sizeof b, "%.6g", v);
      return std::string(b);
    };
    line("# HELP bitnet_requests_total HTTP requests answered, by endpoint and status code.");
    line("# TYPE bitnet_requests_total counter");
    {
      std::lock_guard<std::mutex> lock(count_mutex_);
      for (const auto& [k, n] : requests_)
        line("bitnet_requests_total{endpoint=\"" + k.first + "\",code=\"" + std::to_string(k.second) + "\"} " +
             std::to_string(n));
    }
    line("# HELP bitnet_requests_rejected_total Completion requests refused with 503 because slots and queue were full.");
    line("# TYPE bitnet_requests_rejected_total counter");
    line("bitnet_requests_rejected_total " + std::to_string(rejected_full_.load()));
    line("# HELP bitnet_requests_finished_total Completion requests that ended, by reason.");
    line("# TYPE bitnet_requests_finished_total counter");
    for (int r = 0; r < 5; ++r)
      line(std::string("bitnet_requests_finished_total{reason=\"") + bs::finish_reason_name(static_cast<bs::finish_reason>(r)) +
           "\"} " + std::to_string(s.finished[r]));
    line("# HELP bitnet_slots Sequence slots (--parallel).");
    line("# TYPE bitnet_slots gauge");
    line("bitnet_slots " + std::to_string(s.slots));
    line("# HELP bitnet_slots_busy Slots holding a request (prefilling or generating).");
    line("# TYPE bitnet_slots_busy gauge");
    line("bitnet_slots_busy " + std::to_string(s.active));
    line("# HELP bitnet_queue_depth Requests waiting for a free slot.");
    line("# TYPE bitnet_queue_depth gauge");
    line("bitnet_queue_depth " + std::to_string(s.queued));
    line("# HELP bitnet_prompt_tokens_total Prompt tokens evaluated.");
    line("# TYPE bitnet_prompt_tokens_total counter");
    line("bitnet_prompt_tokens_total " + std::to_string(s.prompt_tokens));
    line("# HELP bitnet_generated_tokens_total Tokens sampled (end-of-generation tokens included).");
    line("# TYPE bitnet_generated_tokens_total counter");
    line("bitnet_generated_tokens_total " + std::to_string(s.generated_tokens));
    line("# HELP bitnet_tokens_per_second Generated tokens per second over the last 10 seconds.");
    line("# TYPE bitnet_tokens_per_second gauge");
    line("bitnet_tokens_per_second " + num(s.recent_tokens_per_second));
    line("# HELP bitnet_steps_total Forward passes (one per step, all busy slots together).");
    line("# TYPE bitnet_steps_total counter");
    line("bitnet_steps_total " + std::to_string(s.steps));
    line("# HELP bitnet_step_seconds_total Time spent in the steps' forward passes.");
    line("# TYPE bitnet_step_seconds_total counter");
    line("bitnet_step_seconds_total " + num(s.step_seconds));
    line("# HELP bitnet_batch_size Sequences in each step's forward pass.");
    line("# TYPE bitnet_batch_size histogram");
    std::uint64_t cum = 0;
    for (std::size_t b = 0; b < bs::scheduler_stats::kBuckets.size(); ++b) {
      cum += s.batch_hist[b];
      line("bitnet_batch_size_bucket{le=\"" + std::to_string(bs::scheduler_stats::kBuckets[b]) + "\"} " + std::to_string(cum));
    }
    cum += s.batch_hist.back();
    line("bitnet_batch_size_bucket{le=\"+Inf\"} " + std::to_string(cum));
    line("bitnet_batch_size_sum " + std::to_string(s.batch_sum));
    line("bitnet_batch_size_count " + std::to_string(s.steps));
    return o;
  }

  const bs::options& opt_;
  const br::model& m_;
  bs::scheduler& sched_;
  bs::model_context mc_;
  std::int64_t started_;
  httplib::Server svr_;
  std::atomic<bool> closing_{false};
  std::atomic<int> in_flight_{0};
  std::atomic<std::uint64_t> rejected_full_{0};
  std::mutex count_mutex_;
  std::map<std::pair<std::string, int>, std::uint64_t> requests_;
};

int run(const bs::options& o, const sigset_t& signals) {
  // File, config and vocabulary first (cheap), then the weights.
  br::model_file mf = br::model_file::open(o.model);
  const br::config& cfg = mf.cfg();
  (void)mf.require_tokenizer();
  const std::int64_t n_ctx =
      o.n_ctx < 0 ? std::min<std::int64_t>(2048, cfg.n_ctx_train) : o.n_ctx == 0 ? cfg.n_ctx_train : o.n_ctx;
  if (n_ctx > cfg.n_ctx_train)
    logf("warning: context %lld is larger than the model was trained for (%lld)", static_cast<long long>(n_ctx),
         static_cast<long long>(cfg.n_ctx_train));

  const int threads = o.threads > 0 ? o.threads : br::physical_cores();
  br::thread_pool pool(threads);
  br::load_options lo;
  lo.kernels = bitnet::kernel_options::from_env();
  lo.default_luts = !o.no_lut;
  const auto t_load = std::chrono::steady_clock::now();
  const br::model m = br::model::load(std::move(mf), lo, pool);
  for (const auto& w : m.info().warnings) logf("warning: %s", w.c_str());
  for (const auto& n : m.info().notes) logf("note: %s", n.c_str());
  const br::chat_format chat = br::chat_format::detect(m);

  bs::scheduler_options so;
  so.slots = o.parallel;
  so.n_ctx = n_ctx;
  so.chunk = o.chunk;
  so.queue = static_cast<std::size_t>(o.queue);
  so.kv = o.kv_type == "f16" ? br::kv_type::f16 : br::kv_type::f32;
  bs::scheduler sched(m, pool, so);

  std::string id = o.alias;
  if (id.empty()) id = std::filesystem::path(o.model).filename().string();
  server srv(o, m, sched, bs::model_context{&m, &chat, id, n_ctx});

  const br::model_info& i = m.info();
  logf("model %s: %s, %lld layers, d %lld, vocab %lld; weights %s, head %s; chat format %s; loaded in %.1f s", id.c_str(),
       i.arch.c_str(), static_cast<long long>(i.n_layer), static_cast<long long>(i.n_embd), static_cast<long long>(i.n_vocab),
       i.weights_summary().c_str(), i.head_type.c_str(), chat.name(),
       std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count());
  logf("%d slots x %lld positions (KV cache %s, %.1f MiB), prefill %lld tokens per step, queue %lld, %d threads%s",
       o.parallel, static_cast<long long>(n_ctx), br::kv_type_name(so.kv),
       static_cast<double>(sched.kv_bytes()) / (1024.0 * 1024.0), static_cast<long long>(o.chunk),
       static_cast<long long>(o.queue), threads, o.api_key.empty() ? "" : ", API key required");

  const int port = srv.bind();
  if (port < 0) throw std::runtime_error("cannot listen on " + o.host + ":" + std::to_string(o.port) + " (address in use?)");
  const std::string shown = o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;  // IPv6 in brackets
  logf("listening on http://%s:%d", shown.c_str(), port);

  std::atomic<bool> done{false};
  std::thread sig([&] {
    const timespec tick{0, 200'000'000};
    while (!done) {
      const int s = sigtimedwait(&signals, nullptr, &tick);
      if (s <= 0) continue;
      const bs::scheduler_stats st = sched.stats();
      logf("%s: not accepting requests; finishing %d in flight and %zu queued (up to %d s)", strsignal(s), st.active,
           st.queued, o.shutdown_timeout);
      srv.drain(std::chrono::seconds(o.shutdown_timeout), signals);
      srv.stop();
      return;
    }
  });
  srv.listen();
  done = true;
  sig.join();
  logf("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bs::options o;
  try {
    o = bs::parse_args(argc, argv);
  } catch (const bs::usage_error& e) {
    std::fprintf(stderr, "bitnet-server: error: %s (see --help)\n", e.msg.c_str());
    return 2;
  }
  if (o.help) {
    std::fputs(bs::help_text().c_str(), stdout);
    return 0;
  }
  // Before any thread starts, so that every thread inherits the mask and only the signal
  // thread takes SIGINT / SIGTERM.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    return run(o, signals);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    for (char& ch : msg)
      if (ch == '\n') ch = ' ';
    logf("error: %s", msg.c_str());
    return 1;
  }
}
