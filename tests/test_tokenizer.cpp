// tests/test_tokenizer.cpp - the runner's tokenizers (bitnet/runner/tokenizer.hpp).
//
// Expected token ids come only from llama.cpp's vocabulary test vectors in
// shared/data/llamacpp-vocab (*.out, produced by the Hugging Face tokenizers), or from small
// hand-built vocabularies whose results follow from the algorithm by hand. The Llama-3 vocabulary
// is not in shared/: scripts/fetch_llama3_tokenizer.sh downloads its tokenizer.json, and the
// tests that need it skip with a message when it is absent.
#include <gtest/gtest.h>

#include <algorithm>   // std::count, std::max
#include <chrono>      // load and encode timings
#include <cstdlib>     // std::getenv
#include <filesystem>  // data presence checks
#include <fstream>     // reading test vectors
#include <iostream>    // the load-time note
#include <functional>  // std::function for the error-message helper
#include <memory>      // cached tokenizers
#include <random>      // random round trips
#include <span>        // writer arrays
#include <sstream>     // parsing .out lines
#include <string>
#include <vector>

#include <bitnet/runner/tokenizer.hpp>

#if __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>  // Debian nlohmann-json3-dev: reads the Llama-3 tokenizer.json
#define TEST_HAVE_JSON 1
#else
#define TEST_HAVE_JSON 0
#endif

namespace {

using bitnet::tok::stream_decoder;
using bitnet::tok::token_type;
using bitnet::tok::tokenizer;
using bitnet::tok::vocab_data;
namespace fs = std::filesystem;

const std::string kVocabDir = std::string(BITNET_SHARED_DIR) + "/data/llamacpp-vocab/";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// The .inp format of llama.cpp's test-tokenizer-0: each string is followed by
// "\n__ggml_vocab_test__\n" (so a string's own trailing newlines are kept, the one before the
// separator is not).
std::vector<std::string> read_inputs(const std::string& path) {
  const std::string raw = read_file(path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  for (std::size_t pos = 0; pos < raw.size();) {
    const std::size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      out.push_back(raw.substr(pos));
      break;
    }
    out.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  return out;
}

std::vector<std::vector<std::int32_t>> read_expected(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::vector<std::int32_t>> out;
  for (std::string line; std::getline(f, line);) {
    std::istringstream ss(line);
    std::vector<std::int32_t> ids;
    for (std::int32_t id; ss >> id;) ids.push_back(id);
    out.push_back(std::move(ids));
  }
  return out;
}

std::string show(const std::vector<std::int32_t>& ids) {
  std::string s = "[";
  for (const std::int32_t id : ids) {
    if (s.size() > 1) s += ' ';
    s += std::to_string(id);
  }
  s += ']';
  return s;
}

std::string escaped(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  return "'" + out + "'";
}

// ---- vocabularies, loaded once per test binary

struct loaded {
  std::unique_ptr<tokenizer> tok;
  std::string why_missing;  // set when tok is null
  double load_seconds = 0;
};

loaded load_gguf_vocab(const std::string& file) {
  loaded r;
  const std::string path = kVocabDir + file;
  if (!fs::exists(path)) {
    r.why_missing = "shared data not found: " + path;
    return r;
  }
#if BITNET_TOK_HAVE_GGUF
  const auto t0 = std::chrono::steady_clock::now();
  r.tok = std::make_unique<tokenizer>(bitnet::tok::vocab_from_gguf(bitnet::gguf::file::open(path)));
  r.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
#else
  r.why_missing = "include/bitnet/gguf.hpp is not available, so vocab_from_gguf is not built";
#endif
  return r;
}

std::string llama3_json_path() {
  if (const char* env = std::getenv("BITNET_LLAMA3_TOKENIZER_JSON"); env != nullptr && *env != '\0') return env;
  return std::string(BITNET_SOURCE_DIR) + "/third_party/downloads/llama3-tokenizer/tokenizer.json";
}

#if TEST_HAVE_JSON
// Builds the vocabulary of a Hugging Face tokenizer.json (Llama 3): model.vocab and model.merges
// (either "a b" strings or [a, b] pairs), added_tokens as control tokens.
vocab_data vocab_from_tokenizer_json(const std::string& path) {
  std::ifstream f(path);
  const nlohmann::json j = nlohmann::json::parse(f);
  vocab_data v;
  v.model = "gpt2";
  v.pre = "llama-bpe";
  std::size_t n = 0;
  for (const auto& [piece, id] : j.at("model").at("vocab").items()) n = std::max(n, id.get<std::size_t>() + 1);
  for (const auto& t : j.at("added_tokens")) n = std::max(n, t.at("id").get<std::size_t>() + 1);
  v.tokens.resize(n);
  v.types.assign(n, token_type::undefined);
  for (const auto& [piece, id] : j.at("model").at("vocab").items()) {
    v.tokens[id.get<std::size_t>()] = piece;
    v.types[id.get<std::size_t>()] = token_type::normal;
  }
  for (const auto& t : j.at("added_tokens")) {
    v.tokens[t.at("id").get<std::size_t>()] = t.at("content").get<std::string>();
    v.types[t.at("id").get<std::size_t>()] = token_type::control;
  }
  for (const auto& m : j.at("model").at("merges")) {
    if (m.is_string()) {
      v.merges.push_back(m.get<std::string>());
    } else {
      std::string pair = m.at(0).get<std::string>();
      pair += ' ';
      pair += m.at(1).get<std::string>();
      v.merges.push_back(std::move(pair));
    }
  }
  v.bos = 128000;
  v.eos = 128001;
  v.eot = 128009;
  v.add_bos = true;
  v.add_space_prefix = false;
  return v;
}
#endif

loaded load_llama3() {
  loaded r;
#if TEST_HAVE_JSON
  const std::string path = llama3_json_path();
  if (!fs::exists(path)) {
    r.why_missing = "Llama-3 tokenizer.json not found at " + path +
                    " (run scripts/fetch_llama3_tokenizer.sh or set BITNET_LLAMA3_TOKENIZER_JSON)";
    return r;
  }
  vocab_data v = vocab_from_tokenizer_json(path);
  const auto t0 = std::chrono::steady_clock::now();
  r.tok = std::make_unique<tokenizer>(std::move(v));
  r.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
#else
  r.why_missing = "nlohmann/json.hpp not available (Debian package nlohmann-json3-dev)";
#endif
  return r;
}

const loaded& spm() {
  static const loaded l = load_gguf_vocab("ggml-vocab-llama-spm.gguf");
  return l;
}
const loaded& gpt2() {
  static const loaded l = load_gguf_vocab("ggml-vocab-gpt-2.gguf");
  return l;
}
const loaded& llama3() {
  static const loaded l = load_llama3();
  return l;
}

struct vectors {
  std::vector<std::string> inputs;
  std::vector<std::vector<std::int32_t>> expected;
};

vectors read_vectors(const std::string& base) {
  return {read_inputs(kVocabDir + base + ".inp"), read_expected(kVocabDir + base + ".out")};
}

#define REQUIRE_VOCAB(l)                            \
  do {                                              \
    if (!(l).tok) GTEST_SKIP() << (l).why_missing;  \
  } while (0)

void expect_matches_vectors(const tokenizer& tok, const std::string& base) {
  const vectors v = read_vectors(base);
  ASSERT_EQ(v.inputs.size(), 46u) << base << ".inp";
  ASSERT_EQ(v.expected.size(), v.inputs.size()) << base << ".out";
  int passed = 0;
  for (std::size_t i = 0; i < v.inputs.size(); ++i) {
    const std::vector<std::int32_t> got = tok.encode(v.inputs[i], /*add_special=*/false, /*parse_special=*/false);
    EXPECT_EQ(got, v.expected[i]) << base << " string #" << i << " " << escaped(v.inputs[i]) << "\n  expected "
                                  << show(v.expected[i]) << "\n  got      " << show(got);
    passed += got == v.expected[i];
  }
  EXPECT_EQ(passed, 46) << base;
}

// decode(encode(s)) == s: SentencePiece drops the prefix space it added, byte-level BPE is exact.
void expect_round_trips(const tokenizer& tok, const std::string& base) {
  for (const std::string& s : read_inputs(kVocabDir + base + ".inp")) {
    EXPECT_EQ(tok.decode(tok.encode(s, false, false)), s) << base << " " << escaped(s);
    EXPECT_EQ(tok.decode(tok.encode(s, true, false)), s) << base << " with BOS " << escaped(s);
  }
}

// The stream releases prefixes of the final text that end on character boundaries, so every
// chunk is valid UTF-8 and the chunks add up to decode(ids).
void expect_stream_matches_decode(const tokenizer& tok, const std::string& base) {
  for (const std::string& s : read_inputs(kVocabDir + base + ".inp")) {
    const std::vector<std::int32_t> ids = tok.encode(s, /*add_special=*/true, false);
    const std::string want = tok.decode(ids);
    stream_decoder dec(tok);
    std::string got;
    for (const std::int32_t id : ids) {
      const std::string chunk = dec.push(id);
      got += chunk;
      ASSERT_EQ(want.compare(0, got.size(), got), 0) << base << " " << escaped(s) << ": not a prefix";
      if (got.size() < want.size()) {
        const auto next = static_cast<unsigned char>(want[got.size()]);
        EXPECT_FALSE(next >= 0x80 && next < 0xC0) << base << " " << escaped(s) << ": chunk ends inside a character";
      }
    }
    got += dec.flush();
    EXPECT_EQ(got, want) << base << " " << escaped(s);
  }
}

// ---- tests on the real vocabularies

TEST(TokenizerVectors, LlamaSpm46) {
  REQUIRE_VOCAB(spm());
  expect_matches_vectors(*spm().tok, "ggml-vocab-llama-spm.gguf");
}

TEST(TokenizerVectors, Gpt2Bpe46) {
  REQUIRE_VOCAB(gpt2());
  expect_matches_vectors(*gpt2().tok, "ggml-vocab-gpt-2.gguf");
}

TEST(TokenizerVectors, Llama3Bpe46) {
  REQUIRE_VOCAB(llama3());
  expect_matches_vectors(*llama3().tok, "ggml-vocab-llama-bpe.gguf");
}

TEST(TokenizerRoundTrip, LlamaSpm) {
  REQUIRE_VOCAB(spm());
  expect_round_trips(*spm().tok, "ggml-vocab-llama-spm.gguf");
}

TEST(TokenizerRoundTrip, Gpt2Bpe) {
  REQUIRE_VOCAB(gpt2());
  expect_round_trips(*gpt2().tok, "ggml-vocab-gpt-2.gguf");
}

TEST(TokenizerRoundTrip, Llama3Bpe) {
  REQUIRE_VOCAB(llama3());
  expect_round_trips(*llama3().tok, "ggml-vocab-llama-bpe.gguf");
}

TEST(TokenizerStream, MatchesDecodeOnAllVectors) {
  int ran = 0;
  for (const auto* l : {&spm(), &gpt2(), &llama3()}) {
    if (!l->tok) continue;
    expect_stream_matches_decode(*l->tok, l == &spm()    ? "ggml-vocab-llama-spm.gguf"
                                          : l == &gpt2() ? "ggml-vocab-gpt-2.gguf"
                                                         : "ggml-vocab-llama-bpe.gguf");
    ++ran;
  }
  if (ran == 0) GTEST_SKIP() << spm().why_missing;
}

TEST(TokenizerGguf, MetadataOfTheTestVocabularies) {
  REQUIRE_VOCAB(spm());
  REQUIRE_VOCAB(gpt2());
  const tokenizer& s = *spm().tok;
  EXPECT_EQ(s.n_vocab(), 32000u);
  EXPECT_EQ(s.data().model, "llama");
  EXPECT_EQ(s.bos(), 1);
  EXPECT_EQ(s.eos(), 2);
  EXPECT_EQ(s.data().unk, 0);
  EXPECT_TRUE(s.data().add_bos);
  EXPECT_TRUE(s.data().add_space_prefix);
  EXPECT_EQ(s.find_token("<0x0A>"), 13);
  const tokenizer& g = *gpt2().tok;
  EXPECT_EQ(g.n_vocab(), 50257u);
  EXPECT_EQ(g.data().merges.size(), 50000u);
  EXPECT_EQ(g.data().pre, "gpt-2");
  EXPECT_EQ(g.eos(), 50256);
  EXPECT_FALSE(g.data().add_bos);  // no tokenizer.ggml.add_bos_token in the file; GPT-2 default
  EXPECT_EQ(g.eot(), 50256);       // found by name: <|endoftext|>
  EXPECT_TRUE(g.is_eog(50256));
}

TEST(TokenizerSpecial, Gpt2EndOfText) {
  REQUIRE_VOCAB(gpt2());
  const tokenizer& g = *gpt2().tok;
  const std::string text = "Hello<|endoftext|> world";
  const auto on = g.encode(text, false, true);
  std::vector<std::int32_t> want = g.encode("Hello", false, false);
  want.push_back(50256);
  for (const auto id : g.encode(" world", false, false)) want.push_back(id);
  EXPECT_EQ(on, want);
  const auto off = g.encode(text, false, false);
  EXPECT_EQ(std::count(off.begin(), off.end(), 50256), 0);
  EXPECT_EQ(g.decode(off), text);
  EXPECT_EQ(g.decode(on), "Hello world");  // control tokens decode to nothing
}

TEST(TokenizerSpecial, SpmControlTokensAndPrefixSpace) {
  REQUIRE_VOCAB(spm());
  const tokenizer& s = *spm().tok;
  // A fragment after a special token gets the prefix space again (llama.cpp is_prev_special).
  std::vector<std::int32_t> want{1};
  for (const auto id : s.encode("Hello", false, false)) want.push_back(id);
  want.push_back(2);
  EXPECT_EQ(s.encode("<s>Hello</s>", false, true), want);
  const auto off = s.encode("<s>Hello</s>", false, false);
  EXPECT_EQ(std::count(off.begin(), off.end(), 1), 0);
  EXPECT_EQ(s.decode(off), "<s>Hello</s>");
  const auto with_bos = s.encode("Hello", true, false);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos.front(), 1);
  EXPECT_NE(with_bos.back(), 2);  // add_eos is false
  EXPECT_TRUE(s.encode("", false, false).empty());
  EXPECT_EQ(s.encode("", true, false), std::vector<std::int32_t>{1});
}

TEST(TokenizerSpecial, Llama3ChatTokens) {
  REQUIRE_VOCAB(llama3());
  const tokenizer& t = *llama3().tok;
  EXPECT_EQ(t.n_vocab(), 128256u);
  EXPECT_EQ(t.data().merges.size(), 280147u);
  EXPECT_EQ(t.eot(), 128009);
  EXPECT_TRUE(t.is_eog(128009));
  EXPECT_TRUE(t.is_eog(128001));
  EXPECT_FALSE(t.is_eog(128000));
  EXPECT_EQ(t.find_token("<|eot_id|>"), 128009);
  const std::string text = "User: Hi<|eot_id|>Assistant: ";
  std::vector<std::int32_t> want{128000};
  for (const auto id : t.encode("User: Hi", false, false)) want.push_back(id);
  want.push_back(128009);
  for (const auto id : t.encode("Assistant: ", false, false)) want.push_back(id);
  EXPECT_EQ(t.encode(text, true, true), want);
  const auto off = t.encode(text, true, false);
  EXPECT_EQ(std::count(off.begin(), off.end(), 128009), 0);
  EXPECT_EQ(t.decode(off), text);
}

TEST(TokenizerStream, SplitsMultibyteCharactersAcrossByteTokens) {
  REQUIRE_VOCAB(spm());
  const tokenizer& s = *spm().tok;
  const auto byte = [&](const char* name) {
    const auto id = s.find_token(name);
    EXPECT_TRUE(id.has_value()) << name;
    return id.value_or(0);
  };
  stream_decoder dec(s);
  EXPECT_EQ(dec.push(byte("<0xF0>")), "");
  EXPECT_EQ(dec.push(byte("<0x9F>")), "");
  EXPECT_EQ(dec.push(byte("<0xA6>")), "");
  EXPECT_EQ(dec.push(byte("<0x99>")), "\xF0\x9F\xA6\x99");  // U+1F999
  EXPECT_EQ(dec.flush(), "");
  // Ill-formed bytes become U+FFFD; an unfinished character is held, then replaced at flush.
  EXPECT_EQ(dec.push(byte("<0xFF>")), "\xEF\xBF\xBD");
  EXPECT_EQ(dec.push(byte("<0xE2>")), "");
  EXPECT_EQ(dec.push(byte("<0x96>")), "");
  EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");
  // An unfinished character followed by a plain token: replacement, then the text.
  EXPECT_EQ(dec.push(byte("<0xE2>")), "");
  EXPECT_EQ(dec.push(byte("<0x41>")), "\xEF\xBF\xBD" "A");
  EXPECT_EQ(dec.flush(), "");
}

TEST(TokenizerStream, Gpt2EmojiSpreadOverTokens) {
  REQUIRE_VOCAB(gpt2());
  const tokenizer& g = *gpt2().tok;
  const std::string text = "\xF0\x9F\xA6\x99\xF0\x9F\xA6\x99 ok";  // two U+1F999, " ok"
  const auto ids = g.encode(text, false, false);
  ASSERT_GT(ids.size(), 3u);
  stream_decoder dec(g);
  std::vector<std::string> chunks;
  for (const auto id : ids) chunks.push_back(dec.push(id));
  chunks.push_back(dec.flush());
  std::string all;
  for (const auto& c : chunks) {
    EXPECT_TRUE(c.empty() || c == "\xF0\x9F\xA6\x99" || c == "\xF0\x9F\xA6\x99\xF0\x9F\xA6\x99" || c.find("ok") != std::string::npos)
        << "chunk " << escaped(c);
    all += c;
  }
  EXPECT_EQ(all, text);
}

TEST(TokenizerStream, StripsTheSpaceAfterBosOnlyForSpm) {
  REQUIRE_VOCAB(spm());
  const tokenizer& s = *spm().tok;
  const auto ids = s.encode("Hello world", false, false);
  stream_decoder without_bos(s);
  std::string a;
  for (const auto id : ids) a += without_bos.push(id);
  EXPECT_EQ(a, " Hello world");  // continuing text keeps its space
  stream_decoder with_bos(s);
  std::string b = with_bos.push(s.bos());
  for (const auto id : ids) b += with_bos.push(id);
  EXPECT_EQ(b, "Hello world");
}

// An independent strict UTF-8 check: decode each code point, then reject overlong forms,
// surrogates and values above U+10FFFF.
bool valid_utf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    char32_t c = 0;
    if (b < 0x80) {
      n = 1, c = b;
    } else if ((b & 0xE0) == 0xC0) {
      n = 2, c = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      n = 3, c = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      n = 4, c = b & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      const auto x = static_cast<unsigned char>(s[i + k]);
      if ((x & 0xC0) != 0x80) return false;
      c = (c << 6) | (x & 0x3F);
    }
    const char32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

// Random text over a mix of scripts, digit kinds, blanks and punctuation.
std::string random_text(std::mt19937& rng) {
  static const std::vector<std::string> pool = {
      "a", "Z", "q", "0", "7", " ", " ", "  ", "\t", "\n", "\r\n", "'", "'s", "'LL", "!", "?!", ".", "(", "<", "_",
      "\xC3\xA9",          // é
      "\xC3\x9F",          // ß
      "\xD0\x96",          // Ж
      "\xE4\xB8\xAD",      // 中
      "\xE1\x9E\x80",      // Khmer ka
      "\xCC\x81",          // combining acute (Mn: neither letter nor number)
      "\xD9\xA0",          // Arabic-Indic zero (Nd)
      "\xE2\x85\xA0",      // Roman numeral one (Nl)
      "\xC2\xBD",          // ½ (No)
      "\xC2\xA0",          // no-break space (White_Space)
      "\xE3\x80\x80",      // ideographic space
      "\xE2\x80\xA8",      // line separator
      "\xF0\x9F\x98\x81",  // 😁
      "\xF0\x9F\xA6\x99",  // 🦙
      "<s>", "<|endoftext|>", "<|eot_id|>",
  };
  std::uniform_int_distribution<std::size_t> len(0, 24), pick(0, pool.size() - 1);
  std::string s;
  for (std::size_t i = len(rng); i > 0; --i) s += pool[pick(rng)];
  return s;
}

TEST(TokenizerRandom, RoundTripsAndStreamsRandomText) {
  int ran = 0;
  for (const auto* l : {&spm(), &gpt2(), &llama3()}) {
    if (!l->tok) continue;
    const tokenizer& t = *l->tok;
    const unsigned seed = 1234u + static_cast<unsigned>(ran);
    std::mt19937 rng(seed);
    for (int iter = 0; iter < 400; ++iter) {
      const std::string s = random_text(rng);
      const bool parse = iter % 2 == 1;
      const auto ids = t.encode(s, true, parse);
      if (!parse) {
        EXPECT_EQ(t.decode(ids), s) << "seed " << seed << " iter " << iter << " " << escaped(s);
      }
      stream_decoder dec(t);
      std::string streamed;
      for (const auto id : ids) streamed += dec.push(id);
      streamed += dec.flush();
      EXPECT_EQ(streamed, t.decode(ids)) << "seed " << seed << " iter " << iter;
    }
    // Random ids, byte tokens included: every chunk the stream releases is valid UTF-8.
    std::uniform_int_distribution<std::int32_t> any_id(0, static_cast<std::int32_t>(t.n_vocab()) - 1);
    std::uniform_int_distribution<std::int32_t> low_id(0, 300);  // SentencePiece byte tokens are 3..258
    stream_decoder dec(t);
    for (int iter = 0; iter < 4000; ++iter) {
      const std::string chunk = dec.push(iter % 2 ? any_id(rng) : low_id(rng));
      ASSERT_TRUE(valid_utf8(chunk)) << "seed " << seed << " iter " << iter << " " << escaped(chunk);
    }
    EXPECT_TRUE(valid_utf8(dec.flush()));
    ++ran;
  }
  if (ran == 0) GTEST_SKIP() << spm().why_missing;
}

TEST(TokenizerSpeed, EncodesKilobytesQuickly) {
  int ran = 0;
  for (const auto* l : {&spm(), &gpt2(), &llama3()}) {
    if (!l->tok) continue;
    std::string text;
    for (const auto& s : read_inputs(kVocabDir + "ggml-vocab-llama-spm.gguf.inp")) text += s + "\n";
    while (text.size() < 16 * 1024) text += text;
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = l->tok->encode(text, true, false);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(l->tok->decode(ids), text);
    EXPECT_LT(sec, 1.0) << text.size() << " bytes took " << sec << " s";  // generous: sanitizer builds too
    std::string key = "encode_ms_";
    key += std::to_string(ran);
    RecordProperty(key, std::to_string(sec * 1e3));
    ++ran;
  }
  if (ran == 0) GTEST_SKIP() << spm().why_missing;
}

TEST(TokenizerSpeed, LoadsTheLlama3VocabularyQuickly) {
  REQUIRE_VOCAB(llama3());
  RecordProperty("llama3_load_ms", std::to_string(llama3().load_seconds * 1e3));
  std::cout << "[ info     ] Llama-3 vocabulary (128256 tokens, 280147 merges): tokenizer built in "
            << llama3().load_seconds * 1e3 << " ms\n";
  EXPECT_LT(llama3().load_seconds, 5.0);  // about 0.1 s in a release build; sanitizers are slower
}

#if BITNET_TOK_HAVE_GGUF
// The Llama-3 vocabulary written to an in-memory GGUF the way the 2B4T files carry it, then read
// back through vocab_from_gguf: this is the runner's load path for a 128k vocabulary.
std::vector<std::uint8_t> llama3_gguf_bytes(const vocab_data& v, bool with_pre) {
  bitnet::gguf::writer w;
  w.set_string("tokenizer.ggml.model", "gpt2");
  if (with_pre) w.set_string("tokenizer.ggml.pre", "llama-bpe");
  w.set_array_str("tokenizer.ggml.tokens", std::span<const std::string>(v.tokens));
  std::vector<std::int32_t> types;
  for (const token_type t : v.types) types.push_back(static_cast<std::int32_t>(t));
  w.set_array_i32("tokenizer.ggml.token_type", std::span<const std::int32_t>(types));
  const std::vector<float> scores(v.tokens.size(), 0.0f);
  w.set_array_f32("tokenizer.ggml.scores", std::span<const float>(scores));
  w.set_array_str("tokenizer.ggml.merges", std::span<const std::string>(v.merges));
  w.set_u32("tokenizer.ggml.bos_token_id", 128000);
  w.set_u32("tokenizer.ggml.eos_token_id", 128001);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  return w.to_bytes();
}

TEST(TokenizerGguf, Llama3VocabularyFromGguf) {
  REQUIRE_VOCAB(llama3());
  for (const bool with_pre : {true, false}) {
    auto f = bitnet::gguf::file::from_memory(llama3_gguf_bytes(llama3().tok->data(), with_pre), "llama3-vocab.gguf");
    const auto t0 = std::chrono::steady_clock::now();
    const tokenizer t(bitnet::tok::vocab_from_gguf(f));
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "[ info     ] vocab_from_gguf + tokenizer, 128256 tokens / 280147 merges"
              << (with_pre ? "" : " (no tokenizer.ggml.pre)") << ": " << sec * 1e3 << " ms\n";
    EXPECT_LT(sec, 5.0);  // about 0.15 s in a release build; sanitizers are slower
    EXPECT_EQ(t.data().pre, "llama-bpe");  // a missing pre on a Llama-3 vocabulary becomes llama-bpe
    EXPECT_EQ(t.eot(), 128009);            // not in the file: found by name
    EXPECT_TRUE(t.data().add_bos);
    EXPECT_FALSE(t.data().add_space_prefix);
    expect_matches_vectors(t, "ggml-vocab-llama-bpe.gguf");
  }
}
#endif

// ---- tests on small hand-built vocabularies (need no data files)

vocab_data tiny_spm() {
  vocab_data v;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "ab", "\xE2\x96\x81" "a", "<0x0A>", "<0xE2>", "<0x82>", "<0xAC>"};
  v.scores = {0, 0, 0, -1, -2, -2, -1, -3, 0, 0, 0, 0};
  v.types = {token_type::unknown, token_type::control, token_type::control, token_type::normal, token_type::normal,
             token_type::normal,  token_type::normal,  token_type::normal,  token_type::byte,   token_type::byte,
             token_type::byte,    token_type::byte};
  v.bos = 1;
  v.eos = 2;
  v.unk = 0;
  return v;
}

TEST(TokenizerSynthetic, SpmMergesByScoreAndFallsBackToBytes) {
  const tokenizer t(tiny_spm());
  // " ab" -> "▁" "a" "b": "ab" (score -1) beats "▁a" (-3), so the result is "▁" "ab".
  EXPECT_EQ(t.encode("ab", false, false), (std::vector<std::int32_t>{3, 6}));
  // "a\n": "▁a" is the only merge; "\n" is not a piece -> <0x0A>.
  EXPECT_EQ(t.encode("a\n", false, false), (std::vector<std::int32_t>{7, 8}));
  // U+20AC (E2 82 AC) has no piece and no merges -> three byte tokens.
  EXPECT_EQ(t.encode("\xE2\x82\xAC", false, false), (std::vector<std::int32_t>{3, 9, 10, 11}));
  EXPECT_EQ(t.decode(t.encode("\xE2\x82\xAC", true, false)), "\xE2\x82\xAC");
  EXPECT_EQ(t.decode_token(7), " a");
  EXPECT_EQ(t.decode_token(1), "");  // control
}

TEST(TokenizerSynthetic, SpmTiesGoToTheLeftmostPair) {
  vocab_data v = tiny_spm();
  v.add_space_prefix = false;
  v.tokens.push_back("aa");  // id 12
  v.scores.push_back(-1);
  v.types.push_back(token_type::normal);
  const tokenizer t(std::move(v));
  // "aaa": pairs (0,1) and (1,2) both score -1; the left one merges first -> "aa" "a".
  EXPECT_EQ(t.encode("aaa", false, false), (std::vector<std::int32_t>{12, 4}));
}

vocab_data tiny_bpe() {
  vocab_data v;
  v.model = "gpt2";
  v.pre = "gpt2";
  // Single-byte symbols for 'a', 'b', 'c', ' ' (U+0120 in the GPT-2 byte map), then merges.
  v.tokens = {"a", "b", "c", "\xC4\xA0", "bc", "ab", "abc", "\xC4\xA0" "a", "<|end|>"};
  v.types.assign(v.tokens.size(), token_type::normal);
  v.types.back() = token_type::control;
  v.merges = {"b c", "a b", "a bc", "\xC4\xA0 a"};
  v.eos = 8;
  v.add_bos = false;
  return v;
}

TEST(TokenizerSynthetic, BpeMergesByRank) {
  const tokenizer t(tiny_bpe());
  // "abc": "b c" has rank 0, so "a" "bc", then "a bc" -> "abc"; "ab" (rank 1) never applies.
  EXPECT_EQ(t.encode("abc", false, false), (std::vector<std::int32_t>{6}));
  // "cab": "a b" -> "ab"; nothing merges "c" with "ab".
  EXPECT_EQ(t.encode("cab", false, false), (std::vector<std::int32_t>{2, 5}));
  // " a b": the GPT-2 rules cut " a" and " b"; " b" has no merge -> U+0120, "b".
  EXPECT_EQ(t.encode(" a b", false, false), (std::vector<std::int32_t>{7, 3, 1}));
  EXPECT_EQ(t.decode(t.encode(" a b", false, false)), " a b");
  EXPECT_EQ(t.encode("a<|end|>", false, true), (std::vector<std::int32_t>{0, 8}));
  EXPECT_TRUE(t.is_eog(8));
}

TEST(TokenizerSynthetic, BpeUnknownBytesUseTheUnknownToken) {
  vocab_data v = tiny_bpe();
  v.unk = 2;
  const tokenizer t(std::move(v));
  EXPECT_EQ(t.encode("a?", false, false), (std::vector<std::int32_t>{0, 2}));  // '?' is not in the vocabulary
  const tokenizer strict(tiny_bpe());
  EXPECT_THROW(static_cast<void>(strict.encode("a?", false, false)), std::runtime_error);
}

// Runs f, expects std::runtime_error, returns its message.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no std::runtime_error";
  return {};
}

TEST(TokenizerErrors, InvalidUtf8NamesTheByteOffset) {
  const tokenizer t(tiny_spm());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"ab\xFF", "offset 2 (byte 0xFF)"},             // never valid
      {"a\x80", "offset 1 (byte 0x80)"},              // stray continuation byte
      {"\xC0\xAF", "offset 0 (byte 0xC0)"},           // overlong '/'
      {"aa\xE0\x80\xAF", "offset 2 (byte 0xE0)"},     // overlong three-byte form
      {"\xED\xA0\x80", "offset 0 (byte 0xED)"},       // UTF-16 surrogate D800
      {"b\xF4\x90\x80\x80", "offset 1 (byte 0xF4)"},  // above U+10FFFF
      {"abc\xE2\x82", "offset 3 (byte 0xE2)"},        // truncated at the end
      {"\xE2\x82" "a", "offset 0 (byte 0xE2)"},       // truncated in the middle
  };
  for (const auto& [text, where] : cases) {
    const std::string msg = error_of([&] { static_cast<void>(t.encode(text, true, true)); });
    EXPECT_NE(msg.find("invalid UTF-8"), std::string::npos) << msg;
    EXPECT_NE(msg.find(where), std::string::npos) << msg << " / want " << where;
  }
  EXPECT_NO_THROW(static_cast<void>(t.encode("\xF4\x8F\xBF\xBF \xEF\xBF\xBD", false, false)));  // U+10FFFF, U+FFFD
}

TEST(TokenizerRandom, RejectsExactlyTheInvalidUtf8) {
  const tokenizer t(tiny_spm());
  std::mt19937 rng(99);
  std::uniform_int_distribution<int> byte(0, 255), len(0, 8), kind(0, 3);
  int invalid = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s;
    for (int i = len(rng); i > 0; --i) {
      const int k = kind(rng);  // bias towards lead and continuation bytes
      s += static_cast<char>(k == 0 ? byte(rng) : k == 1 ? 0x80 + byte(rng) % 64 : k == 2 ? 0xC0 + byte(rng) % 64 : 'a');
    }
    bool threw = false;
    try {
      static_cast<void>(t.encode(s, false, false));
    } catch (const std::runtime_error&) {
      threw = true;
    }
    ASSERT_EQ(threw, !valid_utf8(s)) << "iter " << iter << " " << escaped(s);
    invalid += threw;
  }
  EXPECT_GT(invalid, 1000);
  EXPECT_LT(invalid, 19000);
}

TEST(TokenizerErrors, ConstructorValidates) {
  const auto msg = [](vocab_data v) { return error_of([&] { tokenizer t(std::move(v)); }); };
  vocab_data v = tiny_spm();
  v.model = "wordpiece";
  EXPECT_NE(msg(v).find("unsupported tokenizer model 'wordpiece'"), std::string::npos);
  v = tiny_spm();
  v.scores.pop_back();
  EXPECT_NE(msg(v).find("11 scores for 12 tokens"), std::string::npos);
  v = tiny_spm();
  v.types.push_back(token_type::normal);
  EXPECT_NE(msg(v).find("13 token types for 12 tokens"), std::string::npos);
  v = tiny_spm();
  v.eos = 12;
  EXPECT_NE(msg(v).find("EOS token id 12"), std::string::npos);
  v = tiny_spm();
  v.bos = -1;
  EXPECT_NE(msg(v).find("add_bos is set but there is no BOS"), std::string::npos);
  v = tiny_spm();
  v.tokens.clear();
  v.scores.clear();
  v.types.clear();
  v.bos = v.eos = v.unk = -1;
  EXPECT_NE(msg(v).find("no tokens"), std::string::npos);
  vocab_data b = tiny_bpe();
  b.merges.push_back("abc");
  EXPECT_NE(msg(b).find("merge #4 ('abc')"), std::string::npos);
  b = tiny_bpe();
  b.pre = "qwen2";
  EXPECT_NE(msg(b).find("unsupported pre-tokenizer 'qwen2'"), std::string::npos);
  const tokenizer t(tiny_bpe());
  EXPECT_NE(error_of([&] { static_cast<void>(t.decode_token(9)); }).find("token id 9"), std::string::npos);
  EXPECT_NE(error_of([&] { static_cast<void>(t.decode_token(-1)); }).find("token id -1"), std::string::npos);
}

}  // namespace
