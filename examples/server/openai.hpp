// examples/server/openai.hpp - the OpenAI API's request and response bodies (JSON), no HTTP.
//
// parse_chat() / parse_completion() turn a request body into a job_spec and the response options,
// or throw api_error (HTTP 400 with an OpenAI-style body: {"error": {"message", "type",
// "param", "code"}}). Known fields of the wrong type or out of range are errors naming the
// field; unknown fields are ignored (clients send many). Supported fields:
//   both         model (any string; the server has one model), max_tokens (>= 1), temperature
//                (>= 0; 0 = greedy), top_p, top_k, min_p, seed, stop (string or up to 4
//                strings), n (1 only), stream, stream_options.include_usage,
//                presence_penalty / frequency_penalty (0 only), logit_bias (empty only),
//                user; extensions: ignore_eos, repeat_penalty, repeat_last_n
//   chat         messages (system / developer, user, assistant; content a string or text
//                parts), max_completion_tokens, logprobs (bool), top_logprobs (0-20)
//   completions  prompt (a string, token ids, or a one-element array of either), echo,
//                logprobs (0-20), suffix (empty only), best_of (1 only)
// Defaults: temperature 1, top_p 1 (OpenAI's), top_k 40, min_p 0.05 (the runner's); max_tokens
// 16 for completions (OpenAI's), unlimited for chat (until end of generation or a full
// context); seed random.
// Responses: completion / chat.completion objects and their stream chunks (chat.completion.chunk,
// text_completion), usage counts, finish_reason stop / length.
#pragma once

#include <cstdint>    // fixed-width integers
#include <stdexcept>  // api_error
#include <string>     // text
#include <vector>     // tokens

#include <nlohmann/json.hpp>

#include <bitnet/runner/chat.hpp>
#include <bitnet/runner/model.hpp>

#include "scheduler.hpp"

namespace bitnet::serve {

using json = nlohmann::json;

// An error answered with an HTTP status and an OpenAI-style body.
class api_error : public std::runtime_error {
 public:
  api_error(int status, std::string message, std::string param = {}, std::string code = {},
            std::string type = "invalid_request_error")
      : std::runtime_error(message), status(status), param(std::move(param)), code(std::move(code)), type(std::move(type)) {}
  int status;
  std::string param, code, type;
};

// {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
json error_body(const api_error& e);
// Serializes for the wire (invalid UTF-8, which should not occur, is replaced, never thrown).
std::string dump(const json& j);

// What the model offers a request: the tokenizer, the chat format, the context of a slot.
struct model_context {
  const run::model* m;
  const run::chat_format* chat;
  std::string model_id;
  std::int64_t n_ctx;
};

enum class endpoint { chat, completions };

struct request {
  endpoint kind = endpoint::completions;
  job_spec spec;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool echo = false;           // completions: the prompt text before the completion
  std::string prompt_text;     // completions: the prompt as given (decoded, when given as ids)
  bool logprobs = false;       // report log-probabilities (chat: logprobs; completions: logprobs >= 0)
};

request parse_chat(const json& body, const model_context& mc);
request parse_completion(const json& body, const model_context& mc);
// The body parsed as JSON, or api_error naming the byte offset of the problem.
json parse_body(const std::string& body);

// Builds the response bodies of one request.
class response_writer {
 public:
  response_writer(const request& r, const model_context& mc, std::string id, std::int64_t created);

  // Streaming: the chunks (each a complete "data: ...\n\n" event) for these tokens; the first
  // call also opens the stream (chat: the assistant role; completions with echo: the prompt).
  std::string chunks(const std::vector<token_out>& tokens);
  // The closing events: the finish_reason chunk, the usage chunk when asked, "data: [DONE]".
  std::string stream_end(const job_result& r);
  // An error event for a stream that cannot finish (shutdown, a failed forward pass).
  std::string stream_error(const api_error& e);

  // Not streaming: collects the tokens, then the whole response object.
  void add(const std::vector<token_out>& tokens);
  json body(const job_result& r) const;

  static const char* finish_reason_of(const job_result& r) noexcept;  // "stop" or "length"

 private:
  json chunk_base() const;
  json logprobs_of(const std::vector<token_out>& tokens, std::size_t offset) const;
  std::string token_text(std::int32_t id) const;
  json usage(const job_result& r) const;

  request req_;
  model_context mc_;
  std::string id_;
  std::int64_t created_;
  bool opened_ = false;
  std::string text_;                 // everything generated (not streaming)
  std::vector<token_out> tokens_;    // with logprobs (not streaming)
  std::size_t text_offset_ = 0;      // completions logprobs: text length before the next token
};

// "chatcmpl-" / "cmpl-" and 24 random alphanumerics.
std::string new_id(endpoint kind);

}  // namespace bitnet::serve
