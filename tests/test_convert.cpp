// tests/test_convert.cpp - bitnet-convert's logic (tools/convert.hpp).
//
// Expected values come from the staged reference data (shared/data/PROVENANCE.md: header
// values, code counts, tok512.bin) or from hand computation written out in this file (byte
// layouts of tiny hand-built checkpoints and protobuf messages, the RoPE permutation, the
// quantization error bounds). Tests that need the staged data skip with a message when
// BITNET_SHARED_DIR is absent.
#include <gtest/gtest.h>

#include <algorithm>    // std::count, std::max
#include <cmath>        // std::cos, std::sin, std::pow, std::fabs, std::sqrt
#include <cstdint>      // fixed-width integers
#include <cstdio>       // popen for the command-line checks
#include <cstring>      // std::memcpy
#include <filesystem>   // data paths, temp files
#include <fstream>      // writing malformed inputs
#include <set>          // uniqueness checks
#include <string>       // names
#include <vector>       // buffers

#include <sys/wait.h>  // WEXITSTATUS
#include <unistd.h>    // getpid for a private temp dir

#include "convert.hpp"
#include "model_builder.hpp"
#include <bitnet/runner/tokenizer.hpp>

namespace {

namespace cv = bitnet::convert;
using bitnet::tensor_type;

const std::filesystem::path kShared = BITNET_SHARED_DIR;
const std::filesystem::path kData = kShared / "data" / "bitllama2c";
const std::filesystem::path kCkpt = kData / "bitllama-3M-ternary.bin";
const std::filesystem::path kTokModel = kData / "tok512.model";
const std::filesystem::path kTokBin = kData / "tok512.bin";

#define REQUIRE_DATA()                                                                            \
  do {                                                                                            \
    if (!std::filesystem::exists(kCkpt) || !std::filesystem::exists(kTokModel))                   \
      GTEST_SKIP() << "SKIP: staged data not found under " << kData << " (BITNET_SHARED_DIR)";     \
  } while (0)

// Runs `f` and returns the convert::error message ("" if nothing was thrown).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const cv::error& e) {
    return e.what();
  }
  return {};
}

// Any exception's message ("" if nothing was thrown): the GGUF writer throws gguf::error.
template <class F>
std::string any_error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

// ---------------------------------------------------------------- hand-built checkpoints
//
// A tiny checkpoint written from the format description (PROVENANCE.md), independently of the
// reader: dim 8, hidden 16, 1 layer, 2 heads, 1 kv head, vocab 4, seq 32.

struct tiny_cfg {
  std::int32_t dim = 8, hidden = 16, layers = 1, heads = 2, kv_heads = 1, vocab = 4, seq = 32;
};

void put_u32(std::vector<std::uint8_t>& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_f32(std::vector<std::uint8_t>& b, float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  put_u32(b, u);
}

// Matrix m (0..6 in file order) of layer 0 gets scale 1 + m/8 and codes byte `fill` (every
// byte), except that the very first byte of w1 is `first_w1` when given.
std::vector<std::uint8_t> tiny_checkpoint(const tiny_cfg& c, std::uint8_t fill = 0x00, int first_w1 = -1) {
  std::vector<std::uint8_t> b;
  put_u32(b, 0x616b3432);
  put_u32(b, 1);
  for (std::int32_t v : {c.dim, c.hidden, c.layers, c.heads, c.kv_heads, c.vocab, c.seq})
    put_u32(b, static_cast<std::uint32_t>(v));
  b.push_back(1);  // shared classifier
  b.resize(256, 0);
  for (int i = 0; i < c.dim; ++i) put_f32(b, 0.5f + static_cast<float>(i));        // final_norm
  for (int i = 0; i < c.vocab * c.dim; ++i) put_f32(b, static_cast<float>(i) / 64.0f);  // embeddings
  const int kv = c.dim / c.heads * c.kv_heads;
  const int shapes[7][2] = {{c.dim, c.dim}, {kv, c.dim}, {kv, c.dim}, {c.dim, c.dim},
                            {c.hidden, c.dim}, {c.dim, c.hidden}, {c.hidden, c.dim}};
  for (int m = 0; m < 7; ++m)
    for (int l = 0; l < c.layers; ++l) {
      put_f32(b, 1.0f + static_cast<float>(m) / 8.0f);
      const int n = (shapes[m][0] * shapes[m][1] + 3) / 4;
      for (int i = 0; i < n; ++i) b.push_back(m == 4 && i == 0 && first_w1 >= 0 ? static_cast<std::uint8_t>(first_w1) : fill);
    }
  return b;
}

TEST(Llama2c, TinyCheckpointBothCodeOrders) {
  // Byte 0xD1 = 0b11'01'00'01. LSB-first: codes 01, 00, 01, 11 -> +1, 0, +1, -1.
  // MSB-first: codes 11, 01, 00, 01 -> -1, +1, 0, +1.
  const auto b = tiny_checkpoint({}, 0x00, 0xD1);
  const auto lsb = cv::read_llama2c(b, "tiny", cv::code_order::lsb);
  const auto msb = cv::read_llama2c(b, "tiny", cv::code_order::msb);
  EXPECT_EQ(lsb.config.dim, 8);
  EXPECT_EQ(lsb.config.hidden_dim, 16);
  EXPECT_EQ(lsb.config.kv_dim(), 4);
  const auto& w1l = lsb.mats[4][0].w;
  const auto& w1m = msb.mats[4][0].w;
  ASSERT_EQ(w1l.size(), 16u * 8u);
  EXPECT_EQ((std::vector<int>{w1l[0], w1l[1], w1l[2], w1l[3]}), (std::vector<int>{1, 0, 1, -1}));
  EXPECT_EQ((std::vector<int>{w1m[0], w1m[1], w1m[2], w1m[3]}), (std::vector<int>{-1, 1, 0, 1}));
  EXPECT_EQ(std::count(w1l.begin() + 4, w1l.end(), 0), static_cast<long>(w1l.size()) - 4);
  EXPECT_EQ(lsb.mats[4][0].scale, 1.5f);
  EXPECT_EQ(lsb.mats[6][0].scale, 1.75f);
  EXPECT_EQ(lsb.final_norm[3], 3.5f);
  EXPECT_EQ(lsb.tok_embeddings[31], 31.0f / 64.0f);
  EXPECT_EQ(lsb.plus, 2u);
  EXPECT_EQ(lsb.minus, 1u);
}

TEST(Llama2c, MalformedCheckpoints) {
  const tiny_cfg c;
  const auto good = tiny_checkpoint(c, 0x55);  // every code 01 -> +1
  ASSERT_NO_THROW(cv::read_llama2c(good, "ok"));

  auto truncated = good;
  truncated.pop_back();
  auto m = error_of([&] { cv::read_llama2c(truncated, "t.bin"); });
  EXPECT_NE(m.find("t.bin"), std::string::npos) << m;
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  EXPECT_NE(m.find("w3 of layer 0"), std::string::npos) << m;
  EXPECT_NE(m.find(std::to_string(good.size())), std::string::npos) << m;  // the size the layout needs

  auto header_only = good;
  header_only.resize(100);
  m = error_of([&] { cv::read_llama2c(header_only, "h.bin"); });
  EXPECT_NE(m.find("256-byte"), std::string::npos) << m;

  auto magic = good;
  magic[0] = 'X';
  m = error_of([&] { cv::read_llama2c(magic, "m.bin"); });
  EXPECT_NE(m.find("magic"), std::string::npos) << m;
  EXPECT_NE(m.find("0x616b3432"), std::string::npos) << m;

  auto version = good;
  version[4] = 2;
  m = error_of([&] { cv::read_llama2c(version, "v.bin"); });
  EXPECT_NE(m.find("version: got 2, expected 1"), std::string::npos) << m;

  auto trailing = good;
  trailing.push_back(0);
  m = error_of([&] { cv::read_llama2c(trailing, "x.bin"); });
  EXPECT_NE(m.find("1 trailing bytes"), std::string::npos) << m;

  // 0x55 with the third code (bits 4..5) set to 10: 0b01'10'01'01 = 0x65 -> element 2 of w1.
  const auto code10 = tiny_checkpoint(c, 0x55, 0x65);
  m = error_of([&] { cv::read_llama2c(code10, "c.bin"); });
  EXPECT_NE(m.find("w1 of layer 0"), std::string::npos) << m;
  EXPECT_NE(m.find("code 0b10 at element 2"), std::string::npos) << m;

  auto zero_dim = good;
  zero_dim[8] = 0;
  m = error_of([&] { cv::read_llama2c(zero_dim, "d.bin"); });
  EXPECT_NE(m.find("dim"), std::string::npos) << m;

  auto bad_heads = good;
  bad_heads[20] = 3;  // n_heads = 3 does not divide dim 8
  m = error_of([&] { cv::read_llama2c(bad_heads, "n.bin"); });
  EXPECT_NE(m.find("n_heads 3"), std::string::npos) << m;

  auto unshared = good;
  unshared[36] = 0;
  m = error_of([&] { cv::read_llama2c(unshared, "s.bin"); });
  EXPECT_NE(m.find("shared_classifier"), std::string::npos) << m;

  auto padding = good;
  padding[200] = 7;
  m = error_of([&] { cv::read_llama2c(padding, "p.bin"); });
  EXPECT_NE(m.find("header byte 200"), std::string::npos) << m;

  m = error_of([&] { cv::read_llama2c_file("/nonexistent/ckpt.bin"); });
  EXPECT_NE(m.find("/nonexistent/ckpt.bin"), std::string::npos) << m;
}

// ---------------------------------------------------------------- the real checkpoint

TEST(Llama2c, RealCheckpointHeaderAndCodeCounts) {
  REQUIRE_DATA();
  const auto ck = cv::read_llama2c_file(kCkpt.string());
  const auto& c = ck.config;
  // PROVENANCE.md: 3M: (256, 256, 8, 8, 4, 512, 512).
  EXPECT_EQ(c.dim, 256);
  EXPECT_EQ(c.hidden_dim, 256);
  EXPECT_EQ(c.n_layers, 8);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.seq_len, 512);
  // Counted from the decoded tensors (PROVENANCE.md: 1,160,009 / 992,988 / 992,731).
  std::uint64_t z = 0, p = 0, n = 0;
  for (const auto& kind : ck.mats)
    for (const auto& m : kind)
      for (const auto v : m.w) (v == 0 ? z : v > 0 ? p : n)++;
  EXPECT_EQ(z, 1160009u);
  EXPECT_EQ(p, 992988u);
  EXPECT_EQ(n, 992731u);

  // The first matrix (wq, layer 0) decoded here by hand from the raw bytes: its scale sits
  // right after the embeddings, then 256*256/4 code bytes, code j of a byte at bits 2j.
  const auto raw = cv::read_file(kCkpt.string());
  const std::size_t off = 256 + 4 * 256 + 4 * 512 * 256;
  float scale;
  std::memcpy(&scale, raw.data() + off, 4);
  EXPECT_EQ(ck.mats[0][0].scale, scale);
  for (std::size_t e = 0; e < 256 * 256; ++e) {
    const unsigned code = (raw[off + 4 + e / 4] >> (2 * (e % 4))) & 3u;
    const int want = code == 0 ? 0 : code == 1 ? 1 : -1;
    ASSERT_EQ(ck.mats[0][0].w[e], want) << "element " << e;
  }
}

// ---------------------------------------------------------------- SentencePiece

TEST(SentencePiece, AgreesWithLlama2cTokenizerBin) {
  REQUIRE_DATA();
  const auto sp = cv::read_sentencepiece_file(kTokModel.string());
  const auto raw = cv::read_file(kTokBin.string());
  const auto bin = cv::read_llama2c_vocab(raw, kTokBin.string());
  ASSERT_EQ(sp.pieces.size(), 512u);
  ASSERT_EQ(bin.tokens.size(), 512u);
  EXPECT_EQ(sp.model_type, 2);  // BPE
  EXPECT_EQ(sp.vocab_size, 512);
  EXPECT_TRUE(sp.add_dummy_prefix);
  EXPECT_EQ(sp.unk_id, 0);
  EXPECT_EQ(sp.bos_id, 1);
  EXPECT_EQ(sp.eos_id, 2);
  EXPECT_EQ(sp.pad_id, -1);
  EXPECT_TRUE(sp.byte_fallback);
  std::size_t longest = 0;
  for (std::size_t i = 0; i < 512; ++i) {
    // llama2.c's exporter: BOS/EOS become "\n<s>\n" / "\n</s>\n", U+2581 becomes a space.
    // Built append-only: GCC 12 at -O2 reports a false -Wrestrict inside std::string::replace here.
    const std::string& piece = sp.pieces[i].piece;
    std::string want;
    for (std::size_t p = 0; p < piece.size();) {
      if (piece.compare(p, 3, "\xE2\x96\x81") == 0) {
        want += ' ';
        p += 3;
      } else {
        want += piece[p++];
      }
    }
    if (static_cast<std::int32_t>(i) == sp.bos_id) want = "\n<s>\n";
    if (static_cast<std::int32_t>(i) == sp.eos_id) want = "\n</s>\n";
    EXPECT_EQ(bin.tokens[i], want) << "piece " << i;
    EXPECT_EQ(bin.scores[i], sp.pieces[i].score) << "piece " << i;
    longest = std::max(longest, bin.tokens[i].size());
  }
  EXPECT_EQ(static_cast<std::size_t>(bin.max_token_length), longest);
  // Types: <unk> unknown, <s> </s> control, <0x00>..<0xFF> byte, the rest normal.
  EXPECT_EQ(sp.pieces[0].type, 2);
  EXPECT_EQ(sp.pieces[1].type, 3);
  EXPECT_EQ(sp.pieces[2].type, 3);
  for (std::size_t i = 3; i < 259; ++i) EXPECT_EQ(sp.pieces[i].type, 6) << i;
  for (std::size_t i = 259; i < 512; ++i) EXPECT_EQ(sp.pieces[i].type, 1) << i;
  EXPECT_EQ(sp.pieces[3].piece, "<0x00>");
  EXPECT_EQ(sp.pieces[259].piece, "\xE2\x96\x81t");
}

// Protobuf bytes written by hand.
std::vector<std::uint8_t> proto(std::initializer_list<int> bytes) {
  std::vector<std::uint8_t> v;
  for (int b : bytes) v.push_back(static_cast<std::uint8_t>(b));
  return v;
}

TEST(SentencePiece, HandBuiltProto) {
  // pieces { piece: "ab" score: -2.0 type: 4 }   0a 0b | 0a 02 'a' 'b' | 15 00 00 00 c0 | 18 04
  // unknown field 7 (varint 300 = ac 02), unknown field 9 fixed64
  // trainer_spec { bos_id: -1 (10-byte varint), unk_id: 0, eos_id: 0 }
  //                                                           12 12 | c8 02 ff*9 01 | c0 02 00 | d0 02 00
  // normalizer_spec { add_dummy_prefix: false }                1a 02 | 18 00
  const auto b = proto({0x0a, 0x0b, 0x0a, 0x02, 'a', 'b', 0x15, 0x00, 0x00, 0x00, 0xc0, 0x18, 0x04,
                        0x38, 0xac, 0x02, 0x49, 1, 2, 3, 4, 5, 6, 7, 8,
                        0x12, 0x12, 0xc8, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0xc0, 0x02, 0x00, 0xd0, 0x02, 0x00,
                        0x1a, 0x02, 0x18, 0x00});
  const auto sp = cv::parse_sentencepiece(b, "hand");
  ASSERT_EQ(sp.pieces.size(), 1u);
  EXPECT_EQ(sp.pieces[0].piece, "ab");
  EXPECT_EQ(sp.pieces[0].score, -2.0f);
  EXPECT_EQ(sp.pieces[0].type, 4);
  EXPECT_EQ(sp.bos_id, -1);
  EXPECT_EQ(sp.unk_id, 0);
  EXPECT_EQ(sp.eos_id, 0);
  EXPECT_FALSE(sp.add_dummy_prefix);

  // Truncated inside the piece: the length says 11 bytes, 4 are there.
  auto m = error_of([] { cv::parse_sentencepiece(proto({0x0a, 0x0b, 0x0a, 0x02, 'a', 'b'}), "t.model"); });
  EXPECT_NE(m.find("t.model"), std::string::npos) << m;
  EXPECT_NE(m.find("exceeds"), std::string::npos) << m;
  // A group (field 5, wire type 3) in the top-level message.
  m = error_of([] { cv::parse_sentencepiece(proto({0x2b}), "g.model"); });
  EXPECT_NE(m.find("group"), std::string::npos) << m;
  // Piece type 9 is not a SentencePiece type.
  m = error_of([] { cv::parse_sentencepiece(proto({0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x09}), "y.model"); });
  EXPECT_NE(m.find("type 9"), std::string::npos) << m;
  // Score with the wrong wire type (varint instead of fixed32).
  m = error_of([] { cv::parse_sentencepiece(proto({0x0a, 0x05, 0x0a, 0x01, 'a', 0x10, 0x01}), "w.model"); });
  EXPECT_NE(m.find("score"), std::string::npos) << m;
  // No pieces at all (e.g. a text file).
  m = error_of([] { cv::parse_sentencepiece(proto({0x12, 0x00}), "e.model"); });
  EXPECT_NE(m.find("no pieces"), std::string::npos) << m;
}

TEST(Robustness, MutatedInputsGiveErrorsNotCrashes) {
  // Every truncation of a tiny checkpoint and of a hand-built proto, and random byte flips,
  // must end in a result or a convert::error (run under the sanitizers in CI).
  const auto ck = tiny_checkpoint({}, 0x55);
  for (std::size_t n = 0; n < ck.size(); n += 7) {
    std::vector<std::uint8_t> b(ck.begin(), ck.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_FALSE(error_of([&] { cv::read_llama2c(b, "cut"); }).empty()) << n;
  }
  std::vector<std::uint8_t> model;
  if (std::filesystem::exists(kTokModel)) model = cv::read_file(kTokModel.string());
  else model = proto({0x0a, 0x05, 0x0a, 0x01, 'a', 0x18, 0x01, 0x1a, 0x02, 0x18, 0x00});
  for (std::size_t n = 0; n < model.size(); n += 13) {
    std::vector<std::uint8_t> b(model.begin(), model.begin() + static_cast<std::ptrdiff_t>(n));
    try {
      (void)cv::parse_sentencepiece(b, "cut");
    } catch (const cv::error&) {
    }
  }
  cv::splitmix64 r{12345};
  for (int i = 0; i < 2000; ++i) {
    auto b = i % 2 ? ck : model;
    for (int k = 0; k < 4; ++k) b[r.next() % b.size()] = static_cast<std::uint8_t>(r.next());
    try {
      if (i % 2) (void)cv::read_llama2c(b, "flip");
      else (void)cv::parse_sentencepiece(b, "flip");
    } catch (const cv::error&) {
    }
  }
}

// ---------------------------------------------------------------- RoPE permutation

TEST(Rope, PermutationHandExample) {
  // Two heads of head_dim 4: head rows (0 1 2 3) -> pairs (0,1), (2,3) -> NeoX order 0 2 | 1 3.
  EXPECT_EQ(cv::neox_row_order(8, 4), (std::vector<std::int64_t>{0, 2, 1, 3, 4, 6, 5, 7}));
  EXPECT_EQ(cv::neox_row_order(6, 6), (std::vector<std::int64_t>{0, 2, 4, 1, 3, 5}));
  const std::vector<int> w = {10, 11, 20, 21, 30, 31, 40, 41};  // 4 rows of 2
  EXPECT_EQ(cv::permute_rows<int>(w, 2, cv::neox_row_order(4, 4)), (std::vector<int>{10, 11, 30, 31, 20, 21, 40, 41}));
  EXPECT_FALSE(error_of([] { cv::neox_row_order(6, 3); }).empty());
}

TEST(Rope, InterleavedEqualsNeoxAfterPermutation) {
  // q = W x for one head of head_dim 8, position 5, base 10000: rotating interleaved pairs
  // (llama2.c) then permuting equals permuting the rows of W then rotating NeoX halves.
  const int hd = 8, pos = 5;
  std::vector<double> q = {0.3, -1.2, 0.7, 2.0, -0.4, 0.9, 1.5, -0.8};
  const auto order = cv::neox_row_order(hd, hd);
  std::vector<double> inter = q;
  for (int i = 0; i < hd / 2; ++i) {
    const double th = pos * std::pow(10000.0, -2.0 * i / hd);
    const double a = inter[2 * i], b = inter[2 * i + 1];
    inter[2 * i] = a * std::cos(th) - b * std::sin(th);
    inter[2 * i + 1] = a * std::sin(th) + b * std::cos(th);
  }
  std::vector<double> perm(hd);
  for (int r = 0; r < hd; ++r) perm[r] = q[order[r]];
  for (int i = 0; i < hd / 2; ++i) {
    const double th = pos * std::pow(10000.0, -2.0 * i / hd);
    const double a = perm[i], b = perm[i + hd / 2];
    perm[i] = a * std::cos(th) - b * std::sin(th);
    perm[i + hd / 2] = a * std::sin(th) + b * std::cos(th);
  }
  for (int r = 0; r < hd; ++r) EXPECT_NEAR(perm[r], inter[order[r]], 1e-12) << r;
}

// ---------------------------------------------------------------- the converted real model

bitnet::gguf::file convert_real(tensor_type type, tensor_type head = tensor_type::f32,
                                cv::llama2c_scales scales = cv::llama2c_scales::automatic) {
  static const auto ck = cv::read_llama2c_file(kCkpt.string());
  static const auto sp = cv::read_sentencepiece_file(kTokModel.string());
  cv::llama2c_options o;
  o.type = type;
  o.head = head;
  o.scales = scales;
  o.name = "bitllama-3M-ternary";
  return bitnet::gguf::file::from_memory(cv::build_llama2c(ck, sp, o).to_bytes(), "converted");
}

float f32_at(const std::uint8_t* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

TEST(FromLlama2c, MetadataAndTensors) {
  REQUIRE_DATA();
  const auto ck = cv::read_llama2c_file(kCkpt.string());
  const auto raw = cv::read_file(kCkpt.string());
  struct variant {
    tensor_type type;
    cv::llama2c_scales scales;
  };
  for (const variant vt : {variant{tensor_type::i2_s, cv::llama2c_scales::automatic},
                           variant{tensor_type::tq2_0, cv::llama2c_scales::automatic},
                           variant{tensor_type::tq1_0, cv::llama2c_scales::automatic},
                           variant{tensor_type::i2_s, cv::llama2c_scales::tensor},
                           variant{tensor_type::tq2_0, cv::llama2c_scales::folded}}) {
    const tensor_type type = vt.type;
    // Default: exact f32 .scale tensors for TQ (its f16 d would round them), folded for I2_S.
    const bool scale_tensors = cv::llama2c_scale_tensors(vt.scales, type);
    EXPECT_EQ(scale_tensors, vt.scales == cv::llama2c_scales::tensor ||
                                 (vt.scales == cv::llama2c_scales::automatic && type != tensor_type::i2_s));
    SCOPED_TRACE(std::string(bitnet::type_name(type)) + (scale_tensors ? " with .scale tensors" : " folded"));
    const auto f = convert_real(type, tensor_type::f32, vt.scales);
    EXPECT_EQ(f.get_string("general.architecture"), "bitnet");
    EXPECT_EQ(f.get_float("bitnet.attention.layer_norm_rms_epsilon"), static_cast<double>(1e-30f));
    EXPECT_EQ(f.get_float("bitnet.output_norm.layer_norm_rms_epsilon"), static_cast<double>(1e-5f));
    EXPECT_EQ(f.get_uint("bitnet.context_length"), 512u);
    EXPECT_EQ(f.get_uint("bitnet.embedding_length"), 256u);
    EXPECT_EQ(f.get_uint("bitnet.block_count"), 8u);
    EXPECT_EQ(f.get_uint("bitnet.feed_forward_length"), 256u);
    EXPECT_EQ(f.get_uint("bitnet.attention.head_count"), 8u);
    EXPECT_EQ(f.get_uint("bitnet.attention.head_count_kv"), 4u);
    EXPECT_EQ(f.get_uint("bitnet.rope.dimension_count"), 32u);
    EXPECT_EQ(f.get_uint("bitnet.vocab_size"), 512u);
    EXPECT_EQ(f.get_float("bitnet.rope.freq_base"), 10000.0);
    EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
    EXPECT_EQ(f.get_uint("tokenizer.ggml.bos_token_id"), 1u);
    EXPECT_EQ(f.get_uint("tokenizer.ggml.eos_token_id"), 2u);
    EXPECT_EQ(f.get_uint("tokenizer.ggml.unknown_token_id"), 0u);
    EXPECT_TRUE(f.get_bool("tokenizer.ggml.add_bos_token"));
    EXPECT_TRUE(f.get_bool("tokenizer.ggml.add_space_prefix"));
    const auto types = f.get_int_array("tokenizer.ggml.token_type");
    ASSERT_EQ(types.size(), 512u);
    EXPECT_EQ(types[0], 2);
    EXPECT_EQ(types[1], 3);
    EXPECT_EQ(types[2], 3);
    EXPECT_EQ(types[3], 6);
    EXPECT_EQ(types[258], 6);
    EXPECT_EQ(types[259], 1);
    EXPECT_EQ(f.get_uint("general.file_type"), cv::file_type_of(type));
    EXPECT_EQ(f.tensors().size(), 2u + 8u * (scale_tensors ? 18u : 11u));

    // token_embd and output_norm are the checkpoint's bytes.
    const std::size_t emb_off = 256 + 4 * 256;
    const auto& E = f.tensor("token_embd.weight");
    EXPECT_EQ(E.type, tensor_type::f32);
    EXPECT_EQ(E.ne[0], 256u);
    EXPECT_EQ(E.ne[1], 512u);
    EXPECT_TRUE(std::equal(E.data, E.data + E.nbytes, raw.begin() + emb_off));
    const auto& N = f.tensor("output_norm.weight");
    EXPECT_TRUE(std::equal(N.data, N.data + N.nbytes, raw.begin() + 256));
    for (const char* norm : {"attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm"})
      for (int l = 0; l < 8; ++l) {
        const auto& t = f.tensor("blk." + std::to_string(l) + "." + norm + ".weight");
        ASSERT_EQ(t.type, tensor_type::f32);
        for (std::uint64_t i = 0; i < t.ne[0]; ++i) ASSERT_EQ(f32_at(t.data + 4 * i), 1.0f) << t.name;
      }

    // Every ternary tensor: values = the checkpoint's (wq/wk rows in NeoX order), scale =
    // scale / 256 (in_features is 256 everywhere: exact in f32): folded, f16-rounded for TQ,
    // or 1 in the payload and exact in blk.N.<name>.scale.
    const auto order = cv::neox_row_order(256, 32);
    const auto order_kv = cv::neox_row_order(128, 32);
    for (std::size_t k = 0; k < 7; ++k)
      for (int l = 0; l < 8; ++l) {
        const auto& m = ck.mats[k][static_cast<std::size_t>(l)];
        const auto& t = f.tensor(cv::llama2c_gguf_name(k, l));
        ASSERT_EQ(t.type, type);
        ASSERT_EQ(t.ne[0], static_cast<std::uint64_t>(m.cols));
        ASSERT_EQ(t.ne[1], static_cast<std::uint64_t>(m.rows));
        const auto w = bitnet::unpack_ternary(type, t.bytes(), m.cols, m.rows);
        const float want = m.scale / 256.0f;
        const std::string sname = "blk." + std::to_string(l) + "." + cv::kLlama2cKinds[k].gguf + ".scale";
        if (scale_tensors) {
          EXPECT_EQ(w.scale, 1.0f) << t.name;
          const auto* st = f.find_tensor(sname);
          ASSERT_NE(st, nullptr) << sname;
          EXPECT_EQ(st->type, tensor_type::f32);
          EXPECT_EQ(st->n_elements(), 1u);
          EXPECT_EQ(f32_at(st->data), want) << sname;
        } else {
          EXPECT_EQ(w.scale, type == tensor_type::i2_s ? want : bitnet::fp16_to_f32(bitnet::f32_to_fp16(want))) << t.name;
          EXPECT_EQ(f.find_tensor(sname), nullptr) << sname;
        }
        EXPECT_TRUE(w.block_scales.empty()) << t.name;
        for (std::int64_t r = 0; r < m.rows; ++r) {
          const std::int64_t src = k == 0 ? order[r] : k == 1 ? order_kv[r] : r;
          ASSERT_TRUE(std::equal(w.w.begin() + r * m.cols, w.w.begin() + (r + 1) * m.cols, m.w.begin() + src * m.cols))
              << t.name << " row " << r;
        }
      }
  }
}

TEST(FromLlama2c, VocabDecodesReferenceText) {
  REQUIRE_DATA();
  const auto f = convert_real(tensor_type::i2_s);
  const bitnet::tok::tokenizer tok(bitnet::tok::vocab_from_gguf(f));
  // The first 16 greedy ids of reference/bitllama-3M-greedy.json and the text they start with.
  const std::vector<std::int32_t> ids = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
  EXPECT_EQ(tok.decode(ids), "Once upon a time, there was a little girl named Lily.");
}

TEST(FromLlama2c, ShapeAndOptionErrors) {
  // dim 8 / hidden 16 cannot be TQ (K must be a multiple of 256) and gives K*M = 64 for wq,
  // not a multiple of 128, for I2_S.
  const auto ck = cv::read_llama2c(tiny_checkpoint({}, 0x55), "tiny");
  cv::sp_model sp;
  for (int i = 0; i < 4; ++i) sp.pieces.push_back({"p" + std::to_string(i), 0.0f, 1});
  cv::llama2c_options o;
  o.type = tensor_type::tq2_0;
  auto m = error_of([&] { cv::build_llama2c(ck, sp, o); });
  EXPECT_NE(m.find("blk.0.attn_q.weight"), std::string::npos) << m;
  EXPECT_NE(m.find("multiple of 256"), std::string::npos) << m;
  o.type = tensor_type::i2_s;
  m = error_of([&] { cv::build_llama2c(ck, sp, o); });
  EXPECT_NE(m.find("multiple of 128"), std::string::npos) << m;
  // A vocabulary of the wrong size.
  sp.pieces.pop_back();
  m = error_of([&] { cv::build_llama2c(ck, sp, o, "tok.model"); });
  EXPECT_NE(m.find("tok.model: 3 pieces"), std::string::npos) << m;
}

// ---------------------------------------------------------------- streaming writer

TEST(GgufWriter, StreamsProducersTheReaderReadsBack) {
  // Payloads from producers (in pieces), owned and borrowed bytes in one file; the reader
  // (gguf::file, which shares no code with the writer's layout) must find each tensor's bytes
  // at an aligned offset.
  const std::vector<std::uint8_t> a(100, 7), b(16416, 0x55);
  bitnet::gguf::writer w;
  w.set_string("general.architecture", "bitnet");
  w.set_u32("x.count", 3);
  w.add_tensor_ref("a", tensor_type::f32, {25}, a);
  w.add_tensor("b", tensor_type::i2_s, {256, 256}, [&](const bitnet::gguf::writer::sink& k) {
    for (std::size_t o = 0; o < b.size(); o += 4000)
      k(std::span<const std::uint8_t>(b).subspan(o, std::min<std::size_t>(4000, b.size() - o)));
  });
  w.add_tensor("c", tensor_type::f32, {3}, std::vector<std::uint8_t>(12, 9));
  std::vector<std::string> seen;
  const auto bytes = w.to_bytes([&](std::size_t, std::size_t, std::string_view n) { seen.emplace_back(n); });
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "c", ""}));
  const auto f = bitnet::gguf::file::from_memory(bytes, "streamed");
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.get_uint("x.count"), 3u);
  const auto same = [](std::span<const std::uint8_t> x, const std::vector<std::uint8_t>& y) {
    return std::equal(x.begin(), x.end(), y.begin(), y.end());
  };
  EXPECT_TRUE(same(f.tensor("a").bytes(), a));
  EXPECT_TRUE(same(f.tensor("b").bytes(), b));
  EXPECT_TRUE(same(f.tensor("c").bytes(), std::vector<std::uint8_t>(12, 9)));
  for (const auto& t : f.tensors()) EXPECT_EQ(t.offset % 32, 0u) << t.name;

  bitnet::gguf::writer bad;
  bad.add_tensor("c", tensor_type::f32, {4}, [](const bitnet::gguf::writer::sink& k) { k(std::vector<std::uint8_t>(15)); });
  auto m = any_error_of([&] { bad.to_bytes(); });
  EXPECT_NE(m.find("tensor 'c'"), std::string::npos) << m;
  EXPECT_NE(m.find("needs 16"), std::string::npos) << m;
  bitnet::gguf::writer more;
  more.add_tensor("d", tensor_type::f32, {1}, [](const bitnet::gguf::writer::sink& k) { k(std::vector<std::uint8_t>(8)); });
  m = any_error_of([&] { more.to_bytes(); });
  EXPECT_NE(m.find("more than the 4 bytes"), std::string::npos) << m;
}

TEST(GgufWriter, AFailedWriteLeavesNoFileAndKeepsTheOldOne) {
  const std::string path = std::string(BITNET_BINARY_DIR) + "/test_convert_failed_write.gguf";
  std::FILE* old = std::fopen(path.c_str(), "wb");
  ASSERT_NE(old, nullptr);
  std::fputs("old", old);
  std::fclose(old);
  bitnet::gguf::writer w;
  w.add_tensor("x", tensor_type::f32, {2}, std::vector<std::uint8_t>(8, 1));
  w.add_tensor("y", tensor_type::f32, {2}, [](const bitnet::gguf::writer::sink&) { throw std::runtime_error("producer failed"); });
  EXPECT_NE(any_error_of([&] { w.write(path); }).find("producer failed"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(std::filesystem::file_size(path), 3u);  // untouched
  std::filesystem::remove(path);
}

// ---------------------------------------------------------------- GGUF -> GGUF

std::vector<std::uint8_t> synth_bytes(const cv::synth_options& o) { return cv::build_synth(o).to_bytes(); }

std::vector<std::uint8_t> convert_bytes(const std::vector<std::uint8_t>& in, std::optional<tensor_type> type,
                                        std::optional<tensor_type> head = std::nullopt, cv::convert_notes* notes = nullptr) {
  const auto f = bitnet::gguf::file::from_memory(in, "in");
  cv::convert_options o;
  o.type = type;
  o.head = head;
  return cv::build_converted(f, o, notes).to_bytes();
}

// A float (F16) BitNet file whose projections are ternary x scale, converted to I2_S: every
// projection tensor is byte-identical to the I2_S the model builder packs from the same
// ternary values (pack_i2s), and the runner's logits equal those of the F16 file bit for bit.
TEST(Convert, FloatProjectionsConvertToTernary) {
  for (const char* arch : {"bitnet-b1.58", "llama"}) {
    bitnet::test::synth_spec s;
    s.arch = arch;
    s.seed = 31;
    s.wtype = tensor_type::f16;
    const auto f16 = bitnet::test::make_model(s).bytes();
    s.wtype = tensor_type::i2_s;
    const auto i2s = bitnet::test::make_model(s).bytes();
    cv::convert_notes notes;
    const auto out = convert_bytes(f16, tensor_type::i2_s, std::nullopt, &notes);
    EXPECT_EQ(notes.ternarized, 14u);
    EXPECT_EQ(notes.ternarize->exact.load(), 14);
    const auto fo = bitnet::gguf::file::from_memory(out, "out"), fi = bitnet::gguf::file::from_memory(i2s, "i2s");
    for (const auto& t : fi.tensors()) {
      const auto& o = fo.tensor(t.name);
      EXPECT_EQ(o.type, t.type) << t.name;
      EXPECT_TRUE(std::equal(o.bytes().begin(), o.bytes().end(), t.bytes().begin(), t.bytes().end())) << arch << " " << t.name;
    }
    EXPECT_EQ(fo.get_uint("general.file_type"), 40u);
    const auto logits = [](const std::vector<std::uint8_t>& b) {
      bitnet::run::thread_pool pool(2);
      const auto m = bitnet::run::model::load(bitnet::gguf::file::from_memory(b, "m"), {}, pool);
      bitnet::run::session sess(m, pool, 8);
      const std::vector<std::int32_t> toks{3, 99, 250, 7};
      const auto l = sess.eval(toks, true);
      return std::vector<float>(l.begin(), l.end());
    };
    const auto a = logits(f16), b = logits(out);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << arch;
  }
  // Latent (not ternary) float weights are ternarized by absmean, and counted so.
  bitnet::test::synth_spec s;
  s.wtype = tensor_type::f32;
  s.latent = true;
  cv::convert_notes notes;
  (void)convert_bytes(bitnet::test::make_model(s).bytes(), tensor_type::tq2_0, std::nullopt, &notes);
  EXPECT_EQ(notes.ternarize->absmean.load(), 14);
}

// from-llama2c's TQ default (payload d = 1, exact f32 blk.N.<name>.scale) through `convert`:
// the payload scale 1 is exact in every type and the .scale tensors are copied unchanged, so
// every file holds the same model (I2_S with payload scale 1 and the .scale tensors).
TEST(Convert, ScaleTensorsStayConsistentAcrossTypes) {
  REQUIRE_DATA();
  const auto ck = cv::read_llama2c_file(kCkpt.string());
  const auto sp = cv::read_sentencepiece_file(kTokModel.string());
  cv::llama2c_options lo;
  lo.type = tensor_type::tq2_0;
  const auto tq2 = cv::build_llama2c(ck, sp, lo).to_bytes();
  const auto in = bitnet::gguf::file::from_memory(tq2, "tq2");
  for (const tensor_type to : {tensor_type::i2_s, tensor_type::tq1_0}) {
    cv::convert_notes notes;
    const auto out_bytes = convert_bytes(tq2, to, std::nullopt, &notes);
    EXPECT_TRUE(notes.warnings.empty()) << "payload scale 1 is exact in every type";
    const auto out = bitnet::gguf::file::from_memory(out_bytes, "out");
    std::size_t scales = 0;
    for (const auto& t : in.tensors()) {
      const auto* o = out.find_tensor(t.name);
      ASSERT_NE(o, nullptr) << t.name;
      if (t.name.size() > 6 && t.name.compare(t.name.size() - 6, 6, ".scale") == 0) {
        ++scales;
        ASSERT_EQ(o->type, tensor_type::f32);
        EXPECT_TRUE(std::equal(t.data, t.data + t.nbytes, o->data)) << t.name;
      } else if (cv::is_ternary_file_type(t.type)) {
        ASSERT_EQ(o->type, to);
        const auto K = static_cast<std::int64_t>(t.ne[0]), M = static_cast<std::int64_t>(t.ne[1]);
        const auto a = bitnet::unpack_ternary(t.type, t.bytes(), K, M), b = bitnet::unpack_ternary(to, o->bytes(), K, M);
        EXPECT_EQ(a.scale, 1.0f) << t.name;
        EXPECT_EQ(b.scale, 1.0f) << t.name;
        EXPECT_EQ(a.w, b.w) << t.name;
      }
    }
    EXPECT_EQ(scales, 56u);
  }
}

TEST(Convert, LosslessRoundTripWithF16ExactScales) {
  cv::synth_options o;  // tiny: scales are f16 values by construction
  o.shape = "tiny";
  const auto i2s = synth_bytes(o);
  const auto tq1 = convert_bytes(i2s, tensor_type::tq1_0);
  const auto tq2 = convert_bytes(tq1, tensor_type::tq2_0);
  const auto back = convert_bytes(tq2, tensor_type::i2_s);
  EXPECT_EQ(back, i2s);  // every byte, metadata included (file_type returns to 40)
  // The synthetic model generated directly as TQ2_0 / TQ1_0 is the converted one.
  o.type = tensor_type::tq2_0;
  EXPECT_EQ(synth_bytes(o), tq2);
  o.type = tensor_type::tq1_0;
  EXPECT_EQ(synth_bytes(o), tq1);
  // Ternary tensors really changed type; everything else is copied.
  const auto f = bitnet::gguf::file::from_memory(tq1, "tq1");
  EXPECT_EQ(f.tensor("blk.0.ffn_down.weight").type, tensor_type::tq1_0);
  EXPECT_EQ(f.tensor("token_embd.weight").type, tensor_type::f16);
  EXPECT_EQ(f.get_uint("general.file_type"), 36u);
}

TEST(Convert, NonF16ScalesAreReportedAndValuesKept) {
  REQUIRE_DATA();
  const auto f0 = convert_real(tensor_type::i2_s);
  const std::vector<std::uint8_t> in(f0.bytes(), f0.bytes() + f0.size());
  cv::convert_notes notes;
  const auto tq2 = convert_bytes(in, tensor_type::tq2_0, std::nullopt, &notes);
  EXPECT_EQ(notes.repacked, 56u);
  EXPECT_EQ(notes.scales_checked, 56u);
  EXPECT_EQ(notes.scales_rounded, 56u);  // none of the folded scales is an f16 value
  EXPECT_LE(notes.worst_scale_change, 1.0 / 2048);
  ASSERT_EQ(notes.warnings.size(), 1u);
  const auto f1 = bitnet::gguf::file::from_memory(tq2, "tq2");
  for (const auto& t : f0.tensors()) {
    if (t.type != tensor_type::i2_s) continue;
    const auto a = bitnet::unpack_ternary(tensor_type::i2_s, t.bytes(), t.ne[0], t.ne[1]);
    const auto& t1 = f1.tensor(t.name);
    const auto b = bitnet::unpack_ternary(tensor_type::tq2_0, t1.bytes(), t.ne[0], t.ne[1]);
    EXPECT_EQ(a.w, b.w) << t.name;
    EXPECT_EQ(b.scale, bitnet::fp16_to_f32(bitnet::f32_to_fp16(a.scale))) << t.name;
  }
  // Back to I2_S: values kept, scale now the f16 value (exact in f32).
  const auto back = bitnet::gguf::file::from_memory(convert_bytes(tq2, tensor_type::i2_s), "back");
  const auto w = bitnet::unpack_ternary(tensor_type::i2_s, back.tensor("blk.3.attn_v.weight").bytes(), 256, 128);
  const auto w0 = bitnet::unpack_ternary(tensor_type::i2_s, f0.tensor("blk.3.attn_v.weight").bytes(), 256, 128);
  EXPECT_EQ(w.w, w0.w);
  EXPECT_EQ(w.scale, bitnet::fp16_to_f32(bitnet::f32_to_fp16(w0.scale)));
}

TEST(Convert, PerBlockScalesCannotBecomeI2S) {
  // A TQ2_0 tensor whose two 256-blocks have different scales.
  const std::vector<std::int8_t> w(512, 1);
  const std::vector<float> bs = {0.5f, 0.25f};
  bitnet::gguf::writer gw;
  gw.set_string("general.architecture", "bitnet");
  gw.add_tensor("blk.0.attn_q.weight", tensor_type::tq2_0, {256, 2}, bitnet::pack_tq2(w, 256, 2, 0.5f, bs));
  const auto m = error_of([&] { convert_bytes(gw.to_bytes(), tensor_type::i2_s); });
  EXPECT_NE(m.find("blk.0.attn_q.weight"), std::string::npos) << m;
  EXPECT_NE(m.find("one scale per tensor"), std::string::npos) << m;
}

// Head requantization error bounds, per block, derived from the formats:
//  Q8_0: x = fp16(d) q with d = amax/127, q = round(x/d): |err| <= d/2 + 127 |d - fp16(d)|
//        <= amax (1/254 + 2^-11) = 0.00443 amax of the 32-block.
//  Q6_K: per 16-value sub-block j, value = D sc_j q, q in [-32, 31]. quantize_row_q6_k maps the
//        sub-block's largest |x| to a code of magnitude 26..32, so its float step s_j <= amax_j/26;
//        D = max_j s_j / 127 and the int8 sc_j search (sc +- 1) keeps |D sc_j - s_j| <= 1.5 D.
//        Rounding costs half a step: |err| <= amax_j/52 + 0.75 D <= amax_256 (1/52 + 1/4403)
//        = 0.0195 amax_256 without clamping; asserted with room as <= amax_256 / 40 (0.025).
TEST(Convert, HeadRequantizationErrorBounds) {
  cv::synth_options o;
  o.shape = "tiny";
  o.head = tensor_type::f32;
  const auto src = synth_bytes(o);
  const auto f32 = bitnet::gguf::file::from_memory(src, "f32");
  const auto& E = f32.tensor("token_embd.weight");
  const std::int64_t K = static_cast<std::int64_t>(E.ne[0]), rows = static_cast<std::int64_t>(E.ne[1]);
  std::vector<float> x(static_cast<std::size_t>(K * rows));
  std::memcpy(x.data(), E.data, x.size() * 4);

  for (const auto& [type, block, bound] : {std::tuple{tensor_type::q8_0, 32, 1.0 / 254 + 1.0 / 2048},
                                           std::tuple{tensor_type::q6_k, 256, 1.0 / 40}}) {
    SCOPED_TRACE(std::string(bitnet::type_name(type)));
    const auto q = bitnet::gguf::file::from_memory(convert_bytes(src, std::nullopt, type), "q");
    const auto& Q = q.tensor("token_embd.weight");
    ASSERT_EQ(Q.type, type);
    std::vector<float> y(x.size());
    const std::size_t rb = bitnet::dense_row_bytes(type, K);
    for (std::int64_t r = 0; r < rows; ++r) bitnet::dequantize_row(type, Q.data + r * rb, y.data() + r * K, K);
    double worst = 0.0, se = 0.0, sx = 0.0;
    for (std::size_t b0 = 0; b0 < x.size(); b0 += static_cast<std::size_t>(block)) {
      double amax = 0.0;
      for (int i = 0; i < block; ++i) amax = std::max(amax, std::fabs(static_cast<double>(x[b0 + i])));
      for (int i = 0; i < block; ++i) {
        const double e = std::fabs(static_cast<double>(x[b0 + i]) - y[b0 + i]);
        worst = std::max(worst, amax > 0 ? e / amax : e);
        se += e * e;
        sx += static_cast<double>(x[b0 + i]) * x[b0 + i];
      }
    }
    const double rel_rms = std::sqrt(se / sx);
    EXPECT_LE(worst, bound) << "max |err| / block amax";
    // Stated RMS errors for Gaussian rows: Q8_0 about 0.5 % (step amax/127 over sqrt(12)), Q6_K about 1.6 %.
    EXPECT_LE(rel_rms, type == tensor_type::q8_0 ? 0.006 : 0.025) << "relative RMS error";
    std::printf("%s head: max |err|/amax %.5f (bound %.5f), relative RMS error %.5f\n",
                std::string(bitnet::type_name(type)).c_str(), worst, bound, rel_rms);
  }
  // Q6_K cannot hold rows whose length is not a multiple of 256.
  cv::synth_options o3;
  o3.shape = "3b";
  o3.head = tensor_type::q6_k;
  const auto m = error_of([&] { cv::build_synth(o3); });
  EXPECT_NE(m.find("token_embd.weight"), std::string::npos) << m;
  EXPECT_NE(m.find("3200"), std::string::npos) << m;
}

// ---------------------------------------------------------------- synth

TEST(Synth, DeterministicBySeed) {
  cv::synth_options o;
  o.shape = "tiny";
  o.seed = 42;
  const auto a = synth_bytes(o), b = synth_bytes(o);
  EXPECT_EQ(a, b);
  o.seed = 43;
  const auto c = synth_bytes(o);
  EXPECT_EQ(a.size(), c.size());
  EXPECT_NE(a, c);
  // Threads do not change the bytes.
  o.seed = 42;
  o.threads = 1;
  EXPECT_EQ(synth_bytes(o), a);
}

TEST(Synth, ShapesOverridesAndVocab) {
  cv::synth_options o;
  o.shape = "tiny";
  o.layers = 1;
  o.vocab = 700;
  const auto f = bitnet::gguf::file::from_memory(synth_bytes(o), "tiny");
  EXPECT_EQ(f.get_string("general.architecture"), "bitnet-b1.58");
  EXPECT_EQ(f.get_uint("bitnet-b1.58.block_count"), 1u);
  EXPECT_EQ(f.tensors().size(), 2u + 11u);
  EXPECT_EQ(f.tensor("token_embd.weight").ne[1], 700u);
  const auto v = bitnet::tok::vocab_from_gguf(f);
  ASSERT_EQ(v.tokens.size(), 700u);
  EXPECT_EQ(v.tokens[static_cast<std::size_t>(v.bos)], "<|begin_of_text|>");
  EXPECT_EQ(v.tokens[static_cast<std::size_t>(v.eot)], "<|eot_id|>");
  std::set<std::string> uniq(v.tokens.begin(), v.tokens.end());
  EXPECT_EQ(uniq.size(), v.tokens.size());
  for (const auto& mg : v.merges) {  // every merge joins two tokens into a token
    const auto sp = mg.find(' ', 1);
    ASSERT_NE(sp, std::string::npos) << mg;
    EXPECT_TRUE(uniq.count(mg.substr(0, sp)) && uniq.count(mg.substr(sp + 1)) &&
                uniq.count(mg.substr(0, sp) + mg.substr(sp + 1)))
        << mg;
  }
  const bitnet::tok::tokenizer tok(v);
  const auto ids = tok.encode("the cat sat", true, false);
  EXPECT_EQ(tok.decode(ids), "the cat sat");

  // A SentencePiece shape, shrunk.
  cv::synth_options s;
  s.shape = "large";
  s.layers = 1;
  s.vocab = 1000;
  const auto g = bitnet::gguf::file::from_memory(synth_bytes(s), "large");
  EXPECT_EQ(g.get_string("general.architecture"), "bitnet");
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "llama");
  const bitnet::tok::tokenizer stok(bitnet::tok::vocab_from_gguf(g));
  EXPECT_EQ(stok.decode(stok.encode("hello world", true, false)), "hello world");

  // 3b: K = 8640 rules out TQ (named tensor and requirement); I2_S holds it.
  cv::synth_options t;
  t.shape = "3b";
  t.type = tensor_type::tq2_0;
  const auto m = error_of([&] { cv::build_synth(t); });
  EXPECT_NE(m.find("blk.N.ffn_down.weight (K = 8640, M = 3200)"), std::string::npos) << m;
  EXPECT_NE(m.find("blk.N.attn_q.weight (K = 3200, M = 3200)"), std::string::npos) << m;
  EXPECT_NE(m.find("multiple of 256"), std::string::npos) << m;
  EXPECT_NE(m.find("this shape fits I2_S"), std::string::npos) << m;
  t.type = tensor_type::i2_s;
  EXPECT_EQ(cv::build_synth(t).tensor_count(), 2u + 26u * 11u);

  EXPECT_NE(error_of([] {
              cv::synth_options u;
              u.shape = "huge";
              cv::build_synth(u);
            }).find("unknown shape"),
            std::string::npos);
}

// ---------------------------------------------------------------- the command line

const std::filesystem::path kTool = std::filesystem::path(BITNET_BINARY_DIR) / "tools" / "bitnet-convert";

struct run_result {
  int status = -1;
  std::string out;  // stdout and stderr
};

run_result run_tool(const std::string& args) {
  run_result r;
  const std::string cmd = kTool.string() + " " + args + " 2>&1";
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kTool)) GTEST_SKIP() << "SKIP: " << kTool << " not built";
    dir_ = std::filesystem::temp_directory_path() / ("bitnet_convert_cli_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write(const std::string& name, const std::vector<std::uint8_t>& b) const {
    std::ofstream(dir_ / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }
  std::filesystem::path dir_;
};

TEST_F(Cli, UsageAndHelp) {
  auto r = run_tool("--help");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("from-llama2c"), std::string::npos);
  for (const char* c : {"from-llama2c", "convert", "synth"}) {
    r = run_tool(std::string(c) + " --help");
    EXPECT_EQ(r.status, 0) << c;
    EXPECT_NE(r.out.find("usage: bitnet-convert " + std::string(c)), std::string::npos) << r.out;
  }
  EXPECT_EQ(run_tool("").status, 2);
  EXPECT_EQ(run_tool("frobnicate").status, 2);
  r = run_tool("synth --shape tiny");  // no -o
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("-o OUT.gguf is required"), std::string::npos) << r.out;
  r = run_tool("synth --shape tiny --type q4_0 -o x.gguf");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("expected i2_s, tq2_0 or tq1_0"), std::string::npos) << r.out;
  r = run_tool("synth --shape tiny --layers 0 -o x.gguf");
  EXPECT_EQ(r.status, 2);
}

TEST_F(Cli, BadInputsFailWithOneClearMessage) {
  auto trunc = tiny_checkpoint({}, 0x55);
  trunc.resize(trunc.size() - 3);
  write("trunc.bin", trunc);
  auto r = run_tool("from-llama2c " + path("trunc.bin") + " " + path("none.model") + " -o " + path("out.gguf"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("bitnet-convert: error: " + path("trunc.bin") + ": truncated"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(path("out.gguf")));
  EXPECT_FALSE(std::filesystem::exists(path("out.gguf.tmp")));

  auto magic = tiny_checkpoint({});
  magic[1] = 0;
  write("magic.bin", magic);
  r = run_tool("from-llama2c " + path("magic.bin") + " " + path("none.model") + " -o " + path("out.gguf"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("magic"), std::string::npos) << r.out;

  // A valid checkpoint with a tokenizer file that is not a SentencePiece model.
  write("ok.bin", tiny_checkpoint({}, 0x55));
  write("bad.model", {0xff, 0xff});
  r = run_tool("from-llama2c " + path("ok.bin") + " " + path("bad.model") + " -o " + path("out.gguf"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find(path("bad.model")), std::string::npos) << r.out;

  r = run_tool("synth --shape 3b --type tq2_0 -o " + path("3b.gguf"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("ffn_down"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(path("3b.gguf")));

  write("notgguf.gguf", {1, 2, 3, 4, 5});
  r = run_tool("convert " + path("notgguf.gguf") + " --type tq2_0 -o " + path("c.gguf"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("notgguf.gguf"), std::string::npos) << r.out;
}

TEST_F(Cli, SynthThenConvert) {
  auto r = run_tool("synth --shape tiny --seed 7 -q -o " + path("a.gguf"));
  ASSERT_EQ(r.status, 0) << r.out;
  r = run_tool("convert " + path("a.gguf") + " --type tq1_0 --head-type q8_0 -q -o " + path("b.gguf"));
  ASSERT_EQ(r.status, 0) << r.out;
  const auto f = bitnet::gguf::file::open(path("b.gguf"));
  EXPECT_EQ(f.tensor("blk.1.ffn_up.weight").type, tensor_type::tq1_0);
  EXPECT_EQ(f.tensor("token_embd.weight").type, tensor_type::q8_0);
  r = run_tool("convert " + path("a.gguf") + " --type tq1_0 -o " + path("a.gguf"));
  EXPECT_EQ(r.status, 2) << r.out;  // output = input
  r = run_tool("convert " + path("a.gguf") + " -o " + path("c.gguf"));
  EXPECT_EQ(r.status, 2) << r.out;  // nothing to do
}

// The staged checkpoint rewritten MSB-first (the 2-bit pairs of every code byte reversed, the
// layout of PROVENANCE.md; every matrix of the 3M model has a multiple of 4 weights, so there
// are no padding bits).
std::vector<std::uint8_t> msb_first(std::vector<std::uint8_t> b) {
  const auto i32 = [&](std::size_t o) {
    std::int32_t v;
    std::memcpy(&v, b.data() + o, 4);
    return v;
  };
  const std::int64_t dim = i32(8), hidden = i32(12), layers = i32(16), heads = i32(20), kv_heads = i32(24), vocab = i32(28);
  const std::int64_t kv = dim / heads * kv_heads;
  const std::int64_t sizes[7] = {dim * dim, kv * dim, kv * dim, dim * dim, hidden * dim, dim * hidden, hidden * dim};
  std::size_t o = 256 + 4 * static_cast<std::size_t>(dim + vocab * dim);
  for (const std::int64_t n : sizes)
    for (std::int64_t l = 0; l < layers; ++l) {
      o += 4;  // scale
      for (std::int64_t i = 0; i < n / 4; ++i, ++o) {
        const std::uint8_t x = b[o];
        b[o] = static_cast<std::uint8_t>((x & 3) << 6 | (x >> 2 & 3) << 4 | (x >> 4 & 3) << 2 | x >> 6);
      }
    }
  EXPECT_EQ(o, b.size());
  return b;
}

// Without --order, the order in which a probe text scores far better is taken: the staged
// (LSB-first) checkpoint and its MSB-first rewrite convert to the same file. A given order that
// contradicts the probe is warned about; a model that reads as noise both ways needs --order.
TEST_F(Cli, FromLlama2cFindsTheCodeOrder) {
  REQUIRE_DATA();
  const auto orig = cv::read_file(kCkpt.string());
  write("msb.bin", msb_first(orig));
  const std::string tok = " " + kTokModel.string() + " --name m -o ";
  auto r = run_tool("from-llama2c " + kCkpt.string() + tok + path("lsb.gguf"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("code order lsb (a probe text of"), std::string::npos) << r.out;
  r = run_tool("from-llama2c " + path("msb.bin") + tok + path("msb.gguf"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("code order msb"), std::string::npos) << r.out;
  EXPECT_EQ(cv::read_file(path("lsb.gguf")), cv::read_file(path("msb.gguf")));
  r = run_tool("from-llama2c " + path("msb.bin") + tok + path("forced.gguf") + " --order lsb -q");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("warning: " + path("msb.bin") + ": --order lsb given, but a probe text"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("the checkpoint looks MSB-first"), std::string::npos) << r.out;

  // The same file with every code 0: a model that is noise in both orders.
  auto flat = orig;
  const auto dim = 256u, vocab = 512u;
  for (std::size_t o = 256 + 4 * (dim + vocab * dim); o < flat.size(); ++o) flat[o] = 0x00;
  write("flat.bin", flat);
  r = run_tool("from-llama2c " + path("flat.bin") + tok + path("flat.gguf"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("cannot tell the 2-bit code order"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("give --order lsb or --order msb"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(path("flat.gguf")));
  r = run_tool("from-llama2c " + path("flat.bin") + tok + path("flat.gguf") + " --order lsb -q");
  EXPECT_EQ(r.status, 0) << r.out;
}

TEST_F(Cli, FromLlama2cRealFiles) {
  REQUIRE_DATA();
  const auto r = run_tool("from-llama2c " + kCkpt.string() + " " + kTokModel.string() + " --type tq2_0 -o " +
                          path("m.gguf"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("1160009 zero, 992988 +1, 992731 -1"), std::string::npos) << r.out;
  const auto f = bitnet::gguf::file::open(path("m.gguf"));
  EXPECT_EQ(f.get_string("general.name"), "bitllama-3M-ternary");
  EXPECT_EQ(f.tensor("blk.7.ffn_down.weight").type, tensor_type::tq2_0);
}

}  // namespace
