// OpenAI request and response bodies (openai.hpp has the contract).
#include "openai.hpp"

#include <cmath>    // std::isfinite
#include <cstdio>   // std::snprintf
#include <random>   // request ids, default seeds
#include <utility>  // std::move

namespace bitnet::serve {

namespace {

// ---------------------------------------------------------------- reading fields

// The field, or null when it is absent or JSON null (clients send null for "not set").
const json* field(const json& body, const char* name) {
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

[[noreturn]] void bad(const std::string& param, const std::string& what) { throw api_error(400, param + ": " + what, param); }

[[noreturn]] void bad_type(const std::string& param, const char* expected, const json& got) {
  bad(param, std::string("expected ") + expected + ", got " + got.type_name());
}

std::string str(const json* f, const std::string& param) {
  if (!f->is_string()) bad_type(param, "a string", *f);
  return f->get<std::string>();
}

bool boolean(const json* f, const std::string& param) {
  if (!f->is_boolean()) bad_type(param, "a boolean", *f);
  return f->get<bool>();
}

std::int64_t integer(const json* f, const std::string& param, std::int64_t lo, std::int64_t hi) {
  if (!f->is_number_integer()) bad_type(param, "an integer", *f);
  if (f->is_number_unsigned() && f->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
    bad(param, "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + f->dump());
  const auto v = f->get<std::int64_t>();
  if (v < lo || v > hi)
    bad(param, "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(v));
  return v;
}

double number(const json* f, const std::string& param, double lo, double hi) {
  if (!f->is_number()) bad_type(param, "a number", *f);
  const auto v = f->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    char range[96];
    std::snprintf(range, sizeof range, "expected a number in [%g, %g], got %s", lo, hi, f->dump().c_str());
    bad(param, range);
  }
  return v;
}

std::uint64_t random_u64() {
  std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

// Fields both endpoints share.
void parse_common(const json& body, request& r, const model_context& mc) {
  if (!body.is_object()) throw api_error(400, "the request body must be a JSON object, got " + std::string(body.type_name()));
  if (const json* f = field(body, "model")) (void)str(f, "model");
  if (const json* f = field(body, "user")) (void)str(f, "user");
  if (const json* f = field(body, "n"); f && integer(f, "n", 1, 128) != 1) bad("n", "only n = 1 is supported");
  if (const json* f = field(body, "max_tokens")) r.spec.gen.max_tokens = integer(f, "max_tokens", 1, INT32_MAX);
  run::sampler_params& sp = r.spec.sampling;
  sp.temp = 1.0f;  // OpenAI's defaults for its own fields, the runner's for the extensions
  sp.top_p = 1.0f;
  sp.top_k = 40;
  sp.min_p = 0.05f;
  sp.repeat_penalty = 1.0f;
  sp.repeat_last_n = 64;
  if (const json* f = field(body, "temperature")) sp.temp = static_cast<float>(number(f, "temperature", 0.0, 100.0));
  if (const json* f = field(body, "top_p")) sp.top_p = static_cast<float>(number(f, "top_p", 0.0, 1.0));
  if (const json* f = field(body, "top_k")) sp.top_k = static_cast<int>(integer(f, "top_k", 0, INT32_MAX));
  if (const json* f = field(body, "min_p")) sp.min_p = static_cast<float>(number(f, "min_p", 0.0, 1.0));
  if (const json* f = field(body, "repeat_penalty"))
    sp.repeat_penalty = static_cast<float>(number(f, "repeat_penalty", 1e-6, 1e6));
  if (const json* f = field(body, "repeat_last_n")) sp.repeat_last_n = static_cast<int>(integer(f, "repeat_last_n", 0, 1 << 20));
  if (const json* f = field(body, "seed")) {
    if (!f->is_number_integer()) bad_type("seed", "an integer", *f);
    sp.seed = f->is_number_unsigned() ? f->get<std::uint64_t>() : static_cast<std::uint64_t>(f->get<std::int64_t>());
  } else {
    sp.seed = random_u64();
  }
  for (const char* p : {"presence_penalty", "frequency_penalty"})
    if (const json* f = field(body, p); f && number(f, p, -2.0, 2.0) != 0.0)
      bad(p, "only 0 is supported (the extension repeat_penalty is llama.cpp's repetition penalty)");
  if (const json* f = field(body, "logit_bias")) {
    if (!f->is_object()) bad_type("logit_bias", "an object", *f);
    if (!f->empty()) bad("logit_bias", "not supported (only an empty object)");
  }
  if (const json* f = field(body, "stop")) {
    std::vector<std::string> stops;
    if (f->is_string()) {
      stops.push_back(f->get<std::string>());
    } else if (f->is_array()) {
      if (f->size() > 4) bad("stop", "at most 4 stop strings, got " + std::to_string(f->size()));
      for (std::size_t i = 0; i < f->size(); ++i) stops.push_back(str(&(*f)[i], "stop[" + std::to_string(i) + "]"));
    } else {
      bad_type("stop", "a string or an array of strings", *f);
    }
    for (auto& s : stops)
      if (!s.empty()) r.spec.gen.stop.push_back(std::move(s));
  }
  if (const json* f = field(body, "stream")) r.stream = boolean(f, "stream");
  if (const json* f = field(body, "stream_options")) {
    if (!f->is_object()) bad_type("stream_options", "an object", *f);
    if (const json* u = field(*f, "include_usage")) r.include_usage = boolean(u, "stream_options.include_usage");
  }
  if (const json* f = field(body, "ignore_eos")) r.spec.gen.ignore_eos = boolean(f, "ignore_eos");
  (void)mc;
}

void check_prompt(const request& r, const model_context& mc) {
  const auto n = static_cast<std::int64_t>(r.spec.prompt.size());
  if (n > mc.n_ctx)
    throw api_error(400,
                    "the prompt is " + std::to_string(n) + " tokens but a slot's context holds " + std::to_string(mc.n_ctx) +
                        " positions",
                    r.kind == endpoint::chat ? "messages" : "prompt", "context_length_exceeded");
}

// A message's content: a string, null, or text parts ({"type": "text", "text": ...}) joined by newlines.
std::string content_of(const json& msg, const std::string& where) {
  const json* c = field(msg, "content");
  if (!c) return {};
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) bad_type(where + ".content", "a string or an array of content parts", *c);
  std::string out;
  for (std::size_t i = 0; i < c->size(); ++i) {
    const json& part = (*c)[i];
    const std::string p = where + ".content[" + std::to_string(i) + "]";
    if (!part.is_object()) bad_type(p, "an object", part);
    const json* type = field(part, "type");
    if (!type || str(type, p + ".type") != "text") bad(p + ".type", "only text content parts are supported");
    const json* text = field(part, "text");
    if (!text) bad(p + ".text", "missing");
    if (!out.empty()) out += "\n";
    out += str(text, p + ".text");
  }
  return out;
}

bool valid_utf8(std::string_view s) { return tok::detail::utf8_first_invalid(s) == std::string::npos; }

}  // namespace

json error_body(const api_error& e) {
  json err = {{"message", e.what()}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return json{{"error", err}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json parse_body(const std::string& body) {
  try {
    return json::parse(body);
  } catch (const json::parse_error& e) {
    throw api_error(400, "the request body is not valid JSON: " + std::string(e.what()), {}, "invalid_json");
  }
}

request parse_chat(const json& body, const model_context& mc) {
  request r;
  r.kind = endpoint::chat;
  r.spec.gen.max_tokens = -1;  // until end of generation or a full context
  parse_common(body, r, mc);
  if (const json* f = field(body, "max_completion_tokens"))
    r.spec.gen.max_tokens = integer(f, "max_completion_tokens", 1, INT32_MAX);
  if (const json* f = field(body, "logprobs")) r.logprobs = boolean(f, "logprobs");
  int top = 0;
  if (const json* f = field(body, "top_logprobs")) top = static_cast<int>(integer(f, "top_logprobs", 0, 20));
  if (r.logprobs) r.spec.top_logprobs = top;
  if (const json* f = field(body, "tools")) {
    if (!f->is_array()) bad_type("tools", "an array", *f);
    if (!f->empty()) bad("tools", "tool calls are not supported");
  }
  if (const json* f = field(body, "response_format")) {
    if (!f->is_object()) bad_type("response_format", "an object", *f);
    const json* t = field(*f, "type");
    if (t && str(t, "response_format.type") != "text") bad("response_format.type", "only \"text\" is supported");
  }

  const json* msgs = field(body, "messages");
  if (!msgs) bad("messages", "missing");
  if (!msgs->is_array()) bad_type("messages", "an array", *msgs);
  if (msgs->empty()) bad("messages", "empty");
  // Leading system / developer messages become the system message; consecutive messages of one
  // role are joined (blank line between), as clients sometimes send them; the model's chat
  // format then lays out the conversation (runner chat.hpp).
  std::vector<run::chat_message> conv;
  for (std::size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad_type(where, "an object", m);
    const json* role_f = field(m, "role");
    if (!role_f) bad(where + ".role", "missing");
    std::string role = str(role_f, where + ".role");
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant")
      bad(where + ".role", "'" + role + "' is not supported (system, developer, user, assistant)");
    std::string content = content_of(m, where);
    if (role == "system" && !(conv.empty() || (conv.size() == 1 && conv[0].role == "system")))
      bad(where + ".role", "a system message is only supported at the start of the conversation");
    if (!conv.empty() && conv.back().role == role) {
      conv.back().content += "\n\n" + content;
    } else {
      conv.push_back({role, std::move(content)});
    }
  }
  if (conv.back().role != "user") bad("messages", "the last message must be from the user");
  try {
    r.spec.prompt = mc.chat->apply(conv, true, true);
  } catch (const std::invalid_argument& e) {
    bad("messages", e.what());
  }
  for (auto& s : mc.chat->stop_strings()) r.spec.gen.stop.push_back(std::move(s));
  check_prompt(r, mc);
  return r;
}

request parse_completion(const json& body, const model_context& mc) {
  request r;
  r.kind = endpoint::completions;
  r.spec.gen.max_tokens = 16;  // OpenAI's default for completions
  parse_common(body, r, mc);
  if (const json* f = field(body, "echo")) r.echo = boolean(f, "echo");
  if (const json* f = field(body, "logprobs")) {
    r.logprobs = true;
    r.spec.top_logprobs = static_cast<int>(integer(f, "logprobs", 0, 20));
  }
  if (r.echo && r.logprobs) bad("echo", "echo with logprobs is not supported");
  if (const json* f = field(body, "suffix"); f && !str(f, "suffix").empty()) bad("suffix", "not supported");
  if (const json* f = field(body, "best_of"); f && integer(f, "best_of", 1, 128) != 1) bad("best_of", "only 1 is supported");

  const tok::tokenizer& tk = mc.m->require_tokenizer();
  const json* p = field(body, "prompt");
  if (!p) bad("prompt", "missing");
  const auto from_text = [&](const std::string& text) {
    r.prompt_text = text;
    r.spec.prompt = tk.encode(text, true, true);  // BOS as the vocabulary says, special tokens parsed (as bitnet-generate)
    if (r.spec.prompt.empty()) {
      if (tk.bos() < 0) bad("prompt", "empty, and the vocabulary has no BOS token to start from");
      r.spec.prompt.push_back(tk.bos());
    }
  };
  const auto from_ids = [&](const json& a, const std::string& where) {
    if (a.empty()) bad(where, "an empty list of token ids");
    for (std::size_t i = 0; i < a.size(); ++i)
      r.spec.prompt.push_back(static_cast<std::int32_t>(
          integer(&a[i], where + "[" + std::to_string(i) + "]", 0, static_cast<std::int64_t>(tk.n_vocab()) - 1)));
    r.prompt_text = tk.decode(r.spec.prompt);
  };
  if (p->is_string()) {
    from_text(p->get<std::string>());
  } else if (p->is_array()) {
    if (p->empty()) bad("prompt", "empty");
    if ((*p)[0].is_number()) {
      from_ids(*p, "prompt");
    } else {
      if (p->size() != 1) bad("prompt", "one prompt per request (n = 1), got " + std::to_string(p->size()));
      const json& one = (*p)[0];
      if (one.is_string())
        from_text(one.get<std::string>());
      else if (one.is_array())
        from_ids(one, "prompt[0]");
      else
        bad_type("prompt[0]", "a string or an array of token ids", one);
    }
  } else {
    bad_type("prompt", "a string, an array of token ids, or an array of one of either", *p);
  }
  check_prompt(r, mc);
  return r;
}

// ---------------------------------------------------------------- responses

response_writer::response_writer(const request& r, const model_context& mc, std::string id, std::int64_t created)
    : req_(r), mc_(mc), id_(std::move(id)), created_(created) {}

const char* response_writer::finish_reason_of(const job_result& r) noexcept {
  return r.reason == finish_reason::stop ? "stop" : "length";
}

// A token as text for logprobs: its bytes when they are UTF-8, else OpenAI's "bytes:\xNN..." form.
std::string response_writer::token_text(std::int32_t id) const {
  const std::string t = mc_.m->require_tokenizer().decode_token(id);
  if (valid_utf8(t)) return t;
  std::string out = "bytes:";
  for (const unsigned char c : t) {
    char b[8];
    std::snprintf(b, sizeof b, "\\x%02x", c);
    out += b;
  }
  return out;
}

json response_writer::logprobs_of(const std::vector<token_out>& tokens, std::size_t offset) const {
  const tok::tokenizer& tk = mc_.m->require_tokenizer();
  if (req_.kind == endpoint::chat) {
    const auto bytes = [&](std::int32_t id) {
      json b = json::array();
      for (const unsigned char c : tk.decode_token(id)) b.push_back(static_cast<int>(c));
      return b;
    };
    json content = json::array();
    for (const auto& t : tokens) {
      if (t.id < 0) continue;
      json top = json::array();
      for (const auto& c : t.top) top.push_back({{"token", token_text(c.id)}, {"logprob", c.logprob}, {"bytes", bytes(c.id)}});
      content.push_back({{"token", token_text(t.id)}, {"logprob", t.logprob}, {"bytes", bytes(t.id)}, {"top_logprobs", top}});
    }
    return json{{"content", content}};
  }
  json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  for (const auto& t : tokens) {
    if (t.id < 0) {
      offset += t.text.size();
      continue;
    }
    toks.push_back(token_text(t.id));
    lps.push_back(t.logprob);
    json top = json::object();
    for (const auto& c : t.top) top[token_text(c.id)] = c.logprob;
    tops.push_back(top);
    offs.push_back(offset);
    offset += t.text.size();
  }
  return json{{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

json response_writer::usage(const job_result& r) const {
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", r.prompt_tokens + r.completion_tokens}};
}

json response_writer::chunk_base() const {
  json c = {{"id", id_},
            {"object", req_.kind == endpoint::chat ? "chat.completion.chunk" : "text_completion"},
            {"created", created_},
            {"model", mc_.model_id}};
  if (req_.include_usage) c["usage"] = nullptr;
  return c;
}

namespace {
std::string event(const json& j) { return "data: " + dump(j) + "\n\n"; }
}  // namespace

std::string response_writer::chunks(const std::vector<token_out>& tokens) {
  std::string out;
  const bool chat = req_.kind == endpoint::chat;
  const auto one = [&](const std::string& text, const json& logprobs) {
    json c = chunk_base();
    json choice = {{"index", 0}, {"logprobs", logprobs}, {"finish_reason", nullptr}};
    if (chat)
      choice["delta"] = {{"content", text}};
    else
      choice["text"] = text;
    c["choices"] = json::array({choice});
    out += event(c);
  };
  if (!opened_) {
    opened_ = true;
    if (chat) {
      json c = chunk_base();
      c["choices"] = json::array({{{"index", 0},
                                   {"delta", {{"role", "assistant"}, {"content", ""}}},
                                   {"logprobs", nullptr},
                                   {"finish_reason", nullptr}}});
      out += event(c);
    } else if (req_.echo) {
      text_offset_ += req_.prompt_text.size();
      one(req_.prompt_text, nullptr);
    }
  }
  for (const auto& t : tokens) {
    if (req_.logprobs && t.id >= 0) {
      one(t.text, logprobs_of({t}, text_offset_));
    } else if (!t.text.empty()) {
      one(t.text, nullptr);
    }
    text_offset_ += t.text.size();
  }
  return out;
}

std::string response_writer::stream_end(const job_result& r) {
  std::string out = chunks({});  // opens the stream if nothing was generated
  json c = chunk_base();
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason_of(r)}};
  if (req_.kind == endpoint::chat)
    choice["delta"] = json::object();
  else
    choice["text"] = "";
  c["choices"] = json::array({choice});
  out += event(c);
  if (req_.include_usage) {
    json u = chunk_base();
    u["choices"] = json::array();
    u["usage"] = usage(r);
    out += event(u);
  }
  return out + "data: [DONE]\n\n";
}

std::string response_writer::stream_error(const api_error& e) { return event(error_body(e)); }

void response_writer::add(const std::vector<token_out>& tokens) {
  for (const auto& t : tokens) {
    text_ += t.text;
    if (req_.logprobs) tokens_.push_back(t);
  }
}

json response_writer::body(const job_result& r) const {
  json choice = {{"index", 0}, {"finish_reason", finish_reason_of(r)}, {"logprobs", nullptr}};
  if (req_.logprobs) choice["logprobs"] = logprobs_of(tokens_, 0);
  if (req_.kind == endpoint::chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text_}};
  } else {
    choice["text"] = req_.echo ? req_.prompt_text + text_ : text_;
  }
  return {{"id", id_},
          {"object", req_.kind == endpoint::chat ? "chat.completion" : "text_completion"},
          {"created", created_},
          {"model", mc_.model_id},
          {"choices", json::array({choice})},
          {"usage", usage(r)}};
}

std::string new_id(endpoint kind) {
  static constexpr char kChars[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  std::random_device rd;
  std::string id = kind == endpoint::chat ? "chatcmpl-" : "cmpl-";
  for (int i = 0; i < 24; ++i) id += kChars[rd() % (sizeof kChars - 1)];
  return id;
}

}  // namespace bitnet::serve
