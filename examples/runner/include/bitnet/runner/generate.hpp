// bitnet/runner/generate.hpp - the generation loop: prefill, sample, stream, stop.
//
// generate(seq, sampler, tokenizer, prompt, params, on_token) evaluates the prompt on `seq`
// (an evaluator: a session's sequence 0, or the double-precision precise_session), then
// samples, streams and evaluates one token at a time until one of:
//   eos           an end-of-generation token (EOS, or EOT such as <|eot_id|>) was sampled
//                 (unless params.ignore_eos); it is not kept
//   length        params.max_tokens tokens were kept (-1: no limit)
//   context_full  the sequence's context is full
//   stop_string   the text contains one of params.stop (the stop string and what follows it
//                 are not returned)
//   callback      on_token returned false
// Text is released as complete UTF-8 characters (tokenizer's stream_decoder); with stop strings,
// text that may be the start of one is held back until it is known not to be. on_token sees
// every kept token with the text it released (possibly ""), and once more at the end with id
// -1 and whatever was held back; returning false stops the loop right after the token it saw,
// which is how a host stops generation within one token (Ctrl-C, a closed connection).
// The last sampled token is never evaluated (generation.pending): a chat feeds it first when
// the conversation continues. Every evaluated and sampled id goes into the sampler's history
// (repetition penalty). Errors from the evaluator propagate (context_full for a prompt that
// does not fit).
//
// generation_stream is the loop's token and text side on its own, for a host that evaluates
// the tokens itself (a server stepping many sequences in one batch, session::decode): push()
// each sampled id; it applies end of generation, max_tokens and stop strings exactly as
// generate() does (generate() is built on it) and returns the text the id releases.
#pragma once

#include <cstdint>     // fixed-width integers
#include <functional>  // the per-token callback
#include <span>        // prompt ids
#include <string>      // text
#include <vector>      // ids, stop strings

#include "bitnet/runner/sampler.hpp"
#include "bitnet/runner/session.hpp"
#include "bitnet/runner/tokenizer.hpp"

namespace bitnet::run {

enum class stop_reason { eos, length, context_full, stop_string, callback };

// "eos", "length", "context_full", "stop_string", "callback" (the CLI's --json "stop" values).
const char* stop_reason_name(stop_reason s) noexcept;

struct generation_params {
  std::int64_t max_tokens = 256;   // tokens to keep; -1: until end of generation or a full context
  bool ignore_eos = false;         // keep going after end-of-generation tokens
  std::vector<std::string> stop;   // stop strings
};

struct generated_piece {
  std::int32_t id;        // the kept token, or -1 for the final flush
  std::string_view text;  // text released with it
};
// Returns false to stop generation.
using token_callback = std::function<bool(const generated_piece&)>;

struct generation {
  std::vector<std::int32_t> ids;   // kept tokens (an end-of-generation token is not kept)
  std::string text;                // the text released (valid UTF-8)
  stop_reason stop = stop_reason::length;
  std::int32_t pending = -1;       // the last sampled token, not evaluated (-1: none)
  std::int64_t prefill_tokens = 0, decode_tokens = 0;
  double prefill_ms = 0.0, decode_ms = 0.0;
};

// The token and text side of generation, one sampled id at a time (see above). The host samples,
// push()es the id and, while !done(), evaluates it and samples the next; end(reason) stops it
// for a reason outside the stream (context_full, callback). After done(), finish() returns the
// text held back (the tail of a possible stop string, an incomplete UTF-8 character), which
// belongs to the output unless a stop string ended it.
class generation_stream {
 public:
  // `decoder` must outlive the stream; it is fed the generated ids (prime it with the prompt).
  generation_stream(const tok::tokenizer& tk, const generation_params& params, tok::stream_decoder& decoder);

  // A sampled id: returns the text it releases (possibly ""); done() tells whether generation
  // ended with it (an end-of-generation id is not kept and releases nothing). std::logic_error
  // after done().
  std::string push(std::int32_t id);
  // Ends generation for `why` (no effect once done()).
  void end(stop_reason why) noexcept;
  // After done(): the held-back text ("" after a stop string), once; it is appended to text().
  std::string finish();

  bool done() const noexcept { return done_; }
  stop_reason reason() const noexcept { return reason_; }    // meaningful once done()
  const std::vector<std::int32_t>& ids() const noexcept { return ids_; }  // kept ids
  const std::string& text() const noexcept { return text_; }              // released text

 private:
  std::string release(std::string piece);

  const tok::tokenizer* tk_;
  tok::stream_decoder* decoder_;
  generation_params params_;
  std::size_t longest_stop_ = 0;
  std::string held_;  // text that may still turn out to be the start of a stop string
  std::vector<std::int32_t> ids_;
  std::string text_;
  stop_reason reason_ = stop_reason::length;
  bool done_ = false, finished_ = false;
};

// `decoder`: a stream_decoder the caller already fed (e.g. with the prompt, to echo it); if null,
// one is made here and fed the prompt (which sets its spacing rules, see stream_decoder).
generation generate(evaluator& seq, sampler& smp, const tok::tokenizer& tk, std::span<const std::int32_t> prompt,
                    const generation_params& params, const token_callback& on_token = {},
                    tok::stream_decoder* decoder = nullptr);

}  // namespace bitnet::run
