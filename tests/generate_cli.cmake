# CLI tests for bitnet-generate (examples/bitnet-generate): exit status and messages for help,
# bad input files, bad flags and prompts, plus short runs on a synthetic model.
# Models come from bitnet-generate-test-models (tests/generate_cli/make_models.cpp), made once
# by the generate_cli.models fixture; each case runs tests/generate_cli/expect.cmake.
if(NOT BITNET_BUILD_EXAMPLES)
  return()
endif()

add_executable(bitnet-generate-test-models ${CMAKE_CURRENT_SOURCE_DIR}/generate_cli/make_models.cpp)
target_link_libraries(bitnet-generate-test-models PRIVATE bitnet_dev)
target_include_directories(bitnet-generate-test-models PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})

set(_gen_dir ${CMAKE_CURRENT_BINARY_DIR}/generate_cli)
add_test(NAME generate_cli.models COMMAND bitnet-generate-test-models ${_gen_dir})
set_tests_properties(generate_cli.models PROPERTIES FIXTURES_SETUP generate_cli_models LABELS cli)

# bitnet_generate_case(NAME RC <0|nonzero|n> ARGS <args...> [MATCH <regex...>] [STDOUT <regex>]
#                      [INPUT <file>] [ONE_LINE_ERROR])
function(bitnet_generate_case name)
  cmake_parse_arguments(C "ONE_LINE_ERROR" "RC;STDOUT;INPUT" "ARGS;MATCH" ${ARGN})
  string(REPLACE ";" "|" cmd "$<TARGET_FILE:bitnet-generate>;${C_ARGS}")
  string(REPLACE ";" "|" match "${C_MATCH}")
  set(defs -DCMD=${cmd} -DRC=${C_RC} -DMATCH=${match})
  if(C_STDOUT)
    list(APPEND defs -DSTDOUT=${C_STDOUT})
  endif()
  if(C_INPUT)
    list(APPEND defs -DINPUT=${C_INPUT})
  endif()
  if(C_ONE_LINE_ERROR)
    list(APPEND defs -DONE_LINE_ERROR=ON)
  endif()
  add_test(NAME generate_cli.${name}
           COMMAND ${CMAKE_COMMAND} ${defs} -P ${CMAKE_CURRENT_SOURCE_DIR}/generate_cli/expect.cmake)
  set_tests_properties(generate_cli.${name} PROPERTIES FIXTURES_REQUIRED generate_cli_models LABELS cli TIMEOUT 120)
endfunction()

bitnet_generate_case(help RC 0 ARGS --help
  MATCH "usage: bitnet-generate" "-m, --model PATH" "-p, --prompt TEXT" "-n, --n-predict N" "-t, --threads N"
        "-c, --ctx-size N" "--temp T .*default: 0.8" "--top-k N .*default: 40" "--top-p P .*default: 0.95"
        "--min-p P .*default: 0.05" "--repeat-penalty X .*default: 1.0" "--repeat-last-n N .*default: 64"
        "--seed N" "--chat" "--system TEXT" "--json" "--no-bos" "--ignore-eos" "--kernel-arch NAME"
        "--gemv NAME" "--gemm NAME" "--act MODE" "--kv-type TYPE .*default: f32" "BITNET_ARCH")
bitnet_generate_case(no_model RC 2 ARGS -p hello MATCH "error: no model given" ONE_LINE_ERROR)
bitnet_generate_case(unknown_flag RC 2 ARGS -m ${_gen_dir}/tiny.gguf --bogus MATCH "unknown flag '--bogus'" ONE_LINE_ERROR)
bitnet_generate_case(bad_number RC 2 ARGS -m ${_gen_dir}/tiny.gguf -t zero MATCH "-t: expected an integer" ONE_LINE_ERROR)
bitnet_generate_case(missing_file RC nonzero ARGS -m ${_gen_dir}/no-such-model.gguf -p hi
  MATCH "no-such-model.gguf: cannot open" ONE_LINE_ERROR)
bitnet_generate_case(truncated_file RC nonzero ARGS -m ${_gen_dir}/truncated.gguf -p hi
  MATCH "truncated.gguf: .*exceeds file size" ONE_LINE_ERROR)
bitnet_generate_case(not_a_gguf RC nonzero ARGS -m ${CMAKE_CURRENT_SOURCE_DIR}/generate_cli/expect.cmake -p hi
  MATCH "expect.cmake: .*magic" ONE_LINE_ERROR)
bitnet_generate_case(non_bitnet_arch RC nonzero ARGS -m ${_gen_dir}/gpt2.gguf -p hi
  MATCH "gpt2.gguf: .*general.architecture is 'gpt2', expected one of bitnet, bitnet-b1.58, bitnet-25, llama" ONE_LINE_ERROR)
bitnet_generate_case(unsupported_tl2 RC nonzero ARGS -m ${_gen_dir}/tl2.gguf -p hi
  MATCH "tensor 'blk.0.attn_q.weight': TL2 is not supported" ONE_LINE_ERROR)
bitnet_generate_case(prompt_longer_than_context RC nonzero ARGS -m ${_gen_dir}/tiny.gguf -c 4 -p "a prompt of more than four tokens"
  MATCH "the prompt is [0-9]+ tokens but the context holds 4 positions" ONE_LINE_ERROR)
bitnet_generate_case(invalid_utf8_prompt RC nonzero ARGS -m ${_gen_dir}/tiny.gguf -f ${_gen_dir}/invalid_utf8.txt
  MATCH "the prompt is not valid UTF-8 \\(byte offset 12\\)" ONE_LINE_ERROR)
bitnet_generate_case(bad_kernel RC nonzero ARGS -m ${_gen_dir}/tiny.gguf -p hi --gemv no-such-kernel
  MATCH "unknown GEMV kernel 'no-such-kernel'" ONE_LINE_ERROR)

# Runs on the synthetic model (random weights: the text is noise, the mechanics are checked).
bitnet_generate_case(generate RC 0 ARGS -m ${_gen_dir}/tiny.gguf -p "hello" -n 8 -t 2 --seed 3
  MATCH "prefill [0-9]+ tokens" "decode [0-9]+ in" "kernels gemv gemv_[a-z0-9]+_q8/" "threads 2")
bitnet_generate_case(no_lut RC 0 ARGS -m ${_gen_dir}/tiny.gguf -p "hello" -n 4 --no-lut
  MATCH "kernels gemv gemv_t2_q8/" "MiB as t2/b")
bitnet_generate_case(json RC 0 ARGS -m ${_gen_dir}/tiny.gguf --prompt= -n 5 --temp 0 --ignore-eos --json
  STDOUT "^{\"model\":.*\"prompt_ids\":\\[1\\],\"generated_ids\":\\[[0-9]+(,[0-9]+)(,[0-9]+)(,[0-9]+)(,[0-9]+)\\],\"text\":.*\"stop\":\"length\",\"timings\":{[^}]*},.*}\n$")
bitnet_generate_case(context_full RC 0 ARGS -m ${_gen_dir}/tiny.gguf -p "ab" -c 6 -n 50 --ignore-eos --json
  MATCH "stopped: the context of 6 positions is full" "\"stop\":\"context_full\"")
bitnet_generate_case(kv_f16 RC 0 ARGS -m ${_gen_dir}/tiny.gguf -p "hi" -n 4 --kv-type f16 MATCH "KV cache f16")
bitnet_generate_case(scalar_kernels RC 0 ARGS -m ${_gen_dir}/tiny.gguf -p "hi" -n 4 --kernel-arch scalar
  MATCH "gemv gemv_t2_q8/scalar/" "head gemv_f16_f32/scalar")
# --prompt-ids: the ids are the prompt as given (no BOS added).
bitnet_generate_case(prompt_ids RC 0 ARGS -m ${_gen_dir}/tiny.gguf --prompt-ids "1, 260,270" -n 3 --temp 0 --ignore-eos --json
  STDOUT "\"prompt_ids\":\\[1,260,270\\],\"generated_ids\":\\[[0-9]+,[0-9]+,[0-9]+\\]")
bitnet_generate_case(prompt_ids_outside_vocab RC nonzero ARGS -m ${_gen_dir}/tiny.gguf --prompt-ids 1,300
  MATCH "--prompt-ids: id 1 is 300, outside the vocabulary of 300 tokens" ONE_LINE_ERROR)
bitnet_generate_case(prompt_ids_not_ids RC nonzero ARGS -m ${_gen_dir}/tiny.gguf --prompt-ids 1,x
  MATCH "--prompt-ids: 'x' at byte offset 2 is not a token id" ONE_LINE_ERROR)
bitnet_generate_case(prompt_ids_and_prompt RC 2 ARGS -m ${_gen_dir}/tiny.gguf --prompt-ids 1 -p hi
  MATCH "--prompt-ids cannot be combined with -p or -f" ONE_LINE_ERROR)
# The llama architecture and float projections, end to end.
bitnet_generate_case(llama_arch RC 0 ARGS -m ${_gen_dir}/llama.gguf -p "hello" -n 4 --seed 1
  MATCH "llama, 2 layers, d 256, 4/2 heads, vocab 300; weights TQ2_0" "head F16")
bitnet_generate_case(float_projections RC 0 ARGS -m ${_gen_dir}/f16.gguf -p "hello" -n 4 --seed 1
  MATCH "note: 14 float projection tensors ternarized: 14 exactly ternary x one scale" "weights F16")
bitnet_generate_case(chat_fallback RC 0 ARGS -m ${_gen_dir}/tiny.gguf --chat --system "Be brief." -n 6 --temp 0
  INPUT ${CMAKE_CURRENT_SOURCE_DIR}/generate_cli/chat_input.txt MATCH "stop: chat ended")
