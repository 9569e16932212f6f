// Chat formats (chat.hpp has the contract).
#include "bitnet/runner/chat.hpp"

#include <stdexcept>  // errors
#include <utility>    // std::move

namespace bitnet::run {

namespace {

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

void append(std::vector<std::int32_t>& v, const std::vector<std::int32_t>& w) { v.insert(v.end(), w.begin(), w.end()); }

bool has_all(const tok::tokenizer& tk, std::initializer_list<const char*> pieces) {
  for (const char* p : pieces)
    if (!tk.find_token(p)) return false;
  return true;
}

}  // namespace

chat_format::chat_format(chat_style s, const tok::tokenizer& tk) : style_(s), tk_(&tk) {
  // Every marker the format uses must be in the vocabulary (named() is the only way to ask for
  // a format whose markers may be missing; detect() checks before choosing).
  switch (s) {
    case chat_style::bitnet: (void)marker("<|eot_id|>"); break;
    case chat_style::llama3:
      (void)marker("<|start_header_id|>"), (void)marker("<|end_header_id|>"), (void)marker("<|eot_id|>");
      break;
    case chat_style::falcon3:
      (void)marker("<|system|>"), (void)marker("<|user|>"), (void)marker("<|assistant|>");
      if (tk.eos() < 0) throw std::invalid_argument("chat format falcon3: the vocabulary has no EOS token");
      break;
    case chat_style::chatml: (void)marker("<|im_start|>"), (void)marker("<|im_end|>"); break;
    case chat_style::plain: break;
  }
}

chat_format chat_format::detect(const model& m) { return detect(m.cfg(), m.require_tokenizer(), m.chat_template()); }

chat_format chat_format::detect(const config& c, const tok::tokenizer& tk, std::string_view tmpl) {
  const auto in = [&](const char* s) { return tmpl.find(s) != std::string_view::npos; };
  const bool bitnet_arch = gguf::is_bitnet_arch(c.arch);
  if (bitnet_arch && has_all(tk, {"<|eot_id|>"})) return {chat_style::bitnet, tk};
  if ((in("<|start_header_id|>") || (!bitnet_arch && tmpl.empty())) &&
      has_all(tk, {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}))
    return {chat_style::llama3, tk};
  if (in("<|im_start|>") && has_all(tk, {"<|im_start|>", "<|im_end|>"})) return {chat_style::chatml, tk};
  if (in("<|user|>") && in("<|assistant|>") && has_all(tk, {"<|system|>", "<|user|>", "<|assistant|>"}) && tk.eos() >= 0)
    return {chat_style::falcon3, tk};
  return {chat_style::plain, tk};
}

chat_format chat_format::named(std::string_view name, const tok::tokenizer& tk) {
  for (const chat_style s :
       {chat_style::bitnet, chat_style::llama3, chat_style::falcon3, chat_style::chatml, chat_style::plain}) {
    chat_format f(chat_style::plain, tk);
    f.style_ = s;
    if (name == f.name()) return {s, tk};
  }
  throw std::invalid_argument("unknown chat format '" + std::string(name) + "'; expected bitnet, llama3, falcon3, chatml or plain");
}

const char* chat_format::name() const noexcept {
  switch (style_) {
    case chat_style::bitnet: return "bitnet";
    case chat_style::llama3: return "llama3";
    case chat_style::falcon3: return "falcon3";
    case chat_style::chatml: return "chatml";
    case chat_style::plain: return "plain";
  }
  return "?";
}

std::vector<std::string> chat_format::stop_strings() const {
  if (style_ == chat_style::plain) return {"\nUser:"};
  return {};
}

std::vector<std::int32_t> chat_format::text(std::string_view s) const { return tk_->encode(s, false, false); }

std::int32_t chat_format::marker(std::string_view piece) const {
  if (const auto id = tk_->find_token(piece)) return *id;
  throw std::invalid_argument("chat format " + std::string(name()) + ": the vocabulary has no token " + std::string(piece));
}

std::vector<std::int32_t> chat_format::opening(std::string_view system, bool add_bos) const {
  std::vector<std::int32_t> v;
  if (add_bos && tk_->bos() >= 0) v.push_back(tk_->bos());
  if (system.empty()) return v;
  const std::string sys = trim(system);
  switch (style_) {
    case chat_style::bitnet:
      append(v, text("System: "));
      append(v, text(sys));
      v.push_back(marker("<|eot_id|>"));
      break;
    case chat_style::llama3:
      v.push_back(marker("<|start_header_id|>"));
      append(v, text("system"));
      v.push_back(marker("<|end_header_id|>"));
      append(v, text("\n\n" + sys));
      v.push_back(marker("<|eot_id|>"));
      break;
    case chat_style::falcon3:
      v.push_back(marker("<|system|>"));
      append(v, text("\n" + sys + "\n"));
      break;
    case chat_style::chatml:
      v.push_back(marker("<|im_start|>"));
      append(v, text("system\n" + sys));
      v.push_back(marker("<|im_end|>"));
      append(v, text("\n"));
      break;
    case chat_style::plain: append(v, text(sys + "\n\n")); break;
  }
  return v;
}

std::vector<std::int32_t> chat_format::user_turn(std::string_view message, bool first, bool after_stop_string) const {
  std::vector<std::int32_t> v;
  const std::string m = trim(message);
  switch (style_) {
    case chat_style::bitnet:
      append(v, text("User: "));
      append(v, text(m));
      v.push_back(marker("<|eot_id|>"));
      append(v, text("Assistant: "));
      break;
    case chat_style::llama3:
      v.push_back(marker("<|start_header_id|>"));
      append(v, text("user"));
      v.push_back(marker("<|end_header_id|>"));
      append(v, text("\n\n" + m));
      v.push_back(marker("<|eot_id|>"));
      v.push_back(marker("<|start_header_id|>"));
      append(v, text("assistant"));
      v.push_back(marker("<|end_header_id|>"));
      append(v, text("\n\n"));
      break;
    case chat_style::falcon3:
      v.push_back(marker("<|user|>"));
      append(v, text("\n" + m + "\n"));
      v.push_back(marker("<|assistant|>"));
      append(v, text("\n"));
      break;
    case chat_style::chatml:
      v.push_back(marker("<|im_start|>"));
      append(v, text("user\n" + m));
      v.push_back(marker("<|im_end|>"));
      append(v, text("\n"));
      v.push_back(marker("<|im_start|>"));
      append(v, text("assistant\n"));
      break;
    case chat_style::plain: {
      // After a reply that ended by writing "\nUser:" itself, the message just continues it.
      const std::string lead = first ? "User: " : after_stop_string ? " " : "\nUser: ";
      append(v, text(lead + m + "\nAssistant:"));
      break;
    }
  }
  return v;
}

std::vector<std::int32_t> chat_format::reply_end() const {
  std::vector<std::int32_t> v;
  switch (style_) {
    case chat_style::bitnet:
    case chat_style::llama3: v.push_back(marker("<|eot_id|>")); break;
    case chat_style::falcon3:
      v.push_back(tk_->eos());
      append(v, text("\n"));
      break;
    case chat_style::chatml:
      v.push_back(marker("<|im_end|>"));
      append(v, text("\n"));
      break;
    case chat_style::plain: break;
  }
  return v;
}

std::vector<std::int32_t> chat_format::apply(std::span<const chat_message> messages, bool add_generation_prompt,
                                             bool add_bos) const {
  std::size_t i = 0;
  std::string_view system;
  if (!messages.empty() && messages[0].role == "system") system = messages[i++].content;
  std::vector<std::int32_t> v = opening(system, add_bos);
  bool first = true;
  for (std::size_t k = 0; i < messages.size(); ++i, ++k) {
    const chat_message& msg = messages[i];
    const bool user = msg.role == "user";
    if (!user && msg.role != "assistant")
      throw std::invalid_argument("chat: message " + std::to_string(i) + " has role '" + msg.role +
                                  "'; expected user or assistant (system only first)");
    if (user != (k % 2 == 0))
      throw std::invalid_argument("chat: message " + std::to_string(i) + " is " + msg.role +
                                  "; roles must alternate user, assistant, user, ...");
    if (user) {
      if (i + 1 == messages.size() && !add_generation_prompt)
        throw std::invalid_argument("chat: the conversation ends with a user message; it needs the generation prompt");
      append(v, user_turn(msg.content, first));
      first = false;
    } else {
      std::string reply = style_ == chat_style::plain ? " " : "";  // appended: GCC 12 misreads "a" + string&&
      reply += trim(msg.content);
      append(v, text(reply));
      append(v, reply_end());
    }
  }
  return v;
}

conversation::conversation(chat_format f, std::string_view system, bool add_bos)
    : f_(std::move(f)), head_(f_.opening(system, add_bos)) {}

std::vector<std::int32_t> conversation::next_turn(std::string_view user_message) {
  std::vector<std::int32_t> turn = std::move(head_);
  append(turn, f_.user_turn(user_message, first_, wrote_stop_));
  head_.clear();
  first_ = false;
  return turn;
}

void conversation::reply_done(const generation& g) {
  // A reply cut by the token limit, a stop string or the host printed a last token that was
  // not evaluated yet: it goes first. Then whatever ends a reply in this format.
  head_.clear();
  if (g.pending >= 0 && g.stop != stop_reason::eos) head_.push_back(g.pending);
  if (f_.style() != chat_style::plain) {
    const auto e = f_.reply_end();
    head_.insert(head_.end(), e.begin(), e.end());
  }
  wrote_stop_ = g.stop == stop_reason::stop_string;
}

}  // namespace bitnet::run
