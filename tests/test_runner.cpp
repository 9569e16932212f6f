// tests/test_runner.cpp - the runner component's API (bitnet/runner/*.hpp): opening a model,
// evaluating one or several sequences, generation with a per-token callback and stop
// conditions, chat formats, embeddings, errors, and synthetic llama models of the real shapes.
//
// References: the forward pass itself is checked against a float64 reference in test_model.cpp;
// here each API result is compared with what another path through the component gives for the
// same computation (a sequence alone against the same sequence batched with another, a run
// with a stop condition against the prefix of a run without it), with hand-built token
// sequences (chat formats) or with a double-precision product (embeddings against logits).
#include <gtest/gtest.h>

#include <algorithm>   // std::count
#include <cmath>       // std::fabs, std::isfinite
#include <cstdint>     // fixed-width integers
#include <cstring>     // std::memcmp
#include <filesystem>  // a model file on disk
#include <fstream>     // writing it
#include <string>      // names
#include <vector>      // data

#include <bitnet/runner/runner.hpp>
#include <unistd.h>  // getpid: per-process file names

#include "convert.hpp"  // synth models of the real shapes, GPT-2 byte tokens
#include "model_builder.hpp"

namespace {

namespace br = bitnet::run;
namespace tok = bitnet::tok;
using bitnet::tensor_type;
using bitnet::test::synth_spec;

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}
bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

std::string temp_path(const char* name) {
  return (std::filesystem::temp_directory_path() / ("bitnet_test_runner_" + std::to_string(getpid()) + "_" + name))
      .string();
}

// The tiny synthetic model with a SentencePiece vocabulary, written to a file.
std::string tiny_model_file(const synth_spec& s0 = {}) {
  synth_spec s = s0;
  s.vocab = true;
  const auto bytes = bitnet::test::make_model(s).bytes();
  const std::string path = temp_path(("tiny_" + std::to_string(s.seed) + ".gguf").c_str());
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

std::vector<std::int32_t> greedy(br::session& s, int seq, std::int32_t first, int n) {
  std::vector<std::int32_t> ids{first};
  for (int i = 0; i < n; ++i) {
    br::batch b;
    b.add(ids.back(), seq, true);
    const auto l = s.decode(b);
    std::int32_t best = 0;
    for (std::size_t v = 1; v < l.size(); ++v)
      if (l[v] > l[static_cast<std::size_t>(best)]) best = static_cast<std::int32_t>(v);
    ids.push_back(best);
  }
  return ids;
}

// ---------------------------------------------------------------- open

TEST(RunnerOpen, FileThenWeightsAndInfo) {
  const std::string path = tiny_model_file();
  br::model_file mf = br::model_file::open(path);
  EXPECT_EQ(mf.cfg().arch, "bitnet-b1.58");
  EXPECT_EQ(mf.cfg().n_layer, 2);
  ASSERT_NE(mf.tokenizer(), nullptr);
  const auto ids = mf.require_tokenizer().encode("hello", true, false);
  EXPECT_EQ(ids.front(), 1);  // BOS of the SentencePiece vocabulary
  br::thread_pool pool(2);
  const br::model m = br::model::load(std::move(mf), {}, pool);
  const br::model_info& i = m.info();
  EXPECT_EQ(i.arch, "bitnet-b1.58");
  EXPECT_EQ(i.n_vocab, 300);
  EXPECT_EQ(i.head_dim, 32);
  EXPECT_EQ(i.rope, "neox");
  EXPECT_EQ(i.activation, "relu2");
  EXPECT_TRUE(i.sub_norms);
  EXPECT_EQ(i.ternary_types, "I2_S");
  EXPECT_EQ(i.head_tensor, "token_embd.weight");
  EXPECT_EQ(i.ternary_params, static_cast<std::size_t>(2 * (256 * 256 * 2 + 256 * 64 * 2 + 256 * 512 * 3)));
  EXPECT_FALSE(i.gemv.empty());
  EXPECT_FALSE(i.weights_layout.empty());
  EXPECT_TRUE(has(i.weights_summary(), ("MiB as " + i.weights_layout).c_str())) << i.weights_summary();
  std::filesystem::remove(path);
}

TEST(RunnerOpen, LlamaInfoNamesItsHeadAndRope) {
  synth_spec s;
  s.arch = "llama";
  s.head_dim = 96;
  s.n_head = 4;
  s.untied_head = true;
  br::thread_pool pool(1);
  const br::model m = br::model::load(bitnet::gguf::file::from_memory(bitnet::test::make_model(s).bytes(), "l.gguf"), {}, pool);
  EXPECT_EQ(m.info().arch, "llama");
  EXPECT_EQ(m.info().head_dim, 96);
  EXPECT_EQ(m.cfg().q_dim(), 384);
  EXPECT_EQ(m.info().rope, "normal");
  EXPECT_EQ(m.info().activation, "silu");
  EXPECT_FALSE(m.info().sub_norms);
  EXPECT_EQ(m.info().head_tensor, "output.weight");
  EXPECT_EQ(m.tokenizer(), nullptr);
  EXPECT_TRUE(has(error_of([&] { (void)m.require_tokenizer(); }), "l.gguf: tokenizer: the GGUF file has no tokenizer.ggml.model"));
}

TEST(RunnerOpen, ErrorsNameTheFileAndWhatWasExpected) {
  EXPECT_TRUE(has(error_of([] { (void)br::model_file::open("/nonexistent/m.gguf"); }), "/nonexistent/m.gguf: cannot open"));
  synth_spec s;
  s.vocab = true;
  auto sm = bitnet::test::make_model(s);
  sm.writer.set_u32("tokenizer.ggml.eos_token_id", 300);
  const std::string e = error_of([&] { (void)br::model_file(bitnet::gguf::file::from_memory(sm.bytes(), "eos.gguf")); });
  EXPECT_TRUE(has(e, "eos.gguf") && has(e, "tokenizer.ggml.eos_token_id is 300, outside the vocabulary of 300 tokens")) << e;
  sm.writer.set_u32("tokenizer.ggml.eos_token_id", 2);
  sm.writer.set_u32("tokenizer.ggml.padding_token_id", 999);  // nothing uses padding: a warning
  const br::model_file mf(bitnet::gguf::file::from_memory(sm.bytes(), "pad.gguf"));
  ASSERT_EQ(mf.warnings().size(), 1u);
  EXPECT_TRUE(has(mf.warnings()[0], "tokenizer.ggml.padding_token_id is 999") && has(mf.warnings()[0], "ignored"))
      << mf.warnings()[0];
  for (const auto& [key, value, want] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"llama.rope.scaling.type", "yarn", "'llama.rope.scaling.type' is 'yarn': RoPE scaling is not supported"},
           {"llama.expert_count", "8", "'llama.expert_count' is 8: mixture-of-experts models are not supported"}}) {
    synth_spec ls;
    ls.arch = "llama";
    auto lm = bitnet::test::make_model(ls);
    if (value == "8")
      lm.writer.set_u32(key, 8);
    else
      lm.writer.set_string(key, value);
    const std::string m = error_of([&] { (void)br::model_file(bitnet::gguf::file::from_memory(lm.bytes(), "l.gguf")); });
    EXPECT_TRUE(has(m, "l.gguf") && has(m, want.c_str())) << m;
  }
  synth_spec ls;
  ls.arch = "llama";
  ls.head_dim = 96;
  ls.n_head = 4;
  auto lm = bitnet::test::make_model(ls);
  lm.writer.set_u32("llama.attention.value_length", 64);
  const std::string m = error_of([&] { (void)br::model_file(bitnet::gguf::file::from_memory(lm.bytes(), "v.gguf")); });
  EXPECT_TRUE(has(m, "'llama.attention.value_length' is 64, expected llama.attention.key_length = 96")) << m;
}

// ---------------------------------------------------------------- evaluate

// Two sequences decoded in one batch per step give each sequence exactly the logits and greedy
// ids it gets alone (per-token activations, the same per-row code in GEMV and GEMM).
TEST(RunnerSession, SequencesBatchedEqualSequencesAlone) {
  synth_spec s;
  s.arch = "llama";
  s.untied_head = true;
  const auto bytes = bitnet::test::make_model(s).bytes();
  br::thread_pool pool(2);
  const br::model m = br::model::load(bitnet::gguf::file::from_memory(bytes, "m.gguf"), {}, pool);
  br::session alone(m, pool, 32);
  const auto a = greedy(alone, 0, 17, 8);
  alone.reset();
  const auto b = greedy(alone, 0, 123, 8);

  br::session both(m, pool, {.n_ctx = 32, .n_batch = 8, .kv = br::kv_type::f32, .n_seq = 3, .embeddings = false});
  std::vector<std::int32_t> ga{17}, gb{123};
  const auto argmax = [](const float* l, std::size_t n) {
    std::int32_t best = 0;
    for (std::size_t v = 1; v < n; ++v)
      if (l[v] > l[static_cast<std::size_t>(best)]) best = static_cast<std::int32_t>(v);
    return best;
  };
  for (int i = 0; i < 8; ++i) {
    br::batch bt;
    bt.add(gb.back(), 2, true);  // any order, any slots
    bt.add(ga.back(), 0, true);
    const auto l = both.decode(bt);
    ASSERT_EQ(l.size(), 2u * 300u);
    gb.push_back(argmax(l.data(), 300));
    ga.push_back(argmax(l.data() + 300, 300));
  }
  EXPECT_EQ(ga, a);
  EXPECT_EQ(gb, b);
  EXPECT_EQ(both.seq_pos(0), 8);
  EXPECT_EQ(both.seq_pos(1), 0);
  EXPECT_EQ(both.seq_pos(2), 8);

  // A prompt and a decode step of another sequence in one batch, logits for marked tokens only.
  both.seq_clear(1);
  both.seq_truncate(2, 3);
  br::batch mixed;
  for (int t = 0; t < 3; ++t) mixed.add(a[static_cast<std::size_t>(t)], 1, t == 2);
  mixed.add(gb[3], 2, true);
  const auto lm = both.decode(mixed);
  ASSERT_EQ(lm.size(), 2u * 300u);
  EXPECT_EQ(argmax(lm.data(), 300), a[3]);
  EXPECT_EQ(argmax(lm.data() + 300, 300), gb[4]);
}

TEST(RunnerSession, ErrorsLeaveTheStateUnchanged) {
  br::thread_pool pool(1);
  const br::model m = br::model::load(bitnet::gguf::file::from_memory(bitnet::test::make_model({}).bytes(), "m.gguf"), {}, pool);
  br::session s(m, pool, {.n_ctx = 4, .n_batch = 4, .kv = br::kv_type::f32, .n_seq = 2, .embeddings = false});
  br::batch b;
  for (int i = 0; i < 5; ++i) b.add(1, 1, false);
  EXPECT_TRUE(has(error_of([&] { s.decode(b); }), "5 more tokens of sequence 1 at position 0 would pass the context size of 4"));
  EXPECT_EQ(s.seq_pos(1), 0);
  b.clear();
  b.add(1, 2, true);
  EXPECT_TRUE(has(error_of([&] { s.decode(b); }), "sequence 2 is outside 0 .. 1"));
  b.clear();
  EXPECT_TRUE(has(error_of([&] { s.decode(b); }), "empty batch"));
  b.add(300, 0, true);
  EXPECT_TRUE(has(error_of([&] { s.decode(b); }), "token id 300 is outside the vocabulary of 300"));
  EXPECT_TRUE(has(error_of([&] { s.seq_truncate(0, 1); }), "cannot keep 1 positions of sequence 0, which holds 0"));
  EXPECT_TRUE(has(error_of([&] { (void)s.embeddings(); }), "embeddings were not requested"));
}

// The embeddings are the head's input: logits = head * embedding, checked in double.
TEST(RunnerSession, EmbeddingsAreTheHeadInput) {
  synth_spec s;
  s.head_type = tensor_type::f32;
  const auto sm = bitnet::test::make_model(s);
  br::thread_pool pool(2);
  const br::model m = br::model::load(bitnet::gguf::file::from_memory(sm.bytes(), "m.gguf"), {}, pool);
  br::session sess(m, pool, {.n_ctx = 16, .n_batch = 4, .kv = br::kv_type::f32, .n_seq = 1, .embeddings = true});
  const std::vector<std::int32_t> toks{5, 77, 123, 9, 250, 31};
  const auto logits = sess.eval(toks, true);
  const auto e = sess.embeddings();
  ASSERT_EQ(e.size(), toks.size() * 256u);
  for (std::size_t r = 0; r < toks.size(); ++r)
    for (std::size_t v = 0; v < 300; v += 37) {
      double want = 0.0;
      for (std::size_t i = 0; i < 256; ++i) want += static_cast<double>(sm.embd[v * 256 + i]) * e[r * 256 + i];
      EXPECT_NEAR(logits[r * 300 + v], want, 1e-4 * (1.0 + std::fabs(want))) << "row " << r << ", token " << v;
    }
}

// embed(): pooled final hidden states of a fresh sequence, the rows eval() returns.
TEST(RunnerSession, EmbedPoolsTheSequencesHiddenStates) {
  br::thread_pool pool(2);
  const br::model m = br::model::load(bitnet::gguf::file::from_memory(bitnet::test::make_model({}).bytes(), "m.gguf"), {}, pool);
  br::session s(m, pool, {.n_ctx = 16, .n_batch = 4, .kv = br::kv_type::f32, .n_seq = 2, .embeddings = true});
  const std::vector<std::int32_t> toks{5, 77, 123, 9, 250};
  (void)s.eval(toks, true);
  const auto e = s.embeddings();
  const std::vector<float> rows(e.begin(), e.end());
  const auto mean = br::embed(s, toks, br::pooling::mean, 1);
  const auto first = br::embed(s, toks, br::pooling::cls, 1);
  const auto last = br::embed(s, toks, br::pooling::last, 1);
  ASSERT_EQ(mean.size(), 256u);
  for (std::size_t i = 0; i < 256; ++i) {
    double m5 = 0.0;
    for (std::size_t r = 0; r < 5; ++r) m5 += rows[r * 256 + i];
    EXPECT_NEAR(mean[i], m5 / 5.0, 1e-6) << i;
    EXPECT_EQ(first[i], rows[i]) << i;
    EXPECT_EQ(last[i], rows[4 * 256 + i]) << i;
  }
  EXPECT_EQ(s.seq_pos(1), 5);
  EXPECT_TRUE(has(error_of([&] { (void)br::embed(s, toks, br::pooling::none); }), "pooling none"));
}

// ---------------------------------------------------------------- generate

struct gen_fixture {
  std::string path = tiny_model_file();
  br::thread_pool pool{2};
  br::model m = br::model::open(path, {}, pool);
  br::session sess{m, pool, 64};
  ~gen_fixture() { std::filesystem::remove(path); }

  br::generation run(const br::generation_params& p, const br::token_callback& cb = {}) {
    sess.reset();
    br::sampler_params sp;
    sp.temp = 0.0f;
    br::sampler smp(sp, m.cfg().n_vocab);
    const auto prompt = m.require_tokenizer().encode("hello", true, false);
    return br::generate(sess, smp, m.require_tokenizer(), prompt, p, cb);
  }
};

TEST(RunnerGenerate, CallbackSeesEveryTokenAndCanStop) {
  gen_fixture f;
  br::generation_params p;
  p.max_tokens = 12;
  p.ignore_eos = true;
  std::vector<std::int32_t> seen;
  std::string streamed;
  const auto full = f.run(p, [&](const br::generated_piece& g) {
    if (g.id >= 0) seen.push_back(g.id);
    streamed += g.text;
    return true;
  });
  EXPECT_EQ(full.stop, br::stop_reason::length);
  ASSERT_EQ(full.ids.size(), 12u);
  EXPECT_EQ(seen, full.ids);
  EXPECT_EQ(streamed, full.text);
  // The text is what a stream decoder fed the prompt and then the ids releases after the prompt.
  const tok::tokenizer& tk = f.m.require_tokenizer();
  const auto prompt = tk.encode("hello", true, false);
  tok::stream_decoder sd(tk);
  for (const auto id : prompt) (void)sd.push(id);
  std::string want;
  for (const auto id : full.ids) want += sd.push(id);
  want += sd.flush();
  EXPECT_EQ(full.text, want);
  EXPECT_EQ(full.pending, full.ids.back());
  EXPECT_EQ(full.prefill_tokens, static_cast<std::int64_t>(prompt.size()));
  EXPECT_EQ(full.decode_tokens, 11);

  // Stopping from the callback after 5 tokens: the same first 5, reason "callback".
  int n = 0;
  const auto stopped = f.run(p, [&](const br::generated_piece& g) { return g.id < 0 || ++n < 5; });
  EXPECT_EQ(stopped.stop, br::stop_reason::callback);
  EXPECT_EQ(std::vector<std::int32_t>(full.ids.begin(), full.ids.begin() + 5), stopped.ids);
  EXPECT_EQ(f.sess.pos(), full.prefill_tokens + 4);  // the fifth token was sampled, not evaluated
}

TEST(RunnerGenerate, StopStringsEndTheTextBeforeThem) {
  gen_fixture f;
  br::generation_params p;
  p.max_tokens = 24;
  p.ignore_eos = true;
  const auto full = f.run(p);
  ASSERT_GE(full.text.size(), 12u) << full.text;
  // A stop string taken from the middle of the unrestricted text.
  const std::string stop = full.text.substr(full.text.size() / 2, 3);
  p.stop = {"never-occurs", stop};
  std::string streamed;
  const auto cut = f.run(p, [&](const br::generated_piece& g) {
    streamed += g.text;
    return true;
  });
  EXPECT_EQ(cut.stop, br::stop_reason::stop_string);
  EXPECT_EQ(cut.text, full.text.substr(0, full.text.find(stop)));
  EXPECT_EQ(streamed, cut.text);  // nothing held back was ever released
  EXPECT_LE(cut.ids.size(), full.ids.size());
}

TEST(RunnerGenerate, ContextFullStopsAndPromptTooLongThrows) {
  gen_fixture f;
  const auto prompt = f.m.require_tokenizer().encode("hello", true, false);
  const auto n_ctx = static_cast<std::int64_t>(prompt.size()) + 3;
  br::session small(f.m, f.pool, n_ctx);
  br::sampler smp({.temp = 0.0f}, f.m.cfg().n_vocab);
  br::generation_params p;
  p.max_tokens = -1;
  p.ignore_eos = true;
  const auto g = br::generate(small, smp, f.m.require_tokenizer(), prompt, p);
  EXPECT_EQ(g.stop, br::stop_reason::context_full);
  EXPECT_EQ(small.pos(), n_ctx);
  EXPECT_EQ(g.ids.size(), 4u);  // 3 evaluated after the prompt, the fourth sampled at the end
  small.reset();
  const std::vector<std::int32_t> long_prompt(static_cast<std::size_t>(n_ctx + 1), 1);
  EXPECT_THROW(br::generate(small, smp, f.m.require_tokenizer(), long_prompt, p), br::context_full);
}

// ---------------------------------------------------------------- chat formats

// A byte-level BPE vocabulary (256 GPT-2 byte tokens, no merges) with control tokens.
tok::tokenizer bpe_vocab(const std::vector<std::string>& specials) {
  tok::vocab_data v;
  v.model = "gpt2";
  v.pre = "llama-bpe";
  for (unsigned b = 0; b < 256; ++b) {
    v.tokens.push_back(bitnet::convert::detail::gpt2_byte_token(b));
    v.types.push_back(tok::token_type::normal);
  }
  for (const auto& s : specials) {
    v.tokens.push_back(s);
    v.types.push_back(tok::token_type::control);
  }
  v.bos = 256;
  v.eos = 257;
  v.add_bos = true;
  v.add_space_prefix = false;
  return tok::tokenizer(std::move(v));
}

// The ids of a text with no merges: one byte token per byte (GPT-2 mapping of each byte).
std::vector<std::int32_t> bytes_of(const tok::tokenizer& tk, std::string_view s) {
  std::vector<std::int32_t> v;
  for (const unsigned char c : s) v.push_back(*tk.find_token(bitnet::convert::detail::gpt2_byte_token(c)));
  return v;
}

std::vector<std::int32_t> cat(std::initializer_list<std::vector<std::int32_t>> parts) {
  std::vector<std::int32_t> v;
  for (const auto& p : parts) v.insert(v.end(), p.begin(), p.end());
  return v;
}

// generation_stream on its own, one id at a time, on a byte vocabulary (one token per byte), with
// the expected releases written out by hand: stop strings are held back and cut, a false start
// is released when it stops matching, UTF-8 waits for its last byte, EOS is not kept,
// max_tokens ends after the last kept id, finish() returns what was held.
TEST(RunnerGenerate, StreamReleasesTextOneIdAtATime) {
  const tok::tokenizer tk = bpe_vocab({"<s>", "</s>"});
  const auto push_all = [&](br::generation_stream& gs, std::string_view text) {
    std::vector<std::string> out;
    for (const auto id : bytes_of(tk, text)) {
      if (gs.done()) break;
      out.push_back(gs.push(id));
    }
    return out;
  };
  using strings = std::vector<std::string>;
  {
    tok::stream_decoder sd(tk);
    br::generation_params p;
    p.max_tokens = -1;
    p.stop = {"STOP", "zz"};
    br::generation_stream gs(tk, p, sd);
    EXPECT_EQ(push_all(gs, "ab STx STOP tail"), (strings{"a", "b", " ", "", "", "STx", " ", "", "", "", ""}));
    EXPECT_TRUE(gs.done());
    EXPECT_EQ(gs.reason(), br::stop_reason::stop_string);
    EXPECT_EQ(gs.text(), "ab STx ");
    EXPECT_EQ(gs.ids().size(), 11u);
    EXPECT_EQ(gs.finish(), "");
    EXPECT_THROW(gs.push(bytes_of(tk, "a")[0]), std::logic_error);
  }
  {
    tok::stream_decoder sd(tk);
    br::generation_params p;
    p.max_tokens = 5;
    p.stop = {"STOP"};
    br::generation_stream gs(tk, p, sd);
    // "\xc3\xa9" is one character in two byte tokens; the fifth id ends generation (length)
    // with "ST" held back, which finish() releases.
    EXPECT_EQ(push_all(gs, "\xc3\xa9xSTOP"), (strings{"", "\xc3\xa9", "x", "", ""}));
    EXPECT_TRUE(gs.done());
    EXPECT_EQ(gs.reason(), br::stop_reason::length);
    EXPECT_EQ(gs.finish(), "ST");
    EXPECT_EQ(gs.finish(), "");  // once
    EXPECT_EQ(gs.text(), "\xc3\xa9xST");
  }
  {
    tok::stream_decoder sd(tk);
    br::generation_params p;
    br::generation_stream gs(tk, p, sd);
    EXPECT_EQ(gs.push(bytes_of(tk, "a")[0]), "a");
    EXPECT_EQ(gs.push(tk.eos()), "");
    EXPECT_TRUE(gs.done());
    EXPECT_EQ(gs.reason(), br::stop_reason::eos);
    EXPECT_EQ(gs.ids(), bytes_of(tk, "a"));  // the end-of-generation id is not kept
  }
  {
    tok::stream_decoder sd(tk);
    br::generation_params p;
    p.ignore_eos = true;
    br::generation_stream gs(tk, p, sd);
    (void)gs.push(tk.eos());
    EXPECT_FALSE(gs.done());
    gs.end(br::stop_reason::context_full);
    gs.end(br::stop_reason::callback);  // the first reason stays
    EXPECT_EQ(gs.reason(), br::stop_reason::context_full);
    EXPECT_EQ(gs.ids().size(), 1u);
  }
  {
    tok::stream_decoder sd(tk);
    br::generation_params p;
    p.max_tokens = 0;
    const br::generation_stream gs(tk, p, sd);
    EXPECT_TRUE(gs.done());
    EXPECT_EQ(gs.reason(), br::stop_reason::length);
  }
}

TEST(RunnerChat, FormatsAreDetectedAndSpelledOut) {
  br::config c;
  c.arch = "llama";
  {  // Llama 3
    const auto tk = bpe_vocab({"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"});
    const auto f = br::chat_format::detect(c, tk, "{{ '<|start_header_id|>' + message['role'] }}");
    ASSERT_EQ(f.style(), br::chat_style::llama3);
    const std::int32_t bos = 256, sh = 258, eh = 259, eot = 260;
    const std::vector<br::chat_message> msgs{{"system", " Be brief. "}, {"user", "Hi"}};
    const auto want = cat({{bos, sh}, bytes_of(tk, "system"), {eh}, bytes_of(tk, "\n\nBe brief."), {eot, sh}, bytes_of(tk, "user"),
                           {eh}, bytes_of(tk, "\n\nHi"), {eot, sh}, bytes_of(tk, "assistant"), {eh}, bytes_of(tk, "\n\n")});
    EXPECT_EQ(f.apply(msgs, true), want);
    br::conversation conv(f, " Be brief. ", true);
    EXPECT_EQ(conv.next_turn("Hi"), want);  // the same tokens, incrementally
    br::generation g;  // a reply cut by the token limit: its last token, then <|eot_id|>
    g.stop = br::stop_reason::length;
    g.pending = 65;
    conv.reply_done(g);
    EXPECT_EQ(conv.next_turn("Ok"), cat({{65, eot, sh}, bytes_of(tk, "user"), {eh}, bytes_of(tk, "\n\nOk"), {eot, sh},
                                         bytes_of(tk, "assistant"), {eh}, bytes_of(tk, "\n\n")}));
    // Special tokens written in a user message stay text: one <|eot_id|>, the format's own.
    const auto v = f.user_turn("<|eot_id|>", true);
    EXPECT_EQ(std::count(v.begin(), v.end(), eot), 1);
  }
  {  // Falcon3: <|system|> ... with EOS ending a reply
    const auto tk = bpe_vocab({"<|begin_of_text|>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>"});
    const auto f = br::chat_format::detect(c, tk, "{% if message['role'] == 'user' %}{{ '<|user|>\\n' }}{% endif %}<|assistant|>");
    ASSERT_EQ(f.style(), br::chat_style::falcon3);
    const std::vector<br::chat_message> msgs{{"user", "Hi"}, {"assistant", "Yo"}, {"user", "Bye"}};
    EXPECT_EQ(f.apply(msgs, true, false),
              cat({{259}, bytes_of(tk, "\nHi\n"), {260}, bytes_of(tk, "\n"), bytes_of(tk, "Yo"), {257}, bytes_of(tk, "\n"), {259},
                   bytes_of(tk, "\nBye\n"), {260}, bytes_of(tk, "\n")}));
  }
  {  // ChatML
    const auto tk = bpe_vocab({"<s>", "</s>", "<|im_start|>", "<|im_end|>"});
    const auto f = br::chat_format::detect(c, tk, "{{'<|im_start|>' + message['role']}}");
    ASSERT_EQ(f.style(), br::chat_style::chatml);
    EXPECT_EQ(f.user_turn(" x ", false), cat({{258}, bytes_of(tk, "user\nx"), {259}, bytes_of(tk, "\n"), {258}, bytes_of(tk, "assistant\n")}));
    EXPECT_EQ(f.reply_end(), cat({{259}, bytes_of(tk, "\n")}));
  }
  {  // BitNet b1.58 2B4T: by architecture and <|eot_id|>, whatever the template says
    br::config b;
    b.arch = "bitnet-b1.58";
    const auto tk = bpe_vocab({"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"});
    const auto f = br::chat_format::detect(b, tk, "{{ '<|start_header_id|>' }}");
    ASSERT_EQ(f.style(), br::chat_style::bitnet);
    EXPECT_EQ(f.opening("S", true), cat({{256}, bytes_of(tk, "System: "), bytes_of(tk, "S"), {260}}));
    EXPECT_EQ(f.user_turn("U", true), cat({bytes_of(tk, "User: "), bytes_of(tk, "U"), {260}, bytes_of(tk, "Assistant: ")}));
  }
  {  // Plain text: no markers; replies also end at "\nUser:"
    const auto tk = bpe_vocab({"<s>", "</s>"});
    const auto f = br::chat_format::detect(c, tk, "");
    ASSERT_EQ(f.style(), br::chat_style::plain);
    EXPECT_EQ(f.stop_strings(), std::vector<std::string>{"\nUser:"});
    EXPECT_EQ(f.user_turn("a", true), bytes_of(tk, "User: a\nAssistant:"));
    EXPECT_EQ(f.user_turn("a", false), bytes_of(tk, "\nUser: a\nAssistant:"));
    EXPECT_EQ(f.user_turn("a", false, true), bytes_of(tk, " a\nAssistant:"));
    EXPECT_TRUE(has(error_of([&] { (void)br::chat_format::named("llama3", tk); }), "no token <|start_header_id|>"));
    EXPECT_TRUE(has(error_of([&] { (void)br::chat_format::named("jinja", tk); }), "unknown chat format 'jinja'"));
    const std::vector<br::chat_message> bad{{"assistant", "x"}};
    EXPECT_TRUE(has(error_of([&] { (void)f.apply(bad, true); }), "roles must alternate"));
  }
}

// ---------------------------------------------------------------- the real shapes

// Synthetic llama models with the real per-layer dimensions of Falcon3-1B, Falcon3-3B and
// Llama3-8B (one layer and a small vocabulary, to stay fast): they load, prefill equals
// decode bit for bit, and generation runs.
TEST(RunnerShapes, LlamaShapesRun) {
  for (const char* shape : {"falcon3-1b", "falcon3-3b", "llama3-8b"}) {
    bitnet::convert::synth_options o;
    o.shape = shape;
    o.layers = 1;
    o.vocab = 600;
    o.head = tensor_type::q8_0;
    const auto bytes = bitnet::convert::build_synth(o).to_bytes();
    br::thread_pool pool(2);
    const br::model m = br::model::load(bitnet::gguf::file::from_memory(bytes, shape), {}, pool);
    const auto* sh = bitnet::convert::find_synth_shape(shape);
    ASSERT_NE(sh, nullptr);
    EXPECT_EQ(m.info().arch, "llama") << shape;
    EXPECT_EQ(m.cfg().n_embd, sh->dim) << shape;
    EXPECT_EQ(m.cfg().head_dim, sh->head_dim ? sh->head_dim : sh->dim / sh->heads) << shape;
    EXPECT_EQ(m.cfg().n_head_kv, sh->kv_heads) << shape;
    EXPECT_EQ(m.info().head_tensor, "output.weight") << shape;
    const std::vector<std::int32_t> toks{1, 300, 42, 599};
    br::session pre(m, pool, 8), dec(m, pool, 8);
    const auto all = pre.eval(toks, true);
    const std::vector<float> a(all.begin(), all.end());
    for (std::size_t p = 0; p < toks.size(); ++p) {
      const auto l = dec.eval(std::span<const std::int32_t>(&toks[p], 1));
      for (const float x : l) ASSERT_TRUE(std::isfinite(x)) << shape;
      EXPECT_EQ(0, std::memcmp(l.data(), a.data() + p * 600, 600 * sizeof(float))) << shape << ", position " << p;
    }
    br::sampler smp({.temp = 0.0f}, 600);
    br::session g(m, pool, 16);
    br::generation_params gp;
    gp.max_tokens = 4;
    gp.ignore_eos = true;
    const auto out = br::generate(g, smp, m.require_tokenizer(), std::vector<std::int32_t>{1}, gp);
    EXPECT_EQ(out.ids.size(), 4u) << shape;
  }
}

}  // namespace
