// The real vocab-only GGUF files of shared/data/llamacpp-vocab load fully. Checked three ways:
// 1. against an independent, stream-based parse written here (no code shared with the reader),
// 2. against the tokenizer test vectors (.inp strings, .out ids made by llama.cpp): the pieces
//    of the expected ids, decoded with the SentencePiece / GPT-2 byte-level rules, must give
//    back each input string,
// 3. against known facts of the two vocabularies (Llama-2 SPM: 0 <unk>, 1 <s>, 2 </s>, byte
//    tokens <0x00>..<0xFF> at 3..258; GPT-2: 50,257 tokens, 50,000 merges, 50256 <|endoftext|>).
// Re-encoding everything through the typed getters and setters gives back the same file.
#include <bitnet/gguf.hpp>

#include <gtest/gtest.h>

#include <bit>         // std::endian
#include <cstdint>     // fixed-width integers
#include <cstdio>      // std::snprintf for byte-token names
#include <cstring>     // std::memcpy in the independent parser
#include <filesystem>  // existence checks for the shared data
#include <fstream>     // independent parser and test vectors
#include <map>         // independent parse results
#include <span>        // string_view arrays for the writer
#include <sstream>     // reading whole files
#include <stdexcept>   // independent parse errors
#include <string>      // tokens
#include <vector>      // arrays

namespace {

namespace gguf = bitnet::gguf;

const std::string kDir = std::string(BITNET_SHARED_DIR) + "/data/llamacpp-vocab/";

#define REQUIRE_FILE(path)                                                                  \
  do {                                                                                      \
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "shared data not found: " << (path); \
  } while (0)

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- independent parse: sequential istream reads, values kept per key ----
struct ref_value {
  std::uint32_t type = 0, elem = 0;
  std::vector<std::string> strings;  // string scalars and arrays
  std::vector<double> numbers;       // every numeric/bool element
};
struct ref_file {
  std::uint32_t version = 0;
  std::uint64_t n_tensors = 0;
  std::vector<std::string> order;
  std::map<std::string, ref_value> kv;
};

ref_file independent_parse(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  auto raw = [&](void* p, std::size_t n) {
    in.read(static_cast<char*>(p), static_cast<std::streamsize>(n));
    if (!in) throw std::runtime_error("independent parse: short read");
  };
  auto u32 = [&] { std::uint32_t v; raw(&v, 4); return v; };  // host is little-endian (checked below)
  auto u64 = [&] { std::uint64_t v; raw(&v, 8); return v; };
  auto str = [&] {
    std::string s(u64(), '\0');
    raw(s.data(), s.size());
    return s;
  };
  auto scalar = [&](std::uint32_t t, ref_value& out) {
    unsigned char b[8] = {};
    switch (t) {
      case 8: out.strings.push_back(str()); return;
      case 0: raw(b, 1); out.numbers.push_back(b[0]); return;
      case 1: raw(b, 1); out.numbers.push_back(static_cast<std::int8_t>(b[0])); return;
      case 7: raw(b, 1); out.numbers.push_back(b[0]); return;
      case 4: { std::uint32_t v; raw(&v, 4); out.numbers.push_back(v); return; }
      case 5: { std::int32_t v; raw(&v, 4); out.numbers.push_back(v); return; }
      case 6: { float v; raw(&v, 4); out.numbers.push_back(v); return; }
      default: throw std::runtime_error("independent parse: type not used by these files");
    }
  };
  ref_file r;
  char magic[4];
  raw(magic, 4);
  if (std::string(magic, 4) != "GGUF") throw std::runtime_error("independent parse: magic");
  r.version = u32();
  r.n_tensors = u64();
  const std::uint64_t n_kv = u64();
  for (std::uint64_t i = 0; i < n_kv; ++i) {
    std::string key = str();
    ref_value v;
    v.type = u32();
    if (v.type == 9) {
      v.elem = u32();
      const std::uint64_t n = u64();
      for (std::uint64_t j = 0; j < n; ++j) scalar(v.elem, v);
    } else {
      scalar(v.type, v);
    }
    r.order.push_back(key);
    r.kv.emplace(std::move(key), std::move(v));
  }
  if (in.peek() != EOF) throw std::runtime_error("independent parse: trailing bytes in a 0-tensor file");
  return r;
}

void expect_matches_independent_parse(const gguf::file& f, const ref_file& ref) {
  EXPECT_EQ(f.version(), ref.version);
  EXPECT_EQ(f.tensors().size(), ref.n_tensors);
  ASSERT_EQ(f.metadata().size(), ref.order.size());
  for (std::size_t i = 0; i < ref.order.size(); ++i) {
    const std::string& key = ref.order[i];
    const ref_value& v = ref.kv.at(key);
    SCOPED_TRACE(key);
    EXPECT_EQ(f.metadata()[i].key, key);
    EXPECT_EQ(static_cast<std::uint32_t>(f.type_of(key)), v.type);
    if (v.type == 9) {
      EXPECT_EQ(static_cast<std::uint32_t>(f.array_type(key)), v.elem);
      if (v.elem == 8) {
        const auto got = f.get_string_array(key);
        ASSERT_EQ(got.size(), v.strings.size());
        for (std::size_t j = 0; j < got.size(); ++j) ASSERT_EQ(got[j], v.strings[j]) << j;
      } else if (v.elem == 6) {
        const auto got = f.get_float_array(key);
        ASSERT_EQ(got.size(), v.numbers.size());
        for (std::size_t j = 0; j < got.size(); ++j) ASSERT_EQ(got[j], v.numbers[j]) << j;
      } else {
        const auto got = f.get_int_array(key);
        ASSERT_EQ(got.size(), v.numbers.size());
        for (std::size_t j = 0; j < got.size(); ++j) ASSERT_EQ(static_cast<double>(got[j]), v.numbers[j]) << j;
      }
    } else if (v.type == 8) {
      EXPECT_EQ(f.get_string(key), v.strings.at(0));
    } else if (v.type == 7) {
      EXPECT_EQ(f.get_bool(key), v.numbers.at(0) != 0);
    } else if (v.type == 6) {
      EXPECT_EQ(f.get_float(key), v.numbers.at(0));
    } else {
      EXPECT_EQ(static_cast<double>(f.get_int(key)), v.numbers.at(0));
    }
  }
}

// ---- tokenizer test vectors ----
struct vector_case {
  std::string text;
  std::vector<std::int64_t> ids;
};
std::vector<vector_case> test_vectors(const std::string& base) {
  const std::string inp = slurp(base + ".inp");
  const std::string out = slurp(base + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<vector_case> cases;
  std::size_t pos = 0;
  std::istringstream lines(out);
  while (true) {
    const std::size_t next = inp.find(sep, pos);
    if (next == std::string::npos) break;
    vector_case c;
    c.text = inp.substr(pos, next - pos);
    pos = next + sep.size();
    std::string line;
    std::getline(lines, line);
    std::istringstream ids(line);
    for (std::int64_t id; ids >> id;) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  return cases;
}

// SentencePiece: U+2581 is a space, <0xHH> is a raw byte; the encoder adds one leading space.
std::string decode_spm(const std::vector<std::string_view>& tokens, const std::vector<std::int64_t>& ids) {
  std::string s;
  for (auto id : ids) {
    const std::string_view t = tokens.at(static_cast<std::size_t>(id));
    if (t.size() == 6 && t.substr(0, 3) == "<0x" && t[5] == '>') {
      s.push_back(static_cast<char>(std::stoi(std::string(t.substr(3, 2)), nullptr, 16)));
      continue;
    }
    for (std::size_t i = 0; i < t.size();) {
      if (t.compare(i, 3, "\xe2\x96\x81") == 0) {
        s.push_back(' ');
        i += 3;
      } else {
        s.push_back(t[i++]);
      }
    }
  }
  return s;
}

// GPT-2 byte-level BPE: each byte is shown as one code point; printable bytes (33..126,
// 161..172, 174..255) as themselves, the other 68 as 256, 257, ... in byte order.
std::string decode_gpt2(const std::vector<std::string_view>& tokens, const std::vector<std::int64_t>& ids) {
  std::map<std::uint32_t, unsigned char> to_byte;
  std::uint32_t next = 256;
  for (unsigned b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    to_byte[printable ? b : next++] = static_cast<unsigned char>(b);
  }
  std::string s;
  for (auto id : ids) {
    const std::string_view t = tokens.at(static_cast<std::size_t>(id));
    for (std::size_t i = 0; i < t.size();) {  // UTF-8 decode (1..2 bytes cover U+0000..U+0143)
      const auto c = static_cast<unsigned char>(t[i]);
      std::uint32_t cp = c;
      if (c >= 0xC0) {
        cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(t[i + 1]) & 0x3Fu);
        i += 2;
      } else {
        ++i;
      }
      s.push_back(static_cast<char>(to_byte.at(cp)));
    }
  }
  return s;
}

// Rebuilds a file's metadata through the typed getters and setters only.
std::vector<std::uint8_t> reencode_typed(const gguf::file& f) {
  gguf::writer w;
  for (const auto& kv : f.metadata()) {
    const std::string k(kv.key);
    switch (kv.type) {
      case gguf::value_type::string: w.set_string(k, f.get_string(k)); break;
      case gguf::value_type::u32: w.set_u32(k, static_cast<std::uint32_t>(f.get_uint(k))); break;
      case gguf::value_type::f32: w.set_f32(k, static_cast<float>(f.get_float(k))); break;
      case gguf::value_type::boolean: w.set_bool(k, f.get_bool(k)); break;
      case gguf::value_type::array:
        if (kv.elem_type == gguf::value_type::string) {
          const auto v = f.get_string_array(k);
          w.set_array_str(k, std::span<const std::string_view>(v));
        } else if (kv.elem_type == gguf::value_type::f32) {
          w.set_array_f32(k, f.get_float_array(k));
        } else if (kv.elem_type == gguf::value_type::i32) {
          const auto v = f.get_int_array(k);
          std::vector<std::int32_t> n(v.begin(), v.end());
          w.set_array_i32(k, n);
        } else {
          ADD_FAILURE() << "array type not expected in these files: " << k;
        }
        break;
      default: ADD_FAILURE() << "type not expected in these files: " << k;
    }
  }
  return w.to_bytes();
}

TEST(GgufVocab, LlamaSpmLoadsFully) {
  const std::string path = kDir + "ggml-vocab-llama-spm.gguf";
  REQUIRE_FILE(path);
  ASSERT_EQ(std::endian::native, std::endian::little) << "the independent parser assumes a little-endian host";
  const auto f = gguf::file::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.size(), 723869u);  // PROVENANCE.md
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.data_offset(), f.size());
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(f.get_uint("llama.vocab_size"), 32000u);
  EXPECT_EQ(f.array_size("tokenizer.ggml.tokens"), 32000u);
  EXPECT_EQ(f.array_size("tokenizer.ggml.scores"), 32000u);
  EXPECT_EQ(f.array_size("tokenizer.ggml.token_type"), 32000u);
  EXPECT_FALSE(f.has("tokenizer.ggml.merges"));
  EXPECT_EQ(f.get_uint("tokenizer.ggml.bos_token_id"), 1u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.eos_token_id"), 2u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.unknown_token_id"), 0u);
  EXPECT_TRUE(f.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_FALSE(f.get_bool("tokenizer.ggml.add_eos_token"));
  EXPECT_EQ(static_cast<float>(f.get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);

  const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 32000u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[2], "</s>");
  for (unsigned b = 0; b < 256; ++b) {  // byte fallback tokens
    char want[8];
    std::snprintf(want, sizeof want, "<0x%02X>", b);
    ASSERT_EQ(tokens[3 + b], want) << b;
  }
  const auto types = f.get_int_array("tokenizer.ggml.token_type");
  EXPECT_EQ(types[0], 2);    // UNKNOWN
  EXPECT_EQ(types[1], 3);    // CONTROL
  EXPECT_EQ(types[2], 3);
  EXPECT_EQ(types[3], 6);    // BYTE
  EXPECT_EQ(types[258], 6);
  EXPECT_EQ(types[259], 1);  // NORMAL
  const auto scores = f.get_float_array("tokenizer.ggml.scores");
  EXPECT_EQ(scores[0], 0.0f);
  EXPECT_LT(scores[31999], scores[300]);  // SentencePiece scores fall with the piece rank

  expect_matches_independent_parse(f, independent_parse(path));

  const auto cases = test_vectors(path);
  ASSERT_EQ(cases.size(), 46u);  // PROVENANCE.md: 46 test strings
  for (const auto& c : cases) {
    EXPECT_EQ(decode_spm(tokens, c.ids), c.text.empty() ? "" : " " + c.text) << c.text;
  }
}

TEST(GgufVocab, Gpt2LoadsFully) {
  const std::string path = kDir + "ggml-vocab-gpt-2.gguf";
  REQUIRE_FILE(path);
  ASSERT_EQ(std::endian::native, std::endian::little) << "the independent parser assumes a little-endian host";
  const auto f = gguf::file::open(path);
  EXPECT_EQ(f.size(), 1766807u);  // PROVENANCE.md
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.get_string("general.architecture"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.array_size("tokenizer.ggml.tokens"), 50257u);
  EXPECT_EQ(f.array_size("tokenizer.ggml.token_type"), 50257u);
  EXPECT_EQ(f.array_size("tokenizer.ggml.merges"), 50000u);
  EXPECT_FALSE(f.has("tokenizer.ggml.scores"));
  EXPECT_EQ(f.get_uint("tokenizer.ggml.bos_token_id"), 50256u);
  EXPECT_EQ(f.get_uint("tokenizer.ggml.eos_token_id"), 50256u);

  const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 50257u);
  EXPECT_EQ(tokens[0], "!");  // the byte-level alphabet starts at byte 33
  EXPECT_EQ(tokens[50256], "<|endoftext|>");
  const auto merges = f.get_string_array("tokenizer.ggml.merges");
  EXPECT_EQ(merges[0], "\xc4\xa0 t");  // "Ġ t": the most frequent merge is space + t
  for (const auto m : merges) ASSERT_NE(m.find(' '), std::string_view::npos) << m;

  expect_matches_independent_parse(f, independent_parse(path));

  const auto cases = test_vectors(path);
  ASSERT_EQ(cases.size(), 46u);
  for (const auto& c : cases) EXPECT_EQ(decode_gpt2(tokens, c.ids), c.text) << c.text;
}

TEST(GgufVocab, TypedReencodeAndCopyKvReproduceTheFilesByteForByte) {
  for (const char* name : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"}) {
    const std::string path = kDir + name;
    REQUIRE_FILE(path);
    SCOPED_TRACE(name);
    const auto f = gguf::file::open(path);
    const std::vector<std::uint8_t> original(f.bytes(), f.bytes() + f.size());
    EXPECT_EQ(reencode_typed(f), original);
    gguf::writer w;
    for (const auto& kv : f.metadata()) w.copy_kv(f, kv.key);
    EXPECT_EQ(w.to_bytes(), original);
  }
}

}  // namespace
