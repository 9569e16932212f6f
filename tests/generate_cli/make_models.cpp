// tests/generate_cli/make_models.cpp - writes the files the bitnet-generate CLI tests run on.
//
//   bitnet-generate-test-models DIR
//
// DIR/tiny.gguf        a valid bitnet-b1.58 model (2 layers, d 256, GQA 8/2, I2_S, F16 head)
//                      with a 300-token SentencePiece vocabulary (byte fallback: any text works)
// DIR/truncated.gguf   tiny.gguf cut in the middle of its tensor data
// DIR/gpt2.gguf        tiny.gguf with general.architecture = gpt2 (not an architecture the runner runs)
// DIR/tl2.gguf         tiny.gguf with blk.0.attn_q.weight as TL2 (unsupported ternary layout)
// DIR/llama.gguf       a llama model (heads of 64, untied F16 head, TQ2_0) with the same vocabulary
// DIR/f16.gguf         tiny.gguf's model with F16 projections holding ternary x scale
// DIR/invalid_utf8.txt a prompt file with an invalid UTF-8 byte
#include <cstdio>      // std::fprintf
#include <filesystem>  // paths
#include <fstream>     // outputs
#include <string>      // paths
#include <vector>      // bytes

#include "model_builder.hpp"

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::fprintf(stderr, "usage: bitnet-generate-test-models DIR\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  const auto save = [&](const char* name, const std::vector<std::uint8_t>& b) {
    std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  };
  bitnet::test::synth_spec s;
  s.vocab = true;
  bitnet::test::synth_model m = bitnet::test::make_model(s);
  const std::vector<std::uint8_t> tiny = m.bytes();
  save("tiny.gguf", tiny);
  save("truncated.gguf", std::vector<std::uint8_t>(tiny.begin(), tiny.begin() + static_cast<std::ptrdiff_t>(tiny.size() / 2)));
  m.writer.set_string("general.architecture", "gpt2");
  save("gpt2.gguf", m.bytes());

  // TL2 in place of one projection: same name and logical shape, the fork's TL2 byte size.
  const auto f = bitnet::gguf::file::from_memory(tiny, "tiny.gguf");
  bitnet::gguf::writer w;
  for (const auto& kv : f.metadata()) w.copy_kv(f, kv.key);
  for (const auto& t : f.tensors()) {
    const bitnet::gguf::shape ne(std::span<const std::uint64_t>(t.ne.data(), t.n_dims));
    if (t.name == "blk.0.attn_q.weight") {
      const auto n = bitnet::tensor_nbytes(bitnet::tensor_type::tl2, t.ne);
      w.add_tensor(t.name, bitnet::tensor_type::tl2, ne, std::vector<std::uint8_t>(static_cast<std::size_t>(*n), 0));
    } else {
      w.add_tensor(t.name, t.type, ne, t.bytes());
    }
  }
  save("tl2.gguf", w.to_bytes());
  std::ofstream(dir / "invalid_utf8.txt", std::ios::binary) << "Once upon a \xC3\x28 time";
  bitnet::test::synth_spec l;
  l.vocab = true;
  l.arch = "llama";
  l.n_head = 4;
  l.head_dim = 64;
  l.untied_head = true;
  l.wtype = bitnet::tensor_type::tq2_0;
  save("llama.gguf", bitnet::test::make_model(l).bytes());
  bitnet::test::synth_spec h = s;
  h.wtype = bitnet::tensor_type::f16;
  save("f16.gguf", bitnet::test::make_model(h).bytes());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bitnet-generate-test-models: %s\n", e.what());
  return 1;
}
