# tests/shipped_model.cmake - the model shipped in the repository (models/bitllama-3M, its
# PROVENANCE.md), through the command-line tools:
#   shipped_model_generates   scripts/run.sh's command on the shipped file (no ../shared needed):
#                             greedy text from "Once upon a time" begins with the reference story
#   shipped_model_reference   from BOS, 100 greedy tokens: the text is a prefix of the reference
#                             implementation's (shared/data/bitllama2c/reference/
#                             bitllama-3M-greedy-256.txt; they part at step 108, a near tie)
#   shipped_model_provenance  bitnet-convert on the staged checkpoint gives the shipped bytes
# The last two skip (SKIP: ...) without the staged data.
# This file is both a tests/ fragment (registers the tests) and, run with cmake -P, the check.

if(CMAKE_SCRIPT_MODE_FILE)
  # ---- the check: -DMODE=generates|reference|provenance -DGENERATE= -DCONVERT= -DMODEL= -DDATA= -DWORK=
  cmake_minimum_required(VERSION 3.25)
  set(story "Once upon a time, there was a little girl named Lily. She loved to play outside and explore the world around her. One day, she saw a big, red ball.")
  set(ref "${DATA}/reference/bitllama-3M-greedy-256.txt")
  if(MODE STREQUAL "generates")
    execute_process(COMMAND "${GENERATE}" -m "${MODEL}" -p "Once upon a time" -n 200 --temp 0 -t 2
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "bitnet-generate on ${MODEL} failed (${rc}):\n${err}")
    endif()
    string(LENGTH "${story}" n)
    string(SUBSTRING "${out}" 0 ${n} head)
    if(NOT head STREQUAL story)
      message(FATAL_ERROR "the text begins \"${head}\", expected \"${story}\"")
    endif()
    message("the shipped model tells the story: \"${head}...\"")
  elseif(MODE STREQUAL "reference")
    if(NOT EXISTS "${ref}")
      message("SKIP: staged data not found: ${ref} (BITNET_SHARED_DIR)")
      return()
    endif()
    execute_process(COMMAND "${GENERATE}" -m "${MODEL}" -p "" -n 100 --temp 0 -t 2
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "bitnet-generate on ${MODEL} failed (${rc}):\n${err}")
    endif()
    string(REGEX REPLACE "\n$" "" out "${out}")  # the newline the CLI ends its output with
    file(READ "${ref}" want)
    string(LENGTH "${out}" n)
    string(SUBSTRING "${want}" 0 ${n} want_head)
    if(n LESS 200 OR NOT out STREQUAL want_head)
      message(FATAL_ERROR "100 greedy tokens from BOS are not a prefix of ${ref}:\n${out}\n--- reference:\n${want_head}")
    endif()
    message("100 greedy tokens (${n} characters) equal the reference text's beginning")
  elseif(MODE STREQUAL "provenance")
    set(ckpt "${DATA}/bitllama-3M-ternary.bin")
    if(NOT EXISTS "${ckpt}")
      message("SKIP: staged data not found: ${ckpt} (BITNET_SHARED_DIR)")
      return()
    endif()
    file(MAKE_DIRECTORY "${WORK}")
    execute_process(COMMAND "${CONVERT}" from-llama2c "${ckpt}" "${DATA}/tok512.model" --type i2_s
                            -o "${WORK}/bitllama-3M-i2_s.gguf" -q
                    RESULT_VARIABLE rc ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "bitnet-convert failed (${rc}):\n${err}")
    endif()
    file(SHA256 "${WORK}/bitllama-3M-i2_s.gguf" got)
    file(SHA256 "${MODEL}" shipped)
    if(NOT got STREQUAL shipped)
      message(FATAL_ERROR "converting the staged checkpoint gives sha256 ${got}, the shipped ${MODEL} is ${shipped}: "
                          "regenerate it with the command in its PROVENANCE.md")
    endif()
    message("the shipped model is the conversion of the staged checkpoint (sha256 ${got})")
  endif()
  return()
endif()

# ---- the fragment
if(BITNET_BUILD_TOOLS AND BITNET_BUILD_EXAMPLES)
  foreach(mode IN ITEMS generates reference provenance)
    add_test(NAME shipped_model_${mode}
             COMMAND ${CMAKE_COMMAND} -DMODE=${mode} -DGENERATE=$<TARGET_FILE:bitnet-generate>
                     -DCONVERT=$<TARGET_FILE:bitnet-convert> -DMODEL=${PROJECT_SOURCE_DIR}/models/bitllama-3M/bitllama-3M-i2_s.gguf
                     -DDATA=${BITNET_SHARED_DIR}/data/bitllama2c -DWORK=${CMAKE_CURRENT_BINARY_DIR}/shipped_model
                     -P ${CMAKE_CURRENT_LIST_FILE})
    set_tests_properties(shipped_model_${mode} PROPERTIES SKIP_REGULAR_EXPRESSION "SKIP:" TIMEOUT 300)
  endforeach()
endif()
