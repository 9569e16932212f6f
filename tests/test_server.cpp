// tests/test_server.cpp - bitnet-server's logic without HTTP (examples/server): the continuous-
// batching scheduler and the OpenAI request / response bodies.
//
// References: a job's output is compared with the same prompt run alone through a one-sequence
// session (session::eval, arg max written here, text from a stream decoder), so batching, chunked
// prefill, slot reuse and queueing must not change a single id; log-probabilities against a
// long-double log-softmax of those logits; chat prompts against chat_format::apply of the
// expected conversation; errors by the field they name. The HTTP layer is tested end to end by
// tests/server/*.mjs.
#include <gtest/gtest.h>

#include <chrono>      // waits
#include <cmath>       // std::exp, std::log
#include <filesystem>  // temporary model file
#include <fstream>     // writing it
#include <memory>      // jobs
#include <string>      // text
#include <vector>      // ids

#include <bitnet/runner/runner.hpp>
#include <unistd.h>  // getpid

#include "model_builder.hpp"
#include "openai.hpp"
#include "scheduler.hpp"

namespace {

namespace br = bitnet::run;
namespace bs = bitnet::serve;
namespace tok = bitnet::tok;
using namespace std::chrono_literals;

struct fixture {
  std::string path;
  br::thread_pool pool{2};
  std::optional<br::model> m;
  fixture() {
    bitnet::test::synth_spec s;
    s.vocab = true;
    s.n_ctx_train = 256;
    const auto bytes = bitnet::test::make_model(s).bytes();
    path = (std::filesystem::temp_directory_path() / ("bitnet_test_server_" + std::to_string(getpid()) + ".gguf")).string();
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    m.emplace(br::model::open(path, {}, pool));
  }
  ~fixture() { std::filesystem::remove(path); }
  const tok::tokenizer& tk() const { return m->require_tokenizer(); }
};

std::int32_t argmax(std::span<const float> l) {
  std::int32_t best = 0;
  for (std::size_t v = 1; v < l.size(); ++v)
    if (l[v] > l[static_cast<std::size_t>(best)]) best = static_cast<std::int32_t>(v);
  return best;
}

struct solo_run {
  std::vector<std::int32_t> ids;
  std::string text;
  std::vector<std::vector<float>> logits;  // the logits each id was chosen from
};

// Greedy generation of n tokens (end of generation ignored) with one sequence, eval() only.
solo_run solo(fixture& f, const std::vector<std::int32_t>& prompt, int n) {
  br::session s(*f.m, f.pool, 256);
  solo_run r;
  auto l = s.eval(prompt);
  tok::stream_decoder sd(f.tk());
  for (const auto id : prompt) (void)sd.push(id);
  for (int i = 0; i < n; ++i) {
    r.logits.emplace_back(l.begin(), l.end());
    const std::int32_t id = argmax(l);
    r.ids.push_back(id);
    r.text += sd.push(id);
    if (i + 1 < n) l = s.eval(std::span<const std::int32_t>(&id, 1));
  }
  r.text += sd.flush();
  return r;
}

bs::job_spec greedy_spec(const std::vector<std::int32_t>& prompt, int n) {
  bs::job_spec j;
  j.prompt = prompt;
  j.gen.max_tokens = n;
  j.gen.ignore_eos = true;
  j.sampling.temp = 0.0f;
  return j;
}

struct collected {
  std::vector<bs::token_out> tokens;
  bs::job_result result;
  std::vector<std::int32_t> ids() const {
    std::vector<std::int32_t> v;
    for (const auto& t : tokens)
      if (t.id >= 0) v.push_back(t.id);
    return v;
  }
  std::string text() const {
    std::string s;
    for (const auto& t : tokens) s += t.text;
    return s;
  }
};

collected drain(bs::job& j) {
  collected c;
  const auto t0 = std::chrono::steady_clock::now();
  while (!j.wait(c.tokens, 50ms))
    if (std::chrono::steady_clock::now() - t0 > 60s) ADD_FAILURE() << "job did not end within 60 s";
  c.result = j.result();
  return c;
}

std::vector<std::int32_t> prompt_of(fixture& f, const std::string& text) { return f.tk().encode(text, true, false); }

// ---------------------------------------------------------------- scheduler
// (The thread pool is not reentrant: references run on it only while the scheduler is idle.)

// Seven jobs over three slots (so four wait in the queue and take slots as others leave), prompts
// of 1 to 40 tokens prefilled 4 at a time between decode steps, different lengths: every job's
// ids, text and logits-derived log-probabilities equal its solo run.
TEST(Scheduler, JobsBatchedEqualJobsAlone) {
  fixture f;
  bs::scheduler_options o;
  o.slots = 3;
  o.n_ctx = 128;
  o.chunk = 4;
  o.queue = 8;
  bs::scheduler sched(*f.m, f.pool, o);
  const std::vector<std::string> texts = {"hello", "a much longer prompt that takes several chunks to prefill, more than forty",
                                          "x", "the quick brown fox", "ab cd ef gh", "one two three four five six", "z"};
  std::vector<std::shared_ptr<bs::job>> jobs;
  std::vector<solo_run> refs;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    auto prompt = prompt_of(f, texts[i]);
    if (i == 2) prompt = {prompt[0]};  // BOS alone
    const int n = 5 + 3 * static_cast<int>(i);
    refs.push_back(solo(f, prompt, n));
    bs::job_spec spec = greedy_spec(prompt, n);
    spec.top_logprobs = 2;
    jobs.push_back(std::make_shared<bs::job>(spec));
  }
  for (auto& j : jobs) ASSERT_EQ(sched.submit(j), bs::scheduler::admission::accepted);
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const collected c = drain(*jobs[i]);
    EXPECT_EQ(c.ids(), refs[i].ids) << "job " << i;
    EXPECT_EQ(c.text(), refs[i].text) << "job " << i;
    EXPECT_EQ(c.result.reason, bs::finish_reason::length);
    EXPECT_EQ(c.result.completion_tokens, static_cast<std::int64_t>(refs[i].ids.size()));
    EXPECT_EQ(c.result.prompt_tokens, static_cast<std::int64_t>(jobs[i]->spec().prompt.size()));
    // Log-probabilities of the chosen token and the top 2, from the solo logits in long double.
    std::size_t k = 0;
    for (const auto& t : c.tokens) {
      if (t.id < 0 || k >= refs[i].logits.size()) continue;
      const auto& l = refs[i].logits[k++];
      long double sum = 0;
      for (const float x : l) sum += std::exp(static_cast<long double>(x));
      const auto lp = [&](std::int32_t id) { return static_cast<double>(l[static_cast<std::size_t>(id)] - std::log(sum)); };
      EXPECT_NEAR(t.logprob, lp(t.id), 1e-5);
      ASSERT_EQ(t.top.size(), 2u);
      EXPECT_EQ(t.top[0].id, t.id);  // greedy
      EXPECT_NEAR(t.top[1].logprob, lp(t.top[1].id), 1e-5);
      EXPECT_LE(t.top[1].logprob, t.top[0].logprob);
    }
  }
  const bs::scheduler_stats s = sched.stats();
  EXPECT_EQ(s.active, 0);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(s.finished[static_cast<int>(bs::finish_reason::length)], texts.size());
  std::uint64_t hist = 0, multi = 0;
  for (std::size_t b = 0; b < s.batch_hist.size(); ++b) hist += s.batch_hist[b];
  for (std::size_t b = 1; b < s.batch_hist.size(); ++b) multi += s.batch_hist[b];
  EXPECT_EQ(hist, s.steps);
  EXPECT_GT(multi, 0u) << "no step batched more than one sequence";
}

// A cancelled job leaves its slot at the next step, and the slot's KV positions are reused: the
// next job in that slot gives its solo output (stale positions would shift every position).
TEST(Scheduler, CancelFreesTheSlotAndItsPositions) {
  fixture f;
  bs::scheduler_options o;
  o.slots = 1;
  o.n_ctx = 128;
  bs::scheduler sched(*f.m, f.pool, o);
  auto long_job = std::make_shared<bs::job>(greedy_spec(prompt_of(f, "hello there"), 100));
  ASSERT_EQ(sched.submit(long_job), bs::scheduler::admission::accepted);
  std::vector<bs::token_out> got;
  while (got.size() < 3) ASSERT_FALSE(long_job->wait(got, 1s));
  long_job->cancel();
  const collected c = drain(*long_job);
  EXPECT_EQ(c.result.reason, bs::finish_reason::cancelled);
  EXPECT_LT(c.result.completion_tokens, 100);
  const auto p = prompt_of(f, "a second prompt");
  const solo_run ref = solo(f, p, 12);  // the scheduler is idle: the pool is free for this thread
  auto next = std::make_shared<bs::job>(greedy_spec(p, 12));
  ASSERT_EQ(sched.submit(next), bs::scheduler::admission::accepted);
  EXPECT_EQ(drain(*next).ids(), ref.ids);
  EXPECT_EQ(sched.stats().finished[static_cast<int>(bs::finish_reason::cancelled)], 1u);
}

TEST(Scheduler, QueueBoundCloseAndShutdown) {
  fixture f;
  bs::scheduler_options o;
  o.slots = 1;
  o.queue = 1;
  o.n_ctx = 256;
  bs::scheduler sched(*f.m, f.pool, o);
  const auto p = prompt_of(f, "hi");
  auto a = std::make_shared<bs::job>(greedy_spec(p, 200));
  auto b = std::make_shared<bs::job>(greedy_spec(p, 200));
  auto c = std::make_shared<bs::job>(greedy_spec(p, 200));
  EXPECT_EQ(sched.submit(a), bs::scheduler::admission::accepted);
  EXPECT_EQ(sched.submit(b), bs::scheduler::admission::accepted);
  EXPECT_EQ(sched.submit(c), bs::scheduler::admission::queue_full);  // one slot + one queued
  sched.close();
  EXPECT_EQ(sched.submit(c), bs::scheduler::admission::closed);
  sched.cancel_all(bs::finish_reason::shutdown);
  EXPECT_EQ(drain(*a).result.reason, bs::finish_reason::shutdown);
  EXPECT_EQ(drain(*b).result.reason, bs::finish_reason::shutdown);
  EXPECT_TRUE(sched.idle());
}

// A full context ends generation with finish_reason length (the runner's context_full), after
// the prompt and n_ctx - prompt + 1 tokens (the last one sampled, not evaluated).
TEST(Scheduler, ContextFullEndsWithLength) {
  fixture f;
  bs::scheduler_options o;
  o.slots = 2;
  o.n_ctx = 10;
  bs::scheduler sched(*f.m, f.pool, o);
  const auto p = prompt_of(f, "hello");
  bs::job_spec spec = greedy_spec(p, -1);
  auto j = std::make_shared<bs::job>(spec);
  ASSERT_EQ(sched.submit(j), bs::scheduler::admission::accepted);
  const collected c = drain(*j);
  EXPECT_EQ(c.result.reason, bs::finish_reason::length);
  EXPECT_EQ(c.result.stop, br::stop_reason::context_full);
  EXPECT_EQ(c.result.completion_tokens, 10 - static_cast<std::int64_t>(p.size()) + 1);
}

// ---------------------------------------------------------------- OpenAI bodies

struct api_fixture : fixture {
  br::chat_format chat = br::chat_format::detect(*m);
  bs::model_context mc{&*m, &chat, "tiny", 64};
};

std::string error_param(const std::function<void()>& f) {
  try {
    f();
  } catch (const bs::api_error& e) {
    EXPECT_EQ(e.status, 400);
    return e.param.empty() ? std::string("(none): ") + e.what() : e.param;
  }
  return "(no error)";
}

TEST(OpenAI, CompletionFieldsAndDefaults) {
  api_fixture f;
  const bs::request r = bs::parse_completion(bs::json::parse(R"({"prompt": "hello", "max_tokens": 7, "temperature": 0,
      "stop": ["xy", ""], "seed": 9, "top_k": 3, "min_p": 0.1, "top_p": 0.5, "stream": true, "unknown": {"a": 1}})"), f.mc);
  EXPECT_EQ(r.spec.prompt, f.tk().encode("hello", true, true));
  EXPECT_EQ(r.spec.gen.max_tokens, 7);
  EXPECT_EQ(r.spec.gen.stop, std::vector<std::string>{"xy"});  // empty stop strings are dropped
  EXPECT_EQ(r.spec.sampling.temp, 0.0f);
  EXPECT_EQ(r.spec.sampling.seed, 9u);
  EXPECT_EQ(r.spec.sampling.top_k, 3);
  EXPECT_FLOAT_EQ(r.spec.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(r.spec.sampling.top_p, 0.5f);
  EXPECT_TRUE(r.stream);
  const bs::request d = bs::parse_completion(bs::json::parse(R"({"prompt": [5, 6, 7], "logprobs": 2, "stop": null})"), f.mc);
  EXPECT_EQ(d.spec.prompt, (std::vector<std::int32_t>{5, 6, 7}));  // ids as given, no BOS
  EXPECT_EQ(d.spec.gen.max_tokens, 16);                            // OpenAI's completions default
  EXPECT_EQ(d.spec.sampling.temp, 1.0f);
  EXPECT_EQ(d.spec.top_logprobs, 2);
  EXPECT_TRUE(d.logprobs);
  EXPECT_EQ(bs::parse_completion(bs::json::parse(R"({"prompt": [[9, 8]]})"), f.mc).spec.prompt, (std::vector<std::int32_t>{9, 8}));
  EXPECT_EQ(bs::parse_completion(bs::json::parse(R"({"prompt": ["hi"]})"), f.mc).spec.prompt, f.tk().encode("hi", true, true));
}

TEST(OpenAI, BadFieldsNameThemselves) {
  api_fixture f;
  const auto comp = [&](const char* body) { return error_param([&] { bs::parse_completion(bs::json::parse(body), f.mc); }); };
  const auto chat = [&](const char* body) { return error_param([&] { bs::parse_chat(bs::json::parse(body), f.mc); }); };
  EXPECT_EQ(comp(R"({"prompt": "a", "max_tokens": 0})"), "max_tokens");
  EXPECT_EQ(comp(R"({"prompt": "a", "max_tokens": -1})"), "max_tokens");
  EXPECT_EQ(comp(R"({"prompt": "a", "max_tokens": "5"})"), "max_tokens");
  EXPECT_EQ(comp(R"({"prompt": "a", "max_tokens": 1e30})"), "max_tokens");
  EXPECT_EQ(comp(R"({"prompt": "a", "max_tokens": 18446744073709551615})"), "max_tokens");
  EXPECT_EQ(comp(R"({"prompt": "a", "temperature": true})"), "temperature");
  EXPECT_EQ(comp(R"({"prompt": "a", "top_p": -0.1})"), "top_p");
  EXPECT_EQ(comp(R"({"prompt": "a", "n": 3})"), "n");
  EXPECT_EQ(comp(R"({"prompt": "a", "presence_penalty": 0.5})"), "presence_penalty");
  EXPECT_EQ(comp(R"({"prompt": "a", "logit_bias": {"5": 1}})"), "logit_bias");
  EXPECT_EQ(comp(R"({"prompt": "a", "stop": [1]})"), "stop[0]");
  EXPECT_EQ(comp(R"({"prompt": "a", "stream_options": {"include_usage": 1}})"), "stream_options.include_usage");
  EXPECT_EQ(comp(R"({"prompt": [1, 300]})"), "prompt[1]");  // vocabulary of 300
  EXPECT_EQ(comp(R"({"prompt": ["a", "b"]})"), "prompt");
  EXPECT_EQ(comp(R"({"prompt": "a", "echo": true, "logprobs": 1})"), "echo");
  EXPECT_EQ(comp(R"({"prompt": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
      26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
      56, 57, 58, 59, 60, 61, 62, 63, 64, 65]})"), "prompt");  // 65 tokens, context 64
  EXPECT_EQ(comp(R"({"max_tokens": 3})"), "prompt");
  EXPECT_EQ(comp(R"([1])"), "(none): the request body must be a JSON object, got array");
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "a"}], "max_completion_tokens": 0})"), "max_completion_tokens");
  EXPECT_EQ(chat(R"({"messages": {}})"), "messages");
  EXPECT_EQ(chat(R"({"messages": [{"content": "a"}]})"), "messages[0].role");
  EXPECT_EQ(chat(R"({"messages": [{"role": "tool", "content": "a"}]})"), "messages[0].role");
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"), "messages[0].content[0].type");
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})"), "messages");
  EXPECT_EQ(chat(R"({"messages": [{"role": "assistant", "content": "b"}, {"role": "user", "content": "a"}]})"), "messages");
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]})"), "messages[1].role");
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "a"}], "tools": [{"type": "function"}]})"), "tools");
  try {
    (void)bs::parse_body("{\"prompt\": ");
    ADD_FAILURE() << "no error";
  } catch (const bs::api_error& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "invalid_json");
  }
}

// The chat prompt is the model's chat format applied to the normalized conversation: developer
// = system, consecutive messages of one role joined, text parts joined; the format's stop
// strings are added to the request's.
TEST(OpenAI, ChatPromptIsTheFormatsLayout) {
  api_fixture f;
  f.mc.n_ctx = 256;
  const bs::request r = bs::parse_chat(bs::json::parse(R"({"messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
      {"role": "user", "content": "three"},
      {"role": "assistant", "content": null},
      {"role": "user", "content": "four"}], "stop": "END"})"), f.mc);
  const std::vector<br::chat_message> want = {
      {"system", "Be brief."}, {"user", "one\ntwo\n\nthree"}, {"assistant", ""}, {"user", "four"}};
  EXPECT_EQ(r.spec.prompt, f.chat.apply(want, true, true));
  std::vector<std::string> stops{"END"};
  for (const auto& s : f.chat.stop_strings()) stops.push_back(s);
  EXPECT_EQ(r.spec.gen.stop, stops);
  EXPECT_EQ(r.spec.gen.max_tokens, -1);  // chat: until end of generation or a full context
}

TEST(OpenAI, ResponseBodiesAndStreamEvents) {
  api_fixture f;
  const bs::request r = bs::parse_chat(bs::json::parse(R"({"messages": [{"role": "user", "content": "hi"}],
      "stream": true, "stream_options": {"include_usage": true}})"), f.mc);
  bs::response_writer w(r, f.mc, "chatcmpl-1", 1234);
  std::vector<bs::token_out> toks(2);
  toks[0].id = 5;
  toks[0].text = "Hel";
  toks[1].id = 6;  // held back: no text, no event
  std::string s = w.chunks(toks);
  bs::job_result res;
  res.reason = bs::finish_reason::length;
  res.prompt_tokens = 4;
  res.completion_tokens = 2;
  s += w.stream_end(res);
  std::vector<bs::json> ev;
  std::size_t at = 0;
  while (at < s.size()) {
    ASSERT_EQ(s.compare(at, 6, "data: "), 0) << s.substr(at);
    const std::size_t end = s.find("\n\n", at);
    ASSERT_NE(end, std::string::npos);
    const std::string payload = s.substr(at + 6, end - at - 6);
    at = end + 2;
    if (payload == "[DONE]") {
      EXPECT_EQ(at, s.size());
      break;
    }
    ev.push_back(bs::json::parse(payload));
  }
  ASSERT_EQ(ev.size(), 4u);  // role, "Hel", finish, usage
  EXPECT_EQ(ev[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(ev[1]["choices"][0]["delta"]["content"], "Hel");
  EXPECT_EQ(ev[1]["object"], "chat.completion.chunk");
  EXPECT_EQ(ev[1]["id"], "chatcmpl-1");
  EXPECT_EQ(ev[1]["model"], "tiny");
  EXPECT_TRUE(ev[1]["usage"].is_null());
  EXPECT_EQ(ev[2]["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(ev[3]["choices"].empty());
  EXPECT_EQ(ev[3]["usage"]["total_tokens"], 6);

  const bs::request c = bs::parse_completion(bs::json::parse(R"({"prompt": "hi", "echo": true})"), f.mc);
  bs::response_writer wc(c, f.mc, "cmpl-1", 1);
  wc.add(toks);
  res.reason = bs::finish_reason::stop;
  const bs::json body = wc.body(res);
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["choices"][0]["text"], "hiHel");  // echo: the prompt as given, then the completion
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["usage"]["prompt_tokens"], 4);
}

}  // namespace
