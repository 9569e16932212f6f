// bitnet/runner/runner.hpp - the runner: one component that every front end links.
//
// bitnet-generate, bitnet-perplexity, bitnet-bench (and a server, a Python module, an embedding
// example) are thin programs over this API; target bitnet_runner (examples/runner/CMakeLists.txt).
//
//   bitnet::run::thread_pool pool(threads);                      // the runner's threads
//   auto mf = bitnet::run::model_file::open("model.gguf");       // cheap: metadata, config, tokenizer
//   auto ids = mf.require_tokenizer().encode("Once upon", true, true);
//   auto m = bitnet::run::model::load(std::move(mf), {}, pool);  // weights; or model::open(path, opts, pool)
//   m.info();                                                    // architecture, sizes, kernels, layouts
//   bitnet::run::session s(m, pool, {.n_ctx = 2048});            // KV cache (one or more sequences)
//   auto logits = s.eval(ids);                                   // or s.decode(batch) for several sequences
//   bitnet::run::sampler smp({.temp = 0}, m.cfg().n_vocab);
//   auto g = bitnet::run::generate(s, smp, m.require_tokenizer(), ids, {.max_tokens = 64},
//                                  [](const bitnet::run::generated_piece& p) { /* stream p.text */ return true; });
//   auto chat = bitnet::run::chat_format::detect(m);             // chat formatting from the model's template
//
// Headers, top to bottom:
//   config.hpp      architectures, hyperparameters (read_config), what is refused
//   kernels.hpp     the planner (which layout and kernels run each projection) and projection
//   ternarize.hpp   float projection tensors as ternary weights
//   model.hpp       model_file (open) and model (load): weights, info
//   attention.hpp   RMSNorm and the attention loops
//   session.hpp     KV cache, batches of one or more sequences, the forward pass, embeddings
//   precise.hpp     the forward pass in double (verification)
//   tokenizer.hpp   SentencePiece and byte-level BPE (Llama-3, Falcon3 pre-tokenizers)
//   sampler.hpp     llama.cpp's sampling chain, reproducible; logprobs() for OpenAI-style log-probabilities
//   generate.hpp    the generation loop: stop conditions, a per-token callback that can stop it;
//                   generation_stream, its token and text side for hosts that batch sequences (bitnet-server)
//   chat.hpp        chat formats and a conversation kept in one sequence
//   thread_pool.hpp the fork-join pool
//   cli.hpp         flag tables and --help for front ends
// Errors are exceptions with one-line messages naming the file, key, tensor or argument; nothing
// in the component prints or exits.
#pragma once

#include "bitnet/runner/chat.hpp"
#include "bitnet/runner/config.hpp"
#include "bitnet/runner/generate.hpp"
#include "bitnet/runner/kernels.hpp"
#include "bitnet/runner/model.hpp"
#include "bitnet/runner/precise.hpp"
#include "bitnet/runner/sampler.hpp"
#include "bitnet/runner/session.hpp"
#include "bitnet/runner/ternarize.hpp"
#include "bitnet/runner/thread_pool.hpp"
#include "bitnet/runner/tokenizer.hpp"
