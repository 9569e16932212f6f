// The generation loop (generate.hpp has the contract).
#include "bitnet/runner/generate.hpp"

#include <algorithm>  // std::min, std::max
#include <chrono>     // prefill / decode timings
#include <optional>   // the loop's own decoder

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

  // Text that may still turn out to be the start of a stop string stays in `held`.
  std::string held;
  std::size_t longest_stop = 0;
  for (const auto& s : params.stop) longest_stop = std::max(longest_stop, s.size());
  const auto release = [&](std::string piece, std::int32_t id) -> bool {  // false: a stop string was found
    if (longest_stop == 0) {
      g.text += piece;
      return !on_token || on_token({id, piece});
    }
    held += piece;
    std::size_t at = std::string::npos;
    for (const auto& s : params.stop)
      if (!s.empty()) at = std::min(at, held.find(s));
    if (at != std::string::npos) {
      const std::string out = held.substr(0, at);
      held.clear();
      g.text += out;
      if (on_token) (void)on_token({id, out});
      g.stop = stop_reason::stop_string;
      return false;
    }
    std::size_t keep = 0;  // longest suffix of `held` that is a prefix of a stop string
    for (const auto& s : params.stop)
      for (std::size_t k = std::min(held.size(), s.size() - 1); k > keep; --k)
        if (held.compare(held.size() - k, k, s, 0, k) == 0) {
          keep = k;
          break;
        }
    const std::string out = held.substr(0, held.size() - keep);
    held.erase(0, held.size() - keep);
    g.text += out;
    return !on_token || on_token({id, out});
  };

  const auto t1 = clock_type::now();
  g.stop = stop_reason::length;
  for (std::int64_t i = 0; params.max_tokens < 0 || i < params.max_tokens; ++i) {
    const std::int32_t id = smp.sample(logits);
    smp.accept(id);
    g.pending = id;
    if (tk.is_eog(id) && !params.ignore_eos) {
      g.stop = stop_reason::eos;
      break;
    }
    g.ids.push_back(id);
    if (!release(decoder->push(id), id)) {
      if (g.stop != stop_reason::stop_string) g.stop = stop_reason::callback;
      break;
    }
    if (params.max_tokens >= 0 && i + 1 == params.max_tokens) break;
    if (seq.pos() >= seq.n_ctx()) {
      g.stop = stop_reason::context_full;
      break;
    }
    logits = seq.eval(std::span<const std::int32_t>(&g.pending, 1));
    ++g.decode_tokens;
    g.pending = -1;
  }
  g.decode_ms = ms_since(t1);
  if (g.stop != stop_reason::stop_string) {
    const std::string rest = held + decoder->flush();
    g.text += rest;
    if (on_token) (void)on_token({-1, rest});
  }
  return g;
}

}  // namespace bitnet::run
