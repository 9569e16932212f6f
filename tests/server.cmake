# tests/server.cmake - bitnet-server end to end (examples/server), loopback only, bounded in time:
#   server.model        fixture: bitllama-3M converted with bitnet-convert from-llama2c (the staged
#                       trained model; SKIP when ../shared/data is absent)
#   server.openai_sdk   the official OpenAI SDK for Node (scripts/fetch_openai_sdk.sh) drives chat
#                       and completions, streamed and not; texts equal bitnet-generate --temp 0
#                       (SKIP with the reason when the SDK could not be fetched)
#   server.protocol     curl SSE framing, every 400, 401, the queue-full 503, a disconnect
#                       mid-stream, /health, /metrics, SIGTERM
#   server.load         eight clients at once equal their solo runs; a bounded load test
# Each test is a Node script (tests/server/*.mjs, Node's built-in test runner) that starts its own
# server on 127.0.0.1 with --port 0. The scheduler and the OpenAI bodies also have unit tests
# without HTTP (tests/test_server.cpp).
#
# This file is both a tests/ fragment (registers the tests) and, run with cmake -P, the fixture.

if(CMAKE_SCRIPT_MODE_FILE)
  # ---- the fixture: -DCONVERT= -DDATA= -DOUT=
  foreach(f IN ITEMS "${DATA}/bitllama-3M-ternary.bin" "${DATA}/tok512.model")
    if(NOT EXISTS "${f}")
      message("SKIP: staged data not found: ${f} (BITNET_SHARED_DIR)")
      return()
    endif()
  endforeach()
  get_filename_component(dir "${OUT}" DIRECTORY)
  file(MAKE_DIRECTORY "${dir}")
  execute_process(COMMAND "${CONVERT}" from-llama2c "${DATA}/bitllama-3M-ternary.bin" "${DATA}/tok512.model" -o "${OUT}" -q
                  RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE e)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "bitnet-convert from-llama2c failed (${rc}):\n${o}${e}")
  endif()
  return()
endif()

include(${PROJECT_SOURCE_DIR}/cmake/bitnetServerDeps.cmake)
if(NOT BITNET_BUILD_EXAMPLES OR NOT BITNET_BUILD_TOOLS OR NOT BITNET_SERVER_DEPS)
  return()
endif()

set(_srv_dir ${CMAKE_CURRENT_BINARY_DIR}/server)
set(_srv_model ${_srv_dir}/bitllama-3M.gguf)
add_test(NAME server.model
         COMMAND ${CMAKE_COMMAND} -DCONVERT=$<TARGET_FILE:bitnet-convert> -DDATA=${BITNET_SHARED_DIR}/data/bitllama2c
                 -DOUT=${_srv_model} -P ${CMAKE_CURRENT_LIST_FILE})
set_tests_properties(server.model PROPERTIES FIXTURES_SETUP server_model SKIP_REGULAR_EXPRESSION "SKIP:" LABELS server)

find_program(BITNET_NODE node)
set(BITNET_OPENAI_SDK_DIR "${PROJECT_SOURCE_DIR}/third_party/downloads" CACHE PATH
    "Folder whose node_modules/ holds the OpenAI SDK (scripts/fetch_openai_sdk.sh)")
foreach(t IN ITEMS openai_sdk protocol load)
  if(BITNET_NODE)
    add_test(NAME server.${t} COMMAND ${BITNET_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/server/${t}.mjs)
  else()
    add_test(NAME server.${t} COMMAND ${CMAKE_COMMAND} -E echo "SKIP: node not found (the server tests are Node scripts)")
  endif()
  set_tests_properties(server.${t} PROPERTIES
    ENVIRONMENT "BITNET_SERVER=$<TARGET_FILE:bitnet-server>;BITNET_GENERATE=$<TARGET_FILE:bitnet-generate>;BITNET_TEST_MODEL=${_srv_model};BITNET_OPENAI_SDK_DIR=${BITNET_OPENAI_SDK_DIR}"
    FIXTURES_REQUIRED server_model SKIP_REGULAR_EXPRESSION "SKIP:" TIMEOUT 240 LABELS server)
endforeach()

# The command line (tests/generate_cli/expect.cmake runs a command and checks its status and output).
function(bitnet_server_case name)
  cmake_parse_arguments(C "" "RC" "ARGS;MATCH" ${ARGN})
  string(REPLACE ";" "|" cmd "$<TARGET_FILE:bitnet-server>;${C_ARGS}")
  string(REPLACE ";" "|" match "${C_MATCH}")
  add_test(NAME server.cli_${name}
           COMMAND ${CMAKE_COMMAND} -DCMD=${cmd} -DRC=${C_RC} -DMATCH=${match}
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/generate_cli/expect.cmake)
  set_tests_properties(server.cli_${name} PROPERTIES LABELS server TIMEOUT 60)
endfunction()
bitnet_server_case(help RC 0 ARGS --help
  MATCH "usage: bitnet-server -m MODEL.gguf" "-m, --model PATH" "--host ADDR .*default: 127.0.0.1" "--port N .*default: 8080"
        "-t, --threads N" "-c, --ctx-size N" "--parallel S .*default: 4" "--queue N .*default: 16"
        "-b, --batch-size N .*default: 64" "--api-key KEY" "--max-body BYTES .*default: 1048576"
        "--shutdown-timeout SEC .*default: 10" "--http-threads N" "--kv-type TYPE .*default: f32" "--alias NAME"
        "POST /v1/chat/completions" "GET /metrics" "BITNET_API_KEY")
bitnet_server_case(no_model RC 2 ARGS --port 0 MATCH "bitnet-server: error: no model given")
bitnet_server_case(unknown_flag RC 2 ARGS -m x.gguf --bogus MATCH "error: unknown flag '--bogus'")
bitnet_server_case(bad_port RC 2 ARGS -m x.gguf --port 70000 MATCH "--port: expected an integer in \\[0, 65535\\], got '70000'")
bitnet_server_case(bad_kv_type RC 2 ARGS -m x.gguf --kv-type q4 MATCH "--kv-type: expected f32 or f16, got 'q4'")
bitnet_server_case(missing_model RC 1 ARGS -m ${_srv_dir}/no-such-model.gguf --port 0
  MATCH "bitnet-server: error: .*no-such-model.gguf: cannot open")
