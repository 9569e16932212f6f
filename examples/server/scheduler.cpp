// Continuous batching (scheduler.hpp has the contract).
#include "scheduler.hpp"

#include <algorithm>  // std::min, std::sort
#include <exception>  // a failed forward pass
#include <utility>    // std::move, std::exchange

namespace bitnet::serve {

namespace {
constexpr auto kRecentWindow = std::chrono::seconds(10);
}  // namespace

const char* finish_reason_name(finish_reason r) noexcept {
  switch (r) {
    case finish_reason::stop: return "stop";
    case finish_reason::length: return "length";
    case finish_reason::cancelled: return "cancelled";
    case finish_reason::shutdown: return "shutdown";
    case finish_reason::error: return "error";
  }
  return "?";
}

scheduler::scheduler(const run::model& m, run::thread_pool& pool, const scheduler_options& o)
    : m_(&m),
      tk_(&m.require_tokenizer()),
      pool_(&pool),
      opt_(o),
      sess_(m, pool, run::session_options{o.n_ctx, o.chunk + o.slots, o.kv, o.slots, false}),
      slots_(static_cast<std::size_t>(o.slots)) {
  if (o.chunk <= 0) throw std::invalid_argument("scheduler: the prefill chunk must be positive");
  stats_.slots = o.slots;
  thread_ = std::thread([this] { loop(); });
}

scheduler::~scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

scheduler::admission scheduler::submit(const std::shared_ptr<job>& j) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || stop_) return admission::closed;
    if (static_cast<std::size_t>(active_) + queue_.size() >= static_cast<std::size_t>(opt_.slots) + opt_.queue)
      return admission::queue_full;
    j->submitted_ = clock_type::now();
    queue_.push_back(j);
  }
  cv_.notify_all();
  return admission::accepted;
}

void scheduler::close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
}

bool scheduler::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_ == 0 && queue_.empty();
}

void scheduler::cancel_all(finish_reason why) {
  std::deque<std::shared_ptr<job>> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued.swap(queue_);
    cancel_reason_ = why;
    cancel_active_ = true;  // the active jobs are the scheduler thread's: it ends them at its next step
    stats_.finished[static_cast<int>(why)] += queued.size();
  }
  for (auto& j : queued) {
    job_result r;
    r.reason = why;
    r.prompt_tokens = static_cast<std::int64_t>(j->spec().prompt.size());
    r.queued_ms = j->ms_since_submit();
    j->end(std::move(r));
  }
  cv_.notify_all();
}

scheduler_stats scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  scheduler_stats s = stats_;
  s.active = active_;
  s.queued = queue_.size();
  const auto now = clock_type::now();
  std::uint64_t n = 0;
  for (const auto& [t, k] : recent_)
    if (now - t <= kRecentWindow) n += k;
  s.recent_tokens_per_second = static_cast<double>(n) / std::chrono::duration<double>(kRecentWindow).count();
  return s;
}

// ---------------------------------------------------------------- the scheduler thread

void scheduler::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || active_ > 0; });
      if (stop_) break;
      admit(lock);
    }
    step();
  }
  // Shutting down: end whatever is left.
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].j) {
      job_result r;
      r.reason = finish_reason::shutdown;
      release(static_cast<int>(i), std::move(r));
    }
  std::deque<std::shared_ptr<job>> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued.swap(queue_);
  }
  for (auto& j : queued) {
    job_result r;
    r.reason = finish_reason::shutdown;
    j->end(std::move(r));
  }
}

// Moves queued jobs into free slots (called with mu_ held).
void scheduler::admit(std::unique_lock<std::mutex>&) {
  std::size_t i = 0;
  while (!queue_.empty()) {
    while (i < slots_.size() && slots_[i].j) ++i;
    if (i == slots_.size()) break;
    std::shared_ptr<job> j = std::move(queue_.front());
    queue_.pop_front();
    if (j->cancelled()) {  // gone before it got a slot
      job_result r;
      r.reason = cancel_reason_.value_or(finish_reason::cancelled);
      r.prompt_tokens = static_cast<std::int64_t>(j->spec().prompt.size());
      r.queued_ms = j->ms_since_submit();
      ++stats_.finished[static_cast<int>(r.reason)];
      j->end(std::move(r));
      continue;
    }
    ++active_;
    start(slots_[i], std::move(j));
  }
}

void scheduler::start(slot& s, std::shared_ptr<job> j) {
  const job_spec& spec = j->spec();
  s.fed = 0;
  s.next = -1;
  s.order = admitted_++;
  s.first_token = true;
  s.gs.reset();
  s.dec.reset();
  s.smp.emplace(spec.sampling, m_->cfg().n_vocab);
  for (const auto id : spec.prompt) s.smp->accept(id);  // the repetition penalty sees the prompt
  s.dec.emplace(*tk_);
  for (const auto id : spec.prompt) (void)s.dec->push(id);  // sets the decoder's spacing rules
  s.gs.emplace(*tk_, spec.gen, *s.dec);
  s.j = std::move(j);
  s.j->queued_ms_ = s.j->ms_since_submit();
}

// Ends the job in slot `seq` and frees the slot and its KV positions. The counters change
// before the job ends, so whoever sees the end also sees the slot free.
void scheduler::release(int seq, job_result r) {
  slot& s = slots_[static_cast<std::size_t>(seq)];
  r.prompt_tokens = static_cast<std::int64_t>(s.j->spec().prompt.size());
  if (s.gs) r.completion_tokens = static_cast<std::int64_t>(s.gs->ids().size());
  r.queued_ms = s.j->queued_ms_;
  r.first_token_ms = s.j->first_token_ms_;
  sess_.seq_clear(seq);
  std::shared_ptr<job> done = std::move(s.j);
  s.j.reset();
  s.gs.reset();
  s.dec.reset();
  s.smp.reset();
  {
    std::lock_guard<std::mutex> lock(mu_);
    --active_;
    ++stats_.finished[static_cast<int>(r.reason)];
  }
  done->end(std::move(r));
}

void scheduler::step() {
  const auto t0 = clock_type::now();
  // Cancelled jobs leave first, so their slots are free for the next admission.
  finish_reason why = finish_reason::cancelled;
  bool all = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    why = cancel_reason_.value_or(finish_reason::cancelled);
    all = std::exchange(cancel_active_, false);
  }
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].j && (all || slots_[i].j->cancelled())) {
      job_result r;
      r.reason = why;
      release(static_cast<int>(i), std::move(r));
    }

  // The batch: every generating slot's next token, then prompt chunks, oldest job first.
  run::batch b;
  std::vector<int> rows;  // slot of each marked token, in batch order
  int sequences = 0;
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].j && slots_[i].next >= 0) {
      b.add(slots_[i].next, static_cast<int>(i), true);
      rows.push_back(static_cast<int>(i));
      ++sequences;
    }
  std::vector<int> prefilling;
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].j && slots_[i].next < 0) prefilling.push_back(static_cast<int>(i));
  std::sort(prefilling.begin(), prefilling.end(), [&](int a, int c) {
    return slots_[static_cast<std::size_t>(a)].order < slots_[static_cast<std::size_t>(c)].order;
  });
  std::int64_t budget = opt_.chunk;
  std::uint64_t prompt_tokens = 0;
  for (const int i : prefilling) {
    if (budget == 0) break;
    slot& s = slots_[static_cast<std::size_t>(i)];
    const auto& prompt = s.j->spec().prompt;
    const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(budget), prompt.size() - s.fed);
    for (std::size_t k = 0; k < n; ++k) {
      const bool last = s.fed + k + 1 == prompt.size();
      b.add(prompt[s.fed + k], i, last);
      if (last) rows.push_back(i);
    }
    s.fed += n;
    budget -= static_cast<std::int64_t>(n);
    prompt_tokens += n;
    ++sequences;
  }
  if (b.empty()) return;

  std::span<const float> logits;
  try {
    logits = sess_.decode(b);
  } catch (const std::exception& e) {
    // Only this batch's jobs fail; their sequences are cleared, the other slots are untouched.
    std::vector<int> in_batch;
    for (const int s : b.seqs())
      if (std::find(in_batch.begin(), in_batch.end(), s) == in_batch.end()) in_batch.push_back(s);
    for (const int s : in_batch) {
      job_result r;
      r.reason = finish_reason::error;
      r.error = e.what();
      release(s, std::move(r));
    }
    return;
  }
  // Counted before sampling, which may end jobs: whoever sees a job's end sees its tokens counted.
  record_step(std::chrono::duration<double>(clock_type::now() - t0).count(), sequences, prompt_tokens, rows.size());
  // Sampling a row scans the vocabulary (a sort of it with top-k / top-p): the rows are spread
  // over the pool's threads; the streams and jobs are then served in batch order.
  const auto V = static_cast<std::size_t>(m_->cfg().n_vocab);
  std::vector<token_out> drawn(rows.size());
  pool_->parallel_for(static_cast<std::int64_t>(rows.size()), 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r)
      draw(rows[static_cast<std::size_t>(r)], logits.subspan(static_cast<std::size_t>(r) * V, V), drawn[static_cast<std::size_t>(r)]);
  });
  for (std::size_t r = 0; r < rows.size(); ++r) deliver(rows[r], std::move(drawn[r]));
}

// Slot `seq`'s next token from its logits row (its own sampler; safe to run for several slots
// at once).
void scheduler::draw(int seq, std::span<const float> logits, token_out& t) {
  slot& s = slots_[static_cast<std::size_t>(seq)];
  t.id = s.smp->sample(logits);
  s.smp->accept(t.id);
  if (s.j->spec().top_logprobs >= 0) t.logprob = run::logprobs(logits, t.id, s.j->spec().top_logprobs, t.top);
}

// Hands the token to the slot's generation stream and its job; ends the job when generation is over.
void scheduler::deliver(int seq, token_out t) {
  slot& s = slots_[static_cast<std::size_t>(seq)];
  const std::int32_t id = t.id;
  if (s.first_token) {
    s.first_token = false;
    s.j->first_token_ms_ = s.j->ms_since_submit();
  }
  run::generation_stream& gs = *s.gs;
  t.text = gs.push(id);
  if (!(gs.done() && gs.reason() == run::stop_reason::eos)) s.j->emit(std::move(t));  // EOS is not output
  if (!gs.done() && sess_.seq_pos(seq) >= opt_.n_ctx) gs.end(run::stop_reason::context_full);
  if (!gs.done()) {
    s.next = id;
    return;
  }
  if (std::string tail = gs.finish(); !tail.empty()) {
    token_out e;
    e.text = std::move(tail);
    s.j->emit(std::move(e));
  }
  job_result r;
  r.stop = gs.reason();
  r.reason = gs.reason() == run::stop_reason::eos || gs.reason() == run::stop_reason::stop_string ? finish_reason::stop
                                                                                                  : finish_reason::length;
  release(seq, std::move(r));
}

void scheduler::record_step(double seconds, int sequences, std::uint64_t prompt_tokens, std::uint64_t generated) {
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.steps;
  stats_.step_seconds += seconds;
  stats_.prompt_tokens += prompt_tokens;
  stats_.generated_tokens += generated;
  stats_.batch_sum += static_cast<std::uint64_t>(sequences);
  std::size_t b = 0;
  while (b < scheduler_stats::kBuckets.size() && sequences > scheduler_stats::kBuckets[b]) ++b;
  ++stats_.batch_hist[b];
  const auto now = clock_type::now();
  recent_.emplace_back(now, generated);
  while (!recent_.empty() && now - recent_.front().first > kRecentWindow) recent_.pop_front();
}

}  // namespace bitnet::serve
