// bitnet/runner/chat.hpp - chat formats: a conversation as the tokens a model was trained on.
//
// chat_format::detect(model) picks the format from the model's tokenizer.chat_template (as
// llama.cpp does, by what the template contains; no Jinja is evaluated) and its vocabulary:
//   bitnet   BitNet b1.58 2B4T (spec bitnet-models.md 6.4), for the bitnet architectures with
//            <|eot_id|> in the vocabulary:
//              <|begin_of_text|>System: {system}<|eot_id|>User: {user}<|eot_id|>Assistant: {reply}<|eot_id|>...
//   llama3   a template with <|start_header_id|> (Llama3-8B-1.58):
//              <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>
//              <|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n
//   falcon3  a template with <|user|> and <|assistant|> (Falcon3 instruct models):
//              <|system|>\n{system}\n<|user|>\n{user}\n<|assistant|>\n{reply}<eos>\n
//   chatml   a template with <|im_start|>:
//              <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n
//   plain    anything else, a plain-text fallback whose replies also end at the text "\nUser:":
//              [BOS]{system}\n\nUser: {user}\nAssistant:{reply}\nUser: ...
// Role markers (<|eot_id|>, <|user|>, ...) are their special tokens; message contents are
// trimmed and tokenized on their own, with special tokens not parsed, so user text cannot
// inject markers. Replies end at an end-of-generation token (EOS, EOT) or a stop string.
//
// Two ways to use a format: apply(messages) gives the tokens of a whole conversation (for a
// stateless front end that re-sends the history), and conversation keeps a chat going in one
// sequence, feeding only what each turn adds.
#pragma once

#include <cstdint>      // fixed-width integers
#include <span>         // messages
#include <string>       // text
#include <string_view>  // text
#include <vector>       // tokens

#include "bitnet/runner/generate.hpp"
#include "bitnet/runner/model.hpp"
#include "bitnet/runner/tokenizer.hpp"

namespace bitnet::run {

enum class chat_style { bitnet, llama3, falcon3, chatml, plain };

struct chat_message {
  std::string role;     // "system", "user" or "assistant"
  std::string content;
};

class chat_format {
 public:
  // The format for this model (see above).
  static chat_format detect(const model& m);
  static chat_format detect(const config& c, const tok::tokenizer& tk, std::string_view chat_template);
  // A format by name (bitnet, llama3, falcon3, chatml, plain); std::invalid_argument for others
  // or when the vocabulary lacks its markers.
  static chat_format named(std::string_view name, const tok::tokenizer& tk);

  chat_style style() const noexcept { return style_; }
  const char* name() const noexcept;
  // Stop strings replies end at besides end-of-generation tokens ("\nUser:" for plain).
  std::vector<std::string> stop_strings() const;

  // The opening of a conversation: BOS (when add_bos and the vocabulary has one) and the system
  // message (if not empty).
  std::vector<std::int32_t> opening(std::string_view system, bool add_bos) const;
  // A user message and the assistant header after it. `first`: the first turn (plain format);
  // `after_stop_string`: the previous reply ended by writing the stop string itself (plain).
  std::vector<std::int32_t> user_turn(std::string_view message, bool first, bool after_stop_string = false) const;
  // What follows an assistant reply that ended (its own end-of-generation token is replaced by
  // the format's end-of-turn marker).
  std::vector<std::int32_t> reply_end() const;
  // A whole conversation: an optional leading system message, then alternating user and
  // assistant messages; with add_generation_prompt, the assistant header at the end.
  std::vector<std::int32_t> apply(std::span<const chat_message> messages, bool add_generation_prompt,
                                  bool add_bos = true) const;

 private:
  chat_format(chat_style s, const tok::tokenizer& tk);
  std::vector<std::int32_t> text(std::string_view s) const;  // no special tokens parsed
  std::int32_t marker(std::string_view piece) const;         // a special token's id

  chat_style style_;
  const tok::tokenizer* tk_;
};

// A chat kept going in one sequence: next_turn() gives the tokens to evaluate for a user
// message (what closes the previous reply, then the message and the assistant header);
// reply_done() records how the reply ended.
class conversation {
 public:
  conversation(chat_format f, std::string_view system, bool add_bos);

  const chat_format& format() const noexcept { return f_; }
  std::vector<std::int32_t> next_turn(std::string_view user_message);
  // After generation (the reply's ids were evaluated except g.pending).
  void reply_done(const generation& g);
  bool first() const noexcept { return first_; }

 private:
  chat_format f_;
  std::vector<std::int32_t> head_;  // tokens owed before the next user message
  bool first_ = true, wrote_stop_ = false;
};

}  // namespace bitnet::run
