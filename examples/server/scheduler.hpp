// examples/server/scheduler.hpp - continuous batching over the runner's multi-sequence session.
//
// The scheduler owns one run::session with S sequences (slots) of n_ctx positions each, and one
// thread that steps it. A request is a job: its prompt ids, generation and sampling parameters.
// submit() puts a job in a bounded queue (or refuses it: queue full, closed); at every step the
// scheduler thread
//   1. moves queued jobs into free slots (first come, first served) and drops cancelled ones;
//   2. builds one batch (run::batch): the next token of every slot that is generating, then up to
//      `chunk` prompt tokens of slots still prefilling, oldest first (the last prompt token is
//      marked for logits). A new prompt therefore delays the others by at most one chunk per
//      step, and every generating slot advances by one token per step;
//   3. runs it as one forward pass (session::decode: the ternary and head matrix products see
//      all the batch's tokens at once, so the weights are read once per step; attention runs
//      per token against its own sequence's cache);
//   4. samples each marked row with its slot's own sampler (run::sampler, seeded per job), feeds
//      the id to the slot's run::generation_stream (end of generation, max_tokens, stop
//      strings, UTF-8) and hands the released text to the job;
//   5. ends finished and cancelled jobs and clears their sequences (seq_clear) at once.
// A sequence's tokens are computed by the same per-row code whatever else is in the batch, so
// a job's logits, and its greedy output, are bit-identical whether it ran alone or with others.
//
// Jobs are shared between the HTTP side and the scheduler: the HTTP thread waits on job::wait()
// for tokens and the end; job::cancel() (a client that went away) makes the scheduler free the
// slot at its next step. Nothing here knows about HTTP or JSON.
#pragma once

#include <array>               // histogram buckets
#include <atomic>              // cancellation flag
#include <chrono>              // timings
#include <condition_variable>  // job and scheduler wake-ups
#include <cstdint>             // fixed-width integers
#include <deque>               // the queue, job events
#include <memory>              // shared jobs
#include <mutex>               // job and scheduler state
#include <optional>            // per-slot state
#include <string>              // text
#include <thread>              // the scheduler thread
#include <vector>              // slots, ids

#include <bitnet/runner/generate.hpp>
#include <bitnet/runner/model.hpp>
#include <bitnet/runner/sampler.hpp>
#include <bitnet/runner/session.hpp>
#include <bitnet/runner/tokenizer.hpp>

namespace bitnet::serve {

using clock_type = std::chrono::steady_clock;

// What a job asks for (validated by the HTTP side: ids inside the vocabulary, a prompt that fits).
struct job_spec {
  std::vector<std::int32_t> prompt;  // token ids, BOS included when wanted
  run::generation_params gen;        // max_tokens (-1: until the context is full), stop, ignore_eos
  run::sampler_params sampling;
  int top_logprobs = -1;             // -1: no log-probabilities; else the chosen token's and N alternatives
};

// One generated token as the HTTP side receives it; id -1 carries text released at the end
// (what a stop-string prefix or an incomplete character had held back).
struct token_out {
  std::int32_t id = -1;
  std::string text;
  float logprob = 0.0f;                   // with top_logprobs >= 0
  std::vector<run::token_logprob> top;    // the top_logprobs most likely tokens
};

enum class finish_reason {
  stop,       // an end-of-generation token or a stop string
  length,     // max_tokens, or the sequence's context is full
  cancelled,  // job::cancel() (the client went away)
  shutdown,   // the server stopped before the job ended
  error       // the forward pass failed (message in job_result::error)
};
const char* finish_reason_name(finish_reason r) noexcept;

struct job_result {
  finish_reason reason = finish_reason::stop;
  run::stop_reason stop = run::stop_reason::length;  // the generation's own reason (stop / length)
  std::string error;
  std::int64_t prompt_tokens = 0, completion_tokens = 0;
  double queued_ms = 0, first_token_ms = 0, total_ms = 0;  // from submit(): to a slot, to the first token, to the end
};

class job {
 public:
  explicit job(job_spec s) : spec_(std::move(s)) {}
  job(const job&) = delete;
  job& operator=(const job&) = delete;

  const job_spec& spec() const noexcept { return spec_; }

  // Waits up to `timeout` for tokens or the end; appends the tokens that arrived to `out`.
  // Returns true once the job has ended and every token was handed out (result() is then final).
  template <class Rep, class Period>
  bool wait(std::vector<token_out>& out, std::chrono::duration<Rep, Period> timeout) {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait_for(lock, timeout, [&] { return !events_.empty() || ended_; });
    for (auto& e : events_) out.push_back(std::move(e));
    events_.clear();
    return ended_;
  }
  // The client went away: the scheduler ends the job (finish_reason::cancelled) at its next step.
  void cancel() noexcept { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const noexcept { return cancelled_.load(std::memory_order_relaxed); }
  bool ended() const {
    std::lock_guard<std::mutex> lock(m_);
    return ended_;
  }
  job_result result() const {
    std::lock_guard<std::mutex> lock(m_);
    return result_;
  }

 private:
  friend class scheduler;
  void emit(token_out t) {
    {
      std::lock_guard<std::mutex> lock(m_);
      events_.push_back(std::move(t));
    }
    cv_.notify_all();
  }
  void end(job_result r) {
    {
      std::lock_guard<std::mutex> lock(m_);
      if (ended_) return;
      r.total_ms = ms_since_submit();
      result_ = std::move(r);
      ended_ = true;
    }
    cv_.notify_all();
  }
  double ms_since_submit() const {
    return std::chrono::duration<double, std::milli>(clock_type::now() - submitted_).count();
  }

  job_spec spec_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::deque<token_out> events_;
  bool ended_ = false;
  job_result result_;
  std::atomic<bool> cancelled_{false};
  clock_type::time_point submitted_ = clock_type::now();
  double queued_ms_ = 0, first_token_ms_ = 0;  // the scheduler thread's, read after end()
};

struct scheduler_options {
  int slots = 4;                   // sequences decoded together (KV cache: slots x n_ctx positions)
  std::int64_t n_ctx = 2048;       // positions per slot
  std::int64_t chunk = 64;         // prompt tokens prefilled per step
  std::size_t queue = 16;          // jobs waiting for a slot beyond the busy slots
  run::kv_type kv = run::kv_type::f32;
};

// Counters for /metrics and /health (a consistent snapshot).
struct scheduler_stats {
  static constexpr std::array<int, 8> kBuckets{1, 2, 4, 8, 16, 32, 64, 128};  // sequences per step
  int slots = 0, active = 0;
  std::size_t queued = 0;
  std::uint64_t steps = 0, prompt_tokens = 0, generated_tokens = 0;
  std::uint64_t finished[5] = {};                    // by finish_reason
  std::array<std::uint64_t, kBuckets.size() + 1> batch_hist{};  // non-cumulative counts; last: > 128
  std::uint64_t batch_sum = 0;                       // sequences summed over steps
  double step_seconds = 0;                           // time in steps' forward passes
  double recent_tokens_per_second = 0;               // generated tokens over the last 10 s
};

class scheduler {
 public:
  // Allocates the session (KV cache for o.slots x o.n_ctx) and starts the scheduler thread.
  scheduler(const run::model& m, run::thread_pool& pool, const scheduler_options& o);
  ~scheduler();  // ends every job (finish_reason::shutdown) and joins the thread
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  enum class admission { accepted, queue_full, closed };
  // Queues a job unless slots + queue are all taken (queue_full) or close() was called.
  admission submit(const std::shared_ptr<job>& j);
  // Refuses new jobs from now on; jobs already submitted run to their end.
  void close();
  // No job active or queued.
  bool idle() const;
  // Ends every active and queued job with `why` (shutdown past its deadline).
  void cancel_all(finish_reason why);

  scheduler_stats stats() const;
  std::int64_t n_ctx() const noexcept { return opt_.n_ctx; }
  std::size_t kv_bytes() const noexcept { return sess_.kv_bytes(); }
  const scheduler_options& options() const noexcept { return opt_; }

 private:
  struct slot {
    std::shared_ptr<job> j;
    std::size_t fed = 0;        // prompt tokens evaluated
    std::int32_t next = -1;     // sampled id to evaluate at the next step (generating)
    std::uint64_t order = 0;    // admission order: prefill priority
    std::optional<run::sampler> smp;
    std::optional<tok::stream_decoder> dec;
    std::optional<run::generation_stream> gs;  // reads *dec: a slot never moves
    bool first_token = true;
  };

  void loop();
  void admit(std::unique_lock<std::mutex>& lock);
  void start(slot& s, std::shared_ptr<job> j);
  void release(int seq, job_result r);
  void step();
  void draw(int seq, std::span<const float> logits, token_out& t);
  void deliver(int seq, token_out t);
  void record_step(double seconds, int sequences, std::uint64_t prompt_tokens, std::uint64_t generated);

  const run::model* m_;
  const tok::tokenizer* tk_;
  run::thread_pool* pool_;  // the forward pass's, used by this thread only
  scheduler_options opt_;
  run::session sess_;
  std::vector<slot> slots_;  // sized once: sequence i of the session

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<job>> queue_;
  int active_ = 0;  // slots holding a job (written under mu_)
  bool closed_ = false, stop_ = false;
  bool cancel_active_ = false;                  // cancel_all(): end the active jobs at the next step
  std::optional<finish_reason> cancel_reason_;  // set by cancel_all()
  std::uint64_t admitted_ = 0;
  scheduler_stats stats_;
  std::deque<std::pair<clock_type::time_point, std::uint64_t>> recent_;  // (step end, tokens generated)
  std::thread thread_;
};

}  // namespace bitnet::serve
