// The generation loop (generate.hpp has the contract).
#include "bitnet/runner/generate.hpp"

#include <algorithm>  // std::min, std::max
#include <chrono>     // prefill / decode timings
#include <optional>   // the loop's own decoder
#include <stdexcept>  // std::logic_error

namespace bitnet::run {

namespace {
using clock_type = std::chrono::steady_clock;
double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}
}  // namespace

const char* stop_reason_name(stop_reason s) noexcept {
  switch (s) {
    case stop_reason::eos: return "eos";
    case stop_reason::length: return "length";
    case stop_reason::context_full: return "context_full";
    case stop_reason::stop_string: return "stop_string";
    case stop_reason::callback: return "callback";
  }
  return "?";
}

generation_stream::generation_stream(const tok::tokenizer& tk, const generation_params& params,
                                     tok::stream_decoder& decoder)
    : tk_(&tk), decoder_(&decoder), params_(params) {
  for (const auto& s : params_.stop) longest_stop_ = std::max(longest_stop_, s.size());
  if (params_.max_tokens == 0) done_ = true;  // reason_: length
}

void generation_stream::end(stop_reason why) noexcept {
  if (done_) return;
  done_ = true;
  reason_ = why;
}

std::string generation_stream::push(std::int32_t id) {
  if (done_) throw std::logic_error("generation_stream: push() after generation ended");
  if (tk_->is_eog(id) && !params_.ignore_eos) {
    end(stop_reason::eos);
    return {};
  }
  ids_.push_back(id);
  std::string out = release(decoder_->push(id));
  if (!done_ && params_.max_tokens >= 0 && static_cast<std::int64_t>(ids_.size()) >= params_.max_tokens)
    end(stop_reason::length);
  return out;
}

// Text that may still turn out to be the start of a stop string stays in held_.
std::string generation_stream::release(std::string piece) {
  if (longest_stop_ == 0) {
    text_ += piece;
    return piece;
  }
  held_ += piece;
  std::size_t at = std::string::npos;
  for (const auto& s : params_.stop)
    if (!s.empty()) at = std::min(at, held_.find(s));
  if (at != std::string::npos) {
    std::string out = held_.substr(0, at);
    held_.clear();
    text_ += out;
    end(stop_reason::stop_string);
    return out;
  }
  std::size_t keep = 0;  // longest suffix of held_ that is a prefix of a stop string
  for (const auto& s : params_.stop)
    for (std::size_t k = std::min(held_.size(), s.size() - 1); k > keep; --k)
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  text_ += out;
  return out;
}

std::string generation_stream::finish() {
  if (!done_) throw std::logic_error("generation_stream: finish() before generation ended");
  if (finished_ || reason_ == stop_reason::stop_string) return {};
  finished_ = true;
  std::string rest = held_ + decoder_->flush();
  held_.clear();
  text_ += rest;
  return rest;
}

generation generate(evaluator& seq, sampler& smp, const tok::tokenizer& tk, std::span<const std::int32_t> prompt,
                    const generation_params& params, const token_callback& on_token, tok::stream_decoder* decoder) {
  generation g;
  std::optional<tok::stream_decoder> own;
  if (!decoder) {
    own.emplace(tk);
    for (const auto id : prompt) (void)own->push(id);
    decoder = &*own;
  }

  const auto t0 = clock_type::now();
  std::span<const float> logits = seq.eval(prompt);
  g.prefill_ms = ms_since(t0);
  g.prefill_tokens = static_cast<std::int64_t>(prompt.size());
  for (const auto id : prompt) smp.accept(id);

  generation_stream gs(tk, params, *decoder);
  bool stopped_by_callback = false;
  const auto t1 = clock_type::now();
  while (!gs.done()) {
    const std::int32_t id = smp.sample(logits);
    smp.accept(id);
    g.pending = id;
    const std::string piece = gs.push(id);
    if (gs.done() && gs.reason() == stop_reason::eos) break;
    const bool go = !on_token || on_token({id, piece});
    // The callback's answer does not matter once a stop string ended the text.
    if (!go && !(gs.done() && gs.reason() == stop_reason::stop_string)) {
      stopped_by_callback = true;
      gs.end(stop_reason::callback);
      break;
    }
    if (gs.done()) break;
    if (seq.pos() >= seq.n_ctx()) {
      gs.end(stop_reason::context_full);
      break;
    }
    logits = seq.eval(std::span<const std::int32_t>(&g.pending, 1));
    ++g.decode_tokens;
    g.pending = -1;
  }
  g.decode_ms = ms_since(t1);
  g.stop = stopped_by_callback ? stop_reason::callback : gs.reason();
  if (g.stop != stop_reason::stop_string) {
    const std::string rest = gs.finish();
    if (on_token) (void)on_token({-1, rest});
  }
  g.ids = gs.ids();
  g.text = gs.text();
  return g;
}

}  // namespace bitnet::run
