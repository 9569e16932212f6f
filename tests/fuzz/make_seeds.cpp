// Writes the seed corpus of fuzz_gguf into the directory argv[1]: small valid files made with
// the writer, covering every value type, both id conventions, alignment and shapes, plus a
// 64-token excerpt of the real Llama vocab when shared/ is present.
#include <bitnet/gguf.hpp>

#include <cstdint>     // fixed-width integers
#include <cstdio>      // std::fprintf, std::fwrite
#include <exception>   // std::exception in main
#include <filesystem>  // optional shared vocab, output dir
#include <span>        // string_view arrays for the writer
#include <stdexcept>   // write errors
#include <string>      // paths
#include <vector>      // buffers

namespace {

namespace gguf = bitnet::gguf;
using bitnet::tensor_type;

std::vector<std::uint8_t> fill(std::size_t n, std::uint8_t seed) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(seed + i * 37);
  return v;
}

void add(gguf::writer& w, const char* name, tensor_type t, gguf::shape ne, std::uint8_t seed) {
  w.add_tensor(name, t, ne, fill(static_cast<std::size_t>(*bitnet::tensor_nbytes(t, ne.ne)), seed));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  try {
    const std::string dir = argv[1];
    std::filesystem::create_directories(dir);
    {  // every scalar and array type, three tensors
      gguf::writer w;
      w.set("general.architecture", "llama");
      w.set_alignment(32);
      w.set_u8("t.u8", 1); w.set_i8("t.i8", -1); w.set_u16("t.u16", 2); w.set_i16("t.i16", -2);
      w.set_u32("t.u32", 3); w.set_i32("t.i32", -3); w.set_f32("t.f32", 0.5f); w.set_bool("t.bool", true);
      w.set_string("t.str", "hello"); w.set_u64("t.u64", 4); w.set_i64("t.i64", -4); w.set_f64("t.f64", 0.25);
      w.set_array("t.as", std::vector<std::string>{"a", "bc"});
      w.set_array("t.ai", std::vector<std::int32_t>{1, 2, 3});
      w.set_array("t.ab", std::vector<bool>{true, false});
      w.set_array("t.af", std::vector<float>{1.5f});
      w.set_array("t.au64", std::vector<std::uint64_t>{7});
      add(w, "a.weight", tensor_type::f32, {8, 2}, 1);
      add(w, "b.weight", tensor_type::q8_0, {32, 2}, 2);
      add(w, "c.weight", tensor_type::f16, {16}, 3);
      auto b = w.to_bytes();
      w.write(dir + "/all_types.gguf");
      b[4] = 2;  // the same as version 2
      (void)gguf::file::from_memory(b, "v2");  // still valid
      std::FILE* f = std::fopen((dir + "/all_types_v2.gguf").c_str(), "wb");
      if (!f || std::fwrite(b.data(), 1, b.size(), f) != b.size()) throw std::runtime_error("cannot write v2 seed");
      std::fclose(f);
    }
    {  // BitNet fork ids
      gguf::writer w(bitnet::id_convention::bitnet);
      w.set("general.architecture", "bitnet-b1.58");
      w.set_u32("bitnet-b1.58.block_count", 1);
      add(w, "blk.0.attn_q.weight", tensor_type::i2_s, {128, 4}, 4);
      add(w, "blk.0.attn_k.weight", tensor_type::tl1, {128, 2}, 5);
      add(w, "blk.0.ffn_down.weight", tensor_type::tl2, {512, 2}, 6);
      add(w, "blk.0.act", tensor_type::i8_s, {8}, 7);
      add(w, "token_embd.weight", tensor_type::f16, {4, 8}, 8);
      w.write(dir + "/bitnet_fork.gguf");
    }
    {  // upstream ids incl. MXFP4 = 39 and the block types
      gguf::writer w(bitnet::id_convention::upstream);
      w.set("general.architecture", "llama");
      add(w, "mx", tensor_type::mxfp4, {64}, 9);
      add(w, "q6k", tensor_type::q6_k, {256}, 10);
      add(w, "q8k", tensor_type::q8_k, {256}, 11);
      add(w, "tq1", tensor_type::tq1_0, {256}, 12);
      add(w, "tq2", tensor_type::tq2_0, {256}, 13);
      add(w, "bf16", tensor_type::bf16, {3, 1, 1, 2}, 14);
      add(w, "q4", tensor_type::q4_0, {32}, 15);
      w.write(dir + "/upstream.gguf");
    }
    {  // id 39 without an architecture: only readable when forced
      gguf::writer w(bitnet::id_convention::upstream);
      add(w, "mx", tensor_type::mxfp4, {32}, 16);
      w.write(dir + "/unclassified.gguf");
    }
    {  // alignment 64, a zero-size tensor, 0-dim tensor
      gguf::writer w;
      w.set_alignment(64);
      add(w, "empty", tensor_type::f32, {0, 3}, 17);
      add(w, "scalar", tensor_type::f32, {}, 18);
      add(w, "x", tensor_type::f32, {5}, 19);
      w.write(dir + "/aligned64.gguf");
    }
    {  // metadata only
      gguf::writer w;
      w.set("general.name", "kv only");
      w.set_array_f32("empty", {});
      w.write(dir + "/kv_only.gguf");
    }
    const std::string vocab = std::string(BITNET_SHARED_DIR) + "/data/llamacpp-vocab/ggml-vocab-llama-spm.gguf";
    if (std::filesystem::exists(vocab)) {  // a 64-token excerpt of a real vocab
      const auto src = gguf::file::open(vocab);
      gguf::writer w;
      for (const auto& kv : src.metadata())
        if (kv.type != gguf::value_type::array) w.copy_kv(src, kv.key);
      auto tok = src.get_string_array("tokenizer.ggml.tokens");
      auto sc = src.get_float_array("tokenizer.ggml.scores");
      auto ty = src.get_int_array("tokenizer.ggml.token_type");
      tok.resize(64);
      sc.resize(64);
      std::vector<std::int32_t> ty32(ty.begin(), ty.begin() + 64);
      w.set_array_str("tokenizer.ggml.tokens", std::span<const std::string_view>(tok));
      w.set_array_f32("tokenizer.ggml.scores", sc);
      w.set_array_i32("tokenizer.ggml.token_type", ty32);
      w.write(dir + "/vocab_excerpt.gguf");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
}
