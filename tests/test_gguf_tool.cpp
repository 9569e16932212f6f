// bitnet-gguf: runs the built tool on files made by the writer (and the real vocab files) and
// checks its text output, its --json output (parsed by a small strict JSON parser here), its
// exit codes and its error messages.
#include <bitnet/gguf.hpp>

#include <gtest/gtest.h>
#include <unistd.h>  // getpid: per-process scratch file names

#include <sys/wait.h>  // WEXITSTATUS for the tool's exit code

#include <cstdint>     // fixed-width integers
#include <cstdio>      // popen
#include <filesystem>  // tool and data existence
#include <fstream>     // reading captured stderr
#include <sstream>     // slurping
#include <stdexcept>   // JSON syntax errors
#include <string>      // output text
#include <vector>      // JSON arrays

namespace {

namespace gguf = bitnet::gguf;
using bitnet::tensor_type;

const std::string kTool = std::string(BITNET_BINARY_DIR) + "/tools/bitnet-gguf";
// Per-process scratch names: CTest runs these tests as parallel processes.
const std::string kTmp = std::string(BITNET_BINARY_DIR) + "/test_gguf_tool_" + std::to_string(::getpid()) + "_";

struct run_result {
  int code = -1;
  std::string out, err;
};

// Arguments are quoted for the shell; all paths here are ours.
run_result run(const std::string& args) {
  const std::string err_path = kTmp + "stderr.txt";
  const std::string cmd = "'" + kTool + "' " + args + " 2>'" + err_path + "'";
  run_result r;
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream e(err_path);
  std::ostringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  return r;
}

#define REQUIRE_TOOL()                                                                         \
  do {                                                                                         \
    if (!std::filesystem::exists(kTool)) GTEST_SKIP() << "tool not built: " << kTool;         \
  } while (0)

// ---- a small strict JSON parser (RFC 8259 syntax, UTF-8 checked) ----
struct json {
  enum kind_t { null_v, bool_v, number_v, string_v, array_v, object_v } kind = null_v;
  bool b = false;
  double num = 0;
  std::string raw_number;  // exact text, for integers beyond double precision
  std::string str;
  std::vector<json> arr;
  std::vector<std::string> keys;  // object members: keys[i] -> vals[i] (a vector of pairs would
  std::vector<json> vals;         // need json complete here; a vector of json does not)
  const json& operator[](const std::string& k) const {
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (keys[i] == k) return vals[i];
    throw std::runtime_error("json: no key " + k);
  }
  const json& operator[](std::size_t i) const { return arr.at(i); }
  bool has(const std::string& k) const {
    for (const auto& key : keys)
      if (key == k) return true;
    return false;
  }
};

class json_parser {
 public:
  explicit json_parser(std::string_view s) : s_(s) {}
  json parse_document() {
    json v = value();
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& m) { throw std::runtime_error("json at " + std::to_string(i_) + ": " + m); }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  json value() {
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    json v;
    const char c = s_[i_];
    if (c == '{') {
      ++i_;
      v.kind = json::object_v;
      if (eat('}')) return v;
      do {
        ws();
        v.keys.push_back(string());
        expect(':');
        v.vals.push_back(value());
      } while (eat(','));
      expect('}');
    } else if (c == '[') {
      ++i_;
      v.kind = json::array_v;
      if (eat(']')) return v;
      do v.arr.push_back(value());
      while (eat(','));
      expect(']');
    } else if (c == '"') {
      v.kind = json::string_v;
      v.str = string();
    } else if (s_.substr(i_, 4) == "true") {
      i_ += 4;
      v.kind = json::bool_v;
      v.b = true;
    } else if (s_.substr(i_, 5) == "false") {
      i_ += 5;
      v.kind = json::bool_v;
    } else if (s_.substr(i_, 4) == "null") {
      i_ += 4;
    } else {
      v.kind = json::number_v;
      const std::size_t start = i_;
      if (s_[i_] == '-') ++i_;
      if (i_ < s_.size() && s_[i_] == '0') ++i_;
      else if (!digits()) fail("bad number");
      if (i_ < s_.size() && s_[i_] == '.') {
        ++i_;
        if (!digits()) fail("bad fraction");
      }
      if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
        ++i_;
        if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
        if (!digits()) fail("bad exponent");
      }
      v.raw_number = std::string(s_.substr(start, i_ - start));
      v.num = std::stod(v.raw_number);
    }
    return v;
  }
  bool digits() {
    const std::size_t start = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > start;
  }
  static void utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  std::string string() {
    if (i_ >= s_.size() || s_[i_] != '"') fail("expected string");
    ++i_;
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) fail("raw control character in string");
      if (c == '\\') {
        if (++i_ >= s_.size()) fail("bad escape");
        const char e = s_[i_++];
        switch (e) {
          case '"': out.push_back('"'); break;
          case '\\': out.push_back('\\'); break;
          case '/': out.push_back('/'); break;
          case 'b': out.push_back('\b'); break;
          case 'f': out.push_back('\f'); break;
          case 'n': out.push_back('\n'); break;
          case 'r': out.push_back('\r'); break;
          case 't': out.push_back('\t'); break;
          case 'u': {
            if (i_ + 4 > s_.size()) fail("bad \\u");
            const std::uint32_t cp = static_cast<std::uint32_t>(std::stoul(std::string(s_.substr(i_, 4)), nullptr, 16));
            i_ += 4;
            if (cp >= 0xD800 && cp <= 0xDFFF) fail("surrogates are not produced by the tool");
            utf8(out, cp);
            break;
          }
          default: fail("bad escape");
        }
        continue;
      }
      // UTF-8: validate the sequence.
      std::size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
      if (len == 0 || i_ + len > s_.size()) fail("invalid UTF-8");
      for (std::size_t k = 1; k < len; ++k)
        if ((static_cast<unsigned char>(s_[i_ + k]) & 0xC0) != 0x80) fail("invalid UTF-8");
      out.append(s_.substr(i_, len));
      i_ += len;
    }
  }
  std::string_view s_;
  std::size_t i_ = 0;
};

json parse_json(const std::string& s) { return json_parser(s).parse_document(); }

// ---- the test file ----
std::string make_fork_file() {
  gguf::writer w;
  w.set("general.architecture", "bitnet");
  w.set("general.name", std::string("odd \"name\"\n\x01 \xff end"));  // needs escaping; \xff is not UTF-8
  w.set_u32("bitnet.block_count", 2);
  w.set_f32("bitnet.eps", 1e-5f);
  std::vector<std::int32_t> ids(20);
  for (int i = 0; i < 20; ++i) ids[static_cast<std::size_t>(i)] = i * 3 - 7;
  w.set_array("ids", ids);
  w.add_tensor("blk.0.attn_q.weight", tensor_type::i2_s, {256, 4}, std::vector<std::uint8_t>(256 * 4 / 4 + 32, 1));
  w.add_tensor("blk.0.ffn_down.weight", tensor_type::tl2, {512, 2}, std::vector<std::uint8_t>(288, 2));
  w.add_tensor("output_norm.weight", tensor_type::f32, {256}, std::vector<std::uint8_t>(1024, 3));
  const std::string path = kTmp + "fork.gguf";
  w.write(path);
  return path;
}

TEST(GgufTool, InfoTextShowsHeaderMetadataTensorsAndTotals) {
  REQUIRE_TOOL();
  const auto r = run("info '" + make_fork_file() + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const std::string& o = r.out;
  EXPECT_NE(o.find("version     3\n"), std::string::npos) << o;
  EXPECT_NE(o.find("tensors     3\n"), std::string::npos) << o;
  EXPECT_NE(o.find("metadata    5 keys\n"), std::string::npos) << o;
  EXPECT_NE(o.find("alignment   32 (default)\n"), std::string::npos) << o;
  EXPECT_NE(o.find("ids         bitnet convention: general.architecture is 'bitnet', a BitNet architecture"),
            std::string::npos) << o;
  EXPECT_NE(o.find("[i32 x 20] -7, -4, -1, 2, 5, 8, 11, 14, ..."), std::string::npos) << o;
  EXPECT_NE(o.find("1e-05"), std::string::npos) << o;
  // tensor rows: name, type, shape, bytes, offset
  EXPECT_NE(o.find("blk.0.attn_q.weight    I2_S    [256, 4]"), std::string::npos) << o;
  EXPECT_NE(o.find("blk.0.ffn_down.weight  TL2     [512, 2]"), std::string::npos) << o;
  EXPECT_NE(o.find("output_norm.weight     F32     [256]"), std::string::npos) << o;
  // totals: 288 + 288 + 1024
  EXPECT_NE(o.find("I2_S         1 tensor              288 bytes"), std::string::npos) << o;
  EXPECT_NE(o.find("all          3 tensors            1600 bytes"), std::string::npos) << o;
}

TEST(GgufTool, InfoJsonIsOneParsableObjectWithTheFileContents) {
  REQUIRE_TOOL();
  const std::string path = make_fork_file();
  const auto r = run("info --json '" + path + "' --items 3");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = parse_json(r.out);
  const auto f = gguf::file::open(path);
  EXPECT_EQ(j["file"].str, path);
  EXPECT_EQ(j["size"].num, static_cast<double>(f.size()));
  EXPECT_EQ(j["version"].num, 3);
  EXPECT_EQ(j["tensor_count"].num, 3);
  EXPECT_EQ(j["kv_count"].num, 5);
  EXPECT_EQ(j["alignment"].num, 32);
  EXPECT_FALSE(j["alignment_explicit"].b);
  EXPECT_EQ(j["data_offset"].num, static_cast<double>(f.data_offset()));
  EXPECT_EQ(j["convention"].str, "bitnet");
  EXPECT_EQ(j["convention_reason"].str, f.convention_reason());

  const json& md = j["metadata"];
  ASSERT_EQ(md.arr.size(), 5u);
  EXPECT_EQ(md[0]["key"].str, "general.architecture");
  EXPECT_EQ(md[0]["type"].str, "string");
  EXPECT_EQ(md[0]["value"].str, "bitnet");
  EXPECT_EQ(md[1]["value"].str, "odd \"name\"\n\x01 \xef\xbf\xbd end");  // \xff -> U+FFFD
  EXPECT_EQ(md[2]["value"].raw_number, "2");
  EXPECT_EQ(static_cast<float>(md[3]["value"].num), 1e-5f);
  EXPECT_EQ(md[4]["type"].str, "array");
  EXPECT_EQ(md[4]["elem_type"].str, "i32");
  EXPECT_EQ(md[4]["count"].num, 20);
  ASSERT_EQ(md[4]["values"].arr.size(), 3u);
  EXPECT_EQ(md[4]["values"][0].num, -7);
  EXPECT_EQ(md[4]["values"][2].num, -1);
  EXPECT_TRUE(md[4]["truncated"].b);

  const json& ts = j["tensors"];
  ASSERT_EQ(ts.arr.size(), 3u);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    const auto& t = f.tensors()[i];
    EXPECT_EQ(ts[i]["name"].str, t.name);
    EXPECT_EQ(ts[i]["type"].str, bitnet::type_name(t.type));
    EXPECT_EQ(ts[i]["type_id"].num, t.raw_type_id);
    ASSERT_EQ(ts[i]["shape"].arr.size(), t.n_dims);
    for (std::uint32_t d = 0; d < t.n_dims; ++d) EXPECT_EQ(ts[i]["shape"][d].num, static_cast<double>(t.ne[d]));
    EXPECT_EQ(ts[i]["bytes"].num, static_cast<double>(t.nbytes));
    EXPECT_EQ(ts[i]["offset"].num, static_cast<double>(t.offset));
    EXPECT_EQ(ts[i]["file_offset"].num, static_cast<double>(f.data_offset() + t.offset));
    total += t.nbytes;
  }
  EXPECT_EQ(ts[0]["type_id"].num, 36);
  EXPECT_EQ(ts[1]["type_id"].num, 39);
  EXPECT_EQ(j["totals"]["tensors"].num, 3);
  EXPECT_EQ(j["totals"]["bytes"].num, static_cast<double>(total));
  ASSERT_EQ(j["totals"]["by_type"].arr.size(), 3u);

  const auto all = run("info --json --items 0 '" + path + "'");
  ASSERT_EQ(all.code, 0) << all.err;
  const json ja = parse_json(all.out);
  EXPECT_EQ(ja["metadata"][4]["values"].arr.size(), 20u);
  EXPECT_FALSE(ja["metadata"][4]["truncated"].b);
  EXPECT_EQ(ja["metadata"][4]["values"][19].num, 19 * 3 - 7);
}

TEST(GgufTool, InfoJsonOnTheRealVocab) {
  REQUIRE_TOOL();
  const std::string path = std::string(BITNET_SHARED_DIR) + "/data/llamacpp-vocab/ggml-vocab-llama-spm.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "shared data not found: " << path;
  const auto r = run("info --json '" + path + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = parse_json(r.out);
  EXPECT_EQ(j["kv_count"].num, 22);
  EXPECT_EQ(j["tensor_count"].num, 0);
  const json* tokens = nullptr;
  for (const auto& kv : j["metadata"].arr)
    if (kv["key"].str == "tokenizer.ggml.tokens") tokens = &kv;
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ((*tokens)["count"].num, 32000);
  ASSERT_EQ((*tokens)["values"].arr.size(), 8u);
  EXPECT_EQ((*tokens)["values"][1].str, "<s>");
  EXPECT_TRUE((*tokens)["truncated"].b);
}

TEST(GgufTool, BadFilesExitNonZeroWithTheReadersMessage) {
  REQUIRE_TOOL();
  const std::string path = make_fork_file();
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = kTmp + "cut.gguf";
  std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 10));
  const auto r = run("info '" + cut + "'");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find(cut + ": offset "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tensor 'output_norm.weight': data ["), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("exceeds file size"), std::string::npos) << r.err;

  const auto nf = run("info '" + kTmp + "does-not-exist.gguf' --json");
  EXPECT_EQ(nf.code, 1);
  EXPECT_NE(nf.err.find("cannot open"), std::string::npos) << nf.err;
}

TEST(GgufTool, UnclassifiableFileAndForcedConvention) {
  REQUIRE_TOOL();
  gguf::writer w(bitnet::id_convention::upstream);
  w.add_tensor("mx", tensor_type::mxfp4, {32}, std::vector<std::uint8_t>(17, 0));
  const std::string path = kTmp + "noarch.gguf";
  w.write(path);
  const auto r = run("info '" + path + "'");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cannot classify"), std::string::npos) << r.err;
  const auto forced = run("info --convention upstream '" + path + "'");
  EXPECT_EQ(forced.code, 0) << forced.err;
  EXPECT_NE(forced.out.find("upstream convention: forced by the caller"), std::string::npos) << forced.out;
  EXPECT_NE(forced.out.find("MXFP4"), std::string::npos) << forced.out;
}

TEST(GgufTool, HelpAndUsageErrors) {
  REQUIRE_TOOL();
  const auto h = run("--help");
  EXPECT_EQ(h.code, 0);
  EXPECT_NE(h.out.find("info"), std::string::npos);
  const auto ih = run("info --help");
  EXPECT_EQ(ih.code, 0);
  EXPECT_NE(ih.out.find("--json"), std::string::npos);
  EXPECT_NE(ih.out.find("--items N"), std::string::npos);
  EXPECT_EQ(run("").code, 2);
  EXPECT_EQ(run("frobnicate").code, 2);
  EXPECT_EQ(run("info").code, 2);
  EXPECT_EQ(run("info --bogus x.gguf").code, 2);
  EXPECT_EQ(run("info --items -3 x.gguf").code, 2);
  EXPECT_EQ(run("info --convention sideways x.gguf").code, 2);
  const auto two = run("info a.gguf b.gguf");
  EXPECT_EQ(two.code, 2);
  EXPECT_NE(two.err.find("more than one FILE"), std::string::npos) << two.err;
}

}  // namespace
