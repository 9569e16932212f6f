# tests/perplexity.cmake - test_perplexity runs the bitnet-perplexity executable, and makes its
# models with the bitnet-convert executable (synth for the synthetic ones; from-llama2c and
# convert for the staged bitllama 3M model, as tests/real_model.cmake does), so build both first.
if(BITNET_BUILD_TOOLS AND TARGET test_perplexity)
  add_dependencies(test_perplexity bitnet-perplexity bitnet-convert)
endif()
