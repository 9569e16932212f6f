# tests/real_model.cmake - end-to-end check on the trained bitllama2.c 3M ternary model, through
# the two command-line tools: for each ternary type (i2_s, tq2_0, tq1_0)
#   bitnet-convert from-llama2c bitllama-3M-ternary.bin tok512.model -o OUT.gguf --type TYPE
#   bitnet-generate -m OUT.gguf [--precise] --temp 0 --json -n 160 -p ""
# then the ids (BOS + generated) are compared with reference/bitllama-3M-greedy.json and the text
# must begin "Once upon a time, there was a little girl named Lily.". The logits are compared in
# tests/test_real_model.cpp (the runner's CLI does not print them).
#
# Two tests per type:
#   real_model_cli_precise_TYPE  --precise (every non-integer quantity in double): all 160 ids
#                                must equal the reference; any difference fails.
#   real_model_cli_fast_TYPE     the default float32 path. The float64 reference has four steps
#                                whose top-1/top-2 logit margin is below 0.1 (NEAR_TIES below;
#                                test_real_model asserts this list): float32 may pick the runner-up
#                                there. The check passes when the ids equal the reference up to the
#                                first difference and that difference is at a near-tie step; it
#                                prints what it found either way. Anything else fails, naming the
#                                first differing index and both ids.
#
# This file is both a tests/ fragment (registers the tests) and, run with cmake -P, the check.
# The tests are skipped (SKIP: ...) when the staged data is absent.

if(CMAKE_SCRIPT_MODE_FILE)
  # ---- the check: -DCONVERT= -DGENERATE= -DDATA= -DTYPE= -DWORK= [-DPRECISE=ON]
  cmake_minimum_required(VERSION 3.25)  # policies for script mode (IN_LIST)
  set(NEAR_TIES 56 66 68 108)  # step s predicts id s + 1 of greedy_tokens_from_bos
  set(expected_text "Once upon a time, there was a little girl named Lily.")
  set(ckpt "${DATA}/bitllama-3M-ternary.bin")
  set(tok "${DATA}/tok512.model")
  set(ref "${DATA}/reference/bitllama-3M-greedy.json")
  foreach(f IN ITEMS "${ckpt}" "${tok}" "${ref}")
    if(NOT EXISTS "${f}")
      message("SKIP: staged data not found: ${f} (BITNET_SHARED_DIR)")
      return()
    endif()
  endforeach()
  file(MAKE_DIRECTORY "${WORK}")
  set(out "${WORK}/bitllama-3M-${TYPE}.gguf")

  execute_process(COMMAND "${CONVERT}" from-llama2c "${ckpt}" "${tok}" -o "${out}" --type ${TYPE} -q
                  RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE e)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "bitnet-convert from-llama2c --type ${TYPE} failed (${rc}):\n${o}${e}")
  endif()
  set(mode_flags)
  set(mode "fast path")
  if(PRECISE)
    set(mode_flags --precise)
    set(mode "--precise")
  endif()
  execute_process(COMMAND "${GENERATE}" -m "${out}" ${mode_flags} --temp 0 --json -n 160 -p "" -t 2
                  RESULT_VARIABLE rc OUTPUT_VARIABLE json ERROR_VARIABLE e)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "bitnet-generate on ${out} failed (${rc}):\n${e}")
  endif()

  string(JSON n_prompt ERROR_VARIABLE jerr LENGTH "${json}" prompt_ids)
  if(jerr)
    message(FATAL_ERROR "bitnet-generate --json output is not the expected JSON (${jerr}):\n${json}")
  endif()
  string(JSON n_gen LENGTH "${json}" generated_ids)
  file(READ "${ref}" ref_json)
  string(JSON n_ref LENGTH "${ref_json}" greedy_tokens_from_bos)
  if(NOT n_prompt EQUAL 1)
    message(FATAL_ERROR "expected the prompt to be BOS only, got ${n_prompt} prompt ids")
  endif()
  string(JSON bos GET "${json}" prompt_ids 0)
  string(JSON ref0 GET "${ref_json}" greedy_tokens_from_bos 0)
  if(NOT bos EQUAL ref0)
    message(FATAL_ERROR "prompt id ${bos}, reference starts with ${ref0}")
  endif()
  math(EXPR need "${n_ref} - 1")
  if(n_gen LESS need)
    message(FATAL_ERROR "bitnet-generate produced ${n_gen} ids, the reference has ${need} after BOS")
  endif()

  set(verdict "all ${n_ref} ids equal the reference")
  math(EXPR last "${n_ref} - 1")
  foreach(i RANGE 1 ${last})
    math(EXPR g "${i} - 1")
    string(JSON got GET "${json}" generated_ids ${g})
    string(JSON want GET "${ref_json}" greedy_tokens_from_bos ${i})
    if(NOT got EQUAL want)
      math(EXPR step "${i} - 1")
      math(EXPR upto "${i} - 1")
      if(PRECISE)
        message(FATAL_ERROR "${TYPE} --precise: first differing id at index ${i} (generated index ${g}): runner ${got}, reference ${want}; ids 0..${upto} are equal; --precise must reproduce all ${n_ref}")
      elseif(step IN_LIST NEAR_TIES)
        set(verdict "ids equal the reference for indices 0..${upto}; at index ${i} the runner chose ${got}, the reference ${want}: step ${step} is a near tie of the float64 reference (margin < 0.1, see test_real_model), accepted; later ids are not compared (the contexts differ)")
      else()
        message(FATAL_ERROR "${TYPE}: first differing id at index ${i} (generated index ${g}): runner ${got}, reference ${want}; ids 0..${upto} are equal; step ${step} is not a near tie of the reference")
      endif()
      break()
    endif()
  endforeach()

  string(JSON text GET "${json}" text)
  string(LENGTH "${expected_text}" len)
  string(SUBSTRING "${text}" 0 ${len} head)
  if(NOT head STREQUAL expected_text)
    string(SUBSTRING "${text}" 0 120 shown)
    message(FATAL_ERROR "${TYPE}: text begins \"${shown}\", expected \"${expected_text}\"")
  endif()
  message("${TYPE} (${mode}): ${verdict}; text begins \"${expected_text}\"")
  return()
endif()

# ---- the fragment: one test per type
if(BITNET_BUILD_TOOLS AND BITNET_BUILD_EXAMPLES AND EXISTS "${PROJECT_SOURCE_DIR}/examples/bitnet-generate/CMakeLists.txt")
  foreach(type IN ITEMS i2_s tq2_0 tq1_0)
    foreach(mode IN ITEMS fast precise)
      if(mode STREQUAL "precise")
        set(precise ON)
      else()
        set(precise OFF)
      endif()
      add_test(NAME real_model_cli_${mode}_${type}
               COMMAND ${CMAKE_COMMAND} -DCONVERT=$<TARGET_FILE:bitnet-convert> -DGENERATE=$<TARGET_FILE:bitnet-generate>
                       -DDATA=${BITNET_SHARED_DIR}/data/bitllama2c -DTYPE=${type} -DPRECISE=${precise}
                       -DWORK=${CMAKE_CURRENT_BINARY_DIR}/real_model_${mode} -P ${CMAKE_CURRENT_LIST_FILE})
      set_tests_properties(real_model_cli_${mode}_${type} PROPERTIES SKIP_REGULAR_EXPRESSION "SKIP:" TIMEOUT 900)
    endforeach()
  endforeach()
endif()
